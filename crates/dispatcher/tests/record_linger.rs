//! The recorder gathers answers that come one by one (a slow upstream answers a request at a
//! time) for up to `record_linger` into one store write, instead of a write per answer. Run on
//! paused time, against a store that hands out one request per claim, one claim per idle poll:
//! answers arrive 1 ms apart.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use batchd_backends::BackendTable;
use batchd_dispatcher::{Config, Dispatcher};
use batchd_domain::openai::Endpoint;
use batchd_domain::{ApiVersion, BatchId, Timestamp};
use batchd_store::*;

const REQUESTS: u32 = 12;

/// Claims hand out one request at a time; record writes are counted, everything else finds
/// nothing. The dispatcher sees only [`DispatchStore`].
struct TrickleStore {
    queue: Mutex<VecDeque<WorkItem>>,
    /// The size of every record write, in order.
    groups: Mutex<Vec<usize>>,
}

impl TrickleStore {
    fn new() -> Self {
        let batch_id = BatchId::generate();
        let queue = (0..REQUESTS)
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
            groups: Mutex::new(Vec::new()),
        }
    }

    fn groups(&self) -> Vec<usize> {
        self.groups.lock().unwrap().clone()
    }
}

#[async_trait]
impl DispatchStore for TrickleStore {
    async fn claim(&self, _: usize, _: Timestamp, _: &[i64]) -> Result<Vec<WorkItem>> {
        Ok(self.queue.lock().unwrap().pop_front().into_iter().collect())
    }
    async fn record(&self, answers: &[Answer], _: Timestamp) -> Result<Ended> {
        self.groups.lock().unwrap().push(answers.len());
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

/// Dispatches the trickle with `linger` and returns the record writes' sizes.
async fn record_groups(linger: Duration) -> Vec<usize> {
    let store = Arc::new(TrickleStore::new());
    let dispatcher = Dispatcher::start(
        store.clone(),
        Arc::new(BackendTable::mock(Duration::ZERO, 64, false)),
        Config {
            // A claim that found one request of the many asked for waits this long for the next.
            idle_poll: Duration::from_millis(1),
            record_linger: linger,
            ..Config::default()
        },
    );
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        while store.groups().iter().sum::<usize>() < REQUESTS as usize {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    dispatcher.shutdown(Duration::from_secs(1)).await;
    assert!(answered.is_ok(), "answers recorded: {:?}", store.groups());
    store.groups()
}

#[tokio::test(start_paused = true)]
async fn answers_that_come_one_by_one_are_written_together() {
    let groups = record_groups(Duration::from_millis(5)).await;
    assert_eq!(groups.iter().sum::<usize>(), REQUESTS as usize);
    // 12 answers 1 ms apart, each write waiting 5 ms for more: two or three writes.
    assert!(groups.len() <= 3, "record writes: {groups:?}");
}

#[tokio::test(start_paused = true)]
async fn without_a_linger_each_answer_is_written_alone() {
    let groups = record_groups(Duration::ZERO).await;
    assert_eq!(groups, vec![1; REQUESTS as usize]);
}
