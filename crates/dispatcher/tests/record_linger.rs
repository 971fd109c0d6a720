//! The recorder gathers answers that come one by one (a slow upstream answers a request at a
//! time) for up to `record_linger` into one store write, instead of a write per answer, and
//! writes a burst at once. Run on paused time, against a store that hands out a set number of
//! requests per claim, one claim per idle poll (1 ms).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use batchd_backends::BackendTable;
use batchd_dispatcher::{Config, Dispatcher};
use batchd_domain::openai::Endpoint;
use batchd_domain::{ApiVersion, BatchId, Timestamp};
use batchd_store::*;

/// Claims hand out `per_claim` requests at a time; record writes are counted, everything else
/// finds nothing. The dispatcher sees only [`DispatchStore`].
struct TrickleStore {
    queue: Mutex<VecDeque<WorkItem>>,
    per_claim: usize,
    /// The size of every record write and when it began, in order.
    groups: Mutex<Vec<(usize, Instant)>>,
}

impl TrickleStore {
    fn new(requests: u32, per_claim: usize) -> Self {
        let batch_id = BatchId::generate();
        let queue = (0..requests)
            .map(|index| WorkItem {
                batch_key: 1,
                batch_id: batch_id.clone(),
                workspace: "w".into(),
                index,
                custom_id: format!("r{index}"),
                params: r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#.into(),
                betas: Vec::new(),
                api_version: ApiVersion::default(),
                user_profile_id: None,
                endpoint: Endpoint::Messages,
                expires_at: Timestamp::now().plus(Duration::from_secs(3600)),
                attempts: 0,
                not_before: None,
            })
            .collect();
        Self {
            queue: Mutex::new(queue),
            per_claim,
            groups: Mutex::new(Vec::new()),
        }
    }

    fn groups(&self) -> Vec<usize> {
        self.groups.lock().unwrap().iter().map(|g| g.0).collect()
    }
}

#[async_trait]
impl DispatchStore for TrickleStore {
    async fn claim(&self, _: usize, _: Timestamp, _: &[i64]) -> Result<Vec<WorkItem>> {
        let mut queue = self.queue.lock().unwrap();
        let n = self.per_claim.min(queue.len());
        Ok(queue.drain(..n).collect())
    }
    async fn record(&self, answers: &[Answer], _: Timestamp) -> Result<Ended> {
        self.groups
            .lock()
            .unwrap()
            .push((answers.len(), Instant::now()));
        Ok(Ended::default())
    }
    async fn finish_due(&self, _: Timestamp) -> Result<Ended> {
        Ok(Ended::default())
    }
    async fn canceling(&self) -> Result<Vec<i64>> {
        Ok(Vec::new())
    }
    async fn next_expiry(&self) -> Result<Option<Timestamp>> {
        Ok(None)
    }
    async fn archive_due(&self, _: Timestamp, _: Timestamp) -> Result<u64> {
        Ok(0)
    }
    async fn purge_deleted(&self, _: u32) -> Result<u64> {
        Ok(0)
    }
    async fn release(&self, _: &[Slot]) -> Result<()> {
        Ok(())
    }
    async fn defer(&self, _: &[Retry], _: Timestamp) -> Result<()> {
        unreachable!("the mock answers every request")
    }
    async fn unfinalized(&self, _: u32) -> Result<Vec<batchd_domain::Batch>> {
        Ok(Vec::new())
    }
    async fn claim_finalize(&self, _: i64) -> Result<bool> {
        unreachable!()
    }
    async fn finalize(
        &self,
        _: i64,
        _: &batchd_domain::openai::OpenAiBatchMeta,
        _: &[(&batchd_store::FileDraft, u64)],
        _: Timestamp,
    ) -> Result<bool> {
        unreachable!()
    }
}

/// Dispatches `requests`, `per_claim` at a time, with `linger`; returns the record writes'
/// sizes and how long after the start each began.
async fn record_groups(
    requests: u32,
    per_claim: usize,
    linger: Duration,
) -> Vec<(usize, Duration)> {
    let store = Arc::new(TrickleStore::new(requests, per_claim));
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
        while store.groups().iter().sum::<usize>() < requests as usize {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    dispatcher.shutdown(Duration::from_secs(1)).await;
    assert!(answered.is_ok(), "answers recorded: {:?}", store.groups());
    let groups = store.groups.lock().unwrap().clone();
    groups
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
