//! Operator endpoints (`/healthz`, `/readyz`, `/metrics`) and the live progress extension.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn health_and_readiness_need_no_key() {
    let app = spawn().await;
    for (path, body) in [
        ("/healthz", r#"{"status":"ok"}"#),
        ("/readyz", r#"{"status":"ready"}"#),
    ] {
        let resp = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers().contains_key("request-id"));
        assert_eq!(resp.text().await.unwrap(), body);
    }
    let resp = app
        .client
        .post(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_error(resp, 405, "invalid_request_error", "Method not allowed").await;
}

#[tokio::test]
async fn metrics_describe_http_dispatch_and_storage() {
    let app = spawn().await;
    let id = app.create_n(5).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(20)).await;
    let resp = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    for needle in [
        "batchd_http_requests_total{method=\"POST\",route=\"/v1/messages/batches\",status=\"200\"}",
        "batchd_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/messages/batches/{id}\"",
        "batchd_requests_finished_total{outcome=\"succeeded\"}",
        "batchd_batches_ended_total{reason=\"completed\"}",
        "batchd_upstream_requests_total{backend=\"mock\",result=\"ok\",attempt=\"first\"}",
        "batchd_upstream_request_duration_seconds_bucket{backend=\"mock\"",
        "batchd_store_operation_duration_seconds_bucket{op=\"record\"",
        "batchd_batches{processing_status=\"in_progress\"}",
        "batchd_requests_queued",
        "# TYPE batchd_http_requests_total counter",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    let finished: f64 = text
        .lines()
        .find(|l| l.starts_with("batchd_requests_finished_total{outcome=\"succeeded\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(finished >= 5.0, "{finished}");
}

#[tokio::test]
async fn progress_moves_while_the_documented_counts_wait_for_the_end() {
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_millis(150);
        o.mock_concurrency = 2;
        o.concurrency = 2;
    })
    .await;
    let id = app.create_n(12).await["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let live = loop {
        let p: Value = app
            .get(&format!("/v1/messages/batches/{id}/progress"))
            .await
            .json()
            .await
            .unwrap();
        if p["request_counts"]["succeeded"].as_u64().unwrap() >= 2
            && p["processing_status"] == "in_progress"
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no progress: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(live["type"], "message_batch_progress");
    assert_eq!(live["total"], 12);
    let c = &live["request_counts"];
    assert_eq!(
        c["processing"].as_u64().unwrap() + c["succeeded"].as_u64().unwrap(),
        12
    );
    assert!(live["requests_per_second"].as_f64().unwrap() > 0.0);
    assert!(live["eta_seconds"].as_f64().unwrap() > 0.0);
    // The documented object still shows everything as processing.
    assert_eq!(counts(&app.batch(&id).await), [12, 0, 0, 0, 0]);

    app.wait_ended(&id, Duration::from_secs(20)).await;
    let done: Value = app
        .get(&format!("/v1/messages/batches/{id}/progress"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["processing_status"], "ended");
    assert_eq!(done["request_counts"]["succeeded"], 12);
    assert!(done["eta_seconds"].is_null());
    let missing = app
        .as_key(KEY_B)
        .get(&format!("/v1/messages/batches/{id}/progress"))
        .await;
    assert_error(
        missing,
        404,
        "not_found_error",
        &format!("Message Batch {id} not found."),
    )
    .await;
}

/// Any method string a client sends reaches the request metrics; unless the labels come from a
/// closed set, each one is a new series kept for the life of the process, and no key is needed
/// to send them.
#[tokio::test]
async fn unknown_methods_do_not_grow_metrics() {
    const METHODS: usize = 2_000;
    const SENDERS: usize = 8;
    let app = spawn().await;
    let scrape = async || {
        let resp = app.get("/metrics").await;
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    };
    let before = scrape().await.len();
    let url = format!("{}/healthz", app.base);
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let client = app.client.clone();
        let url = url.clone();
        senders.push(tokio::spawn(async move {
            for i in (sender..METHODS).step_by(SENDERS) {
                let method = reqwest::Method::from_bytes(format!("XM{i:05}Q").as_bytes()).unwrap();
                let resp = client.request(method, &url).send().await.unwrap();
                assert_eq!(resp.status(), 405);
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }

    let text = scrape().await;
    // The recorder is shared by every test of this binary, so the whole text also holds the
    // series other tests add (bounded, but growing with the suite). What these requests can
    // add is judged by the growth and by the `/healthz` series, which only requests to
    // `/healthz` make: 2,000 methods without the closed set add megabytes and 2,000 series.
    println!("/metrics: {before} bytes before, {} after", text.len());
    assert!(
        text.len() < before + 50_000,
        "/metrics grew from {before} to {} bytes",
        text.len()
    );
    assert!(
        !text.contains("XM0"),
        "a client's method string became a label"
    );
    let healthz: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("batchd_http_requests_total{") && l.contains("route=\"/healthz\"")
        })
        .collect();
    assert!(healthz.len() <= 10, "{} /healthz series", healthz.len());
    assert!(
        healthz
            .iter()
            .any(|l| l.contains("method=\"other\",route=\"/healthz\",status=\"405\"")),
        "unknown methods are counted as other:\n{}",
        healthz.join("\n")
    );
}

/// A gauge's value in a Prometheus scrape.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The webhook backlog is scraped: nothing waits at first; a delivery whose receiver never
/// answers stays due while it is being sent, so the delivery lag grows (the outbox's age is
/// pinned by the store's conformance case: here the worker empties it at once).
#[tokio::test]
async fn metrics_show_the_webhook_backlog() {
    let app = spawn_with(|o| {
        o.webhook_allow_http = true;
        o.webhook_allow_private = true;
    })
    .await;
    let scrape = || async {
        app.client
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // The recorder is the process's, shared with the other tests' servers: a scrape of theirs
    // may set a gauge between this one's read and render, so only "small" is certain here.
    let text = scrape().await;
    for name in [
        "batchd_webhook_outbox_oldest_age_seconds",
        "batchd_webhook_delivery_lag_seconds",
    ] {
        let value = gauge(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        assert!(value < 1.0, "{name} {value}");
    }

    // A receiver that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    let resp = app
        .post("/v1/batchd/webhooks", &serde_json::json!({ "url": url }))
        .await;
    assert_eq!(resp.status(), 200);
    let id = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(20)).await;
    // The attempt's timeout is 10 s: well before it, the lag passes a second.
    let deadline = Instant::now() + Duration::from_secs(9);
    loop {
        let text = scrape().await;
        let lag = gauge(&text, "batchd_webhook_delivery_lag_seconds").unwrap();
        if lag >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "lag {lag}\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    held.abort();
}
