//! The `anthropic` kind's HTTP exchange: the headers a request carries, and what each way of
//! failing to get an answer becomes (no one listening, no answer in time, a certificate nobody
//! vouches for, a redirect).
//!
//! The upstreams are `common`'s raw sockets, so the test sees exactly what went over the wire.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use batchd_backends::config::BackendConfig;
use batchd_backends::{AnthropicBackend, Backend, BackendRequest};
use batchd_domain::params::{self, Params};
use batchd_domain::{ApiVersion, ErrorType};
use common::{Seen, raw, read_request};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

const RAW: &str =
    r#"{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"hé"}]}"#;

const MESSAGE: &str = r#"{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{"input_tokens":1,"output_tokens":1}}"#;

/// Answers every request with `response`; records each.
async fn upstream(response: String) -> (String, Arc<Mutex<Vec<Seen>>>) {
    common::serve(move |_| response.clone()).await
}

/// An `anthropic` backend named `up` at `base_url`; `extra` are more lines of its entry.
fn backend(base_url: &str, extra: &str) -> AnthropicBackend {
    let entry = format!(
        "name = \"up\"\nkind = \"anthropic\"\nbase_url = \"{base_url}\"\ntimeout = \"5s\"\n{extra}"
    );
    let config: BackendConfig = toml::from_str(&entry).unwrap();
    AnthropicBackend::new(&config.resolve().unwrap()).unwrap()
}

fn params() -> Params {
    params::validate(RAW, &params::Terms::default()).unwrap()
}

async fn send(
    backend: &AnthropicBackend,
    betas: &[String],
) -> Result<String, batchd_backends::BackendError> {
    backend
        .send(BackendRequest {
            params: &params(),
            raw_params: RAW,
            betas,
            version: ApiVersion::default(),
            batch_id: "msgbatch_01",
            custom_id: "a",
        })
        .await
}

#[tokio::test]
async fn a_request_carries_its_body_the_key_the_version_and_the_betas() {
    let (url, seen) = upstream(raw(200, &[], MESSAGE)).await;
    let key = std::env::temp_dir().join(format!("batchd-transport-key-{}", std::process::id()));
    std::fs::write(&key, "sk-ant-test\n").unwrap();
    let up = backend(
        &url,
        &format!("api_key_file = {:?}\n", key.display().to_string()),
    );
    let _ = std::fs::remove_file(&key);
    let betas = vec!["some-beta-2099-01-01".to_owned(), "other-beta".to_owned()];
    let message = send(&up, &betas).await.unwrap();
    assert!(message.contains(r#""service_tier":"batch""#), "{message}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.line, "POST /v1/messages HTTP/1.1");
    assert_eq!(request.body, RAW.as_bytes());
    assert_eq!(request.all("host"), [url.trim_start_matches("http://")]);
    assert_eq!(request.all("content-type"), ["application/json"]);
    assert_eq!(
        request.all("content-length"),
        [RAW.len().to_string().as_str()]
    );
    assert_eq!(request.all("accept"), ["*/*"]);
    assert_eq!(request.all("x-api-key"), ["sk-ant-test"]);
    assert_eq!(
        request.all("anthropic-version"),
        [ApiVersion::default().upstream()]
    );
    assert_eq!(
        request.all("anthropic-beta"),
        ["some-beta-2099-01-01,other-beta"]
    );
    let names: Vec<&str> = request.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names.len(), 7, "nothing else is sent: {names:?}");
}

#[tokio::test]
async fn a_fixed_version_is_sent_once_instead_of_the_batchs() {
    let (url, seen) = upstream(raw(200, &[], MESSAGE)).await;
    let up = backend(&url, "anthropic_version = \"2020-01-01\"\n");
    send(&up, &[]).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].all("anthropic-version"), ["2020-01-01"]);
}

#[tokio::test]
async fn a_redirect_is_not_followed_but_answered_as_an_error() {
    let (url, seen) = upstream(raw(307, &[("location", "/v1/elsewhere")], "")).await;
    let err = send(&backend(&url, ""), &[]).await.unwrap_err();
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "sent once, never to `location`"
    );
    assert!(!err.retryable);
    assert_eq!(err.kind, ErrorType::Api);
    assert_eq!(err.message, "backend `up` answered 307 Temporary Redirect");
    assert_eq!(err.upstream, Some((307, String::new())));
}

#[tokio::test]
async fn no_one_listening_is_a_retried_connection_failure_naming_the_cause() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = send(&backend(&url, ""), &[]).await.unwrap_err();
    assert!(err.retryable && err.unwell && !err.throttled);
    assert_eq!(err.kind, ErrorType::Api);
    assert!(
        err.message
            .starts_with("backend `up` could not be reached: Connection refused"),
        "{}",
        err.message
    );
    assert_eq!(err.upstream, None);
}

#[tokio::test]
async fn no_answer_in_time_is_a_retried_timeout() {
    // Reads the request and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let _request = read_request(&mut socket).await;
        std::future::pending::<()>().await;
    });
    let entry =
        format!("name = \"up\"\nkind = \"anthropic\"\nbase_url = \"{url}\"\ntimeout = \"300ms\"\n");
    let config: BackendConfig = toml::from_str(&entry).unwrap();
    let up = AnthropicBackend::new(&config.resolve().unwrap()).unwrap();
    let err = send(&up, &[]).await.unwrap_err();
    assert!(err.retryable && err.unwell);
    assert_eq!(err.kind, ErrorType::Timeout);
    assert_eq!(err.message, "backend `up` did not answer within 300ms");
}

#[tokio::test]
async fn an_https_upstream_whose_certificate_no_trusted_root_vouches_for_is_refused() {
    // The test CA of batchd's listener tests is in no system store.
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../batchd/tests/fixtures/tls");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{fixtures}/server-a.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{fixtures}/server-a.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(Mutex::new(HashMap::new()));
    let log = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let outcome = acceptor.accept(socket).await.map(|_| ());
            let ok = outcome.is_ok();
            *log.lock().unwrap().entry(ok).or_insert(0) += 1;
        }
    });
    let err = send(&backend(&format!("https://localhost:{port}"), ""), &[])
        .await
        .unwrap_err();
    assert!(err.retryable && err.unwell, "{err:?}");
    assert!(
        err.message
            .starts_with("backend `up` could not be reached: invalid peer certificate"),
        "{}",
        err.message
    );
    assert_eq!(handshakes.lock().unwrap().get(&true), None);
}
