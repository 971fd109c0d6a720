//! Tenant quotas and key guessing: the queue cap per workspace, the rate limit on batch API
//! calls per workspace (with the `anthropic-ratelimit-requests-*` headers), and the throttle on
//! failed authentications per client address.

use std::time::{Duration, Instant};

use batchd_client::{Client, ListParams};
use reqwest::Response;
use serde_json::Value;

use crate::create_budget::{HeldCreate, SLACK, send_large_create};
use crate::helpers::*;

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// The `retry-after` of a 429, checked to be whole seconds in `1..=max`.
fn retry_after(resp: &Response, max: u64) -> u64 {
    assert_eq!(resp.status(), 429);
    assert_eq!(header(resp, "x-should-retry").as_deref(), Some("true"));
    let secs: u64 = header(resp, "retry-after")
        .expect("retry-after on a 429")
        .parse()
        .expect("retry-after in whole seconds");
    assert!((1..=max).contains(&secs), "retry-after {secs}");
    secs
}

async fn rate_limit_error(resp: Response) -> String {
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_workspace_over_its_queue_cap_waits_and_others_do_not() {
    // The mock takes 3 s per request: long enough for the refused create to come first on any
    // machine, short enough to see the queue drain.
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_secs(3);
        o.queue_cap = 5;
    })
    .await;
    let first = app.create_n(3).await;

    let resp = app
        .post(
            "/v1/messages/batches",
            &serde_json::json!({ "requests": (0..3).map(|i| request(&format!("x{i}"))).collect::<Vec<_>>() }),
        )
        .await;
    assert_eq!(retry_after(&resp, 60), 60);
    assert_eq!(
        rate_limit_error(resp).await,
        "This request would exceed your workspace's batch queue limit of 5 requests (3 are waiting to be processed)."
    );
    let listed: Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "the refused batch is not visible"
    );

    // Another workspace has its own queue.
    app.as_key(KEY_B).create_n(5).await;

    // Once the first batch is processed, its workspace has room again.
    app.wait_ended(first["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    app.create_n(3).await;
}

#[tokio::test]
async fn batch_calls_over_the_rate_limit_get_429_with_the_headers() {
    // 5 a minute: a burst of 5, then one every 12 s, far more than this test takes.
    let app = spawn_with(|o| o.rate_limit = 5).await;
    let started = Instant::now();
    let mut last_reset = None;
    for remaining in (0..5).rev() {
        let resp = app.get("/v1/messages/batches").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            header(&resp, "anthropic-ratelimit-requests-limit").as_deref(),
            Some("5")
        );
        assert_eq!(
            header(&resp, "anthropic-ratelimit-requests-remaining"),
            Some(remaining.to_string())
        );
        let reset = micros(&Value::from(
            header(&resp, "anthropic-ratelimit-requests-reset").unwrap(),
        ));
        assert!(last_reset.is_none_or(|last| reset > last), "reset moves on");
        last_reset = Some(reset);
    }
    // Errors after authentication count and carry the headers too.
    let resp = app.get("/v1/messages/batches/msgbatch_nope").await;
    assert_eq!(resp.status(), 429, "the sixth call in a burst of five");
    // A call is allowed again 12 s after the burst began, less the time the six calls took.
    let took = started.elapsed().as_secs();
    let wait = retry_after(&resp, 12);
    assert!(wait + took + 1 >= 12, "retry-after {wait} after {took} s");
    assert_eq!(
        header(&resp, "anthropic-ratelimit-requests-remaining").as_deref(),
        Some("0")
    );
    assert!(header(&resp, "anthropic-ratelimit-requests-reset").is_some());
    assert_eq!(
        rate_limit_error(resp).await,
        "This request would exceed your workspace's rate limit of 5 Message Batches API requests per minute."
    );

    // Another workspace has its own bucket; operator endpoints are not limited.
    let b = app.as_key(KEY_B);
    let resp = b.get("/v1/messages/batches").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "anthropic-ratelimit-requests-remaining").as_deref(),
        Some("4")
    );
    let health = app.client.get(format!("{}/healthz", app.base)).send().await;
    assert_eq!(health.unwrap().status(), 200);
}

#[tokio::test]
async fn without_a_rate_limit_no_headers_are_sent() {
    let app = spawn().await;
    let resp = app.get("/v1/messages/batches").await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "anthropic-ratelimit-requests-limit").is_none());
}

#[tokio::test]
async fn per_workspace_limits_override_the_defaults() {
    let app = spawn_with(|o| {
        o.rate_limit = 1000;
        o.workspaces.insert(
            "ws-b".into(),
            batchd::config::WorkspaceLimits {
                queue_cap: Some(2),
                rate_limit: Some(7),
            },
        );
    })
    .await;
    let resp = app.as_key(KEY_B).get("/v1/messages/batches").await;
    assert_eq!(
        header(&resp, "anthropic-ratelimit-requests-limit").as_deref(),
        Some("7")
    );
    let resp = app
        .as_key(KEY_B)
        .post(
            "/v1/messages/batches",
            &serde_json::json!({ "requests": [request("a"), request("b"), request("c")] }),
        )
        .await;
    assert_eq!(resp.status(), 429, "3 requests cannot fit a queue of 2");
    let resp = app.get("/v1/messages/batches").await;
    assert_eq!(
        header(&resp, "anthropic-ratelimit-requests-limit").as_deref(),
        Some("1000")
    );
}

