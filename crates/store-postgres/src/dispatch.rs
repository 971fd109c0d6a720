//! The dispatcher's side: claiming work fairly across processes, releasing and deferring it,
//! recording answers in groups, ending batches (completion, cancellation, expiry), retention and
//! reclaiming the rows of deleted batches.

use std::collections::{BTreeMap, HashMap, HashSet};

use batchd_domain::{BatchId, EndReason, Outcome, Timestamp};
use batchd_store::{Answer, Ended, Retry, Slot, Stats, StoreError, WorkItem};
use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use crate::PostgresStore;
use crate::db::db;
use crate::rows::{
    CANCELING, ENDED, IN_PROGRESS, count, end_reason_code, get, index, parse_betas, parse_id,
};

/// Most passes of one claim call. A pass gives every batch with work a share; a later pass only
/// matters when some batches had less than their share, leaving room for the others.
const CLAIM_PASSES: usize = 3;
/// Rows removed per purge transaction, whatever the caller's limit: keeps each one short.
const PURGE_ROWS_PER_TX: u64 = 2_000;

/// One claim pass in one statement (one round trip, one implicit transaction): picks the
/// in-progress batches with something to hand out, in serving order (the first batch of every
/// workspace, the one served longest ago, then the second of every workspace, and so on; a batch
/// whose requests are all in flight or waiting out a back-off takes no share), gives each an equal
/// share of `$2` (the earlier ones one more while the division leaves some over), claims that
/// many free requests of each in index order, skipping rows other processes are claiming right
/// now, stamps the served batches, and returns the claimed requests with their batch and request
/// data. `$1` now, `$3` this worker, `$4` batches to leave out (found short in an earlier pass).
///
/// * The batch row is locked FOR KEY SHARE: a cancel locks it FOR UPDATE, so whichever commits
///   first, the other sees its effect (no claim is added to a canceling batch); a record group's
///   tally update does not conflict with it, so claims and record groups no longer queue behind
///   each other.
/// * Stamps (`serving`, from one sequence, so the rotation is the same whichever process claims)
///   are taken in serving order; a stamp row another process is writing right now is skipped:
///   that process is stamping the same batch as served.
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
         WHERE b.state = 1 AND b.expires_at > $1 AND b.key <> ALL($4) \
             AND EXISTS (SELECT 1 FROM pending p WHERE p.batch_key = b.key \
                 AND p.worker IS NULL AND (p.not_before IS NULL OR p.not_before <= $1))) w \
         ORDER BY turn, last_served, key LIMIT $2) t, cfg WHERE cfg.v IS NOT NULL), \
     locked AS MATERIALIZED (SELECT b.key, b.id, b.betas, b.expires_at, c.pos, \
             ($2 + c.n - 1 - c.pos) / c.n AS share \
         FROM batches b JOIN cand c ON c.key = b.key \
         WHERE b.state = 1 AND b.expires_at > $1 FOR KEY SHARE OF b), \
     picked AS (SELECT p.batch_key, p.idx FROM locked l CROSS JOIN LATERAL \
         (SELECT batch_key, idx FROM pending WHERE batch_key = l.key AND worker IS NULL \
             AND (not_before IS NULL OR not_before <= $1) \
             ORDER BY idx LIMIT l.share FOR UPDATE SKIP LOCKED) p), \
     claimed AS (UPDATE pending p SET worker = $3 FROM picked \
         WHERE p.batch_key = picked.batch_key AND p.idx = picked.idx \
         RETURNING p.batch_key, p.idx, p.attempts, p.not_before), \
     turns AS MATERIALIZED (SELECT key, nextval('serve_turns') AS turn \
         FROM (SELECT key FROM locked ORDER BY pos) o), \
     stamped AS (UPDATE serving s SET last_served = t.turn FROM turns t \
         WHERE s.batch_key = t.key AND s.batch_key IN (SELECT x.batch_key FROM serving x \
             WHERE x.batch_key IN (SELECT key FROM turns) FOR UPDATE SKIP LOCKED)), \
     first AS (INSERT INTO serving (batch_key, last_served) SELECT t.key, t.turn FROM turns t \
         WHERE NOT EXISTS (SELECT 1 FROM serving s WHERE s.batch_key = t.key) \
         ON CONFLICT DO NOTHING) \
     SELECT c.batch_key, l.id, l.betas, l.expires_at, l.share, c.idx, c.attempts, c.not_before, \
         r.custom_id, r.params FROM claimed c JOIN locked l ON l.key = c.batch_key \
     JOIN requests r ON r.batch_key = c.batch_key AND r.idx = c.idx ORDER BY l.pos, c.idx";

