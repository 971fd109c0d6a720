//! Batches as the API sees them: the staged create, get, list, cancel, delete and result pages.

use batchd_domain::{Batch, BatchId, Timestamp};
use batchd_store::{
    BatchPage, CancelOutcome, Cursor, DeleteOutcome, Draft, ListError, NewBatch, NewRequest,
    ResultLines, ResultRow, StoreError,
};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::SqliteStore;
use crate::claims::BatchInfo;
use crate::db::{BEGIN_IMMEDIATE, Durability, db, misuse, other};
use crate::rows::{
    self, CANCELING, DRAFT, ENDED, IN_PROGRESS, MAX_REQUESTS, batch_columns, batch_from_row, get,
    rid, rid_range,
};

/// Most rows in one multi-row INSERT. Larger statements mean fewer round trips to the SQLite
/// worker thread; 128 rows × 3 parameters stays far below SQLite's parameter limit.
pub(crate) const MAX_ROWS_PER_INSERT: usize = 128;

/// Splits `n` rows into statement sizes: full chunks, then powers of two. Only a handful of
/// distinct statements ever exist, so every one of them stays in the prepared-statement cache.
pub(crate) fn insert_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = if n >= MAX_ROWS_PER_INSERT {
            MAX_ROWS_PER_INSERT
        } else {
            1 << n.ilog2()
        };
        n -= size;
        Some(size)
    })
}

/// `head` followed by `rows` copies of `tuple`, comma-separated.
pub(crate) fn values_sql(head: &str, tuple: &str, rows: usize) -> String {
    let mut sql = String::with_capacity(head.len() + rows * (tuple.len() + 1));
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(tuple);
    }
    sql
}

/// Visible = committed and not deleted. Written exactly as in the `batches_list` index's WHERE
/// clause so SQLite can use that partial index.
macro_rules! visible {
    () => {
        "deleted = 0 AND state <> 0"
    };
}

pub(crate) const GET: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE id = ?1 AND workspace = ?2 AND ",
    visible!()
);

pub(crate) const LIST_START: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE workspace = ?1 AND ",
    visible!(),
    " ORDER BY created_at DESC, key DESC LIMIT ?2"
);

pub(crate) const LIST_OLDER: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE workspace = ?1 AND ",
    visible!(),
    " AND (created_at, key) < (?2, ?3) ORDER BY created_at DESC, key DESC LIMIT ?4"
);

pub(crate) const LIST_NEWER: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE workspace = ?1 AND ",
    visible!(),
    " AND (created_at, key) > (?2, ?3) ORDER BY created_at ASC, key ASC LIMIT ?4"
);

pub(crate) const CURSOR: &str = concat!(
    "SELECT created_at, key FROM batches WHERE id = ?1 AND workspace = ?2 AND ",
    visible!()
);

