//! /v1/batchd/webhooks: endpoint management, and the URL checks at create.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn endpoints_are_created_listed_rotated_and_deleted() {
    let app = spawn_with(|o| {
        o.webhook_allow_http = true;
        o.webhook_allow_private = true;
    })
    .await;
    let resp = app
        .post(
            "/v1/batchd/webhooks",
            &json!({"url": "http://127.0.0.1:9/hook", "description": "local"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["type"], "webhook_endpoint");
    assert_eq!(created["events"], json!(["message_batch.ended"]));
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("whep_"));
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));

    // Never shown again.
    let got: Value = app
        .get(&format!("/v1/batchd/webhooks/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(got.get("secret").is_none(), "{got}");
    assert_eq!(got["url"], "http://127.0.0.1:9/hook");
    let list: Value = app.get("/v1/batchd/webhooks").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&secret));
    // Another workspace sees nothing.
    let other = app.as_key(KEY_B);
    assert_error(
        other.get(&format!("/v1/batchd/webhooks/{id}")).await,
        404,
        "not_found_error",
        &format!("Webhook endpoint {id} not found."),
    )
    .await;

    let rotated: Value = app
        .post(
            &format!("/v1/batchd/webhooks/{id}/rotate_secret"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);

    assert_eq!(
        app.delete(&format!("/v1/batchd/webhooks/{id}"))
            .await
            .status(),
        200
    );
    assert_error(
        app.delete(&format!("/v1/batchd/webhooks/{id}")).await,
        404,
        "not_found_error",
        &format!("Webhook endpoint {id} not found."),
    )
    .await;
}

#[tokio::test]
async fn unsafe_destinations_are_refused_at_create() {
    let app = spawn().await;
    for (url, why) in [
        ("http://example.com/hook", "must use https"),
        (
            "https://127.0.0.1/hook",
            "points at a loopback, private, link-local or metadata address",
        ),
        (
            "https://169.254.169.254/latest",
            "points at a loopback, private, link-local or metadata address",
        ),
        (
            "https://localhost:8443/",
            "points at a loopback, private, link-local or metadata address",
        ),
        (
            "https://[::1]/",
            "points at a loopback, private, link-local or metadata address",
        ),
    ] {
        assert_error(
            app.post("/v1/batchd/webhooks", &json!({ "url": url }))
                .await,
            400,
            "invalid_request_error",
            &format!("url: {url} {why}"),
        )
        .await;
    }
}
