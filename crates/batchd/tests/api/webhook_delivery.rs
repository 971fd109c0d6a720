//! Completion webhooks delivered: a local receiver on port 0 verifies every signature with the
//! Standard Webhooks rules (in Rust, `batchd_webhooks::sign::verify`), sees the batch as `GET`
//! returns it, and gets the same `webhook-id` on every retry; a 3xx and an answer slower than
//! the send timeout are failures retried; after a secret's rotation deliveries carry both
//! signatures until the overlap ends on the workspace's clock; OpenAI batches send OpenAI's
//! events.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::helpers::*;

/// One request the receiver got, with the time it arrived (microseconds since the epoch).
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
    at_micros: i128,
}

/// A plan entry: no answer for 10 s.
const HANG: u16 = 0;

#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Received>>,
    /// Statuses to answer with, in order; 204 once they run out. [`HANG`] answers only after
    /// longer than any test's send timeout.
    plan: Mutex<VecDeque<u16>>,
}

async fn hook(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let at_micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i128;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    r.got.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp").parse().unwrap_or_default(),
        signature: header("webhook-signature"),
        body: body.to_vec(),
        at_micros,
    });
    let mut status = r.plan.lock().unwrap().pop_front().unwrap_or(204);
    if status == HANG {
        tokio::time::sleep(Duration::from_secs(10)).await;
        status = 204;
    }
    let mut response = StatusCode::from_u16(status).unwrap().into_response();
    if (300..400).contains(&status) {
        response
            .headers_mut()
            .insert("location", "http://127.0.0.1:9/elsewhere".parse().unwrap());
    }
    response
}

/// Starts a receiver on port 0 answering with `plan`; returns it and its URL.
async fn receiver(plan: &[u16]) -> (Arc<Receiver>, String) {
    let state = Arc::new(Receiver {
        plan: Mutex::new(plan.iter().copied().collect()),
        ..Default::default()
    });
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, format!("http://{addr}/hook"))
}

/// A server that may deliver to the local receiver, retrying after a few milliseconds.
async fn app() -> TestApp {
    spawn_with(|o| {
        o.webhook_allow_http = true;
        o.webhook_allow_private = true;
        o.webhook_first_retry = Duration::from_millis(50);
    })
    .await
}

/// Registers `url`; returns the endpoint's id and secret.
async fn register(app: &TestApp, url: &str) -> (String, batchd_webhooks::Secret) {
    let resp = app
        .post("/v1/batchd/webhooks", &json!({ "url": url }))
        .await;
    assert_eq!(resp.status(), 200);
    let created: Value = resp.json().await.unwrap();
    let secret = batchd_webhooks::Secret::parse(created["secret"].as_str().unwrap()).unwrap();
    (created["id"].as_str().unwrap().to_owned(), secret)
}

/// Waits until the receiver holds `n` requests.
async fn wait_for(r: &Receiver, n: usize) -> Vec<Received> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = r.got.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} received",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn verified(secret: &batchd_webhooks::Secret, got: &Received) -> Value {
    assert!(
        batchd_webhooks::sign::verify(secret, &got.id, got.timestamp, &got.body, &got.signature),
        "signature of {} does not verify",
        got.id
    );
    serde_json::from_slice(&got.body).unwrap()
}

#[tokio::test]
async fn an_ended_batch_is_delivered_once_signed_with_the_batch_object() {
    let app = app().await;
    let (r, url) = receiver(&[]).await;
    let (_, secret) = register(&app, &url).await;
    let batch = app.create_n(2).await;
    let id = batch["id"].as_str().unwrap();
    let ended = app.wait_ended(id, Duration::from_secs(30)).await;
    let got = wait_for(&r, 1).await;
    let event = verified(&secret, &got[0]);
    assert_eq!(event["type"], "message_batch.ended");
    assert_eq!(event["id"], got[0].id.as_str());
    assert!(got[0].id.starts_with("evt_"));
    assert_eq!(event["data"], ended, "the batch as GET returns it");
    // Once only.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_webhook_id_until_it_answers_2xx() {
    let app = app().await;
    let (r, url) = receiver(&[500, 503]).await;
    let (endpoint, secret) = register(&app, &url).await;
    let id = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(30)).await;
    let got = wait_for(&r, 3).await;
    for g in &got {
        verified(&secret, g);
    }
    assert!(
        got.iter().all(|g| g.id == got[0].id),
        "same webhook-id: {got:?}"
    );
    let deliveries = deliveries_settled(&app, &endpoint).await;
    assert_eq!(deliveries[0]["state"], "delivered", "{deliveries:?}");
    assert_eq!(deliveries[0]["attempts"], 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.got.lock().unwrap().len(), 3, "nothing after the success");
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_retried() {
    let app = app().await;
    let (r, url) = receiver(&[307]).await;
    let (endpoint, _) = register(&app, &url).await;
    let id = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(30)).await;
    let got = wait_for(&r, 2).await;
    assert_eq!(got[0].id, got[1].id);
    let deliveries = deliveries_settled(&app, &endpoint).await;
    assert_eq!(deliveries[0]["attempts"], 2, "{deliveries:?}");
    assert_eq!(deliveries[0]["state"], "delivered");
}

