//! The composition root: builds the store (see [`storage`]), the mock model, the dispatcher and
//! the HTTP layer from [`ServeOptions`] (see [`config`]) and runs them until shutdown. `main`
//! merges flags, environment and file into options; the integration tests call [`serve`]
//! directly with a listener on port 0.

pub mod config;
pub mod storage;

pub use config::ServeOptions;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt as _;
use batchd_backends::BackendTable;
use batchd_dispatcher::Dispatcher;
use batchd_domain::Timestamp;
use batchd_domain::keys::{self, KeyHash};
use batchd_http::{AppState, HttpConfig, Keys, WorkSignals};
use batchd_store::{KeyStore, Store};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Runs the server on `listener` until `shutdown` resolves, then drains within the grace period.
pub async fn serve(
    options: ServeOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api_keys = options.static_keys()?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    batchd_http::ops::install_metrics();
    let location = storage::Location {
        data_dir: &options.data_dir,
        database_url: options.database_url.as_deref(),
    };
    let storage = storage::Storage::open(location).await?;
    let store: Arc<dyn Store> = storage.store();
    if api_keys.is_empty() {
        ensure_first_key(store.as_ref()).await?;
    }

    let backends = if options.backends.is_empty() {
        BackendTable::mock(options.mock_latency, options.mock_concurrency)
    } else {
        BackendTable::from_specs(&options.backends).map_err(|e| anyhow::anyhow!(e))?
    };
    for guarded in backends.backends() {
        tracing::info!(backend = guarded.backend.name(), "backend ready");
    }
    let dispatcher = Dispatcher::start(
        store.clone(),
        Arc::new(backends),
        batchd_dispatcher::Config {
            concurrency: options.concurrency,
            results_retention: options.results_retention,
            retry_base_delay: options.retry_base_delay,
            retry_max_delay: options.retry_max_delay,
            ..Default::default()
        },
    );
    let state = AppState::new(
        store.clone(),
        Arc::new(DispatcherSignals(dispatcher.clone())),
        Keys::new(api_keys, store.clone()),
        HttpConfig {
            public_url: options.public_url.clone(),
            batch_expiry: options.batch_expiry,
            max_create_bytes: options.max_create_bytes,
        },
    );
    let app = batchd_http::router(state);
    tracing::info!(%addr, storage = %location.describe(), "batchd listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cut = CancellationToken::new();
    let listener = CutListener {
        inner: listener,
        cut: cut.clone(),
    }
    // Only for its `Connected` impl, which keeps `ConnectInfo<SocketAddr>` available.
    .tap_io(|_| {});
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stop| *stop).await;
    });
    let mut server = std::pin::pin!(server.into_future());
    let grace = options.shutdown_grace;
    tokio::select! {
        result = &mut server => {
            result.context("serving HTTP")?;
            dispatcher.shutdown(grace).await;
        }
        () = shutdown => {
            tracing::info!("shutting down: no new connections, draining");
            let _ = stop_tx.send(true);
            // Open downloads keep connections alive; give them the grace period, no more. The
            // dispatcher drains during the same period, not after it.
            let http = async {
                if tokio::time::timeout(grace, &mut server).await.is_err() {
                    tracing::warn!("grace period over with connections still open; closing them");
                    // Dropping the server future would leave its connection tasks running (a
                    // download to a client that stopped reading never ends): cut them instead.
                    cut.cancel();
                    let _ = tokio::time::timeout(Duration::from_secs(5), &mut server).await;
                }
            };
            tokio::join!(http, dispatcher.shutdown(grace));
        }
    }
    storage.close().await;
    tracing::info!("batchd stopped");
    Ok(())
}

/// The dispatcher as the HTTP layer sees it.
struct DispatcherSignals(Dispatcher);

impl WorkSignals for DispatcherSignals {
    fn notify_created(&self) {
        self.0.notify_created();
    }

    fn notify_canceled(&self, batch_key: i64) {
        self.0.notify_canceled(batch_key);
    }

    fn notify_reclaimable(&self) {
        self.0.notify_reclaimable();
    }

    fn in_flight(&self) -> usize {
        self.0.in_flight()
    }
}

/// With no key configured at all, the first start creates one for workspace `default` and
/// prints it once; it is stored only as a hash.
async fn ensure_first_key(store: &dyn KeyStore) -> anyhow::Result<()> {
    let key = keys::generate_key();
    let created = store
        .create_first_key(
            "default",
            KeyHash::of(&key),
            &keys::display_prefix(&key),
            Timestamp::now(),
        )
        .await?;
    if created.is_none() {
        return Ok(());
    }
    println!("No API key was configured, so batchd created one for workspace \"default\".");
    println!("It is shown only this once; store it now:\n\n    {key}\n");
    Ok(())
}

/// The listener of [`serve`]: its connections can be cut at once when the grace period is over.
struct CutListener {
    inner: TcpListener,
    cut: CancellationToken,
}

impl axum::serve::Listener for CutListener {
    type Io = CutStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CutStream, SocketAddr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let cut = Box::pin(self.cut.clone().cancelled_owned());
        (CutStream { io, cut }, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails every read and write once it is cut. Its task is woken by the cut,
/// so a connection waiting on a client that stopped reading fails and closes too.
struct CutStream {
    io: TcpStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
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
}

impl AsyncRead for CutStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_read(cx, buf)
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
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
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
