//! Compressed create bodies (`Content-Encoding`) and the `error.details.error_code` of their
//! refusals.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::*;

fn gzip(plain: &[u8]) -> Vec<u8> {
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    out.write_all(plain).unwrap();
    out.finish().unwrap()
}

fn zlib(plain: &[u8]) -> Vec<u8> {
    let mut out = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    out.write_all(plain).unwrap();
    out.finish().unwrap()
}

fn raw_deflate(plain: &[u8]) -> Vec<u8> {
    let mut out = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    out.write_all(plain).unwrap();
    out.finish().unwrap()
}

fn brotli(plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
    writer.write_all(plain).unwrap();
    drop(writer);
    out
}

async fn post_encoded(app: &TestApp, coding: &str, body: Vec<u8>) -> Response {
    app.request(Method::POST, "/v1/messages/batches")
        .header("content-type", "application/json")
        .header("content-encoding", coding)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Asserts the envelope of an error with `error.details.error_code`, `details` after `message`.
async fn assert_coded(resp: Response, status: u16, kind: &str, code: &str) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(
        body["error"]["details"],
        json!({"error_code": code}),
        "{body}"
    );
    assert_key_order(
        &text,
        &[
            "\"type\":\"error\"",
            "\"error\":{\"type\":",
            "\"message\":",
            "\"details\":",
            "\"request_id\":",
        ],
    );
    body
}

async fn listed(app: &TestApp) -> Value {
    let list: Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    list["data"].clone()
}

/// The body the tests compress: texts with escapes and non-ASCII, so a decoding that changed a
/// byte would change what the mock echoes.
fn plain_body() -> Vec<u8> {
    let requests: Vec<Value> = ["plain", "café \"quoted\" \\ ünïcödé", "x\u{1F600}y"]
        .iter()
        .enumerate()
        .map(|(i, text)| {
            json!({
                "custom_id": format!("r{i}"),
                "params": {
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": text}]
                }
            })
        })
        .collect();
    serde_json::to_vec_pretty(&json!({ "requests": requests })).unwrap()
}

/// Each request's result, by `custom_id`, without the ids that differ between batches.
async fn outcomes(app: &TestApp, batch: Value) -> BTreeMap<String, Value> {
    let id = batch["id"].as_str().unwrap();
    app.wait_ended(id, Duration::from_secs(30)).await;
    app.results(id)
        .await
        .into_iter()
        .map(|line| {
            let result = &line["result"];
            (
                line["custom_id"].as_str().unwrap().to_owned(),
                json!([result["type"], result["message"]["content"]]),
            )
        })
        .collect()
}

#[tokio::test]
async fn gzip_deflate_and_br_bodies_create_the_batch_the_plain_body_does() {
    let app = spawn().await;
    let plain = plain_body();
    let resp = post_encoded(&app, "identity", plain.clone()).await;
    assert_eq!(resp.status(), 200);
    let expected = outcomes(&app, resp.json().await.unwrap()).await;
    assert_eq!(expected.len(), 3);
    assert!(
        expected["r1"].to_string().contains("ünïcödé"),
        "{expected:?}"
    );

    for (coding, wire) in [
        ("gzip", gzip(&plain)),
        ("x-gzip", gzip(&plain)),
        ("deflate", zlib(&plain)),
        ("deflate", raw_deflate(&plain)),
        ("br", brotli(&plain)),
        ("GZIP", gzip(&plain)),
    ] {
        assert_ne!(wire, plain);
        let resp = post_encoded(&app, coding, wire).await;
        assert_eq!(resp.status(), 200, "{coding}");
        let batch: Value = resp.json().await.unwrap();
        assert_eq!(batch["request_counts"]["processing"], 3, "{coding}");
        assert_eq!(outcomes(&app, batch).await, expected, "{coding}");
    }
}

