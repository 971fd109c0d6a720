//! The OpenAI Batch and Files surface (`/v1/files`, `/v1/batches`) on the same store and
//! dispatcher as the Message Batches routes: one module per concern ([`files`], [`batches`],
//! [`status`] for how a stored batch reads here, [`jsonl`] for the input file's checks,
//! [`multipart`] for uploads), every failure an [`OpenAiError`] in the OpenAI envelope, every
//! response with the OpenAI headers (`headers`). The behavioural reference is
//! `shared/spec/openai-batches.md`.

pub mod batches;
pub mod error;
pub mod files;
pub mod jsonl;
pub mod multipart;
pub mod status;

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

pub use error::OpenAiError;

use crate::{AppState, auth};

/// Settings of the OpenAI surface.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Largest accepted upload (the hosted API's limit for batch input files).
    pub max_file_bytes: u64,
    /// Most requests in one batch input file (the hosted API's limit).
    pub max_file_lines: u64,
    /// Whether every line of a batch must name the first line's model, as on the hosted API
    /// (`model_mismatch`). Off by default: a self-hosted server often serves many models.
    pub single_model_batches: bool,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 200 * 1024 * 1024,
            max_file_lines: 50_000,
            single_model_batches: false,
        }
    }
}

/// The version the OpenAI API names in its `openai-version` header.
const OPENAI_VERSION: &str = "2020-10-01";

/// The OpenAI routes, authenticated, with the OpenAI response headers.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/files",
            post(files::upload)
                .get(files::list)
                .fallback(method_not_allowed),
        )
        .route(
            "/v1/files/{id}",
            get(files::retrieve)
                .delete(files::delete)
                .fallback(method_not_allowed),
        )
        .route(
            "/v1/files/{id}/content",
            get(files::content).fallback(method_not_allowed),
        )
        .route(
            "/v1/batches",
            post(batches::create)
                .get(batches::list)
                .fallback(method_not_allowed),
        )
        .route(
            "/v1/batches/{id}",
            get(batches::retrieve).fallback(method_not_allowed),
        )
        .route(
            "/v1/batches/{id}/cancel",
            post(batches::cancel).fallback(method_not_allowed),
        )
        .route_layer(from_fn_with_state(state, auth::openai_layer))
        .route_layer(from_fn(headers))
}

async fn method_not_allowed() -> OpenAiError {
    OpenAiError::method_not_allowed()
}

/// The headers every OpenAI response carries (spec §2.3): `x-request-id` (`req_` and 32 hex
/// digits, derived from the request's `request-id` so one id finds it in the access log),
/// `openai-version` and `openai-processing-ms`. `openai-organization` is added by
/// authentication, which knows the caller.
async fn headers(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let id = crate::request_id::current().unwrap_or_default();
    if let Ok(value) = HeaderValue::from_str(&openai_request_id(&id)) {
        headers.insert("x-request-id", value);
    }
    headers.insert("openai-version", HeaderValue::from_static(OPENAI_VERSION));
    headers.insert(
        "openai-processing-ms",
        HeaderValue::from(started.elapsed().as_millis() as u64),
    );
    response
}

/// `req_` and 32 hex digits, a fixed function of the request's own id.
fn openai_request_id(id: &str) -> String {
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    let a = hasher.hash_one(("x-request-id", id));
    let b = hasher.hash_one((id, "x-request-id"));
    format!("req_{a:016x}{b:016x}")
}

/// The `{id}` path segment, as given; a malformed one is refused in the OpenAI envelope.
pub struct IdParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdParam {
    type Rejection = OpenAiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, OpenAiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Self(id))
            .map_err(|rejection| OpenAiError::invalid_request(rejection.body_text()))
    }
}

/// The query string as name → value (the last value wins for repeated names); a malformed
/// one is refused in the OpenAI envelope.
pub struct QueryParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = OpenAiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, OpenAiError> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Self(q))
            .map_err(|rejection| OpenAiError::invalid_request(rejection.body_text()))
    }
}

/// A JSON answer (200).
pub(crate) fn json<T: Serialize>(value: &T) -> Result<Response, OpenAiError> {
    let body = serde_json::to_vec(value).map_err(|e| OpenAiError::internal(&e))?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A list's `limit`: `default` when absent, else an integer in `1..=max`.
pub(crate) fn limit(
    query: &HashMap<String, String>,
    default: i64,
    max: i64,
) -> Result<u32, OpenAiError> {
    let Some(raw) = query.get("limit").map(|l| l.trim()) else {
        return Ok(default as u32);
    };
    let n: i64 = raw
        .parse()
        .map_err(|_| OpenAiError::not_an_integer("limit", raw))?;
    if n < 1 {
        return Err(OpenAiError::integer_below_min("limit", 1, n));
    }
    if n > max {
        return Err(OpenAiError::integer_above_max("limit", max, n));
    }
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded_with_the_api_texts() {
        let q = |v: &str| HashMap::from([("limit".to_owned(), v.to_owned())]);
        assert_eq!(limit(&HashMap::new(), 20, 100), Ok(20));
        assert_eq!(limit(&q("100"), 20, 100), Ok(100));
        assert_eq!(
            limit(&q("101"), 20, 100).unwrap_err().message,
            "Invalid 'limit': integer above maximum value. Expected a value <= 100, but got 101 instead."
        );
        assert_eq!(
            limit(&q("0"), 20, 100).unwrap_err().code,
            Some("integer_below_min_value")
        );
        assert_eq!(
            limit(&q("x"), 20, 100).unwrap_err().code,
            Some("invalid_type")
        );
    }

    #[test]
    fn request_ids_have_the_api_shape_and_follow_the_request() {
        let id = openai_request_id("req_abc");
        assert_eq!(id.len(), 4 + 32);
        assert!(id.starts_with("req_"));
        assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, openai_request_id("req_abc"));
        assert_ne!(id, openai_request_id("req_abd"));
    }
}
