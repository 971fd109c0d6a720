//! Maintenance: ending batches that are due (expired, or canceling with nothing claimed),
//! retention, and reclaiming the rows of deleted, aborted and archived batches in short steps.

use batchd_domain::{EndReason, Timestamp};
use batchd_store::StoreError;
use batchd_store::purge::{self, Budget, Target};
use sqlx::Connection as _;

use crate::SqliteStore;
use crate::db::{BEGIN_IMMEDIATE, Durability, query_error};
use crate::ending::{EndedBatch, end_batch};
use crate::rows::{CANCELING, ENDED, IN_PROGRESS, get, parse_id, rid_range};

/// The next expiry in real time: the earliest `expires_at`, and for each workspace with a clock
/// the earliest of its own moved back by its offset (earlier than its real-time value, which the
/// first part counts too).
pub(crate) const NEXT_EXPIRY: &str = "SELECT MIN(t) FROM (\
     SELECT MIN(expires_at) AS t FROM batches WHERE state IN (?1, ?2) \
     UNION ALL SELECT (SELECT MIN(b.expires_at) FROM batches b \
         WHERE b.workspace = clocks.workspace AND b.state IN (?1, ?2)) - clocks.offset_micros \
         FROM clocks)";

/// Batches past `expires_at` on their workspace's clock end expired, at that clock's time.
pub(crate) const EXPIRE_DUE: &str = concat!(
    "UPDATE batches SET state = ?1, end_reason = ?2, ended_at = ",
    ended_at!("?3"),
    " WHERE state IN (?4, ?5) AND expires_at <= ?3 + ",
    max_clock_offset!(),
    " AND expires_at <= ?3 + ",
    batch_clock_offset!(),
    " RETURNING key, id"
);

pub(crate) const CANCELING_BATCHES: &str = "SELECT key, id FROM batches WHERE state = ?1";

pub(crate) const CANCELING_KEYS: &str = "SELECT key FROM batches WHERE state = ?1";

pub(crate) const OLDEST_DELETED: &str =
    "SELECT key FROM batches WHERE deleted = 1 ORDER BY key LIMIT 1";

/// Archived batches whose rows are still there (they stay visible; only their rows go).
pub(crate) const OLDEST_ARCHIVED: &str = "SELECT key FROM batches \
     WHERE archived_at IS NOT NULL AND rows_reclaimed = 0 ORDER BY key LIMIT 1";

/// Ended batches created at or before the cutoff become archived; the cutoff and `archived_at`
/// are on the batch's workspace's clock.
pub(crate) const ARCHIVE_DUE: &str = concat!(
    "UPDATE batches SET archived_at = ?1 + ",
    batch_clock_offset!(),
    " WHERE archived_at IS NULL AND deleted = 0 AND created_at <= ?2 + ",
    max_clock_offset!(),
    " AND created_at <= ?2 + ",
    batch_clock_offset!(),
    // An OpenAI batch is archived only once its files are written: archiving first would
    // hide it from the finalizer and purge the results its files are made from.
    " AND state = ?3 AND (endpoint = 0 OR finalized_at IS NOT NULL)"
);

pub(crate) const PURGE_REQUESTS: &str = "DELETE FROM requests WHERE rid IN \
     (SELECT rid FROM requests WHERE rid >= ?1 AND rid < ?2 ORDER BY rid LIMIT ?3)";

pub(crate) const PURGE_RESULTS: &str = "DELETE FROM results WHERE rid IN \
     (SELECT rid FROM results WHERE rid >= ?1 AND rid < ?2 ORDER BY rid LIMIT ?3)";

pub(crate) const PURGE_ATTEMPTS: &str = "DELETE FROM attempts WHERE rid IN \
     (SELECT rid FROM attempts WHERE rid >= ?1 AND rid < ?2 ORDER BY rid LIMIT ?3)";

/// The oldest file whose chunks wait to be reclaimed (deleted, aborted or expired), but for
/// one a batch not yet finalized still reads its request bodies from (a deleted batch, or a
/// workspace's reset one, reads nothing more).
pub(crate) const OLDEST_DELETED_FILE: &str = "SELECT key FROM files f WHERE state = 2 \
     AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.input_file_key = f.key \
         AND b.finalized_at IS NULL AND b.deleted = 0) ORDER BY key LIMIT 1";

pub(crate) const PURGE_CHUNKS: &str = "DELETE FROM file_chunks WHERE file_key = ?1 AND seq IN \
     (SELECT seq FROM file_chunks WHERE file_key = ?1 ORDER BY seq LIMIT ?2)";

