//! Serving HTTP/1.1 connections: the accept loop with its cap on open connections, the TLS
//! handshake when the server has a certificate (see [`crate::tls`]), the header timeout each
//! connection runs under, graceful shutdown, and the cut that ends connections still
//! open when the grace period is over (`CutListener`).
//!
//! Connections are served with hyper directly rather than `axum::serve`, because only hyper's
//! own builder takes a timer and so a header timeout; the shutdown follows `axum::serve`'s: stop
//! accepting, ask every connection to finish its request in progress, wait for them all.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use batchd_http::log_throttle::LogThrottle;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::ServiceExt as _;

use crate::tls::Tls;

/// Largest request head (request line and headers) accepted; a larger one gets a bare 431.
/// Without it the only bound is hyper's read buffer (~408 KiB), which a head slightly over it
/// can pass or not depending on how its bytes arrive. 128 KiB stays above hyper's 64 KiB URI
/// limit, so an overlong URI still gets its 414.
const MAX_HEAD_BYTES: usize = 128 * 1024;

/// What bounds the connections of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, counted from when it is
    /// ready for the next request: so also how long a keep-alive connection may stay idle.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Under the common `ulimit -n 1024`, leaves a quarter of the descriptors to the
            // database, the upstream clients and the logs.
            max_connections: 768,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then waits for the open connections to
/// finish their requests. `cut` fails every read and write of every connection at once.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<Tls>>,
    mut stop: watch::Receiver<bool>,
    cut: CancellationToken,
) {
    let mut listener = CutListener {
        inner: listener,
        cut,
    };
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let full = LogThrottle::default();
    let stalled = Arc::new(LogThrottle::default());
    let handshakes = Arc::new(LogThrottle::default());
    // Every connection task holds a receiver; the sender's `closed` is all of them finished.
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(missed) = full.due() {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        times_since_last_warning = missed,
                        "connection cap reached: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => permit.expect("never closed"),
                    _ = stop.wait_for(|stop| *stop) => break,
                }
            }
        };
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let app = app.clone();
        let stop = stop.clone();
        let close_rx = close_rx.clone();
        let stalled = stalled.clone();
        let handshakes = handshakes.clone();
        // Read per connection: a reload applies to the connections accepted after it.
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let unanswered = io.unanswered.clone();
            let conn = Connection {
                app,
                addr,
                header_timeout,
                unanswered,
                stalled,
                stop,
            };
            match acceptor {
                None => conn.serve(io).await,
                // The handshake holds a permit and runs under the header timeout, as the
                // request headers would: a client that never finishes it is closed alike.
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(io)).await {
                        Ok(Ok(io)) => conn.serve(io).await,
                        Ok(Err(err)) => handshake_failed(&err, &addr, &handshakes),
                        Err(_) => conn.stalled_handshake(),
                    }
                }
            }
            drop(permit);
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

/// One accepted connection, before it is served over TCP or, once its handshake is done, TLS.
struct Connection {
    app: Router,
    addr: SocketAddr,
    header_timeout: Duration,
    unanswered: Arc<AtomicBool>,
    stalled: Arc<LogThrottle>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    /// Serves HTTP/1.1 on `io` until the client or the server closes it.
    async fn serve<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (app, addr) = (self.app, self.addr);
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(addr));
            app.clone().oneshot(req.map(Body::new))
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_header_size(MAX_HEAD_BYTES);
        let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
        let mut stopping = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        let unanswered = self.unanswered.load(Ordering::Relaxed);
                        closed(&err, &addr, unanswered, &self.stalled);
                    }
                    break;
                }
                _ = self.stop.wait_for(|stop| *stop), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }

    /// Logs a TLS handshake cut by the header timeout as the stalled request it amounts to.
    fn stalled_handshake(&self) {
        let addr = &self.addr;
        tracing::debug!(%addr, "connection closed: TLS handshake not finished in time");
        if let Some(missed) = self.stalled.due() {
            tracing::warn!(
                %addr,
                times_since_last_warning = missed,
                "closed a connection that did not finish its TLS handshake in time"
            );
        }
    }
}

/// Logs a failed TLS handshake: a scanner, a plain-HTTP client or one that does not trust the
/// certificate. Common and the client's business, so never more than one line per interval.
fn handshake_failed(err: &io::Error, addr: &SocketAddr, handshakes: &LogThrottle) {
    tracing::debug!(%addr, error = %err, "TLS handshake failed");
    if let Some(missed) = handshakes.due() {
        tracing::info!(
            %addr,
            error = %err,
            times_since_last = missed,
            "TLS handshake failed"
        );
    }
}

/// Logs a connection that ended with an error. A header timeout on a connection that sent
/// nothing since its last answer is an idle keep-alive ending, as expected; one in the middle of
/// a request is a client too slow or hostile, worth an operator's eye now and then.
fn closed(err: &hyper::Error, addr: &SocketAddr, unanswered: bool, stalled: &LogThrottle) {
    if !err.is_timeout() {
        tracing::debug!(%addr, error = %err, "connection ended with an error");
    } else if !unanswered {
        tracing::debug!(%addr, "idle connection closed");
    } else {
        tracing::debug!(%addr, "connection closed: request headers not received in time");
        if let Some(missed) = stalled.due() {
            tracing::warn!(
                %addr,
                times_since_last_warning = missed,
                "closed a connection that did not send its request headers in time"
            );
        }
    }
}

/// The listener of [`serve`]: its connections can be cut at once when the grace period is over.
struct CutListener {
    inner: TcpListener,
    cut: CancellationToken,
}

impl CutListener {
    /// The next connection, made cuttable. Accept errors are handled as `axum::serve` handles
    /// them (logged, retried after a pause).
    async fn accept(&mut self) -> (CutStream, SocketAddr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let cut = Box::pin(self.cut.clone().cancelled_owned());
        let unanswered = Arc::new(AtomicBool::new(false));
        (
            CutStream {
                io,
                cut,
                unanswered,
            },
            addr,
        )
    }
}

/// A connection that fails every read and write once it is cut. Its task is woken by the cut,
/// so a connection waiting on a client that stopped reading fails and closes too.
struct CutStream {
    io: TcpStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Whether the client sent bytes since the server last wrote: what tells a stalled request
    /// from an idle connection when the header timeout closes it.
    unanswered: Arc<AtomicBool>,
}

impl CutStream {
    fn check(&mut self, cx: &mut std::task::Context<'_>) -> io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "server shut down",
            )),
            Poll::Pending => Ok(()),
        }
    }

    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        if matches!(result, Poll::Ready(Ok(n)) if *n > 0) {
            self.unanswered.store(false, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for CutStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.unanswered.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncWrite for CutStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
