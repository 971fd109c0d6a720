//! Claiming work across processes in one statement per pass, and giving claims back (released,
//! or deferred with their retry state), ending canceling batches whose last claim came back.
//! OpenAI requests' bodies are read back from their input file's pieces
//! (`batchd_store::files::fill_bodies`).

use batchd_domain::openai::Endpoint;
use batchd_domain::{ApiVersion, BatchId, EndReason, Timestamp};
use batchd_store::{FileStore as _, Slot, StoreError, WorkItem, files};
use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use crate::PostgresStore;
use crate::db::{begin_claim, query_error};
use crate::rows::{
    CANCELING, ENDED, end_reason_code, get, index, parse_betas, parse_endpoint, parse_id,
    parse_version,
};

/// One claim pass in one statement (in a transaction of its own, planned generically:
/// `db::begin_claim`): picks the
/// in-progress batches with something to hand out, in serving order (the first batch of every
/// workspace, the one served longest ago, then the second of every workspace, and so on; a batch
/// whose requests are all in flight or waiting out a back-off takes no share), gives each an equal
/// share of `$2` (the earlier ones one more while the division leaves some over), claims that
/// many free requests of each in index order, skipping rows other processes are claiming right
/// now, stamps the served batches, and returns the claimed requests with their batch and request
/// data. `$1` now, `$3` this worker, `$4` batches to leave out (found short in an earlier pass).
///
/// * A batch has something to hand out when a probe of its free rows finds one: a `LATERAL`
///   subquery in index order with `LIMIT 1`, an index scan of `pending_free` that stops at the
///   first. As `EXISTS` it was planned, once the queue had statistics, as a hash semi join over
///   a sequential scan of all the batch's free rows (63,000 of them, 8.7 ms for one claim);
///   without the `ORDER BY`, as a sequential scan that the planner expected to stop early, but
///   a batch's rows sit together in the heap: at 10,000,000 stored requests
///   (`scripts/pg-explain.sh`) 2,450,000 rows read per batch, 4.8 s for one claim, against
///   3.4 ms with it.
/// * The batch row is locked FOR KEY SHARE: a cancel locks it FOR UPDATE, so whichever commits
///   first, the other sees its effect (no claim is added to a canceling batch); a record group's
///   tally update does not conflict with it, so claims and record groups no longer queue behind
///   each other.
/// * Stamps (`serving`, from one sequence, so the rotation is the same whichever process claims)
///   are taken in serving order; a stamp row another process is writing right now is skipped:
///   that process is stamping the same batch as served.
/// * The picked rows are updated by their `ctid` (a TID scan), not by joining their keys: the
///   planner cannot know the shares and guessed 120,000 picked rows, so at 10,000,000 stored
///   requests it hashed the whole queue (5,000,000 rows) for a 256-request claim: 7.2 s instead
///   of milliseconds (`scripts/pg-explain.sh`). A picked row is locked by this statement, so
///   its `ctid` is the version the update finds.
/// * `synchronous_commit` is off for this transaction only. A claim lost with a PostgreSQL crash
///   just makes its requests free again: if the process that sent them records their answers,
///   the results table's primary key still keeps one result per request, and nothing a client
///   was told depends on a claim. (A later durable commit flushes it anyway: WAL is flushed in
///   order.)
pub(crate) const CLAIM_ALL: &str = "WITH cfg AS MATERIALIZED \
         (SELECT set_config('synchronous_commit', 'off', true) AS v), \
     cand AS MATERIALIZED (SELECT key, row_number() OVER (ORDER BY turn, last_served, key) - 1 \
             AS pos, COUNT(*) OVER () AS n FROM (SELECT key, last_served, turn FROM \
         (SELECT b.key, COALESCE(s.last_served, 0) AS last_served, row_number() OVER \
             (PARTITION BY b.workspace ORDER BY COALESCE(s.last_served, 0), b.key) AS turn \
         FROM batches b LEFT JOIN serving s ON s.batch_key = b.key \
         CROSS JOIN LATERAL (SELECT 1 FROM pending p WHERE p.batch_key = b.key \
                 AND p.worker IS NULL AND (p.not_before IS NULL OR p.not_before <= $1) \
                 ORDER BY p.idx LIMIT 1) f \
         WHERE b.state = 1 AND b.expires_at > $1 AND b.key <> ALL($4)) w \
         ORDER BY turn, last_served, key LIMIT $2) t, cfg WHERE cfg.v IS NOT NULL), \
     locked AS MATERIALIZED (SELECT b.key, b.id, b.workspace, b.betas, b.api_version, b.user_profile_id, \
             b.endpoint, b.expires_at, c.pos, \
             ($2 + c.n - 1 - c.pos) / c.n AS share \
         FROM batches b JOIN cand c ON c.key = b.key \
         WHERE b.state = 1 AND b.expires_at > $1 FOR KEY SHARE OF b), \
     picked AS (SELECT p.row FROM locked l CROSS JOIN LATERAL \
         (SELECT ctid AS row FROM pending WHERE batch_key = l.key AND worker IS NULL \
             AND (not_before IS NULL OR not_before <= $1) \
             ORDER BY idx LIMIT l.share FOR UPDATE SKIP LOCKED) p), \
     claimed AS (UPDATE pending p SET worker = $3 \
         WHERE p.ctid = ANY(ARRAY(SELECT row FROM picked)) \
         RETURNING p.batch_key, p.idx, p.attempts, p.not_before), \
     turns AS MATERIALIZED (SELECT key, nextval('serve_turns') AS turn \
         FROM (SELECT key FROM locked ORDER BY pos) o), \
     stamped AS (UPDATE serving s SET last_served = t.turn FROM turns t \
         WHERE s.batch_key = t.key AND s.batch_key IN (SELECT x.batch_key FROM serving x \
             WHERE x.batch_key IN (SELECT key FROM turns) FOR UPDATE SKIP LOCKED)), \
     first AS (INSERT INTO serving (batch_key, last_served) SELECT t.key, t.turn FROM turns t \
         WHERE NOT EXISTS (SELECT 1 FROM serving s WHERE s.batch_key = t.key) \
         ON CONFLICT DO NOTHING) \
     SELECT c.batch_key, l.id, l.workspace, l.betas, l.api_version, l.user_profile_id, l.endpoint, \
         l.expires_at, l.share, c.idx, c.attempts, c.not_before, \
         r.custom_id, r.params, r.body_file, r.body_at, r.body_len FROM claimed c JOIN locked l ON l.key = c.batch_key \
     JOIN requests r ON r.batch_key = c.batch_key AND r.idx = c.idx ORDER BY l.pos, c.idx";

