//! Batches as the API sees them, [`BatchStore`] for SQLite: the staged create, get, list,
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
};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::SqliteStore;
use crate::db::{BEGIN_IMMEDIATE, Durability, misuse, other, query_error};
use crate::leases::BatchInfo;
use crate::rows::{
    self, CANCELING, DRAFT, ENDED, FILE_DELETED, FILE_DRAFT, IN_PROGRESS, RID_INDICES,
    batch_columns, batch_from_row, get, rid, rid_range,
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

/// Records the input file a draft's requests point into (`?1` file key, `?2` batch key), so
/// that the purge keeps its pieces until the batch is finalized.
pub(crate) const SET_INPUT_FILE: &str = "UPDATE batches SET input_file_key = ?1 \
     WHERE key = ?2 AND input_file_key IS NULL";

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

/// Visible = committed and not deleted. Written exactly as in the `batches_list_*` indexes' WHERE
/// clauses so SQLite can use those partial indexes.
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
                " FROM batches WHERE workspace = ?1 AND ",
                visible!(),
                " AND ",
                $surface,
                " ORDER BY created_at DESC, key DESC LIMIT ?2"
            ),
            older: concat!(
                "SELECT ",
                batch_columns!(),
                " FROM batches WHERE workspace = ?1 AND ",
                visible!(),
                " AND ",
                $surface,
                " AND (created_at, key) < (?2, ?3) ORDER BY created_at DESC, key DESC LIMIT ?4"
            ),
            newer: concat!(
                "SELECT ",
                batch_columns!(),
                " FROM batches WHERE workspace = ?1 AND ",
                visible!(),
                " AND ",
                $surface,
                " AND (created_at, key) > (?2, ?3) ORDER BY created_at ASC, key ASC LIMIT ?4"
            ),
            between: concat!(
                "SELECT ",
                batch_columns!(),
                " FROM batches WHERE workspace = ?1 AND ",
                visible!(),
                " AND ",
                $surface,
                " AND (created_at, key) < (?2, ?3) AND (created_at, key) > (?4, ?5) \
                 ORDER BY created_at DESC, key DESC LIMIT ?6"
            ),
            cursor: concat!(
                "SELECT created_at, key FROM batches WHERE id = ?1 AND workspace = ?2 AND ",
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

/// A page of results with their outcomes: [`crate::download::WITH_UNANSWERED`] plus the
/// outcome, which only the values need (the rendered lines do not). `LIMIT` is spliced in.
pub(crate) const RESULTS_PAGE: &str = "SELECT r.rid, r.custom_id, s.body, s.outcome \
     FROM requests r LEFT JOIN results s ON s.rid = r.rid \
     WHERE r.rid >= ?1 AND r.rid < ?2 ORDER BY r.rid LIMIT";

/// Ended OpenAI batches not finalized yet, oldest ended first, through `batches_unfinalized`
/// (named: the planner, knowing nothing of the data, would take `batches_state` and walk every
/// ended batch).
pub(crate) const UNFINALIZED: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches INDEXED BY batches_unfinalized WHERE state = 3 AND endpoint <> 0 AND finalized_at IS NULL \
     AND deleted = 0 AND archived_at IS NULL ORDER BY ended_at, key LIMIT ?1"
);

/// Whether one batch is ended, OpenAI, still there and not finalized (`UNFINALIZED`'s rule).
pub(crate) const UNFINALIZED_ONE: &str = "SELECT key FROM batches WHERE key = ?1 AND state = 3 \
     AND endpoint <> 0 AND finalized_at IS NULL AND deleted = 0 AND archived_at IS NULL";

/// Records an OpenAI batch's files, once: only while it is ended, visible and not finalized.
/// `finalized_at` is on the workspace's clock, and never before `ended_at`.
pub(crate) const FINALIZE: &str = concat!(
    "UPDATE batches SET openai = ?1, finalized_at = MAX(?2 + ",
    batch_clock_offset!(),
    ", ended_at) WHERE key = ?3 AND state = 3 AND endpoint <> 0 AND finalized_at IS NULL \
     AND deleted = 0"
);