/// The endpoint's deliveries once none is pending.
async fn deliveries_settled(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let resp = app
            .get(&format!("/v1/batchd/webhooks/{endpoint}/deliveries"))
            .await;
        assert_eq!(resp.status(), 200);
        let list: Value = resp.json().await.unwrap();
        let data = list["data"].as_array().unwrap().clone();
        if !data.is_empty() && data.iter().all(|d| d["state"] != "pending") {
            return data;
        }
        assert!(std::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Batch end → receiver over 100 batches, median and p99 printed (not asserted: the machine is
/// shared).
#[tokio::test]
async fn delivery_latency_is_reported() {
    let app = app().await;
    let (r, url) = receiver(&[]).await;
    register(&app, &url).await;
    const N: usize = 100;
    for _ in 0..N {
        let id = app.create_n(1).await["id"].as_str().unwrap().to_owned();
        app.wait_ended(&id, Duration::from_secs(30)).await;
    }
    let got = wait_for(&r, N).await;
    let mut latencies: Vec<f64> = got
        .iter()
        .map(|g| {
            let event: Value = serde_json::from_slice(&g.body).unwrap();
            (g.at_micros - micros(&event["data"]["ended_at"])) as f64 / 1_000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "webhook delivery latency (batch end -> receiver) over {N} batches: median {:.1} ms, p99 {:.1} ms",
        p(0.5),
        p(0.99)
    );
}

/// A delivery still pending when the server stops is sent by the next server on the same
/// storage, with the same `webhook-id`.
#[tokio::test]
async fn a_pending_delivery_survives_a_restart() {
    // Long enough that the first server stops before the retry is due.
    let options = |o: &mut batchd::config::ServeOptions| {
        o.webhook_allow_http = true;
        o.webhook_allow_private = true;
        o.webhook_first_retry = Duration::from_secs(2);
    };
    let app = spawn_with(options).await;
    let (r, url) = receiver(&[500]).await;
    let (endpoint, secret) = register(&app, &url).await;
    let id = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(30)).await;
    wait_for(&r, 1).await;
    let data_dir = app.data_dir.clone();
    let dir = app.stop().await;
    assert_eq!(r.got.lock().unwrap().len(), 1, "stopped before the retry");

    let app = start_in(data_dir, options).await;
    let got = wait_for(&r, 2).await;
    verified(&secret, &got[1]);
    assert_eq!(got[0].id, got[1].id, "same webhook-id after the restart");
    let deliveries = deliveries_settled(&app, &endpoint).await;
    assert_eq!(deliveries[0]["state"], "delivered");
    app.stop().await;
    drop(dir);
}

/// Registers `url` for `events`; returns the endpoint's secret.
async fn register_for(app: &TestApp, url: &str, events: &[&str]) -> batchd_webhooks::Secret {
    let resp = app
        .post(
            "/v1/batchd/webhooks",
            &json!({ "url": url, "events": events }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["events"], json!(events));
    batchd_webhooks::Secret::parse(created["secret"].as_str().unwrap()).unwrap()
}

/// Each OpenAI batch sends one event, once it shows its terminal status, of the type that
/// status names, in OpenAI's thin shape with the time of that status; an endpoint gets only
/// the types it subscribed to.
#[tokio::test]
async fn openai_batches_send_the_event_of_the_status_they_end_in() {
    use crate::openai::{chat_line, oa, ok_json};
    let app = spawn_with(|o| {
        o.webhook_allow_http = true;
        o.webhook_allow_private = true;
        o.webhook_first_retry = Duration::from_millis(50);
        // The clock moves past a batch's window; requests take long enough to cancel.
        o.test_mode = true;
        o.mock_latency = Duration::from_millis(300);
        o.mock_concurrency = 2;
        o.concurrency = 2;
    })
    .await;
    let (all, all_url) = receiver(&[]).await;
    let secret = register_for(
        &app,
        &all_url,
        &[
            "batch.completed",
            "batch.failed",
            "batch.expired",
            "batch.cancelled",
        ],
    )
    .await;
    let (completed_only, completed_url) = receiver(&[]).await;
    register_for(&app, &completed_url, &["batch.completed"]).await;
    let (messages, messages_url) = receiver(&[]).await;
    register_for(&app, &messages_url, &["message_batch.ended"]).await;

    let oa = oa(&app);
    let lines = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| chat_line(&format!("r{i}"), "gpt-4o-mini", "hi"))
            .collect()
    };
    let id_of = |v: &Value| v["id"].as_str().unwrap().to_owned();
    // (batch id, event type, the batch's field holding the event's time, the batch at its end)
    let mut expected: Vec<(String, &str, &str, Value)> = Vec::new();

    let id = id_of(&oa.create("/v1/chat/completions", &lines(1)).await);
    let done = oa.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
    expected.push((id, "batch.completed", "completed_at", done));

    let good = chat_line("a", "gpt-4o-mini", "hi");
    let file = oa.upload("in.jsonl", &format!("{good}\nnot json\n")).await;
    let created = oa.create_on(&file, "/v1/chat/completions").await;
    let id = id_of(&created);
    let failed = oa.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    expected.push((id, "batch.failed", "failed_at", failed));

    let id = id_of(&oa.create("/v1/chat/completions", &lines(30)).await);
    ok_json(
        oa.post(&format!("/v1/batches/{id}/cancel"), &json!({}))
            .await,
    )
    .await;
    let cancelled = oa.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    expected.push((id, "batch.cancelled", "cancelled_at", cancelled));

    let id = id_of(&oa.create("/v1/chat/completions", &lines(30)).await);
    let resp = app
        .post(
            "/v1/batchd/test/clock/advance",
            &json!({ "seconds": 25 * 3_600 }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let expired = oa.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(expired["status"], "expired", "{expired}");
    expected.push((id, "batch.expired", "expired_at", expired));

    let got = wait_for(&all, expected.len()).await;
    for (id, kind, at, batch) in &expected {
        let delivery = got
            .iter()
            .find(|g| verified(&secret, g)["data"]["id"] == id.as_str())
            .unwrap_or_else(|| panic!("no event for {id} ({kind}): {got:?}"));
        assert_eq!(
            verified(&secret, delivery),
            json!({
                "object": "event",
                "id": delivery.id,
                "type": kind,
                "created_at": batch[at],
                "data": {"id": id},
            })
        );
        assert!(delivery.id.starts_with("evt_"));
    }
    wait_for(&completed_only, 1).await;
    // Nothing more arrives: one event per batch, and none of an unsubscribed type.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(all.got.lock().unwrap().len(), expected.len());
    let only = completed_only.got.lock().unwrap().clone();
    assert_eq!(only.len(), 1);
    let body: Value = serde_json::from_slice(&only[0].body).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["data"]["id"].as_str()),
        (Some("batch.completed"), Some(expected[0].0.as_str()))
    );
    assert!(messages.got.lock().unwrap().is_empty());
}

/// No answer within the send timeout is a failure, counted and retried with the same
/// `webhook-id`.
#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_retried_with_the_same_id() {
    let app = spawn_with(|o| {
        o.webhook_allow_http = true;
        o.webhook_allow_private = true;
        o.webhook_first_retry = Duration::from_millis(50);
        o.webhook_send_timeout = Duration::from_millis(500);
    })
    .await;
    let (r, url) = receiver(&[HANG]).await;
    let (endpoint, secret) = register(&app, &url).await;
    let started = std::time::Instant::now();
    let id = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(30)).await;
    let got = wait_for(&r, 2).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "retried before the hung answer came"
    );
    verified(&secret, &got[1]);
    assert_eq!(got[0].id, got[1].id, "same webhook-id");
    let deliveries = deliveries_settled(&app, &endpoint).await;
    assert_eq!(
        (&deliveries[0]["state"], &deliveries[0]["attempts"]),
        (&json!("delivered"), &json!(2)),
        "{deliveries:?}"
    );
}

