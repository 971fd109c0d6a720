//! The PostgreSQL storage engine of batchd: [`PostgresStore`] implements [`batchd_store::Store`]
//! on one database shared by any number of batchd processes. This module holds the store itself,
//! opening and closing it; each of the store's traits is implemented in the module named for it.
//!
//! # Many processes, one database
//!
//! Every process registers a row in `workers` and beats on it (see `liveness`). Work is a queue
//! table, `pending`, with one small row per request that has no result yet:
//!
//! * **Claim** (`claim`): batches are served in round-robin order of a per-batch stamp
//!   (`serving.last_served`, from a sequence, so the rotation is cluster-wide), first batches of
//!   every workspace, then second ones, and so on. A claim pass is one statement (in a transaction of
//!   its own, planned generically: `db::begin_claim`) for all the batches it serves: it locks their rows FOR KEY SHARE
//!   (so a cancel, which locks FOR UPDATE, cannot slip in between the state check and the claim,
//!   while record groups updating the tallies do not wait for claims nor claims for them), picks
//!   free rows with `FOR UPDATE SKIP LOCKED` (so processes never wait for or collide with each
//!   other), sets `worker` to this process and stamps the batches served. No transaction is held
//!   across anything but the database.
//! * **A claim dies with its process**: claims have no expiry time; the reaper of any live
//!   process frees the claims of a process whose heartbeat is stale.
//! * **Record** (`record`) is a group commit: a handful of statements per group whatever its size, with
//!   arrays bound through `UNNEST`, planned generically like a claim. Results are inserted `ON CONFLICT DO NOTHING` and the tallies
//!   grow only by the rows really inserted, in the same transaction that ends a completed batch:
//!   at most one result per request, even if a reaped claim was answered twice.
//! * **Cancel** is O(1) as in SQLite; [`DispatchStore::canceling`] lets every process stop
//!   sending the requests of a batch canceled through another one.
//!
//! # Durability
//!
//! Every commit that a client can observe is durable (PostgreSQL's default
//! `synchronous_commit = on`): creates, cancels, deletes, keys, record groups, file commits and
//! deletes, finalizing. Claims alone commit
//! with `synchronous_commit = off` (see `claim::CLAIM_ALL`): a claim lost with a PostgreSQL
//! crash only makes its requests claimable again, and the results table's primary key keeps one
//! result per request whoever answers. WAL is flushed in order, so the next durable commit (a
//! record group) makes every earlier claim durable too.
//!
//! # Layout
//!
//! Schema in `migrations/` (embedded by `build.rs`; large values compressed with lz4, see
//! `0014_lz4_bodies.sql`); connections, errors and the hot transactions' generic plans in `db`; row
//! encodings in `rows`; process liveness in `liveness`; batches as the API sees them
//! (`BatchStore`) in `batches`; the dispatcher's side (`DispatchStore`) in `dispatch`, whose
//! steps live in `claim`, `record` and `maintenance`; API keys (`KeyStore`) in `keys`; the
//! OpenAI surface's files (`FileStore`) in `file_store`, their drafts owned by the process
//! writing them and abandoned with it like batch drafts; test mode's clocks and resets
//! (`ClockStore`) in `clock`, whose offset the time comparisons of `maintenance` and `record`
//! apply.

/// SQL for the clock offset of the workspace of the batch row `$b` (0 without a clock): what
/// turns a real time into that batch's workspace's time. A primary-key probe of a table that is
/// empty unless test mode moved a clock.
macro_rules! batch_clock_offset {
    ($b:literal) => {
        concat!(
            "COALESCE((SELECT c.offset_micros FROM clocks c WHERE c.workspace = ",
            $b,
            ".workspace), 0)"
        )
    };
}

/// SQL for the `ended_at` a statement writes, given the SQL of the moment it ends at (`now`) and
/// the alias of `batches`: that moment on the batch's workspace's clock, and never before the
/// batch's `cancel_initiated_at` — a cancel may land between the moment a caller took `now`
/// and its statement. NULL stays NULL (`GREATEST` alone would turn it into the cancel time).
macro_rules! ended_at {
    ($now:literal, $b:literal) => {
        concat!(
            "(",
            $now,
            " + ",
            batch_clock_offset!($b),
            ") + GREATEST(0, ",
            $b,
            ".cancel_initiated_at - (",
            $now,
            " + ",
            batch_clock_offset!($b),
            "))"
        )
    };
}

/// SQL for the largest clock offset of any workspace: constant within a statement, so a
/// comparison with it keeps using the index, which [`batch_clock_offset`] then refines.
macro_rules! max_clock_offset {
    () => {
        "(SELECT COALESCE(MAX(offset_micros), 0) FROM clocks)"
    };
}

mod batches;
mod claim;
mod clock;
mod db;
mod dispatch;
mod file_store;
mod keys;
mod liveness;
mod maintenance;
mod record;
mod rows;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
mod webhooks;

#[cfg(test)]
mod explain;
#[cfg(test)]
mod tests;

#[cfg(doc)]
use batchd_store::DispatchStore;
use batchd_store::StoreError;
use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::db::{misuse, query_error};

/// The PostgreSQL implementation of [`batchd_store::Store`].
pub struct PostgresStore {
    pool: PgPool,
    /// This process's row in `workers`; `None` for an admin store, which claims nothing.
    worker: Option<i64>,
    heartbeat: Option<JoinHandle<()>>,
    /// Input-file pieces the claim read lately.
    pieces: batchd_store::files::PieceCache,
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
        let worker = liveness::register(&pool).await?;
        // Reap at once too: a process restarted after a crash should not wait a heartbeat for
        // its own orphaned claims to be freed by someone else.
        liveness::reap(&pool, liveness::DEAD_AFTER).await?;
        let heartbeat = tokio::spawn(liveness::heartbeat_loop(pool.clone(), worker));
        Ok(Self {
            pool,
            worker: Some(worker),
            heartbeat: Some(heartbeat),
            pieces: Default::default(),
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
            pieces: Default::default(),
        })
    }

    /// Leaves the cluster cleanly: frees this process's claims and abandons its drafts at once
    /// (instead of after `liveness::DEAD_AFTER`), then closes every connection.
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
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        liveness::forget(&mut tx, &[me]).await?;
        sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(me)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        tx.commit().await.map_err(query_error)
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
