//! Authentication, version and beta headers, unknown routes and wrong methods: all in the envelope.

use reqwest::{Method, RequestBuilder, Response};

use crate::helpers::*;

/// Lists batches with exactly these headers.
async fn list_raw(app: &TestApp, headers: &[(&str, &str)]) -> Response {
    let url = format!("{}/v1/messages/batches", app.base);
    sent_with(app.client.get(url), headers).await
}

/// Lists batches with the key, the version and these headers too.
async fn list_with(app: &TestApp, headers: &[(&str, &str)]) -> Response {
    sent_with(app.request(Method::GET, "/v1/messages/batches"), headers).await
}

async fn sent_with(request: RequestBuilder, headers: &[(&str, &str)]) -> Response {
    headers
        .iter()
        .fold(request, |request, (name, value)| {
            request.header(*name, *value)
        })
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn keys_are_required_and_checked() {
    let app = spawn().await;
    let resp = list_raw(&app, &[("anthropic-version", "2023-06-01")]).await;
    assert_eq!(resp.headers()["x-should-retry"], "false");
    assert_error(
        resp,
        401,
        "authentication_error",
        "x-api-key header is required",
    )
    .await;

    let resp = list_raw(
        &app,
        &[
            ("x-api-key", "sk-wrong"),
            ("anthropic-version", "2023-06-01"),
        ],
    )
    .await;
    assert_error(resp, 401, "authentication_error", "invalid x-api-key").await;

    // Auth schemes are case-insensitive: every spelling of the scheme is the same one.
    for scheme in ["Bearer", "BEARER", "bearer"] {
        let resp = list_raw(
            &app,
            &[
                ("authorization", &format!("{scheme} {KEY_A}")),
                ("anthropic-version", "2023-06-01"),
            ],
        )
        .await;
        assert_eq!(resp.status(), 200, "scheme {scheme}");
    }
}

#[tokio::test]
async fn version_and_beta_headers_are_validated() {
    let app = spawn().await;
    let resp = list_raw(&app, &[("x-api-key", KEY_A)]).await;
    assert_error(
        resp,
        400,
        "invalid_request_error",
        "anthropic-version: header is required",
    )
    .await;

    let resp = list_raw(
        &app,
        &[("x-api-key", KEY_A), ("anthropic-version", "1999-01-01")],
    )
    .await;
    assert_error(
        resp,
        400,
        "invalid_request_error",
        "anthropic-version: \"1999-01-01\" is not a valid version",
    )
    .await;

    let resp = list_with(&app, &[("anthropic-beta", "invalid-beta-name")]).await;
    assert_error(
        resp,
        400,
        "invalid_request_error",
        "Unexpected value(s) `invalid-beta-name` for the `anthropic-beta` header. Please consult our documentation at docs.claude.com or try again without the header.",
    )
    .await;

    // A repeated version is the values joined, which is no version, even when they agree.
    let resp = list_raw(
        &app,
        &[
            ("x-api-key", KEY_A),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-version", "2023-06-01"),
        ],
    )
    .await;
    assert_error(
        resp,
        400,
        "invalid_request_error",
        "anthropic-version: \"2023-06-01, 2023-06-01\" is not a valid version",
    )
    .await;
    for version in ["2023-01-01", "2023-06-01", "2026-10-21"] {
        let resp = list_raw(
            &app,
            &[("x-api-key", KEY_A), ("anthropic-version", version)],
        )
        .await;
        assert_eq!(resp.status(), 200, "{version}");
    }

    // A well-formed name is not enough: it must be a published beta. Every unknown one is named.
    let resp = list_with(
        &app,
        &[
            ("anthropic-beta", "files-api-2025-04-14, made-up-2030-01-01"),
            ("anthropic-beta", "string"),
        ],
    )
    .await;
    assert_error(
        resp,
        400,
        "invalid_request_error",
        "Unexpected value(s) `made-up-2030-01-01`, `string` for the `anthropic-beta` header. Please consult our documentation at docs.claude.com or try again without the header.",
    )
    .await;

    let resp = sent_with(
        app.request(Method::GET, "/v1/messages/batches?beta=true"),
        &[
            ("anthropic-beta", "message-batches-2024-09-24"),
            (
                "anthropic-beta",
                "files-api-2025-04-14,token-efficient-tools-2025-02-19",
            ),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn operators_can_accept_a_new_beta_without_a_release() {
    let app = spawn_with(|o| o.extra_betas = vec!["brand-new-2030-01-01".into()]).await;
    let resp = list_with(
        &app,
        &[(
            "anthropic-beta",
            "brand-new-2030-01-01,files-api-2025-04-14",
        )],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = list_with(&app, &[("anthropic-beta", "brand-new-2030-01-02")]).await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_use_the_envelope() {
    let app = spawn().await;
    assert_error(
        app.get("/v1/nothing-here").await,
        404,
        "not_found_error",
        "Not found",
    )
    .await;
    let resp = app
        .request(Method::PUT, "/v1/messages/batches")
        .send()
        .await
        .unwrap();
    assert_error(resp, 405, "invalid_request_error", "Method not allowed").await;
    let resp = app
        .request(Method::PATCH, "/v1/messages/batches/msgbatch_01x")
        .send()
        .await
        .unwrap();
    assert_error(resp, 405, "invalid_request_error", "Method not allowed").await;
}

#[tokio::test]
async fn workspace_header_is_reported_and_checked() {
    let app = spawn().await;
    let resp = app.get("/v1/messages/batches").await;
    assert_eq!(resp.headers()["anthropic-workspace-id"], "ws-a");
    let resp = app
        .as_key(KEY_B)
        .get("/v1/messages/batches/msgbatch_01nope")
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["anthropic-workspace-id"], "ws-b");
    let resp = list_raw(&app, &[]).await;
    assert!(
        resp.headers().get("anthropic-workspace-id").is_none(),
        "not before authentication"
    );

    let resp = list_with(&app, &[("anthropic-workspace-id", "ws-a")]).await;
    assert_eq!(resp.status(), 200);
    let resp = list_with(&app, &[("anthropic-workspace-id", "ws-b")]).await;
    assert_error(
        resp,
        403,
        "permission_error",
        "anthropic-workspace-id does not match the workspace of this API key.",
    )
    .await;
}

#[tokio::test]
async fn malformed_urls_still_get_the_envelope() {
    let app = spawn().await;
    let resp = app.get("/v1/messages/batches/%FF").await;
    assert_error(
        resp,
        400,
        "invalid_request_error",
        "Invalid URL: Invalid UTF-8 in `id`",
    )
    .await;
    let resp = app.get("/v1/messages/batches/%FF/results").await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/json");
}
