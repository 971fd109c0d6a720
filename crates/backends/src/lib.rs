//! Model backends: where the dispatcher sends one validated request and gets one Message back.
//!
//! [`Backend`] is the seam; [`mock::MockBackend`] is the built-in deterministic model used by
//! default, on laptops and in CI.

use std::time::Duration;

use async_trait::async_trait;
use batchd_domain::ErrorType;
use batchd_domain::params::Params;

pub mod mock;

pub use mock::MockBackend;

/// One request as a backend sees it.
#[derive(Debug, Clone, Copy)]
pub struct BackendRequest<'a> {
    /// Validated params.
    pub params: &'a Params,
    /// The `params` JSON exactly as the client sent it, for backends that forward it verbatim.
    pub raw_params: &'a str,
    /// The batch's `anthropic-beta` values.
    pub betas: &'a [String],
    pub batch_id: &'a str,
    pub custom_id: &'a str,
}

/// Why a backend produced no Message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct BackendError {
    pub kind: ErrorType,
    pub message: String,
    /// Whether trying again later may succeed (429, 529, 5xx, timeouts, resets).
    pub retryable: bool,
    /// The upstream's `retry-after`, when it gave one.
    pub retry_after: Option<Duration>,
}

/// A model server.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs and metrics labels (`mock`, or a configured backend's name).
    fn name(&self) -> &str;

    /// Sends one request. `Ok` is the serialized assistant `Message` JSON (compact, with
    /// `usage.service_tier` set to `"batch"`).
    async fn send(&self, request: BackendRequest<'_>) -> Result<String, BackendError>;
}
