//! Child processes the bench measures (batchd, the fake upstream) and their memory, read from
//! `/proc/PID/status` by a sampling thread so short peaks between API calls are seen.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Method;

use crate::client::{Conn, read_body, request};

/// `VmRSS` and `VmHWM` of a process, in bytes.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU time a process has used so far, in seconds, from `/proc/PID/stat` (fields
/// 14 and 15, in clock ticks: 100 a second on Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name (which may hold spaces), utime is the 12th field.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Samples a process's RSS every few milliseconds until stopped; reports the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(memory(pid).map_or(0, |m| m.0)));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    if let Some((rss, _)) = memory(pid) {
                        peak.fetch_max(rss, Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns the highest RSS seen, in bytes.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// A child killed when dropped, so a failing row never leaves servers behind.
pub struct Guarded(pub Child);

impl Guarded {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `batchd serve`.
pub struct Batchd {
    pub child: Guarded,
    pub addr: SocketAddr,
    pub pid: u32,
    /// From spawning the process to its first answered request.
    pub startup: Duration,
    pub log: PathBuf,
}

impl Batchd {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Current RSS in bytes.
    pub fn rss(&self) -> u64 {
        memory(self.pid).map_or(0, |m| m.0)
    }
}

fn free_port() -> anyhow::Result<u16> {
    // Bind-and-release: batchd needs a port on its command line, and a race with another
    // process taking it in the next milliseconds is unlikely enough for a bench.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last lines of a log, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts `batchd serve` on a free port with `data_dir`, the bench's key, and `extra` flags;
/// returns once `/healthz` answers, having timed that. Fails with the log's tail if the process
/// exits first (a config it does not accept, for example).
pub async fn start_batchd(
    bin: &Path,
    data_dir: &Path,
    key: &str,
    extra: &[String],
) -> anyhow::Result<Batchd> {
    std::fs::create_dir_all(data_dir)?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = data_dir.with_extension("log");
    let log_file = std::fs::File::create(&log)?;
    let started = Instant::now();
    let child = Command::new(bin)
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--api-key")
        .arg(format!("{key}@bench"))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id();
    let mut child = Guarded(child);
    loop {
        if let Some(status) = child.0.try_wait()? {
            bail!(
                "batchd exited during start-up ({status}):\n{}",
                tail(&log, 15)
            );
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "batchd did not answer /healthz within 60 s:\n{}",
                tail(&log, 15)
            );
        }
        if let Ok(mut conn) = Conn::connect(addr).await
            && let Ok(response) = conn
                .send(request(Method::GET, addr, "/healthz", key, Bytes::new()))
                .await
            && let Ok((status, _)) = read_body(response).await
            && status.is_success()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Batchd {
        child,
        addr,
        pid,
        startup: started.elapsed(),
        log,
    })
}

/// Starts the `fake-upstream` binary and reads the address it prints.
pub fn start_fake(
    bin: &Path,
    latency: Duration,
    answer_words: usize,
) -> anyhow::Result<(Guarded, SocketAddr)> {
    let mut child = Command::new(bin)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--latency")
        .arg(format!("{}ms", latency.as_millis()))
        .arg("--answer-words")
        .arg(answer_words.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let child = Guarded(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("fake-upstream listening on http://")
        .with_context(|| format!("unexpected first line from fake-upstream: {line:?}"))?
        .parse()?;
    Ok((child, addr))
}
