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

use crate::workload::Surface;

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

/// A JSON request with the headers batchd's Message Batches routes and the fake upstream
/// expect.
pub fn request(
    method: Method,
    addr: SocketAddr,
    path: &str,
    key: &str,
    body: Bytes,
) -> Request<Full<Bytes>> {
    request_as(
        Surface::Anthropic,
        method,
        addr,
        path,
        key,
        "application/json",
        body,
    )
}

/// A request as `surface`'s clients send it: Anthropic's SDKs with `x-api-key` and
/// `anthropic-version`, OpenAI's with `Authorization: Bearer`.
pub fn request_as(
    surface: Surface,
    method: Method,
    addr: SocketAddr,
    path: &str,
    key: &str,
    content_type: &str,
    body: Bytes,
) -> Request<Full<Bytes>> {
    let builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::CONTENT_TYPE, content_type);
    let builder = match surface {
        Surface::Anthropic => builder
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01"),
        Surface::OpenAi => builder.header(header::AUTHORIZATION, format!("Bearer {key}")),
    };
    builder
        .body(Full::new(body))
        .expect("static request parts are valid")
}

/// The boundary of the bench's multipart uploads: a line of the JSONL it uploads never
/// starts with it.
const BOUNDARY: &str = "batchd-bench-5f1c0e7a9d3b";

/// `POST /v1/files` form as the OpenAI SDKs send it (`purpose` first, then the file part):
/// its `Content-Type` and body. Built before an upload is timed, as an SDK streams a file
/// it already has.
pub fn multipart_upload(file: &[u8], filename: &str) -> (String, Bytes) {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let mut body = Vec::with_capacity(head.len() + file.len() + tail.len());
    body.extend_from_slice(head.as_bytes());
    body.extend_from_slice(file);
    body.extend_from_slice(tail.as_bytes());
    (
        format!("multipart/form-data; boundary={BOUNDARY}"),
        Bytes::from(body),
    )
}

/// The batchd API over one reused connection (reconnecting after errors), for the bench's
/// sequential calls: create, poll, delete, results; on the OpenAI surface upload, create,
/// poll and download.
pub struct Api {
    pub addr: SocketAddr,
    key: String,
    surface: Surface,
    conn: Mutex<Option<Conn>>,
}

impl Api {
    /// The Message Batches API.
    pub fn new(addr: SocketAddr, key: &str) -> Self {
        Self::on(Surface::Anthropic, addr, key)
    }

    /// The API of `surface`, authenticated as its SDKs do.
    pub fn on(surface: Surface, addr: SocketAddr, key: &str) -> Self {
        Self {
            addr,
            key: key.to_owned(),
            surface,
            conn: Mutex::new(None),
        }
    }

    /// Sends one JSON request; the response is returned unread so callers can stream it.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        self.send_typed(method, path, "application/json", body)
            .await
    }

    /// Sends one request with the given `Content-Type`.
    pub async fn send_typed(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut slot = self.conn.lock().await;
        // The server closes keep-alive connections left idle past its header timeout; like the
        // SDKs' pools, start a new one instead of sending on a closed one.
        if slot.as_ref().is_none_or(Conn::is_closed) {
            *slot = Some(Conn::connect(self.addr).await?);
        }
        let request = request_as(
            self.surface,
            method.clone(),
            self.addr,
            path,
            &self.key,
            content_type,
            body,
        );
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
        self.call_typed(method, path, "application/json", body)
            .await
    }

    /// [`Api::call`] with the given `Content-Type`.
    pub async fn call_typed(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self
            .send_typed(method.clone(), path, content_type, body)
            .await?;
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
        self.wait_for(
            &format!("/v1/messages/batches/{id}"),
            every,
            deadline,
            |batch| batch["processing_status"] == "ended",
        )
        .await
    }

    /// Polls `GET path` every `every` until `done` holds for the object; returns the instant
    /// it was first seen to hold and that object.
    pub async fn wait_for(
        &self,
        path: &str,
        every: Duration,
        deadline: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<(Instant, serde_json::Value)> {
        let give_up = Instant::now() + deadline;
        loop {
            let object = self.call(Method::GET, path, Bytes::new()).await?;
            if done(&object) {
                return Ok((Instant::now(), object));
            }
            if Instant::now() > give_up {
                bail!(
                    "{path} was not done within {deadline:?}: {}",
                    object["request_counts"]
                );
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Uploads a `purpose=batch` file (a body from [`multipart_upload`]); returns its id.
    pub async fn upload(&self, content_type: &str, body: Bytes) -> anyhow::Result<String> {
        let file = self
            .call_typed(Method::POST, "/v1/files", content_type, body)
            .await?;
        file["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("upload answered without an id: {file}"))
    }

    /// Creates an OpenAI batch of chat completions on an uploaded file; returns its id.
    pub async fn create_openai(&self, input_file_id: &str) -> anyhow::Result<String> {
        let body = serde_json::json!({
            "input_file_id": input_file_id,
            "endpoint": Surface::OpenAi.upstream_path(),
            "completion_window": "24h",
        });
        let batch = self
            .call(Method::POST, "/v1/batches", Bytes::from(body.to_string()))
            .await?;
        batch["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("create answered without an id: {batch}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_is_a_purpose_field_and_the_file_between_boundaries() {
        let (content_type, body) = multipart_upload(b"{\"a\":1}\n", "x.jsonl");
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let text = std::str::from_utf8(&body).unwrap();
        let parts: Vec<&str> = text.split(&format!("--{boundary}")).collect();
        assert_eq!(parts.len(), 4, "{text}");
        assert_eq!(parts[0], "");
        assert!(parts[1].ends_with("name=\"purpose\"\r\n\r\nbatch\r\n"));
        assert!(parts[2].contains("name=\"file\"; filename=\"x.jsonl\""));
        assert!(parts[2].ends_with("\r\n\r\n{\"a\":1}\n\r\n"));
        assert_eq!(parts[3], "--\r\n");
    }

    #[test]
    fn each_surface_authenticates_as_its_sdks_do() {
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let r = request(Method::GET, addr, "/", "k", Bytes::new());
        assert_eq!(r.headers()["x-api-key"], "k");
        assert!(r.headers().get(header::AUTHORIZATION).is_none());
        let r = request_as(
            Surface::OpenAi,
            Method::GET,
            addr,
            "/",
            "k",
            "text/plain",
            Bytes::new(),
        );
        assert_eq!(r.headers()[header::AUTHORIZATION], "Bearer k");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain");
        assert!(r.headers().get("x-api-key").is_none());
    }
}
