//! Model backends: where the dispatcher sends one validated request and gets one Message back
//! (the Anthropic surface), or one OpenAI-surface request and the upstream's answer to it.
//!
//! [`Backend`] is the seam. Its implementations: [`mock::MockBackend`], the built-in
//! deterministic model used by default on laptops and in CI; [`anthropic::AnthropicBackend`]
//! for servers speaking `/v1/messages`; [`openai::OpenAiBackend`] for servers speaking
//! `/v1/chat/completions`, with the translation in [`openai::translate`], which also takes the
//! OpenAI surface's requests byte for byte to the endpoint they name.
//!
//! [`BackendTable`] picks a backend by model name (the `[[backends]]` config entries, first
//! matching glob wins); each entry is a [`GuardedBackend`], the backend behind its admission
//! limits and breaker ([`limits`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use batchd_domain::openai::Endpoint;
use batchd_domain::params::Params;
use batchd_domain::{ApiVersion, ErrorType};

pub mod anthropic;
mod compact;
pub mod config;
pub mod limits;
mod message;
pub mod mock;
pub mod openai;
mod upstream;

pub use anthropic::AnthropicBackend;
pub use compact::compact_json;
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

/// One OpenAI-surface request as a backend sees it.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiRequest<'a> {
    pub endpoint: Endpoint,
    /// The line's `body` JSON exactly as uploaded.
    pub body: &'a str,
    /// `body.model`, already read by the router.
    pub model: &'a str,
    pub batch_id: &'a str,
    pub custom_id: &'a str,
}

/// A 2xx answer to an [`OpenAiRequest`]: what goes into the output line's `response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiAnswer {
    pub status_code: u16,
    pub request_id: String,
    /// The endpoint's response object, compact JSON.
    pub body: String,
}

/// Why a backend produced no Message (or no [`OpenAiAnswer`]).
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
    /// The upstream's status and body, when it answered (an OpenAI error-file line carries
    /// them); `None` when it never did (no connection, no answer in time) or was never asked.
    pub upstream: Option<(u16, String)>,
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
            upstream: None,
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
            upstream: None,
        }
    }

    /// A request refused the way an OpenAI server refuses one: a 400 with the OpenAI error
    /// envelope (`invalid_request_error`), which becomes the line's `response` in the error file.
    pub fn openai_refusal(message: &str, param: Option<&str>, code: Option<&str>) -> Self {
        #[derive(serde::Serialize)]
        struct Envelope<'a> {
            error: Inner<'a>,
        }
        #[derive(serde::Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: Option<&'a str>,
        }
        let body = serde_json::to_string(&Envelope {
            error: Inner {
                message,
                kind: "invalid_request_error",
                param,
                code,
            },
        })
        .unwrap_or_default();
        Self {
            upstream: Some((400, body)),
            ..Self::fatal(ErrorType::InvalidRequest, message.to_owned())
        }
    }

    /// The backend has no such endpoint: the request was never sent.
    pub fn cannot_serve(backend: &str, endpoint: Endpoint) -> Self {
        Self::fatal(ErrorType::InvalidRequest, cannot_serve(backend, endpoint))
    }
}

/// A `request_id` for an answer whose upstream gave none: 32 hex digits (the hosted API's
/// layout) derived from the request, so an answer written again is the same bytes.
pub fn derived_request_id(batch_id: &str, custom_id: &str) -> String {
    use batchd_domain::ids::{FNV_OFFSET, fnv1a};
    // 0xFF never occurs in UTF-8, so it separates the two parts unambiguously.
    let a = fnv1a(
        fnv1a(fnv1a(FNV_OFFSET, batch_id.as_bytes()), &[0xFF]),
        custom_id.as_bytes(),
    );
    let b = fnv1a(a ^ 0x5265_7175_6573_7449, custom_id.as_bytes());
    format!("{a:016x}{b:016x}")
}

/// The one text for a request whose backend does not serve its endpoint.
pub fn cannot_serve(backend: &str, endpoint: Endpoint) -> String {
    format!("backend `{backend}` cannot serve {endpoint}")
}

