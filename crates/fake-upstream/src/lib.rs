//! A fast fake model server speaking both upstream dialects batchd talks to, for integration
//! tests (scripted faults) and benchmarks (speed).
//!
//! * `POST /v1/messages` (Anthropic) answers a Message: `id`, `"type": "message"`,
//!   `"role": "assistant"`, the request's `model`, one text block echoing the first 8 words of
//!   the last user turn (cycled up to [`FakeConfig::answer_words`]; `"ok"` if there are none), `"stop_reason": "end_turn"`,
//!   `"stop_sequence": null` and `usage` (`input_tokens` = body bytes / 4, `output_tokens` =
//!   echoed words).
//! * `POST /v1/chat/completions` (OpenAI) answers a `chat.completion` with the same text in
//!   `choices[0].message.content`, `"finish_reason": "stop"` and `usage`.
//! * A body that does not parse (no `model`, no `messages`, not JSON) gets 400 with the
//!   dialect's error body; any other path gets 404 with Anthropic's envelope.
//!
//! Every request waits [`FakeConfig::latency`] first.
//!
//! # Fault directives
//!
//! Faults are scripted by the request itself, so tests stay deterministic under concurrency:
//! put a directive anywhere in the body (typically in the prompt text) and the fake upstream
//! faults the first `N` attempts of *that exact body* (attempts are counted by a hash of the
//! body bytes), then answers normally.
//!
//! ```text
//! [[fake:fail=2,status=529]]                  first 2 attempts: 529 overloaded_error
//! [[fake:fail=1,status=429,retry_after=1]]    429 with `retry-after: 1`
//! [[fake:fail=3,status=429,retry_after_ms=150]]  429 with `retry-after-ms: 150`
//! [[fake:fail=1,kind=reset]]                  TCP reset, no response
//! [[fake:fail=1,kind=hang]]                   never answers (until the client gives up)
//! [[fake:fail=1,kind=malformed]]              200 with a body that is not JSON
//! [[fake:always,status=400,message=max_tokens: too large]]  every attempt: 400 with that message
//! [[fake:fail=0,delay_ms=200]]               no fault, 200 ms slower
//! ```
//!
//! Items are comma-separated `key=value`:
//!
//! | key | meaning |
//! |---|---|
//! | `fail=N` | fault the first `N` attempts (default 1) |
//! | `always` | fault every attempt |
//! | `status=CODE` | answer `CODE` with the dialect's error body (default 500); types: 400 `invalid_request_error`, 404 `not_found_error`, 429 `rate_limit_error`, 504 `timeout_error`, 529 `overloaded_error`, other 5xx `api_error` (OpenAI: `server_error`) |
//! | `kind=status\|hang\|reset\|malformed` | the fault's kind (default `status`) |
//! | `retry_after=S` / `retry_after_ms=MS` | add a `retry-after` / `retry-after-ms` header |
//! | `delay_ms=MS` | extra latency for this body, faulted or not |
//! | `message=TEXT` | the error message; must come last and runs up to `]]` (may hold commas) |
//!
//! `[[fake:fail=0,delay_ms=200]]` slows one request down without faulting it. A directive that
//! does not parse answers 400 naming the problem, so a typo fails a test instead of passing it.
//! Every answer to a body with a directive carries `x-fake-attempt: N` (1-based).
//!
//! # Observability
//!
//! [`FakeUpstream::stats`] gives requests per endpoint, in-flight and max-in-flight gauges
//! (resettable), scripted faults served, and — when [`FakeConfig`] asks for them — arrival
//! times and copies of the last requests (method, path, headers, body) in bounded rings.
//!
//! # Speed
//!
//! HTTP/1.1 keep-alive through hyper with no router; the fast path touches only atomics, one
//! `memmem` scan for `[[fake:`, a borrowed JSON parse and a small serialization.

mod dialect;
mod directive;
mod stats;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub use dialect::Dialect;
pub use directive::{Directive, DirectiveError, FaultKind};
pub use stats::{Endpoint, RecordedRequest, Stats};

