//! Batches as the API sees them: the staged create, get, list, cancel, delete and result pages.

use batchd_domain::{Batch, BatchId, Timestamp};
use batchd_store::{
    BatchPage, CancelOutcome, Cursor, DeleteOutcome, Draft, ListError, NewBatch, NewRequest,
    ResultRow, StoreError,
};

use crate::PostgresStore;
use crate::db::{db, misuse, other};
use crate::rows::{
    CANCELING, DRAFT, ENDED, IN_PROGRESS, batch_columns, batch_from_row, get, index,
};

/// Visible = committed and not deleted. Written exactly as in the `batches_list` index's WHERE
/// clause so the planner can use that partial index.
macro_rules! visible {
    () => {
        "NOT deleted AND state <> 0"
    };
}

pub(crate) const GET: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE id = $1 AND workspace = $2 AND ",
    visible!()
);

pub(crate) const LIST_START: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE workspace = $1 AND ",
    visible!(),
    " ORDER BY created_at DESC, key DESC LIMIT $2"
);

pub(crate) const LIST_OLDER: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE workspace = $1 AND ",
    visible!(),
    " AND (created_at, key) < ($2, $3) ORDER BY created_at DESC, key DESC LIMIT $4"
);

pub(crate) const LIST_NEWER: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE workspace = $1 AND ",
    visible!(),
    " AND (created_at, key) > ($2, $3) ORDER BY created_at ASC, key ASC LIMIT $4"
);

pub(crate) const CURSOR: &str = concat!(
    "SELECT created_at, key FROM batches WHERE id = $1 AND workspace = $2 AND ",
    visible!()
);

/// Appends a chunk in one statement: the request rows and their queue rows, only while the
/// batch is an open draft (locked against a concurrent abandonment by the reaper).
const APPEND: &str = "WITH b AS (SELECT key FROM batches \
         WHERE key = $1 AND state = 0 AND NOT deleted FOR SHARE), \
     r AS (INSERT INTO requests (batch_key, idx, custom_id, params) \
         SELECT b.key, u.idx, u.custom_id, u.params FROM b, \
         UNNEST($2::int[], $3::text[], $4::text[]) AS u(idx, custom_id, params) \
         RETURNING batch_key, idx) \
     INSERT INTO pending (batch_key, idx) SELECT batch_key, idx FROM r";

pub(crate) const RESULTS_PAGE: &str = "SELECT r.idx, r.custom_id, s.body FROM requests r \
     LEFT JOIN results s ON s.batch_key = r.batch_key AND s.idx = r.idx \
     WHERE r.batch_key = $1 AND r.idx > $2 ORDER BY r.idx LIMIT $3";

impl PostgresStore {
    pub(crate) async fn begin_batch_impl(&self, batch: NewBatch) -> Result<Draft, StoreError> {
        let betas = serde_json::to_string(&batch.betas).map_err(other)?;
        let key: i64 = sqlx::query_scalar(
            "INSERT INTO batches (id, workspace, state, created_at, expires_at, betas, owner) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING key",
        )
        .bind(batch.id.as_str())
        .bind(&batch.workspace)
        .bind(DRAFT)
        .bind(batch.created_at.as_micros())
        .bind(batch.expires_at.as_micros())
        .bind(betas)
        .bind(self.me()?)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(Draft { key, batch })
    }

    pub(crate) async fn append_requests_impl(
        &self,
        draft: &Draft,
        requests: Vec<NewRequest>,
    ) -> Result<(), StoreError> {
        if requests.is_empty() {
            return Ok(());
        }
        let n = requests.len() as u64;
        let mut indices = Vec::with_capacity(requests.len());
        let mut custom_ids = Vec::with_capacity(requests.len());
        let mut params = Vec::with_capacity(requests.len());
        for request in requests {
            indices.push(
                i32::try_from(request.index)
                    .map_err(|_| misuse(format!("request index {} too large", request.index)))?,
            );
            custom_ids.push(request.custom_id.into_string());
            params.push(request.params);
        }
        let inserted = sqlx::query(APPEND)
            .bind(draft.key)
            .bind(indices)
            .bind(custom_ids)
            .bind(params)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        if inserted != n {
            return Err(misuse(format!("batch {} is not an open draft", draft.key)));
        }
        Ok(())
    }

