//! The store the dispatcher's tests run against: claims hand out requests from a queue, a set
//! number at a time, each claim first waiting for a permit the test gives when the store is
//! gated; record writes are kept with the time they began; everything else finds nothing. The
//! dispatcher sees only [`DispatchStore`].

// Each test crate uses what it needs of this module.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use batchd_domain::openai::Endpoint;
use batchd_domain::{ApiVersion, BatchId, Timestamp};
use batchd_store::*;
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub struct ScriptedStore {
    queue: Mutex<VecDeque<WorkItem>>,
    per_claim: usize,
    gate: Option<Semaphore>,
    claims_started: AtomicUsize,
    /// The size of every record write and when it began, in order.
    groups: Mutex<Vec<(usize, Instant)>>,
}

impl ScriptedStore {
    /// `requests` Messages requests of one batch, handed out `per_claim` at a time.
    pub fn new(requests: u32, per_claim: usize) -> Self {
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
            gate: None,
            claims_started: AtomicUsize::new(0),
            groups: Mutex::new(Vec::new()),
        }
    }

    /// Nothing to hand out, and every claim waits for [`Self::open`] before it finds so.
    pub fn gated() -> Self {
        Self {
            gate: Some(Semaphore::new(0)),
            ..Self::new(0, 0)
        }
    }

    /// Lets `n` more claims of a gated store answer.
    pub fn open(&self, n: usize) {
        self.gate.as_ref().expect("a gated store").add_permits(n);
    }

    pub fn claims_started(&self) -> usize {
        self.claims_started.load(Ordering::SeqCst)
    }

    /// The record writes so far: their sizes, and when each began.
    pub fn groups(&self) -> Vec<(usize, Instant)> {
        self.groups.lock().unwrap().clone()
    }

    pub fn recorded(&self) -> usize {
        self.groups().iter().map(|g| g.0).sum()
    }
}

#[async_trait]
impl DispatchStore for ScriptedStore {
    async fn claim(&self, _: usize, _: Timestamp, _: &[i64]) -> Result<Vec<WorkItem>> {
        self.claims_started.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("open").forget();
        }
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