/// Gives claims of this process back.
const RELEASE: &str = "UPDATE pending p SET worker = NULL \
     FROM UNNEST($1::bigint[], $2::int[]) AS u(k, i) \
     WHERE p.batch_key = u.k AND p.idx = u.i AND p.worker = $3";

/// Gives claims of this process back with their retry state (one statement per group).
const DEFER: &str = "UPDATE pending p SET worker = NULL, attempts = u.a, not_before = u.nb \
     FROM UNNEST($1::bigint[], $2::int[], $3::int[], $4::bigint[]) AS u(k, i, a, nb) \
     WHERE p.batch_key = u.k AND p.idx = u.i AND p.worker = $5";

/// Ends canceling batches that have nothing claimed any more (by any process).
const END_IDLE_CANCELING: &str = "UPDATE batches b SET state = $1, end_reason = $2, ended_at = $3 \
     WHERE b.key = ANY($4) AND b.state = $5 AND NOT EXISTS \
     (SELECT 1 FROM pending p WHERE p.batch_key = b.key AND p.worker IS NOT NULL) \
     RETURNING key, id";

/// The batches of a record group, locked in key order (so groups touching the same batches
/// never deadlock).
/// FOR NO KEY UPDATE, the lock the tally update takes anyway: it serialises record groups of a
/// batch and a cancel (FOR UPDATE), but not the claims (FOR KEY SHARE), which no longer wait for
/// a record group to commit.
const RECORD_BATCHES: &str = "SELECT key, id, state, deleted, total, succeeded, errored, \
     expires_at FROM batches WHERE key = ANY($1) ORDER BY key FOR NO KEY UPDATE";

/// Inserts a group's results, at most one per request, and takes the answered requests off the
/// queue; returns how many rows of each outcome were really new, per batch.
const RECORD: &str = "WITH ins AS (INSERT INTO results (batch_key, idx, outcome, body) \
         SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::smallint[], $4::text[]) \
         ON CONFLICT DO NOTHING RETURNING batch_key, outcome), \
     del AS (DELETE FROM pending p USING UNNEST($1::bigint[], $2::int[]) AS u(k, i) \
         WHERE p.batch_key = u.k AND p.idx = u.i) \
     SELECT batch_key, COUNT(*) FILTER (WHERE outcome = $5) AS succeeded, \
         COUNT(*) FILTER (WHERE outcome = $6) AS errored \
     FROM ins GROUP BY batch_key";

const CLAIMED_BATCHES: &str =
    "SELECT DISTINCT batch_key FROM pending WHERE batch_key = ANY($1) AND worker IS NOT NULL";

/// Writes the new tallies and end states of a group's batches in one statement.
const UPDATE_TALLIES: &str = "UPDATE batches b SET succeeded = u.s, errored = u.e, state = u.st, \
         end_reason = u.r, ended_at = u.at \
     FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::smallint[], $5::smallint[], \
         $6::bigint[]) AS u(k, s, e, st, r, at) \
     WHERE b.key = u.k";

pub(crate) const EXPIRE_DUE: &str = "UPDATE batches SET state = $1, end_reason = $2, ended_at = $3 \
     WHERE state IN (1, 2) AND expires_at <= $3 RETURNING key, id";

pub(crate) const CANCELING_KEYS: &str = "SELECT key FROM batches WHERE state = 2";

pub(crate) const NEXT_EXPIRY: &str = "SELECT MIN(expires_at) FROM batches WHERE state IN (1, 2)";

