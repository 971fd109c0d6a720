//! Real backends against the fake upstream: what is sent, what comes back, retries and their
//! limits, admission limits, routing by model, fairness, and retry state across a restart.

use std::collections::HashMap;
use std::time::Duration;

use batchd_backends::{BackendSpec, Kind, Secret};
use batchd_fake_upstream::{Endpoint, FakeConfig, FakeUpstream};
use serde_json::{Value, json};

use crate::helpers::*;

const UPSTREAM_KEY: &str = "sk-upstream-never-shown";

fn backend(kind: Kind, upstream: &FakeUpstream) -> BackendSpec {
    BackendSpec {
        name: "fake".into(),
        kind,
        base_url: upstream.url(),
        api_key: Some(Secret::new(UPSTREAM_KEY)),
        models: vec!["*".into()],
        max_concurrency: 64,
        requests_per_minute: 0,
        input_tokens_per_minute: 0,
        timeout: Duration::from_secs(10),
        max_attempts: 5,
        top_k: false,
        latency: Duration::ZERO,
        strict_models: false,
        anthropic_version: None,
    }
}

/// A server whose only backend is `spec`, with short retry back-off.
async fn serve_with(spec: BackendSpec) -> TestApp {
    spawn_with(|o| {
        o.backends = vec![spec];
        o.retry_base_delay = Duration::from_millis(20);
    })
    .await
}

/// A request whose prompt carries `text` (a fault directive, usually).
fn saying(custom_id: &str, text: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "params": {
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": format!("{custom_id}: {text}")}]
        }
    })
}

async fn run(app: &TestApp, requests: Vec<Value>) -> HashMap<String, Value> {
    let headers = [("anthropic-version", VERSION)];
    by_custom_id(
        app.run_with(&headers, &requests, Duration::from_secs(60))
            .await,
    )
}

/// A fake upstream that records what it is sent, and a server whose only backend it is.
async fn recording_upstream(pin: impl FnOnce(&mut BackendSpec)) -> (FakeUpstream, TestApp) {
    let upstream = FakeUpstream::start(FakeConfig::default().record_requests(10))
        .await
        .unwrap();
    let mut spec = backend(Kind::Anthropic, &upstream);
    pin(&mut spec);
    let app = serve_with(spec).await;
    (upstream, app)
}

#[tokio::test]
async fn anthropic_backend_forwards_params_and_headers_and_marks_the_batch_tier() {
    let (upstream, app) = recording_upstream(|_| {}).await;
    let params = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello there"}],
        "temperature": 0.5
    });
    let headers = [
        ("anthropic-version", VERSION),
        ("anthropic-beta", "extended-cache-ttl-2025-04-11"),
    ];
    let requests = [json!({"custom_id": "a", "params": params})];
    let lines = app
        .run_with(&headers, &requests, Duration::from_secs(20))
        .await;
    let message = &lines[0]["result"]["message"];
    assert_eq!(lines[0]["result"]["type"], "succeeded", "{}", lines[0]);
    assert_eq!(message["type"], "message");
    assert_eq!(message["model"], "claude-sonnet-4-5");
    assert_eq!(message["usage"]["service_tier"], "batch");

    let seen = upstream.stats().last_request().expect("recorded");
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        seen.header("anthropic-beta"),
        Some("extended-cache-ttl-2025-04-11")
    );
    assert_eq!(seen.json(), params, "params go upstream as given");
}

/// Creates a one-request batch with the given `anthropic-version` and `anthropic-beta`, waits
/// for it to end, and returns the request the upstream saw.
async fn seen_upstream(
    app: &TestApp,
    upstream: &FakeUpstream,
    version: &str,
    betas: &str,
) -> batchd_fake_upstream::RecordedRequest {
    upstream.stats().clear_recorded();
    let headers = [("anthropic-version", version), ("anthropic-beta", betas)];
    let lines = app
        .run_with(&headers, &[saying("v", "hi")], Duration::from_secs(20))
        .await;
    assert_eq!(lines[0]["result"]["type"], "succeeded");
    upstream.stats().last_request().expect("recorded")
}