/// A re-run's copy of one range of a batch's requests: those whose result type (a stored
/// result's outcome, else ?5, the batch's end reason's) is a bit of ?4, renumbered from ?1 + 1
/// in rid order. `params` go from table to table without leaving SQLite. The numbering is
/// computed over the rids alone and joined back, so the window's temporary table holds integers
/// rather than every copied row: for 100,000 requests of 2.5 KB that took 5 % less CPU (1.22 s
/// against 1.28 s, three alternate runs of the `rerun_time` test in a debug build); most of
/// the rest is writing the 250 MB to the WAL and checkpointing it.
pub(crate) const COPY_REQUESTS: &str = "INSERT INTO requests (rid, custom_id, params) \
     SELECT ?1 + k.n, r.custom_id, r.params \
     FROM (SELECT q.rid, ROW_NUMBER() OVER (ORDER BY q.rid) AS n \
           FROM requests q LEFT JOIN results s ON s.rid = q.rid \
           WHERE q.rid >= ?2 AND q.rid < ?3 AND ((?4 >> COALESCE(s.outcome, ?5)) & 1) = 1) k \
     JOIN requests r ON r.rid = k.rid \
     ORDER BY k.rid";

pub(crate) const STATS: &str = "SELECT state, COUNT(*), COALESCE(SUM(total - succeeded - errored), 0) \
     FROM batches WHERE state IN (?1, ?2) GROUP BY state";

/// Requests of a workspace waiting to be processed: the unanswered part of its `in_progress`
/// batches, read from their tallies through the `batches_queue` partial index. The state is
/// written out (`IN_PROGRESS`) rather than bound, so the planner can match that index.
pub(crate) const QUEUED: &str = "SELECT COALESCE(SUM(total - succeeded - errored), 0) \
     FROM batches WHERE workspace = ?1 AND state = 1";

/// Refuses to write into `draft` unless it is still an open, undeleted draft (an abort, a
/// commit or a test-mode reset may have come first): `DraftGone`.
async fn ensure_open_draft(
    conn: &mut sqlx::SqliteConnection,
    draft: &Draft,
) -> Result<(), StoreError> {
    let open: Option<bool> =
        sqlx::query_scalar("SELECT state = ?2 AND deleted = 0 FROM batches WHERE key = ?1")
            .bind(draft.key)
            .bind(DRAFT)
            .fetch_optional(conn)
            .await
            .map_err(query_error)?;
    if open != Some(true) {
        return Err(batchd_store::draft_gone(format!(
            "batch {} is not an open draft",
            draft.key
        )));
    }
    Ok(())
}

/// The requests of `workspace` waiting to be processed ([`QUEUED`]), in a transaction or not.
async fn queued<'e>(
    exec: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
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
impl BatchStore for SqliteStore {
    async fn begin_batch(&self, batch: NewBatch) -> Result<Draft, StoreError> {
        let betas = serde_json::to_string(&batch.betas).map_err(other)?;
        let openai = rows::openai_text(batch.openai.as_ref())?;
        // A draft is invisible and disposable until commit, so it needs no fsync.
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let key: i64 = sqlx::query_scalar(
            "INSERT INTO batches (id, workspace, state, created_at, expires_at, betas, \
             api_version, user_profile_id, endpoint, openai) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING key",
        )
        .bind(batch.id.as_str())
        .bind(&batch.workspace)
        .bind(DRAFT)
        .bind(batch.created_at.as_micros())
        .bind(batch.expires_at.as_micros())
        .bind(betas)
        .bind(batch.api_version.as_str())
        .bind(batch.user_profile_id.as_deref())
        .bind(batch.endpoint.code())
        .bind(openai)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(Draft { key, batch })
    }

