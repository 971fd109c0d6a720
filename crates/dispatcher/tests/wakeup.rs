//! The claimer never sleeps through announced work: a batch committed while a claim is out (so
//! that claim may have read the store before the commit) is claimed at once, not at the next
//! idle poll. Run against a store whose claims the test holds open.

mod common;

use std::sync::Arc;
use std::time::Duration;

use batchd_backends::BackendTable;
use batchd_dispatcher::{Config, Dispatcher};
use common::ScriptedStore;

async fn wait_for_claims(store: &ScriptedStore, n: usize) -> bool {
    tokio::time::timeout(Duration::from_secs(10), async {
        while store.claims_started() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn work_announced_during_a_claim_is_claimed_without_waiting_for_the_idle_poll() {
    let store = Arc::new(ScriptedStore::gated());
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
    store.open(1);
    // That claim read nothing, but the announced batch must be looked for again.
    let claimed_again = wait_for_claims(&store, 2).await;
    store.open(1);
    dispatcher.shutdown(Duration::from_secs(1)).await;
    assert!(
        claimed_again,
        "an announcement that arrived during a claim was lost"
    );
}
