//! POST /v1/messages/batches/{id}/cancel.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn cancel_moves_to_canceling_then_ends_with_canceled_rows() {
    // A slow model with little concurrency: most requests are still queued when we cancel.
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_millis(300);
        o.mock_concurrency = 2;
        o.concurrency = 2;
    })
    .await;
    let id = app.create_n(40).await["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(450)).await;

    let resp = app
        .post(&format!("/v1/messages/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(resp.status(), 200);
    let canceling: Value = resp.json().await.unwrap();
    assert_eq!(canceling["processing_status"], "canceling");
    assert!(canceling["cancel_initiated_at"].is_string());
    assert!(canceling["ended_at"].is_null() && canceling["results_url"].is_null());
    assert_eq!(counts(&canceling), [40, 0, 0, 0, 0]);

    let started = Instant::now();
    let ended = app.wait_ended(&id, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cancel must not wait for the queue to drain"
    );
    let [processing, succeeded, errored, canceled, expired] = counts(&ended);
    assert_eq!((processing, errored, expired), (0, 0, 0));
    assert!(
        succeeded >= 2,
        "requests already sent keep their results: {ended}"
    );
    assert!(canceled >= 30, "{ended}");
    assert_eq!(succeeded + canceled, 40);
    assert_eq!(
        ended["cancel_initiated_at"],
        canceling["cancel_initiated_at"]
    );

    let results = app.results(&id).await;
    assert_eq!(results.len(), 40);
    let canceled_rows = results
        .iter()
        .filter(|l| l["result"] == json!({"type": "canceled"}))
        .count();
    assert_eq!(canceled_rows as u64, canceled);

    // Canceling an ended batch is refused.
    let resp = app
        .post(&format!("/v1/messages/batches/{id}/cancel"), &json!({}))
        .await;
    assert_error(
        resp,
        400,
        "invalid_request_error",
        &format!("Message Batch {id} has already ended and cannot be canceled."),
    )
    .await;
}

#[tokio::test]
async fn cancel_is_idempotent_while_canceling_and_needs_no_body() {
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_secs(2);
        o.mock_concurrency = 1;
        o.concurrency = 1;
    })
    .await;
    let id = app.create_n(5).await["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first: Value = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/messages/batches/{id}/cancel"),
        )
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["processing_status"], "canceling");
    // One request is in flight for 2 s, so the batch is still canceling here.
    let again = app
        .post(&format!("/v1/messages/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    let ended = app.wait_ended(&id, Duration::from_secs(10)).await;
    assert_eq!(counts(&ended), [0, 1, 0, 4, 0]);
}

#[tokio::test]
async fn cancel_unknown_or_foreign_is_404() {
    let app = spawn().await;
    let id = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    let resp = app
        .as_key(KEY_B)
        .post(&format!("/v1/messages/batches/{id}/cancel"), &json!({}))
        .await;
    assert_error(
        resp,
        404,
        "not_found_error",
        &format!("Message Batch {id} not found."),
    )
    .await;
}