pub(crate) const STATS: &str = "SELECT state, COUNT(*), \
     COALESCE(SUM(total - succeeded - errored), 0)::bigint \
     FROM batches WHERE state IN (1, 2) GROUP BY state";

/// Ended batches created at or before the cutoff become archived.
pub(crate) const ARCHIVE_DUE: &str = "UPDATE batches SET archived_at = $1 \
     WHERE archived_at IS NULL AND NOT deleted AND created_at <= $2 AND state = $3";

pub(crate) const OLDEST_DELETED: &str =
    "SELECT key FROM batches WHERE deleted ORDER BY key LIMIT 1";

/// Archived batches whose rows are still there (they stay visible; only their rows go).
pub(crate) const OLDEST_ARCHIVED: &str = "SELECT key FROM batches \
     WHERE archived_at IS NOT NULL AND NOT rows_reclaimed ORDER BY key LIMIT 1";

/// One bounded step of reclaiming a batch's rows in each table.
const PURGE: [&str; 3] = [
    "DELETE FROM requests WHERE batch_key = $1 AND idx IN \
     (SELECT idx FROM requests WHERE batch_key = $1 ORDER BY idx LIMIT $2)",
    "DELETE FROM results WHERE batch_key = $1 AND idx IN \
     (SELECT idx FROM results WHERE batch_key = $1 ORDER BY idx LIMIT $2)",
    "DELETE FROM pending WHERE batch_key = $1 AND idx IN \
     (SELECT idx FROM pending WHERE batch_key = $1 ORDER BY idx LIMIT $2)",
];

fn outcome_code(outcome: Outcome) -> i16 {
    // Codes are small (see `Outcome::code`).
    outcome.code() as i16
}

fn slot_arrays(slots: impl Iterator<Item = Slot>) -> (Vec<i64>, Vec<i32>) {
    slots
        .map(|s| (s.batch_key, i32::try_from(s.index).unwrap_or(i32::MAX)))
        .unzip()
}

fn ended_rows(rows: &[PgRow], reason: EndReason) -> Result<Vec<(BatchId, EndReason)>, StoreError> {
    rows.iter()
        .map(|row| Ok((parse_id(get(row, "id")?)?, reason)))
        .collect()
}

/// A batch of a record group, as locked.
struct Locked {
    id: BatchId,
    state: i16,
    total: u64,
    succeeded: u64,
    errored: u64,
}

impl PostgresStore {
    // --- claims ------------------------------------------------------------------------------

    pub(crate) async fn claim_impl(
        &self,
        limit: usize,
        now: Timestamp,
        skip: &[i64],
    ) -> Result<Vec<WorkItem>, StoreError> {
        let me = self.me()?;
        let mut items = Vec::new();
        // Batches left out of a pass: those the caller skips, and those that had fewer free
        // requests than their share, so that a later pass shares what is left among the others.
        let mut short: Vec<i64> = skip.to_vec();
        for _ in 0..CLAIM_PASSES {
            let remaining = limit - items.len();
            if remaining == 0 {
                break;
            }
            let got = match self.claim_pass(me, remaining, now, &short).await {
                Ok(got) => got,
                // What is claimed already is handed out; the next call meets the error.
                Err(_) if !items.is_empty() => return Ok(items),
                Err(e) => return Err(e),
            };
            if got.is_empty() {
                break;
            }
            let mut per_batch: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
            for (item, share) in got {
                per_batch.entry(item.batch_key).or_insert((0, share)).0 += 1;
                items.push(item);
            }
            let before = short.len();
            short.extend(
                per_batch
                    .into_iter()
                    .filter(|(_, (n, share))| n < share)
                    .map(|(key, _)| key),
            );
            // Every batch served got its full share: more passes would only find the same.
            if short.len() == before {
                break;
            }
        }
        Ok(items)
    }

