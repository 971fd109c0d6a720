//! Batches as the API sees them, [`BatchStore`] for PostgreSQL: the staged create, get, list,
//! cancel, delete, result pages, and the health figures.

use futures_util::TryStreamExt as _;
use std::ops::ControlFlow;

use async_trait::async_trait;
use batchd_domain::openai::Surface;
use batchd_domain::rerun::RerunSet;
use batchd_domain::{Batch, BatchId, EndReason, Outcome, Timestamp};
use batchd_store::{
    BatchPage, BatchStore, CancelOutcome, Cursor, DeleteOutcome, Draft, ListError, NewBatch,
    NewRequest, QueueFull, ResultLines, ResultRow, Stats, StoreError, cancel, failed, paging,
    push_result_line,
};

use crate::PostgresStore;
use crate::db::{misuse, other, query_error};
use crate::rows::{
    CANCELING, DRAFT, ENDED, IN_PROGRESS, batch_columns, batch_from_row, end_reason_code, get,
    index, openai_text, parse_outcome, small,
};

/// Visible = committed and not deleted. Written exactly as in the `batches_list_*` indexes' WHERE
/// clauses so the planner can use those partial indexes.
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

/// The statements of one surface's list. Each repeats that surface's `batches_list_*` index's
/// WHERE clause word for word (`endpoint = 0` or `endpoint <> 0` after [`visible!`]), so that a
/// list walks only its own surface's batches.
pub(crate) struct ListSql {
    pub start: &'static str,
    pub older: &'static str,
    pub newer: &'static str,
    /// Strictly between an `after_id` (older bound) and a `before_id` (newer bound), newest first.
    pub between: &'static str,
    /// Where an `after`/`before` cursor stands: a batch of another surface is no cursor.
    pub cursor: &'static str,
}

macro_rules! list_sql {
    ($surface:literal) => {
        ListSql {
            start: concat!(
                "SELECT ",
                batch_columns!(),
                " FROM batches WHERE workspace = $1 AND ",
                visible!(),
                " AND ",
                $surface,
                " ORDER BY created_at DESC, key DESC LIMIT $2"
            ),
            older: concat!(
                "SELECT ",
                batch_columns!(),
                " FROM batches WHERE workspace = $1 AND ",
                visible!(),
                " AND ",
                $surface,
                " AND (created_at, key) < ($2, $3) ORDER BY created_at DESC, key DESC LIMIT $4"
            ),
            newer: concat!(
                "SELECT ",
                batch_columns!(),
                " FROM batches WHERE workspace = $1 AND ",
                visible!(),
                " AND ",
                $surface,
                " AND (created_at, key) > ($2, $3) ORDER BY created_at ASC, key ASC LIMIT $4"
            ),
            between: concat!(
                "SELECT ",
                batch_columns!(),
                " FROM batches WHERE workspace = $1 AND ",
                visible!(),
                " AND ",
                $surface,
                " AND (created_at, key) < ($2, $3) AND (created_at, key) > ($4, $5) \
                 ORDER BY created_at DESC, key DESC LIMIT $6"
            ),
            cursor: concat!(
                "SELECT created_at, key FROM batches WHERE id = $1 AND workspace = $2 AND ",
                visible!(),
                " AND ",
                $surface
            ),
        }
    };
}

pub(crate) const LIST_ANTHROPIC: ListSql = list_sql!("endpoint = 0");
pub(crate) const LIST_OPENAI: ListSql = list_sql!("endpoint <> 0");

pub(crate) fn list_sql(surface: Surface) -> &'static ListSql {
    match surface {
        Surface::Anthropic => &LIST_ANTHROPIC,
        Surface::OpenAi => &LIST_OPENAI,
    }
}

/// Ended OpenAI batches not finalized yet, oldest ended first, through `batches_unfinalized`.
pub(crate) const UNFINALIZED: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE state = 3 AND endpoint <> 0 AND finalized_at IS NULL \
     AND NOT deleted AND archived_at IS NULL ORDER BY ended_at, key LIMIT $1"
);

/// Takes an unfinalized batch (`UNFINALIZED`'s rule) for worker `$2`: unless another worker
/// that is still registered (alive) holds it.
pub(crate) const CLAIM_FINALIZE: &str = "UPDATE batches SET finalizer = $2 WHERE key = $1 \
     AND state = 3 AND endpoint <> 0 AND finalized_at IS NULL AND NOT deleted AND archived_at IS NULL \
     AND (finalizer IS NULL OR finalizer = $2 \
     OR NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = batches.finalizer))";

