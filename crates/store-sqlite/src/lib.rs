//! The SQLite storage engine of batchd: [`SqliteStore`] implements [`batchd_store::Store`] on one
//! database file, `DATA_DIR/batchd.sqlite3`. This module holds the store itself, opening and
//! closing it; each of the store's traits is implemented in the module named for it.
//!
//! # Concurrency
//!
//! SQLite allows one writer at a time, so the store has exactly one write connection (a pool of
//! one: writers queue for it instead of failing with `SQLITE_BUSY`) and every write transaction
//! starts with `BEGIN IMMEDIATE`, taking the write lock before it reads. The dispatcher's record
//! groups and retries are the writes stepped elsewhere: on a rusqlite connection of their own, by a
//! blocking task that writes a whole group at once, while its caller holds the writer pool's
//! connection, so they queue with every other write (`group_writer`). Reads (get, list) use a
//! separate pool of read-only connections and, thanks to WAL, never wait for the writer; claim
//! scans and downloads (result pages, pieces of stored files) have connections of their own,
//! stepped by blocking tasks (`claim_reader`, `download`).
//! Transactions are short: none spans an `.await` on anything but the database, and bulk work
//! (creates, purges) is split into chunks, each its own transaction.
//!
//! A server takes an exclusive lock on `DATA_DIR/batchd.lock` for its lifetime
//! ([`SqliteStore::open`]), which is what allows leases to live in memory (see `leases`). The
//! `keys` commands use [`SqliteStore::open_for_admin`], which skips the lock: they only touch
//! `api_keys`, so they can run beside a live server.
//!
//! # Durability
//!
//! The writer switches `PRAGMA synchronous` per transaction (it cannot change inside one):
//!
//! * `FULL` (the WAL is fsynced at commit) for what the API promises once it has answered:
//!   [`BatchStore::commit_batch`], [`BatchStore::cancel_batch`], [`BatchStore::delete_batch`],
//!   [`KeyStore::create_key`], [`KeyStore::create_first_key`], [`KeyStore::revoke_key`],
//!   [`BatchStore::insert_failed_batch`], [`FileStore::commit_file`], [`FileStore::delete_file`],
//!   [`DispatchStore::finalize`], [`ClockStore::advance_clock`], [`ClockStore::reset_workspace`];
//!   and for
//!   every transaction that ends a batch (the [`DispatchStore::record`] group that completes or
//!   finishes canceling it, [`DispatchStore::finish_due`], a [`DispatchStore::release`] that
//!   drains a canceling batch), so that a batch seen ended, its results perhaps downloaded, never
//!   comes back unended with fewer results after an OS crash.
//! * `NORMAL` (no fsync at commit) for the bulk: draft chunks, the other record groups, purges.
//!   File pieces and expiries are `NORMAL` too. In WAL mode a `NORMAL` commit survives a
//!   process kill; only an OS crash or power loss can lose it, and only until the next `FULL`
//!   commit or a checkpoint that copies frames, which syncs every earlier frame too. What that
//!   can lose is recoverable: draft chunks belong to a create or upload that never returned (a commit's
//!   `FULL` fsync makes its pieces durable with it), a result of an unended batch is simply
//!   requested again, and an expiry is done again by the next pass.
//!
//! A `FULL` transaction that writes nothing (a maintenance pass with nothing due) costs no fsync.
//!
//! # Layout
//!
//! Schema in `migrations/` (embedded by `build.rs`); connections in `db`, the background WAL
//! checkpointer in `checkpoint`, the connection of record groups and retries in `group_writer`; row
//! encodings in `rows`; leases in `leases`; the data-dir lock in `lock`; file permissions in
//! `files`; batches as the API sees them (`BatchStore`) in `batches`, with result downloads in
//! `download`; the dispatcher's side (`DispatchStore`) in `dispatch`, whose steps live in `claim`
//! (reading on the connection of `claim_reader`), `record` and `maintenance` (the last two end
//! batches through `ending`); API keys (`KeyStore`) in `keys`; the OpenAI surface's files
//! (`FileStore`) in `file_store`; test mode's clocks and resets (`ClockStore`) in `clock`, whose
//! offset every time comparison of `maintenance` and `record` applies.

/// SQL for the clock offset of the workspace of the `batches` row in scope (0 without a clock):
/// what turns a real time into that batch's workspace's time. A primary-key probe of a table
/// that is empty unless test mode moved a clock.
macro_rules! batch_clock_offset {
    () => {
        "COALESCE((SELECT c.offset_micros FROM clocks c WHERE c.workspace = batches.workspace), 0)"
    };
}

