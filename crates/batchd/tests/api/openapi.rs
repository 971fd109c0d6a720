//! `GET /openapi.json`: served without a key, equal to the committed `crates/http/openapi.json`,
//! and true to the running server: every documented operation is routed, answers with a
//! documented status, needs a key exactly when the document says so, and the objects it returns
//! have exactly the documented keys.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../http/openapi.json");

fn committed() -> String {
    std::fs::read_to_string(SNAPSHOT).expect("read crates/http/openapi.json")
}

/// Every documented (method, path) with the id segment filled in, and its operation.
fn operations(doc: &Value, id: &str) -> Vec<(Method, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let path = path.replace("{message_batch_id}", id);
            out.push((method, path, operation.clone()));
        }
    }
    out
}

#[tokio::test]
async fn served_without_a_key_and_equal_to_the_committed_file() {
    let app = spawn().await;
    let resp = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().contains_key("request-id"));
    let served = resp.text().await.unwrap();
    let committed = committed();
    if served != committed {
        let line = served
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| served.lines().count().min(committed.lines().count()));
        panic!(
            "GET /openapi.json differs from crates/http/openapi.json from line {}; regenerate the \
             file with `UPDATE_OPENAPI=1 cargo test -p batchd-http openapi`",
            line + 1
        );
    }
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_secured_as_documented() {
    let app = spawn().await;
    let doc: Value = serde_json::from_str(&committed()).unwrap();
    // A well-formed id that names no batch: every id route answers its own 404, not the fallback.
    let unknown = "msgbatch_01AAAAAAAAAAAAAAAAAAAAAAAA";
    let ops = operations(&doc, unknown);
    assert!(!ops.is_empty());
    for (method, path, operation) in ops {
        let what = format!("{method} {path}");
        let documented: BTreeSet<u16> = operation["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|s| s.parse().unwrap())
            .collect();
        let secured = operation.get("security").is_some();

        let resp = app.request(method.clone(), &path).send().await.unwrap();
        let status = resp.status().as_u16();
        assert!(resp.headers().contains_key("request-id"), "{what}");
        let body = resp.text().await.unwrap();
        let fallback = (status == 404
            && serde_json::from_str::<Value>(&body)
                .is_ok_and(|v| v["error"]["message"] == "Not found"))
            || status == 405;
        assert!(
            !fallback,
            "{what} is documented but not routed: {status} {body}"
        );
        assert!(
            documented.contains(&status),
            "{what} answered {status}, which is not documented ({documented:?}): {body}"
        );

        let anonymous = app.client.request(method, format!("{}{path}", app.base));
        let status = anonymous.send().await.unwrap().status().as_u16();
        if secured {
            assert_eq!(status, 401, "{what} is documented as needing a key");
        } else {
            assert_ne!(status, 401, "{what} is documented as open");
        }
    }
}

/// The keys a schema documents, checking that all of them are required (always present).
fn keys(doc: &Value, schema: &str) -> Vec<String> {
    let schema = &doc["components"]["schemas"][schema];
    let properties: BTreeSet<String> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let required: Vec<String> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        properties,
        required.iter().cloned().collect::<BTreeSet<_>>(),
        "{schema}"
    );
    required
}

/// Object keys in the order they were sent (serde_json sorts them, so read them off the text).
fn sent_keys(text: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(text).unwrap();
    let mut keys: Vec<(usize, String)> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| (text.find(&format!("\"{k}\":")).unwrap(), k.clone()))
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

#[tokio::test]
async fn returned_objects_have_exactly_the_documented_keys() {
    let app = spawn().await;
    let doc: Value = serde_json::from_str(&committed()).unwrap();
    let batch = app.create_n(2).await;
    let id = batch["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(20)).await;

    let text = |path: String| {
        let app = &app;
        async move {
            let resp = app.get(&path).await;
            assert_eq!(resp.status(), 200, "{path}");
            resp.text().await.unwrap()
        }
    };
    // Required lists are in declaration order, which is the wire order.
    let batch = text(format!("/v1/messages/batches/{id}")).await;
    assert_eq!(sent_keys(&batch), keys(&doc, "MessageBatch"));
    let page = text("/v1/messages/batches?limit=1".into()).await;
    assert_eq!(sent_keys(&page), keys(&doc, "ListPage_MessageBatch"));
    let progress = text(format!("/v1/messages/batches/{id}/progress")).await;
    assert_eq!(sent_keys(&progress), keys(&doc, "Progress"));
    let results = text(format!("/v1/messages/batches/{id}/results")).await;
    let line = results.lines().next().unwrap();
    assert_eq!(sent_keys(line), keys(&doc, "ResultLine"));

    let resp = app.delete(&format!("/v1/messages/batches/{id}")).await;
    assert_eq!(resp.status(), 200);
    let deleted = resp.text().await.unwrap();
    assert_eq!(sent_keys(&deleted), keys(&doc, "DeletedMessageBatch"));

    let resp = app.get(&format!("/v1/messages/batches/{id}")).await;
    assert_eq!(resp.status(), 404);
    let error = resp.text().await.unwrap();
    assert_eq!(sent_keys(&error), keys(&doc, "ErrorEnvelope"));
}
