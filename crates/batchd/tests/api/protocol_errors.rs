//! Requests the HTTP library refuses before any handler runs (README: "Errors the HTTP library
//! sends"): a status without the error envelope, and the connection closed. The server goes on
//! serving, and anything that reaches the router gets the envelope.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Sends `request` on a fresh connection and reads until the server closes it.
async fn exchange(app: &TestApp, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the connection is closed after the answer")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn malformed_or_oversized_heads_get_a_bare_status_and_a_closed_connection() {
    let app = spawn().await;
    let mut headers = String::new();
    for i in 0..200 {
        headers.push_str(&format!("x-h{i}: 1\r\n"));
    }
    let cases = [
        ("HTTP/1.1 400 ", b"NOT A REQUEST LINE\r\n\r\n".to_vec()),
        (
            "HTTP/1.1 400 ",
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n".to_vec(),
        ),
        (
            "HTTP/1.1 414 ",
            format!(
                "GET /healthz?{} HTTP/1.1\r\nhost: x\r\n\r\n",
                "a".repeat(70_000)
            )
            .into_bytes(),
        ),
        (
            "HTTP/1.1 431 ",
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{headers}\r\n").into_bytes(),
        ),
        // Over the head limit but under hyper's read buffer, where only the limit refuses it.
        (
            "HTTP/1.1 431 ",
            format!(
                "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
                "a".repeat(200_000)
            )
            .into_bytes(),
        ),
        (
            "HTTP/1.1 431 ",
            format!(
                "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
                "a".repeat(500_000)
            )
            .into_bytes(),
        ),
    ];
    for (status, request) in cases {
        let answer = exchange(&app, &request).await;
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
