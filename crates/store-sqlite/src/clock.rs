//! Test mode's side of the store: [`ClockStore`] for SQLite. A workspace's clock is a row of
//! `clocks`; the statements of `maintenance`, `record` and `ending` apply it. A reset removes a
//! workspace's batches and files the way a delete does, in one transaction.

use async_trait::async_trait;
use batchd_domain::{EndReason, Timestamp};
use batchd_store::clock::{self, Reset};
use batchd_store::{ClockStore, StoreError};
use sqlx::Connection as _;

use crate::SqliteStore;
use crate::db::{BEGIN_IMMEDIATE, Durability, query_error};
use crate::rows::ENDED;

const OFFSET: &str = "SELECT offset_micros FROM clocks WHERE workspace = ?1";

const SET_OFFSET: &str = "INSERT INTO clocks (workspace, offset_micros) VALUES (?1, ?2) \
     ON CONFLICT (workspace) DO UPDATE SET offset_micros = excluded.offset_micros";

/// Every committed batch of the workspace disappears as a delete makes it disappear; an unended
/// one is ended canceled first (on the workspace's clock), so that no claim or late answer
/// touches it again.
const RESET_BATCHES: &str = concat!(
    "UPDATE batches SET deleted = 1, state = ?2, end_reason = COALESCE(end_reason, ?3), ",
    "ended_at = COALESCE(ended_at, ?4 + ",
    batch_clock_offset!(),
    ") WHERE workspace = ?1 AND deleted = 0 AND state <> 0 RETURNING key"
);

/// Visible files become deleted (state 2), their chunks reclaimed by the purge.
const RESET_FILES: &str = "UPDATE files SET state = 2 WHERE workspace = ?1 AND state = 1";
/// Batches being created and files being uploaded are abandoned: their next piece or their
/// commit fails (`StoreError::DraftGone`), so nothing begun before the reset appears after it.
const RESET_DRAFTS: &str =
    "UPDATE batches SET deleted = 1 WHERE workspace = ?1 AND state = 0 AND deleted = 0";
const RESET_FILE_DRAFTS: &str = "UPDATE files SET state = 2 WHERE workspace = ?1 AND state = 0";
/// Where the workspace's deleted files stood: a reset workspace has no list to page through.
const RESET_TOMBSTONES: &str = "DELETE FROM file_tombstones WHERE workspace = ?1";

const RESET_CLOCK: &str = "DELETE FROM clocks WHERE workspace = ?1";

#[async_trait]
impl ClockStore for SqliteStore {
    async fn clock_offset(&self, workspace: &str) -> Result<i64, StoreError> {
        let offset: Option<i64> = sqlx::query_scalar(OFFSET)
            .bind(workspace)
            .fetch_optional(&self.pools.reader)
            .await
            .map_err(query_error)?;
        Ok(offset.unwrap_or(0))
    }

    async fn advance_clock(&self, workspace: &str, by: i64) -> Result<i64, StoreError> {
        // FULL: the API has answered with the new time once this returns.
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let current: Option<i64> = sqlx::query_scalar(OFFSET)
            .bind(workspace)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?;
        let offset = clock::advanced(current.unwrap_or(0), by)?;
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
        let stale = self.stale_unless_done();
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let keys: Vec<i64> = sqlx::query_scalar(RESET_BATCHES)
            .bind(workspace)
            .bind(ENDED)
            .bind(EndReason::Canceled.code())
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
        // Their claims go: answers still in flight are dropped on record, as for a deleted batch.
        self.claims().ended(keys.iter().copied());
        stale.done();
        Ok(Reset {
            batch_keys: keys,
            files,
        })
    }
}
