//! What the HTTP backends share: one pooled client per backend, the POST itself, and the mapping
//! from what went wrong upstream to a [`BackendError`] (which failures may clear, and the
//! upstream's own error type and message for those that will not).
//!
//! Error messages name the backend and what happened, never a header: the upstream key travels
//! only in a header, so it cannot leak into a result row or a log line through here.

use std::time::{Duration, SystemTime};

use batchd_domain::ErrorType;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::BackendError;
use crate::config::BackendSpec;

/// Server-requested delays longer than this are cut to it: a misbehaving upstream must not park
/// a request for a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The dialect of error bodies, which differs between the two protocols.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dialect {
    Anthropic,
    OpenAi,
}

/// A pooled HTTP client for one upstream URL.
#[derive(Debug)]
pub(crate) struct Upstream {
    client: reqwest::Client,
    /// Parsed once: parsing (with IDNA mapping of the host) per request is measurable at tens of
    /// thousands of requests per second.
    url: reqwest::Url,
    name: String,
    timeout: Duration,
    dialect: Dialect,
}

impl Upstream {
    /// `path` is appended to the base URL as [`endpoint_url`] does.
    pub fn new(
        spec: &BackendSpec,
        path: &str,
        headers: HeaderMap,
        dialect: Dialect,
    ) -> Result<Self, String> {
        let url = endpoint_url(spec, path)?;
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(spec.max_concurrency)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10).min(spec.timeout))
            .timeout(spec.timeout)
            .build()
            .map_err(|e| format!("backend `{}`: building its HTTP client: {e}", spec.name))?;
        Ok(Self {
            client,
            url,
            name: spec.name.clone(),
            timeout: spec.timeout,
            dialect,
        })
    }

    /// POSTs a JSON body; returns the body of a 2xx answer, or the error it amounts to.
    pub async fn post(
        &self,
        body: String,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<bytes::Bytes, BackendError> {
        self.post_to(&self.url, body, extra)
            .await
            .map(|(_, _, bytes)| bytes)
    }

    /// [`Upstream::post`] to another path of the same upstream (a URL from [`endpoint_url`]),
    /// with the answer's status and headers.
    pub async fn post_to(
        &self,
        url: &reqwest::Url,
        body: String,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<(StatusCode, HeaderMap, bytes::Bytes), BackendError> {
        let mut request = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in extra {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
        if status.is_success() {
            return Ok((status, headers, bytes));
        }
        Err(status_error(
            &self.name,
            self.dialect,
            status,
            &headers,
            &bytes,
            SystemTime::now(),
        ))
    }

    /// Timeouts and connection failures may clear: they are retried.
    fn transport(&self, err: &reqwest::Error) -> BackendError {
        if err.is_timeout() {
            return BackendError::unwell(
                ErrorType::Timeout,
                format!(
                    "backend `{}` did not answer within {}",
                    self.name,
                    humantime::format_duration(self.timeout)
                ),
            );
        }
        // The innermost cause says what happened (refused, reset, EOF); reqwest's own text adds
        // only "error sending request".
        let mut cause: &dyn std::error::Error = err;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        BackendError::unwell(
            ErrorType::Api,
            format!("backend `{}` could not be reached: {cause}", self.name),
        )
    }

    /// A 2xx body the backend could not use. An upstream that sends garbage once (a proxy
    /// hiccup, a truncated body) may well answer properly next time, so it is retried.
    pub fn bad_body(&self, what: &str) -> BackendError {
        BackendError::retryable(
            ErrorType::Api,
            format!("backend `{}` sent an unusable answer: {what}", self.name),
            None,
        )
    }
}

/// `path` appended to the backend's base URL, minus a `/v1` the base URL already ends with (both
/// `http://host:8000` and `http://host:8000/v1` are common ways to write it).
pub(crate) fn endpoint_url(spec: &BackendSpec, path: &str) -> Result<reqwest::Url, String> {
    let base = spec.base_url.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    reqwest::Url::parse(&format!("{base}{path}"))
        .map_err(|e| format!("backend `{}`: field `base_url`: {e}", spec.name))
}

/// Maps an error status to a [`BackendError`]: 408, 409, 429 and 5xx (529 included) may clear;
/// any other status is final and keeps the upstream's error type and message.
pub(crate) fn status_error(
    name: &str,
    dialect: Dialect,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> BackendError {
    let code = status.as_u16();
    let (upstream_type, upstream_message) = parse_error_body(dialect, body);
    let kind = upstream_type
        .as_deref()
        .and_then(ErrorType::parse)
        .unwrap_or_else(|| kind_for_status(code));
    let message = match upstream_message {
        Some(message) => message,
        None => format!(
            "backend `{name}` answered {code} {}",
            status.canonical_reason().unwrap_or("")
        )
        .trim_end()
        .to_owned(),
    };
    let retryable = matches!(code, 408 | 409 | 429) || code >= 500;
    let throttled = matches!(code, 429 | 529);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = batchd_wire::retry_after::seconds(header, now)
        .filter(|s| *s > 0.0 && s.is_finite())
        .map(|s| Duration::from_secs_f64(s).min(MAX_RETRY_AFTER));
    BackendError {
        kind,
        message,
        retryable,
        throttled,
        unwell: code >= 500,
        retry_after,
        upstream: Some((code, String::from_utf8_lossy(body).into_owned())),
    }
}

fn kind_for_status(code: u16) -> ErrorType {
    match code {
        400 | 422 => ErrorType::InvalidRequest,
        401 => ErrorType::Authentication,
        403 => ErrorType::Permission,
        404 => ErrorType::NotFound,
        413 => ErrorType::RequestTooLarge,
        429 => ErrorType::RateLimit,
        408 | 504 => ErrorType::Timeout,
        529 | 503 => ErrorType::Overloaded,
        _ => ErrorType::Api,
    }
}

/// The error type and message of an error body, when it has the dialect's shape:
/// `{"type":"error","error":{"type","message"}}` or OpenAI's `{"error":{"message","type"}}`
/// (whose types are not Anthropic's, so only the message is kept).
fn parse_error_body(dialect: Dialect, body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(rename = "type")]
        kind: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error }) => match dialect {
            Dialect::Anthropic => (error.kind, error.message),
            Dialect::OpenAi => (None, error.message),
        },
        Err(_) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(
        dialect: Dialect,
        code: u16,
        headers: &[(&'static str, &str)],
        body: &str,
    ) -> BackendError {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        status_error(
            "up",
            dialect,
            StatusCode::from_u16(code).unwrap(),
            &h,
            body.as_bytes(),
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn transient_statuses_are_retried_with_their_hint() {
        let e = error(Dialect::Anthropic, 429, &[("retry-after", "2")], "");
        assert!(e.retryable && e.throttled);
        assert_eq!(e.kind, ErrorType::RateLimit);
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
        let e = error(
            Dialect::Anthropic,
            529,
            &[("retry-after-ms", "250")],
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert!(e.retryable && e.throttled);
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorType::Overloaded, "Overloaded")
        );
        assert_eq!(e.retry_after, Some(Duration::from_millis(250)));
        for code in [500, 502, 503, 504] {
            let e = error(Dialect::OpenAi, code, &[], "<html>");
            assert!(e.retryable && !e.throttled, "{code}");
            assert!(e.message.contains(&code.to_string()), "{}", e.message);
        }
        let e = error(Dialect::Anthropic, 429, &[("retry-after", "86400")], "");
        assert_eq!(e.retry_after, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn validation_errors_keep_the_upstream_type_and_message() {
        let e = error(
            Dialect::Anthropic,
            400,
            &[],
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}"#,
        );
        assert!(!e.retryable);
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorType::InvalidRequest, "max_tokens: too big")
        );
        let e = error(
            Dialect::OpenAi,
            404,
            &[],
            r#"{"error":{"message":"The model `x` does not exist.","type":"NotFoundError","code":404}}"#,
        );
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorType::NotFound, "The model `x` does not exist.")
        );
        let e = error(Dialect::OpenAi, 401, &[], "nope");
        assert_eq!(e.kind, ErrorType::Authentication);
        assert_eq!(e.message, "backend `up` answered 401 Unauthorized");
        // The OpenAI surface's error line carries what the upstream said, as it said it.
        assert_eq!(e.upstream, Some((401, "nope".to_owned())));
    }
}
