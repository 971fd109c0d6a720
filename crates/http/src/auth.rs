//! Authentication and the common request headers, checked before any route runs: the API key
//! (`x-api-key` or `Authorization: Bearer`, the scheme in any case), `anthropic-version` (one of
//! [`batchd_domain::api_version::VERSIONS`]) and `anthropic-beta` (names of
//! [`batchd_domain::betas::BETAS`] or added by the operator).
//! Keys are only ever handled as hashes and compared in constant time; they are never logged.
//! Here too the quotas that apply before a handler runs (see [`crate::quota`]): an address that
//! failed to authenticate too often is refused before its key is looked at, and a workspace
//! over its rate limit before the route runs; when a rate limit is set, every response after
//! authentication carries the `anthropic-ratelimit-requests-*` headers. The body of a request
//! refused here is drained (see [`crate::drain`]), so a client still sending it reads the answer.
//! Every response after authentication names the caller's workspace and organization
//! (`anthropic-workspace-id`, `anthropic-organization-id`).
//! The OpenAI routes go through the same steps ([`openai_layer`]) with the same keys, but
//! read only the key (`Authorization: Bearer`, the OpenAI SDKs' way), answer in the OpenAI
//! envelope with its texts, and name the organization in `openai-organization`. Their
//! `OpenAI-Organization` and `OpenAI-Project` headers are accepted and ignored (a key already
//! names its one workspace) unless one names another workspace of this server, by name or by
//! its organization id: that is the API's 401 `mismatched_organization`. Values this server
//! does not know stay ignored, so a client configured with its hosted organization still works.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use batchd_domain::api_version::{self, ApiVersion};
use batchd_domain::keys::{KeyHash, StaticKey};
use batchd_domain::openai::Surface;
use batchd_domain::{ErrorType, betas, ids};
use batchd_store::{KeyStore, StoreError};

use crate::openai::OpenAiError;
use crate::openai::error::{MISMATCHED_ORGANIZATION, MISSING_API_KEY};
use crate::quota::{self, Failure};
use crate::{ApiError, AppState};

/// Who is calling, attached to the request for handlers.
#[derive(Debug, Clone)]
pub struct Caller {
    pub workspace: String,
    /// `anthropic-beta` values, from a comma list and/or repeated headers.
    pub betas: Vec<String>,
    /// The `anthropic-version` of the call.
    pub version: ApiVersion,
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

    /// Whether `value` names a workspace of this server other than `own`: its name, or its
    /// organization id ([`ids::organization_id`], in any case). Workspaces are those of the
    /// start-up keys and of stored keys, revoked ones included (the workspace still exists).
    pub async fn names_other_workspace(&self, own: &str, value: &str) -> Result<bool, StoreError> {
        let names = |workspace: &str| {
            workspace == value || ids::organization_id(workspace).eq_ignore_ascii_case(value)
        };
        if names(own) {
            return Ok(false);
        }
        if self.static_keys.iter().any(|k| names(&k.workspace)) {
            return Ok(true);
        }
        Ok(self
            .store
            .list_keys()
            .await?
            .iter()
            .any(|k| names(&k.workspace)))
    }
}

/// Authentication of the Message Batches routes.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    authenticate(&state, request, next, Surface::Anthropic).await
}

/// Authentication of the OpenAI routes.
pub async fn openai_layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    authenticate(&state, request, next, Surface::OpenAi).await
}

/// An error of this layer in the envelope of the surface asked.
fn render(surface: Surface, err: ApiError) -> Response {
    match surface {
        Surface::Anthropic => err.into_response(),
        Surface::OpenAi => OpenAiError::from(err).into_response(),
    }
}

async fn authenticate(
    state: &AppState,
    mut request: Request,
    next: Next,
    surface: Surface,
) -> Response {
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
        inner.drains.discard_unauthenticated(body, &parts.headers);
        return render(surface, quota::auth_throttled(wait));
    }
    // Attempts from one address run in parallel, so the limit may be reached while this one's
    // key is looked up: its answer is then decided by the throttle, in the step that counts it,
    // so no more than the limit of wrong keys are ever answered 401 in a window, and a right
    // key sent after them waits like the rest.
    let checked = match surface {
        Surface::Anthropic => check(state, request.headers()).await,
        Surface::OpenAi => check_openai(state, request.headers()).await,
    };
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
                inner.drains.discard(body, &parts.headers);
            } else {
                inner.drains.discard_unauthenticated(body, &parts.headers);
            }
            return render(surface, err);
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
            inner.drains.discard(body, &parts.headers);
            render(surface, quota::rate_limited(per_minute, wait))
        }
        None => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
    };
    let headers = response.headers_mut();
    if surface == Surface::OpenAi {
        if let Some(organization) = organization {
            headers.insert("openai-organization", organization);
        }
        return response;
    }
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

    let version = version(headers)?;
    let betas = betas(headers, &state.inner.config.extra_betas)?;
    Ok(Caller {
        workspace,
        betas,
        version,
    })
}