/// Records an OpenAI batch's files, once: only while it is ended, visible and not finalized.
/// `finalized_at` is on the workspace's clock, and never before `ended_at`, which may be on
/// another process's clock.
pub(crate) const FINALIZE: &str = concat!(
    "UPDATE batches SET openai = $1, finalized_at = GREATEST($2 + ",
    batch_clock_offset!("batches"),
    ", ended_at) WHERE key = $3 AND state = 3 AND endpoint <> 0 AND finalized_at IS NULL \
     AND NOT deleted"
);

pub(crate) const STATS: &str = "SELECT state, COUNT(*), \
     COALESCE(SUM(total - succeeded - errored), 0)::bigint \
     FROM batches WHERE state IN (1, 2) GROUP BY state";

/// Appends a chunk in one statement: the request rows and their queue rows, only while the
/// batch is an open draft (locked against a concurrent abandonment by the reaper).
const APPEND: &str = "WITH b AS (SELECT key FROM batches \
         WHERE key = $1 AND state = 0 AND NOT deleted FOR SHARE), \
     f AS (UPDATE batches SET input_file_key = $8 WHERE key = (SELECT key FROM b) \
         AND $8::bigint IS NOT NULL AND input_file_key IS NULL), \
     r AS (INSERT INTO requests (batch_key, idx, custom_id, params, body_file, body_at, body_len) \
         SELECT b.key, u.idx, u.custom_id, u.params, u.body_file, u.body_at, u.body_len FROM b, \
         UNNEST($2::int[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::int[]) \
             AS u(idx, custom_id, params, body_file, body_at, body_len) \
         RETURNING batch_key, idx) \
     INSERT INTO pending (batch_key, idx) SELECT batch_key, idx FROM r";

/// A re-run's copy of one range of a batch's requests into the draft $1: those whose result
/// type (a stored result's outcome, else $7, the batch's end reason's) is a bit of $6,
/// renumbered from $2 + 1 in index order, each also pending as [`APPEND`] makes them. `params`
/// go from table to table without leaving PostgreSQL. Nothing is copied into a batch that is
/// no open draft.
const COPY_REQUESTS: &str = "WITH b AS (SELECT key FROM batches \
         WHERE key = $1 AND state = 0 AND NOT deleted FOR SHARE), \
     r AS (INSERT INTO requests (batch_key, idx, custom_id, params) \
         SELECT b.key, $2 + (ROW_NUMBER() OVER (ORDER BY q.idx))::int, q.custom_id, q.params \
         FROM b, requests q LEFT JOIN results s ON s.batch_key = q.batch_key AND s.idx = q.idx \
         WHERE q.batch_key = $3 AND q.idx >= $4 AND q.idx < $5 \
         AND (($6 >> COALESCE(s.outcome::int, $7)) & 1) = 1 \
         RETURNING batch_key, idx) \
     INSERT INTO pending (batch_key, idx) SELECT batch_key, idx FROM r";

pub(crate) const RESULTS_PAGE: &str = "SELECT r.idx, r.custom_id, s.body, s.outcome FROM requests r \
     LEFT JOIN results s ON s.batch_key = r.batch_key AND s.idx = r.idx \
     WHERE r.batch_key = $1 AND r.idx > $2 ORDER BY r.idx LIMIT $3";

/// [`RESULTS_PAGE`] for a batch whose every request has a result: the results drive the page,
/// and only their requests' `custom_id`s are looked up. The page's start bounds both tables,
/// written out for each: with it on `results` only, the planner merge-joined `requests` from the
/// batch's first row, so each page read every row before it.
pub(crate) const ANSWERED_PAGE: &str = "SELECT s.idx, r.custom_id, s.body \
     FROM results s JOIN requests r ON r.batch_key = s.batch_key AND r.idx = s.idx \
     WHERE s.batch_key = $1 AND s.idx > $2 AND r.batch_key = $1 AND r.idx > $2 \
     ORDER BY s.idx LIMIT $3";

/// The first key of the advisory locks that serialize a workspace's commits under its queue
/// cap (an arbitrary constant, "bq"); the second is the hash of the workspace's name.
const QUEUE_LOCK: i32 = 0x6271;

/// Requests of a workspace waiting to be processed: the unanswered part of its `in_progress`
/// batches, read from their tallies through the `batches_queue` partial index. The state is
/// written out (`IN_PROGRESS`) rather than bound, so the planner can match that index.
pub(crate) const QUEUED: &str = "SELECT COALESCE(SUM(total - succeeded - errored), 0)::BIGINT \
     FROM batches WHERE workspace = $1 AND state = 1";

