//! `batchd-client` against a real batchd (and, for retries and header checks, against tiny
//! scripted fakes): every method, auto-pagination both ways, results streaming over pages,
//! typed errors, the beta namespace, and the SDK retry policy.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use batchd_client::{
    BatchRequest, BatchResult, Client, CreateBatch, Error, ListParams, MessageBatch,
    ProcessingStatus,
};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::helpers::*;

fn client(app: &TestApp) -> Client {
    Client::builder(app.base.clone(), app.key)
        .no_proxy()
        .build()
        .unwrap()
}

fn body(n: usize, prefix: &str) -> CreateBatch {
    CreateBatch {
        requests: (0..n)
            .map(|i| {
                let r = request(&format!("{prefix}{i}"));
                BatchRequest {
                    custom_id: r["custom_id"].as_str().unwrap().to_owned(),
                    params: serde_json::value::to_raw_value(&r["params"]).unwrap(),
                }
            })
            .collect(),
    }
}

async fn wait_ended(client: &Client, id: &str, timeout: Duration) -> MessageBatch {
    let deadline = Instant::now() + timeout;
    loop {
        let b = client.retrieve(id).await.unwrap();
        if b.processing_status == ProcessingStatus::Ended {
            return b;
        }
        assert!(Instant::now() < deadline, "{id} did not end: {b:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_method_against_batchd() {
    let app = spawn().await;
    let c = client(&app);

    let created = c.create(&body(3, "r")).await.unwrap();
    assert!(created.id.starts_with("msgbatch_"));
    assert_eq!(created.processing_status, ProcessingStatus::InProgress);
    assert_eq!(created.request_counts.processing, 3);
    assert!(created.results_url.is_none());

    let got = c.retrieve(&created.id).await.unwrap();
    assert_eq!(got.id, created.id);
    assert_eq!(got.created_at, created.created_at);

    let page = c.list(&ListParams::default()).await.unwrap();
    assert_eq!(page.data.len(), 1);
    assert_eq!(page.first_id.as_deref(), Some(created.id.as_str()));
    assert!(!page.has_more);

    let ended = wait_ended(&c, &created.id, Duration::from_secs(20)).await;
    assert_eq!(ended.request_counts.succeeded, 3);
    let url = ended.results_url.as_deref().unwrap();
    assert!(url.starts_with(&app.base), "{url}");

    let results: Vec<_> = c
        .results(&created.id)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let ids: HashSet<_> = results.iter().map(|r| r.custom_id.as_str()).collect();
    assert_eq!(ids, HashSet::from(["r0", "r1", "r2"]));
    assert!(
        results
            .iter()
            .all(|r| matches!(r.result, BatchResult::Succeeded { .. }))
    );

    // The raw bytes are exactly what the server sends.
    let raw: Vec<_> = c
        .results_raw(&created.id)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let raw: Vec<u8> = raw.concat();
    let direct = app
        .get(&format!("/v1/messages/batches/{}/results", created.id))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(raw, direct.to_vec());

    // Cancel of an ended batch: whatever the server decides, the client reports it typed.
    match c.cancel(&created.id).await {
        Ok(b) => assert_eq!(b.processing_status, ProcessingStatus::Ended),
        Err(e) => assert!(e.is_invalid_request(), "{e}"),
    }

    let deleted = c.delete(&created.id).await.unwrap();
    assert_eq!(deleted.id, created.id);
    assert_eq!(
        serde_json::to_value(&deleted).unwrap(),
        json!({"id": created.id, "type": "message_batch_deleted"})
    );
    let err = c.retrieve(&created.id).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // Client-side validation, like the SDKs.
    assert!(matches!(c.retrieve("").await, Err(Error::Invalid(_))));
}

#[tokio::test]
async fn list_all_paginates_in_both_directions() {
    let app = spawn().await;
    let c = client(&app);
    let mut created = Vec::new();
    for i in 0..6 {
        created.push(c.create(&body(1, &format!("b{i}-"))).await.unwrap().id);
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    for limit in [1, 2, 4, 6, 100] {
        let all: Vec<String> = c
            .list_all(ListParams {
                limit: Some(limit),
                ..Default::default()
            })
            .map_ok(|b| b.id)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(all, newest_first, "limit {limit}");
    }

    // after_id: everything older than the second newest.
    let older: Vec<String> = c
        .list_all(ListParams {
            limit: Some(2),
            after_id: Some(newest_first[1].clone()),
            ..Default::default()
        })
        .map_ok(|b| b.id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(older, newest_first[2..].to_vec());

    // before_id: pages walk towards newer batches, each page newest-first, via first_id.
    let newer: Vec<String> = c
        .list_all(ListParams {
            limit: Some(2),
            before_id: Some(newest_first[5].clone()),
            ..Default::default()
        })
        .map_ok(|b| b.id)
        .try_collect()
        .await
        .unwrap();
    let expected: Vec<String> = [3, 4, 1, 2, 0]
        .iter()
        .map(|&i| newest_first[i].clone())
        .collect();
    assert_eq!(newer, expected);

    // The beta namespace paginates the same way.
    let beta = Client::builder(app.base.clone(), KEY_A)
        .no_proxy()
        .beta_namespace(true)
        .build()
        .unwrap();
    let all: Vec<String> = beta
        .list_all(ListParams {
            limit: Some(4),
            ..Default::default()
        })
        .map_ok(|b| b.id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all, newest_first);

    // Another workspace sees nothing.
    let other = Client::builder(app.base.clone(), KEY_B)
        .no_proxy()
        .build()
        .unwrap();
    let none: Vec<MessageBatch> = other
        .list_all(ListParams::default())
        .try_collect()
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn results_stream_thousands_of_lines_across_pages() {
    let app = spawn().await;
    let c = client(&app);
    let n = 2_500;
    let batch = c.create(&body(n, "row-")).await.unwrap();
    wait_ended(&c, &batch.id, Duration::from_secs(60)).await;

    let mut stream = c.results(&batch.id).await.unwrap();
    let mut ids = HashSet::new();
    while let Some(line) = stream.next().await {
        let line = line.unwrap();
        assert!(matches!(line.result, BatchResult::Succeeded { .. }));
        assert!(ids.insert(line.custom_id));
    }
    assert_eq!(ids.len(), n);

    let lines: Vec<_> = c
        .results_lines(&batch.id)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(lines.len(), n);
    assert_eq!(lines.last().unwrap().number, n as u64);
}

#[tokio::test]
async fn typed_errors_from_batchd() {
    let app = spawn().await;
    let c = client(&app);

    let err = c.retrieve("msgbatch_nope").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.kind(), Some("not_found_error"));
    let Error::Api {
        status,
        message,
        request_id,
        body,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(status.as_u16(), 404);
    assert_eq!(message, "Message Batch msgbatch_nope not found.");
    let rid = request_id.as_deref().expect("request-id header");
    assert!(rid.starts_with("req_"), "{rid}");
    assert!(body.contains(rid));
    assert_eq!(
        err.to_string(),
        format!("not_found_error: Message Batch msgbatch_nope not found. (request-id {rid})")
    );
    // Results of an unknown batch fail at the retrieve step.
    assert!(
        c.results("msgbatch_nope")
            .await
            .err()
            .unwrap()
            .is_not_found()
    );

    let bad = Client::builder(app.base.clone(), "sk-wrong")
        .no_proxy()
        .build()
        .unwrap();
    let err = bad.list(&ListParams::default()).await.unwrap_err();
    assert!(err.is_authentication(), "{err}");
    assert_eq!(err.kind(), Some("authentication_error"));
    assert!(err.request_id().is_some());

    let err = c
        .list(&ListParams {
            limit: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.is_invalid_request(), "{err}");
}

#[tokio::test]
async fn in_progress_batches_cannot_be_deleted_and_cancel_ends_them() {
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_secs(3);
        o.mock_concurrency = 1;
        o.concurrency = 1;
    })
    .await;
    let c = client(&app);
    let batch = c.create(&body(4, "slow-")).await.unwrap();

    let err = c.delete(&batch.id).await.unwrap_err();
    assert!(err.is_invalid_request(), "{err}");
    let Error::Api { kind, message, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(kind, "invalid_request_error");
    assert_eq!(
        message,
        "In progress batches cannot be deleted. Consider canceling the batch instead."
    );

    // No results_url yet: the client refuses before downloading, like the SDKs.
    match c.results(&batch.id).await {
        Err(Error::NoResults { id, status }) => {
            assert_eq!(id, batch.id);
            assert_eq!(status, ProcessingStatus::InProgress);
        }
        other => panic!("expected NoResults, got {:?}", other.err()),
    }

    let canceling = c.cancel(&batch.id).await.unwrap();
    assert_eq!(canceling.processing_status, ProcessingStatus::Canceling);
    assert!(canceling.cancel_initiated_at.is_some());

    let ended = wait_ended(&c, &batch.id, Duration::from_secs(30)).await;
    assert!(ended.request_counts.canceled >= 1, "{ended:?}");
    let results: Vec<_> = c
        .results(&batch.id)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(results.len(), 4);
    assert!(
        results
            .iter()
            .any(|r| matches!(r.result, BatchResult::Canceled))
    );
    c.delete(&batch.id).await.unwrap();
}

#[tokio::test]
async fn beta_namespace_against_batchd() {
    let app = spawn().await;
    let c = Client::builder(app.base.clone(), KEY_A)
        .no_proxy()
        .beta_namespace(true)
        .build()
        .unwrap();
    let batch = c.create(&body(2, "beta-")).await.unwrap();
    assert_eq!(c.retrieve(&batch.id).await.unwrap().id, batch.id);
    wait_ended(&c, &batch.id, Duration::from_secs(20)).await;
    let results: Vec<_> = c
        .results(&batch.id)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(c.delete(&batch.id).await.unwrap().id, batch.id);
}

// ---- scripted fakes ----

/// What a fake saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

struct Fake {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// An HTTP server that answers request number `n` (0-based) with `respond(n, &seen, base)`.
async fn fake<F>(respond: F) -> Fake
where
    F: Fn(usize, &Seen, &str) -> Response + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let respond = Arc::new(respond);
    let (log, fake_base) = (seen.clone(), base.clone());
    let app = axum::Router::new().fallback(move |req: Request| {
        let (log, respond, base) = (log.clone(), respond.clone(), fake_base.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
            let s = Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts.headers,
                body,
            };
            let n = {
                let mut log = log.lock().unwrap();
                log.push(s.clone());
                log.len() - 1
            };
            respond(n, &s, &base)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fake { base, seen }
}

fn batch_json(id: &str, status: &str, results_url: Option<&str>) -> Value {
    json!({
        "id": id, "type": "message_batch", "processing_status": status,
        "request_counts": {"processing": 0, "succeeded": 1, "errored": 0, "canceled": 0, "expired": 0},
        "ended_at": null, "created_at": "2025-01-29T14:25:40.141141+00:00",
        "expires_at": "2025-01-30T14:25:40.141141+00:00", "archived_at": null,
        "cancel_initiated_at": null, "results_url": results_url
    })
}

fn respond(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut r = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(body.into()).unwrap()
}

fn overloaded(extra: &[(&str, &str)]) -> Response {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("request-id", "req_overloaded"),
    ];
    headers.extend_from_slice(extra);
    respond(
        529,
        &headers,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_overloaded"}"#,
    )
}

fn ok_json(v: &Value) -> Response {
    respond(200, &[("content-type", "application/json")], v.to_string())
}

fn fake_client(fake: &Fake) -> batchd_client::ClientBuilder {
    Client::builder(fake.base.clone(), "sk-fake").no_proxy()
}

#[tokio::test]
async fn retries_a_529_then_succeeds() {
    let f = fake(|n, _, _| {
        if n == 0 {
            overloaded(&[("retry-after-ms", "20")])
        } else {
            ok_json(&batch_json("msgbatch_r", "in_progress", None))
        }
    })
    .await;
    let c = fake_client(&f).build().unwrap();
    let b = c.retrieve("msgbatch_r").await.unwrap();
    assert_eq!(b.id, "msgbatch_r");
    let seen = f.seen();
    assert_eq!(seen.len(), 2, "one retry");
    let counts: Vec<_> = seen
        .iter()
        .map(|s| {
            s.headers["x-stainless-retry-count"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(counts, ["0", "1"]);
}

#[tokio::test]
async fn x_should_retry_false_is_not_retried() {
    let f = fake(|_, _, _| overloaded(&[("x-should-retry", "false")])).await;
    let c = fake_client(&f).build().unwrap();
    let err = c.retrieve("msgbatch_r").await.unwrap_err();
    assert!(err.is_overloaded(), "{err}");
    assert_eq!(err.kind(), Some("overloaded_error"));
    assert_eq!(err.request_id(), Some("req_overloaded"));
    assert_eq!(f.seen().len(), 1);

    // And `x-should-retry: true` makes even a 400 retryable.
    let f = fake(|n, _, _| {
        if n == 0 {
            respond(
                400,
                &[("x-should-retry", "true"), ("retry-after-ms", "1")],
                "nope",
            )
        } else {
            ok_json(&batch_json("msgbatch_r", "ended", None))
        }
    })
    .await;
    fake_client(&f)
        .build()
        .unwrap()
        .retrieve("msgbatch_r")
        .await
        .unwrap();
    assert_eq!(f.seen().len(), 2);
}

#[tokio::test]
async fn gives_up_after_max_retries_and_keeps_4xx_unretried() {
    let f = fake(|_, _, _| respond(500, &[("retry-after-ms", "1")], "<html>oops</html>")).await;
    let err = fake_client(&f)
        .max_retries(3)
        .build()
        .unwrap()
        .retrieve("x")
        .await
        .unwrap_err();
    assert_eq!(f.seen().len(), 4);
    assert!(err.is_server_error());
    assert_eq!(
        err.kind(),
        Some("api_error"),
        "non-envelope bodies get the status's type"
    );
    assert_eq!(err.request_id(), None);

    let f = fake(|_, _, _| respond(404, &[], "")).await;
    let err = fake_client(&f)
        .build()
        .unwrap()
        .retrieve("x")
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(f.seen().len(), 1);

    let f = fake(|_, _, _| overloaded(&[("retry-after-ms", "1")])).await;
    let err = fake_client(&f)
        .max_retries(0)
        .build()
        .unwrap()
        .retrieve("x")
        .await
        .unwrap_err();
    assert!(err.is_overloaded());
    assert_eq!(f.seen().len(), 1);
}

#[tokio::test]
async fn retries_dropped_connections() {
    // A raw TCP "server" that accepts and immediately closes every connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0usize));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            *counter.lock().unwrap() += 1;
            drop(socket);
        }
    });
    let c = Client::builder(format!("http://{addr}"), "k")
        .no_proxy()
        .max_retries(1)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = c.retrieve("x").await.unwrap_err();
    assert!(err.is_transport(), "{err:?}");
    assert_eq!(*accepted.lock().unwrap(), 2);
    // One back-off of 0.5 s minus at most 25 % jitter.
    assert!(started.elapsed() >= Duration::from_millis(375));
}

#[tokio::test]
async fn sends_sdk_headers_and_beta_namespace() {
    let f = fake(|_, s, _| {
        if s.method == "DELETE" {
            ok_json(&json!({"id": "msgbatch_h", "type": "message_batch_deleted"}))
        } else if s.method == "GET"
            && (s.uri == "/v1/messages/batches" || s.uri.starts_with("/v1/messages/batches?"))
        {
            ok_json(&json!({"data": [], "has_more": false, "first_id": null, "last_id": null}))
        } else {
            ok_json(&batch_json("msgbatch_h", "in_progress", None))
        }
    })
    .await;
    let c = fake_client(&f)
        .beta("output-300k-2026-03-24")
        .beta_namespace(true)
        .build()
        .unwrap();
    c.create(&body(1, "h")).await.unwrap();
    c.retrieve("msgbatch_h").await.unwrap();
    c.list(&ListParams {
        limit: Some(5),
        after_id: Some("msgbatch_a".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    c.cancel("msgbatch_h").await.unwrap();
    c.delete("msgbatch_h").await.unwrap();

    let seen = f.seen();
    let calls: Vec<(String, String)> = seen
        .iter()
        .map(|s| (s.method.clone(), s.uri.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            ("POST", "/v1/messages/batches?beta=true"),
            ("GET", "/v1/messages/batches/msgbatch_h?beta=true"),
            (
                "GET",
                "/v1/messages/batches?beta=true&limit=5&after_id=msgbatch_a"
            ),
            ("POST", "/v1/messages/batches/msgbatch_h/cancel?beta=true"),
            ("DELETE", "/v1/messages/batches/msgbatch_h?beta=true"),
        ]
        .map(|(m, u)| (m.to_owned(), u.to_owned()))
    );
    for s in &seen {
        let h = |k: &str| s.headers.get(k).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(h("x-api-key").as_deref(), Some("sk-fake"));
        assert_eq!(h("anthropic-version").as_deref(), Some("2023-06-01"));
        assert_eq!(
            h("anthropic-beta").as_deref(),
            Some("output-300k-2026-03-24,message-batches-2024-09-24")
        );
        assert_eq!(
            h("user-agent"),
            Some(format!("batchd-client/{}", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(h("x-stainless-retry-count").as_deref(), Some("0"));
        assert_eq!(h("accept").as_deref(), Some("application/json"));
        let has_body = s.method == "POST" && !s.uri.contains("/cancel");
        assert_eq!(
            h("content-type").as_deref(),
            has_body.then_some("application/json"),
            "{} {}",
            s.method,
            s.uri
        );
        assert_eq!(s.body.is_empty(), !has_body);
    }
    let sent: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(sent["requests"][0]["custom_id"], "h0");

    // Without the namespace: no query, no anthropic-beta.
    let plain = fake_client(&f).build().unwrap();
    plain.retrieve("msgbatch_h").await.unwrap();
    let last = f.seen().pop().unwrap();
    assert_eq!(last.uri, "/v1/messages/batches/msgbatch_h");
    assert!(!last.headers.contains_key("anthropic-beta"));
    plain.list(&ListParams::default()).await.unwrap();
    assert_eq!(f.seen().pop().unwrap().uri, "/v1/messages/batches");
}

#[tokio::test]
async fn results_url_is_dialled_verbatim_and_framing_is_strict() {
    let f = fake(|_, s, base| {
        let path = s.uri.as_str();
        if path.starts_with("/v1/messages/batches/msgbatch_ok") {
            let url = format!("{base}/somewhere/else.jsonl?sig=abc");
            ok_json(&batch_json("msgbatch_ok", "ended", Some(&url)))
        } else if path.starts_with("/v1/messages/batches/msgbatch_blank") {
            let url = format!("{base}/blank.jsonl");
            ok_json(&batch_json("msgbatch_blank", "ended", Some(&url)))
        } else if path.starts_with("/v1/messages/batches/msgbatch_rel") {
            ok_json(&batch_json("msgbatch_rel", "ended", Some("/relative/results")))
        } else if path == "/somewhere/else.jsonl?sig=abc" || path == "/relative/results" {
            respond(
                200,
                &[("content-type", "application/x-jsonl")],
                "{\"custom_id\":\"a\",\"result\":{\"type\":\"canceled\"}}\r\n{\"custom_id\":\"b\",\"result\":{\"type\":\"expired\"}}",
            )
        } else if path == "/blank.jsonl" {
            respond(
                200,
                &[],
                "{\"custom_id\":\"a\",\"result\":{\"type\":\"canceled\"}}\n\n{\"custom_id\":\"b\",\"result\":{\"type\":\"expired\"}}\n",
            )
        } else {
            respond(404, &[], "")
        }
    })
    .await;
    let c = fake_client(&f).beta_namespace(true).build().unwrap();

    let rows: Vec<_> = c
        .results("msgbatch_ok")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(matches!(rows[0].result, BatchResult::Canceled));
    assert!(matches!(rows[1].result, BatchResult::Expired));
    let seen = f.seen();
    assert_eq!(
        seen[1].uri, "/somewhere/else.jsonl?sig=abc",
        "no ?beta=true added"
    );
    assert_eq!(seen[1].headers["accept"], "application/x-jsonl");

    let rows: Vec<_> = c
        .results("msgbatch_rel")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);

    let got: Vec<_> = c.results("msgbatch_blank").await.unwrap().collect().await;
    assert_eq!(got.len(), 2, "the first line, then the error");
    assert!(got[0].is_ok());
    let err = got[1].as_ref().unwrap_err();
    assert!(
        matches!(err, Error::Decode(m) if m.contains("line 2 is blank")),
        "{err}"
    );
}
