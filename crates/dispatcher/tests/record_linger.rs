//! The recorder gathers answers that come one by one (a slow upstream answers a request at a
//! time) for up to `record_linger` into one store write, instead of a write per answer, and
//! writes a burst at once. Run on paused time, against a store that hands out a set number of
//! requests per claim, one claim per idle poll (1 ms).

mod common;

use std::sync::Arc;
use std::time::Duration;

use batchd_backends::BackendTable;
use batchd_dispatcher::{Config, Dispatcher};
use common::ScriptedStore;
use tokio::time::Instant;

/// Dispatches `requests`, `per_claim` at a time, with `linger`; returns the record writes'
/// sizes and how long after the start each began.
async fn record_groups(
    requests: u32,
    per_claim: usize,
    linger: Duration,
) -> Vec<(usize, Duration)> {
    let store = Arc::new(ScriptedStore::new(requests, per_claim));
    let started = Instant::now();
    let dispatcher = Dispatcher::start(
        store.clone(),
        Arc::new(BackendTable::mock(Duration::ZERO, 512, false)),
        Config {
            // A claim that found fewer requests than it asked for waits this long for the next.
            idle_poll: Duration::from_millis(1),
            record_linger: linger,
            ..Config::default()
        },
    );
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        while store.recorded() < requests as usize {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    dispatcher.shutdown(Duration::from_secs(1)).await;
    assert!(answered.is_ok(), "answers recorded: {:?}", store.groups());
    store
        .groups()
        .into_iter()
        .map(|(size, at)| (size, at - started))
        .collect()
}

fn sizes(groups: &[(usize, Duration)]) -> Vec<usize> {
    groups.iter().map(|g| g.0).collect()
}

#[tokio::test(start_paused = true)]
async fn answers_that_come_one_by_one_are_written_together() {
    let groups = record_groups(12, 1, Duration::from_millis(20)).await;
    assert_eq!(sizes(&groups).iter().sum::<usize>(), 12);
    // 12 answers 1 ms apart, the first write waiting 20 ms for more: one write, or two.
    assert!(groups.len() <= 2, "record writes: {groups:?}");
}

#[tokio::test(start_paused = true)]
async fn without_a_linger_each_answer_is_written_alone() {
    let groups = record_groups(12, 1, Duration::ZERO).await;
    assert_eq!(sizes(&groups), vec![1; 12]);
}

#[tokio::test(start_paused = true)]
async fn a_burst_is_written_without_waiting_for_the_linger() {
    // 256 requests claimed and answered at once (the clock stands still meanwhile): the first
    // write holds at least the recorder's fill mark and begins before a linger could end.
    let linger = Duration::from_secs(3600);
    let groups = record_groups(256, 256, linger).await;
    assert_eq!(sizes(&groups).iter().sum::<usize>(), 256);
    assert!(groups[0].0 >= 128, "record writes: {groups:?}");
    assert!(groups[0].1 < linger, "record writes: {groups:?}");
}