#[tokio::test]
async fn the_client_retries_a_rate_limited_call() {
    // 30 a minute: one call every 2 s once the burst is spent, so `retry-after` is 2.
    let app = spawn_with(|o| o.rate_limit = 30).await;
    for _ in 0..30 {
        assert_eq!(app.get("/v1/messages/batches").await.status(), 200);
    }
    let builder = || Client::builder(app.base.clone(), app.key).no_proxy();
    let no_retries = builder().max_retries(0).build().unwrap();
    // The burst refills one call every 2 s while the calls above run, so call until refused.
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        match no_retries.list(&ListParams::default()).await {
            Ok(_) => assert!(Instant::now() < deadline, "never refused"),
            Err(err) => break err,
        }
    };
    assert_eq!(err.status().map(|s| s.as_u16()), Some(429), "{err}");
    let started = Instant::now();
    let page = builder()
        .build()
        .unwrap()
        .list(&ListParams::default())
        .await
        .expect("the client waits out retry-after and gets through");
    assert!(page.data.is_empty());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn an_address_that_fails_to_authenticate_too_often_waits() {
    let window = Duration::from_secs(3);
    let app = spawn_with(|o| {
        o.auth_failure_limit = 5;
        o.auth_failure_window = window;
    })
    .await;
    let started = Instant::now();
    let bad = app.as_key("sk-wrong-key-wrong-key-wrong");
    for _ in 0..5 {
        assert_eq!(bad.get("/v1/messages/batches").await.status(), 401);
    }
    // Now even a good key from this address waits, so guessing gains nothing.
    let resp = app.get("/v1/messages/batches").await;
    retry_after(&resp, 3);
    assert_eq!(
        rate_limit_error(resp).await,
        "Too many requests with a missing or invalid API key from this address; try again later."
    );
    let resp = app
        .client
        .get(format!("{}/v1/messages/batches", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429, "a request without a key waits too");
    let health = app.client.get(format!("{}/healthz", app.base)).send().await;
    assert_eq!(health.unwrap().status(), 200, "health needs no key");

    // The window ends three seconds after the first failure.
    let deadline = started + window + SLACK;
    loop {
        let status = app.get("/v1/messages/batches").await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(
            Instant::now() < deadline,
            "still refused long after the window"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        started.elapsed() >= window,
        "let through before the window ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_create_refused_before_its_handler_gets_a_readable_answer() {
    // The rate limit and the key check answer before the body is read; a client still sending
    // it must read that answer (and its `retry-after`), not a connection reset.
    let app = spawn_with(|o| o.rate_limit = 1).await;
    assert_eq!(app.get("/v1/messages/batches").await.status(), 200);
    let head = send_large_create(&app, app.key).await;
    assert!(head.starts_with("http/1.1 429"), "{head}");
    assert!(head.contains("\r\nretry-after: "), "{head}");
    let head = send_large_create(&app, "sk-wrong-key-wrong-key-wrong").await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_sent_in_parallel_get_no_more_answers_than_the_limit() {
    let app = spawn_with(|o| {
        o.auth_failure_limit = 20;
        o.auth_failure_window = Duration::from_secs(600);
    })
    .await;
    let guesses = (0..200).map(|_| {
        let bad = app.as_key("sk-wrong-key-wrong-key-wrong");
        tokio::spawn(async move { bad.get("/v1/messages/batches").await.status().as_u16() })
    });
    let mut statuses = Vec::new();
    for guess in guesses.collect::<Vec<_>>() {
        statuses.push(guess.await.unwrap());
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(unauthorized + throttled, 200, "{statuses:?}");
    assert!(unauthorized <= 20, "{unauthorized} guesses answered 401");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_into_a_full_queue_is_refused_before_its_body_is_read() {
    // The mock never answers within the test, so the queue stays full.
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_secs(600);
        o.queue_cap = 5;
    })
    .await;
    app.create_n(5).await;
    // Only the opening of the body is sent: the answer cannot wait for the rest.
    let held = HeldCreate::start(&app, "late").await;
    let (head, body) = tokio::time::timeout(SLACK, held.answer)
        .await
        .expect("an answer before the body is complete")
        .unwrap()
        .expect("an answer");
    assert!(head.starts_with("http/1.1 429"), "{head}");
    assert!(head.contains("\r\nretry-after: 60\r\n"), "{head}");
    assert!(head.contains("\r\nx-should-retry: true\r\n"), "{head}");
    assert_eq!(
        body["error"]["message"],
        "This request would exceed your workspace's batch queue limit of 5 requests (5 are waiting to be processed).",
        "{body}"
    );
}

#[tokio::test]
async fn a_batch_larger_than_the_queue_cap_is_told_not_to_retry() {
    let app = spawn_with(|o| o.queue_cap = 2).await;
    let resp = app
        .post(
            "/v1/messages/batches",
            &serde_json::json!({ "requests": [request("a"), request("b"), request("c")] }),
        )
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-should-retry").as_deref(), Some("false"));
    assert_eq!(header(&resp, "retry-after"), None);
    assert_eq!(
        rate_limit_error(resp).await,
        "This batch of 3 requests is larger than your workspace's batch queue limit of 2 requests; it can never be accepted. Split it into smaller batches."
    );
    let listed: Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 0, "{listed}");
    // A batch that fits the cap is accepted.
    app.create_n(2).await;
    app.stop().await;
}