/// A model server.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs and metrics labels (`mock`, or a configured backend's name).
    fn name(&self) -> &str;

    /// Sends one request. `Ok` is the serialized assistant `Message` JSON (compact, with
    /// `usage.service_tier` set to `"batch"`).
    async fn send(&self, request: BackendRequest<'_>) -> Result<String, BackendError>;

    /// Whether [`Backend::send_openai`] can serve `endpoint` at all; the dispatcher asks first,
    /// so a request no backend can serve waits for no admission and spends no attempt.
    fn serves_endpoint(&self, endpoint: Endpoint) -> bool {
        let _ = endpoint;
        false
    }

    /// Whether this is the built-in mock, whose answers test mode may script.
    fn is_mock(&self) -> bool {
        false
    }

    /// Sends one OpenAI-surface request: `body` is the line's `body` JSON exactly as uploaded.
    /// The default answers that this backend cannot serve `endpoint`.
    async fn send_openai(&self, request: OpenAiRequest<'_>) -> Result<OpenAiAnswer, BackendError> {
        Err(BackendError::cannot_serve(self.name(), request.endpoint))
    }
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
            .any(|glob| batchd_domain::glob::matches(glob, model))
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
/// for English text; exact counts need the upstream's tokenizer). Reads the raw `params` in
/// place: strings are counted as the parser meets them, nothing is kept.
pub fn estimate_input_tokens(raw_params: &str) -> u64 {
    let body = batchd_domain::raw_json::Object::parse(raw_params).unwrap_or_default();
    let chars: usize = ["system", "messages", "tools"]
        .iter()
        .filter_map(|k| body.get(k))
        .filter_map(|v| serde_json::from_str::<StringChars>(v.get()).ok())
        .map(|c| c.0)
        .sum();
    (chars as u64).div_ceil(4).max(1)
}

/// The characters of every string value in a JSON value (object keys aside).
struct StringChars(usize);

impl<'de> serde::Deserialize<'de> for StringChars {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringChars;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<StringChars, E> {
                Ok(StringChars(0))
            }
            fn visit_i64<E>(self, _: i64) -> Result<StringChars, E> {
                Ok(StringChars(0))
            }
            fn visit_u64<E>(self, _: u64) -> Result<StringChars, E> {
                Ok(StringChars(0))
            }
            fn visit_f64<E>(self, _: f64) -> Result<StringChars, E> {
                Ok(StringChars(0))
            }
            fn visit_unit<E>(self) -> Result<StringChars, E> {
                Ok(StringChars(0))
            }
            fn visit_str<E>(self, s: &str) -> Result<StringChars, E> {
                Ok(StringChars(s.chars().count()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringChars, A::Error> {
                let mut n = 0;
                while let Some(StringChars(c)) = seq.next_element()? {
                    n += c;
                }
                Ok(StringChars(n))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringChars, A::Error> {
                let mut n = 0;
                while let Some((serde::de::IgnoredAny, StringChars(c))) = map.next_entry()? {
                    n += c;
                }
                Ok(StringChars(n))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::estimate_input_tokens;

    #[test]
    fn the_estimate_counts_the_strings_of_system_messages_and_tools() {
        // 4 (system) + 4 + 5 ("user", "héllo": é once) + 4 + 4 + 2 ("user", "text", the
        // decoded "\u0021\n") + 1 + 3 ("t", "obj") = 27 chars -> 7 tokens; keys, numbers and
        // other fields do not count.
        let raw = r#"{"model":"a-long-model-name","system":"abcd","max_tokens":1000,
            "messages":[{"role":"user","content":"héllo"},{"role":"user","content":[{"type":"text","text":"\u0021\n"}]}],
            "tools":[{"name":"t","input_schema":{"type":"obj","n":123}}],"metadata":{"user_id":"xxxxxxxxxxxx"}}"#;
        assert_eq!(estimate_input_tokens(raw), 7);
        assert_eq!(estimate_input_tokens(r#"{"model":"m"}"#), 1);
    }
}
