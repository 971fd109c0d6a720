//! The API's model table seen from outside: `max_tokens` capped per model (raised by the
//! batch-only 300k beta for the models it covers), the mock answering with resolved ids and,
//! when strict, refusing the models the API does not have.

use std::collections::HashMap;
use std::time::Duration;

use batchd_backends::{BackendSpec, Kind};
use serde_json::{Value, json};

use crate::helpers::*;

fn asking(custom_id: &str, model: &str, max_tokens: u64) -> Value {
    json!({
        "custom_id": custom_id,
        "params": {
            "model": model,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Hello"}]
        }
    })
}

/// Runs a batch (with `betas` as its `anthropic-beta`) and returns its result per custom id.
async fn run(app: &TestApp, betas: Option<&str>, requests: Vec<Value>) -> HashMap<String, Value> {
    let mut headers = vec![("anthropic-version", VERSION)];
    headers.extend(betas.map(|betas| ("anthropic-beta", betas)));
    by_custom_id(
        app.run_with(&headers, &requests, Duration::from_secs(30))
            .await,
    )
}

fn result<'a>(results: &'a HashMap<String, Value>, custom_id: &str) -> &'a Value {
    results.get(custom_id).expect(custom_id)
}

#[tokio::test]
async fn max_tokens_over_the_models_cap_is_an_errored_row_with_the_apis_text() {
    let app = spawn().await;
    let results = run(
        &app,
        None,
        vec![
            asking("haiku-over", "claude-haiku-4-5", 9_999_999),
            asking("haiku-at", "claude-haiku-4-5", 64_000),
            asking("sonnet-over", "claude-sonnet-4-6", 128_001),
            asking("unlisted", "my-local-model", 10_000_000),
        ],
    )
    .await;
    assert_eq!(
        error_of(result(&results, "haiku-over")),
        (
            "invalid_request_error",
            "max_tokens: 9999999 > 64000, which is the maximum allowed number of output tokens for claude-haiku-4-5-20251001"
        )
    );
    assert_eq!(
        error_of(result(&results, "sonnet-over")),
        (
            "invalid_request_error",
            "max_tokens: 128001 > 128000, which is the maximum allowed number of output tokens for claude-sonnet-4-6"
        )
    );
    assert_eq!(result(&results, "haiku-at")["type"], "succeeded");
    assert_eq!(
        result(&results, "unlisted")["type"],
        "succeeded",
        "a model the table does not know is the backend's to limit"
    );
}

#[tokio::test]
async fn the_300k_beta_raises_the_cap_of_covered_models_only() {
    let app = spawn().await;
    let requests = || {
        vec![
            asking("covered", "claude-sonnet-4-6", 300_000),
            asking("uncovered", "claude-haiku-4-5", 300_000),
        ]
    };
    let with = run(
        &app,
        Some("message-batches-2024-09-24,output-300k-2026-03-24"),
        requests(),
    )
    .await;
    assert_eq!(result(&with, "covered")["type"], "succeeded");
    assert_eq!(
        error_of(result(&with, "uncovered")).1,
        "max_tokens: 300000 > 64000, which is the maximum allowed number of output tokens for claude-haiku-4-5-20251001"
    );

    let without = run(&app, None, requests()).await;
    assert_eq!(
        error_of(result(&without, "covered")).1,
        "max_tokens: 300000 > 128000, which is the maximum allowed number of output tokens for claude-sonnet-4-6"
    );
}

#[tokio::test]
async fn the_mock_answers_with_the_resolved_model_id() {
    let app = spawn().await;
    let results = run(
        &app,
        None,
        vec![
            asking("alias", "claude-haiku-4-5", 16),
            asking("dateless", "claude-opus-4-6", 16),
        ],
    )
    .await;
    assert_eq!(
        result(&results, "alias")["message"]["model"],
        "claude-haiku-4-5-20251001"
    );
    assert_eq!(
        result(&results, "dateless")["message"]["model"],
        "claude-opus-4-6"
    );
}

#[tokio::test]
async fn strict_models_refuses_a_model_the_api_does_not_have() {
    let requests = || {
        vec![
            asking("unknown", "claude-does-not-exist-9", 16),
            asking("known", "claude-haiku-4-5", 16),
        ]
    };
    let strict = spawn_with(|o| o.mock_strict_models = true).await;
    let results = run(&strict, None, requests()).await;
    assert_eq!(
        error_of(result(&results, "unknown")),
        ("not_found_error", "model: claude-does-not-exist-9")
    );
    assert_eq!(result(&results, "known")["type"], "succeeded");

    let lenient = spawn().await;
    let results = run(&lenient, None, requests()).await;
    assert_eq!(result(&results, "unknown")["type"], "succeeded");
}

#[tokio::test]
async fn a_configured_mock_backend_can_be_strict_too() {
    let app = spawn_with(|o| {
        o.backends = vec![BackendSpec {
            name: "strict-mock".into(),
            kind: Kind::Mock,
            base_url: String::new(),
            api_key: None,
            models: vec!["*".into()],
            max_concurrency: 8,
            requests_per_minute: 0,
            input_tokens_per_minute: 0,
            timeout: Duration::from_secs(10),
            max_attempts: 1,
            top_k: false,
            latency: Duration::ZERO,
            strict_models: true,
            anthropic_version: None,
        }];
    })
    .await;
    let results = run(&app, None, vec![asking("unknown", "claude-opus-4-1", 16)]).await;
    assert_eq!(
        error_of(result(&results, "unknown")),
        ("not_found_error", "model: claude-opus-4-1"),
        "a retired model is unknown"
    );
}
