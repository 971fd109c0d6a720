//! The client's error type.
//!
//! An [`Error::Api`] is a non-2xx answer with the API's error envelope decoded (or, for bodies
//! that are not the envelope, a type derived from the status the way the SDKs name their
//! exceptions). Everything below HTTP is [`Error::Transport`]; a 2xx body that does not parse is
//! [`Error::Decode`]; asking for results of a batch without `results_url` is
//! [`Error::NoResults`], raised before any download, as the SDKs do.

use batchd_wire::ProcessingStatus;
use reqwest::StatusCode;

/// `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error status.
    #[error("{kind}: {message} ({})", api_suffix(*status, request_id.as_deref()))]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// `error.type`, e.g. `not_found_error`.
        kind: String,
        /// `error.message`.
        message: String,
        /// The `request-id` response header (or the body's `request_id` when the header is
        /// missing).
        request_id: Option<String>,
        /// The raw response body.
        body: String,
    },
    /// Connecting, sending or receiving failed (including timeouts).
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// A successful response whose body is not what the API documents.
    #[error("could not decode the response: {0}")]
    Decode(String),
    /// `results` was asked for a batch that has no `results_url` yet.
    #[error("batch {id} has no results_url yet; has it finished processing? (processing_status: {})", status.as_str())]
    NoResults {
        /// The batch id.
        id: String,
        /// The batch's `processing_status` when it was retrieved.
        status: ProcessingStatus,
    },
    /// A bad argument or configuration, rejected before any request (e.g. an empty batch id).
    #[error("{0}")]
    Invalid(String),
}

fn api_suffix(status: StatusCode, request_id: Option<&str>) -> String {
    match request_id {
        Some(id) => format!("request-id {id}"),
        None => format!("HTTP {}", status.as_u16()),
    }
}

impl Error {
    /// The HTTP status of an [`Error::Api`] (or of a transport error that carries one).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Transport(e) => e.status(),
            _ => None,
        }
    }

    /// `error.type` of an [`Error::Api`].
    pub fn kind(&self) -> Option<&str> {
        match self {
            Self::Api { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// The request id of an [`Error::Api`].
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    fn has_status(&self, code: u16) -> bool {
        matches!(self, Self::Api { status, .. } if status.as_u16() == code)
    }

    /// 400, `invalid_request_error`.
    pub fn is_invalid_request(&self) -> bool {
        self.has_status(400)
    }

    /// 401, `authentication_error`.
    pub fn is_authentication(&self) -> bool {
        self.has_status(401)
    }

    /// 403, `permission_error`.
    pub fn is_permission_denied(&self) -> bool {
        self.has_status(403)
    }

    /// 404, `not_found_error`.
    pub fn is_not_found(&self) -> bool {
        self.has_status(404)
    }

    /// 409.
    pub fn is_conflict(&self) -> bool {
        self.has_status(409)
    }

    /// 429, `rate_limit_error`.
    pub fn is_rate_limited(&self) -> bool {
        self.has_status(429)
    }

    /// 529, `overloaded_error`.
    pub fn is_overloaded(&self) -> bool {
        self.has_status(529)
    }

    /// Any status ≥ 500.
    pub fn is_server_error(&self) -> bool {
        matches!(self, Self::Api { status, .. } if status.is_server_error())
    }

    /// A transport-level failure (connection, timeout, broken stream).
    pub fn is_transport(&self) -> bool {
        matches!(self, Self::Transport(_))
    }

    /// A timeout (connect, read, or the whole request).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Transport(e) if e.is_timeout())
    }
}

/// The `error.type` the API uses for a status, for error bodies that are not the envelope.
pub(crate) fn default_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_display_type_message_and_request_id() {
        let e = Error::Api {
            status: StatusCode::NOT_FOUND,
            kind: "not_found_error".into(),
            message: "Message Batch msgbatch_x not found.".into(),
            request_id: Some("req_1".into()),
            body: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "not_found_error: Message Batch msgbatch_x not found. (request-id req_1)"
        );
        assert!(e.is_not_found() && !e.is_server_error());
        assert_eq!(e.request_id(), Some("req_1"));
        let e = Error::Api {
            status: StatusCode::BAD_GATEWAY,
            kind: "api_error".into(),
            message: "Bad Gateway".into(),
            request_id: None,
            body: String::new(),
        };
        assert_eq!(e.to_string(), "api_error: Bad Gateway (HTTP 502)");
        assert!(e.is_server_error());
    }

    #[test]
    fn default_kinds() {
        assert_eq!(
            default_kind(StatusCode::from_u16(529).unwrap()),
            "overloaded_error"
        );
        assert_eq!(
            default_kind(StatusCode::UNAUTHORIZED),
            "authentication_error"
        );
        assert_eq!(default_kind(StatusCode::BAD_GATEWAY), "api_error");
    }
}
