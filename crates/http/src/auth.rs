//! Authentication and the common request headers, checked before any route runs: the API key
//! (`x-api-key` or `Authorization: Bearer`, the scheme in any case), `anthropic-version` and
//! `anthropic-beta`.
//! Keys are only ever handled as hashes and compared in constant time; they are never logged.
//! Here too the quotas that apply before a handler runs (see [`crate::quota`]): an address that
//! failed to authenticate too often is refused before its key is looked at, and a workspace
//! over its rate limit before the route runs; when a rate limit is set, every response after
//! authentication carries the `anthropic-ratelimit-requests-*` headers. The body of a request
//! refused here is drained (see [`crate::drain`]), so a client still sending it reads the answer.
//! Every response after authentication names the caller's workspace and organization
//! (`anthropic-workspace-id`, `anthropic-organization-id`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use batchd_domain::keys::{KeyHash, StaticKey};
use batchd_domain::{ErrorType, ids};
use batchd_store::{KeyStore, StoreError};

use crate::quota::{self, Failure};
use crate::{ApiError, AppState};

/// Who is calling, attached to the request for handlers.
#[derive(Debug, Clone)]
pub struct Caller {
    pub workspace: String,
    /// `anthropic-beta` values, from a comma list and/or repeated headers.
    pub betas: Vec<String>,
}

/// Resolves keys to workspaces: keys given at start-up first, then keys stored by `batchd keys`.
pub struct Keys {
    static_keys: Vec<StaticKey>,
    store: Arc<dyn KeyStore>,
}

impl Keys {
    pub fn new(static_keys: Vec<StaticKey>, store: Arc<dyn KeyStore>) -> Self {
        Self { static_keys, store }
    }

    pub async fn workspace(&self, key: &str) -> Result<Option<String>, StoreError> {
        let hash = KeyHash::of(key);
        // Look at every static key without stopping early, so timing does not tell which matched.
        let mut found = None;
        for candidate in &self.static_keys {
            if candidate.hash.ct_eq(&hash) {
                found = Some(candidate.workspace.clone());
            }
        }
        match found {
            Some(ws) => Ok(Some(ws)),
            None => self.store.workspace_for_key(&hash).await,
        }
    }
}

/// `anthropic-version` values the API documents.
const VERSIONS: &[&str] = &["2023-01-01", "2023-06-01", "2026-10-21"];

pub async fn layer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let inner = &state.inner;
    // The peer address comes from the connection (`batchd::listen` puts it there); a router
    // served some other way, as in unit tests, has none and is not throttled.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = peer
        && let Some(wait) = inner.auth_throttle.blocked(ip, Instant::now())
    {
        let (parts, body) = request.into_parts();
        inner
            .drains
            .discard_unauthenticated(body, &parts.headers, &inner.config);
        return quota::auth_throttled(wait).into_response();
    }
    // Attempts from one address run in parallel, so the limit may be reached while this one's
    // key is looked up: its answer is then decided by the throttle, in the step that counts it,
    // so no more than the limit of wrong keys are ever answered 401 in a window, and a right
    // key sent after them waits like the rest.
    let checked = check(&state, request.headers()).await;
    let checked = match (checked, peer) {
        (Err(err), Some(ip)) if err.kind == ErrorType::Authentication => {
            match inner.auth_throttle.failed(ip, Instant::now()) {
                Failure::Counted => Err(err),
                Failure::ThrottleStarts => {
                    let quotas = &inner.config.quotas;
                    tracing::warn!(
                        client = %ip,
                        failures = quotas.auth_failure_limit,
                        window = ?quotas.auth_failure_window,
                        "too many failed authentications: refusing this client address until its window ends"
                    );
                    Err(err)
                }
                Failure::Refused(wait) => Err(quota::auth_throttled(wait)),
            }
        }
        (Ok(caller), Some(ip)) => match inner.auth_throttle.blocked(ip, Instant::now()) {
            Some(wait) => Err(quota::auth_throttled(wait)),
            None => Ok(caller),
        },
        (checked, _) => checked,
    };
    let caller = match checked {
        Ok(caller) => caller,
        Err(err) => {
            let (parts, body) = request.into_parts();
            if matches!(err.kind, ErrorType::Permission | ErrorType::InvalidRequest) {
                // The key was good: a header checked after it was not.
                inner.drains.discard(body, &parts.headers, &inner.config);
            } else {
                inner
                    .drains
                    .discard_unauthenticated(body, &parts.headers, &inner.config);
            }
            return err.into_response();
        }
    };
    let workspace = HeaderValue::from_str(&caller.workspace).ok();
    let organization = HeaderValue::from_str(&ids::organization_id(&caller.workspace)).ok();
    let per_minute = inner.config.quotas.rate_limit(&caller.workspace);
    let decision = (per_minute > 0).then(|| {
        inner
            .rate
            .check(&caller.workspace, per_minute, Instant::now())
    });
    let mut response = match decision.and_then(|d| d.refused) {
        Some(wait) => {
            let (parts, body) = request.into_parts();
            inner.drains.discard(body, &parts.headers, &inner.config);
            quota::rate_limited(per_minute, wait).into_response()
        }
        None => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
    };
    let headers = response.headers_mut();
    // After successful authentication every response names the workspace, as the real API
    // does; the SDKs surface it (`_workspace_id`, `err.workspaceID`).
    if let Some(workspace) = workspace {
        headers.insert("anthropic-workspace-id", workspace);
    }
    // The API's docs list it on every response; before authentication there is no
    // organization to name, so those responses go without, like the workspace header.
    if let Some(organization) = organization {
        headers.insert("anthropic-organization-id", organization);
    }
    for (name, value) in decision.iter().flat_map(quota::Decision::headers) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