/// Gives claims of this process back.
pub(crate) const RELEASE: &str = "UPDATE pending p SET worker = NULL \
     FROM UNNEST($1::bigint[], $2::int[]) AS u(k, i) \
     WHERE p.batch_key = u.k AND p.idx = u.i AND p.worker = $3";

/// Gives claims of this process back with their retry state (one statement per group).
pub(crate) const DEFER: &str = "UPDATE pending p SET worker = NULL, attempts = u.a, not_before = u.nb \
     FROM UNNEST($1::bigint[], $2::int[], $3::int[], $4::bigint[]) AS u(k, i, a, nb) \
     WHERE p.batch_key = u.k AND p.idx = u.i AND p.worker = $5";

/// Ends canceling batches that have nothing claimed any more (by any process).
/// `ended_at` is on the batch's workspace's clock.
const END_IDLE_CANCELING: &str = concat!(
    "UPDATE batches b SET state = $1, end_reason = $2, ended_at = ",
    ended_at!("$3", "b"),
    " WHERE b.key = ANY($4) AND b.state = $5 AND NOT EXISTS \
     (SELECT 1 FROM pending p WHERE p.batch_key = b.key AND p.worker IS NOT NULL) \
     RETURNING key, id"
);

pub(crate) fn slot_arrays(slots: impl Iterator<Item = Slot>) -> (Vec<i64>, Vec<i32>) {
    slots
        .map(|s| (s.batch_key, i32::try_from(s.index).unwrap_or(i32::MAX)))
        .unzip()
}

