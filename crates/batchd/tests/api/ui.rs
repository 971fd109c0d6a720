//! The web dashboard: `/ui` and its embedded assets are served without a key, with the right
//! content types, a strict content-security-policy and revalidating caching.

use crate::helpers::*;

const CSP_PARTS: &[&str] = &[
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "frame-ancestors 'none'",
];

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    // No key on purpose: the page and its assets are public, the data behind them is not.
    app.client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .expect("GET")
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn page_and_assets_are_served_with_types_policy_and_caching() {
    let app = spawn().await;

    let mut etags = Vec::new();
    for (path, content_type) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
    ] {
        let resp = get(&app, path).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(header(&resp, "content-type"), content_type, "{path}");
        assert_eq!(header(&resp, "cache-control"), "no-cache", "{path}");
        assert_eq!(header(&resp, "x-content-type-options"), "nosniff", "{path}");
        let csp = header(&resp, "content-security-policy");
        for part in CSP_PARTS {
            assert!(csp.contains(part), "{path}: {part} not in {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert!(resp.headers().contains_key("request-id"));
        let etag = header(&resp, "etag").to_owned();
        let body = resp.text().await.unwrap();
        assert!(!body.is_empty(), "{path}");

        // Revalidation answers 304 without a body.
        let again = app
            .client
            .get(format!("{}{path}", app.base))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(header(&again, "etag"), etag);
        assert!(again.text().await.unwrap().is_empty());
        etags.push(etag);
    }
    etags.dedup();
    assert_eq!(etags.len(), 3);

    let html = get(&app, "/ui").await.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains(r#"<script src="ui/app.js" defer></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="ui/app.css">"#));
    assert!(html.contains(r#"data-testid="api-key""#));
    // Nothing is loaded from anywhere else.
    assert!(!html.contains("http://") && !html.contains("https://"));

    let js = get(&app, "/ui/app.js").await.text().await.unwrap();
    assert!(js.contains("'x-api-key'") && js.contains("'anthropic-version'"));
    assert!(js.contains("/v1/messages/batches"));
    assert!(js.contains("/v1/batchd/webhooks"));
}

#[tokio::test]
async fn trailing_slash_redirects_and_unknown_assets_are_api_404s() {
    let app = spawn().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/ui/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(header(&resp, "location"), "../ui");

    let resp = get(&app, "/ui/nope.js").await;
    assert_error(resp, 404, "not_found_error", "Not found").await;

    let resp = app
        .client
        .post(format!("{}/ui", app.base))
        .send()
        .await
        .unwrap();
    assert_error(resp, 405, "invalid_request_error", "Method not allowed").await;

    // HEAD works like GET, without a body.
    let resp = app
        .client
        .head(format!("{}/ui", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/html; charset=utf-8");
}

#[tokio::test]
async fn the_api_behind_the_page_still_needs_a_key() {
    let app = spawn().await;
    let resp = get(&app, "/v1/messages/batches").await;
    assert_error(
        resp,
        401,
        "authentication_error",
        "x-api-key header is required",
    )
    .await;
}