/// The OpenAI routes' check: the key alone, with the OpenAI texts (spec §2.2). Versions and
/// betas are the Anthropic surface's; its batches keep the defaults.
async fn check_openai(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::new(ErrorType::Authentication, MISSING_API_KEY))?;
    let workspace = state.inner.keys.workspace(key).await?.ok_or_else(|| {
        ApiError::new(
            ErrorType::Authentication,
            OpenAiError::incorrect_api_key(key).message,
        )
    })?;
    // An authentication failure like a wrong key (and counted by the throttle like one), so a
    // key cannot be used to probe for the names of other workspaces at leisure.
    for name in ["openai-organization", "openai-project"] {
        for value in headers.get_all(name) {
            let value = value.to_str().unwrap_or_default().trim();
            if !value.is_empty()
                && state
                    .inner
                    .keys
                    .names_other_workspace(&workspace, value)
                    .await?
            {
                return Err(ApiError::new(
                    ErrorType::Authentication,
                    MISMATCHED_ORGANIZATION,
                ));
            }
        }
    }
    Ok(Caller {
        workspace,
        betas: Vec::new(),
        version: ApiVersion::default(),
    })
}

/// The call's `anthropic-version`. The API reads a repeated header as its values joined with
/// ", ", which is never a version, so repeating it is refused even with equal values.
fn version(headers: &HeaderMap) -> Result<ApiVersion, ApiError> {
    let values: Vec<&str> = headers
        .get_all("anthropic-version")
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{fffd}").trim())
        .collect();
    if values.is_empty() {
        return Err(ApiError::invalid(api_version::MISSING));
    }
    let value = values.join(", ");
    ApiVersion::parse(&value).ok_or_else(|| ApiError::invalid(api_version::invalid_message(&value)))
}

/// The call's betas, from a comma list and/or repeated headers, each once, in order. Every name
/// the server does not know is named in the refusal.
fn betas(headers: &HeaderMap, extra: &[String]) -> Result<Vec<String>, ApiError> {
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for value in headers.get_all("anthropic-beta") {
        let value = value.to_str().unwrap_or("\u{fffd}");
        for beta in value.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            let list = if betas::known(beta, extra) {
                &mut found
            } else {
                &mut unknown
            };
            if !list.iter().any(|b| b == beta) {
                list.push(beta.to_owned());
            }
        }
    }
    if !unknown.is_empty() {
        let names: Vec<&str> = unknown.iter().map(String::as_str).collect();
        return Err(ApiError::invalid(betas::unknown_message(&names)));
    }
    Ok(found)
}

/// The credentials of an `Authorization: Bearer` value. Auth schemes are case-insensitive
/// (RFC 9110 §11.1), so `BEARER` and `bearer` name the same scheme as `Bearer`.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// What the server accepts in one `anthropic-beta` value without any names added by the
/// operator, as a regular expression for the OpenAPI document: a comma list of the published
/// names ([`betas::BETAS`]), each optional and trimmed of spaces and tabs.
pub fn beta_header_pattern() -> String {
    let names: Vec<&str> = betas::BETAS.iter().map(|b| b.name).collect();
    // Names are lowercase letters, digits and dashes: nothing to escape.
    let one = format!("({})?", names.join("|"));
    format!(r"^[ \t]*{one}[ \t]*(,[ \t]*{one}[ \t]*)*$")
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::{bearer_token, beta_header_pattern, betas, version};
    use batchd_domain::ApiVersion;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["Bearer k", "bearer k", "BEARER k", "bEaReR k"] {
            assert_eq!(bearer_token(value), Some("k"), "{value}");
        }
        assert_eq!(bearer_token("Basic k"), None);
        assert_eq!(bearer_token("Bearerk"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(name, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    fn refusal(err: crate::ApiError) -> String {
        err.message
    }

    #[test]
    fn versions_come_from_the_table() {
        let v = |values: &[&str]| version(&headers("anthropic-version", values)).map_err(refusal);
        assert_eq!(v(&["2026-10-21"]), Ok(ApiVersion::V2026_10_21));
        assert_eq!(v(&["2023-01-01"]), Ok(ApiVersion::V2023_01_01));
        assert_eq!(v(&[]), Err("anthropic-version: header is required".into()));
        assert_eq!(
            v(&["2023-10-01"]),
            Err("anthropic-version: \"2023-10-01\" is not a valid version".into())
        );
        assert_eq!(
            v(&["2023-06-01", "2023-06-01"]),
            Err("anthropic-version: \"2023-06-01, 2023-06-01\" is not a valid version".into())
        );
    }

    #[test]
    fn betas_are_the_published_names_and_the_operators() {
        let b = |values: &[&str], extra: &[String]| {
            betas(&headers("anthropic-beta", values), extra).map_err(refusal)
        };
        assert_eq!(
            b(
                &[
                    "files-api-2025-04-14, output-300k-2026-03-24",
                    "files-api-2025-04-14",
                    " "
                ],
                &[]
            ),
            Ok(vec![
                "files-api-2025-04-14".into(),
                "output-300k-2026-03-24".into()
            ])
        );
        assert_eq!(
            b(&["string,files-api-2025-04-14", "made-up-2030-01-01, string"], &[]),
            Err("Unexpected value(s) `string`, `made-up-2030-01-01` for the `anthropic-beta` header. Please consult our documentation at docs.claude.com or try again without the header.".into())
        );
        assert_eq!(
            b(&["made-up-2030-01-01"], &["made-up-2030-01-01".into()]),
            Ok(vec!["made-up-2030-01-01".into()])
        );
    }

    #[test]
    fn the_documented_pattern_lists_every_published_name() {
        let pattern = beta_header_pattern();
        for beta in batchd_domain::betas::BETAS {
            assert!(
                pattern.contains(&format!("|{}|", beta.name))
                    || pattern.contains(&format!("({}|", beta.name))
                    || pattern.contains(&format!("|{})", beta.name)),
                "{}",
                beta.name
            );
        }
        assert!(pattern.starts_with('^') && pattern.ends_with('$'));
    }
}