impl PostgresStore {
    /// One pass of [`CLAIM_ALL`]: the claimed items, each with its batch's share in this pass.
    pub(crate) async fn claim_pass(
        &self,
        me: i64,
        limit: usize,
        now: Timestamp,
        short: &[i64],
    ) -> Result<Vec<(WorkItem, usize)>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(query_error)?;
        let mut tx = begin_claim(&mut conn).await?;
        let rows = sqlx::query(CLAIM_ALL)
            .bind(now.as_micros())
            .bind(limit as i64)
            .bind(me)
            .bind(short)
            .fetch_all(&mut *tx)
            .await
            .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        // Back to the pool before OpenAI bodies are read: those reads take connections too.
        drop(conn);
        // Batch columns repeat on every row of the batch: parse them once per batch.
        struct ClaimedBatch {
            key: i64,
            id: BatchId,
            workspace: String,
            betas: Vec<String>,
            api_version: ApiVersion,
            user_profile_id: Option<String>,
            endpoint: Endpoint,
            expires_at: Timestamp,
        }
        let mut batch: Option<ClaimedBatch> = None;
        let mut sources = Vec::with_capacity(rows.len());
        let mut items = rows
            .iter()
            .map(|row| {
                let key: i64 = get(row, "batch_key")?;
                if batch.as_ref().is_none_or(|b| b.key != key) {
                    batch = Some(ClaimedBatch {
                        key,
                        id: parse_id(get(row, "id")?)?,
                        workspace: get(row, "workspace")?,
                        betas: parse_betas(get(row, "betas")?)?,
                        api_version: parse_version(get(row, "api_version")?)?,
                        user_profile_id: get(row, "user_profile_id")?,
                        endpoint: parse_endpoint(i64::from(get::<i16>(row, "endpoint")?))?,
                        expires_at: Timestamp::from_micros(get(row, "expires_at")?),
                    });
                }
                let b = batch.as_ref().expect("set above");
                let share = usize::try_from(get::<i64>(row, "share")?).unwrap_or(0);
                sources.push(files::source_of(
                    get(row, "body_file")?,
                    get(row, "body_at")?,
                    get::<Option<i32>>(row, "body_len")?.map(i64::from),
                )?);
                Ok((
                    WorkItem {
                        batch_key: key,
                        batch_id: b.id.clone(),
                        workspace: b.workspace.clone(),
                        index: index(get(row, "idx")?)?,
                        custom_id: get(row, "custom_id")?,
                        params: get(row, "params")?,
                        betas: b.betas.clone(),
                        api_version: b.api_version,
                        user_profile_id: b.user_profile_id.clone(),
                        endpoint: b.endpoint,
                        expires_at: b.expires_at,
                        attempts: u32::try_from(get::<i32>(row, "attempts")?).unwrap_or(0),
                        not_before: get::<Option<i64>>(row, "not_before")?
                            .map(Timestamp::from_micros),
                    },
                    share,
                ))
            })
            .collect::<Result<Vec<(WorkItem, usize)>, StoreError>>()?;
        // OpenAI bodies are read back from their input file's pieces.
        let (mut claimed, shares): (Vec<WorkItem>, Vec<usize>) = items.drain(..).unzip();
        files::fill_bodies(&mut claimed, &sources, &self.pieces, |file_key, seq| {
            self.file_chunk(file_key, seq)
        })
        .await?;
        Ok(claimed.into_iter().zip(shares).collect())
    }

    /// Ends canceling batches among `keys` whose last claim just came back, now rather than at
    /// the next maintenance pass (which also catches them if this fails).
    pub(crate) async fn end_idle_canceling(
        &self,
        mut keys: Vec<i64>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        keys.sort_unstable();
        keys.dedup();
        let mut conn = self.pool.acquire().await.map_err(query_error)?;
        end_idle_canceling(&mut conn, keys, now).await?;
        Ok(())
    }
}

/// Ends the canceling batches among `keys` that have nothing claimed any more (by any process).
pub(crate) async fn end_idle_canceling(
    conn: &mut PgConnection,
    keys: Vec<i64>,
    now: Timestamp,
) -> Result<Vec<PgRow>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query(END_IDLE_CANCELING)
        .bind(ENDED)
        .bind(end_reason_code(EndReason::Canceled))
        .bind(now.as_micros())
        .bind(keys)
        .bind(CANCELING)
        .fetch_all(conn)
        .await
        .map_err(query_error)
}
