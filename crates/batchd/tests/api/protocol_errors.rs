//! Requests the HTTP library refuses before any handler runs (README: "Errors the HTTP library
//! sends"): a status without the error envelope, and the connection closed. The server goes on
//! serving, and anything that reaches the router gets the envelope.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Sends `request` on a fresh connection and reads until the server closes it. The server may
/// answer and close before it has read the whole request (a head over its limit): the write may
/// then fail with a broken pipe or reset, and the read with a reset once the answer is in; what
/// arrived until then is returned.
async fn exchange(app: &TestApp, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    if let Err(err) = stream.write_all(request).await {
        assert!(cut(&err), "{err}");
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(err) if cut(&err) => break,
                Err(err) => panic!("{err}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the connection is closed after the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Whether `err` is the server closing a connection it had not read to the end.
fn cut(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}

#[tokio::test]
async fn malformed_or_oversized_heads_get_a_bare_status_and_a_closed_connection() {
    let app = spawn().await;
    let mut headers = String::new();
    for i in 0..200 {
        headers.push_str(&format!("x-h{i}: 1\r\n"));
    }
    // The last bool: the head is over the server's limit and is not read to its end, so the
    // close after the 431 resets the connection, and a reset that overtakes the answer in the
    // client's kernel may discard it before the client reads a byte. Only for those two, an
    // answer lost whole to the reset is accepted; any byte that arrives must be the 431.
    let cases = [
        (
            "HTTP/1.1 400 ",
            b"NOT A REQUEST LINE\r\n\r\n".to_vec(),
            false,
        ),
        (
            "HTTP/1.1 400 ",
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n".to_vec(),
            false,
        ),
        (
            "HTTP/1.1 414 ",
            format!(
                "GET /healthz?{} HTTP/1.1\r\nhost: x\r\n\r\n",
                "a".repeat(70_000)
            )
            .into_bytes(),
            false,
        ),
        (
            "HTTP/1.1 431 ",
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{headers}\r\n").into_bytes(),
            false,
        ),
        // Over the head limit but under hyper's read buffer, where only the limit refuses it.
        (
            "HTTP/1.1 431 ",
            format!(
                "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
                "a".repeat(200_000)
            )
            .into_bytes(),
            true,
        ),
        (
            "HTTP/1.1 431 ",
            format!(
                "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
                "a".repeat(500_000)
            )
            .into_bytes(),
            true,
        ),
    ];
    for (status, request, may_be_lost) in cases {
        let answer = exchange(&app, &request).await;
        if may_be_lost && answer.is_empty() {
            continue;
        }
        assert!(answer.starts_with(status), "{status}: {answer}");
        assert!(answer.contains("content-length: 0\r\n"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
    }
    // A large head within the library's limits reaches the router, and its errors have the
    // envelope.
    let answer = exchange(
        &app,
        format!(
            "GET /nowhere HTTP/1.1\r\nhost: x\r\nx-big: {}\r\nconnection: close\r\n\r\n",
            "a".repeat(20_000)
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    assert!(
        answer.contains(r#"{"type":"error","error":{"type":"not_found_error""#),
        "{answer}"
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_ids_and_queries_get_the_envelope() {
    let app = spawn().await;
    for path in [
        "/v1/messages/batches/%ff",
        "/v1/messages/batches?limit=%ff",
        "/v1/messages/batches?limit=abc",
    ] {
        let resp = app.get(path).await;
        assert!(resp.status().is_client_error(), "{path}");
        assert_eq!(resp.headers()["content-type"], "application/json", "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["type"], "error", "{path}: {body}");
    }
    app.stop().await;
}