#[tokio::test]
async fn anthropic_backend_sends_the_batch_version_and_only_betas_messages_knows() {
    let (upstream, app) = recording_upstream(|_| {}).await;
    let all = "message-batches-2024-09-24,files-api-2025-04-14,output-300k-2026-03-24";
    let seen = seen_upstream(&app, &upstream, "2026-10-21", all).await;
    assert_eq!(seen.header("anthropic-version"), Some("2026-10-21"));
    // The batch API's own betas mean nothing to `/v1/messages`.
    assert_eq!(seen.header("anthropic-beta"), Some("files-api-2025-04-14"));
    let seen = seen_upstream(&app, &upstream, "2023-01-01", "output-300k-2026-03-24").await;
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen.header("anthropic-beta"), None);
    let seen = seen_upstream(&app, &upstream, "2023-06-01", "pdfs-2024-09-25").await;
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen.header("anthropic-beta"), Some("pdfs-2024-09-25"));

    // A backend pinned to one version sends it whatever the batch's.
    let (pinned, app) =
        recording_upstream(|spec| spec.anthropic_version = Some("2023-06-01".into())).await;
    let seen = seen_upstream(&app, &pinned, "2026-10-21", "pdfs-2024-09-25").await;
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
}

#[tokio::test]
async fn the_batch_only_300k_beta_is_not_forwarded_to_messages() {
    let (upstream, app) = recording_upstream(|_| {}).await;
    for (sent, forwarded) in [
        (
            "output-300k-2026-03-24,extended-cache-ttl-2025-04-11",
            Some("extended-cache-ttl-2025-04-11"),
        ),
        ("output-300k-2026-03-24", None),
    ] {
        let seen = seen_upstream(&app, &upstream, VERSION, sent).await;
        assert_eq!(seen.header("anthropic-beta"), forwarded, "sent: {sent}");
    }
}

#[tokio::test]
async fn a_model_no_backend_serves_is_not_found() {
    let upstream = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let mut spec = backend(Kind::Anthropic, &upstream);
    spec.models = vec!["claude-*".into()];
    let app = serve_with(spec).await;
    let mut other = saying("gpt", "hi");
    other["params"]["model"] = json!("gpt-4o");
    let results = run(&app, vec![saying("claude", "hi"), other]).await;
    assert_eq!(results["claude"]["type"], "succeeded");
    assert_eq!(
        error_of(&results["gpt"]),
        ("not_found_error", "model: gpt-4o")
    );
    assert_eq!(upstream.stats().total_requests(), 1);
}

#[tokio::test]
async fn transient_failures_are_retried_until_they_clear() {
    let upstream = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let mut spec = backend(Kind::Anthropic, &upstream);
    spec.timeout = Duration::from_millis(500);
    let app = serve_with(spec).await;
    let faults = [
        ("overloaded", "[[fake:fail=2,status=529]]", 3),
        ("limited", "[[fake:fail=1,status=429,retry_after_ms=50]]", 2),
        ("broken", "[[fake:fail=1,status=500]]", 2),
        ("bad-gateway", "[[fake:fail=1,status=502]]", 2),
        ("unavailable", "[[fake:fail=1,status=503]]", 2),
        ("gateway-timeout", "[[fake:fail=1,status=504]]", 2),
        ("reset", "[[fake:fail=1,kind=reset]]", 2),
        ("hang", "[[fake:fail=1,kind=hang]]", 2),
        ("garbage", "[[fake:fail=1,kind=malformed]]", 2),
        ("fine", "no directive", 1),
    ];
    let results = run(
        &app,
        faults
            .iter()
            .map(|(id, text, _)| saying(id, text))
            .collect(),
    )
    .await;
    for (id, _, _) in &faults {
        assert_eq!(results[*id]["type"], "succeeded", "{id}: {}", results[*id]);
    }
    let attempts: u64 = faults.iter().map(|f| f.2).sum();
    assert_eq!(upstream.stats().total_requests(), attempts);
}

#[tokio::test]
async fn retries_stop_at_the_attempt_budget() {
    let upstream = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let mut spec = backend(Kind::Anthropic, &upstream);
    spec.max_attempts = 3;
    let app = serve_with(spec).await;
    let results = run(&app, vec![saying("doomed", "[[fake:always,status=529]]")]).await;
    let (kind, message) = error_of(&results["doomed"]);
    assert_eq!(kind, "overloaded_error");
    assert!(message.ends_with("(gave up after 3 attempts)"), "{message}");
    assert_eq!(upstream.stats().total_requests(), 3);
}

