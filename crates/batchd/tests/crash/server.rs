//! The real `batchd` binary as a child process: started on a data dir, its address read from its
//! JSON log, SIGKILLed or stopped, its whole log kept for inspection.
//!
//! Shared by `tests/crash.rs` and `tests/api/storage_faults.rs` (included with `#[path]`).

#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The API key every spawned server accepts, and its workspace.
pub const KEY: &str = "sk-crash-test-workspace";
pub const WORKSPACE: &str = "ws-crash";

/// Every line any server of one test wrote to stderr, tagged with the run it came from.
#[derive(Clone, Default)]
pub struct Log {
    lines: Arc<Mutex<Vec<(String, String)>>>,
}

impl Log {
    fn push(&self, run: &str, line: String) {
        self.lines.lock().unwrap().push((run.to_owned(), line));
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Lines that show a panic, an `ERROR` event, or anything that is not a JSON log object
    /// (a panic message is plain text). Each comes with its run's name.
    pub fn problems(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, line)| {
                if line.contains("panicked") || line.contains("RUST_BACKTRACE") {
                    return true;
                }
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => v["level"] == "ERROR",
                    Err(_) => true,
                }
            })
            .map(|(run, line)| format!("[{run}] {line}"))
            .collect()
    }

    /// Lines whose `level` is `WARN`, for reports.
    pub fn warnings(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, line)| line.contains("\"level\":\"WARN\""))
            .map(|(run, line)| format!("[{run}] {line}"))
            .collect()
    }

    /// Lines that contain `needle`.
    pub fn containing(&self, needle: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, line)| line.contains(needle))
            .map(|(_, line)| line.clone())
            .collect()
    }

    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap();
        let from = lines.len().saturating_sub(n);
        lines[from..]
            .iter()
            .map(|(run, line)| format!("[{run}] {line}\n"))
            .collect()
    }
}

/// A running server process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// When the process was spawned.
    pub spawned_at: Instant,
    /// When its "batchd listening" line was read.
    pub listening_at: Instant,
    reader: JoinHandle<()>,
}

/// Spawns `batchd --data-dir DIR --log-format json serve --listen 127.0.0.1:0 --api-key …`
/// followed by `extra` flags, and waits (at most 60 s) for its "batchd listening" line, whose
/// `addr` field gives the port.
pub async fn start(data_dir: &Path, extra: &[&str], log: &Log, run: &str) -> Server {
    start_with_env(data_dir, extra, &[], log, run).await
}

/// [`start`] with these environment variables set.
pub async fn start_with_env(
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
    log: &Log,
    run: &str,
) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_batchd"));
    cmd.envs(env.iter().copied());
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .arg("--api-key")
        .arg(format!("{KEY}@{WORKSPACE}"))
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("BATCHD_API_KEYS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("BATCHD_DATABASE_URL")
        .kill_on_drop(true);
    // On PostgreSQL runs (BATCHD_TEST_STORE=postgres) the data dir stands for a database.
    if let Some(url) = batchd_store_postgres::testkit::database_for(data_dir).await {
        cmd.env("BATCHD_DATABASE_URL", url);
    }
    let spawned_at = Instant::now();
    let mut child = cmd.spawn().expect("spawn batchd");
    let stderr = child.stderr.take().expect("stderr pipe");
    let (addr_tx, addr_rx) = oneshot::channel::<String>();
    let reader = {
        let log = log.clone();
        let run = run.to_owned();
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if addr_tx.is_some() && line.contains("batchd listening") {
                    let addr = serde_json::from_str::<Value>(&line)
                        .ok()
                        .and_then(|v| v["addr"].as_str().map(str::to_owned));
                    if let (Some(addr), Some(tx)) = (addr, addr_tx.take()) {
                        let _ = tx.send(addr);
                    }
                }
                log.push(&run, line);
            }
        })
    };
    let addr = match tokio::time::timeout(Duration::from_secs(60), addr_rx).await {
        Ok(Ok(addr)) => addr,
        other => {
            let status = child.try_wait();
            let _ = child.kill().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
            panic!(
                "[{run}] batchd did not report its address ({}; exit status {status:?}); log tail:\n{}",
                if other.is_err() {
                    "timed out"
                } else {
                    "stderr closed"
                },
                log.tail(40)
            );
        }
    };
    Server {
        child,
        base: format!("http://{addr}"),
        spawned_at,
        listening_at: Instant::now(),
        reader,
    }
}

impl Server {
    /// SIGKILL (what `Child::kill` sends on Unix), then reap the process and drain its log.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL batchd");
        let _ = tokio::time::timeout(Duration::from_secs(10), self.reader).await;
    }

    /// SIGTERM and wait for a graceful exit; returns how long that took. Panics if it takes
    /// longer than `limit` or exits unsuccessfully.
    pub async fn terminate(mut self, limit: Duration) -> Duration {
        let pid = self.child.id().expect("pid");
        let started = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let exit = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("batchd did not exit within {limit:?} of SIGTERM"))
            .expect("wait");
        let took = started.elapsed();
        assert!(exit.success(), "batchd exited with {exit}");
        let _ = tokio::time::timeout(Duration::from_secs(10), self.reader).await;
        took
    }

    /// The process id (to read its `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// True if the process has exited already.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// A client for one server: key and version headers, no proxy, a generous timeout so a hang
/// fails the test instead of stalling it.
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", KEY.parse().unwrap());
    headers.insert("anthropic-version", "2023-06-01".parse().unwrap());
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Parses JSONL strictly: every line `\n`-terminated, no blank lines, each a compact object.
pub fn parse_jsonl(text: &str) -> Result<Vec<Value>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if !text.ends_with('\n') {
        return Err("last line does not end with \\n".into());
    }
    text[..text.len() - 1]
        .split('\n')
        .map(|line| {
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("bad line {line:.200}: {e}"))?;
            if serde_json::to_string(&v).unwrap().len() != line.len() {
                return Err(format!("line is not compact: {line:.200}"));
            }
            Ok(v)
        })
        .collect()
}

/// The five `request_counts`, in API order.
pub fn counts(batch: &Value) -> Option<[u64; 5]> {
    let c = &batch["request_counts"];
    let mut out = [0; 5];
    for (slot, key) in
        out.iter_mut()
            .zip(["processing", "succeeded", "errored", "canceled", "expired"])
    {
        *slot = c[key].as_u64()?;
    }
    Some(out)
}

/// A tiny seeded generator (SplitMix64): reproducible choices without another dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.range(0, items.len() as u64 - 1) as usize])
        }
    }
}