    /// One pass of [`CLAIM_ALL`]: the claimed items, each with its batch's share in this pass.
    async fn claim_pass(
        &self,
        me: i64,
        limit: usize,
        now: Timestamp,
        short: &[i64],
    ) -> Result<Vec<(WorkItem, usize)>, StoreError> {
        let rows = sqlx::query(CLAIM_ALL)
            .bind(now.as_micros())
            .bind(limit as i64)
            .bind(me)
            .bind(short)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        // Batch columns repeat on every row of the batch: parse them once per batch.
        let mut batch: Option<(i64, BatchId, Vec<String>, Timestamp)> = None;
        rows.iter()
            .map(|row| {
                let key: i64 = get(row, "batch_key")?;
                if batch.as_ref().is_none_or(|b| b.0 != key) {
                    batch = Some((
                        key,
                        parse_id(get(row, "id")?)?,
                        parse_betas(get(row, "betas")?)?,
                        Timestamp::from_micros(get(row, "expires_at")?),
                    ));
                }
                let (_, batch_id, betas, expires_at) = batch.as_ref().expect("set above");
                let share = usize::try_from(get::<i64>(row, "share")?).unwrap_or(0);
                Ok((
                    WorkItem {
                        batch_key: key,
                        batch_id: batch_id.clone(),
                        index: index(get(row, "idx")?)?,
                        custom_id: get(row, "custom_id")?,
                        params: get(row, "params")?,
                        betas: betas.clone(),
                        expires_at: *expires_at,
                        attempts: u32::try_from(get::<i32>(row, "attempts")?).unwrap_or(0),
                        not_before: get::<Option<i64>>(row, "not_before")?
                            .map(Timestamp::from_micros),
                    },
                    share,
                ))
            })
            .collect()
    }

    pub(crate) async fn release_impl(&self, slots: &[Slot]) -> Result<(), StoreError> {
        if slots.is_empty() {
            return Ok(());
        }
        let (keys, indices) = slot_arrays(slots.iter().copied());
        sqlx::query(RELEASE)
            .bind(&keys)
            .bind(indices)
            .bind(self.me()?)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        self.end_idle_canceling(keys, Timestamp::now()).await
    }

    pub(crate) async fn defer_impl(
        &self,
        retries: &[Retry],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if retries.is_empty() {
            return Ok(());
        }
        let (keys, indices) = slot_arrays(retries.iter().map(|r| r.slot));
        let attempts: Vec<i32> = retries
            .iter()
            .map(|r| i32::try_from(r.attempts).unwrap_or(i32::MAX))
            .collect();
        let not_before: Vec<i64> = retries.iter().map(|r| r.not_before.as_micros()).collect();
        sqlx::query(DEFER)
            .bind(&keys)
            .bind(indices)
            .bind(attempts)
            .bind(not_before)
            .bind(self.me()?)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        self.end_idle_canceling(keys, now).await
    }

    /// Ends canceling batches among `keys` whose last claim just came back, now rather than at
    /// the next maintenance pass (which also catches them if this fails).
    async fn end_idle_canceling(
        &self,
        mut keys: Vec<i64>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        keys.sort_unstable();
        keys.dedup();
        let mut conn = self.pool.acquire().await.map_err(db)?;
        end_idle_canceling(&mut conn, keys, now).await?;
        Ok(())
    }

    // --- results -----------------------------------------------------------------------------