#[tokio::test]
async fn upstream_validation_errors_are_final_and_keep_type_and_message() {
    let upstream = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let app = serve_with(backend(Kind::Anthropic, &upstream)).await;
    let results = run(
        &app,
        vec![
            saying(
                "invalid",
                "[[fake:always,status=400,message=max_tokens: 64 > 32 allowed]]",
            ),
            saying("missing", "[[fake:always,status=404,message=model: nope]]"),
        ],
    )
    .await;
    assert_eq!(
        error_of(&results["invalid"]),
        ("invalid_request_error", "max_tokens: 64 > 32 allowed")
    );
    assert_eq!(
        error_of(&results["missing"]),
        ("not_found_error", "model: nope")
    );
    assert_eq!(upstream.stats().total_requests(), 2, "never retried");
    for result in results.values() {
        assert!(!result.to_string().contains(UPSTREAM_KEY));
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let upstream = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let app = serve_with(backend(Kind::Anthropic, &upstream)).await;
    let results = run(
        &app,
        vec![saying("later", "[[fake:fail=1,status=429,retry_after=1]]")],
    )
    .await;
    assert_eq!(results["later"]["type"], "succeeded");
    let arrivals = upstream.stats().arrivals();
    assert_eq!(arrivals.len(), 2);
    let waited = arrivals[1] - arrivals[0];
    assert!(waited >= Duration::from_millis(990), "{waited:?}");
}

#[tokio::test]
async fn no_retry_is_scheduled_past_the_batch_expiry() {
    let upstream = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let spec = backend(Kind::Anthropic, &upstream);
    let app = spawn_with(|o| {
        o.backends = vec![spec];
        o.batch_expiry = Duration::from_secs(3);
    })
    .await;
    let started = std::time::Instant::now();
    let results = run(
        &app,
        vec![saying(
            "too-late",
            "[[fake:fail=1,status=429,retry_after=30]]",
        )],
    )
    .await;
    let (kind, _) = error_of(&results["too-late"]);
    assert_eq!(kind, "rate_limit_error");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered at once, not at expiry"
    );
    assert_eq!(upstream.stats().total_requests(), 1);
}

#[tokio::test]
async fn concurrency_never_exceeds_the_backend_limit() {
    let upstream = FakeUpstream::start(FakeConfig::default().latency(Duration::from_millis(20)))
        .await
        .unwrap();
    let mut spec = backend(Kind::Anthropic, &upstream);
    spec.max_concurrency = 4;
    let app = serve_with(spec).await;
    let results = run(
        &app,
        (0..120).map(|i| saying(&format!("r{i}"), "go")).collect(),
    )
    .await;
    assert_eq!(results.len(), 120);
    assert!(results.values().all(|r| r["type"] == "succeeded"));
    assert_eq!(upstream.stats().max_in_flight(), 4);
}

#[tokio::test]
async fn requests_per_minute_are_paced() {
    let upstream = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let mut spec = backend(Kind::Anthropic, &upstream);
    spec.requests_per_minute = 1_200; // one every 50 ms
    let app = serve_with(spec).await;
    run(
        &app,
        (0..20).map(|i| saying(&format!("r{i}"), "go")).collect(),
    )
    .await;
    let mut arrivals = upstream.stats().arrivals();
    arrivals.sort();
    assert_eq!(arrivals.len(), 20);
    // Sends are spaced 50 ms apart; arrivals carry scheduling jitter on a loaded machine, so
    // judge windows of five: 200 ms of schedule, less a generous 30 ms of jitter.
    for window in arrivals.windows(5) {
        let span = window[4] - window[0];
        assert!(span >= Duration::from_millis(170), "{span:?}");
    }
    let total = arrivals[19] - arrivals[0];
    assert!(total >= Duration::from_millis(19 * 50 - 30), "{total:?}");
}

#[tokio::test]
async fn a_small_batch_is_not_stuck_behind_a_large_one() {
    let upstream = FakeUpstream::start(FakeConfig::default().latency(Duration::from_millis(10)))
        .await
        .unwrap();
    let mut spec = backend(Kind::Anthropic, &upstream);
    spec.max_concurrency = 8;
    let app = spawn_with(|o| {
        o.backends = vec![spec];
        o.concurrency = 8;
    })
    .await;
    // About 3,000 × 10 ms / 8 ≈ 4 s of work.
    let large = app
        .create((0..3_000).map(|i| saying(&format!("l{i}"), "go")).collect())
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let small = app
        .create((0..10).map(|i| saying(&format!("s{i}"), "go")).collect())
        .await;
    app.wait_ended(small["id"].as_str().unwrap(), Duration::from_secs(20))
        .await;
    let large = app.batch(large["id"].as_str().unwrap()).await;
    assert_eq!(
        large["processing_status"], "in_progress",
        "the small batch ended first"
    );
    // The other workspace's batch is served beside this one's too.
    let other = app.as_key(KEY_B);
    let theirs = other
        .create((0..10).map(|i| saying(&format!("b{i}"), "go")).collect())
        .await;
    other
        .wait_ended(theirs["id"].as_str().unwrap(), Duration::from_secs(20))
        .await;
    let large = app.batch(large["id"].as_str().unwrap()).await;
    assert_eq!(large["processing_status"], "in_progress");
}

