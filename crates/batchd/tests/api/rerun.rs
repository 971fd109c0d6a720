//! POST /v1/messages/batches/{id}/rerun: a new batch of an ended batch's unfinished requests.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

/// A request whose params fail validation (no `messages`): its result is `errored`.
fn failing(custom_id: &str) -> Value {
    json!({"custom_id": custom_id, "params": {"model": "claude-sonnet-4-5", "max_tokens": 5}})
}

fn ids_of(lines: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn rerun_holds_the_errored_requests_and_names_its_original() {
    let app = spawn().await;
    let created = app
        .create(vec![
            request("ok-1"),
            failing("bad-1"),
            request("ok-2"),
            failing("bad-2"),
        ])
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let original = app.wait_ended(&id, Duration::from_secs(20)).await;
    assert_eq!(counts(&original), [0, 2, 2, 0, 0]);

    let resp = app
        .post(&format!("/v1/messages/batches/{id}/rerun"), &json!({}))
        .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let rerun: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(rerun["type"], "message_batch");
    assert_eq!(rerun["processing_status"], "in_progress");
    assert_eq!(counts(&rerun), [2, 0, 0, 0, 0]);
    assert_eq!(rerun["rerun_of"], id.as_str());
    // Last, after every key of the batch object.
    assert_key_order(&text, &["\"results_url\"", "\"rerun_of\""]);
    let new_id = rerun["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);

    app.wait_ended(&new_id, Duration::from_secs(20)).await;
    let lines = app.results(&new_id).await;
    assert_eq!(ids_of(&lines), vec!["bad-1", "bad-2"]);
    // The same params: they fail the same way.
    assert!(lines.iter().all(|l| l["result"]["type"] == "errored"));
    // The original is untouched.
    assert_eq!(app.batch(&id).await, original);
    assert_eq!(app.results(&id).await.len(), 4);

    // Nothing of these types.
    for only in [json!(["canceled"]), json!(["expired", "canceled"])] {
        assert_error(
            app.post(
                &format!("/v1/messages/batches/{id}/rerun"),
                &json!({ "only": only }),
            )
            .await,
            400,
            "invalid_request_error",
            &format!("Message Batch {id} has no requests to re-run."),
        )
        .await;
    }
}

#[tokio::test]
async fn rerun_takes_the_canceled_part_of_a_canceled_batch() {
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_millis(300);
        o.mock_concurrency = 1;
        o.concurrency = 1;
    })
    .await;
    let id = app.create_n(20).await["id"].as_str().unwrap().to_owned();
    let resp = app
        .post(&format!("/v1/messages/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(resp.status(), 200);
    let ended = app.wait_ended(&id, Duration::from_secs(20)).await;
    let [_, succeeded, _, canceled, _] = counts(&ended);
    assert!(canceled > 0, "{ended}");

    let canceled_ids: Vec<String> = ids_of(
        &app.results(&id)
            .await
            .into_iter()
            .filter(|l| l["result"]["type"] == "canceled")
            .collect::<Vec<_>>(),
    );
    let resp = app
        .post(
            &format!("/v1/messages/batches/{id}/rerun"),
            &json!({"only": ["canceled"]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let rerun: Value = resp.json().await.unwrap();
    assert_eq!(counts(&rerun), [canceled, 0, 0, 0, 0]);
    let new_id = rerun["id"].as_str().unwrap();
    // Only errored: none, as every request either succeeded or was canceled.
    assert_eq!(succeeded + canceled, 20);
    assert_error(
        app.post(
            &format!("/v1/messages/batches/{id}/rerun"),
            &json!({"only": ["errored"]}),
        )
        .await,
        400,
        "invalid_request_error",
        &format!("Message Batch {id} has no requests to re-run."),
    )
    .await;
    let started = Instant::now();
    app.post(&format!("/v1/messages/batches/{new_id}/cancel"), &json!({}))
        .await;
    let again = app.wait_ended(new_id, Duration::from_secs(20)).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    let lines = app.results(new_id).await;
    assert_eq!(ids_of(&lines), canceled_ids);
    assert_eq!(counts(&again)[0], 0);
}

#[tokio::test]
async fn refusals_name_the_reason() {
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_secs(3);
        o.mock_concurrency = 1;
        o.concurrency = 1;
    })
    .await;
    let running = app.create_n(2).await["id"].as_str().unwrap().to_owned();
    assert_error(
        app.post(&format!("/v1/messages/batches/{running}/rerun"), &json!({}))
            .await,
        400,
        "invalid_request_error",
        "In progress batches cannot be re-run. Consider canceling the batch instead.",
    )
    .await;
    let unknown = "msgbatch_01AbCdEfGhIjKlMnOpQrStUv";
    assert_error(
        app.post(&format!("/v1/messages/batches/{unknown}/rerun"), &json!({}))
            .await,
        404,
        "not_found_error",
        &format!("Message Batch {unknown} not found."),
    )
    .await;
    for (body, message) in [
        (
            json!({"only": []}),
            "only: List should have at least 1 item after validation, not 0",
        ),
        (
            json!({"only": "errored"}),
            "only: Input should be a valid list",
        ),
        (
            json!({"only": ["errored", "succeeded"]}),
            "only.1: Input should be 'errored', 'expired' or 'canceled'",
        ),
        (
            json!({"except": ["errored"]}),
            "except: Extra inputs are not permitted",
        ),
    ] {
        assert_error(
            app.post(&format!("/v1/messages/batches/{running}/rerun"), &body)
                .await,
            400,
            "invalid_request_error",
            message,
        )
        .await;
    }
}
