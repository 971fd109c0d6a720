//! POST /v1/messages/batches: the object it returns and every synchronous refusal.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn create_returns_the_documented_object() {
    let app = spawn().await;
    let resp = app
        .post(
            "/v1/messages/batches",
            &json!({"requests": [request("a"), request("b")]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    assert_eq!(resp.headers()["content-type"], "application/json");
    let text = resp.text().await.unwrap();
    assert_key_order(
        &text,
        &[
            "\"id\":\"msgbatch_",
            "\"type\":\"message_batch\"",
            "\"processing_status\":\"in_progress\"",
            "\"request_counts\":{\"processing\":2,\"succeeded\":0,\"errored\":0,\"canceled\":0,\"expired\":0}",
            "\"ended_at\":null",
            "\"created_at\":",
            "\"expires_at\":",
            "\"archived_at\":null",
            "\"cancel_initiated_at\":null",
            "\"results_url\":null}",
        ],
    );
    let batch: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(batch.as_object().unwrap().len(), 10);
    assert_eq!(
        micros(&batch["expires_at"]) - micros(&batch["created_at"]),
        24 * 3600 * 1_000_000
    );
    let created = batch["created_at"].as_str().unwrap();
    assert!(
        created.ends_with("+00:00") && created.split('.').nth(1).unwrap().len() == 6 + 6,
        "{created}"
    );
}

#[tokio::test]
async fn envelope_problems_are_400_with_the_real_messages() {
    let app = spawn().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"requests": []}),
            "requests: List should have at least 1 item after validation, not 0",
        ),
        (json!({}), "requests: Field required"),
        (
            json!({"requests": [{"params": {}}]}),
            "requests.0.custom_id: Field required",
        ),
        (
            json!({"requests": [request("ok"), {"custom_id": "x"}]}),
            "requests.1.params: Field required",
        ),
        (
            json!({"requests": [{"custom_id": "a".repeat(65), "params": {}}]}),
            "requests.0.custom_id: String should have at most 64 characters",
        ),
        (
            json!({"requests": [{"custom_id": "no spaces", "params": {}}]}),
            "requests.0.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'",
        ),
        (
            json!({"requests": [request("dup"), request("dup")]}),
            "requests: custom_id's must be unique within a batch. Duplicate custom_id found: dup",
        ),
        (
            json!({"requests": [request("a")], "other": 1}),
            "other: Extra inputs are not permitted",
        ),
    ];
    for (body, message) in cases {
        let resp = app.post("/v1/messages/batches", &body).await;
        assert_error(resp, 400, "invalid_request_error", message).await;
    }
    // Nothing half-created is visible after refusals.
    let list: Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn().await;
    let resp = app
        .request(Method::POST, "/v1/messages/batches")
        .header("content-type", "application/json")
        .body("{\"requests\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("The request body is not valid JSON: "),
        "{message}"
    );
}

#[tokio::test]
async fn more_than_100000_requests_is_400() {
    let app = spawn().await;
    let requests: Vec<Value> = (0..100_001)
        .map(|i| json!({"custom_id": format!("r{i}"), "params": {}}))
        .collect();
    let resp = app
        .post("/v1/messages/batches", &json!({ "requests": requests }))
        .await;
    assert_error(
        resp,
        400,
        "invalid_request_error",
        "requests: List should have at most 100000 items after validation, not 100001",
    )
    .await;
}

#[tokio::test]
async fn oversized_bodies_are_413_with_or_without_content_length() {
    let app = spawn_with(|o| o.max_create_bytes = 4096).await;
    let big: Vec<Value> = (0..100).map(|i| request(&format!("r{i}"))).collect();
    let body = serde_json::to_vec(&json!({ "requests": big })).unwrap();
    assert!(body.len() > 4096);

    let resp = app
        .request(Method::POST, "/v1/messages/batches")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_error(
        resp,
        413,
        "request_too_large",
        "Request exceeds the maximum size",
    )
    .await;

    // Chunked, so the server only finds out while reading.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
        .chunks(1000)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    let resp = app
        .request(Method::POST, "/v1/messages/batches")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_error(
        resp,
        413,
        "request_too_large",
        "Request exceeds the maximum size",
    )
    .await;

    // A body under the limit still works.
    let small = app.create(vec![request("ok")]).await;
    assert_eq!(small["request_counts"]["processing"], 1);
}