    pub(crate) async fn record_impl(
        &self,
        answers: &[Answer],
        now: Timestamp,
    ) -> Result<Ended, StoreError> {
        if answers.is_empty() {
            return Ok(Ended::default());
        }
        let mut keys: Vec<i64> = answers.iter().map(|a| a.slot.batch_key).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let rows = sqlx::query(RECORD_BATCHES)
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let mut live: BTreeMap<i64, Locked> = BTreeMap::new();
        let mut ended = Vec::new();
        // (key, succeeded, errored, state, end reason, ended_at) rows for UPDATE_TALLIES.
        let mut updates: Vec<(i64, u64, u64, i16, Option<EndReason>)> = Vec::new();
        for row in &rows {
            let state: i16 = get(row, "state")?;
            // Drafts cannot have claims; ended and deleted batches drop late answers.
            if get::<bool>(row, "deleted")? || !(state == IN_PROGRESS || state == CANCELING) {
                continue;
            }
            let key: i64 = get(row, "key")?;
            let batch = Locked {
                id: parse_id(get(row, "id")?)?,
                state,
                total: count(get(row, "total")?, "total")?,
                succeeded: count(get(row, "succeeded")?, "succeeded")?,
                errored: count(get(row, "errored")?, "errored")?,
            };
            if Timestamp::from_micros(get(row, "expires_at")?) <= now {
                // Past its deadline: the batch expires now and the late answers are dropped,
                // whether or not maintenance got there first.
                updates.push((
                    key,
                    batch.succeeded,
                    batch.errored,
                    ENDED,
                    Some(EndReason::Expired),
                ));
                ended.push((batch.id, EndReason::Expired));
                continue;
            }
            live.insert(key, batch);
        }

        // Results to insert (first answer per request wins within the group too), and claims of
        // answers that carry no result (canceled/expired outcomes are never stored) to free.
        let mut seen = HashSet::new();
        let (mut ins_keys, mut ins_idx, mut ins_outcome, mut ins_body) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut unstored = Vec::new();
        for answer in answers {
            let slot = answer.slot;
            let Some(batch) = live.get(&slot.batch_key) else {
                continue;
            };
            if u64::from(slot.index) >= batch.total || !seen.insert(slot) {
                continue;
            }
            match answer.outcome {
                Outcome::Succeeded | Outcome::Errored => {
                    ins_keys.push(slot.batch_key);
                    ins_idx.push(i32::try_from(slot.index).unwrap_or(i32::MAX));
                    ins_outcome.push(outcome_code(answer.outcome));
                    ins_body.push(answer.body.as_str());
                }
                Outcome::Canceled | Outcome::Expired => unstored.push(slot),
            }
        }
        let mut new: HashMap<i64, (u64, u64)> = HashMap::new();
        if !ins_keys.is_empty() {
            let counted = sqlx::query(RECORD)
                .bind(ins_keys)
                .bind(ins_idx)
                .bind(ins_outcome)
                .bind(ins_body)
                .bind(outcome_code(Outcome::Succeeded))
                .bind(outcome_code(Outcome::Errored))
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            for row in &counted {
                new.insert(
                    get(row, "batch_key")?,
                    (
                        count(get(row, "succeeded")?, "succeeded")?,
                        count(get(row, "errored")?, "errored")?,
                    ),
                );
            }
        }
        if !unstored.is_empty() {
            let (keys, indices) = slot_arrays(unstored.into_iter());
            sqlx::query(RELEASE)
                .bind(keys)
                .bind(indices)
                .bind(self.me()?)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        // A canceling batch ends once no process holds a claim on it. Claims cannot be added to
        // it (a claim locks the batch row and needs it in progress), so this stays true.
        let canceling: Vec<i64> = live
            .iter()
            .filter(|(_, b)| b.state == CANCELING)
            .map(|(&k, _)| k)
            .collect();
        let still_claimed: HashSet<i64> = if canceling.is_empty() {
            HashSet::new()
        } else {
            sqlx::query_scalar::<_, i64>(CLAIMED_BATCHES)
                .bind(canceling)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?
                .into_iter()
                .collect()
        };
        for (key, batch) in live {
            let (new_succeeded, new_errored) = new.get(&key).copied().unwrap_or((0, 0));
            let succeeded = batch.succeeded + new_succeeded;
            let errored = batch.errored + new_errored;
            let reason = if succeeded + errored >= batch.total {
                Some(EndReason::Completed)
            } else if batch.state == CANCELING && !still_claimed.contains(&key) {
                Some(EndReason::Canceled)
            } else {
                None
            };
            if new_succeeded + new_errored == 0 && reason.is_none() {
                continue;
            }
            let state = if reason.is_some() { ENDED } else { batch.state };
            updates.push((key, succeeded, errored, state, reason));
            if let Some(reason) = reason {
                ended.push((batch.id, reason));
            }
        }
        if !updates.is_empty() {
            let mut columns = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for (key, succeeded, errored, state, reason) in updates {
                columns.0.push(key);
                columns.1.push(succeeded as i64);
                columns.2.push(errored as i64);
                columns.3.push(state);
                columns.4.push(reason.map(end_reason_code));
                columns.5.push(reason.map(|_| now.as_micros()));
            }
            sqlx::query(UPDATE_TALLIES)
                .bind(columns.0)
                .bind(columns.1)
                .bind(columns.2)
                .bind(columns.3)
                .bind(columns.4)
                .bind(columns.5)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(Ended { batches: ended })
    }

    // --- maintenance -------------------------------------------------------------------------

    pub(crate) async fn finish_due_impl(&self, now: Timestamp) -> Result<Ended, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let expired = sqlx::query(EXPIRE_DUE)
            .bind(ENDED)
            .bind(end_reason_code(EndReason::Expired))
            .bind(now.as_micros())
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let canceling: Vec<i64> = sqlx::query_scalar(CANCELING_KEYS)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let canceled = end_idle_canceling(&mut tx, canceling, now).await?;
        tx.commit().await.map_err(db)?;
        let mut batches = ended_rows(&expired, EndReason::Expired)?;
        batches.extend(ended_rows(&canceled, EndReason::Canceled)?);
        Ok(Ended { batches })
    }

    pub(crate) async fn canceling_impl(&self) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar(CANCELING_KEYS)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    pub(crate) async fn next_expiry_impl(&self) -> Result<Option<Timestamp>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(NEXT_EXPIRY)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(at.map(Timestamp::from_micros))
    }

