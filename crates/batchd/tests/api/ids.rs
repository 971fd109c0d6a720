//! Identifiers as the API shapes them: batch, request and message ids of a prefix, `01` and 22
//! base58 characters; ids made by earlier versions still served; the `anthropic-organization-id`
//! of each workspace.

use std::time::Duration;

use batchd_domain::{BatchId, CustomId, Timestamp};
use batchd_store::{NewBatch, NewRequest};
use serde_json::{Value, json};

use crate::helpers::*;

const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// `^{prefix}01[base58]{22}$`.
fn api_shaped(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix("01"))
        .is_some_and(|rest| rest.len() == 22 && rest.chars().all(|c| BASE58.contains(c)))
}

#[tokio::test]
async fn ids_have_the_apis_base58_shape() {
    let app = spawn().await;
    for _ in 0..20 {
        let resp = app
            .post("/v1/messages/batches", &json!({"requests": [request("a")]}))
            .await;
        let request_id = resp.headers()["request-id"].to_str().unwrap().to_owned();
        assert!(api_shaped(&request_id, "req_"), "{request_id}");
        let batch: Value = resp.json().await.unwrap();
        let id = batch["id"].as_str().unwrap();
        assert!(api_shaped(id, "msgbatch_"), "{id}");
    }
    let batch = app.create(vec![request("m")]).await;
    let id = batch["id"].as_str().unwrap();
    app.wait_ended(id, Duration::from_secs(30)).await;
    let message_id = app.results(id).await[0]["result"]["message"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(api_shaped(&message_id, "msg_"), "{message_id}");
    // Error responses too.
    let resp = app.get("/v1/messages/batches/msgbatch_nope").await;
    assert_eq!(resp.status(), 404);
    let request_id = resp.headers()["request-id"].to_str().unwrap();
    assert!(api_shaped(request_id, "req_"), "{request_id}");
}

#[tokio::test]
async fn a_batch_stored_under_an_id_of_an_earlier_version_is_still_served() {
    // Earlier versions drew ids from all 62 alphanumerics, `0 O I l` included.
    const OLD: &str = "msgbatch_01Ol0IxyzOLDstyle0000000";
    let app = spawn().await;
    let data_dir = app.data_dir.clone();
    let dir = app.stop().await;

    let storage = open_storage(&data_dir).await;
    let store = storage.store();
    let now = Timestamp::now();
    let draft = store
        .begin_batch(NewBatch {
            id: BatchId::parse(OLD).unwrap(),
            workspace: "ws-a".into(),
            created_at: now,
            expires_at: now.plus(Duration::from_secs(3600)),
            betas: Vec::new(),
            api_version: batchd_domain::ApiVersion::default(),
            user_profile_id: None,
            endpoint: batchd_domain::openai::Endpoint::Messages,
            openai: None,
        })
        .await
        .unwrap();
    let params = request("old")["params"].to_string();
    store
        .append_requests(
            &draft,
            vec![NewRequest {
                index: 0,
                custom_id: CustomId::parse("old").unwrap(),
                params,
                source: None,
            }],
        )
        .await
        .unwrap();
    store.commit_batch(draft, 1).await.unwrap();
    drop(store);
    storage.close().await;
    // The data-dir lock goes with the last handle.
    drop(storage);

    let app = start_in(data_dir, |_| {}).await;
    let ended = app.wait_ended(OLD, Duration::from_secs(30)).await;
    assert_eq!(ended["id"], OLD);
    assert_eq!(app.results(OLD).await[0]["result"]["type"], "succeeded");
    let listed: Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    assert_eq!(listed["data"][0]["id"], OLD);
    app.stop().await;
    drop(dir);
}

/// A bare UUID: 8-4-4-4-12 lowercase hex digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| {
            g.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

#[tokio::test]
async fn the_organization_header_is_a_stable_uuid_per_workspace() {
    let app = spawn().await;
    let organization = |resp: &reqwest::Response| {
        resp.headers()
            .get("anthropic-organization-id")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let first = organization(&app.get("/v1/messages/batches").await).expect("on a 200");
    assert!(is_uuid(&first), "{first}");
    let not_found = app.get("/v1/messages/batches/msgbatch_nope").await;
    assert_eq!(not_found.status(), 404);
    assert_eq!(organization(&not_found).as_deref(), Some(first.as_str()));

    let other = organization(&app.as_key(KEY_B).get("/v1/messages/batches").await).unwrap();
    assert!(is_uuid(&other), "{other}");
    assert_ne!(first, other);

    // Stable across processes: a restarted server names the same organization.
    let data_dir = app.data_dir.clone();
    let dir = app.stop().await;
    let app = start_in(data_dir, |_| {}).await;
    let again = organization(&app.get("/v1/messages/batches").await).unwrap();
    assert_eq!(again, first);

    // No key, no organization.
    let anonymous = app
        .client
        .get(format!("{}/v1/messages/batches", app.base))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(organization(&anonymous), None);
    app.stop().await;
    drop(dir);
}
