//! The claimer never sleeps through announced work: a batch committed while a claim is out (so
//! that claim may have read the store before the commit) is claimed at once, not at the next
//! idle poll. Run against a store whose claims the test holds open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use batchd_backends::BackendTable;
use batchd_dispatcher::{Config, Dispatcher};
use batchd_domain::Timestamp;
use batchd_store::*;
use tokio::sync::Semaphore;

/// Claims wait for a permit the test hands out, and find nothing; everything the dispatcher
/// does beside claiming finds nothing either. The dispatcher sees only [`DispatchStore`].
struct GatedStore {
    gate: Semaphore,
    claims_started: AtomicUsize,
}

#[async_trait]
impl DispatchStore for GatedStore {
    async fn claim(&self, _: usize, _: Timestamp, _: &[i64]) -> Result<Vec<WorkItem>> {
        self.claims_started.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.expect("open").forget();
        Ok(Vec::new())
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
        unreachable!()
    }
    async fn record(&self, _: &[Answer], _: Timestamp) -> Result<Ended> {
        unreachable!()
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

async fn wait_for_claims(store: &GatedStore, n: usize) -> bool {
    tokio::time::timeout(Duration::from_secs(10), async {
        while store.claims_started.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn work_announced_during_a_claim_is_claimed_without_waiting_for_the_idle_poll() {
    let store = Arc::new(GatedStore {
        gate: Semaphore::new(0),
        claims_started: AtomicUsize::new(0),
    });
    let dispatcher = Dispatcher::start(
        store.clone(),
        Arc::new(BackendTable::mock(Duration::ZERO, 1, false)),
        Config {
            // Far beyond the test's timeout: only the announcement can start the next claim.
            idle_poll: Duration::from_secs(3600),
            ..Config::default()
        },
    );
    // The start-up claim is out; a batch is committed and announced before it answers.
    assert!(wait_for_claims(&store, 1).await, "the start-up claim");
    dispatcher.notify_created();
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.gate.add_permits(1);
    // That claim read nothing, but the announced batch must be looked for again.
    let claimed_again = wait_for_claims(&store, 2).await;
    store.gate.add_permits(1);
    dispatcher.shutdown(Duration::from_secs(1)).await;
    assert!(
        claimed_again,
        "an announcement that arrived during a claim was lost"
    );
}