#[tokio::test]
async fn a_body_its_coding_cannot_decode_is_400_and_creates_nothing() {
    let app = spawn().await;
    // Not gzip at all; and bodies cut short after thousands of requests have decoded, so the
    // create fails midway, with chunks already handed to the store.
    let many: Vec<Value> = (0..5000).map(|i| request(&format!("r{i}"))).collect();
    let wire = gzip(&serde_json::to_vec(&json!({ "requests": many })).unwrap());
    let cut = wire[..wire.len() * 9 / 10].to_vec();
    let br = brotli(&serde_json::to_vec(&json!({ "requests": many })).unwrap());
    let br_cut = br[..br.len() * 9 / 10].to_vec();
    for (coding, body) in [
        ("gzip", b"{\"requests\": []}".to_vec()),
        ("gzip", cut),
        ("br", br_cut),
        ("deflate", b"\xff\xff\xff\xff not deflate".to_vec()),
    ] {
        let resp = post_encoded(&app, coding, body).await;
        let body = assert_coded(
            resp,
            400,
            "invalid_request_error",
            "request_body_encoding_invalid",
        )
        .await;
        assert_eq!(
            body["error"]["message"],
            "The request body is not valid for its `Content-Encoding`."
        );
    }
    assert_eq!(listed(&app).await, json!([]));
    // The whole body, intact, is accepted.
    let resp = post_encoded(&app, "gzip", wire).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn an_unknown_or_stacked_coding_is_400() {
    let app = spawn().await;
    let plain = plain_body();
    for coding in ["zstd", "compress", "gzip, br", "bogus"] {
        let resp = post_encoded(&app, coding, gzip(&plain)).await;
        let body = assert_coded(
            resp,
            400,
            "invalid_request_error",
            "request_body_encoding_unsupported",
        )
        .await;
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("The request's `Content-Encoding` is not supported."),
            "{body}"
        );
    }
    assert_eq!(listed(&app).await, json!([]));
    // Routes without a body ignore the header.
    let resp = app
        .request(Method::GET, "/v1/messages/batches")
        .header("content-encoding", "zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_small_body_over_the_limit_once_decoded_is_413() {
    const LIMIT: u64 = 1024 * 1024;
    let app = spawn_with(|o| o.max_create_bytes = LIMIT).await;
    // 4 MB of one request's padding: a few KB on the wire.
    let pad = " ".repeat(4 * LIMIT as usize);
    let plain = format!(
        r#"{{"requests":[{{"custom_id":"a","params":{{"model":"m","max_tokens":1,"pad":"{pad}"}}}}]}}"#
    );
    for (coding, wire) in [
        ("gzip", gzip(plain.as_bytes())),
        ("br", brotli(plain.as_bytes())),
    ] {
        assert!(wire.len() < 64 * 1024, "{coding}: {}", wire.len());
        let resp = post_encoded(&app, coding, wire).await;
        let body = assert_coded(
            resp,
            413,
            "request_too_large",
            "request_body_too_large_after_decoding",
        )
        .await;
        assert_eq!(
            body["error"]["message"],
            "The compressed request body exceeds the request size limit once decoded."
        );
    }
    // Many small requests over the limit once decoded: the same, with chunks already stored.
    let many: Vec<Value> = (0..20_000).map(|i| request(&format!("r{i}"))).collect();
    let plain = serde_json::to_vec(&json!({ "requests": many })).unwrap();
    assert!(plain.len() as u64 > 2 * LIMIT);
    let wire = gzip(&plain);
    assert!((wire.len() as u64) < LIMIT);
    let resp = post_encoded(&app, "gzip", wire).await;
    assert_coded(
        resp,
        413,
        "request_too_large",
        "request_body_too_large_after_decoding",
    )
    .await;
    assert_eq!(listed(&app).await, json!([]));
}

#[tokio::test]
async fn errors_without_a_code_have_no_details() {
    let app = spawn_with(|o| o.max_create_bytes = 4096).await;
    let resp = app
        .request(Method::POST, "/v1/messages/batches")
        .header("content-type", "application/json")
        .body("{\"requests\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].get("details").is_none(), "{body}");
    // The plain body over the limit keeps the API's wire text, without a code.
    let resp = app
        .request(Method::POST, "/v1/messages/batches")
        .body(vec![b' '; 8192])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Request exceeds the maximum size");
    assert!(body["error"].get("details").is_none(), "{body}");
    let resp = app.get("/v1/messages/batches/msgbatch_nope").await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].get("details").is_none(), "{body}");
}
