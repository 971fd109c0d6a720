//! The PostgreSQL storage engine of batchd: [`PostgresStore`] implements [`batchd_store::Store`]
//! on one database shared by any number of batchd processes.
//!
//! # Many processes, one database
//!
//! Every process registers a row in `workers` and beats on it (see `workers`). Work is a queue
//! table, `pending`, with one small row per request that has no result yet:
//!
//! * **Claim** (`dispatch`): batches are served in round-robin order of a per-batch stamp
//!   (`serving.last_served`, from a sequence, so the rotation is cluster-wide), first batches of
//!   every workspace, then second ones, and so on. A claim pass is one statement (one round trip,
//!   one implicit transaction) for all the batches it serves: it locks their rows FOR KEY SHARE
//!   (so a cancel, which locks FOR UPDATE, cannot slip in between the state check and the claim,
//!   while record groups updating the tallies do not wait for claims nor claims for them), picks
//!   free rows with `FOR UPDATE SKIP LOCKED` (so processes never wait for or collide with each
//!   other), sets `worker` to this process and stamps the batches served. No transaction is held
//!   across anything but the database.
//! * **A claim dies with its process**: claims have no expiry time; the reaper of any live
//!   process frees the claims of a process whose heartbeat is stale. The `lease` argument of
//!   [`Store::claim`] is therefore unused.
//! * **Record** is a group commit: a handful of statements per group whatever its size, with
//!   arrays bound through `UNNEST`. Results are inserted `ON CONFLICT DO NOTHING` and the tallies
//!   grow only by the rows really inserted, in the same transaction that ends a completed batch:
//!   at most one result per request, even if a reaped claim was answered twice.
//! * **Cancel** is O(1) as in SQLite; [`Store::canceling`] lets every process stop sending the
//!   requests of a batch canceled through another one.
//!
//! # Durability
//!
//! Every commit that a client can observe is durable (PostgreSQL's default
//! `synchronous_commit = on`): creates, cancels, deletes, keys, record groups. Claims alone commit
//! with `synchronous_commit = off` (see `dispatch::CLAIM_ALL`): a claim lost with a PostgreSQL
//! crash only makes its requests claimable again, and the results table's primary key keeps one
//! result per request whoever answers. WAL is flushed in order, so the next durable commit (a
//! record group) makes every earlier claim durable too.
//!
//! # Layout
//!
//! Schema in `migrations/` (embedded by `build.rs`); connections and errors in `db`; row
//! encodings in `rows`; liveness in `workers`; batch lifecycle calls in `batches`; the
//! dispatcher's side in `dispatch`; API keys in `keys`.

mod batches;
mod db;
mod dispatch;
mod keys;
mod rows;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
mod workers;

#[cfg(test)]
mod tests;

use std::time::Duration;

use async_trait::async_trait;
use batchd_domain::keys::KeyHash;
use batchd_domain::{Batch, BatchId, Timestamp};
use batchd_store::{
    Answer, BatchPage, CancelOutcome, Cursor, DeleteOutcome, Draft, Ended, KeyInfo, ListError,
    NewBatch, NewRequest, ResultRow, Retry, Slot, Stats, Store, StoreError, WorkItem,
};
use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::db::{db, misuse};