/// After `rotate_secret`, a delivery carries a `v1,` signature per secret, each verifying with
/// its own, for the overlap; once the workspace's clock passes it, only the new one.
#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_until_the_overlap_ends() {
    let app = spawn_with(|o| {
        o.webhook_allow_http = true;
        o.webhook_allow_private = true;
        o.test_mode = true;
    })
    .await;
    let (r, url) = receiver(&[]).await;
    let (endpoint, old) = register(&app, &url).await;
    let rotated: Value = app
        .post(
            &format!("/v1/batchd/webhooks/{endpoint}/rotate_secret"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let new = batchd_webhooks::Secret::parse(rotated["secret"].as_str().unwrap()).unwrap();

    let signatures =
        |g: &Received| -> Vec<String> { g.signature.split(' ').map(str::to_owned).collect() };
    let id = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(30)).await;
    let during = wait_for(&r, 1).await.remove(0);
    let sigs = signatures(&during);
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    assert!(sigs.iter().all(|s| s.starts_with("v1,")), "{sigs:?}");
    let verifies = |secret: &batchd_webhooks::Secret, sig: &str| {
        batchd_webhooks::sign::verify(secret, &during.id, during.timestamp, &during.body, sig)
    };
    assert!(
        verifies(&new, &sigs[0]) && verifies(&old, &sigs[1]),
        "{sigs:?}"
    );
    assert!(!verifies(&old, &sigs[0]) && !verifies(&new, &sigs[1]));

    // 24 h and a minute later on the workspace's clock, the old secret no longer signs.
    let resp = app
        .post(
            "/v1/batchd/test/clock/advance",
            &json!({ "seconds": 24 * 3_600 + 60 }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let id = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(30)).await;
    let after = wait_for(&r, 2).await.remove(1);
    assert_eq!(signatures(&after).len(), 1, "{}", after.signature);
    verified(&new, &after);
    assert!(!batchd_webhooks::sign::verify(
        &old,
        &after.id,
        after.timestamp,
        &after.body,
        &after.signature
    ));
}
