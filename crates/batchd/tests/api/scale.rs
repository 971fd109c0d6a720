//! One batch of 100,000 small requests, created and completed on the instant mock.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100000_request_batch_is_created_and_completed() {
    let app = spawn().await;
    let requests: Vec<_> = (0..100_000)
        .map(|i| {
            json!({"custom_id": format!("req-{i}"), "params": {
                "model": "claude-haiku-4-5", "max_tokens": 16,
                "messages": [{"role": "user", "content": format!("Question number {i}?")}]
            }})
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "requests": requests })).unwrap();
    let started = Instant::now();
    let resp = app
        .request(Method::POST, "/v1/messages/batches")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let created_in = started.elapsed();
    let batch: serde_json::Value = resp.json().await.unwrap();
    let id = batch["id"].as_str().unwrap().to_owned();
    assert_eq!(batch["request_counts"]["processing"], 100_000);

    let ended = app.wait_ended(&id, Duration::from_secs(300)).await;
    let finished_in = started.elapsed();
    assert_eq!(counts(&ended), [0, 100_000, 0, 0, 0]);

    let resp = app.get(&format!("/v1/messages/batches/{id}/results")).await;
    let text = resp.text().await.unwrap();
    assert_eq!(text.lines().count(), 100_000);
    eprintln!(
        "100k batch: created in {:.2?}, ended after {:.2?}, results {} MB",
        created_in,
        finished_in,
        text.len() / 1_000_000
    );
}
