//! The `openai` kind on the OpenAI surface: a line's body goes to `{base_url}{endpoint}` byte
//! for byte, the upstream's answer comes back as it was (compact), and an error answer keeps the
//! upstream's status and body for the error file.
//!
//! The upstream (`common::serve`) records what it was sent and answers what each test scripted
//! for the path.

mod common;

use std::sync::{Arc, Mutex};

use batchd_backends::config::BackendConfig;
use batchd_backends::{Backend, OpenAiBackend, OpenAiRequest};
use batchd_domain::openai::Endpoint;
use common::Seen;
use tokio::net::TcpListener;

/// Answers each path with a scripted raw response; records every request.
async fn upstream(script: Vec<(&'static str, String)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    common::serve(move |request| {
        script
            .iter()
            .find(|(p, _)| *p == request.path())
            .map_or_else(
                || raw(404, &[], "{\"error\":{\"message\":\"no route\"}}"),
                |(_, r)| r.clone(),
            )
    })
    .await
}

/// A raw response with a JSON `content-type`.
fn raw(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    common::raw(status, &all, body)
}

fn backend(base_url: &str, key_file: Option<&std::path::Path>) -> OpenAiBackend {
    let mut entry = format!(
        "name = \"vllm\"\nkind = \"openai\"\nbase_url = \"{base_url}\"\ntimeout = \"5s\"\n"
    );
    if let Some(path) = key_file {
        entry.push_str(&format!(
            "api_key_file = {:?}\n",
            path.display().to_string()
        ));
    }
    let config: BackendConfig = toml::from_str(&entry).unwrap();
    OpenAiBackend::new(&config.resolve().unwrap()).unwrap()
}

fn request<'a>(endpoint: Endpoint, body: &'a str) -> OpenAiRequest<'a> {
    OpenAiRequest {
        endpoint,
        body,
        model: "m",
        batch_id: "batch_67d450d0a1b281909f3c2e1d0a4b5c6d",
        custom_id: "req-1",
    }
}

#[tokio::test]
async fn the_body_goes_byte_for_byte_and_the_answer_comes_back_compact() {
    let answer = "{\n  \"object\": \"list\",\n  \"data\": [{\"object\":\"embedding\",\"index\":0,\"embedding\":[0.5, -0.25]}],\n  \"model\": \"m\"\n}\n";
    let (url, seen) = upstream(vec![(
        "/v1/embeddings",
        raw(200, &[("x-request-id", "abc123")], answer),
    )])
    .await;
    let key = std::env::temp_dir().join(format!("batchd-forward-key-{}", std::process::id()));
    std::fs::write(&key, "sk-test\n").unwrap();
    // A base URL ending in /v1 is the same upstream.
    let backend = backend(&format!("{url}/v1"), Some(&key));
    let _ = std::fs::remove_file(&key);
    assert!(backend.serves_endpoint(Endpoint::Embeddings));
    assert!(!backend.serves_endpoint(Endpoint::Messages));
    let body = r#"{ "model":"m",  "input": "héllo", "zeta": 1, "alpha": [1.50] }"#;
    let got = backend
        .send_openai(request(Endpoint::Embeddings, body))
        .await
        .unwrap();
    assert_eq!(got.status_code, 200);
    assert_eq!(got.request_id, "abc123");
    assert_eq!(
        got.body,
        r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-0.25]}],"model":"m"}"#
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line, "POST /v1/embeddings HTTP/1.1");
    assert_eq!(seen[0].body, body.as_bytes());
    assert_eq!(seen[0].header("authorization"), "Bearer sk-test");
    assert_eq!(seen[0].header("content-type"), "application/json");
}

#[tokio::test]
async fn every_endpoint_goes_to_its_own_path() {
    // Any 2xx is a success, with the status the upstream gave.
    let ok = raw(201, &[], r#"{"ok":true}"#);
    let (url, seen) = upstream(
        Endpoint::OPENAI
            .into_iter()
            .map(|e| (e.path(), ok.clone()))
            .collect(),
    )
    .await;
    let backend = backend(&url, None);
    for e in Endpoint::OPENAI {
        let got = backend.send_openai(request(e, "{}")).await.unwrap();
        assert_eq!(got.status_code, 201);
        // No `x-request-id`: one is derived, in the hosted API's 32-hex layout.
        assert_eq!(got.request_id.len(), 32);
        assert!(got.request_id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.line.split(' ').nth(1).unwrap().to_owned())
        .collect();
    let expected: Vec<&str> = Endpoint::OPENAI.iter().map(|e| e.path()).collect();
    assert_eq!(paths, expected);
}

#[tokio::test]
async fn error_answers_keep_the_upstream_status_and_body() {
    let limited = r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let refused = r#"{"error":{"message":"'messages' is required","type":"invalid_request_error","param":null,"code":null}}"#;
    let (url, _) = upstream(vec![
        (
            "/v1/chat/completions",
            raw(429, &[("retry-after", "3")], limited),
        ),
        ("/v1/completions", raw(400, &[], refused)),
    ])
    .await;
    let backend = backend(&url, None);
    let err = backend
        .send_openai(request(Endpoint::ChatCompletions, "{}"))
        .await
        .unwrap_err();
    assert!(err.retryable && err.throttled);
    assert_eq!(err.retry_after, Some(std::time::Duration::from_secs(3)));
    assert_eq!(err.upstream, Some((429, limited.to_owned())));
    let err = backend
        .send_openai(request(Endpoint::Completions, "{}"))
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.message, "'messages' is required");
    assert_eq!(err.upstream, Some((400, refused.to_owned())));
}

#[tokio::test]
async fn a_2xx_that_is_not_json_may_clear_and_a_dead_upstream_never_answered() {
    let (url, _) = upstream(vec![("/v1/embeddings", raw(200, &[], "<html>"))]).await;
    let err = backend(&url, None)
        .send_openai(request(Endpoint::Embeddings, "{}"))
        .await
        .unwrap_err();
    assert!(err.retryable);
    assert_eq!(err.upstream, None);

    // Nothing listens on a port just freed.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = backend(&format!("http://127.0.0.1:{port}"), None)
        .send_openai(request(Endpoint::Embeddings, "{}"))
        .await
        .unwrap_err();
    assert!(err.unwell && err.retryable);
    assert_eq!(err.upstream, None);
}

#[tokio::test]
async fn an_anthropic_backend_serves_only_chat_completions() {
    let config: BackendConfig = toml::from_str(
        "name = \"claude\"\nkind = \"anthropic\"\nbase_url = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let backend = batchd_backends::AnthropicBackend::new(&config.resolve().unwrap()).unwrap();
    assert!(backend.serves_endpoint(Endpoint::ChatCompletions));
    assert!(!backend.serves_endpoint(Endpoint::Embeddings));
    let err = backend
        .send_openai(request(Endpoint::Embeddings, "{}"))
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.upstream, None);
    assert_eq!(err.message, "backend `claude` cannot serve /v1/embeddings");
    // A body it cannot express is refused before anything is sent (nothing listens upstream).
    let err = backend
        .send_openai(request(
            Endpoint::ChatCompletions,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true}"#,
        ))
        .await
        .unwrap_err();
    assert!(!err.retryable && !err.unwell);
    let (status, body) = err.upstream.unwrap();
    assert_eq!(status, 400);
    assert!(
        body.starts_with(r#"{"error":{"message":"`logprobs` has no exact equivalent"#),
        "{body}"
    );
    assert!(
        body.ends_with(r#""type":"invalid_request_error","param":null,"code":null}}"#),
        "{body}"
    );
}