#[tokio::test]
async fn attempt_counts_and_back_off_survive_a_restart() {
    let upstream = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let mut spec = backend(Kind::Anthropic, &upstream);
    spec.max_attempts = 2;
    let restart_spec = spec.clone();
    let app = spawn_with(|o| {
        o.backends = vec![spec];
        // Long enough to restart inside it.
        o.retry_base_delay = Duration::from_secs(4);
    })
    .await;
    let batch = app
        .create(vec![saying("flaky", "[[fake:fail=2,status=503]]")])
        .await;
    let id = batch["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while upstream.stats().total_requests() < 1 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Give the recorder a moment to store the retry, then restart.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let data_dir = app.data_dir.clone();
    let dir = app.stop().await;
    let app = start_in(data_dir, |o| {
        o.backends = vec![restart_spec];
        o.retry_base_delay = Duration::from_secs(4);
    })
    .await;
    app.wait_ended(&id, Duration::from_secs(30)).await;
    let results = app.results(&id).await;
    // Attempt 2 of 2 (not attempt 1 of a fresh budget): the stored count survived.
    let (kind, message) = error_of(&results[0]["result"]);
    assert_eq!(kind, "api_error");
    assert!(message.ends_with("(gave up after 2 attempts)"), "{message}");
    let arrivals = upstream.stats().arrivals();
    assert_eq!(arrivals.len(), 2);
    // Half the back-off at least (jitter), though the process restarted in between.
    assert!(arrivals[1] - arrivals[0] >= Duration::from_secs(2));
    drop(dir);
}

#[tokio::test]
async fn openai_backend_translates_both_ways() {
    let upstream = FakeUpstream::start(FakeConfig::default().record_requests(10))
        .await
        .unwrap();
    let app = serve_with(backend(Kind::Openai, &upstream)).await;
    let mut document = saying("document", "read this");
    document["params"]["messages"][0]["content"] = json!([
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
    ]);
    let mut chat = saying("chat", "Hello there friend");
    chat["params"]["system"] = json!("Be brief.");
    chat["params"]["stop_sequences"] = json!(["END"]);
    let results = run(&app, vec![chat, document]).await;

    let message = &results["chat"]["message"];
    assert_eq!(results["chat"]["type"], "succeeded", "{}", results["chat"]);
    assert_eq!(message["type"], "message");
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["usage"]["service_tier"], "batch");
    assert!(
        message["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Hello")
    );

    let (kind, message) = error_of(&results["document"]);
    assert_eq!(kind, "invalid_request_error");
    assert!(message.contains("document"), "{message}");

    assert_eq!(
        upstream.stats().requests(Endpoint::ChatCompletions),
        1,
        "the document was never sent"
    );
    let seen = upstream.stats().last_request().unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some(&*format!("Bearer {UPSTREAM_KEY}"))
    );
    let body = seen.json();
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(body["stop"], json!(["END"]));
    assert_eq!(body["max_tokens"], 64);
}