    pub(crate) async fn stats_impl(&self) -> Result<Stats, StoreError> {
        let rows: Vec<(i16, i64, i64)> = sqlx::query_as(STATS)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut stats = Stats::default();
        for (state, batches, unanswered) in rows {
            let batches = u64::try_from(batches).unwrap_or(0);
            if state == CANCELING {
                stats.canceling = batches;
            } else {
                stats.in_progress = batches;
            }
            stats.unanswered += u64::try_from(unanswered).unwrap_or(0);
        }
        Ok(stats)
    }

    pub(crate) async fn archive_due_impl(
        &self,
        cutoff: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(ARCHIVE_DUE)
            .bind(now.as_micros())
            .bind(cutoff.as_micros())
            .bind(ENDED)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected())
    }

    pub(crate) async fn purge_deleted_impl(&self, limit: u32) -> Result<u64, StoreError> {
        let mut removed = 0;
        while removed < u64::from(limit) {
            let step = (u64::from(limit) - removed).min(PURGE_ROWS_PER_TX);
            let n = self.purge_step(step).await?;
            if n == 0 {
                break;
            }
            removed += n;
        }
        Ok(removed)
    }

    /// Removes up to `step` rows of the oldest deleted batch (or, when none is left, of the
    /// oldest archived one), then its batch row once nothing else of it is left (an archived
    /// batch keeps its row and is only marked reclaimed). One short transaction. Processes
    /// purging the same batch at once only wait for each other's row locks.
    async fn purge_step(&self, step: u64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut target = None;
        for (query, deleted) in [(OLDEST_DELETED, true), (OLDEST_ARCHIVED, false)] {
            let key: Option<i64> = sqlx::query_scalar(query)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if let Some(key) = key {
                target = Some((key, deleted));
                break;
            }
        }
        let Some((key, deleted)) = target else {
            return Ok(0);
        };
        let mut removed = 0;
        for table in PURGE {
            if removed < step {
                removed += sqlx::query(table)
                    .bind(key)
                    .bind((step - removed) as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?
                    .rows_affected();
            }
        }
        if removed < step {
            // Fewer rows than allowed: every table is empty for it now, the batch row goes last.
            let last = if deleted {
                "DELETE FROM batches WHERE key = $1"
            } else {
                "UPDATE batches SET rows_reclaimed = true WHERE key = $1"
            };
            removed += sqlx::query(last)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
            // Its serving stamp (not counted: it is bookkeeping, not the batch's data).
            sqlx::query("DELETE FROM serving WHERE batch_key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(removed)
    }
}

/// Ends the canceling batches among `keys` that have nothing claimed any more (by any process).
async fn end_idle_canceling(
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
        .map_err(db)
}
