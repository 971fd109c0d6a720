//! The web dashboard at `GET /ui`: one HTML page, its script and its stylesheet, all embedded in
//! the binary (`crates/http/ui/`), with no build step and nothing fetched from elsewhere.
//!
//! The page is public, like `/healthz`: it holds no data. It asks for an API key, keeps it in the
//! tab's `sessionStorage`, and calls the ordinary authenticated `/v1` routes on the same origin
//! with `x-api-key` and `anthropic-version`, so it can see exactly what the key can see: the
//! Message Batches, and beside them the OpenAI Batch API batches (`/v1/batches`, read-only); and
//! in a view of their own the workspace's webhook endpoints and their recent failing deliveries
//! (`/v1/batchd/webhooks`, read-only).
//!
//! Routes (see [`router`]): `/ui` (the page), `/ui/app.js`, `/ui/app.css`, and `/ui/`, which
//! redirects to `/ui` so the page's relative asset references always resolve the same way (also
//! behind a reverse proxy that mounts batchd under a path prefix).
//!
//! Every answer carries a strict `content-security-policy` (scripts, styles and connections to
//! this origin only; no inline code, no frames, no form submissions), `nosniff`, and a
//! `cache-control: no-cache` with an `ETag`, so browsers revalidate cheaply and never run a stale
//! script against a newer server.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy sent with every dashboard answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    /// FNV-1a of the body, computed at compile time; the strong `ETag`.
    hash: u64,
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

macro_rules! asset {
    ($file:literal, $content_type:literal) => {{
        const BODY: &str = include_str!(concat!("../ui/", $file));
        Asset {
            body: BODY,
            content_type: $content_type,
            hash: fnv1a(BODY.as_bytes()),
        }
    }};
}

static PAGE: Asset = asset!("index.html", "text/html; charset=utf-8");
static SCRIPT: Asset = asset!("app.js", "text/javascript; charset=utf-8");
static STYLE: Asset = asset!("app.css", "text/css; charset=utf-8");

/// The dashboard's routes; merged into the public part of [`crate::router`].
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(slash))
        .route("/ui/app.js", get(script))
        .route("/ui/app.css", get(style))
}

/// `GET /ui`: the dashboard page.
pub async fn page(headers: HeaderMap) -> Response {
    serve(&PAGE, &headers)
}

/// `GET /ui/app.js`.
pub async fn script(headers: HeaderMap) -> Response {
    serve(&SCRIPT, &headers)
}

/// `GET /ui/app.css`.
pub async fn style(headers: HeaderMap) -> Response {
    serve(&STYLE, &headers)
}

/// `GET /ui/`: a relative redirect to `/ui` (relative, so it also works under a path prefix).
pub async fn slash() -> Response {
    let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("../ui"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.hash);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = asset.body.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        response
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_references_only_its_own_assets() {
        assert!(PAGE.body.contains(r#"src="ui/app.js""#));
        assert!(PAGE.body.contains(r#"href="ui/app.css""#));
        // Nothing from elsewhere, and nothing inline the policy would block.
        for body in [PAGE.body, SCRIPT.body, STYLE.body] {
            assert!(!body.contains("http://") && !body.contains("https://"));
        }
        assert!(!PAGE.body.contains("<script>") && !PAGE.body.contains("<style"));
        assert!(!PAGE.body.contains(" style=") && !PAGE.body.contains(" onclick="));
    }

    #[test]
    fn the_webhooks_view_reads_the_webhook_routes() {
        for needle in [
            r##"href="#/webhooks""##,
            r#"id="webhooks-view""#,
            r#"id="endpoint-rows""#,
            r#"id="failing-rows""#,
        ] {
            assert!(PAGE.body.contains(needle), "{needle}");
        }
        assert!(SCRIPT.body.contains("'/v1/batchd/webhooks'"));
        assert!(SCRIPT.body.contains("/deliveries`"));
        for field in ["url", "events", "disabled_at", "created_at"] {
            assert!(
                SCRIPT.body.contains(&format!("e.{field}")),
                "endpoint {field}"
            );
        }
        for field in [
            "event_id",
            "last_attempt_at",
            "last_status",
            "last_error",
            "next_attempt_at",
        ] {
            assert!(
                SCRIPT.body.contains(&format!("d.{field}")),
                "delivery {field}"
            );
        }
    }

    #[test]
    fn etags_differ_per_asset() {
        assert_ne!(PAGE.hash, SCRIPT.hash);
        assert_ne!(SCRIPT.hash, STYLE.hash);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