/// How a fake upstream behaves and what it records.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Waited before every answer (faults included).
    pub latency: Duration,
    /// Arrival times kept for rate assertions (a ring of this many; 0 = off).
    pub record_arrivals: usize,
    /// Copies of the last requests kept (a ring of this many; 0 = off, the fast default).
    pub record_requests: usize,
    /// Words in each answer: `None` echoes the first 8 words of the last user turn; `Some(n)`
    /// answers exactly `n`, cycling the turn's words, so benchmarks get realistic sizes.
    pub answer_words: Option<usize>,
}

impl Default for FakeConfig {
    /// No latency, the last 10,000 arrivals, no request copies.
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            record_arrivals: 10_000,
            record_requests: 0,
            answer_words: None,
        }
    }
}

impl FakeConfig {
    /// Nothing recorded beyond the counters: the configuration for benchmarks.
    pub fn fast() -> Self {
        Self {
            latency: Duration::ZERO,
            record_arrivals: 0,
            record_requests: 0,
            answer_words: None,
        }
    }

    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub fn record_arrivals(mut self, n: usize) -> Self {
        self.record_arrivals = n;
        self
    }

    pub fn record_requests(mut self, n: usize) -> Self {
        self.record_requests = n;
        self
    }

    pub fn answer_words(mut self, n: usize) -> Self {
        self.answer_words = Some(n.max(1));
        self
    }
}

/// State shared by every connection of one server.
struct Shared {
    config: FakeConfig,
    stats: Arc<Stats>,
    /// Attempts per body hash, only for bodies that carry a directive.
    attempts: Mutex<HashMap<u64, u32>>,
    /// Makes response ids unique.
    seq: AtomicU64,
}

/// A running fake upstream. Dropping it stops the server and closes its connections.
#[derive(Debug)]
pub struct FakeUpstream {
    addr: SocketAddr,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    /// Starts a server on `127.0.0.1` on a free port.
    pub async fn start(config: FakeConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::start_on(listener, config)
    }

    /// Starts a server on a listener the caller bound.
    pub fn start_on(listener: TcpListener, config: FakeConfig) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::new(config.record_arrivals, config.record_requests));
        let shared = Arc::new(Shared {
            config,
            stats: stats.clone(),
            attempts: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
        });
        let task = tokio::spawn(serve(listener, shared));
        Ok(Self { addr, stats, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base URL to configure a client or backend with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A handle on the statistics that outlives `self`.
    pub fn stats_handle(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Serves until the returned future is dropped; for the binary, which owns its runtime.
    pub async fn serve_forever(listener: TcpListener, config: FakeConfig) {
        let stats = Arc::new(Stats::new(config.record_arrivals, config.record_requests));
        serve(
            listener,
            Arc::new(Shared {
                config,
                stats,
                attempts: Mutex::new(HashMap::new()),
                seq: AtomicU64::new(0),
            }),
        )
        .await
    }
}

/// Accepts connections; connection tasks live in a `JoinSet` so aborting this task (dropping
/// the `FakeUpstream`) also ends every connection, hanging ones included.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                connections.spawn(connection(stream, shared.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    // Small answers must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(ResetIo {
        inner: stream,
        reset: reset.clone(),
    });
    let service = service_fn(move |request| handle(shared.clone(), reset.clone(), request));
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // The default 30 s header timeout needs a timer per request; clients here are ours.
        .header_read_timeout(None)
        .serve_connection(io, service)
        .await;
}

/// A `kind=reset` fault: the handler's error makes hyper drop the connection unanswered.
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("scripted connection reset")
    }
}

impl std::error::Error for ResetConnection {}