/// The PostgreSQL implementation of [`Store`].
pub struct PostgresStore {
    pool: PgPool,
    /// This process's row in `workers`; `None` for an admin store, which claims nothing.
    worker: Option<i64>,
    heartbeat: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Opens the store for a server: connects, migrates the schema, and registers this process
    /// as a worker with a heartbeat. Other processes may be running on the same database.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = db::connect(url).await?;
        db::migrate(&pool).await?;
        let worker = workers::register(&pool).await?;
        // Reap at once too: a process restarted after a crash should not wait a heartbeat for
        // its own orphaned claims to be freed by someone else.
        workers::reap(&pool, workers::DEAD_AFTER).await?;
        let heartbeat = tokio::spawn(workers::heartbeat_loop(pool.clone(), worker));
        Ok(Self {
            pool,
            worker: Some(worker),
            heartbeat: Some(heartbeat),
        })
    }

    /// Opens the store for the `keys` and `migrate` commands: migrates, registers no worker.
    /// Only the key methods may be used on it.
    pub async fn open_for_admin(url: &str) -> Result<Self, StoreError> {
        let pool = db::connect(url).await?;
        db::migrate(&pool).await?;
        Ok(Self {
            pool,
            worker: None,
            heartbeat: None,
        })
    }

    /// Leaves the cluster cleanly: frees this process's claims and abandons its drafts at once
    /// (instead of after [`workers::DEAD_AFTER`]), then closes every connection.
    pub async fn close(&self) {
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.abort();
        }
        if let Some(me) = self.worker
            && let Err(err) = self.leave(me).await
        {
            tracing::warn!(%err, "could not free this process's claims; others will reap them");
        }
        self.pool.close().await;
    }

    async fn leave(&self, me: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        workers::forget(&mut tx, &[me]).await?;
        sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(me)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// This process's worker id; the dispatcher's calls need one.
    fn me(&self) -> Result<i64, StoreError> {
        self.worker
            .ok_or_else(|| misuse("an admin store cannot claim or create batches"))
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.abort();
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn begin_batch(&self, batch: NewBatch) -> Result<Draft, StoreError> {
        self.begin_batch_impl(batch).await
    }

    async fn append_requests(
        &self,
        draft: &Draft,
        requests: Vec<NewRequest>,
    ) -> Result<(), StoreError> {
        self.append_requests_impl(draft, requests).await
    }

    async fn commit_batch(&self, draft: Draft, total: u64) -> Result<Batch, StoreError> {
        self.commit_batch_impl(draft, total).await
    }

    async fn abort_batch(&self, draft: Draft) -> Result<(), StoreError> {
        self.abort_batch_impl(draft).await
    }

    async fn get_batch(&self, workspace: &str, id: &BatchId) -> Result<Option<Batch>, StoreError> {
        self.get_batch_impl(workspace, id).await
    }

    async fn list_batches(
        &self,
        workspace: &str,
        cursor: Cursor,
        limit: u32,
    ) -> Result<BatchPage, ListError> {
        self.list_batches_impl(workspace, cursor, limit).await
    }

    async fn cancel_batch(
        &self,
        workspace: &str,
        id: &BatchId,
        now: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        self.cancel_batch_impl(workspace, id, now).await
    }

    async fn delete_batch(
        &self,
        workspace: &str,
        id: &BatchId,
    ) -> Result<DeleteOutcome, StoreError> {
        self.delete_batch_impl(workspace, id).await
    }

    async fn results_page(
        &self,
        batch_key: i64,
        after: Option<u32>,
        limit: u32,
    ) -> Result<Vec<ResultRow>, StoreError> {
        self.results_page_impl(batch_key, after, limit).await
    }

    /// `lease` is unused: a claim lasts as long as this process's heartbeat (see `workers`).
    async fn claim(
        &self,
        limit: usize,
        _lease: Duration,
        now: Timestamp,
        skip: &[i64],
    ) -> Result<Vec<WorkItem>, StoreError> {
        self.claim_impl(limit, now, skip).await
    }

    async fn release(&self, slots: &[Slot]) -> Result<(), StoreError> {
        self.release_impl(slots).await
    }

    async fn defer(&self, retries: &[Retry], now: Timestamp) -> Result<(), StoreError> {
        self.defer_impl(retries, now).await
    }

    async fn record(&self, answers: &[Answer], now: Timestamp) -> Result<Ended, StoreError> {
        self.record_impl(answers, now).await
    }

    async fn finish_due(&self, now: Timestamp) -> Result<Ended, StoreError> {
        self.finish_due_impl(now).await
    }

    async fn canceling(&self) -> Result<Vec<i64>, StoreError> {
        self.canceling_impl().await
    }

    async fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        self.next_expiry_impl().await
    }

    async fn archive_due(&self, cutoff: Timestamp, now: Timestamp) -> Result<u64, StoreError> {
        self.archive_due_impl(cutoff, now).await
    }

    async fn purge_deleted(&self, limit: u32) -> Result<u64, StoreError> {
        self.purge_deleted_impl(limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.stats_impl().await
    }

    async fn create_key(
        &self,
        workspace: &str,
        hash: KeyHash,
        prefix: &str,
        now: Timestamp,
    ) -> Result<KeyInfo, StoreError> {
        self.insert_key(workspace, hash, prefix, now, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an INSERT of a key returned no row".into()))
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        self.list_keys_impl().await
    }

    async fn revoke_key(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        self.revoke_key_impl(id, now).await
    }

    async fn create_first_key(
        &self,
        workspace: &str,
        hash: KeyHash,
        prefix: &str,
        now: Timestamp,
    ) -> Result<Option<KeyInfo>, StoreError> {
        self.insert_key(workspace, hash, prefix, now, true).await
    }

    async fn workspace_for_key(&self, hash: &KeyHash) -> Result<Option<String>, StoreError> {
        self.workspace_for_key_impl(hash).await
    }
}
