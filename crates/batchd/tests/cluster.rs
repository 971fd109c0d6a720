//! Several batchd processes (the real binary) on one PostgreSQL database, as behind a load
//! balancer: they share the work of one batch, a SIGKILLed one's claims go to the others, every
//! request still gets exactly one result, any process answers for any batch, and a cancel on one
//! process stops the work on all of them.
//!
//! Needs `BATCHD_TEST_DATABASE_URL`; without it the test says it was skipped and passes.

#[path = "crash/server.rs"]
mod server;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use self::server::{KEY, Log, Server, client, counts, parse_jsonl};

const N: usize = 20_000;

/// 32 requests of 40 ms in flight per process: about 800 requests/s each, so a 20,000-request
/// batch takes long enough on three processes to kill one in the middle.
const FLAGS: &[&str] = &[
    "--mock-latency",
    "40ms",
    "--mock-concurrency",
    "32",
    "--concurrency",
    "32",
];

fn request(custom_id: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "params": {"model": "claude-sonnet-4-5", "max_tokens": 16,
                   "messages": [{"role": "user", "content": format!("hi {custom_id}")}]}
    })
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = http
        .request(method, url)
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01");
    if let Some(body) = body {
        req = req.json(body);
    }
    req.send().await.expect("HTTP call")
}

async fn create(http: &reqwest::Client, server: &Server, prefix: &str) -> String {
    let requests: Vec<Value> = (0..N).map(|i| request(&format!("{prefix}-{i}"))).collect();
    let resp = call(
        http,
        reqwest::Method::POST,
        format!("{}/v1/messages/batches", server.base),
        Some(&json!({ "requests": requests })),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let batch: Value = resp.json().await.unwrap();
    batch["id"].as_str().unwrap().to_owned()
}

async fn batch(http: &reqwest::Client, server: &Server, id: &str, path: &str) -> Value {
    let url = format!("{}/v1/messages/batches/{id}{path}", server.base);
    let resp = call(http, reqwest::Method::GET, url, None).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Requests with a result so far (the live progress extension).
async fn done(http: &reqwest::Client, server: &Server, id: &str) -> u64 {
    let progress = batch(http, server, id, "/progress").await;
    let c = &progress["request_counts"];
    c["succeeded"].as_u64().unwrap() + c["errored"].as_u64().unwrap()
}

/// `batchd_requests_finished_total` of one process: the requests it answered itself.
async fn finished_here(http: &reqwest::Client, server: &Server) -> f64 {
    let text = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("batchd_requests_finished_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_ended(http: &reqwest::Client, server: &Server, id: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let b = batch(http, server, id, "").await;
        if b["processing_status"] == "ended" {
            return b;
        }
        assert!(Instant::now() < deadline, "not ended in {limit:?}: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The results of an ended batch, each custom_id exactly once; returns the result types.
async fn results_once_each(
    http: &reqwest::Client,
    server: &Server,
    id: &str,
    prefix: &str,
) -> Vec<String> {
    let url = format!("{}/v1/messages/batches/{id}/results", server.base);
    let text = call(http, reqwest::Method::GET, url, None)
        .await
        .text()
        .await
        .unwrap();
    let lines = parse_jsonl(&text).expect("JSONL results");
    assert_eq!(lines.len(), N, "one line per request");
    let ids: HashSet<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    let expected: HashSet<String> = (0..N).map(|i| format!("{prefix}-{i}")).collect();
    assert_eq!(
        ids,
        expected.iter().map(String::as_str).collect(),
        "every custom_id exactly once"
    );
    lines
        .iter()
        .map(|l| l["result"]["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_a_batch_survive_a_kill_and_stop_together_on_cancel() {
    let Some(url) =
        batchd_store_postgres::testkit::fresh_database("the multi-process PostgreSQL test").await
    else {
        return;
    };
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let log = Log::default();
    let mut flags: Vec<&str> = vec!["--database-url", &url];
    flags.extend_from_slice(FLAGS);
    let mut servers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        servers.push(server::start(dir.path(), &flags, &log, &format!("p{i}")).await);
    }
    let http = client();

    // Created on the first process.
    let id = create(&http, &servers[0], "k").await;
    let started = Instant::now();
    // Midway (a fifth done), every process has been working on it; then one is SIGKILLed.
    while done(&http, &servers[2], &id).await < (N / 5) as u64 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, server) in servers.iter().enumerate() {
        let mine = finished_here(&http, server).await;
        assert!(
            mine > 0.0,
            "process {i} answered nothing: the work is not shared"
        );
    }
    let at_kill = done(&http, &servers[2], &id).await;
    servers.remove(1).kill().await;
    eprintln!(
        "killed p1 with {at_kill}/{N} done after {:?}",
        started.elapsed()
    );

    // Completed by the survivors (the killed one's claims are freed by their heartbeat reaper)
    // and read from a process other than the one that created it.
    let ended = wait_ended(&http, &servers[1], &id, Duration::from_secs(180)).await;
    eprintln!("batch ended after {:?}", started.elapsed());
    assert_eq!(counts(&ended), Some([0, N as u64, 0, 0, 0]), "{ended}");
    let types = results_once_each(&http, &servers[1], &id, "k").await;
    assert!(types.iter().all(|t| t == "succeeded"));

    // A cancel on one process stops the work on all of them within seconds.
    let id = create(&http, &servers[0], "c").await;
    while done(&http, &servers[1], &id).await < 1_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("{}/v1/messages/batches/{id}/cancel", servers[1].base);
    let resp = call(&http, reqwest::Method::POST, url, None).await;
    assert_eq!(resp.status(), 200);
    let canceled_at = Instant::now();
    let ended = wait_ended(&http, &servers[0], &id, Duration::from_secs(15)).await;
    eprintln!(
        "canceled batch ended {:?} after the cancel",
        canceled_at.elapsed()
    );
    let [processing, succeeded, errored, canceled, expired] = counts(&ended).unwrap();
    assert_eq!((processing, errored, expired), (0, 0, 0), "{ended}");
    assert!(canceled > 0 && succeeded + canceled == N as u64, "{ended}");
    let types = results_once_each(&http, &servers[0], &id, "c").await;
    assert_eq!(
        types.iter().filter(|t| *t == "succeeded").count() as u64,
        succeeded
    );
    // Nothing more is answered once it has ended, on any process.
    let before: f64 = futures_sum(&http, &servers).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        futures_sum(&http, &servers).await,
        before,
        "work went on after the end"
    );

    for server in servers {
        server.terminate(Duration::from_secs(30)).await;
    }
    let problems = log.problems();
    assert!(
        problems.is_empty(),
        "errors in the logs:\n{}",
        problems.join("\n")
    );
}

async fn futures_sum(http: &reqwest::Client, servers: &[Server]) -> f64 {
    let mut sum = 0.0;
    for server in servers {
        sum += finished_here(http, server).await;
    }
    sum
}
