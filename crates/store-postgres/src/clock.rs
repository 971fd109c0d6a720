//! Test mode's side of the store: [`ClockStore`] for PostgreSQL. A workspace's clock is a row
//! of `clocks`; the statements of `maintenance`, `record` and `claim` apply it. A reset removes
//! a workspace's batches and files the way a delete does, in one transaction.

use async_trait::async_trait;
use batchd_domain::{EndReason, Timestamp};
use batchd_store::clock::{self, Reset};
use batchd_store::{ClockStore, StoreError};

use crate::PostgresStore;
use crate::db::query_error;
use crate::rows::{ENDED, end_reason_code};

const OFFSET: &str = "SELECT offset_micros FROM clocks WHERE workspace = $1";

/// Creates the workspace's clock row if missing and locks it, so advances of one workspace
/// from any process apply one after the other.
const LOCK_CLOCK: &str = "INSERT INTO clocks (workspace, offset_micros) VALUES ($1, 0) \
     ON CONFLICT (workspace) DO UPDATE SET offset_micros = clocks.offset_micros \
     RETURNING offset_micros";

const SET_OFFSET: &str = "UPDATE clocks SET offset_micros = $2 WHERE workspace = $1";

/// Every committed batch of the workspace disappears as a delete makes it disappear; an unended
/// one is ended canceled first (on the workspace's clock), so that no process claims it or
/// records a late answer for it again.
const RESET_BATCHES: &str = concat!(
    "UPDATE batches SET deleted = true, state = $2, end_reason = COALESCE(end_reason, $3), ",
    "ended_at = COALESCE(ended_at, $4 + ",
    batch_clock_offset!("batches"),
    ") WHERE workspace = $1 AND NOT deleted AND state <> 0 RETURNING key"
);

/// Visible files become deleted (state 2), their chunks reclaimed by the purge.
const RESET_FILES: &str = "UPDATE files SET state = 2 WHERE workspace = $1 AND state = 1";
/// Batches being created and files being uploaded are abandoned: their next piece or their
/// commit fails (`StoreError::DraftGone`), so nothing begun before the reset appears after it.
const RESET_DRAFTS: &str =
    "UPDATE batches SET deleted = true WHERE workspace = $1 AND state = 0 AND NOT deleted";
const RESET_FILE_DRAFTS: &str = "UPDATE files SET state = 2 WHERE workspace = $1 AND state = 0";
/// Where the workspace's deleted files stood: a reset workspace has no list to page through.
const RESET_TOMBSTONES: &str = "DELETE FROM file_tombstones WHERE workspace = $1";

const RESET_CLOCK: &str = "DELETE FROM clocks WHERE workspace = $1";

#[async_trait]
impl ClockStore for PostgresStore {
    async fn clock_offset(&self, workspace: &str) -> Result<i64, StoreError> {
        let offset: Option<i64> = sqlx::query_scalar(OFFSET)
            .bind(workspace)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(offset.unwrap_or(0))
    }

    async fn advance_clock(&self, workspace: &str, by: i64) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        let current: i64 = sqlx::query_scalar(LOCK_CLOCK)
            .bind(workspace)
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error)?;
        let offset = clock::advanced(current, by)?;
        sqlx::query(SET_OFFSET)
            .bind(workspace)
            .bind(offset)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(offset)
    }

    async fn reset_workspace(&self, workspace: &str, now: Timestamp) -> Result<Reset, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        let batch_keys: Vec<i64> = sqlx::query_scalar(RESET_BATCHES)
            .bind(workspace)
            .bind(ENDED)
            .bind(end_reason_code(EndReason::Canceled))
            .bind(now.as_micros())
            .fetch_all(&mut *tx)
            .await
            .map_err(query_error)?;
        for drafts in [RESET_DRAFTS, RESET_FILE_DRAFTS] {
            sqlx::query(drafts)
                .bind(workspace)
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
        }
        let files = sqlx::query(RESET_FILES)
            .bind(workspace)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?
            .rows_affected();
        sqlx::query(RESET_TOMBSTONES)
            .bind(workspace)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        sqlx::query(RESET_CLOCK)
            .bind(workspace)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(Reset { batch_keys, files })
    }
}
