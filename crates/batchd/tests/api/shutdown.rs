//! Graceful shutdown: in-flight requests finish and are recorded within the grace period, a short
//! grace returns promptly without losing anything, and open downloads do not hold the server.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use batchd_domain::BatchId;

use crate::helpers::*;

/// The live tallies of a stopped server's batch, read straight from its storage. Opening the
/// store also proves the stopped server let go of the data-dir lock (on SQLite).
async fn recorded_after_stop(data_dir: &std::path::Path, id: &str) -> (u64, bool) {
    let storage = open_storage(data_dir).await;
    let batch = storage
        .store()
        .get_batch("ws-a", &BatchId::parse(id).unwrap())
        .await
        .unwrap()
        .expect("batch");
    storage.close().await;
    (batch.succeeded + batch.errored, batch.is_ended())
}

/// Asserts that an ended batch of `r0..r{n-1}` has exactly one succeeded line per request.
async fn assert_complete(app: &TestApp, id: &str, n: usize) {
    let ended = app.wait_ended(id, Duration::from_secs(60)).await;
    assert_eq!(counts(&ended), [0, n as u64, 0, 0, 0], "{ended}");
    let lines = app.results(id).await;
    assert_eq!(lines.len(), n);
    let ids: HashSet<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    let expected: HashSet<String> = (0..n).map(|i| format!("r{i}")).collect();
    assert_eq!(
        ids,
        expected.iter().map(String::as_str).collect(),
        "every request exactly once"
    );
    assert!(lines.iter().all(|l| l["result"]["type"] == "succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_and_are_recorded_before_shutdown_returns() {
    // 8 slots, 1 s per request: 20 requests take three rounds; the first 8 are on the model
    // when the stop comes, the other 12 have not been claimed.
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_secs(1);
        o.mock_concurrency = 8;
        o.concurrency = 8;
        o.shutdown_grace = Duration::from_secs(8);
    })
    .await;
    let id = app.create_n(20).await["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let data_dir = app.data_dir.clone();
    let started = Instant::now();
    let dir = app.stop().await;
    let took = started.elapsed();
    // It waited for the round on the model (~0.6 s left) and claimed no more.
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(6),
        "stop took {took:?}"
    );

    let (recorded, ended) = recorded_after_stop(&data_dir, &id).await;
    assert_eq!(
        (recorded, ended),
        (8, false),
        "exactly the 8 requests in flight at the stop are recorded, and no more were started"
    );

    // After a restart the other 12 run; the 8 already have their (only) result.
    let app = start_in(data_dir.clone(), |o| {
        o.mock_latency = Duration::from_millis(300);
        o.mock_concurrency = 8;
        o.concurrency = 8;
    })
    .await;
    assert_complete(&app, &id, 20).await;
    app.stop().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_grace_returns_promptly_and_nothing_is_lost() {
    // Requests take 20 s on the model: a 100 ms grace must give up on them, not wait.
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_secs(20);
        o.mock_concurrency = 16;
        o.concurrency = 16;
        o.shutdown_grace = Duration::from_millis(100);
    })
    .await;
    let id = app.create_n(40).await["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let data_dir = app.data_dir.clone();
    let started = Instant::now();
    let dir = app.stop().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "a 100 ms grace took {took:?} to stop"
    );
    let (recorded, ended) = recorded_after_stop(&data_dir, &id).await;
    assert_eq!((recorded, ended), (0, false), "nothing was answered");

    // The abandoned requests run again after the restart, each exactly once.
    let app = start_in(data_dir.clone(), |o| o.mock_latency = Duration::ZERO).await;
    assert_complete(&app, &id, 40).await;
    app.stop().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_download_does_not_hold_the_server_past_the_grace() {
    let grace = Duration::from_secs(1);
    let app = spawn_with(|o| o.shutdown_grace = grace).await;
    let n = 30_000; // ~15 MB of results: more than the socket buffers hold
    let id = app.create_n(n).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(120)).await;

    let mut download = app.get(&format!("/v1/messages/batches/{id}/results")).await;
    assert_eq!(download.status(), 200);
    let first = download.chunk().await.unwrap().expect("a first chunk");
    assert!(!first.is_empty());
    // ...and then the client stops reading.

    let data_dir = app.data_dir.clone();
    let started = Instant::now();
    let dir = app.stop().await;
    let took = started.elapsed();
    assert!(
        took < grace + Duration::from_secs(2),
        "stop took {took:?} with a {grace:?} grace"
    );

    // The server is gone: the download does not go on behind the stopped server's back.
    let mut rest = first.len();
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match download.chunk().await {
                Ok(Some(chunk)) => rest += chunk.len(),
                Ok(None) => return Ok(rest),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the cut download must end, not hang");
    eprintln!(
        "DEBUG after stop: {:?} at {:?}",
        outcome.as_ref().map_err(|e| e.to_string()),
        started.elapsed()
    );
    match outcome {
        Err(_) => {}
        Ok(bytes) => {
            // Complete only if it all fitted into socket buffers before the stop.
            let full = app_results_len(&data_dir, &id).await;
            assert!(
                bytes < full,
                "the download completed ({bytes} bytes) after the server stopped"
            );
        }
    }

    // And the data dir is free for the next server.
    let app = start_in(data_dir, |_| {}).await;
    assert_eq!(app.results(&id).await.len(), n);
    app.stop().await;
    drop(dir);
}

/// Size of the full results download of a batch, from a fresh server on the same data dir.
async fn app_results_len(data_dir: &std::path::Path, id: &str) -> usize {
    let app = start_in(data_dir.to_path_buf(), |_| {}).await;
    let text = app
        .get(&format!("/v1/messages/batches/{id}/results"))
        .await
        .text()
        .await
        .unwrap();
    app.stop().await;
    text.len()
}