/// SQL for the `ended_at` a statement writes, given the SQL of the moment it ends at (`now`, a
/// parameter): that moment on the batch's workspace's clock, and never before the batch's
/// `cancel_initiated_at` — a cancel may land between the moment a caller took `now` and its
/// statement. NULL stays NULL (SQLite's `MAX` of a NULL is NULL).
macro_rules! ended_at {
    ($now:literal) => {
        concat!(
            "MAX(",
            $now,
            " + ",
            batch_clock_offset!(),
            ", COALESCE(cancel_initiated_at, 0))"
        )
    };
}

/// SQL for the largest clock offset of any workspace: a bound that is constant in a statement,
/// so a comparison with it keeps using the index, which [`batch_clock_offset`] then refines.
macro_rules! max_clock_offset {
    () => {
        "(SELECT COALESCE(MAX(offset_micros), 0) FROM clocks)"
    };
}

mod batches;
mod checkpoint;
mod claim;
mod claim_reader;
mod clock;
mod db;
mod dispatch;
mod download;
mod ending;
mod file_store;
mod files;
mod group_writer;
mod keys;
mod leases;
mod lock;
mod maintenance;
mod one_connection;
mod record;
mod rows;
mod webhooks;

#[cfg(test)]
mod tests;

use batchd_store::StoreError;
#[cfg(doc)]
use batchd_store::{BatchStore, ClockStore, DispatchStore, FileStore, KeyStore};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::claim_reader::ClaimReader;
use crate::db::Pools;
use crate::download::Downloads;
use crate::group_writer::GroupWriter;
use crate::leases::{Claims, StaleUnlessDone};
use crate::lock::DirLock;

pub use crate::files::loose_permissions;
pub use crate::lock::DataDirInUse;

/// The SQLite implementation of [`batchd_store::Store`].
pub struct SqliteStore {
    pools: Pools,
    /// Shared with the group writer's blocking tasks (see [`group_writer`]).
    claims: Arc<Mutex<Claims>>,
    /// Claim calls run one at a time: each moves cursors based on what it read, and two
    /// interleaved reads of the same cursor would hand out the same requests twice.
    claim_serial: tokio::sync::Mutex<()>,
    /// The connection claims read request rows on (see [`claim_reader`]).
    claim_reader: Arc<ClaimReader>,
    /// Input-file pieces the claim read lately.
    pieces: batchd_store::files::PieceCache,
    /// Connections of their own for result pages and file pieces (see [`download`]).
    downloads: Arc<Downloads>,
    /// The connection record groups are written on (see [`group_writer`]).
    group_writer: Arc<GroupWriter>,
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
        files::create_dir(data_dir).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
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
        files::create_dir(data_dir).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Self::open_unlocked(data_dir, None).await
    }

    async fn open_unlocked(data_dir: &Path, lock: Option<DirLock>) -> Result<Self, StoreError> {
        // A server's store checkpoints in the background; the `keys` commands' short-lived one
        // leaves it to SQLite.
        let pools = Pools::open(data_dir, lock.is_some()).await?;
        pools.migrate().await?;
        Ok(Self {
            pools,
            claims: Arc::new(Mutex::new(Claims::new())),
            claim_serial: tokio::sync::Mutex::new(()),
            claim_reader: Arc::new(ClaimReader::new(data_dir)),
            pieces: Default::default(),
            downloads: Arc::new(Downloads::new(data_dir)),
            group_writer: Arc::new(GroupWriter::new(data_dir, lock.is_some())),
            _lock: lock,
        })
    }

    /// Closes every connection. Dropping the store also closes them, but asynchronously; call
    /// this at shutdown to know the database is closed (and the WAL checkpointed) on return.
    pub async fn close(&self) {
        self.downloads.close().await;
        self.claim_reader.close().await;
        self.group_writer.close().await;
        // The writer closes last: the last connection to close checkpoints the WAL.
        self.pools.close().await;
    }

    /// Never held across an `.await`.
    fn claims(&self) -> MutexGuard<'_, Claims> {
        leases::lock(&self.claims)
    }

    fn stale_unless_done(&self) -> StaleUnlessDone<'_> {
        StaleUnlessDone::new(&self.claims)
    }
}
