//! The budget of creates in progress: creates beyond it wait briefly, then get 529 with
//! `retry-after` while the others go on; a retry once the budget has room succeeds.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;

use crate::helpers::*;

/// Generous bound for an answer that is due: the machine may be loaded.
pub(crate) const SLACK: Duration = Duration::from_secs(20);

/// A create sent in two parts: its head and the opening of its body at once, the rest on demand.
/// Its answer is read by a task of its own, so that it is seen whenever it comes.
pub(crate) struct HeldCreate {
    writer: OwnedWriteHalf,
    rest: Vec<u8>,
    pub(crate) answer: JoinHandle<Option<(String, Value)>>,
}

impl HeldCreate {
    pub(crate) async fn start(app: &TestApp, custom_id: &str) -> Self {
        let body = serde_json::to_vec(&json!({ "requests": [request(custom_id)] })).unwrap();
        let addr = app.base.trim_start_matches("http://");
        let (mut reader, mut writer) = TcpStream::connect(addr).await.unwrap().into_split();
        let head = format!(
            "POST /v1/messages/batches HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {}\r\n\
             anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            app.key,
            body.len()
        );
        let (opening, rest) = body.split_at(r#"{"requests":["#.len());
        writer.write_all(head.as_bytes()).await.unwrap();
        writer.write_all(opening).await.unwrap();
        let answer = tokio::spawn(async move { answer(&mut reader).await });
        Self {
            writer,
            rest: rest.to_vec(),
            answer,
        }
    }

    async fn finish(mut self) -> (String, Value) {
        self.writer.write_all(&self.rest).await.unwrap();
        tokio::time::timeout(SLACK, self.answer)
            .await
            .expect("an answer to a finished create in time")
            .unwrap()
            .expect("an answer to a finished create")
    }
}

/// The response's head (lower-cased) and JSON body; `None` if the connection ends first.
async fn answer(stream: &mut OwnedReadHalf) -> Option<(String, Value)> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end + 4]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .expect("a content-length");
            if seen.len() >= end + 4 + length {
                let body = serde_json::from_slice(&seen[end + 4..end + 4 + length]).unwrap();
                return Some((head, body));
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends an 8 MB create with `key` whole before reading the answer, as many clients do
/// (Python's http.client, so the SDK), and returns the head of the answer (lower-cased). Fails
/// if the server resets the connection instead: a body refused before it was read must be
/// drained, or the client sees a broken pipe rather than the answer.
pub(crate) async fn send_large_create(app: &TestApp, key: &str) -> String {
    let pad = "x".repeat(8 * 1024);
    let large: Vec<Value> = (0..1000)
        .map(|i| {
            let mut r = request(&format!("large-{i}"));
            r["params"]["messages"][0]["content"] = Value::from(pad.as_str());
            r
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "requests": large })).unwrap();
    let addr = app.base.trim_start_matches("http://");
    let (mut reader, mut writer) = TcpStream::connect(addr).await.unwrap().into_split();
    let head = format!(
        "POST /v1/messages/batches HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {key}\r\n\
         anthropic-version: 2023-06-01\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    tokio::time::timeout(SLACK, writer.write_all(&body))
        .await
        .expect("the body is taken in time")
        .expect("the whole body is taken, not refused with a reset");
    let (head, _) = tokio::time::timeout(SLACK, answer(&mut reader))
        .await
        .expect("an answer in time")
        .expect("an answer, not a reset");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_beyond_the_budget_get_529_with_retry_after_and_succeed_when_retried() {
    let app = spawn_with(|o| {
        o.max_concurrent_creates = 2;
        o.create_queue_timeout = Duration::from_millis(500);
        // The held creates wait for the test, not for a slow client: never cut them as one.
        o.body_timeout = Duration::from_secs(300);
    })
    .await;
    // Four creates whose bodies stop after their opening: two take the budget's slots and wait
    // for the rest of their body; the two others wait for a slot, in vain, and are refused.
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(HeldCreate::start(&app, &format!("held-{i}")).await);
    }
    let deadline = Instant::now() + SLACK;
    while held.iter().filter(|c| c.answer.is_finished()).count() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (answered, waiting): (Vec<_>, Vec<_>) =
        held.into_iter().partition(|c| c.answer.is_finished());
    assert_eq!(answered.len(), 2, "two creates over the budget are refused");
    for create in answered {
        let (head, body) = create.answer.await.unwrap().expect("an answer");
        assert!(head.starts_with("http/1.1 529"), "{head}");
        assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
        assert!(head.contains("\r\nx-should-retry: true\r\n"), "{head}");
        assert_eq!(body["error"]["type"], "overloaded_error", "{body}");
        assert_eq!(body["error"]["message"], "Overloaded", "{body}");
    }
    // A large create refused while its client is still sending gets the 529, not a connection
    // reset: the server reads its body to the end and drops it.
    let head = send_large_create(&app, app.key).await;
    assert!(head.starts_with("http/1.1 529"), "{head}");
    // The two within the budget could not answer before their body is complete; now they can.
    for create in waiting {
        let (head, body) = create.finish().await;
        assert!(head.starts_with("http/1.1 200"), "{head} {body}");
    }
    // With the budget free again, the refused creates succeed when retried.
    for i in 0..2 {
        app.create(vec![request(&format!("retried-{i}"))]).await;
    }
    let list: Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 4, "{list}");
    app.stop().await;
}