#[tokio::test]
async fn an_upstream_outage_costs_no_request() {
    // A port with nothing listening yet: every connection is refused until the upstream starts.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut spec = BackendSpec {
        base_url: format!("http://{addr}"),
        max_attempts: 2,
        ..backend(
            Kind::Anthropic,
            &FakeUpstream::start(FakeConfig::default()).await.unwrap(),
        )
    };
    spec.name = "down".into();
    // The breaker opens at the third failure in a row, so the first round's failures must all
    // be counted before any request's second attempt: with 20 ms retries (10-20 ms with
    // jitter) a fresh-clone CI run, its tests in parallel on two cores, once spent one
    // request's second attempt first. 200 ms leaves room, and the breaker then re-probes every
    // 200 ms of the outage.
    let app = spawn_with(|o| {
        o.backends = vec![spec];
        o.retry_base_delay = Duration::from_millis(200);
        o.retry_max_delay = Duration::from_millis(200);
    })
    .await;
    let batch = app
        .create((0..20).map(|i| saying(&format!("r{i}"), "go")).collect())
        .await;
    let id = batch["id"].as_str().unwrap().to_owned();
    // Two attempts each would be spent within half a second without the breaker.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let progress: Value = app
        .get(&format!("/v1/messages/batches/{id}/progress"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(progress["processing_status"], "in_progress", "{progress}");
    assert_eq!(progress["request_counts"]["errored"], 0, "{progress}");

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let upstream = FakeUpstream::start_on(listener, FakeConfig::default()).unwrap();
    app.wait_ended(&id, Duration::from_secs(30)).await;
    let results = app.results(&id).await;
    assert_eq!(results.len(), 20);
    assert!(
        results.iter().all(|l| l["result"]["type"] == "succeeded"),
        "{results:?}"
    );
    assert_eq!(upstream.stats().total_requests(), 20);
}

/// How long a 40-request batch for `fast` (models `claude-*`) takes when a 20-request batch for
/// `slow` (models `slow-*`), many seconds of work, was queued 300 ms before it, with 4 dispatch
/// slots in all. The slow batch must still be running at the end.
async fn fast_batch_behind_a_slow_one(slow: BackendSpec, fast: BackendSpec) -> Duration {
    let slow = BackendSpec {
        name: "slow".into(),
        models: vec!["slow-*".into()],
        ..slow
    };
    let fast = BackendSpec {
        name: "fast".into(),
        ..fast
    };
    let app = spawn_with(|o| {
        o.backends = vec![slow, fast];
        o.concurrency = 4;
    })
    .await;
    let to = |model: &str, i: usize| {
        let mut r = saying(&format!("{model}{i}"), "go");
        r["params"]["model"] = json!(model);
        r
    };
    let slow_batch = app
        .create((0..20).map(|i| to("slow-model", i)).collect())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let fast_batch = app
        .create((0..40).map(|i| to("claude-fast", i)).collect())
        .await;
    app.wait_ended(fast_batch["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    let took = started.elapsed();
    let slow_batch = app.batch(slow_batch["id"].as_str().unwrap()).await;
    assert_eq!(slow_batch["processing_status"], "in_progress");
    took
}

#[tokio::test]
async fn a_rate_limited_backend_does_not_hold_the_dispatch_slots_of_another() {
    let upstream = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let slow = BackendSpec {
        requests_per_minute: 60, // one a second: twenty seconds of work
        ..backend(Kind::Anthropic, &upstream)
    };
    let took = fast_batch_behind_a_slow_one(slow, backend(Kind::Anthropic, &upstream)).await;
    assert!(
        took < Duration::from_secs(3),
        "the fast batch took {took:?}"
    );
}

#[tokio::test]
async fn a_backend_at_its_concurrency_limit_does_not_hold_the_dispatch_slots_of_another() {
    // One at a time, two seconds each: forty seconds of work. At most two of the four dispatch
    // slots may wait for it (one at the upstream, one queued); without that bound all four
    // would, and the fast batch would move one request per slow answer.
    let slow_upstream = FakeUpstream::start(FakeConfig::default().latency(Duration::from_secs(2)))
        .await
        .unwrap();
    let fast_upstream = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let slow = BackendSpec {
        max_concurrency: 1,
        ..backend(Kind::Anthropic, &slow_upstream)
    };
    let took = fast_batch_behind_a_slow_one(slow, backend(Kind::Anthropic, &fast_upstream)).await;
    assert!(
        took < Duration::from_secs(3),
        "the fast batch took {took:?}"
    );
}

/// The value of `batchd_backend_concurrency_limit` for `backend` on `/metrics`.
async fn concurrency_limit(app: &TestApp, backend: &str) -> f64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("batchd_backend_concurrency_limit{{backend=\"{backend}\"}} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&series))
        .unwrap_or_else(|| panic!("no {series}in\n{text}"));
    line[series.len()..].parse().unwrap()
}

#[tokio::test]
async fn adaptive_concurrency_halves_on_429_and_climbs_back_on_success() {
    let upstream = FakeUpstream::start(FakeConfig::default().latency(Duration::from_millis(20)))
        .await
        .unwrap();
    let app = serve_with(BackendSpec {
        name: "aimd".into(),
        max_concurrency: 8,
        ..backend(Kind::Anthropic, &upstream)
    })
    .await;
    // Every first attempt is rate limited. Those answers arrive within one cooldown, so the
    // limit halves once (8 → 4), then each success grows it by 1/limit: 16 of them reach ~7.
    let throttled = (0..16)
        .map(|i| saying(&format!("t{i}"), "[[fake:fail=1,status=429]]"))
        .collect();
    let results = run(&app, throttled).await;
    assert!(results.values().all(|r| r["type"] == "succeeded"));
    let after_throttling = concurrency_limit(&app, "aimd").await;
    assert!(
        (4.0..8.0).contains(&after_throttling),
        "limit after the 429s: {after_throttling}"
    );
    run(
        &app,
        (0..40).map(|i| saying(&format!("ok{i}"), "go")).collect(),
    )
    .await;
    assert_eq!(
        concurrency_limit(&app, "aimd").await,
        8.0,
        "back to its maximum"
    );
}
