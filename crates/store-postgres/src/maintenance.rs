//! Maintenance: ending batches that are due (expired, or canceling with nothing claimed by any
//! process), retention, and reclaiming the rows of deleted, aborted and archived batches in
//! short steps.

use batchd_domain::{BatchId, EndReason};
use batchd_store::StoreError;
use batchd_store::purge::{self, Budget, Target};
use sqlx::postgres::PgRow;

use crate::PostgresStore;
use crate::db::query_error;
use crate::rows::{get, parse_id};

/// Batches past `expires_at` on their workspace's clock end expired, at that clock's time.
pub(crate) const EXPIRE_DUE: &str = concat!(
    "UPDATE batches SET state = $1, end_reason = $2, ended_at = ",
    ended_at!("$3", "batches"),
    " WHERE state IN (1, 2) AND expires_at <= $3 + ",
    max_clock_offset!(),
    " AND expires_at <= $3 + ",
    batch_clock_offset!("batches"),
    " RETURNING key, id"
);

pub(crate) const CANCELING_KEYS: &str = "SELECT key FROM batches WHERE state = 2";

/// The next expiry in real time: the earliest `expires_at`, and for each workspace with a clock
/// the earliest of its own moved back by its offset (earlier than its real-time value, which the
/// first part counts too).
pub(crate) const NEXT_EXPIRY: &str = "SELECT MIN(t) FROM (\
     SELECT MIN(expires_at) AS t FROM batches WHERE state IN (1, 2) \
     UNION ALL SELECT (SELECT MIN(b.expires_at) FROM batches b \
         WHERE b.workspace = clocks.workspace AND b.state IN (1, 2)) - clocks.offset_micros \
         FROM clocks) n";

/// Ended batches created at or before the cutoff become archived; the cutoff and `archived_at`
/// are on the batch's workspace's clock.
pub(crate) const ARCHIVE_DUE: &str = concat!(
    "UPDATE batches SET archived_at = $1 + ",
    batch_clock_offset!("batches"),
    " WHERE archived_at IS NULL AND NOT deleted AND created_at <= $2 + ",
    max_clock_offset!(),
    " AND created_at <= $2 + ",
    batch_clock_offset!("batches"),
    // An OpenAI batch is archived only once its files are written: archiving first would
    // hide it from the finalizer and purge the results its files are made from.
    " AND state = $3 AND (endpoint = 0 OR finalized_at IS NOT NULL)"
);

/// The purge's targets are taken with `FOR UPDATE SKIP LOCKED`: two processes purging the same
/// target at once would each see the other's deletions as "nothing left" and remove the batch
/// or file row while rows of it remain, which nothing would then ever reclaim.
pub(crate) const OLDEST_DELETED: &str =
    "SELECT key FROM batches WHERE deleted ORDER BY key LIMIT 1 FOR UPDATE SKIP LOCKED";

/// Archived batches whose rows are still there (they stay visible; only their rows go).
pub(crate) const OLDEST_ARCHIVED: &str = "SELECT key FROM batches \
     WHERE archived_at IS NOT NULL AND NOT rows_reclaimed ORDER BY key LIMIT 1 FOR UPDATE SKIP LOCKED";

/// One bounded step of reclaiming a batch's rows in each table.
const PURGE: [&str; 3] = [
    "DELETE FROM requests WHERE batch_key = $1 AND idx IN \
     (SELECT idx FROM requests WHERE batch_key = $1 ORDER BY idx LIMIT $2)",
    "DELETE FROM results WHERE batch_key = $1 AND idx IN \
     (SELECT idx FROM results WHERE batch_key = $1 ORDER BY idx LIMIT $2)",
    "DELETE FROM pending WHERE batch_key = $1 AND idx IN \
     (SELECT idx FROM pending WHERE batch_key = $1 ORDER BY idx LIMIT $2)",
];

/// The oldest file whose chunks wait to be reclaimed (deleted, aborted or expired), but for
/// one a batch not yet finalized still reads its request bodies from (a deleted batch, or a
/// workspace's reset one, reads nothing more).
pub(crate) const OLDEST_DELETED_FILE: &str = "SELECT key FROM files f WHERE state = 2 \
     AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.input_file_key = f.key \
         AND b.finalized_at IS NULL AND NOT b.deleted) ORDER BY key LIMIT 1 FOR UPDATE SKIP LOCKED";

pub(crate) const PURGE_CHUNKS: &str = "DELETE FROM file_chunks WHERE file_key = $1 AND seq IN \
     (SELECT seq FROM file_chunks WHERE file_key = $1 ORDER BY seq LIMIT $2)";

pub(crate) fn ended_rows(
    rows: &[PgRow],
    reason: EndReason,
) -> Result<Vec<(BatchId, EndReason)>, StoreError> {
    rows.iter()
        .map(|row| Ok((parse_id(get(row, "id")?)?, reason)))
        .collect()
}

impl PostgresStore {
    /// Removes up to `step` rows of the oldest deleted batch (or, when none is left, of the
    /// oldest archived one), then its batch row once nothing else of it is left (an archived
    /// batch keeps its row and is only marked reclaimed). One short transaction. Processes
    /// purging at once each take a different target (see [`OLDEST_DELETED`]).
    pub(crate) async fn purge_step(&self, step: u64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
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
        let mut budget = Budget::new(step);
        for table in PURGE {
            if let Some(max) = budget.left() {
                budget.spend(
                    sqlx::query(table)
                        .bind(key)
                        .bind(max as i64)
                        .execute(&mut *tx)
                        .await
                        .map_err(query_error)?
                        .rows_affected(),
                );
            }
        }
        if budget.tables_emptied() {
            // Every table is empty for it now, the batch row goes last.
            let last = match target {
                Target::Deleted => "DELETE FROM batches WHERE key = $1",
                Target::Archived => "UPDATE batches SET rows_reclaimed = true WHERE key = $1",
            };
            budget.spend(
                sqlx::query(last)
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error)?
                    .rows_affected(),
            );
            // Its serving stamp (not counted: it is bookkeeping, not the batch's data).
            sqlx::query("DELETE FROM serving WHERE batch_key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
        }
        tx.commit().await.map_err(query_error)?;
        Ok(budget.removed())
    }

    /// Removes up to `step` chunks (fewer: see [`purge::CHUNKS_PER_STEP`]) of the oldest
    /// deleted file, then its file row once it has none left. One short transaction.
    pub(crate) async fn purge_file_step(&self, step: u64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
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
                sqlx::query("DELETE FROM files WHERE key = $1")
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