    async fn append_requests(
        &self,
        draft: &Draft,
        requests: Vec<NewRequest>,
    ) -> Result<(), StoreError> {
        if let Some(bad) = requests.iter().find(|r| u64::from(r.index) >= RID_INDICES) {
            return Err(misuse(format!(
                "request index {} is beyond this engine's limit of {RID_INDICES}",
                bad.index
            )));
        }
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        ensure_open_draft(&mut tx, draft).await?;
        if let Some(file_key) = requests.iter().find_map(|r| r.source.map(|s| s.file_key)) {
            sqlx::query(SET_INPUT_FILE)
                .bind(file_key)
                .bind(draft.key)
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
        }
        let mut rows = requests.into_iter();
        for size in insert_sizes(rows.len()) {
            let sql = values_sql(
                "INSERT INTO requests (rid, custom_id, params, body_file, body_at, body_len) VALUES ",
                "(?,?,?,?,?,?)",
                size,
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for request in rows.by_ref().take(size) {
                let source = request.source;
                query = query
                    .bind(rid(draft.key, request.index))
                    .bind(request.custom_id.into_string())
                    .bind(request.params)
                    .bind(source.map(|s| s.file_key))
                    .bind(source.map(|s| s.at as i64))
                    .bind(source.map(|s| i64::from(s.len)));
            }
            query.execute(&mut *tx).await.map_err(query_error)?;
        }
        tx.commit().await.map_err(query_error)
    }

    async fn commit_batch_within(
        &self,
        draft: Draft,
        total: u64,
        queue_cap: u64,
    ) -> Result<Result<Batch, QueueFull>, StoreError> {
        if total == 0 || total > RID_INDICES {
            return Err(misuse(format!(
                "a batch holds 1 to {RID_INDICES} requests, not {total}"
            )));
        }
        let stale = self.stale_unless_done();
        let batch = match self.commit_batch_tx(&draft, total, queue_cap).await? {
            Ok(batch) => batch,
            Err(waiting) => {
                stale.done();
                return Ok(Err(QueueFull { draft, waiting }));
            }
        };
        self.claims().started(
            batch.key,
            BatchInfo {
                id: batch.id.clone(),
                workspace: batch.workspace.clone(),
                betas: batch.betas.clone(),
                api_version: batch.api_version,
                user_profile_id: batch.user_profile_id.clone(),
                endpoint: batch.endpoint,
                expires_at: batch.expires_at,
                // Checked against RID_INDICES above.
                total: total as u32,
            },
        );
        stale.done();
        Ok(Ok(batch))
    }

    async fn abort_batch(&self, draft: Draft) -> Result<(), StoreError> {
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        sqlx::query("UPDATE batches SET deleted = 1 WHERE key = ?1 AND state = ?2")
            .bind(draft.key)
            .bind(DRAFT)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        tx.commit().await.map_err(query_error)
    }

    async fn waiting_requests(&self, workspace: &str) -> Result<u64, StoreError> {
        queued(&self.pools.reader, workspace).await
    }

    async fn get_batch(&self, workspace: &str, id: &BatchId) -> Result<Option<Batch>, StoreError> {
        let row = sqlx::query(GET)
            .bind(id.as_str())
            .bind(workspace)
            .fetch_optional(&self.pools.reader)
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
        let reader = &self.pools.reader;
        let sql = list_sql(surface);
        let rows = match &cursor {
            Cursor::Start => sqlx::query(sql.start)
                .bind(workspace)
                .bind(fetch)
                .fetch_all(reader)
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
                    .fetch_all(reader)
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
                    .fetch_all(reader)
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
        let openai = rows::openai_text(batch.openai.as_ref())?;
        // Visible once this returns, as a commit is.
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let row = sqlx::query(concat!(
            "INSERT INTO batches (id, workspace, state, end_reason, created_at, expires_at, ",
            "ended_at, finalized_at, betas, api_version, user_profile_id, endpoint, openai) ",
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING ",
            batch_columns!()
        ))
        .bind(batch.id.as_str())
        .bind(&batch.workspace)
        .bind(ENDED)
        .bind(EndReason::Completed.code())
        .bind(batch.created_at.as_micros())
        .bind(batch.expires_at.as_micros())
        .bind(now.as_micros())
        .bind(betas)
        .bind(batch.api_version.as_str())
        .bind(batch.user_profile_id.as_deref())
        .bind(batch.endpoint.code())
        .bind(openai)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error)?;
        let batch = batch_from_row(&row)?;
        tx.commit().await.map_err(query_error)?;
        Ok(batch)
    }

    async fn cancel_batch(
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

    async fn delete_batch(
        &self,
        workspace: &str,
        id: &BatchId,
    ) -> Result<DeleteOutcome, StoreError> {
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let row = sqlx::query(concat!(
            "SELECT key, state FROM batches WHERE id = ?1 AND workspace = ?2 AND ",
            visible!()
        ))
        .bind(id.as_str())
        .bind(workspace)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error)?;
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
            .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(DeleteOutcome::Deleted)
    }

    async fn results_page_within(
        &self,
        batch_key: i64,
        after: Option<u32>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<ResultRow>, StoreError> {
        let Some((from, hi)) = results_range(batch_key, after) else {
            return Ok(Vec::new());
        };
        let sql = format!("{RESULTS_PAGE} {limit}");
        let query = sqlx::query(AssertSqlSafe(sql)).bind(from).bind(hi);
        // Row by row, so that the rows past the byte budget are never read.
        let mut rows = query.fetch(&self.pools.reader);
        let mut budget = paging::ByteBudget::new(max_bytes);
        let mut page = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(query_error)? {
            let row = ResultRow {
                index: rows::index_of(get(&row, "rid")?),
                custom_id: get(&row, "custom_id")?,
                body: get(&row, "body")?,
                outcome: get::<Option<i64>>(&row, "outcome")?
                    .map(rows::parse_outcome)
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

    async fn results_lines(
        &self,
        batch_key: i64,
        after: Option<u32>,
        limit: u32,
        unanswered: Option<&str>,
    ) -> Result<Option<ResultLines>, StoreError> {
        let Some((from, hi)) = results_range(batch_key, after) else {
            return Ok(None);
        };
        self.downloads.page(from, hi, limit, unanswered).await
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
        if u64::from(to) > RID_INDICES || u64::from(next) >= RID_INDICES {
            return Err(misuse(format!(
                "request indices {from}..{to} or {next} out of range"
            )));
        }
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        ensure_open_draft(&mut tx, draft).await?;
        let copied = sqlx::query(COPY_REQUESTS)
            .bind(rid(draft.key, next) - 1)
            .bind(rid(source_key, from))
            .bind(rid(source_key, 0) + i64::from(to))
            .bind(only.bits())
            .bind(unanswered.code())
            .execute(&mut *tx)
            .await
            .map_err(query_error)?
            .rows_affected();
        tx.commit().await.map_err(query_error)?;
        Ok(copied)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pools.reader)
            .await
            .map_err(query_error)?;
        Ok(())
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(STATS)
            .bind(IN_PROGRESS)
            .bind(CANCELING)
            .fetch_all(&self.pools.reader)
            .await
            .map_err(query_error)?;
        Ok(Stats::fold(rows))
    }
}

impl SqliteStore {
    /// The commit's transaction; `Err(waiting)` when the queue cap refuses it. The writer is
    /// the only one (`BEGIN IMMEDIATE`), so the count cannot change before the commit.
    async fn commit_batch_tx(
        &self,
        draft: &Draft,
        total: u64,
        queue_cap: u64,
    ) -> Result<Result<Batch, u64>, StoreError> {
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let (lo, hi) = rid_range(draft.key);
        // O(log n) sanity check that the caller appended what it commits: a batch whose last
        // request is missing could never complete.
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(rid) FROM requests WHERE rid >= ?1 AND rid < ?2")
                .bind(lo)
                .bind(hi)
                .fetch_one(&mut *tx)
                .await
                .map_err(query_error)?;
        let expected = rid(draft.key, (total - 1) as u32);
        if last != Some(expected) {
            return Err(misuse(format!(
                "draft {} holds requests up to index {:?}, committed with total {total}",
                draft.key,
                last.map(rows::index_of)
            )));
        }
        if queue_cap < u64::MAX {
            let waiting = queued(&mut *tx, &draft.batch.workspace).await?;
            if waiting.saturating_add(total) > queue_cap {
                return Ok(Err(waiting));
            }
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
        .map_err(query_error)?
        .ok_or_else(|| {
            batchd_store::draft_gone(format!("batch {} is not an open draft", draft.key))
        })?;
        let batch = batch_from_row(&row)?;
        tx.commit().await.map_err(query_error)?;
        Ok(Ok(batch))
    }

    /// At startup: drafts of a dead process will never be committed.
    pub(crate) async fn abandon_drafts(&self) -> Result<(), StoreError> {
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        sqlx::query("UPDATE batches SET deleted = 1 WHERE state = ?1 AND deleted = 0")
            .bind(DRAFT)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        // File drafts too: the purge reclaims their chunks.
        sqlx::query("UPDATE files SET state = ?1 WHERE state = ?2")
            .bind(FILE_DELETED)
            .bind(FILE_DRAFT)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        tx.commit().await.map_err(query_error)
    }

    async fn cursor_position(
        &self,
        sql: &'static str,
        workspace: &str,
        id: &BatchId,
    ) -> Result<(i64, i64), ListError> {
        let row = sqlx::query(sql)
            .bind(id.as_str())
            .bind(workspace)
            .fetch_optional(&self.pools.reader)
            .await
            .map_err(query_error)?
            .ok_or_else(|| ListError::UnknownCursor(id.clone()))?;
        Ok((get(&row, "created_at")?, get(&row, "key")?))
    }

    async fn cancel_batch_tx(
        &self,
        workspace: &str,
        id: &BatchId,
        now: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let Some(row) = sqlx::query(GET)
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
            "UPDATE batches SET state = ?1, cancel_initiated_at = ?2 WHERE key = ?3 RETURNING ",
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
}

/// The rid range `[from, hi)` of a batch's result rows after index `after`; `None` when no index
/// can follow `after`.
fn results_range(batch_key: i64, after: Option<u32>) -> Option<(i64, i64)> {
    let (lo, hi) = rid_range(batch_key);
    match after {
        None => Some((lo, hi)),
        Some(after) if u64::from(after) + 1 >= RID_INDICES => None,
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