#[tokio::test]
async fn bad_params_never_fail_the_create_and_come_back_errored() {
    let app = spawn().await;
    let batch = app
        .create(vec![
            request("good"),
            json!({"custom_id": "no-messages", "params": {"model": "m", "max_tokens": 5}}),
            json!({"custom_id": "zero-tokens", "params": {"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}}),
            json!({"custom_id": "streaming", "params": {"model": "m", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]}}),
        ])
        .await;
    let id = batch["id"].as_str().unwrap();
    let ended = app.wait_ended(id, Duration::from_secs(20)).await;
    assert_eq!(counts(&ended), [0, 1, 3, 0, 0]);
    let results = app.results(id).await;
    assert_eq!(results.len(), 4);
    for line in results {
        let cid = line["custom_id"].as_str().unwrap();
        let result = &line["result"];
        if cid == "good" {
            assert_eq!(result["type"], "succeeded");
            assert_eq!(result["message"]["usage"]["service_tier"], "batch");
        } else {
            assert_eq!(result["type"], "errored", "{line}");
            assert_eq!(result["error"]["type"], "error");
            assert_eq!(result["error"]["error"]["type"], "invalid_request_error");
            assert!(result["error"]["request_id"].is_null());
        }
        if cid == "no-messages" {
            assert_eq!(
                result["error"]["error"]["message"],
                "messages: Field required"
            );
        }
    }
}

#[tokio::test]
async fn betas_apply_and_beta_query_is_accepted() {
    let app = spawn().await;
    let resp = app
        .request(Method::POST, "/v1/messages/batches?beta=true")
        .header(
            "anthropic-beta",
            "message-batches-2024-09-24,output-300k-2026-03-24",
        )
        .header("anthropic-beta", "files-api-2025-04-14")
        .json(&json!({"requests": [request("a")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Posts `body` as a create, declared as `content_type` (or without the header).
async fn post_as(app: &TestApp, content_type: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut request = app.request(Method::POST, "/v1/messages/batches").body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_body_declared_as_anything_but_json_is_400_and_body_less_routes_take_any() {
    let app = spawn().await;
    let body = serde_json::to_vec(&json!({"requests": [request("a")]})).unwrap();
    for media in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonl",
    ] {
        let resp = post_as(&app, Some(media), body.clone()).await;
        assert_error(
            resp,
            400,
            "invalid_request_error",
            batchd_http::create::NOT_JSON_CONTENT_TYPE,
        )
        .await;
    }
    for media in [
        Some("application/json"),
        Some("Application/JSON; charset=utf-8"),
        None,
    ] {
        let resp = post_as(&app, media, body.clone()).await;
        assert_eq!(resp.status(), 200, "{media:?}");
    }
    assert_eq!(
        app.get("/v1/messages/batches")
            .await
            .json::<Value>()
            .await
            .unwrap()["data"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "only the JSON bodies created batches"
    );
    // Body-less routes never look at it (the Python SDK sends it on every non-GET request): a
    // batch that does not exist is 404, not a 400 for the header.
    let unknown = "msgbatch_01AHxNhUeZwskhx38tGz1QVj";
    for (method, path) in [
        (
            Method::POST,
            format!("/v1/messages/batches/{unknown}/cancel"),
        ),
        (Method::DELETE, format!("/v1/messages/batches/{unknown}")),
    ] {
        let resp = app
            .request(method.clone(), &path)
            .header("content-type", "text/plain")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{method} {path}");
    }
}
