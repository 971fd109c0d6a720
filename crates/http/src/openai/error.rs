//! `OpenAiError`: what every OpenAI route fails with, rendered as the OpenAI envelope
//! `{"error":{"message","type","param","code"}}`, and every text the OpenAI surface answers
//! with, in one place. Texts and statuses follow `shared/spec/openai-batches.md` (§2.2, §5);
//! where the spec recommends a text for an open question, that text is used.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use batchd_domain::ErrorType;
use batchd_store::StoreError;
use batchd_wire::openai::{OpenAiErrorBody, OpenAiErrorEnvelope};

use crate::ApiError;

/// `error.type` of every client error the OpenAI API answers on these routes.
const INVALID_REQUEST: &str = "invalid_request_error";

/// The 401 of a call without a key (spec §2.2).
pub const MISSING_API_KEY: &str = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.";
const INCORRECT_API_KEY_PREFIX: &str = "Incorrect API key provided: ";
/// The 401 of an `OpenAI-Organization` (or `OpenAI-Project`) header that names another
/// workspace than the key's (spec §2.2; the spec gives no separate text for the project header,
/// so both use this one).
pub const MISMATCHED_ORGANIZATION: &str =
    "OpenAI-Organization header should match organization for API key";

/// An error response of the OpenAI surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds the client should wait before trying again, sent as `retry-after`.
    pub retry_after: Option<u64>,
}

impl OpenAiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            kind: INVALID_REQUEST,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// 401: a key that names no workspace. The key is echoed masked, as the API does, so a
    /// client can tell which of its keys was refused without the reply repeating it.
    pub fn incorrect_api_key(key: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "{INCORRECT_API_KEY_PREFIX}{}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask_key(key)
            ),
        )
        .code("invalid_api_key")
    }

    /// 404 of `/v1/files/{id}`: unknown, deleted, expired or another workspace's.
    pub fn no_such_file(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("No such File object: {id}")).param("id")
    }

    /// 404 of `/v1/batches/{id}`: unknown, another workspace's, or an Anthropic batch. The
    /// hosted API's exact text is unknown; this is the spec's recommended one (§10).
    pub fn no_such_batch(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("No batch found with id '{id}'."),
        )
    }

    /// 409 of a cancel of a batch that has ended (spec §5.4; `expired` and `finalizing` get
    /// the same text, as the spec recommends).
    pub fn cannot_cancel(status: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            format!("Cannot cancel a batch with status '{status}'."),
        )
    }

    /// 400: a required field is missing.
    pub fn missing_parameter(name: &str) -> Self {
        Self::bad_request(format!("Missing required parameter: '{name}'."))
            .param(name)
            .code("missing_required_parameter")
    }

    /// 400: a field has a value outside its set; `supported` in the API's order.
    pub fn invalid_value(param: &str, value: &str, supported: &[&str]) -> Self {
        Self::bad_request(format!(
            "Invalid value: '{value}'. Supported values are: {}.",
            quoted_list(supported)
        ))
        .param(param)
        .code("invalid_value")
    }

    /// 400: a field has the wrong JSON type. `got` is the JSON type's name as the API says it
    /// (`a string`, `an array`, …).
    pub fn invalid_type(param: &str, expected: &str, got: &str) -> Self {
        Self::bad_request(format!(
            "Invalid type for '{param}': expected {expected}, but got {got} instead."
        ))
        .param(param)
        .code("invalid_type")
    }

    /// 400: an object with too many properties.
    pub fn too_many_properties(param: &str, max: usize, got: usize) -> Self {
        Self::bad_request(format!(
            "Invalid '{param}': too many properties. Expected an object with at most {max} properties, but got an object with {got} properties instead."
        ))
        .param(param)
        .code("object_above_max_properties")
    }

    /// 400: a string longer than allowed.
    pub fn string_too_long(param: &str, max: usize, got: usize) -> Self {
        Self::bad_request(format!(
            "Invalid '{param}': string too long. Expected a string with maximum length {max}, but got a string with length {got} instead."
        ))
        .param(param)
        .code("string_above_max_length")
    }

    /// 400: an integer above its maximum (spec §10).
    pub fn integer_above_max(param: &str, max: i64, got: i64) -> Self {
        Self::bad_request(format!(
            "Invalid '{param}': integer above maximum value. Expected a value <= {max}, but got {got} instead."
        ))
        .param(param)
        .code("integer_above_max_value")
    }

    /// 400: an integer below its minimum (spec §10).
    pub fn integer_below_min(param: &str, min: i64, got: i64) -> Self {
        Self::bad_request(format!(
            "Invalid '{param}': integer below minimum value. Expected a value >= {min}, but got {got} instead."
        ))
        .param(param)
        .code("integer_below_min_value")
    }

    /// 400: a value that should be an integer and is not.
    pub fn not_an_integer(param: &str, value: &str) -> Self {
        Self::bad_request(format!(
            "Invalid '{param}': expected an integer, but got '{value}' instead."
        ))
        .param(param)
        .code("invalid_type")
    }

    /// 400 with a text of its own (a malformed path or query).
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::bad_request(message)
    }

    /// 400: a create body that is not a JSON object (exact text unknown upstream).
    pub fn body_not_json(detail: &str) -> Self {
        Self::bad_request(format!(
            "We could not parse the JSON body of your request. ({detail})"
        ))
    }

    /// 400 of an upload naming an unknown `purpose` (spec §5.6).
    pub fn invalid_purpose(purpose: &str, allowed: &[&str]) -> Self {
        let list: Vec<String> = allowed.iter().map(|p| format!("'{p}'")).collect();
        Self::bad_request(format!(
            "'{purpose}' is not one of [{}] - 'purpose'",
            list.join(", ")
        ))
        .param("purpose")
    }

    /// 400 of a batch upload that is not JSONL: wrong file name, empty, or a first line that
    /// is not JSON (spec §5.2, Tier 0).
    pub fn invalid_batch_file() -> Self {
        Self::bad_request("Invalid file format for Batch API. Must be .jsonl")
    }

    /// 400 of an upload over the size limit (spec §5.2).
    pub fn file_too_large() -> Self {
        Self::bad_request("File is too large.")
    }

    /// 400: a multipart body this server cannot read.
    pub fn malformed_upload(detail: &str) -> Self {
        Self::bad_request(format!("The multipart upload could not be read: {detail}."))
    }

    /// 400: content download of a purpose that cannot be downloaded (spec §5.7).
    pub fn download_not_allowed(purpose: &str) -> Self {
        Self::bad_request(format!(
            "Not allowed to download files of purpose: {purpose}"
        ))
    }

    /// 405 for a method an OpenAI route does not serve.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
    }

    /// 500 (the cause is logged, never shown).
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        Self::from(ApiError::internal(err))
    }
}