/// The requests of `workspace` waiting to be processed ([`QUEUED`]), in a transaction or not.
async fn queued<'e>(
    exec: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    workspace: &str,
) -> Result<u64, StoreError> {
    let waiting: i64 = sqlx::query_scalar(QUEUED)
        .bind(workspace)
        .fetch_one(exec)
        .await
        .map_err(query_error)?;
    Ok(u64::try_from(waiting).unwrap_or(0))
}

#[async_trait]
impl BatchStore for PostgresStore {
    async fn begin_batch(&self, batch: NewBatch) -> Result<Draft, StoreError> {
        let betas = serde_json::to_string(&batch.betas).map_err(other)?;
        let openai = openai_text(batch.openai.as_ref())?;
        let key: i64 = sqlx::query_scalar(
            "INSERT INTO batches (id, workspace, state, created_at, expires_at, betas, owner, \
             api_version, user_profile_id, endpoint, openai) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING key",
        )
        .bind(batch.id.as_str())
        .bind(&batch.workspace)
        .bind(DRAFT)
        .bind(batch.created_at.as_micros())
        .bind(batch.expires_at.as_micros())
        .bind(betas)
        .bind(self.me()?)
        .bind(batch.api_version.as_str())
        .bind(batch.user_profile_id.as_deref())
        .bind(small(batch.endpoint.code()))
        .bind(openai)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error)?;
        Ok(Draft { key, batch })
    }

    async fn append_requests(
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
        let (mut files, mut ats, mut lens) = (Vec::new(), Vec::new(), Vec::new());
        let input_file = requests.iter().find_map(|r| r.source.map(|s| s.file_key));
        for request in requests {
            indices.push(
                i32::try_from(request.index)
                    .map_err(|_| misuse(format!("request index {} too large", request.index)))?,
            );
            custom_ids.push(request.custom_id.into_string());
            params.push(request.params);
            let source = request.source;
            files.push(source.map(|s| s.file_key));
            ats.push(source.map(|s| s.at as i64));
            lens.push(
                source
                    .map(|s| i32::try_from(s.len))
                    .transpose()
                    .map_err(|_| misuse("a request body of more than 2 GiB"))?,
            );
        }
        let inserted = sqlx::query(APPEND)
            .bind(draft.key)
            .bind(indices)
            .bind(custom_ids)
            .bind(params)
            .bind(files)
            .bind(ats)
            .bind(lens)
            .bind(input_file)
            .execute(&self.pool)
            .await
            .map_err(query_error)?
            .rows_affected();
        if inserted != n {
            return Err(batchd_store::draft_gone(format!(
                "batch {} is not an open draft",
                draft.key
            )));
        }
        Ok(())
    }

    async fn commit_batch_within(
        &self,
        draft: Draft,
        total: u64,
        queue_cap: u64,
    ) -> Result<Result<Batch, QueueFull>, StoreError> {
        if total == 0 || total > i32::MAX as u64 {
            return Err(misuse(format!("a batch cannot hold {total} requests")));
        }
        // READ COMMITTED: the count below must see what a commit that held the workspace's
        // lock before this one wrote, which a snapshot taken at BEGIN (REPEATABLE READ, if a
        // server made it the default) would not.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(query_error)?;
        if queue_cap < u64::MAX {
            // Commits of one workspace queue on a transaction-scoped advisory lock, in every
            // process sharing the database, so two creates cannot both fit under the cap by
            // counting before either commits. Workspaces whose names hash alike share a lock:
            // they only wait for each other's commit, a few milliseconds.
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(QUEUE_LOCK)
                .bind(&draft.batch.workspace)
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
            let waiting = queued(&mut *tx, &draft.batch.workspace).await?;
            if waiting.saturating_add(total) > queue_cap {
                // Ends the transaction now, and with it the workspace's lock, rather than when
                // the connection goes back to the pool.
                tx.rollback().await.map_err(query_error)?;
                return Ok(Err(QueueFull { draft, waiting }));
            }
        }
        // O(log n) sanity check that the caller appended what it commits: a batch whose last
        // request is missing could never complete.
        let last: Option<i32> =
            sqlx::query_scalar("SELECT MAX(idx) FROM requests WHERE batch_key = $1")
                .bind(draft.key)
                .fetch_one(&mut *tx)
                .await
                .map_err(query_error)?;
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
        .map_err(query_error)?
        .ok_or_else(|| {
            batchd_store::draft_gone(format!("batch {} is not an open draft", draft.key))
        })?;
        let batch = batch_from_row(&row)?;
        tx.commit().await.map_err(query_error)?;
        Ok(Ok(batch))
    }

    async fn abort_batch(&self, draft: Draft) -> Result<(), StoreError> {
        sqlx::query("UPDATE batches SET deleted = true WHERE key = $1 AND state = $2")
            .bind(draft.key)
            .bind(DRAFT)
            .execute(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(())
    }

    async fn waiting_requests(&self, workspace: &str) -> Result<u64, StoreError> {
        queued(&self.pool, workspace).await
    }

    async fn get_batch(&self, workspace: &str, id: &BatchId) -> Result<Option<Batch>, StoreError> {
        let row = sqlx::query(GET)
            .bind(id.as_str())
            .bind(workspace)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error)?;
        row.as_ref().map(batch_from_row).transpose()
    }

    async fn list_batches(
        &self,
        workspace: &str,
        surface: Surface,
        cursor: Cursor,
        limit: u32,
    ) -> Result<BatchPage, ListError> {
        let fetch = paging::rows_to_read(limit);
        let sql = list_sql(surface);
        let rows = match &cursor {
            Cursor::Start => sqlx::query(sql.start)
                .bind(workspace)
                .bind(fetch)
                .fetch_all(&self.pool)
                .await
                .map_err(query_error)?,
            Cursor::After(id) | Cursor::Before(id) => {
                let (created_at, key) = self.cursor_position(sql.cursor, workspace, id).await?;
                let newer = paging::reads_oldest_first(&cursor);
                sqlx::query(if newer { sql.newer } else { sql.older })
                    .bind(workspace)
                    .bind(created_at)
                    .bind(key)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(query_error)?
            }
            Cursor::Between { after, before } => {
                let (after_at, after_key) =
                    self.cursor_position(sql.cursor, workspace, after).await?;
                let (before_at, before_key) =
                    self.cursor_position(sql.cursor, workspace, before).await?;
                sqlx::query(sql.between)
                    .bind(workspace)
                    .bind(after_at)
                    .bind(after_key)
                    .bind(before_at)
                    .bind(before_key)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(query_error)?
            }
        };
        Ok(paging::page(&rows, limit, &cursor, batch_from_row)?)
    }

    async fn insert_failed_batch(
        &self,
        batch: NewBatch,
        now: Timestamp,
    ) -> Result<Batch, StoreError> {
        failed::check(&batch)?;
        let betas = serde_json::to_string(&batch.betas).map_err(other)?;
        let openai = openai_text(batch.openai.as_ref())?;
        let row = sqlx::query(concat!(
            "INSERT INTO batches (id, workspace, state, end_reason, created_at, expires_at, ",
            "ended_at, finalized_at, betas, api_version, user_profile_id, endpoint, openai) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11, $12) RETURNING ",
            batch_columns!()
        ))
        .bind(batch.id.as_str())
        .bind(&batch.workspace)
        .bind(ENDED)
        .bind(end_reason_code(EndReason::Completed))
        .bind(batch.created_at.as_micros())
        .bind(batch.expires_at.as_micros())
        .bind(now.as_micros())
        .bind(betas)
        .bind(batch.api_version.as_str())
        .bind(batch.user_profile_id.as_deref())
        .bind(small(batch.endpoint.code()))
        .bind(openai)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error)?;
        batch_from_row(&row)
    }

    async fn cancel_batch(
        &self,
        workspace: &str,
        id: &BatchId,
        now: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
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
        .map_err(query_error)?
        else {
            return Ok(CancelOutcome::NotFound);
        };
        let batch = match cancel::switch(batch_from_row(&row)?) {
            ControlFlow::Continue(batch) => batch,
            ControlFlow::Break(outcome) => return Ok(outcome),
        };
        let row = sqlx::query(concat!(
            "UPDATE batches SET state = $1, cancel_initiated_at = $2 WHERE key = $3 RETURNING ",
            batch_columns!()
        ))
        .bind(CANCELING)
        .bind(now.as_micros())
        .bind(batch.key)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error)?;
        let batch = batch_from_row(&row)?;
        tx.commit().await.map_err(query_error)?;
        Ok(CancelOutcome::Canceling(batch))
    }

    async fn delete_batch(
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
        .map_err(query_error)?;
        Ok(match state {
            None => DeleteOutcome::NotFound,
            Some(ENDED) => DeleteOutcome::Deleted,
            Some(_) => DeleteOutcome::NotEnded,
        })
    }

    async fn results_page_within(
        &self,
        batch_key: i64,
        after: Option<u32>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<ResultRow>, StoreError> {
        let after = match after {
            None => -1,
            Some(after) => i32::try_from(after).unwrap_or(i32::MAX),
        };
        let query = sqlx::query(RESULTS_PAGE)
            .bind(batch_key)
            .bind(after)
            .bind(i64::from(limit));
        // Row by row, so that the rows past the byte budget are never read into memory (the
        // connection discards them before its next use).
        let mut rows = query.fetch(&self.pool);
        let mut budget = paging::ByteBudget::new(max_bytes);
        let mut page = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(query_error)? {
            let row = ResultRow {
                index: index(get(&row, "idx")?)?,
                custom_id: get(&row, "custom_id")?,
                body: get(&row, "body")?,
                outcome: get::<Option<i16>>(&row, "outcome")?
                    .map(|code| parse_outcome(i64::from(code)))
                    .transpose()?,
            };
            let full = budget.spend(row.bytes());
            page.push(row);
            if full {
                break;
            }
        }
        Ok(page)
    }

    /// Renders each row as it arrives, straight from the connection's buffer (its `custom_id`
    /// and body borrowed, copied once, into the page): no `ResultRow` of two `String`s per row.
    /// Rendering in SQL instead (`string_agg` of the lines) took batchd's CPU for a 50,000-result
    /// download from 80-100 ms to 50-60 ms but PostgreSQL's from 140-170 ms to 200-210 ms, and
    /// PostgreSQL's CPU is what a cluster runs out of.
    async fn results_lines(
        &self,
        batch_key: i64,
        after: Option<u32>,
        limit: u32,
        unanswered: Option<&str>,
    ) -> Result<Option<ResultLines>, StoreError> {
        let after = match after {
            None => -1,
            Some(after) => i32::try_from(after).unwrap_or(i32::MAX),
        };
        let sql = if unanswered.is_some() {
            RESULTS_PAGE
        } else {
            ANSWERED_PAGE
        };
        let mut rows = sqlx::query(sql)
            .bind(batch_key)
            .bind(after)
            .bind(i64::from(limit))
            .fetch(&self.pool);
        let mut lines = Vec::new();
        let mut count = 0u32;
        let mut last = None;
        while let Some(row) = rows.try_next().await.map_err(query_error)? {
            let Some(result) = get::<Option<&str>>(&row, "body")?.or(unanswered) else {
                continue;
            };
            push_result_line(&mut lines, get(&row, "custom_id")?, result.as_bytes());
            count += 1;
            last = Some(index(get(&row, "idx")?)?);
        }
        Ok(last.map(|last_index| ResultLines {
            last_index,
            rows: count,
            lines,
        }))
    }

    async fn copy_requests(
        &self,
        draft: &Draft,
        source_key: i64,
        from: u32,
        to: u32,
        only: RerunSet,
        unanswered: Outcome,
        next: u32,
    ) -> Result<u64, StoreError> {
        let int =
            |n: u32| i32::try_from(n).map_err(|_| misuse(format!("request index {n} too large")));
        // One statement: its own transaction.
        let copied = sqlx::query(COPY_REQUESTS)
            .bind(draft.key)
            .bind(int(next)? - 1)
            .bind(source_key)
            .bind(int(from)?)
            .bind(int(to)?)
            .bind(only.bits() as i32)
            .bind(unanswered.code() as i32)
            .execute(&self.pool)
            .await
            .map_err(query_error)?
            .rows_affected();
        Ok(copied)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(())
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        let rows: Vec<(i16, i64, i64)> = sqlx::query_as(STATS)
            .fetch_all(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(Stats::fold(rows.into_iter().map(
            |(state, batches, unanswered)| (i64::from(state), batches, unanswered),
        )))
    }
}

impl PostgresStore {
    /// Where a list cursor sits in the list's order; a cursor naming no visible batch of the
    /// workspace is refused.
    async fn cursor_position(
        &self,
        sql: &'static str,
        workspace: &str,
        id: &BatchId,
    ) -> Result<(i64, i64), ListError> {
        let row = sqlx::query(sql)
            .bind(id.as_str())
            .bind(workspace)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error)?
            .ok_or_else(|| ListError::UnknownCursor(id.clone()))?;
        Ok((get(&row, "created_at")?, get(&row, "key")?))
    }
}
