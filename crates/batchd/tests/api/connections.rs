//! Clients that hold connections or trickle their requests: the header timeout closes slow and
//! idle connections, the connection cap holds new ones back until one closes, and a create
//! whose body falls behind is cut with a 400 (`request_body_timeout`) and creates nothing.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Generous bounds: the machine may be loaded, and none of these should be near them.
const SLACK: Duration = Duration::from_secs(10);

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// A client without a pool, so that no connection of its own sits idle across a test.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Reads until the head of a response has arrived; `None` if it does not within `wait`.
async fn response_head(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok()?;
    (!seen.is_empty()).then(|| String::from_utf8_lossy(&seen).into_owned())
}

/// Reads and discards until the server closes the connection; false if it is still open
/// at `deadline`.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let drain = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout_at(deadline.into(), drain)
        .await
        .is_ok()
}

async fn get_healthz(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: batchd\r\n\r\n")
        .await
        .unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_closed_while_other_clients_are_served() {
    let mut app = spawn_with(|o| o.header_timeout = Duration::from_secs(1)).await;
    app.client = unpooled();
    let addr = addr(&app);
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: batchd\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    let opened = Instant::now();

    // Everyone else is served meanwhile, and promptly.
    let started = Instant::now();
    let resp = app.client.get(format!("{}/healthz", app.base)).send().await;
    assert_eq!(resp.unwrap().status(), 200);
    let created = app.create_n(1).await;
    assert_eq!(created["processing_status"], "in_progress");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "health and create took {:?} beside 300 slow clients",
        started.elapsed()
    );

    let deadline = opened + Duration::from_secs(1) + SLACK;
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(
            closed_by(stream, deadline).await,
            "slow connection {i} still open {:?} after its headers began",
            opened.elapsed()
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_with(|o| o.header_timeout = Duration::from_secs(1)).await;
    let mut stream = get_healthz(&addr(&app)).await;
    let head = response_head(&mut stream, SLACK).await.expect("served");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("connection: close"));
    let answered = Instant::now();
    assert!(
        closed_by(&mut stream, answered + SLACK).await,
        "idle connection still open"
    );
    assert!(
        answered.elapsed() >= Duration::from_millis(500),
        "closed after {:?}: sooner than the timeout",
        answered.elapsed()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_one_closes() {
    let mut app = spawn_with(|o| {
        o.max_connections = 50;
        o.header_timeout = Duration::from_secs(60);
    })
    .await;
    // The readiness probe's pooled connection may still count for a moment: the loop below
    // finds where the cap is rather than assuming it.
    app.client = unpooled();
    let addr = addr(&app);
    let mut held = Vec::new();
    let mut waiting = None;
    for _ in 0..60 {
        let mut stream = get_healthz(&addr).await;
        match response_head(&mut stream, Duration::from_secs(3)).await {
            Some(head) => {
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                held.push(stream);
            }
            None => {
                waiting = Some(stream);
                break;
            }
        }
    }
    let mut waiting = waiting.unwrap_or_else(|| panic!("{} connections all served", held.len()));
    assert!(
        (49..=50).contains(&held.len()),
        "{} connections served under a cap of 50",
        held.len()
    );
    drop(held.pop());
    let head = response_head(&mut waiting, SLACK)
        .await
        .expect("served once a connection closed");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(held);
    drop(waiting);
    app.stop().await;
}

/// Sends the head of a create and the start of its body, then `trickle`s the rest one byte at a
/// time (or nothing at all); returns what the server answered, if anything, within the slack.
async fn slow_create(app: &TestApp, trickle: Option<Duration>) -> Option<String> {
    let stream = TcpStream::connect(addr(app)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /v1/messages/batches HTTP/1.1\r\nHost: batchd\r\nx-api-key: {}\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n",
        app.key
    );
    write.write_all(head.as_bytes()).await.unwrap();
    write
        .write_all(
            br#"{"requests":[{"custom_id":"a","params":{"model":"m","max_tokens":1,"messages":["#,
        )
        .await
        .unwrap();
    let writer = tokio::spawn(async move {
        let Some(every) = trickle else {
            // Hold the connection open, sending nothing more.
            tokio::time::sleep(SLACK * 2).await;
            return;
        };
        loop {
            tokio::time::sleep(every).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if seen.ends_with(b"}") {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(SLACK, read_all).await;
    writer.abort();
    (!seen.is_empty()).then(|| String::from_utf8_lossy(&seen).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_body_stalls_or_trickles_is_cut_and_creates_nothing() {
    let app = spawn_with(|o| o.body_timeout = Duration::from_secs(1)).await;
    // A pause between two bytes never as long as the timeout: only the rate catches it.
    for trickle in [None, Some(Duration::from_millis(100))] {
        let started = Instant::now();
        let answer = slow_create(&app, trickle)
            .await
            .unwrap_or_else(|| panic!("no answer to a create trickling {trickle:?}"));
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(
            answer.contains(
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"The request body did not finish arriving in time, so nothing was done. Send a smaller body, or send it over a faster connection.","details":{"error_code":"request_body_timeout"}}"#
            ),
            "{answer}"
        );
        assert!(answer.contains("x-should-retry: false"), "{answer}");
        assert!(started.elapsed() >= Duration::from_millis(900));
    }
    let list: serde_json::Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    assert_eq!(list["data"], serde_json::json!([]), "{list}");
    // A create at a normal pace is unaffected.
    app.create_n(3).await;
    app.stop().await;
}