    pub(crate) async fn commit_batch_impl(
        &self,
        draft: Draft,
        total: u64,
    ) -> Result<Batch, StoreError> {
        if total == 0 || total > i32::MAX as u64 {
            return Err(misuse(format!("a batch cannot hold {total} requests")));
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        // O(log n) sanity check that the caller appended what it commits: a batch whose last
        // request is missing could never complete.
        let last: Option<i32> =
            sqlx::query_scalar("SELECT MAX(idx) FROM requests WHERE batch_key = $1")
                .bind(draft.key)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        if last.map(i64::from) != Some(total as i64 - 1) {
            return Err(misuse(format!(
                "draft {} holds requests up to index {last:?}, committed with total {total}",
                draft.key
            )));
        }
        let row = sqlx::query(concat!(
            "UPDATE batches SET state = $1, total = $2, owner = NULL WHERE key = $3 ",
            "AND state = $4 AND NOT deleted RETURNING ",
            batch_columns!()
        ))
        .bind(IN_PROGRESS)
        .bind(total as i64)
        .bind(draft.key)
        .bind(DRAFT)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .ok_or_else(|| misuse(format!("batch {} is not an open draft", draft.key)))?;
        let batch = batch_from_row(&row)?;
        tx.commit().await.map_err(db)?;
        Ok(batch)
    }

    pub(crate) async fn abort_batch_impl(&self, draft: Draft) -> Result<(), StoreError> {
        sqlx::query("UPDATE batches SET deleted = true WHERE key = $1 AND state = $2")
            .bind(draft.key)
            .bind(DRAFT)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub(crate) async fn get_batch_impl(
        &self,
        workspace: &str,
        id: &BatchId,
    ) -> Result<Option<Batch>, StoreError> {
        let row = sqlx::query(GET)
            .bind(id.as_str())
            .bind(workspace)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(batch_from_row).transpose()
    }

    pub(crate) async fn list_batches_impl(
        &self,
        workspace: &str,
        cursor: Cursor,
        limit: u32,
    ) -> Result<BatchPage, ListError> {
        // One extra row says whether there is more in that direction.
        let fetch = i64::from(limit) + 1;
        let (rows, newer) = match cursor {
            Cursor::Start => {
                let rows = sqlx::query(LIST_START)
                    .bind(workspace)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
                (rows, false)
            }
            Cursor::After(ref id) | Cursor::Before(ref id) => {
                let newer = matches!(cursor, Cursor::Before(_));
                let row = sqlx::query(CURSOR)
                    .bind(id.as_str())
                    .bind(workspace)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?
                    .ok_or_else(|| ListError::UnknownCursor(id.clone()))?;
                let (created_at, key): (i64, i64) = (get(&row, "created_at")?, get(&row, "key")?);
                let rows = sqlx::query(if newer { LIST_NEWER } else { LIST_OLDER })
                    .bind(workspace)
                    .bind(created_at)
                    .bind(key)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
                (rows, newer)
            }
        };
        let has_more = rows.len() as u64 > u64::from(limit);
        let mut batches = rows
            .iter()
            .take(limit as usize)
            .map(batch_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if newer {
            // Read oldest first to get the ones closest to the cursor; the page is newest first.
            batches.reverse();
        }
        Ok(BatchPage { batches, has_more })
    }

    pub(crate) async fn cancel_batch_impl(
        &self,
        workspace: &str,
        id: &BatchId,
        now: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Locks the row: a claim of this batch (which locks it too) either committed before, and
        // its claims count, or starts after and sees the batch canceling.
        let Some(row) = sqlx::query(concat!(
            "SELECT ",
            batch_columns!(),
            " FROM batches WHERE id = $1 AND workspace = $2 AND ",
            visible!(),
            " FOR UPDATE"
        ))
        .bind(id.as_str())
        .bind(workspace)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        else {
            return Ok(CancelOutcome::NotFound);
        };
        let batch = batch_from_row(&row)?;
        match get::<i16>(&row, "state")? {
            IN_PROGRESS => {}
            CANCELING => return Ok(CancelOutcome::Canceling(batch)),
            _ => return Ok(CancelOutcome::AlreadyEnded(batch)),
        }
        let row = sqlx::query(concat!(
            "UPDATE batches SET state = $1, cancel_initiated_at = $2 WHERE key = $3 RETURNING ",
            batch_columns!()
        ))
        .bind(CANCELING)
        .bind(now.as_micros())
        .bind(batch.key)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let batch = batch_from_row(&row)?;
        tx.commit().await.map_err(db)?;
        Ok(CancelOutcome::Canceling(batch))
    }

    pub(crate) async fn delete_batch_impl(
        &self,
        workspace: &str,
        id: &BatchId,
    ) -> Result<DeleteOutcome, StoreError> {
        // Only the flag: the rows go later, in purge steps, so this is O(1) for any size.
        let state: Option<i16> = sqlx::query_scalar(concat!(
            "WITH b AS (SELECT key, state FROM batches WHERE id = $1 AND workspace = $2 AND ",
            visible!(),
            " FOR UPDATE), ",
            "d AS (UPDATE batches SET deleted = true FROM b ",
            "WHERE batches.key = b.key AND b.state = $3) ",
            "SELECT state FROM b"
        ))
        .bind(id.as_str())
        .bind(workspace)
        .bind(ENDED)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(match state {
            None => DeleteOutcome::NotFound,
            Some(ENDED) => DeleteOutcome::Deleted,
            Some(_) => DeleteOutcome::NotEnded,
        })
    }

    pub(crate) async fn results_page_impl(
        &self,
        batch_key: i64,
        after: Option<u32>,
        limit: u32,
    ) -> Result<Vec<ResultRow>, StoreError> {
        let after = match after {
            None => -1,
            Some(after) => i32::try_from(after).unwrap_or(i32::MAX),
        };
        let rows = sqlx::query(RESULTS_PAGE)
            .bind(batch_key)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| {
                Ok(ResultRow {
                    index: index(get(row, "idx")?)?,
                    custom_id: get(row, "custom_id")?,
                    body: get(row, "body")?,
                })
            })
            .collect()
    }
}