/// `sk-abc…wxyz` style masking: the first 3 and last 4 characters shown, the rest starred; a
/// short key is starred whole.
fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// `'a', 'b', and 'c'` (or `'a'` for one value, `'a' and 'b'` for two), as the API lists
/// supported values.
fn quoted_list(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

/// Errors raised by the layers both surfaces share (authentication, quotas, storage), in the
/// OpenAI envelope: same status, the type and code the OpenAI API gives that status.
impl From<ApiError> for OpenAiError {
    fn from(err: ApiError) -> Self {
        let mut out = Self::new(err.status, err.message);
        out.retry_after = err.retry_after;
        match err.kind {
            ErrorType::Authentication => {
                out.status = StatusCode::UNAUTHORIZED;
                if out.message.starts_with(INCORRECT_API_KEY_PREFIX) {
                    out.code = Some("invalid_api_key");
                } else if out.message == MISMATCHED_ORGANIZATION {
                    out.code = Some("mismatched_organization");
                }
            }
            ErrorType::RateLimit => {
                out.kind = "requests";
                out.code = Some("rate_limit_exceeded");
            }
            ErrorType::Api => {
                out.kind = "server_error";
                out.message =
                    "The server had an error while processing your request. Sorry about that!"
                        .to_owned();
            }
            ErrorType::Overloaded => {
                // The OpenAI API has no 529; its overload answer is a 503.
                out.status = StatusCode::SERVICE_UNAVAILABLE;
                out.kind = "server_error";
                out.message = "The server is overloaded or not ready yet.".to_owned();
            }
            ErrorType::Timeout => out.kind = "timeout",
            _ => {}
        }
        out
    }
}

impl From<StoreError> for OpenAiError {
    fn from(err: StoreError) -> Self {
        ApiError::from(err).into()
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let envelope = OpenAiErrorEnvelope {
            error: OpenAiErrorBody {
                message: self.message,
                kind: self.kind.to_owned(),
                param: self.param,
                code: self.code.map(str::to_owned),
            },
        };
        let body = serde_json::to_vec(&envelope).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
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
    fn keys_are_masked_but_recognisable() {
        assert_eq!(mask_key("sk-abcdefghijwxyz"), "sk-**********wxyz");
        assert_eq!(mask_key("short"), "*****");
        let err = OpenAiError::incorrect_api_key("sk-abcdefghijwxyz");
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        assert_eq!(err.code, Some("invalid_api_key"));
        assert_eq!(
            err.message,
            "Incorrect API key provided: sk-**********wxyz. You can find your API key at https://platform.openai.com/account/api-keys."
        );
    }

    #[test]
    fn supported_values_are_listed_as_the_api_lists_them() {
        let err = OpenAiError::invalid_value(
            "endpoint",
            "/v1/x",
            &[
                "/v1/chat/completions",
                "/v1/completions",
                "/v1/embeddings",
                "/v1/responses",
            ],
        );
        assert_eq!(
            err.message,
            "Invalid value: '/v1/x'. Supported values are: '/v1/chat/completions', '/v1/completions', '/v1/embeddings', and '/v1/responses'."
        );
        assert_eq!(err.code, Some("invalid_value"));
        assert_eq!(err.param.as_deref(), Some("endpoint"));
        assert_eq!(
            OpenAiError::invalid_value("completion_window", "1h", &["24h"]).message,
            "Invalid value: '1h'. Supported values are: '24h'."
        );
    }

    #[test]
    fn purposes_are_listed_with_the_field_name() {
        let err =
            OpenAiError::invalid_purpose("vector_store", &["fine-tune", "assistants", "batch"]);
        assert_eq!(
            err.message,
            "'vector_store' is not one of ['fine-tune', 'assistants', 'batch'] - 'purpose'"
        );
    }

    #[test]
    fn shared_layer_errors_keep_their_status_in_the_openai_envelope() {
        let missing: OpenAiError = ApiError::new(ErrorType::Authentication, MISSING_API_KEY).into();
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
        assert_eq!(missing.kind, "invalid_request_error");
        assert_eq!(missing.code, None);
        let overloaded: OpenAiError = ApiError::new(ErrorType::Overloaded, "Overloaded").into();
        assert_eq!(overloaded.status, StatusCode::SERVICE_UNAVAILABLE);
        let limited: OpenAiError = ApiError::new(ErrorType::RateLimit, "slow down")
            .with_retry_after(std::time::Duration::from_secs(3))
            .into();
        assert_eq!(
            (limited.status.as_u16(), limited.code, limited.retry_after),
            (429, Some("rate_limit_exceeded"), Some(3))
        );
    }
}
