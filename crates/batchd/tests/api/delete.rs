//! DELETE /v1/messages/batches/{id}: where this project started. Every case.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn deleting_an_ended_batch_removes_it_everywhere() {
    let app = spawn().await;
    let id = app.create_n(3).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(20)).await;
    let keep = app.create_n(1).await["id"].as_str().unwrap().to_owned();

    let resp = app.delete(&format!("/v1/messages/batches/{id}")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("request-id"));
    assert_eq!(
        resp.text().await.unwrap(),
        format!(r#"{{"id":"{id}","type":"message_batch_deleted"}}"#)
    );

    let not_found = format!("Message Batch {id} not found.");
    assert_error(
        app.get(&format!("/v1/messages/batches/{id}")).await,
        404,
        "not_found_error",
        &not_found,
    )
    .await;
    assert_error(
        app.get(&format!("/v1/messages/batches/{id}/results")).await,
        404,
        "not_found_error",
        &not_found,
    )
    .await;
    assert_error(
        app.post(&format!("/v1/messages/batches/{id}/cancel"), &json!({}))
            .await,
        404,
        "not_found_error",
        &not_found,
    )
    .await;
    // Twice.
    assert_error(
        app.delete(&format!("/v1/messages/batches/{id}")).await,
        404,
        "not_found_error",
        &not_found,
    )
    .await;
    let list: Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    let listed: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![keep.as_str()]);
}

#[tokio::test]
async fn in_progress_and_canceling_batches_cannot_be_deleted() {
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_secs(3);
        o.mock_concurrency = 1;
        o.concurrency = 1;
    })
    .await;
    let id = app.create_n(3).await["id"].as_str().unwrap().to_owned();
    let message = "In progress batches cannot be deleted. Consider canceling the batch instead.";
    assert_error(
        app.delete(&format!("/v1/messages/batches/{id}")).await,
        400,
        "invalid_request_error",
        message,
    )
    .await;

    tokio::time::sleep(Duration::from_millis(200)).await;
    let canceling: Value = app
        .post(&format!("/v1/messages/batches/{id}/cancel"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(canceling["processing_status"], "canceling");
    assert_error(
        app.delete(&format!("/v1/messages/batches/{id}")).await,
        400,
        "invalid_request_error",
        message,
    )
    .await;
    // Still there.
    assert_eq!(app.batch(&id).await["id"], id.as_str());
}

#[tokio::test]
async fn unknown_and_foreign_batches_are_404_and_survive() {
    let app = spawn().await;
    let id = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(20)).await;
    let missing = "msgbatch_01NoSuchBatch0000000000000";
    assert_error(
        app.delete(&format!("/v1/messages/batches/{missing}")).await,
        404,
        "not_found_error",
        &format!("Message Batch {missing} not found."),
    )
    .await;
    assert_error(
        app.as_key(KEY_B)
            .delete(&format!("/v1/messages/batches/{id}"))
            .await,
        404,
        "not_found_error",
        &format!("Message Batch {id} not found."),
    )
    .await;
    assert_eq!(app.batch(&id).await["processing_status"], "ended");
    assert_eq!(app.results(&id).await.len(), 1);
}

#[tokio::test]
async fn deleted_rows_are_reclaimed_in_the_background() {
    if skip_on_postgres(
        "deleted_rows_are_reclaimed_in_the_background",
        "it reads the SQLite file in the data dir (crates/store-postgres tests purges)",
    ) {
        return;
    }
    let app = spawn().await;
    let id = app.create_n(500).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(30)).await;
    assert_eq!(
        app.delete(&format!("/v1/messages/batches/{id}"))
            .await
            .status(),
        200
    );
    // Count what is left in the database from another process, as an operator would.
    let db = app.data_dir.join("batchd.sqlite3");
    let rows = |table: &str| rows_in(&db, table);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = (rows("requests"), rows("results"), rows("batches"));
        if left == (0, 0, 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rows left after delete: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn storage_does_not_grow_under_create_delete_churn() {
    if skip_on_postgres(
        "storage_does_not_grow_under_create_delete_churn",
        "it reads the SQLite file in the data dir (crates/store-postgres tests purges)",
    ) {
        return;
    }
    let app = spawn().await;
    let db = app.data_dir.join("batchd.sqlite3");
    // Pages in the database as a reader sees it (WAL included), so the figure does not depend on
    // when a checkpoint happens to copy pages into the main file.
    let pages = || -> i64 {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg("import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma page_count').fetchone()[0])")
            .arg(&db)
            .output()
            .expect("python3");
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap_or(-1)
    };
    let mut sizes = Vec::new();
    for _round in 0..6 {
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(app.create_n(500).await["id"].as_str().unwrap().to_owned());
        }
        for id in &ids {
            app.wait_ended(id, Duration::from_secs(30)).await;
            assert_eq!(
                app.delete(&format!("/v1/messages/batches/{id}"))
                    .await
                    .status(),
                200
            );
        }
        // Wait for the background purge to reclaim the round's rows.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while rows_in(&db, "requests") + rows_in(&db, "results") > 0 {
            assert!(std::time::Instant::now() < deadline, "rows not reclaimed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sizes.push(pages());
    }
    // One round stores about 2,000 requests and 2,000 results (over 1 MB, dozens of 16 KiB
    // pages). Freed pages are reused, so later rounds add (almost) nothing.
    let growth = sizes[5] - sizes[1];
    assert!(
        sizes[1] > 0 && growth <= 4,
        "database grew by {growth} pages over 4 rounds of churn: {sizes:?}"
    );
    let wal = std::fs::metadata(app.data_dir.join("batchd.sqlite3-wal")).map_or(0, |m| m.len());
    assert!(wal < 80 * 1024 * 1024, "WAL not bounded: {wal} bytes");
}

fn rows_in(db: &std::path::Path, table: &str) -> i64 {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from {table}').fetchone()[0])"))
        .arg(db)
        .output()
        .expect("python3");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap_or(-1)
}
