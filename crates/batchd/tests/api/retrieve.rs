//! GET /v1/messages/batches/{id}.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn retrieve_in_progress_suggests_a_poll_interval() {
    let app = spawn_with(|o| o.mock_latency = Duration::from_secs(5)).await;
    let created = app.create_n(3).await;
    let id = created["id"].as_str().unwrap();
    let resp = app.get(&format!("/v1/messages/batches/{id}")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["retry-after"], "10");
    let batch: Value = resp.json().await.unwrap();
    assert_eq!(batch, created);
    let beta = app
        .request(Method::GET, &format!("/v1/messages/batches/{id}?beta=true"))
        .header("anthropic-beta", "message-batches-2024-09-24")
        .send()
        .await
        .unwrap();
    assert_eq!(beta.status(), 200);
}

#[tokio::test]
async fn ended_batches_carry_an_absolute_results_url() {
    let app = spawn().await;
    let id = app.create_n(2).await["id"].as_str().unwrap().to_owned();
    let ended = app.wait_ended(&id, Duration::from_secs(20)).await;
    assert_eq!(
        ended["results_url"],
        format!("{}/v1/messages/batches/{id}/results", app.base)
    );
    assert!(ended["ended_at"].is_string());
    assert_eq!(counts(&ended), [0, 2, 0, 0, 0]);
    let resp = app.get(&format!("/v1/messages/batches/{id}")).await;
    assert!(resp.headers().get("retry-after").is_none());
}

#[tokio::test]
async fn public_url_overrides_the_host() {
    let app = spawn_with(|o| o.public_url = Some("https://batches.example.com/".into())).await;
    let id = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    let ended = app.wait_ended(&id, Duration::from_secs(20)).await;
    assert_eq!(
        ended["results_url"],
        format!("https://batches.example.com/v1/messages/batches/{id}/results")
    );
}

#[tokio::test]
async fn unknown_malformed_and_foreign_ids_are_the_same_404() {
    let app = spawn().await;
    let id = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    for missing in ["msgbatch_01DoesNotExist00000000000", "not-an-id"] {
        let resp = app.get(&format!("/v1/messages/batches/{missing}")).await;
        assert_error(
            resp,
            404,
            "not_found_error",
            &format!("Message Batch {missing} not found."),
        )
        .await;
    }
    let other = app.as_key(KEY_B);
    let resp = other.get(&format!("/v1/messages/batches/{id}")).await;
    assert_error(
        resp,
        404,
        "not_found_error",
        &format!("Message Batch {id} not found."),
    )
    .await;
}