impl SqliteStore {
    pub(crate) async fn begin_batch_impl(&self, batch: NewBatch) -> Result<Draft, StoreError> {
        let betas = serde_json::to_string(&batch.betas).map_err(other)?;
        // A draft is invisible and disposable until commit, so it needs no fsync.
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        let key: i64 = sqlx::query_scalar(
            "INSERT INTO batches (id, workspace, state, created_at, expires_at, betas) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING key",
        )
        .bind(batch.id.as_str())
        .bind(&batch.workspace)
        .bind(DRAFT)
        .bind(batch.created_at.as_micros())
        .bind(batch.expires_at.as_micros())
        .bind(betas)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Draft { key, batch })
    }

    pub(crate) async fn append_requests_impl(
        &self,
        draft: &Draft,
        requests: Vec<NewRequest>,
    ) -> Result<(), StoreError> {
        if let Some(bad) = requests.iter().find(|r| u64::from(r.index) >= MAX_REQUESTS) {
            return Err(misuse(format!(
                "request index {} is beyond this engine's limit of {MAX_REQUESTS}",
                bad.index
            )));
        }
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        let open: Option<bool> =
            sqlx::query_scalar("SELECT state = ?2 AND deleted = 0 FROM batches WHERE key = ?1")
                .bind(draft.key)
                .bind(DRAFT)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if open != Some(true) {
            return Err(misuse(format!("batch {} is not an open draft", draft.key)));
        }
        let mut rows = requests.into_iter();
        for size in insert_sizes(rows.len()) {
            let sql = values_sql(
                "INSERT INTO requests (rid, custom_id, params) VALUES ",
                "(?,?,?)",
                size,
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for request in rows.by_ref().take(size) {
                query = query
                    .bind(rid(draft.key, request.index))
                    .bind(request.custom_id.into_string())
                    .bind(request.params);
            }
            query.execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn commit_batch_impl(
        &self,
        draft: Draft,
        total: u64,
    ) -> Result<Batch, StoreError> {
        if total == 0 || total > MAX_REQUESTS {
            return Err(misuse(format!(
                "a batch holds 1 to {MAX_REQUESTS} requests, not {total}"
            )));
        }
        let stale = self.stale_unless_done();
        let batch = self.commit_batch_tx(&draft, total).await?;
        self.claims().started(
            batch.key,
            BatchInfo {
                id: batch.id.clone(),
                workspace: batch.workspace.clone(),
                betas: batch.betas.clone(),
                expires_at: batch.expires_at,
                // Checked against MAX_REQUESTS above.
                total: total as u32,
            },
        );
        stale.done();
        Ok(batch)
    }

    async fn commit_batch_tx(&self, draft: &Draft, total: u64) -> Result<Batch, StoreError> {
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        let (lo, hi) = rid_range(draft.key);
        // O(log n) sanity check that the caller appended what it commits: a batch whose last
        // request is missing could never complete.
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(rid) FROM requests WHERE rid >= ?1 AND rid < ?2")
                .bind(lo)
                .bind(hi)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        let expected = rid(draft.key, (total - 1) as u32);
        if last != Some(expected) {
            return Err(misuse(format!(
                "draft {} holds requests up to index {:?}, committed with total {total}",
                draft.key,
                last.map(rows::index_of)
            )));
        }
        let row = sqlx::query(concat!(
            "UPDATE batches SET state = ?1, total = ?2 WHERE key = ?3 AND state = ?4 ",
            "AND deleted = 0 RETURNING ",
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
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        sqlx::query("UPDATE batches SET deleted = 1 WHERE key = ?1 AND state = ?2")
            .bind(draft.key)
            .bind(DRAFT)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// At startup: drafts of a dead process will never be committed.
    pub(crate) async fn abandon_drafts(&self) -> Result<(), StoreError> {
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        sqlx::query("UPDATE batches SET deleted = 1 WHERE state = ?1 AND deleted = 0")
            .bind(DRAFT)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn get_batch_impl(
        &self,
        workspace: &str,
        id: &BatchId,
    ) -> Result<Option<Batch>, StoreError> {
        let row = sqlx::query(GET)
            .bind(id.as_str())
            .bind(workspace)
            .fetch_optional(&self.pools.reader)
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
        let reader = &self.pools.reader;
        let (rows, newer) = match cursor {
            Cursor::Start => {
                let rows = sqlx::query(LIST_START)
                    .bind(workspace)
                    .bind(fetch)
                    .fetch_all(reader)
                    .await
                    .map_err(db)?;
                (rows, false)
            }
            Cursor::After(ref id) | Cursor::Before(ref id) => {
                let newer = matches!(cursor, Cursor::Before(_));
                let (created_at, key) = self.cursor_position(workspace, id).await?;
                let rows = sqlx::query(if newer { LIST_NEWER } else { LIST_OLDER })
                    .bind(workspace)
                    .bind(created_at)
                    .bind(key)
                    .bind(fetch)
                    .fetch_all(reader)
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

    async fn cursor_position(
        &self,
        workspace: &str,
        id: &BatchId,
    ) -> Result<(i64, i64), ListError> {
        let row = sqlx::query(CURSOR)
            .bind(id.as_str())
            .bind(workspace)
            .fetch_optional(&self.pools.reader)
            .await
            .map_err(db)?
            .ok_or_else(|| ListError::UnknownCursor(id.clone()))?;
        Ok((get(&row, "created_at")?, get(&row, "key")?))
    }

    pub(crate) async fn cancel_batch_impl(
        &self,
        workspace: &str,
        id: &BatchId,
        now: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        let stale = self.stale_unless_done();
        let outcome = self.cancel_batch_tx(workspace, id, now).await?;
        if let CancelOutcome::Canceling(batch) = &outcome {
            self.claims().canceling(batch.key);
        }
        stale.done();
        Ok(outcome)
    }

    async fn cancel_batch_tx(
        &self,
        workspace: &str,
        id: &BatchId,
        now: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        let Some(row) = sqlx::query(GET)
            .bind(id.as_str())
            .bind(workspace)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
        else {
            return Ok(CancelOutcome::NotFound);
        };
        let batch = batch_from_row(&row)?;
        let state: i64 = get(&row, "state")?;
        match state {
            IN_PROGRESS => {}
            CANCELING => return Ok(CancelOutcome::Canceling(batch)),
            _ => return Ok(CancelOutcome::AlreadyEnded(batch)),
        }
        let row = sqlx::query(concat!(
            "UPDATE batches SET state = ?1, cancel_initiated_at = ?2 WHERE key = ?3 RETURNING ",
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
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        let row = sqlx::query(concat!(
            "SELECT key, state FROM batches WHERE id = ?1 AND workspace = ?2 AND ",
            visible!()
        ))
        .bind(id.as_str())
        .bind(workspace)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(DeleteOutcome::NotFound);
        };
        let key: i64 = get(&row, "key")?;
        if get::<i64>(&row, "state")? != ENDED {
            return Ok(DeleteOutcome::NotEnded);
        }
        // Only the flag: the rows go later, in purge steps, so this is O(1) for any size.
        sqlx::query("UPDATE batches SET deleted = 1 WHERE key = ?1")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(DeleteOutcome::Deleted)
    }

    pub(crate) async fn results_page_impl(
        &self,
        batch_key: i64,
        after: Option<u32>,
        limit: u32,
    ) -> Result<Vec<ResultRow>, StoreError> {
        let Some((from, hi)) = results_range(batch_key, after) else {
            return Ok(Vec::new());
        };
        // The rows a download renders (see `download`), here as values.
        let sql = format!("{} {limit}", crate::download::WITH_LEFTOVERS);
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(from)
            .bind(hi)
            .fetch_all(&self.pools.reader)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| {
                Ok(ResultRow {
                    index: rows::index_of(get(row, "rid")?),
                    custom_id: get(row, "custom_id")?,
                    body: get(row, "body")?,
                })
            })
            .collect()
    }

    pub(crate) async fn results_lines_impl(
        &self,
        batch_key: i64,
        after: Option<u32>,
        limit: u32,
        leftover: Option<&str>,
    ) -> Result<Option<ResultLines>, StoreError> {
        let Some((from, hi)) = results_range(batch_key, after) else {
            return Ok(None);
        };
        self.downloads.page(from, hi, limit, leftover).await
    }
}

/// The rid range `[from, hi)` of a batch's result rows after index `after`; `None` when no index
/// can follow `after`.
fn results_range(batch_key: i64, after: Option<u32>) -> Option<(i64, i64)> {
    let (lo, hi) = rid_range(batch_key);
    match after {
        None => Some((lo, hi)),
        Some(after) if u64::from(after) + 1 >= MAX_REQUESTS => None,
        Some(after) => Some((rid(batch_key, after + 1), hi)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sizes_cover_every_row_with_few_statements() {
        for n in [0, 1, 2, 3, 127, 128, 129, 500, 1000] {
            let sizes: Vec<usize> = insert_sizes(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(
                sizes
                    .iter()
                    .all(|s| s.is_power_of_two() && *s <= MAX_ROWS_PER_INSERT)
            );
        }
        assert_eq!(
            insert_sizes(500).collect::<Vec<_>>(),
            vec![128, 128, 128, 64, 32, 16, 4]
        );
        assert_eq!(values_sql("V ", "(?)", 3), "V (?),(?),(?)");
    }
}