impl SqliteStore {
    pub(crate) async fn finish_due_tx(
        &self,
        now: Timestamp,
    ) -> Result<Vec<EndedBatch>, StoreError> {
        // FULL for the reason given at `may_end_a_batch`; a pass that changes nothing writes
        // no WAL frame and so costs no fsync.
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let expired = sqlx::query(EXPIRE_DUE)
            .bind(ENDED)
            .bind(EndReason::Expired.code())
            .bind(now.as_micros())
            .bind(IN_PROGRESS)
            .bind(CANCELING)
            .fetch_all(&mut *tx)
            .await
            .map_err(query_error)?;
        let mut ended = Vec::new();
        for row in &expired {
            ended.push((
                get(row, "key")?,
                parse_id(get(row, "id")?)?,
                EndReason::Expired,
            ));
        }
        let canceling = sqlx::query(CANCELING_BATCHES)
            .bind(CANCELING)
            .fetch_all(&mut *tx)
            .await
            .map_err(query_error)?;
        // Read inside the write transaction: no cancel can commit meanwhile, and claims of a
        // canceling batch only ever shrink, so "no claims" stays true until the commit.
        let mut idle = Vec::new();
        for row in &canceling {
            let key: i64 = get(row, "key")?;
            if !self.claims().has_claims(key) {
                idle.push((key, parse_id(get(row, "id")?)?));
            }
        }
        for (key, id) in idle {
            end_batch(&mut tx, key, EndReason::Canceled, now).await?;
            ended.push((key, id, EndReason::Canceled));
        }
        tx.commit().await.map_err(query_error)?;
        Ok(ended)
    }

    /// Removes up to `step` request and result rows of the oldest deleted batch (or, when none
    /// is left, of the oldest archived one), then its batch row once nothing else of it is left
    /// (an archived batch keeps its row and is only marked reclaimed). One short transaction.
    pub(crate) async fn purge_step(&self, step: u64) -> Result<u64, StoreError> {
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let mut found = None;
        for target in Target::ORDER {
            let oldest = match target {
                Target::Deleted => OLDEST_DELETED,
                Target::Archived => OLDEST_ARCHIVED,
            };
            let key: Option<i64> = sqlx::query_scalar(oldest)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_error)?;
            if let Some(key) = key {
                found = Some((key, target));
                break;
            }
        }
        let Some((key, target)) = found else {
            return Ok(0);
        };
        let (lo, hi) = rid_range(key);
        let mut budget = Budget::new(step);
        for table in [PURGE_REQUESTS, PURGE_RESULTS, PURGE_ATTEMPTS] {
            if let Some(max) = budget.left() {
                budget.spend(
                    sqlx::query(table)
                        .bind(lo)
                        .bind(hi)
                        .bind(max as i64)
                        .execute(&mut *tx)
                        .await
                        .map_err(query_error)?
                        .rows_affected(),
                );
            }
        }
        if budget.tables_emptied() {
            // Both ranges are empty now, the batch row goes last.
            let last = match target {
                Target::Deleted => "DELETE FROM batches WHERE key = ?1",
                Target::Archived => "UPDATE batches SET rows_reclaimed = 1 WHERE key = ?1",
            };
            budget.spend(
                sqlx::query(last)
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error)?
                    .rows_affected(),
            );
        }
        tx.commit().await.map_err(query_error)?;
        Ok(budget.removed())
    }

    /// Removes up to `step` chunks (fewer: see [`purge::CHUNKS_PER_STEP`]) of the oldest
    /// deleted file, then its file row once it has none left. One short transaction.
    pub(crate) async fn purge_file_step(&self, step: u64) -> Result<u64, StoreError> {
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let key: Option<i64> = sqlx::query_scalar(OLDEST_DELETED_FILE)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?;
        let Some(key) = key else {
            return Ok(0);
        };
        let mut budget = Budget::new(step.min(purge::CHUNKS_PER_STEP));
        budget.spend(
            sqlx::query(PURGE_CHUNKS)
                .bind(key)
                .bind(budget.left().unwrap_or(0) as i64)
                .execute(&mut *tx)
                .await
                .map_err(query_error)?
                .rows_affected(),
        );
        if budget.tables_emptied() {
            budget.spend(
                sqlx::query("DELETE FROM files WHERE key = ?1")
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error)?
                    .rows_affected(),
            );
        }
        tx.commit().await.map_err(query_error)?;
        Ok(budget.removed())
    }
}
