//! Test mode (`--test-mode`): a virtual clock per workspace that batches expire and are archived
//! on, settled before an advance answers; the reset of a workspace; and the routes' absence
//! without the flag.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::helpers::*;

const HOUR: i128 = 3_600_000_000;
const DAY: i128 = 24 * HOUR;
/// How far a stamp taken during a test may be from the time the test reads around it.
const SLACK: i128 = 60_000_000;

fn real_now() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i128
}

/// Asserts `ts` is `offset` µs ahead of real time, give or take the test's own duration.
fn assert_near(ts: &Value, offset: i128) {
    let delta = micros(ts) - (real_now() + offset);
    assert!(
        delta.abs() < SLACK,
        "{ts} is {delta} µs off real time + {offset} µs"
    );
}

/// A test-mode server whose mock never answers within a test: requests stay pending.
async fn pending_server() -> TestApp {
    spawn_with(|o| {
        o.test_mode = true;
        o.mock_latency = Duration::from_secs(3_600);
    })
    .await
}

async fn clock(app: &TestApp) -> Value {
    let resp = app.get("/v1/batchd/test/clock").await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn advance(app: &TestApp, seconds: i64) -> Value {
    let resp = app
        .post(
            "/v1/batchd/test/clock/advance",
            &json!({ "seconds": seconds }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn test_routes_are_unknown_without_the_flag() {
    let app = spawn().await;
    for (method, path) in [
        (reqwest::Method::GET, "/v1/batchd/test/clock"),
        (reqwest::Method::POST, "/v1/batchd/test/clock/advance"),
        (reqwest::Method::POST, "/v1/batchd/test/reset"),
    ] {
        let resp = app
            .request(method, path)
            .json(&json!({ "seconds": 1 }))
            .send()
            .await
            .unwrap();
        assert_error(resp, 404, "not_found_error", "Not found").await;
    }
}

#[tokio::test]
async fn test_routes_need_a_key() {
    let app = spawn_with(|o| o.test_mode = true).await;
    let resp = app
        .client
        .get(format!("{}/v1/batchd/test/clock", app.base))
        .header("anthropic-version", VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn a_workspace_clock_starts_at_real_time_and_only_moves_forward() {
    let app = spawn_with(|o| o.test_mode = true).await;
    let start = clock(&app).await;
    assert_eq!(start["type"], "test_clock");
    assert_eq!(start["offset_seconds"], 0);
    assert_near(&start["now"], 0);
    let text = app
        .post(
            "/v1/batchd/test/clock/advance",
            &json!({ "seconds": 90_000 }),
        )
        .await
        .text()
        .await
        .unwrap();
    assert_key_order(
        &text,
        &[
            "\"type\":\"test_clock\"",
            "\"now\":",
            "\"offset_seconds\":90000",
        ],
    );
    let moved = clock(&app).await;
    assert_eq!(moved["offset_seconds"], 90_000);
    assert_near(&moved["now"], 90_000_000_000);
    assert_eq!(advance(&app, 0).await["offset_seconds"], 90_000);

    for (body, message) in [
        (
            json!({ "seconds": -1 }),
            "seconds: Input should be greater than or equal to 0",
        ),
        (
            json!({ "seconds": 1.5 }),
            "seconds: Input should be a valid integer, got a number with a fractional part",
        ),
        (
            json!({ "seconds": "60" }),
            "seconds: Input should be a valid integer",
        ),
        (json!({}), "seconds: Field required"),
        (
            json!({ "seconds": 1, "minutes": 1 }),
            "minutes: Extra inputs are not permitted",
        ),
    ] {
        let resp = app.post("/v1/batchd/test/clock/advance", &body).await;
        assert_error(resp, 400, "invalid_request_error", message).await;
    }
    assert_eq!(
        clock(&app).await["offset_seconds"],
        90_000,
        "refusals move nothing"
    );
    let resp = app
        .request(reqwest::Method::POST, "/v1/batchd/test/clock/advance")
        .body("a day")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("The request body is not valid JSON"),
        "{body}"
    );
    let other = clock(&app.as_key(KEY_B)).await;
    assert_eq!(
        other["offset_seconds"], 0,
        "another workspace keeps real time"
    );
}

#[tokio::test]
async fn pending_requests_expire_once_the_clock_passes_a_day() {
    let app = pending_server().await;
    let b = app.as_key(KEY_B);
    let mine = app
        .create((0..3).map(|i| request(&format!("r{i}"))).collect())
        .await;
    let theirs = b.create(vec![request("t0")]).await;
    let id = mine["id"].as_str().unwrap();
    assert_near(&mine["created_at"], 0);

    let started = Instant::now();
    advance(&app, 25 * 3_600).await;
    let batch = app.batch(id).await;
    println!("advance + GET took {:?}", started.elapsed());
    assert_eq!(
        batch["processing_status"], "ended",
        "settled before the advance answered"
    );
    assert_eq!(counts(&batch), [0, 0, 0, 0, 3]);
    assert!(micros(&batch["ended_at"]) >= micros(&batch["expires_at"]));
    assert_near(&batch["ended_at"], 25 * HOUR);
    let results = app.results(id).await;
    assert_eq!(results.len(), 3);
    assert!(
        results
            .iter()
            .all(|l| l["result"] == json!({"type": "expired"}))
    );

    let theirs = b.batch(theirs["id"].as_str().unwrap()).await;
    assert_eq!(
        theirs["processing_status"], "in_progress",
        "B is on real time"
    );
}

#[tokio::test]
async fn results_are_archived_once_the_clock_passes_the_retention() {
    let app = spawn_with(|o| o.test_mode = true).await;
    let id = app.create_n(5).await["id"].as_str().unwrap().to_owned();
    let ended = app.wait_ended(&id, Duration::from_secs(20)).await;
    assert_eq!(app.results(&id).await.len(), 5);
    let b_id = app.as_key(KEY_B).create_n(2).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.as_key(KEY_B)
        .wait_ended(&b_id, Duration::from_secs(20))
        .await;

    advance(&app, 29 * 86_400 + 60).await;
    let archived = app.batch(&id).await;
    assert_near(&archived["archived_at"], 29 * DAY + 60_000_000);
    assert_eq!(counts(&archived), counts(&ended), "counts survive archival");
    let resp = app.get(&format!("/v1/messages/batches/{id}/results")).await;
    assert_error(
        resp,
        404,
        "not_found_error",
        &format!("Message Batch {id} has no available results."),
    )
    .await;
    let theirs = app.as_key(KEY_B).batch(&b_id).await;
    assert!(
        theirs["archived_at"].is_null(),
        "B is on real time: {theirs}"
    );
    assert_eq!(app.as_key(KEY_B).results(&b_id).await.len(), 2);
}

#[tokio::test]
async fn creates_and_cancels_are_stamped_on_the_workspace_clock() {
    let app = pending_server().await;
    advance(&app, 10 * 86_400).await;
    let created = app.create(vec![request("r0")]).await;
    assert_near(&created["created_at"], 10 * DAY);
    assert_eq!(
        micros(&created["expires_at"]) - micros(&created["created_at"]),
        DAY
    );
    let id = created["id"].as_str().unwrap();
    let resp = app
        .post(&format!("/v1/messages/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(resp.status(), 200);
    let canceling: Value = resp.json().await.unwrap();
    assert_near(&canceling["cancel_initiated_at"], 10 * DAY);

    let theirs = app.as_key(KEY_B).create(vec![request("t0")]).await;
    assert_near(&theirs["created_at"], 0);
}

#[tokio::test]
async fn a_reset_removes_the_workspace_batches_and_rewinds_its_clock() {
    let app = pending_server().await;
    let b = app.as_key(KEY_B);
    let running = app.create(vec![request("r0"), request("r1")]).await;
    // Canceling, with its request still at the mock.
    let canceling = app.create(vec![request("c0")]).await;
    let canceling_id = canceling["id"].as_str().unwrap();
    let resp = app
        .post(
            &format!("/v1/messages/batches/{canceling_id}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let theirs = b.create(vec![request("t0")]).await;
    advance(&app, 3_600).await;
    advance(&b, 60).await;

    let resp = app.post("/v1/batchd/test/reset", &json!({})).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_key_order(
        &text,
        &["\"type\":\"test_reset\"", "\"clock\":", "\"rules\":[]"],
    );
    let reset: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reset["clock"]["offset_seconds"], 0);
    assert_near(&reset["clock"]["now"], 0);

    for id in [running["id"].as_str().unwrap(), canceling_id] {
        let resp = app.get(&format!("/v1/messages/batches/{id}")).await;
        assert_eq!(resp.status(), 404, "{id} is gone");
    }
    let list: Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    assert_eq!(list["data"], json!([]));
    assert_eq!(clock(&app).await["offset_seconds"], 0);

    let theirs = b.batch(theirs["id"].as_str().unwrap()).await;
    assert_eq!(theirs["processing_status"], "in_progress", "B untouched");
    assert_eq!(clock(&b).await["offset_seconds"], 60);

    // The key still works, and the workspace starts again from nothing.
    let again = app.create(vec![request("n0")]).await;
    assert_near(&again["created_at"], 0);
    let list: Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}
