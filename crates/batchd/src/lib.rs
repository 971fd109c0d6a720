//! The composition root: builds the store (see [`storage`]), the mock model, the dispatcher and
//! the HTTP layer from [`ServeOptions`] (see [`config`]) and runs them until shutdown. `main`
//! merges flags, environment and file into options; the integration tests call [`serve`]
//! directly with a listener on port 0.

pub mod config;
pub mod listen;
pub mod storage;
pub mod tls;

pub use config::ServeOptions;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use batchd_backends::BackendTable;
use batchd_dispatcher::Dispatcher;
use batchd_domain::Timestamp;
use batchd_domain::keys::{self, KeyHash};
use batchd_http::{AppState, HttpConfig, Keys, WorkSignals};
use batchd_store::{KeyStore, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Runs the server on `listener` until `shutdown` resolves, then drains within the grace period.
pub async fn serve(
    options: ServeOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api_keys = options.static_keys()?;
    let tls = tls::Tls::from_paths(options.tls_cert.as_deref(), options.tls_key.as_deref())?
        .map(Arc::new);
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
        BackendTable::mock(
            options.mock_latency,
            options.mock_concurrency,
            options.mock_strict_models,
        )
    } else {
        BackendTable::from_specs(&options.backends).map_err(|e| anyhow::anyhow!(e))?
    };
    for guarded in backends.backends() {
        tracing::info!(backend = guarded.backend.name(), "backend ready");
    }
    // Test mode's scripted mock outcomes: written by the test routes, read by the dispatcher.
    let scripts = options
        .test_mode
        .then(|| Arc::new(batchd_domain::script::Scripts::new()));
    let dispatcher = Dispatcher::start(
        store.clone(),
        Arc::new(backends),
        batchd_dispatcher::Config {
            concurrency: options.concurrency,
            results_retention: options.results_retention,
            retry_base_delay: options.retry_base_delay,
            retry_max_delay: options.retry_max_delay,
            scripts: scripts.clone(),
            ..Default::default()
        },
    );
    // Ended OpenAI batches get their output and error files from the results (read as downloads
    // read them) written as files.
    dispatcher.start_finalizer(batchd_dispatcher::finalizer::OutputStores {
        results: store.clone(),
        files: store.clone(),
        clocks: store.clone(),
    });
    let state = AppState::new(
        store.clone(),
        store.clone(),
        Arc::new(DispatcherSignals(dispatcher.clone())),
        Keys::new(api_keys, store.clone()),
        HttpConfig {
            public_url: options.public_url.clone(),
            tls: tls.is_some(),
            batch_expiry: options.batch_expiry,
            max_create_bytes: options.max_create_bytes,
            body_timeout: options.body_timeout,
            max_concurrent_creates: options.max_concurrent_creates,
            create_queue_timeout: options.create_queue_timeout,
            quotas: options.quotas(),
            extra_betas: options
                .extra_betas
                .iter()
                .map(|b| b.trim().to_owned())
                .filter(|b| !b.is_empty())
                .collect(),
            openai: batchd_http::openai::OpenAiConfig {
                max_file_bytes: options.openai_max_file_bytes,
                max_file_lines: options.openai_max_file_lines,
                single_model_batches: options.single_model_batches,
            },
            webhooks: batchd_webhooks::policy::Policy {
                allow_http: options.webhook_allow_http,
                allow_private: options.webhook_allow_private,
            },
        },
    );
    let state = state.with_webhooks(store.clone());
    // Completion webhooks are delivered by this process too, woken when a batch ends here and
    // polling at the maintenance interval for ends elsewhere (other processes, restarts).
    let webhook_stop = CancellationToken::new();
    let webhook_worker = {
        let defaults = batchd_webhooks::worker::Config::default();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let config = batchd_webhooks::worker::Config {
            policy: batchd_webhooks::policy::Policy {
                allow_http: options.webhook_allow_http,
                allow_private: options.webhook_allow_private,
            },
            results_base: options.public_url.as_deref().map_or_else(
                || format!("{scheme}://{addr}"),
                |url| url.trim_end_matches('/').to_owned(),
            ),
            poll_interval: batchd_dispatcher::Config::default().maintenance_interval,
            first_retry: options.webhook_first_retry,
            send_timeout: options.webhook_send_timeout,
            ..defaults
        };
        tokio::spawn(batchd_webhooks::worker::run(
            batchd_webhooks::worker::Stores {
                webhooks: store.clone(),
                batches: store.clone(),
                clocks: store.clone(),
            },
            config,
            dispatcher.ended_signal(),
            webhook_stop.clone(),
        ))
    };
    let state = if options.test_mode {
        tracing::warn!(
            "TEST MODE IS ON: /v1/batchd/test/ lets every key move its workspace's clock and \
             delete its batches; never serve real clients like this"
        );
        state.with_test_mode(batchd_http::test_mode::TestMode {
            clocks: store.clone(),
            results_retention: options.results_retention,
            scripts: scripts.unwrap_or_default(),
        })
    } else {
        state
    };
    let app = batchd_http::router(state);
    // Taken before the server says it listens, so that a SIGHUP from then on reloads and never
    // falls to the default action (ending the process).
    #[cfg(unix)]
    let reloads = match &tls {
        Some(tls) => {
            let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("listening for SIGHUP (TLS reload)")?;
            Some(tokio::spawn(tls.clone().reload_on(hangup)).abort_handle())
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        %addr,
        url = %format!("{scheme}://{addr}"),
        storage = %location.describe(),
        "batchd listening"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cut = CancellationToken::new();
    let limits = listen::Limits {
        max_connections: options.max_connections,
        header_timeout: options.header_timeout,
    };
    let mut server = std::pin::pin!(listen::serve(
        listener,
        app,
        limits,
        tls,
        stop_rx,
        cut.clone()
    ));
    let grace = options.shutdown_grace;
    tokio::select! {
        () = &mut server => {
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
    #[cfg(unix)]
    if let Some(reloads) = reloads {
        reloads.abort();
    }
    // An attempt cut here is not lost: its lease runs out and the next process sends it again
    // with the same `webhook-id`.
    webhook_stop.cancel();
    let _ = tokio::time::timeout(grace, webhook_worker).await;
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

    fn notify_ended(&self, ended: batchd_store::Ended) {
        self.0.notify_ended(ended);
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
