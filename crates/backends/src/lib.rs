//! Model backends: where the dispatcher sends one validated request and gets one Message back.
//!
//! [`Backend`] is the seam. Its implementations: [`mock::MockBackend`], the built-in
//! deterministic model used by default on laptops and in CI; [`anthropic::AnthropicBackend`]
//! for servers speaking `/v1/messages`; [`openai::OpenAiBackend`] for servers speaking
//! `/v1/chat/completions`, with the translation in [`openai::translate`].
//!
//! [`BackendTable`] picks a backend by model name (the `[[backends]]` config entries, first
//! matching glob wins); each entry is a [`GuardedBackend`], the backend behind its admission
//! limits and breaker ([`limits`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use batchd_domain::params::Params;
use batchd_domain::{ApiVersion, ErrorType};

pub mod anthropic;
pub mod config;
pub mod limits;
mod message;
pub mod mock;
pub mod openai;
mod upstream;

pub use anthropic::AnthropicBackend;
pub use config::{BackendConfig, BackendSpec, Kind, Secret};
pub use mock::MockBackend;
pub use openai::OpenAiBackend;

use crate::limits::{Breaker, Concurrency, RateLimit};

/// One request as a backend sees it.
#[derive(Debug, Clone, Copy)]
pub struct BackendRequest<'a> {
    /// Validated params.
    pub params: &'a Params,
    /// The `params` JSON exactly as the client sent it, for backends that forward it verbatim.
    pub raw_params: &'a str,
    /// The batch's `anthropic-beta` values.
    pub betas: &'a [String],
    /// The `anthropic-version` the batch was created with.
    pub version: ApiVersion,
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
    /// The upstream said it is rate limited or overloaded (429, 529): send less at once.
    pub throttled: bool,
    /// The upstream looks unwell rather than this request bad: no connection, no answer in
    /// time, or a 5xx. Enough of these in a row pause the backend (see `limits::Breaker`).
    pub unwell: bool,
    /// The upstream's `retry-after`, when it gave one.
    pub retry_after: Option<Duration>,
}

impl BackendError {
    /// A failure that may clear if the request is sent again later.
    pub fn retryable(kind: ErrorType, message: String, retry_after: Option<Duration>) -> Self {
        Self {
            kind,
            message,
            retryable: true,
            throttled: false,
            unwell: false,
            retry_after,
        }
    }

    /// The upstream could not be reached or did not answer: retried, and counted by the
    /// backend's breaker.
    pub fn unwell(kind: ErrorType, message: String) -> Self {
        Self {
            unwell: true,
            ..Self::retryable(kind, message, None)
        }
    }

    /// A failure that sending again would repeat; it becomes the request's `errored` result.
    pub fn fatal(kind: ErrorType, message: String) -> Self {
        Self {
            kind,
            message,
            retryable: false,
            throttled: false,
            unwell: false,
            retry_after: None,
        }
    }
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

/// One `[[backends]]` entry, ready to serve: the backend behind its admission limits and breaker.
pub struct GuardedBackend {
    pub backend: Arc<dyn Backend>,
    models: Vec<String>,
    /// `None` when unbounded (the default mock, which bounds itself).
    pub concurrency: Option<Concurrency>,
    pub rate: RateLimit,
    pub breaker: Breaker,
    /// Upstream attempts per request, the first included.
    pub max_attempts: u32,
}

impl GuardedBackend {
    pub fn new(backend: Arc<dyn Backend>, spec: &BackendSpec) -> Self {
        Self {
            backend,
            models: spec.models.clone(),
            concurrency: Some(Concurrency::new(
                spec.max_concurrency,
                // Throttling answers to requests sent together arrive together: count them once.
                Duration::from_secs(1),
            )),
            rate: RateLimit::new(spec.requests_per_minute, spec.input_tokens_per_minute),
            breaker: Breaker::default(),
            max_attempts: spec.max_attempts,
        }
    }

    pub fn serves(&self, model: &str) -> bool {
        self.models
            .iter()
            .any(|glob| config::glob_matches(glob, model))
    }
}

/// The configured backends, looked up by model name.
pub struct BackendTable {
    backends: Vec<Arc<GuardedBackend>>,
}

impl BackendTable {
    /// Every model goes to one built-in mock (no config file); `strict_models` as in
    /// [`MockBackend::strict_models`].
    pub fn mock(latency: Duration, concurrency: usize, strict_models: bool) -> Self {
        Self {
            backends: vec![Arc::new(GuardedBackend {
                backend: Arc::new(
                    MockBackend::new(latency, concurrency).strict_models(strict_models),
                ),
                models: vec!["*".to_owned()],
                concurrency: None,
                rate: RateLimit::new(0, 0),
                breaker: Breaker::default(),
                max_attempts: 1,
            })],
        }
    }

    /// Builds every configured backend. Errors name the backend.
    pub fn from_specs(specs: &[BackendSpec]) -> Result<Self, String> {
        let mut backends = Vec::with_capacity(specs.len());
        for spec in specs {
            if backends
                .iter()
                .any(|b: &Arc<GuardedBackend>| b.backend.name() == spec.name)
            {
                return Err(format!("backend `{}` is configured twice", spec.name));
            }
            let backend: Arc<dyn Backend> = match spec.kind {
                Kind::Anthropic => Arc::new(AnthropicBackend::new(spec)?),
                Kind::Openai => Arc::new(OpenAiBackend::new(spec)?),
                Kind::Mock => Arc::new(
                    MockBackend::named(&spec.name, spec.latency, spec.max_concurrency)
                        .strict_models(spec.strict_models),
                ),
            };
            backends.push(Arc::new(GuardedBackend::new(backend, spec)));
        }
        Ok(Self { backends })
    }

    /// Index in [`BackendTable::backends`] of the first backend serving `model`.
    pub fn index_for(&self, model: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.serves(model))
    }

    /// In configuration order.
    pub fn backends(&self) -> &[Arc<GuardedBackend>] {
        &self.backends
    }
}

/// A cheap estimate of a request's input tokens, for `input_tokens_per_minute`: a quarter of
/// the characters of its system prompt, messages and tool definitions (the usual rule of thumb
/// for English text; exact counts need the upstream's tokenizer).
pub fn estimate_input_tokens(params: &Params) -> u64 {
    let chars: usize = ["system", "messages", "tools"]
        .iter()
        .filter_map(|k| params.body.get(*k))
        .map(json_chars)
        .sum();
    (chars as u64).div_ceil(4).max(1)
}

fn json_chars(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.iter().map(json_chars).sum(),
        Value::Object(map) => map.values().map(json_chars).sum(),
        _ => 0,
    }
}
