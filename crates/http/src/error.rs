//! `ApiError`: the one type every handler fails with, rendered as the API's error envelope, and
//! [`ErrorCode`], the `error.details.error_code` values batchd sends.
//!
//! Internal errors are logged with their whole cause chain and shown to clients only as a
//! generic `api_error`, so storage details never leak.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use batchd_domain::{BatchId, ErrorType};
use batchd_store::{ListError, StoreError};
use batchd_wire::ErrorEnvelope;

use crate::request_id;

/// The message of every 529, as the API words it.
pub(crate) const OVERLOADED: &str = "Overloaded";
/// A create or upload whose workspace was reset (test mode) before it was stored: the reset
/// removed what it had written, and nothing was created.
pub(crate) const DRAFT_GONE: &str =
    "The workspace was reset while this request was being stored; nothing was created.";

/// The `error.details.error_code` values batchd sends: a stable name for the cause, which the
/// SDKs map, with the status, to an error class of its own
/// (<https://github.com/anthropics/anthropic-sdk-python>, `_error_classes.py`). The status each
/// goes with is the API's; a code sent with another status maps only to the status's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: the create body did not finish arriving in time.
    RequestBodyTimeout,
    /// 400: the body's `Content-Encoding` is not one the server decodes.
    RequestBodyEncodingUnsupported,
    /// 400: the body is not valid for its `Content-Encoding`.
    RequestBodyEncodingInvalid,
    /// 413: the compressed body exceeds the size limit once decoded.
    RequestBodyTooLargeAfterDecoding,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestBodyTimeout => "request_body_timeout",
            Self::RequestBodyEncodingUnsupported => "request_body_encoding_unsupported",
            Self::RequestBodyEncodingInvalid => "request_body_encoding_invalid",
            Self::RequestBodyTooLargeAfterDecoding => "request_body_too_large_after_decoding",
        }
    }
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub message: String,
    /// Seconds the client should wait before trying again, sent as `retry-after`.
    pub retry_after: Option<u64>,
    /// Tells the client not to retry (`x-should-retry: false`) a status it would otherwise
    /// retry: the same request can never succeed.
    pub final_refusal: bool,
    /// Sent as `error.details.error_code`; without one, `details` is left out.
    pub code: Option<ErrorCode>,
}

impl ApiError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        let status =
            StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
            final_refusal: false,
            code: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorType::InvalidRequest, message)
    }

    /// The 404 for a batch that does not exist, was deleted, or belongs to another workspace:
    /// the three are indistinguishable on purpose.
    pub fn batch_not_found(id: &str) -> Self {
        Self::new(
            ErrorType::NotFound,
            format!("Message Batch {id} not found."),
        )
    }

    /// Asks the client to wait `wait` before retrying, rounded up to whole seconds (at least
    /// one: `retry-after: 0` would make the SDKs retry at once).
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(secs.max(1));
        self
    }

    /// Marks the error as one retrying cannot cure (see [`ApiError::final_refusal`]).
    pub fn never_retry(mut self) -> Self {
        self.final_refusal = true;
        self.retry_after = None;
        self
    }

    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = Some(code);
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Logs `err` with its causes and returns the generic 500.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = %chain, "internal error");
        Self::new(ErrorType::Api, "Internal server error")
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // Busy, locked or full storage may clear: say so with a retryable status.
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %err, "storage unavailable");
                Self::new(ErrorType::Overloaded, OVERLOADED)
            }
            StoreError::DraftGone(_) => Self::invalid(DRAFT_GONE),
            other => Self::internal(&other),
        }
    }
}

impl From<ListError> for ApiError {
    fn from(err: ListError) -> Self {
        match err {
            ListError::UnknownCursor(id) => Self::batch_not_found(id.as_str()),
            ListError::Store(e) => e.into(),
        }
    }
}

/// Shorthand for handlers that look a batch id up.
pub fn parse_batch_id(raw: &str) -> Result<BatchId, ApiError> {
    BatchId::parse(raw).ok_or_else(|| ApiError::batch_not_found(raw))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut envelope =
            ErrorEnvelope::new(self.kind.as_str(), self.message, request_id::current());
        if let Some(code) = self.code {
            envelope = envelope.with_error_code(code.as_str());
        }
        let body = serde_json::to_vec(&envelope).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // SDKs retry 408/409/429/5xx unless told otherwise; be explicit as the real API is.
        let retry = !self.final_refusal
            && (matches!(self.status.as_u16(), 408 | 409 | 429) || self.status.is_server_error());
        headers.insert(
            "x-should-retry",
            HeaderValue::from_static(if retry { "true" } else { "false" }),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_whose_draft_a_reset_removed_is_a_clean_refusal() {
        let err = ApiError::from(batchd_store::draft_gone("batch 1 is not an open draft"));
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.message, DRAFT_GONE);
        let err = ApiError::from(batchd_store::misuse("a bug"));
        assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
