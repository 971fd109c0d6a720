//! The OpenAI surface's memory bound in the real binary: a 50,000-line, 200 MB input file is
//! uploaded, checked, run and written to its output file while the server's peak resident memory
//! grows by well under the file's size (at most half of it, during the upload and over the whole
//! run), so no step holds the file, its requests or its results whole. Growth is counted from the
//! server as it is after a small batch (a tenth of the lines), whose storage caches, connection
//! buffers and allocator arenas are of a fixed size whatever the file. The file is generated and
//! the output read as streams, so the test holds neither either.
//!
//! The server runs as a child process (its `/proc/PID/status` is its own), on SQLite, or on
//! PostgreSQL with `BATCHD_TEST_STORE=postgres` (as `tests/crash.rs`).

#[path = "crash/server.rs"]
mod server;

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use crate::server::{KEY, Log};

/// The hosted API's limits on one input file (spec: 50,000 requests, 200 MB).
const LINES: usize = 50_000;
const LINE_BYTES: usize = 4_000;
const FILE_BYTES: usize = LINES * LINE_BYTES;
const BOUNDARY: &str = "batchd-memory-boundary";
/// Lines generated per piece of the upload's body (about 256 KB).
const LINES_PER_PIECE: usize = 64;

/// Line `i`: a chat completion `r{i}`, padded with spaces inside its text to [`LINE_BYTES`]
/// bytes with its newline.
fn line(i: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"custom_id":"r{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"line {i} "#
    );
    let tail = "\"}]}}\n";
    let mut out = Vec::with_capacity(LINE_BYTES);
    out.extend_from_slice(head.as_bytes());
    out.resize(LINE_BYTES - tail.len(), b'x');
    out.extend_from_slice(tail.as_bytes());
    out
}

/// The multipart body of an upload of `n` lines, generated piece by piece as it is sent.
fn upload_body(n: usize) -> reqwest::Body {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let lines = futures_util::stream::iter((0..n).step_by(LINES_PER_PIECE)).map(move |from| {
        let piece: Vec<u8> = (from..(from + LINES_PER_PIECE).min(n))
            .flat_map(line)
            .collect();
        Ok::<_, std::io::Error>(Bytes::from(piece))
    });
    let stream = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(lines)
        .chain(futures_util::stream::once(
            async move { Ok(Bytes::from(tail)) },
        ));
    reqwest::Body::wrap_stream(stream)
}

/// `VmRSS` and `VmHWM` of process `pid`, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| -> u64 {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"));
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kb * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let resp = http.get(url).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "GET {url}: {text}");
    serde_json::from_str(&text).unwrap()
}

use futures_util::StreamExt as _;

/// What one run measured.
struct Run {
    uploaded: Duration,
    finished: Duration,
    output_bytes: u64,
    /// The server's peak resident memory once the upload was answered.
    upload_peak: u64,
}

/// Uploads `n` lines, runs them as a batch, and reads the output back as it arrives, checking
/// one line per request in input order.
async fn run(http: &reqwest::Client, base: &str, pid: u32, n: usize) -> Run {
    let started = Instant::now();
    let resp = http
        .post(format!("{base}/v1/files"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(upload_body(n))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let file: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["bytes"], n * LINE_BYTES);
    let uploaded = started.elapsed();
    let (_, upload_peak) = memory(pid);

    let resp = http
        .post(format!("{base}/v1/batches"))
        .json(&serde_json::json!({
            "input_file_id": file["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h"
        }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let created: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{created}");
    let url = format!("{base}/v1/batches/{}", created["id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(600);
    let batch = loop {
        let batch = get_json(http, &url).await;
        if ["completed", "failed", "expired", "cancelled"]
            .contains(&batch["status"].as_str().unwrap())
        {
            break batch;
        }
        assert!(Instant::now() < deadline, "did not finish: {batch}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let finished = started.elapsed();
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(batch["request_counts"]["completed"], n, "{batch}");
    assert_eq!(batch["error_file_id"], Value::Null, "{batch}");

    let output = batch["output_file_id"].as_str().unwrap();
    let resp = http
        .get(format!("{base}/v1/files/{output}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let (mut partial, mut lines, mut output_bytes) = (Vec::new(), 0usize, 0u64);
    while let Some(piece) = body.next().await {
        let piece = piece.unwrap();
        output_bytes += piece.len() as u64;
        partial.extend_from_slice(&piece);
        let mut rest = &partial[..];
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let line: Value = serde_json::from_slice(&rest[..at]).unwrap();
            assert_eq!(line["custom_id"], format!("r{lines}"), "input order");
            assert_eq!(line["response"]["status_code"], 200);
            lines += 1;
            rest = &rest[at + 1..];
        }
        partial = rest.to_vec();
    }
    assert!(partial.is_empty(), "the output ends with a newline");
    assert_eq!(lines, n);
    Run {
        uploaded,
        finished,
        output_bytes,
        upload_peak,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_file_is_uploaded_run_and_written_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let log = Log::default();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    let http = reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let server = server::start(&data_dir, &["--mock-latency", "0ms"], &log, "memory").await;
    let pid = server.pid();
    let (cold, _) = memory(pid);
    // The server as it is after some work: its storage caches, connection buffers and
    // allocator arenas, all of a fixed size whatever the files, filled by a batch of a tenth of
    // the lines. What grows from there is what the large file costs.
    run(&http, &server.base, pid, LINES / 10).await;
    let (baseline, _) = memory(pid);
    let started = Instant::now();
    let big = run(&http, &server.base, pid, LINES).await;
    let (_, peak) = memory(pid);
    let mib = |bytes: u64| bytes >> 20;
    let share = |bytes: u64| bytes as f64 / FILE_BYTES as f64;
    let (upload_growth, growth) = (
        big.upload_peak.saturating_sub(baseline),
        peak.saturating_sub(baseline),
    );
    println!(
        "{LINES} lines, {FILE_BYTES} bytes: uploaded in {:?}, completed in {:?}, output of {} \
         bytes read by {:?}; RSS at start {} MiB, after the warm-up batch {} MiB; peak growth \
         during the upload {} MiB ({:.2}x the file), over the whole run {} MiB ({:.2}x)",
        big.uploaded,
        big.finished,
        big.output_bytes,
        started.elapsed(),
        mib(cold),
        mib(baseline),
        mib(upload_growth),
        share(upload_growth),
        mib(growth),
        share(growth),
    );
    let bound = FILE_BYTES as u64 / 2;
    assert!(
        upload_growth <= bound,
        "peak RSS grew by {} MiB during the upload, more than half the file",
        mib(upload_growth)
    );
    assert!(
        growth <= bound,
        "peak RSS grew by {} MiB over the run, more than half the file",
        mib(growth)
    );
    server.kill().await;
    let problems = log.problems();
    assert!(
        problems.is_empty(),
        "server log problems:\n{}",
        problems.join("\n")
    );
}
