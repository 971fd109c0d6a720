//! Maintenance: ends batches that reached `expires_at`, ends canceling batches once nothing of
//! theirs is in flight, archives batches past the results retention, and reclaims the rows of
//! deleted and archived batches in small steps. Each pass also refreshes the set of canceling
//! batches from the store, which is how a cancel made by another process stops this one's
//! requests within one maintenance interval.

use std::sync::Arc;
use std::time::Duration;

use batchd_domain::Timestamp;

use crate::{Shared, lock, report_ended, timed};

/// Rows removed per purge step: small enough that each step is a short transaction.
const PURGE_STEP: u32 = 5_000;

pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        let now = Timestamp::now();
        match timed("canceling", shared.store.canceling()).await {
            Ok(keys) => *lock(&shared.canceling) = keys.into_iter().collect(),
            Err(err) => {
                tracing::warn!(error = %err, "reading canceling batches failed; will retry")
            }
        }
        match timed("finish_due", shared.store.finish_due(now)).await {
            Ok(ended) => report_ended(&shared, ended),
            Err(err) => tracing::warn!(error = %err, "ending due batches failed; will retry"),
        }
        match timed(
            "archive_due",
            shared
                .store
                .archive_due(now.minus(shared.config.results_retention), now),
        )
        .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(batches = n, "archived batches past the results retention"),
            Err(err) => tracing::warn!(error = %err, "archiving batches failed; will retry"),
        }
        loop {
            match timed("purge", shared.store.purge_deleted(PURGE_STEP)).await {
                Ok(0) => break,
                Ok(_) => tokio::task::yield_now().await,
                Err(err) => {
                    tracing::warn!(error = %err, "reclaiming deleted batches failed; will retry");
                    break;
                }
            }
        }
        let interval = shared.config.maintenance_interval;
        let wait = match shared.store.next_expiry().await {
            Ok(Some(at)) => Timestamp::now().until(at).min(interval),
            _ => interval,
        };
        tokio::select! {
            () = shared.maintenance.notified() => {}
            () = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
            () = shared.stop.cancelled() => return,
        }
    }
}
