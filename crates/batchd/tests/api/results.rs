//! GET /v1/messages/batches/{id}/results: framing, availability, and the mock's messages.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn results_are_unavailable_until_the_batch_ends() {
    let app = spawn_with(|o| o.mock_latency = Duration::from_secs(5)).await;
    let id = app.create_n(2).await["id"].as_str().unwrap().to_owned();
    let resp = app.get(&format!("/v1/messages/batches/{id}/results")).await;
    assert_eq!(resp.headers()["x-should-retry"], "false");
    assert_error(
        resp,
        404,
        "not_found_error",
        &format!("Message Batch {id} has no available results."),
    )
    .await;
}

#[tokio::test]
async fn one_compact_line_per_request_with_documented_shapes() {
    let app = spawn().await;
    let n = 2_500; // more than one results page
    let id = app.create_n(n).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(60)).await;

    let resp = app
        .get(&format!("/v1/messages/batches/{id}/results?beta=true"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-jsonl");
    assert!(resp.headers().contains_key("request-id"));
    let text = resp.text().await.unwrap();
    let lines = parse_jsonl(&text);
    assert_eq!(lines.len(), n);
    let ids: HashSet<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), n, "every request exactly once");
    assert!(text.starts_with("{\"custom_id\":"));

    let first = text.lines().next().unwrap();
    assert_key_order(
        first,
        &[
            "{\"custom_id\":",
            "\"result\":{\"type\":\"succeeded\",\"message\":{\"id\":\"msg_",
            "\"type\":\"message\"",
            "\"role\":\"assistant\"",
            "\"model\":\"claude-sonnet-4-5\"",
            "\"content\":[{\"type\":\"text\",\"text\":",
            "\"stop_reason\":",
            "\"stop_sequence\":",
            "\"usage\":{\"input_tokens\":",
            "\"service_tier\":\"batch\"",
        ],
    );
    let msg = &lines[0]["result"]["message"];
    assert!(msg["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(msg["usage"]["output_tokens"].as_u64().unwrap() > 0);

    // The mock is deterministic: the same request in another batch gets the same text.
    let again = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&again, Duration::from_secs(20)).await;
    let other = app.results(&again).await;
    let r0 = lines.iter().find(|l| l["custom_id"] == "r0").unwrap();
    assert_eq!(
        other[0]["result"]["message"]["content"],
        r0["result"]["message"]["content"]
    );
    assert_eq!(
        other[0]["result"]["message"]["usage"],
        r0["result"]["message"]["usage"]
    );
}

#[tokio::test]
async fn results_survive_a_restart() {
    let app = spawn().await;
    let id = app.create_n(10).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(20)).await;
    let before = app.results(&id).await;
    let data_dir = app.data_dir.clone();
    let dir = app.stop().await;
    let app = start_in(data_dir, |_| {}).await;
    let after: Vec<Value> = app.results(&id).await;
    assert_eq!(before, after);
    app.stop().await;
    drop(dir);
}
