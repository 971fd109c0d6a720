//! The SQLite storage engine of batchd: [`SqliteStore`] implements [`batchd_store::Store`] on one
//! database file, `DATA_DIR/batchd.sqlite3`.
//!
//! # Concurrency
//!
//! SQLite allows one writer at a time, so the store has exactly one write connection (a pool of
//! one: writers queue for it instead of failing with `SQLITE_BUSY`) and every write transaction
//! starts with `BEGIN IMMEDIATE`, taking the write lock before it reads. Reads (get, list, claim
//! scans) use a separate pool of read-only connections and, thanks to WAL, never wait for the
//! writer; result downloads have connections of their own, stepped by blocking tasks
//! (`download`). Transactions are short: none spans an `.await` on anything but the
//! database, and bulk work (creates, purges) is split into chunks, each its own transaction.
//!
//! A server takes an exclusive lock on `DATA_DIR/batchd.lock` for its lifetime
//! ([`SqliteStore::open`]), which is what allows leases to live in memory (see `claims`). The
//! `keys` commands use [`SqliteStore::open_for_admin`], which skips the lock: they only touch
//! `api_keys`, so they can run beside a live server.
//!
//! # Durability
//!
//! The writer switches `PRAGMA synchronous` per transaction (it cannot change inside one):
//!
//! * `FULL` (the WAL is fsynced at commit) for what the API promises once it has answered:
//!   [`Store::commit_batch`], [`Store::cancel_batch`], [`Store::delete_batch`],
//!   [`Store::create_key`], [`Store::create_first_key`], [`Store::revoke_key`]; and for every transaction that ends a batch
//!   (the [`Store::record`] group that completes or finishes canceling it, [`Store::finish_due`],
//!   a [`Store::release`] that drains a canceling batch), so that a batch seen ended, its results
//!   perhaps downloaded, never comes back unended with fewer results after an OS crash.
//! * `NORMAL` (no fsync at commit) for the bulk: draft chunks, the other record groups, purges.
//!   In WAL mode a `NORMAL` commit survives a process kill; only an OS crash or power loss can
//!   lose it, and only until the next `FULL` commit or checkpoint, which syncs every earlier
//!   frame too. What that can lose is recoverable: draft chunks belong to a create that never
//!   returned, and a result of an unended batch is simply requested again.
//!
//! A `FULL` transaction that writes nothing (a maintenance pass with nothing due) costs no fsync.
//!
//! # Layout
//!
//! Schema in `migrations/` (embedded by `build.rs`); connections in `db`; row encodings in
//! `rows`; leases in `claims`; the data-dir lock in `lock`; batch lifecycle calls in `batches`;
//! the dispatcher's side in `dispatch`; result downloads in `download`; API keys in `keys`.

mod batches;
mod claims;
mod db;
mod dispatch;
mod download;
mod keys;
mod lock;
mod rows;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use batchd_domain::keys::KeyHash;
use batchd_domain::{Batch, BatchId, Timestamp};
use batchd_store::{
    Answer, BatchPage, CancelOutcome, Cursor, DeleteOutcome, Draft, Ended, KeyInfo, ListError,
    NewBatch, NewRequest, ResultLines, ResultRow, Retry, Slot, Stats, Store, StoreError, WorkItem,
};

use crate::claims::{Claims, StaleUnlessDone};
use crate::db::Pools;
use crate::download::Downloads;
use crate::lock::DirLock;

pub use crate::lock::DataDirInUse;

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    pools: Pools,
    claims: Mutex<Claims>,
    /// Claim calls run one at a time: each moves cursors based on what it read, and two
    /// interleaved reads of the same cursor would hand out the same requests twice.
    claim_serial: tokio::sync::Mutex<()>,
    /// Connections of their own for result downloads (see [`download`]).
    downloads: Arc<Downloads>,
    /// `None` for an admin store.
    _lock: Option<DirLock>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("locked", &self._lock.is_some())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store for a server: creates `data_dir` if needed, takes its lock (failing with
    /// [`DataDirInUse`] if another process holds it), migrates the schema, and marks drafts left
    /// by a previous process as deleted so the purge reclaims them.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        // Before touching the database: a second server must not mark the first one's live
        // drafts as abandoned.
        let lock = DirLock::acquire(data_dir)?;
        let store = Self::open_unlocked(data_dir, Some(lock)).await?;
        store.abandon_drafts().await?;
        Ok(store)
    }

    /// Opens the store for the `keys` commands, without the data-dir lock, so they work while a
    /// server runs. Only the key methods may be used on it: without the lock, leases and drafts
    /// are not this process's to manage.
    pub async fn open_for_admin(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Self::open_unlocked(data_dir, None).await
    }

    async fn open_unlocked(data_dir: &Path, lock: Option<DirLock>) -> Result<Self, StoreError> {
        let pools = Pools::open(data_dir).await?;
        pools.migrate().await?;
        Ok(Self {
            pools,
            claims: Mutex::new(Claims::new()),
            claim_serial: tokio::sync::Mutex::new(()),
            downloads: Arc::new(Downloads::new(data_dir)),
            _lock: lock,
        })
    }

    /// Closes every connection. Dropping the store also closes them, but asynchronously; call
    /// this at shutdown to know the database is closed (and the WAL checkpointed) on return.
    pub async fn close(&self) {
        self.downloads.close().await;
        self.pools.close().await;
    }

    /// Never held across an `.await`.
    fn claims(&self) -> MutexGuard<'_, Claims> {
        claims::lock(&self.claims)
    }

    fn stale_unless_done(&self) -> StaleUnlessDone<'_> {
        StaleUnlessDone::new(&self.claims)
    }
}

#[async_trait]
impl Store for SqliteStore {
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

    async fn results_lines(
        &self,
        batch_key: i64,
        after: Option<u32>,
        limit: u32,
        leftover: Option<&str>,
    ) -> Result<Option<ResultLines>, StoreError> {
        self.results_lines_impl(batch_key, after, limit, leftover)
            .await
    }

    /// `lease` is unused: leases here last as long as the process, which holds the data-dir
    /// lock, so no other process can take over a request while this one is alive.
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

    async fn defer(&self, retries: &[Retry], _now: Timestamp) -> Result<(), StoreError> {
        self.defer_impl(retries).await
    }

    async fn canceling(&self) -> Result<Vec<i64>, StoreError> {
        self.canceling_impl().await
    }

    async fn record(&self, answers: &[Answer], now: Timestamp) -> Result<Ended, StoreError> {
        self.record_impl(answers, now).await
    }

    async fn finish_due(&self, now: Timestamp) -> Result<Ended, StoreError> {
        self.finish_due_impl(now).await
    }

    async fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        self.next_expiry_impl().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ping_impl().await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.stats_impl().await
    }

    async fn archive_due(&self, cutoff: Timestamp, now: Timestamp) -> Result<u64, StoreError> {
        self.archive_due_impl(cutoff, now).await
    }

    async fn purge_deleted(&self, limit: u32) -> Result<u64, StoreError> {
        self.purge_deleted_impl(limit).await
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