async fn check(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token)
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::new(ErrorType::Authentication, "x-api-key header is required"))?;
    let workspace = state
        .inner
        .keys
        .workspace(key)
        .await?
        .ok_or_else(|| ApiError::new(ErrorType::Authentication, "invalid x-api-key"))?;

    // Only needed for credentials that span workspaces; if sent, it must name the key's own.
    if let Some(asked) = headers.get("anthropic-workspace-id")
        && asked.to_str().map(str::trim).ok() != Some(workspace.as_str())
    {
        return Err(ApiError::new(
            ErrorType::Permission,
            "anthropic-workspace-id does not match the workspace of this API key.",
        ));
    }

    let version = headers
        .get("anthropic-version")
        .ok_or_else(|| ApiError::invalid("anthropic-version: header is required"))?;
    let version = version.to_str().unwrap_or_default().trim();
    if !VERSIONS.contains(&version) {
        return Err(ApiError::invalid(format!(
            "anthropic-version: \"{version}\" is not a valid version"
        )));
    }

    let mut betas = Vec::new();
    for value in headers.get_all("anthropic-beta") {
        let value = value.to_str().unwrap_or("\u{fffd}");
        for beta in value.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            if !plausible_beta(beta) {
                return Err(ApiError::invalid(format!(
                    "Unexpected value(s) `{beta}` for the `anthropic-beta` header. Please consult our documentation at platform.claude.com/docs or try again without the header."
                )));
            }
            if !betas.iter().any(|b| b == beta) {
                betas.push(beta.to_owned());
            }
        }
    }
    Ok(Caller { workspace, betas })
}

/// The credentials of an `Authorization: Bearer` value. Auth schemes are case-insensitive
/// (RFC 9110 §11.1), so `BEARER` and `bearer` name the same scheme as `Bearer`.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// What `plausible_beta` accepts in one `anthropic-beta` value, as a regular expression for the
/// OpenAPI document: a comma list of betas, each optional and trimmed of spaces and tabs. Keep
/// the two in step.
pub const BETA_HEADER_PATTERN: &str = r"^[ \t]*([a-z0-9-]+-[0-9]{4}-[0-9]{2}-[0-9]{2})?[ \t]*(,[ \t]*([a-z0-9-]+-[0-9]{4}-[0-9]{2}-[0-9]{2})?[ \t]*)*$";

/// Every published beta name ends in its release date (`message-batches-2024-09-24`). New betas
/// appear all the time, so rather than a list that goes stale, accept that shape and refuse
/// anything else, which is what typos and garbage look like.
fn plausible_beta(beta: &str) -> bool {
    let Some((name, date)) = beta.len().checked_sub(10).map(|at| beta.split_at(at)) else {
        return false;
    };
    let date_ok = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let name = name.strip_suffix('-').unwrap_or("");
    date_ok
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, plausible_beta};

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["Bearer k", "bearer k", "BEARER k", "bEaReR k"] {
            assert_eq!(bearer_token(value), Some("k"), "{value}");
        }
        assert_eq!(bearer_token("Basic k"), None);
        assert_eq!(bearer_token("Bearerk"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn betas_are_name_dash_date() {
        assert!(plausible_beta("message-batches-2024-09-24"));
        assert!(plausible_beta("output-300k-2026-03-24"));
        assert!(!plausible_beta("invalid-beta-name"));
        assert!(!plausible_beta("2024-09-24"));
        assert!(!plausible_beta("Message-Batches-2024-09-24"));
        assert!(!plausible_beta("x-2024-9-240"));
    }
}
