//! Crash safety of the OpenAI surface in the real binary: a server SIGKILLed during a file upload
//! shows no trace of the file after a restart and takes the same upload again; one SIGKILLed while
//! a batch is being processed completes that batch after the restart, with every line in the
//! output file exactly once.
//!
//! Runs on SQLite, or on PostgreSQL with `BATCHD_TEST_STORE=postgres` (as `tests/crash.rs`).

#[path = "crash/server.rs"]
mod server;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use crate::server::{KEY, Log, parse_jsonl};

const MODEL: &str = "gpt-4o-mini";
const BOUNDARY: &str = "batchd-crash-boundary";

/// A client of the OpenAI routes: the key as a Bearer token, no proxy, a timeout that turns a
/// hang into a failure.
fn openai_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `n` chat-completion lines `{prefix}-{i}`, each padded to about `pad` bytes of content.
fn jsonl(prefix: &str, n: usize, pad: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let line = serde_json::json!({
            "custom_id": format!("{prefix}-{i}"), "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": [{"role": "user",
                "content": format!("question {i} {}", "x".repeat(pad))}]}
        });
        serde_json::to_writer(&mut out, &line).unwrap();
        out.push(b'\n');
    }
    out
}

/// The multipart body of `POST /v1/files` around `content`, as (head, tail).
fn multipart(filename: &str) -> (Vec<u8>, Vec<u8>) {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/jsonl\r\n\r\n"
    );
    (
        head.into_bytes(),
        format!("\r\n--{BOUNDARY}--\r\n").into_bytes(),
    )
}

fn upload_request(
    http: &reqwest::Client,
    base: &str,
    body: reqwest::Body,
) -> reqwest::RequestBuilder {
    http.post(format!("{base}/v1/files"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
}

/// Uploads `content` whole and returns the file object.
async fn upload(http: &reqwest::Client, base: &str, filename: &str, content: &[u8]) -> Value {
    let (head, tail) = multipart(filename);
    let body = [head, content.to_vec(), tail].concat();
    let resp = upload_request(http, base, body.into())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Every file of the key's workspace (one page: these tests make few).
async fn list_files(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let resp = http.get(format!("{base}/v1/files")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let page: Value = resp.json().await.unwrap();
    assert_eq!(page["has_more"], false);
    page["data"].as_array().unwrap().clone()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.json().await.unwrap()
}

async fn content(http: &reqwest::Client, base: &str, file_id: &str) -> Vec<u8> {
    let resp = http
        .get(format!("{base}/v1/files/{file_id}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap().to_vec()
}

fn assert_no_problems(log: &Log) {
    let problems = log.problems();
    assert!(
        problems.is_empty(),
        "server log problems:\n{}",
        problems.join("\n")
    );
}

/// SIGKILL while the body of an upload is still arriving (several store pieces already sent,
/// the rest held back): after a restart no file of that upload is listed or readable, and the
/// same upload, sent whole, is stored once with exactly its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_an_upload_leaves_no_file_and_the_upload_can_be_redone() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let log = Log::default();
    let http = openai_client();
    // About 3 MB: more than one store piece (`FILE_CHUNK_BYTES`, 1 MiB) arrives before the kill.
    let file = jsonl("up", 3_000, 1_000);
    let (head, _) = multipart("crash.jsonl");

    let server = server::start(&data_dir, &[], &log, "upload").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let pending = tokio::spawn(
        upload_request(&http, &server.base, reqwest::Body::wrap_stream(stream)).send(),
    );
    tx.send(Ok(Bytes::from(head.clone()))).await.unwrap();
    let sent = file.len() * 9 / 10;
    for piece in file[..sent].chunks(64 * 1024) {
        tx.send(Ok(Bytes::copy_from_slice(piece))).await.unwrap();
    }
    // Give the server a moment to hand the pieces to the store. Whether or not it has, the
    // assertions below must hold, so this wait cannot make the test flaky.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill().await;
    drop(tx);
    let answer = pending.await.unwrap();
    assert!(
        answer.as_ref().map_or(true, |r| r.status() != 200),
        "an upload cut short must not be acknowledged: {answer:?}"
    );

    let server = server::start(&data_dir, &[], &log, "after the kill").await;
    assert_eq!(list_files(&http, &server.base).await, Vec::<Value>::new());

    let stored = upload(&http, &server.base, "crash.jsonl", &file).await;
    assert_eq!(stored["bytes"], file.len());
    let listed = list_files(&http, &server.base).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], stored["id"]);
    let id = stored["id"].as_str().unwrap();
    assert!(
        content(&http, &server.base, id).await == file,
        "the redone upload reads back whole"
    );
    server.kill().await;
    assert_no_problems(&log);
}

/// SIGKILL while a batch's lines are being sent: after a restart the batch completes with every
/// request counted once, and its output file holds one line per request, no `custom_id` twice,
/// and no error file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_processing_completes_the_batch_with_every_line_once() {
    const N: usize = 600;
    // Two requests at a time, 20 ms each: the batch takes seconds, so the kill lands mid-way.
    const FLAGS: &[&str] = &[
        "--mock-latency",
        "20ms",
        "--mock-concurrency",
        "2",
        "--concurrency",
        "2",
    ];
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let log = Log::default();
    let http = openai_client();

    let server = server::start(&data_dir, FLAGS, &log, "processing").await;
    let input = upload(&http, &server.base, "work.jsonl", &jsonl("p", N, 10)).await;
    let resp = http
        .post(format!("{}/v1/batches", server.base))
        .json(&serde_json::json!({
            "input_file_id": input["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{}/v1/batches/{id}", server.base);
    let deadline = Instant::now() + Duration::from_secs(120);
    let done_before_kill = loop {
        let batch = get_json(&http, &url).await;
        if batch["request_counts"]["completed"].as_u64().unwrap() >= 20 {
            break batch["status"] == "completed";
        }
        assert!(Instant::now() < deadline, "no progress: {batch}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.kill().await;
    assert!(!done_before_kill, "the batch ended before the kill");

    let server = server::start(&data_dir, FLAGS, &log, "after the kill").await;
    let url = format!("{}/v1/batches/{id}", server.base);
    let deadline = Instant::now() + Duration::from_secs(180);
    let batch = loop {
        let batch = get_json(&http, &url).await;
        if ["completed", "failed", "expired", "cancelled"]
            .contains(&batch["status"].as_str().unwrap())
        {
            break batch;
        }
        assert!(Instant::now() < deadline, "{id} did not finish: {batch}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(batch["status"], "completed", "{batch}");
    let counts = &batch["request_counts"];
    assert_eq!(
        (&counts["total"], &counts["completed"], &counts["failed"]),
        (&N.into(), &N.into(), &0.into()),
        "{batch}"
    );
    assert_eq!(batch["error_file_id"], Value::Null, "{batch}");

    let output = content(
        &http,
        &server.base,
        batch["output_file_id"].as_str().unwrap(),
    )
    .await;
    let lines = parse_jsonl(std::str::from_utf8(&output).unwrap()).unwrap();
    assert_eq!(lines.len(), N, "one output line per request");
    let ids: HashSet<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), N, "a custom_id appears twice");
    let expected: HashSet<String> = (0..N).map(|i| format!("p-{i}")).collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect());
    assert!(lines.iter().all(|l| l["response"]["status_code"] == 200));
    server.kill().await;
    assert_no_problems(&log);
}
