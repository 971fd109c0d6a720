//! Completion webhooks across crashes and processes, in the real binary: a server SIGKILLed
//! while batches' deliveries are in flight (the receiver not answering), and again while the
//! receiver is down, delivers every event after its restart, each batch's under one
//! `webhook-id`, and each `webhook-id` accepted once; two processes on one PostgreSQL database
//! deliver every event once between them.
//!
//! The kill test runs on SQLite, or on PostgreSQL with `BATCHD_TEST_STORE=postgres` (as
//! `tests/crash.rs`); the two-process test needs `BATCHD_TEST_DATABASE_URL`.

#[path = "crash/server.rs"]
mod server;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use self::server::{Log, Server, client};

/// How the receiver treats a request.
const HANG: u8 = 0;
const DOWN: u8 = 1;
const UP: u8 = 2;

/// One request the receiver got: its `webhook-id`, the batch it is about, and whether it was
/// answered 2xx.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    batch: String,
    accepted: bool,
}

#[derive(Default)]
struct Receiver {
    mode: AtomicU8,
    seen: Mutex<Vec<Seen>>,
}

async fn hook(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let event: Value = serde_json::from_slice(&body).unwrap_or_default();
    let batch = event["data"]["id"].as_str().unwrap_or_default().to_owned();
    let mode = r.mode.load(Ordering::SeqCst);
    r.seen.lock().unwrap().push(Seen {
        id,
        batch,
        accepted: mode == UP,
    });
    match mode {
        // Longer than the send timeout: the attempt is in flight when the server is killed.
        HANG => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::SERVICE_UNAVAILABLE
        }
        DOWN => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::NO_CONTENT,
    }
}

async fn receiver(mode: u8) -> (Arc<Receiver>, String) {
    let state = Arc::new(Receiver::default());
    state.mode.store(mode, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, format!("http://{addr}/hook"))
}

/// A config file with the file-only webhook settings shortened: retries within a tenth of a
/// second, an attempt given up after 2 s (so a dead process's leases run out after 6 s).
fn config(dir: &Path) -> String {
    let path = dir.join("batchd.toml");
    std::fs::write(
        &path,
        "webhook_first_retry = \"100ms\"\nwebhook_send_timeout = \"2s\"\n",
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

const FLAGS: [&str; 2] = ["--webhook-allow-http", "--webhook-allow-private"];

async fn register(http: &reqwest::Client, server: &Server, url: &str) {
    let resp = http
        .post(format!("{}/v1/batchd/webhooks", server.base))
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Creates `n` one-request batches and waits until each has ended; returns their ids.
async fn ended_batches(http: &reqwest::Client, servers: &[&Server], n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let server = servers[i % servers.len()];
        let resp = http
            .post(format!("{}/v1/messages/batches", server.base))
            .json(&json!({"requests": [{"custom_id": "a", "params": {
                "model": "claude-sonnet-4-5", "max_tokens": 16,
                "messages": [{"role": "user", "content": "hi"}]}}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let batch: Value = resp.json().await.unwrap();
        ids.push(batch["id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let batch: Value = http
                .get(format!("{}/v1/messages/batches/{id}", servers[0].base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if batch["processing_status"] == "ended" {
                break;
            }
            assert!(Instant::now() < deadline, "not ended: {batch}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    ids
}

/// Waits until the receiver has seen requests about every batch of `ids`, accepted ones if
/// `accepted`.
async fn wait_seen(r: &Receiver, ids: &[String], accepted: bool, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let seen: HashSet<String> = r
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.accepted || !accepted)
            .map(|s| s.batch.clone())
            .collect();
        let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains(*id)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {} request for {missing:?}",
            if accepted { "accepted" } else { "" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every batch of `ids` has one `webhook-id` over all its requests, accepted exactly once; and
/// nothing about another batch arrived.
fn assert_once_each(r: &Receiver, ids: &[String]) {
    let seen = r.seen.lock().unwrap().clone();
    let mut per_batch: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut accepted: HashMap<&str, usize> = HashMap::new();
    for s in &seen {
        per_batch.entry(&s.batch).or_default().insert(&s.id);
        if s.accepted {
            *accepted.entry(&s.id).or_default() += 1;
        }
    }
    let expected: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(
        per_batch.keys().copied().collect::<HashSet<_>>(),
        expected,
        "events of exactly these batches"
    );
    for (batch, webhook_ids) in &per_batch {
        assert_eq!(webhook_ids.len(), 1, "{batch} came under {webhook_ids:?}");
        let id = webhook_ids.iter().next().unwrap();
        assert_eq!(accepted.get(id), Some(&1), "{batch}'s {id} accepted once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_before_delivery_loses_no_event_and_doubles_none() {
    let dir = tempfile::tempdir().unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let env = [("BATCHD_CONFIG", config(config_dir.path()))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let log = Log::default();
    let http = client();
    let (r, url) = receiver(HANG).await;

    // In flight: the receiver holds every attempt unanswered when the process dies.
    let server = server::start_with_env(dir.path(), &FLAGS, &env, &log, "p0").await;
    register(&http, &server, &url).await;
    let mut ids = ended_batches(&http, &[&server], 5).await;
    wait_seen(&r, &ids, false, Duration::from_secs(30)).await;
    server.kill().await;

    // Down: every attempt fails; killed again with retries pending (and the first process's
    // deliveries perhaps still leased to it).
    r.mode.store(DOWN, Ordering::SeqCst);
    let server = server::start_with_env(dir.path(), &FLAGS, &env, &log, "p1").await;
    let more = ended_batches(&http, &[&server], 5).await;
    wait_seen(&r, &more, false, Duration::from_secs(30)).await;
    ids.extend(more);
    server.kill().await;

    // Up: the next process delivers them all.
    r.mode.store(UP, Ordering::SeqCst);
    let server = server::start_with_env(dir.path(), &FLAGS, &env, &log, "p2").await;
    wait_seen(&r, &ids, true, Duration::from_secs(60)).await;
    // Nothing more comes once each is accepted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_once_each(&r, &ids);
    let attempts = r.seen.lock().unwrap().len();
    eprintln!("{} events delivered after {attempts} attempts", ids.len());
    server.terminate(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgresql_processes_deliver_each_event_once() {
    let Some(db) =
        batchd_store_postgres::testkit::fresh_database("the two-process webhook test").await
    else {
        return;
    };
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let log = Log::default();
    let http = client();
    let (r, url) = receiver(UP).await;
    let mut flags: Vec<&str> = vec!["--database-url", &db];
    flags.extend_from_slice(&FLAGS);
    let mut servers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        servers.push(server::start(dir.path(), &flags, &log, &format!("p{i}")).await);
    }
    register(&http, &servers[0], &url).await;
    let ids = ended_batches(&http, &[&servers[0], &servers[1]], 40).await;
    wait_seen(&r, &ids, true, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_once_each(&r, &ids);
    let mut split = Vec::new();
    for server in &servers {
        split.push(delivered_here(&http, server).await);
    }
    assert_eq!(split.iter().sum::<f64>(), ids.len() as f64, "{split:?}");
    eprintln!("deliveries per process: {split:?}");
    for server in servers {
        server.terminate(Duration::from_secs(30)).await;
    }
}

/// `batchd_webhook_deliveries_total{outcome="delivered"}` of one process.
async fn delivered_here(http: &reqwest::Client, server: &Server) -> f64 {
    let text = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("batchd_webhook_deliveries_total{") && l.contains("\"delivered\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