/// The TCP stream with a flag: when a handler asked for a reset, dropping the stream sets
/// `SO_LINGER` to zero first, so the kernel sends RST instead of an orderly FIN.
struct ResetIo {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResetIo {
    fn drop(&mut self) {
        if self.reset.load(Relaxed) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResetIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.reset.load(Relaxed) {
            // No FIN before the RST: the client must see a reset, not a clean close.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type Answer = Result<Response<Full<Bytes>>, ResetConnection>;

fn respond(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn body_hash(body: &[u8]) -> u64 {
    // SipHash with fixed keys: the same body counts as the same attempt series in every run.
    let mut hasher = DefaultHasher::new();
    hasher.write(body);
    hasher.finish()
}

async fn handle(shared: Arc<Shared>, reset: Arc<AtomicBool>, request: Request<Incoming>) -> Answer {
    let arrived = Instant::now();
    let endpoint = match (request.method(), request.uri().path()) {
        (&Method::POST, "/v1/messages") => Endpoint::Messages,
        (&Method::POST, "/v1/chat/completions") => Endpoint::ChatCompletions,
        _ => Endpoint::Other,
    };
    let stats = &shared.stats;
    let _in_flight = stats.arrive(endpoint, arrived);
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        // The client went away mid-body; nobody is left to answer.
        return Err(ResetConnection);
    };
    if stats.records_requests() {
        stats.record(RecordedRequest {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            headers: parts.headers.clone(),
            body: body.clone(),
            at: arrived,
        });
    }
    let dialect = match endpoint {
        Endpoint::Messages => Dialect::Anthropic,
        Endpoint::ChatCompletions => Dialect::OpenAi,
        Endpoint::Other => {
            sleep(shared.config.latency).await;
            let message = format!("Not found: {} {}", parts.method, parts.uri.path());
            return Ok(respond(
                StatusCode::NOT_FOUND,
                dialect::error(Dialect::Anthropic, 404, &message),
            ));
        }
    };

    let (fault, attempt, delay) = match directive::find(&body) {
        Ok(None) => (None, None, Duration::ZERO),
        Err(DirectiveError(message)) => {
            sleep(shared.config.latency).await;
            return Ok(respond(
                StatusCode::BAD_REQUEST,
                dialect::error(dialect, 400, &format!("fake upstream: {message}")),
            ));
        }
        Ok(Some(directive)) => {
            let attempt = {
                let mut attempts = shared.attempts.lock().unwrap_or_else(|e| e.into_inner());
                let n = attempts.entry(body_hash(&body)).or_insert(0);
                *n += 1;
                *n
            };
            let faulted = directive.fail.is_none_or(|n| attempt <= n);
            let delay = directive.delay.unwrap_or_default();
            (faulted.then_some(directive), Some(attempt), delay)
        }
    };
    sleep(shared.config.latency + delay).await;

    let mut response = match fault {
        None => answer(&shared, dialect, &body),
        Some(directive) => {
            stats.fault_served();
            match directive.kind {
                FaultKind::Hang => std::future::pending().await,
                FaultKind::Reset => {
                    reset.store(true, Relaxed);
                    return Err(ResetConnection);
                }
                FaultKind::Malformed => {
                    respond(StatusCode::OK, b"{\"id\": \"msg_fake\", <not json".to_vec())
                }
                FaultKind::Status(code) => {
                    let status =
                        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    let message = directive
                        .message
                        .as_deref()
                        .unwrap_or_else(|| dialect::default_message(code));
                    let mut response = respond(status, dialect::error(dialect, code, message));
                    let headers = response.headers_mut();
                    if let Some(s) = directive.retry_after {
                        headers.insert("retry-after", HeaderValue::from(s));
                    }
                    if let Some(ms) = directive.retry_after_ms {
                        headers.insert("retry-after-ms", HeaderValue::from(ms));
                    }
                    response
                }
            }
        }
    };
    if let Some(attempt) = attempt {
        response
            .headers_mut()
            .insert("x-fake-attempt", HeaderValue::from(attempt));
    }
    Ok(response)
}

fn answer(shared: &Shared, dialect: Dialect, body: &[u8]) -> Response<Full<Bytes>> {
    match dialect::parse(body, shared.config.answer_words) {
        Ok(parsed) => {
            let seq = shared.seq.fetch_add(1, Relaxed) + 1;
            let created = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            respond(
                StatusCode::OK,
                dialect::success(dialect, &parsed, body, seq, created),
            )
        }
        Err(message) => respond(
            StatusCode::BAD_REQUEST,
            dialect::error(dialect, 400, &message),
        ),
    }
}

async fn sleep(duration: Duration) {
    // Skipping the timer entirely at 0 ms keeps the benchmark path free of timer-wheel work.
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}
