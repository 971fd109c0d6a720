//! Storage faults: the data dir's disk fills up, then grows again.
//!
//! Needs root (to mount a tiny tmpfs); elsewhere it says it is skipped and passes. Runs the real
//! binary, so a panic shows in its log and a crash as a dead process. `BATCHD_SHOW_LOG=1` prints
//! the server's warnings.

#[path = "../crash/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use self::server::{Log, client, counts, parse_jsonl};

/// A tmpfs mounted on a temp dir, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when this process may not mount (not root, or no tmpfs).
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "remount to {size} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds a file there: detach it now, it goes when released.
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// `n` requests with ~1 KB of text each, custom_ids `{tag}-{i}`.
fn body(tag: &str, n: usize) -> Vec<u8> {
    let filler = "lorem ipsum dolor sit amet ".repeat(40);
    let requests: Vec<Value> = (0..n)
        .map(|i| {
            json!({"custom_id": format!("{tag}-{i}"), "params": {
                "model": "claude-haiku-4-5", "max_tokens": 16,
                "messages": [{"role": "user", "content": format!("{i}: {filler}")}]
            }})
        })
        .collect();
    serde_json::to_vec(&json!({ "requests": requests })).unwrap()
}

/// A non-2xx answer must be a retryable 5xx in the API's error envelope.
fn check_failure(what: &str, status: u16, headers: &reqwest::header::HeaderMap, text: &str) {
    assert!(
        (500..600).contains(&status),
        "{what}: a full disk answered {status}: {text}"
    );
    let v: Value = serde_json::from_str(text)
        .unwrap_or_else(|_| panic!("{what}: {status} with a body that is not JSON: {text:?}"));
    assert_eq!(v["type"], "error", "{what}: {text}");
    let kind = v["error"]["type"].as_str().unwrap_or("");
    assert!(
        kind == "api_error" || kind == "overloaded_error",
        "{what}: {status} {text}"
    );
    assert!(v["error"]["message"].is_string(), "{what}: {text}");
    assert_eq!(
        headers.get("content-type").map(|h| h.as_bytes()),
        Some(&b"application/json"[..]),
        "{what}"
    );
    assert_eq!(
        headers.get("x-should-retry").map(|h| h.as_bytes()),
        Some(&b"true"[..]),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_cleanly_and_processing_resumes_when_it_grows() {
    if crate::helpers::skip_on_postgres(
        "a_full_disk_fails_cleanly…",
        "it fills the data dir's filesystem, which PostgreSQL does not use",
    ) {
        return;
    }
    let Some(mount) = Tmpfs::mount("4m") else {
        eprintln!("skipped: needs root and tmpfs mounts");
        return;
    };
    let data_dir: PathBuf = mount.path().join("data");
    let log = Log::default();
    let server = server::start(
        &data_dir,
        &[
            "--mock-latency",
            "5ms",
            "--mock-concurrency",
            "16",
            "--concurrency",
            "16",
        ],
        &log,
        "disk-full",
    )
    .await;
    let http = client();
    let url = |path: &str| format!("{}/v1/messages/batches{path}", server.base);

    // Create until the disk is full: every answer is a 200 or a clean 5xx, none hangs.
    let mut acked: Vec<(String, usize)> = Vec::new();
    let mut failures = 0;
    let mut consecutive = 0;
    let mut attempt = 0;
    while consecutive < 5 && attempt < 200 {
        let n = 100 + (attempt * 37) % 200;
        let tag = format!("a{attempt}");
        attempt += 1;
        let resp = http
            .post(url(""))
            .header("content-type", "application/json")
            .body(body(&tag, n))
            .send()
            .await
            .expect("the server must answer a create on a full disk");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("a complete answer");
        if status == 200 {
            let b: Value = serde_json::from_str(&text).expect("JSON batch");
            assert_eq!(counts(&b), Some([n as u64, 0, 0, 0, 0]), "{text}");
            acked.push((b["id"].as_str().unwrap().to_owned(), n));
            consecutive = 0;
        } else {
            check_failure(&format!("create {tag}"), status, &headers, &text);
            failures += 1;
            consecutive += 1;
        }
    }
    assert!(
        failures > 0,
        "{attempt} creates never filled a 4 MB disk ({} accepted)",
        acked.len()
    );
    assert!(
        !acked.is_empty(),
        "no create succeeded before the disk filled"
    );

    // Reads still answer while the disk is full, and writes fail cleanly.
    for (id, n) in &acked {
        let resp = http.get(url(&format!("/{id}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "retrieve {id} on a full disk");
        let b: Value = resp.json().await.unwrap();
        assert_eq!(counts(&b).map(|c| c.iter().sum::<u64>()), Some(*n as u64));
    }
    let resp = http.get(url("?limit=1000")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "list on a full disk");
    let page: Value = resp.json().await.unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), acked.len());
    let resp = http
        .post(url(""))
        .header("content-type", "application/json")
        .body(body("full", 300))
        .send()
        .await
        .unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    if status != 200 {
        check_failure("create on a full disk", status, &headers, &text);
    } else {
        let b: Value = serde_json::from_str(&text).unwrap();
        acked.push((b["id"].as_str().unwrap().to_owned(), 300));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Grow the disk: the dispatcher's retries get through and every batch ends whole.
    mount.resize("64m");
    let grown = Instant::now();
    for (id, n) in &acked {
        let deadline = Instant::now() + Duration::from_secs(120);
        let batch = loop {
            let resp = http.get(url(&format!("/{id}"))).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let b: Value = resp.json().await.unwrap();
            if b["processing_status"] == "ended" {
                break b;
            }
            assert!(
                Instant::now() < deadline,
                "{id} did not end after the disk grew: {b}\nfirst warnings:\n{}",
                log.warnings()[..log.warnings().len().min(20)].join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(counts(&batch), Some([0, *n as u64, 0, 0, 0]), "{batch}");
        let resp = http
            .get(url(&format!("/{id}/results")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let lines = parse_jsonl(&resp.text().await.unwrap()).unwrap();
        let mut ids: Vec<&str> = lines
            .iter()
            .map(|l| l["custom_id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            (lines.len(), ids.len()),
            (*n, *n),
            "one result per request of {id}"
        );
        assert!(lines.iter().all(|l| l["result"]["type"] == "succeeded"));
    }
    let resumed_in = grown.elapsed();

    // New work is taken again, and the server still stops cleanly.
    let resp = http
        .post(url(""))
        .header("content-type", "application/json")
        .body(body("after", 50))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "create after the disk grew");
    let mut server = server;
    assert!(!server.exited(), "the server died");
    server.terminate(Duration::from_secs(60)).await;

    let panics: Vec<String> = log
        .problems()
        .into_iter()
        .filter(|l| !l.contains("\"level\":\"ERROR\""))
        .collect();
    eprintln!(
        "disk full: {} creates accepted, {failures} refused with a 5xx; all {} batches ended \
         {resumed_in:.1?} after the disk grew; {} warnings, {} errors logged",
        acked.len(),
        acked.len(),
        log.warnings().len(),
        log.problems().len() - panics.len(),
    );
    if std::env::var_os("BATCHD_SHOW_LOG").is_some() {
        eprintln!("{}", log.warnings().join("\n"));
    }
    assert!(panics.is_empty(), "panics:\n{}", panics.join("\n"));
}
