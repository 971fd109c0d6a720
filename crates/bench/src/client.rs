//! HTTP/1.1 clients built on hyper's connection API: one TCP connection per task, keep-alive,
//! no pool and no router, so the bench's own overhead stays far below what it measures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// One keep-alive connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(connection);
        Ok(Self { sender })
    }

    /// Whether the server has closed the connection (as it does with idle ones).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<Response<Incoming>> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }
}

/// Reads a whole body.
pub async fn read_body(response: Response<Incoming>) -> anyhow::Result<(StatusCode, Bytes)> {
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Reads a body frame by frame, counting bytes without keeping them.
pub async fn count_body(response: Response<Incoming>) -> anyhow::Result<u64> {
    let mut body = response.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            total += data.len() as u64;
        }
    }
    Ok(total)
}

/// A request with the headers batchd and the fake upstream expect.
pub fn request(
    method: Method,
    addr: SocketAddr,
    path: &str,
    key: &str,
    body: Bytes,
) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("static request parts are valid")
}

/// The batchd API over one reused connection (reconnecting after errors), for the bench's
/// sequential calls: create, poll, delete, results.
pub struct Api {
    pub addr: SocketAddr,
    key: String,
    conn: Mutex<Option<Conn>>,
}

impl Api {
    pub fn new(addr: SocketAddr, key: &str) -> Self {
        Self {
            addr,
            key: key.to_owned(),
            conn: Mutex::new(None),
        }
    }

    /// Sends one request; the response is returned unread so callers can stream it.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut slot = self.conn.lock().await;
        // The server closes keep-alive connections left idle past its header timeout; like the
        // SDKs' pools, start a new one instead of sending on a closed one.
        if slot.as_ref().is_none_or(Conn::is_closed) {
            *slot = Some(Conn::connect(self.addr).await?);
        }
        let request = request(method.clone(), self.addr, path, &self.key, body);
        match slot.as_mut().expect("set above").send(request).await {
            Ok(response) => Ok(response),
            Err(err) => {
                *slot = None;
                Err(err.context(format!("{method} {path}")))
            }
        }
    }

    /// One call, body read, non-2xx turned into an error naming the call.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self.send(method.clone(), path, body).await?;
        let (status, body) = read_body(response).await?;
        if !status.is_success() {
            bail!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        serde_json::from_slice(&body).with_context(|| format!("{method} {path}: not JSON"))
    }

    /// Creates a batch and returns its id.
    pub async fn create(&self, body: Bytes) -> anyhow::Result<String> {
        let batch = self
            .call(Method::POST, "/v1/messages/batches", body)
            .await?;
        batch["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("create answered without an id: {batch}"))
    }

    pub async fn retrieve(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        self.call(
            Method::GET,
            &format!("/v1/messages/batches/{id}"),
            Bytes::new(),
        )
        .await
    }

    /// Polls every `every` until the batch has ended; returns the instant it was first seen
    /// ended and the final object.
    pub async fn wait_ended(
        &self,
        id: &str,
        every: Duration,
        deadline: Duration,
    ) -> anyhow::Result<(Instant, serde_json::Value)> {
        let give_up = Instant::now() + deadline;
        loop {
            let batch = self.retrieve(id).await?;
            if batch["processing_status"] == "ended" {
                return Ok((Instant::now(), batch));
            }
            if Instant::now() > give_up {
                bail!(
                    "batch {id} did not end within {deadline:?}: {}",
                    batch["request_counts"]
                );
            }
            tokio::time::sleep(every).await;
        }
    }

    /// DELETE and its latency.
    pub async fn delete(&self, id: &str) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.call(
            Method::DELETE,
            &format!("/v1/messages/batches/{id}"),
            Bytes::new(),
        )
        .await?;
        Ok(start.elapsed())
    }
}

/// What a closed-loop load run achieved.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub completed: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Sorted latencies in microseconds (empty when not recorded).
    pub latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let at = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        Duration::from_micros(u64::from(self.latencies_us[at]))
    }
}

/// How long a closed-loop run lasts.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Exactly this many requests in total.
    Requests(usize),
    /// As many as fit in this time.
    Time(Duration),
}

/// A closed loop: `concurrency` connections, each sending its next request as soon as the
/// previous answer is read. `make(i)` builds request `i`. Answers must be 2xx to count.
pub async fn closed_loop<F>(
    addr: SocketAddr,
    concurrency: usize,
    until: Until,
    record_latency: bool,
    make: F,
) -> anyhow::Result<LoadResult>
where
    F: Fn(usize) -> Request<Full<Bytes>> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    // Connect everything first, so connection set-up is not counted as throughput.
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(Conn::connect(addr).await?);
    }
    let start = Instant::now();
    let stop_at = match until {
        Until::Time(d) => Some(start + d),
        Until::Requests(_) => None,
    };
    let limit = match until {
        Until::Requests(n) => n,
        Until::Time(_) => usize::MAX,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let make = make.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut done = 0u64;
            let mut failed = 0u64;
            let mut latencies = Vec::new();
            loop {
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                let i = next.fetch_add(1, Relaxed);
                if i >= limit {
                    break;
                }
                let sent = Instant::now();
                let ok = match conn.send(make(i)).await {
                    Ok(response) => {
                        let status = response.status();
                        let body = response.into_body().collect().await;
                        status.is_success() && body.is_ok()
                    }
                    Err(_) => false,
                };
                if ok {
                    done += 1;
                    if record_latency {
                        latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                } else {
                    failed += 1;
                    // A broken connection stays broken: open a fresh one.
                    match Conn::connect(addr).await {
                        Ok(fresh) => conn = fresh,
                        Err(_) => break,
                    }
                }
            }
            (done, failed, latencies)
        });
    }
    let mut result = LoadResult {
        completed: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    while let Some(joined) = tasks.join_next().await {
        let (done, failed, latencies) = joined?;
        result.completed += done;
        result.failed += failed;
        result.latencies_us.extend(latencies);
    }
    result.elapsed = start.elapsed();
    result.latencies_us.sort_unstable();
    Ok(result)
}
