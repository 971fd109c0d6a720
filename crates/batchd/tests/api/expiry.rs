//! Expiry: requests not finished by `expires_at` become `expired`; finished work is kept.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn unfinished_requests_expire_and_finished_ones_are_kept() {
    let app = spawn_with(|o| {
        o.batch_expiry = Duration::from_millis(1500);
        o.mock_latency = Duration::from_millis(400);
        o.mock_concurrency = 2;
        o.concurrency = 2;
    })
    .await;
    let created = app.create_n(30).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        micros(&created["expires_at"]) - micros(&created["created_at"]),
        1_500_000
    );
    let ended = app.wait_ended(&id, Duration::from_secs(10)).await;
    let [processing, succeeded, errored, canceled, expired] = counts(&ended);
    assert_eq!((processing, errored, canceled), (0, 0, 0));
    assert!(succeeded >= 2, "finished work is kept: {ended}");
    assert!(expired >= 20, "{ended}");
    assert_eq!(succeeded + expired, 30);
    assert!(micros(&ended["ended_at"]) >= micros(&ended["expires_at"]));

    let results = app.results(&id).await;
    assert_eq!(results.len(), 30);
    let expired_rows = results
        .iter()
        .filter(|l| l["result"] == json!({"type": "expired"}))
        .count();
    assert_eq!(expired_rows as u64, expired);
}
