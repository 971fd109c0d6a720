//! Retention: past `--results-retention` (counted from creation) results are removed and
//! `archived_at` is set; the batch stays retrievable and listed.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn results_are_archived_after_the_retention_period() {
    let app = spawn_with(|o| o.results_retention = Duration::from_secs(2)).await;
    let id = app.create_n(20).await["id"].as_str().unwrap().to_owned();
    let ended = app.wait_ended(&id, Duration::from_secs(20)).await;
    assert!(ended["archived_at"].is_null());
    assert_eq!(
        app.results(&id).await.len(),
        20,
        "results are there before the retention ends"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let archived = loop {
        let batch = app.batch(&id).await;
        if batch["archived_at"].is_string() {
            break batch;
        }
        assert!(Instant::now() < deadline, "never archived: {batch}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(micros(&archived["archived_at"]) >= micros(&archived["created_at"]) + 2_000_000);
    assert_eq!(counts(&archived), counts(&ended), "counts survive archival");
    assert_eq!(archived["processing_status"], "ended");

    let resp = app.get(&format!("/v1/messages/batches/{id}/results")).await;
    assert_error(
        resp,
        404,
        "not_found_error",
        &format!("Message Batch {id} has no available results."),
    )
    .await;
    let list: Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert_eq!(list["data"][0]["archived_at"], archived["archived_at"]);
    // An archived batch can still be deleted.
    assert_eq!(
        app.delete(&format!("/v1/messages/batches/{id}"))
            .await
            .status(),
        200
    );
}
