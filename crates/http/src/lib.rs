//! The HTTP layer: the six Message Batches routes on axum, byte-compatible with the real API,
//! batchd's re-run of a batch's unfinished requests beside them (`batches::rerun`), and the OpenAI Batch and Files routes ([`openai`]) on the same store.
//!
//! Layers, outermost first: [`request_id`] (ids, access log), [`auth`] (key, version, betas),
//! then the handlers in [`batches`] and [`create`], and, on a server in test mode, those of
//! [`test_mode`]. Every failure is an [`ApiError`] rendered as
//! the API's envelope, unknown routes (404) and wrong methods (405) included; on the OpenAI
//! routes it is an [`openai::OpenAiError`] in the OpenAI envelope.
//!
//! The work behind the API is reached only through [`WorkSignals`], defined here so that this
//! crate depends on the store and nothing of the dispatcher or its upstream clients.

pub mod auth;
pub mod batches;
pub mod create;
pub mod create_budget;
mod create_scan;
pub mod drain;
pub mod encoding;
pub mod error;
pub mod extract;
pub mod log_throttle;
pub mod openai;
pub mod openapi;
pub mod ops;
pub mod quota;
pub mod request_id;
pub mod test_mode;
pub mod ui;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use batchd_domain::ErrorType;
use batchd_store::{BatchStore, FileStore};

pub use auth::Keys;
pub use error::ApiError;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Base URL that `results_url` points at; derived from each request's `Host` when unset.
    pub public_url: Option<String>,
    /// Whether this server itself answers over TLS: URLs derived from `Host` then say `https`
    /// whatever `X-Forwarded-Proto` claims.
    pub tls: bool,
    /// How long after creation a batch expires.
    pub batch_expiry: Duration,
    /// Largest accepted create body.
    pub max_create_bytes: u64,
    /// How long a create body may wait for the client before it must keep up the minimum rate
    /// (see [`create::MIN_BODY_RATE`]).
    pub body_timeout: Duration,
    /// Creates processed at once. Each holds a blocking thread and some memory while its body
    /// streams through ([`create_budget`]); 150 parallel 10 MB creates peaked at 1.75 GB of RSS
    /// without a cap and at 346 MB with the default of 16 (when a create held up to ~16 MB).
    /// More slots would not create faster: the store writes one create at a time anyway.
    pub max_concurrent_creates: usize,
    /// How long a create beyond `max_concurrent_creates` waits for a slot before it is refused
    /// with 529 `overloaded_error` (and `retry-after`, which the SDKs honour).
    pub create_queue_timeout: Duration,
    /// Queue caps, rate limits and the failed-authentication throttle.
    pub quotas: quota::QuotaConfig,
    /// `anthropic-beta` names accepted beyond the published ones
    /// ([`batchd_domain::betas::BETAS`]), so that a new beta needs no release. They unlock no
    /// field and are forwarded upstream.
    pub extra_betas: Vec<String>,
    /// Limits and rules of the OpenAI surface.
    pub openai: openai::OpenAiConfig,
    /// Which webhook destinations beyond public `https://` ones are allowed.
    pub webhooks: batchd_webhooks::policy::Policy,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            tls: false,
            batch_expiry: Duration::from_secs(24 * 3600),
            max_create_bytes: 256 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            max_concurrent_creates: 16,
            create_queue_timeout: Duration::from_secs(10),
            quotas: quota::QuotaConfig::default(),
            extra_betas: Vec::new(),
            openai: openai::OpenAiConfig::default(),
            // Public https destinations only, unless the operator says otherwise.
            webhooks: batchd_webhooks::policy::Policy::default(),
        }
    }
}

/// What the handlers tell the work behind the API, and the one figure they read back from it.
/// The composition root satisfies it with the dispatcher.
pub trait WorkSignals: Send + Sync + 'static {
    /// A batch was committed: claim its requests now rather than at the next poll.
    fn notify_created(&self);
    /// A batch entered `canceling`: its requests not yet sent must not be.
    fn notify_canceled(&self, batch_key: i64);
    /// Rows wait to be reclaimed (a batch was deleted, or a create was aborted).
    fn notify_reclaimable(&self);
    /// Batches were ended here rather than by the work behind the API (a test clock's advance
    /// settled them): an OpenAI batch among them needs its files written.
    fn notify_ended(&self, ended: batchd_store::Ended);
    /// Requests currently at a backend.
    fn in_flight(&self) -> usize;
}

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn BatchStore>,
    /// The OpenAI surface's files.
    files: Arc<dyn FileStore>,
    work: Arc<dyn WorkSignals>,
    keys: Keys,
    config: HttpConfig,
    creates: create_budget::CreateBudget,
    rate: quota::RateLimiter,
    auth_throttle: quota::AuthThrottle,
    drains: drain::Drains,
    /// Present exactly when test mode is on (see [`AppState::with_test_mode`]).
    test: Option<test_mode::TestMode>,
    /// Webhook endpoints (see [`AppState::with_webhooks`]); without them the routes answer 404.
    webhooks: Option<Arc<dyn batchd_store::WebhookStore>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn BatchStore>,
        files: Arc<dyn FileStore>,
        work: Arc<dyn WorkSignals>,
        keys: Keys,
        config: HttpConfig,
    ) -> Self {
        let auth_throttle = quota::AuthThrottle::new(
            config.quotas.auth_failure_limit,
            config.quotas.auth_failure_window,
            quota::MAX_TRACKED_ADDRESSES,
        );
        Self {
            inner: Arc::new(Inner {
                store,
                files,
                work,
                keys,
                creates: create_budget::CreateBudget::new(
                    config.max_concurrent_creates,
                    config.create_queue_timeout,
                ),
                drains: drain::Drains::new(&config),
                config,
                rate: quota::RateLimiter::default(),
                auth_throttle,
                test: None,
                webhooks: None,
            }),
        }
    }

    /// Base for absolute URLs in responses, without a trailing slash.
    fn public_base(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.inner.config.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let forwarded = headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .filter(|p| *p == "https" || *p == "http");
        let scheme = if self.inner.config.tls {
            "https"
        } else {
            forwarded.unwrap_or("http")
        };
        format!("{scheme}://{host}")
    }
}

/// The whole API as a router: `/v1` behind authentication, operator endpoints beside it.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new()
        .route(
            "/v1/messages/batches",
            post(create::create).get(batches::list),
        )
        .route(
            "/v1/messages/batches/{id}",
            get(batches::retrieve).delete(batches::delete),
        )
        .route("/v1/messages/batches/{id}/cancel", post(batches::cancel))
        .route("/v1/messages/batches/{id}/rerun", post(batches::rerun))
        .route("/v1/messages/batches/{id}/results", get(batches::results))
        .route("/v1/messages/batches/{id}/progress", get(batches::progress))
        .route(
            "/v1/batchd/webhooks",
            post(webhooks::create).get(webhooks::list),
        )
        .route(
            "/v1/batchd/webhooks/{id}",
            get(webhooks::retrieve).delete(webhooks::delete),
        )
        .route(
            "/v1/batchd/webhooks/{id}/rotate_secret",
            post(webhooks::rotate),
        )
        .route(
            "/v1/batchd/webhooks/{id}/deliveries",
            get(webhooks::deliveries),
        );
    if state.test_mode() {
        api = api.merge(test_mode::routes());
    }
    let api = api
        .route_layer(from_fn_with_state(state.clone(), auth::layer))
        .merge(openai::routes(state.clone()));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/openapi.json", get(openapi::document))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(ui::router())
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn(request_id::layer))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorType::NotFound, "Not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::invalid("Method not allowed").with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED)
}
