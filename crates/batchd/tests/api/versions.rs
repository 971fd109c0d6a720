//! What a batch's create headers decide for its requests: the `anthropic-version` they are
//! validated under, the fields its betas unlock, and the user profile they may not contradict.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// Creates a batch with these headers (besides the key), waits for it to end, and returns each
/// request's result by `custom_id`.
async fn run_with(
    app: &TestApp,
    headers: &[(&str, &str)],
    requests: &[Value],
) -> HashMap<String, Value> {
    by_custom_id(
        app.run_with(headers, requests, Duration::from_secs(20))
            .await,
    )
}

fn with_params(custom_id: &str, extra: Value) -> Value {
    let mut request = request(custom_id);
    for (k, v) in extra.as_object().unwrap() {
        request["params"][k] = v.clone();
    }
    request
}

/// `None` for a succeeded row, else the errored row's message (always `invalid_request_error`).
fn outcome(result: &Value) -> Option<String> {
    match result["type"].as_str() {
        Some("succeeded") => None,
        Some("errored") => {
            assert_eq!(result["error"]["error"]["type"], "invalid_request_error");
            Some(
                result["error"]["error"]["message"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        }
        _ => panic!("unexpected result {result}"),
    }
}

#[tokio::test]
async fn each_batch_is_processed_under_the_version_it_was_created_with() {
    let app = spawn().await;
    let cited = json!([{"type": "char_location", "cited_text": "a", "document_index": 0,
                        "start_char_index": 0, "end_char_index": 1}]);
    let requests = vec![
        request("plain"),
        with_params("temperature", json!({"temperature": 1.0})),
        with_params("top_p", json!({"top_p": 0.5})),
        with_params("top_k", json!({"top_k": 3})),
        with_params(
            "assistant_document",
            json!({"messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}}]},
                {"role": "user", "content": "b"}
            ]}),
        ),
        with_params(
            "user_citations",
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "citations": cited}]}]}),
        ),
        with_params(
            "system_citations",
            json!({"system": [{"type": "text", "text": "s", "citations": cited}]}),
        ),
        with_params(
            "system_role",
            json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"}]}),
        ),
    ];
    let old = run_with(&app, &[("anthropic-version", "2023-06-01")], &requests).await;
    let new = run_with(&app, &[("anthropic-version", "2026-10-21")], &requests).await;
    let expected: &[(&str, Option<&str>, Option<&str>)] = &[
        ("plain", None, None),
        (
            "temperature",
            None,
            Some("temperature: Extra inputs are not permitted"),
        ),
        ("top_p", None, Some("top_p: Extra inputs are not permitted")),
        ("top_k", None, Some("top_k: Extra inputs are not permitted")),
        (
            "assistant_document",
            None,
            Some("messages.1.content.0: document blocks are not allowed in assistant messages"),
        ),
        (
            "user_citations",
            None,
            Some(
                "messages.0.content.0.citations: citations are not allowed on text blocks in user messages",
            ),
        ),
        ("system_citations", None, None),
        (
            "system_role",
            Some("messages.0.role: Input should be 'user' or 'assistant'"),
            None,
        ),
    ];
    for (id, on_old, on_new) in expected {
        assert_eq!(outcome(&old[*id]).as_deref(), *on_old, "2023-06-01 {id}");
        assert_eq!(outcome(&new[*id]).as_deref(), *on_new, "2026-10-21 {id}");
    }
}

#[tokio::test]
async fn beta_fields_are_extra_inputs_unless_the_batch_has_their_beta() {
    let app = spawn().await;
    let requests = vec![
        with_params("fallbacks", json!({"fallbacks": "default"})),
        with_params(
            "fallback_credit_token",
            json!({"fallback_credit_token": {"token": "t", "mode": "m"}}),
        ),
        with_params("mcp_servers", json!({"mcp_servers": []})),
        with_params("diagnostics", json!({"diagnostics": {}})),
    ];
    let without = run_with(&app, &[("anthropic-version", "2023-06-01")], &requests).await;
    let with = run_with(
        &app,
        &[
            ("anthropic-version", "2023-06-01"),
            (
                "anthropic-beta",
                "server-side-fallback-2026-07-01,fallback-credit-2026-07-01",
            ),
            ("anthropic-beta", "mcp-client-2025-04-04"),
        ],
        &requests,
    )
    .await;
    for field in ["fallbacks", "fallback_credit_token", "mcp_servers"] {
        assert_eq!(
            outcome(&without[field]),
            Some(format!("{field}: Extra inputs are not permitted")),
        );
        assert_eq!(outcome(&with[field]), None, "{field}: {}", with[field]);
    }
    // Generally available: no beta needed.
    assert_eq!(outcome(&without["diagnostics"]), None);
}

#[tokio::test]
async fn a_request_may_not_contradict_its_batch_user_profile() {
    let app = spawn().await;
    let requests = vec![
        request("absent"),
        with_params("same", json!({"user_profile_id": "uprof_a"})),
        with_params("other", json!({"user_profile_id": "uprof_b"})),
    ];
    let headers = [
        ("anthropic-version", "2023-06-01"),
        // Any string: its shape is the hosted API's business.
        ("anthropic-user-profile-id", "uprof_a"),
    ];
    let results = run_with(&app, &headers, &requests).await;
    assert_eq!(outcome(&results["absent"]), None);
    assert_eq!(outcome(&results["same"]), None);
    assert_eq!(
        outcome(&results["other"]).as_deref(),
        Some("user_profile_id: does not match the anthropic-user-profile-id header")
    );
    // Without the header, a request names whichever profile it likes.
    let results = run_with(&app, &headers[..1], &requests).await;
    assert!(results.values().all(|r| outcome(r).is_none()));
}
