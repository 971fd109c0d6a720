//! The dispatcher's side: claiming work fairly, releasing it, recording answers in groups, ending
//! batches (completion, cancellation, expiry), and reclaiming the rows of deleted batches.

use std::collections::{BTreeMap, HashSet};

use batchd_domain::{BatchId, EndReason, Outcome, Timestamp};
use batchd_store::{Answer, Ended, Retry, Slot, Stats, StoreError, WorkItem};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Connection as _, SqliteConnection};

use crate::SqliteStore;
use crate::batches::{insert_sizes, values_sql};
use crate::claims::{BatchInfo, Handout, Recording, Take, Unended};
use crate::db::{BEGIN_IMMEDIATE, Durability, db, set_durability};
use crate::rows::{
    CANCELING, ENDED, IN_PROGRESS, count, get, index_of, parse_betas, parse_id, rid, rid_range,
};

/// Most passes of one claim call. A pass gives every batch with work a share; a later pass only
/// matters when some batches had less than their share, leaving room for the others.
const CLAIM_PASSES: usize = 3;
/// Rows removed per purge transaction, whatever the caller's limit: keeps each one short.
const PURGE_ROWS_PER_TX: u64 = 2_000;

pub(crate) const CLAIM_FRESH: &str = "SELECT r.rid, r.custom_id, r.params, \
     a.attempts, a.not_before FROM requests r LEFT JOIN attempts a ON a.rid = r.rid \
     WHERE r.rid >= ?1 AND r.rid < ?2 \
     AND NOT EXISTS (SELECT 1 FROM results s WHERE s.rid = r.rid) \
     ORDER BY r.rid LIMIT ?3";

/// Released requests, by a JSON array of rids (one static statement for any number of them).
pub(crate) const CLAIM_RELEASED: &str = "SELECT r.rid, r.custom_id, r.params, \
     a.attempts, a.not_before FROM requests r LEFT JOIN attempts a ON a.rid = r.rid \
     WHERE r.rid IN (SELECT value FROM json_each(?1)) \
     AND NOT EXISTS (SELECT 1 FROM results s WHERE s.rid = r.rid) \
     ORDER BY r.rid";

pub(crate) const UNENDED: &str = "SELECT key, id, workspace, state, total, expires_at, betas FROM batches WHERE state IN (?1, ?2)";

pub(crate) const STATS: &str = "SELECT state, COUNT(*), COALESCE(SUM(total - succeeded - errored), 0) \
     FROM batches WHERE state IN (?1, ?2) GROUP BY state";

pub(crate) const NEXT_EXPIRY: &str = "SELECT MIN(expires_at) FROM batches WHERE state IN (?1, ?2)";

pub(crate) const EXPIRE_DUE: &str = "UPDATE batches SET state = ?1, end_reason = ?2, ended_at = ?3 \
     WHERE state IN (?4, ?5) AND expires_at <= ?3 RETURNING key, id";

pub(crate) const CANCELING_BATCHES: &str = "SELECT key, id FROM batches WHERE state = ?1";

pub(crate) const CANCELING_KEYS: &str = "SELECT key FROM batches WHERE state = ?1";

pub(crate) const OLDEST_DELETED: &str =
    "SELECT key FROM batches WHERE deleted = 1 ORDER BY key LIMIT 1";

/// Archived batches whose rows are still there (they stay visible; only their rows go).
pub(crate) const OLDEST_ARCHIVED: &str = "SELECT key FROM batches \
     WHERE archived_at IS NOT NULL AND rows_reclaimed = 0 ORDER BY key LIMIT 1";

/// Ended batches created at or before the cutoff become archived.
pub(crate) const ARCHIVE_DUE: &str = "UPDATE batches SET archived_at = ?1 \
     WHERE archived_at IS NULL AND deleted = 0 AND created_at <= ?2 AND state = ?3";

pub(crate) const PURGE_REQUESTS: &str = "DELETE FROM requests WHERE rid IN \
     (SELECT rid FROM requests WHERE rid >= ?1 AND rid < ?2 ORDER BY rid LIMIT ?3)";

pub(crate) const PURGE_RESULTS: &str = "DELETE FROM results WHERE rid IN \
     (SELECT rid FROM results WHERE rid >= ?1 AND rid < ?2 ORDER BY rid LIMIT ?3)";

pub(crate) const PURGE_ATTEMPTS: &str = "DELETE FROM attempts WHERE rid IN \
     (SELECT rid FROM attempts WHERE rid >= ?1 AND rid < ?2 ORDER BY rid LIMIT ?3)";

/// Stores a request's attempt count; one static statement for a whole group (a JSON array of
/// `[rid, attempts, not_before]`).
pub(crate) const DEFER: &str = "INSERT INTO attempts (rid, attempts, not_before) \
     SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1) WHERE true \
     ON CONFLICT (rid) DO UPDATE SET attempts = excluded.attempts, not_before = excluded.not_before";

pub(crate) const RECORD_BATCH: &str =
    "SELECT id, state, deleted, total, succeeded, errored, expires_at FROM batches WHERE key = ?1";

const END: &str = "UPDATE batches SET state = ?1, end_reason = ?2, ended_at = ?3 WHERE key = ?4";

/// A batch ended by this call: its key (for the lease bookkeeping) and what the caller sees.
type EndedBatch = (i64, BatchId, EndReason);

fn report(ended: &[EndedBatch]) -> Ended {
    Ended {
        batches: ended
            .iter()
            .map(|(_, id, reason)| (id.clone(), *reason))
            .collect(),
    }
}

async fn end_batch(
    conn: &mut SqliteConnection,
    key: i64,
    reason: EndReason,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(END)
        .bind(ENDED)
        .bind(reason.code())
        .bind(now.as_micros())
        .bind(key)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

impl SqliteStore {
    // --- claims ------------------------------------------------------------------------------

    pub(crate) async fn claim_impl(
        &self,
        limit: usize,
        now: Timestamp,
        skip: &[i64],
    ) -> Result<Vec<WorkItem>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let _serial = self.claim_serial.lock().await;
        self.rebuild_claims().await?;
        let mut handout = Handout::new(&self.claims);
        for _ in 0..CLAIM_PASSES {
            let workspaces = self.claims().candidates(now, skip);
            let before = handout.items.len();
            // An equal share of what is left for each workspace still in the round, and of that
            // an equal share for each of its batches, so a small batch behind a huge one is
            // served in the first call after it is created.
            for (w, batches) in workspaces.iter().enumerate() {
                let workspace_share = (limit - handout.items.len()).div_ceil(workspaces.len() - w);
                let workspace_end = handout.items.len() + workspace_share;
                for (i, &key) in batches.iter().enumerate() {
                    let remaining = workspace_end.min(limit) - handout.items.len();
                    if remaining == 0 {
                        break;
                    }
                    let share = remaining.div_ceil(batches.len() - i);
                    if let Err(e) = self.claim_from(key, share, now, &mut handout.items).await {
                        if handout.items.is_empty() {
                            return Err(e);
                        }
                        // What is claimed already is handed out; the next call meets the error.
                        return Ok(handout.finish());
                    }
                }
            }
            let got = handout.items.len();
            if got == limit || got == before {
                break;
            }
        }
        Ok(handout.finish())
    }

    /// Claims up to `share` requests of one batch: released ones first, then fresh ones from
    /// the cursor, skipping requests that already have a result.
    async fn claim_from(
        &self,
        key: i64,
        share: usize,
        now: Timestamp,
        items: &mut Vec<WorkItem>,
    ) -> Result<(), StoreError> {
        let Some(take) = self.claims().take(key, share, now) else {
            return Ok(());
        };
        let (released, fresh, asked) = match self.read_claimable(key, share, &take).await {
            Ok(read) => read,
            Err(e) => {
                self.claims().unreserve(key, &take.released);
                return Err(e);
            }
        };
        let released_idx: Vec<u32> = released.iter().map(|w| w.index).collect();
        let fresh_idx: Vec<u32> = fresh.iter().map(|w| w.index).collect();
        if self.claims().claimed(key, &released_idx, &fresh_idx, asked) {
            items.extend(released);
            items.extend(fresh);
        }
        Ok(())
    }

    async fn read_claimable(
        &self,
        key: i64,
        share: usize,
        take: &Take,
    ) -> Result<(Vec<WorkItem>, Vec<WorkItem>, usize), StoreError> {
        let reader = &self.pools.reader;
        let work = |rows: Vec<SqliteRow>| -> Result<Vec<WorkItem>, StoreError> {
            rows.iter()
                .map(|row| {
                    Ok(WorkItem {
                        batch_key: key,
                        batch_id: take.info.id.clone(),
                        index: index_of(get(row, "rid")?),
                        custom_id: get(row, "custom_id")?,
                        params: get(row, "params")?,
                        betas: take.info.betas.clone(),
                        expires_at: take.info.expires_at,
                        attempts: count(
                            get::<Option<i64>>(row, "attempts")?.unwrap_or(0),
                            "attempts",
                        )?
                        .try_into()
                        .unwrap_or(u32::MAX),
                        not_before: get::<Option<i64>>(row, "not_before")?
                            .map(Timestamp::from_micros),
                    })
                })
                .collect()
        };
        let released = if take.released.is_empty() {
            Vec::new()
        } else {
            let rids: Vec<String> = take
                .released
                .iter()
                .map(|&i| rid(key, i).to_string())
                .collect();
            let rows = sqlx::query(CLAIM_RELEASED)
                .bind(format!("[{}]", rids.join(",")))
                .fetch_all(reader)
                .await
                .map_err(db)?;
            work(rows)?
        };
        let want = share.saturating_sub(released.len());
        let asked = if take.next < take.info.total { want } else { 0 };
        let fresh = if asked == 0 {
            Vec::new()
        } else {
            let rows = sqlx::query(CLAIM_FRESH)
                .bind(rid(key, take.next))
                .bind(rid(key, take.info.total))
                .bind(asked as i64)
                .fetch_all(reader)
                .await
                .map_err(db)?;
            work(rows)?
        };
        Ok((released, fresh, asked))
    }

    /// Re-reads the unended batches when the in-memory list may be stale (always at startup).
    async fn rebuild_claims(&self) -> Result<(), StoreError> {
        // A concurrent change makes a rebuild moot; try again a couple of times, then serve
        // from the current list and rebuild on the next claim.
        for _ in 0..3 {
            let Some(generation) = self.claims().needs_rebuild() else {
                return Ok(());
            };
            let rows = sqlx::query(UNENDED)
                .bind(IN_PROGRESS)
                .bind(CANCELING)
                .fetch_all(&self.pools.reader)
                .await
                .map_err(db)?;
            let unended = rows
                .iter()
                .map(|row| {
                    let total = count(get(row, "total")?, "total")?;
                    Ok(Unended {
                        key: get(row, "key")?,
                        canceling: get::<i64>(row, "state")? == CANCELING,
                        info: BatchInfo {
                            id: parse_id(get(row, "id")?)?,
                            workspace: get(row, "workspace")?,
                            betas: parse_betas(get(row, "betas")?)?,
                            expires_at: Timestamp::from_micros(get(row, "expires_at")?),
                            total: u32::try_from(total)
                                .map_err(|_| StoreError::Corrupt(format!("batch total {total}")))?,
                        },
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            if self.claims().rebuild(generation, unended) {
                return Ok(());
            }
        }
        Ok(())
    }

    pub(crate) async fn release_impl(&self, slots: &[Slot]) -> Result<(), StoreError> {
        let drained = self.claims().release(slots);
        self.end_drained(drained).await
    }

    pub(crate) async fn defer_impl(&self, retries: &[Retry]) -> Result<(), StoreError> {
        if retries.is_empty() {
            return Ok(());
        }
        let rows: Vec<[i64; 3]> = retries
            .iter()
            .map(|r| {
                [
                    rid(r.slot.batch_key, r.slot.index),
                    i64::from(r.attempts),
                    r.not_before.as_micros(),
                ]
            })
            .collect();
        let json = serde_json::to_string(&rows).map_err(|e| StoreError::Other(Box::new(e)))?;
        {
            let mut conn = self.pools.writer(Durability::Normal).await?;
            let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
            sqlx::query(DEFER)
                .bind(json)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
        }
        let drained = self.claims().defer(retries);
        self.end_drained(drained).await
    }

    /// Ends canceling batches whose last claim just came back, now rather than at the next
    /// maintenance pass (which also catches them if this fails).
    async fn end_drained(&self, drained: Vec<i64>) -> Result<(), StoreError> {
        if drained.is_empty() {
            return Ok(());
        }
        let stale = self.stale_unless_done();
        let now = Timestamp::now();
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        let mut ended = Vec::new();
        for key in drained {
            let done = sqlx::query(concat!(
                "UPDATE batches SET state = ?1, end_reason = ?2, ended_at = ?3 ",
                "WHERE key = ?4 AND state = ?5"
            ))
            .bind(ENDED)
            .bind(EndReason::Canceled.code())
            .bind(now.as_micros())
            .bind(key)
            .bind(CANCELING)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if done.rows_affected() > 0 {
                ended.push(key);
            }
        }
        tx.commit().await.map_err(db)?;
        self.claims().ended(ended);
        stale.done();
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
        let slots: Vec<Slot> = answers.iter().map(|a| a.slot).collect();
        let mut by_batch: BTreeMap<i64, Vec<&Answer>> = BTreeMap::new();
        for answer in answers {
            by_batch
                .entry(answer.slot.batch_key)
                .or_default()
                .push(answer);
        }
        let recording = Recording::new(&self.claims, slots);
        match self.record_tx(by_batch, now).await {
            Ok(ended) => {
                recording.recorded(ended.iter().map(|(key, _, _)| *key));
                Ok(report(&ended))
            }
            Err(e) => {
                recording.failed();
                Err(e)
            }
        }
    }

    async fn record_tx(
        &self,
        by_batch: BTreeMap<i64, Vec<&Answer>>,
        now: Timestamp,
    ) -> Result<Vec<EndedBatch>, StoreError> {
        let mut conn = self.pools.writer.acquire().await.map_err(db)?;
        let durability = if may_end_a_batch(&mut conn, &by_batch, now).await? {
            Durability::Full
        } else {
            Durability::Normal
        };
        set_durability(&mut conn, durability).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        let mut ended = Vec::new();
        for (key, answers) in by_batch {
            // Drafts cannot have claims; ended and deleted batches drop late answers.
            let Some(row) = live_batch(&mut tx, key).await? else {
                continue;
            };
            let state: i64 = get(&row, "state")?;
            let id = parse_id(get(&row, "id")?)?;
            if Timestamp::from_micros(get(&row, "expires_at")?) <= now {
                // Past its deadline: the batch expires now and the late answers are dropped,
                // whether or not maintenance got there first.
                end_batch(&mut tx, key, EndReason::Expired, now).await?;
                ended.push((key, id, EndReason::Expired));
                continue;
            }
            let total = count(get(&row, "total")?, "total")?;
            let answering: HashSet<u32> = answers.iter().map(|a| a.slot.index).collect();
            let (mut succeeded, mut errored) = (Vec::new(), Vec::new());
            for answer in answers {
                if u64::from(answer.slot.index) >= total {
                    continue;
                }
                match answer.outcome {
                    Outcome::Succeeded => succeeded.push(answer),
                    Outcome::Errored => errored.push(answer),
                    // Canceled and expired are what a batch's end reason says about requests
                    // without a result; they are never stored, so such an answer is dropped.
                    Outcome::Canceled | Outcome::Expired => {}
                }
            }
            let new_succeeded = insert_results(&mut tx, Outcome::Succeeded, succeeded).await?;
            let new_errored = insert_results(&mut tx, Outcome::Errored, errored).await?;
            let succeeded = count(get(&row, "succeeded")?, "succeeded")? + new_succeeded;
            let errored = count(get(&row, "errored")?, "errored")? + new_errored;
            let reason = if succeeded + errored >= total {
                Some(EndReason::Completed)
            } else if state == CANCELING {
                // No claim can be added to a canceling batch, so this cannot go stale before
                // the commit.
                let idle = self.claims().idle_after(key, &answering);
                idle.then_some(EndReason::Canceled)
            } else {
                None
            };
            if new_succeeded + new_errored == 0 && reason.is_none() {
                continue;
            }
            sqlx::query(
                "UPDATE batches SET succeeded = ?1, errored = ?2, state = ?3, end_reason = ?4, \
                 ended_at = ?5 WHERE key = ?6",
            )
            .bind(succeeded as i64)
            .bind(errored as i64)
            .bind(if reason.is_some() { ENDED } else { state })
            .bind(reason.map(EndReason::code))
            .bind(reason.map(|_| now.as_micros()))
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if let Some(reason) = reason {
                ended.push((key, id, reason));
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(ended)
    }

    // --- maintenance -------------------------------------------------------------------------

    pub(crate) async fn finish_due_impl(&self, now: Timestamp) -> Result<Ended, StoreError> {
        let stale = self.stale_unless_done();
        let ended = self.finish_due_tx(now).await?;
        self.claims().ended(ended.iter().map(|(key, _, _)| *key));
        stale.done();
        Ok(report(&ended))
    }

    async fn finish_due_tx(&self, now: Timestamp) -> Result<Vec<EndedBatch>, StoreError> {
        // FULL for the reason given at `may_end_a_batch`; a pass that changes nothing writes
        // no WAL frame and so costs no fsync.
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        let expired = sqlx::query(EXPIRE_DUE)
            .bind(ENDED)
            .bind(EndReason::Expired.code())
            .bind(now.as_micros())
            .bind(IN_PROGRESS)
            .bind(CANCELING)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
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
            .map_err(db)?;
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
        tx.commit().await.map_err(db)?;
        Ok(ended)
    }

    pub(crate) async fn canceling_impl(&self) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar(CANCELING_KEYS)
            .bind(CANCELING)
            .fetch_all(&self.pools.reader)
            .await
            .map_err(db)
    }

    pub(crate) async fn next_expiry_impl(&self) -> Result<Option<Timestamp>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(NEXT_EXPIRY)
            .bind(IN_PROGRESS)
            .bind(CANCELING)
            .fetch_one(&self.pools.reader)
            .await
            .map_err(db)?;
        Ok(at.map(Timestamp::from_micros))
    }

    pub(crate) async fn stats_impl(&self) -> Result<Stats, StoreError> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(STATS)
            .bind(IN_PROGRESS)
            .bind(CANCELING)
            .fetch_all(&self.pools.reader)
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

    pub(crate) async fn ping_impl(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pools.reader)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub(crate) async fn archive_due_impl(
        &self,
        cutoff: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        let archived = sqlx::query(ARCHIVE_DUE)
            .bind(now.as_micros())
            .bind(cutoff.as_micros())
            .bind(ENDED)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(archived)
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

    /// Removes up to `step` request and result rows of the oldest deleted batch (or, when none
    /// is left, of the oldest archived one), then its batch row once nothing else of it is left
    /// (an archived batch keeps its row and is only marked reclaimed). One short transaction.
    async fn purge_step(&self, step: u64) -> Result<u64, StoreError> {
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
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
        let (lo, hi) = rid_range(key);
        let mut removed = 0;
        for table in [PURGE_REQUESTS, PURGE_RESULTS, PURGE_ATTEMPTS] {
            if removed < step {
                removed += sqlx::query(table)
                    .bind(lo)
                    .bind(hi)
                    .bind((step - removed) as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?
                    .rows_affected();
            }
        }
        if removed < step {
            // Fewer rows than allowed: both ranges are empty now, the batch row goes last.
            let last = if deleted {
                "DELETE FROM batches WHERE key = ?1"
            } else {
                "UPDATE batches SET rows_reclaimed = 1 WHERE key = ?1"
            };
            removed += sqlx::query(last)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
        }
        tx.commit().await.map_err(db)?;
        Ok(removed)
    }
}

/// Whether recording these answers may end a batch. Such a group is committed with
/// `synchronous = FULL`: once a batch has been seen ended (and its results perhaps downloaded),
/// an OS crash must not turn it back into an unended batch with fewer results. Every other group
/// commits with `NORMAL`, so the fsync is paid once per batch rather than once per group.
///
/// Read on the writer connection before the transaction: nothing else writes batches while this
/// process holds the connection (and the data-dir lock), so the answer cannot go stale; it
/// overestimates (duplicates are counted as new), which only costs an fsync.
async fn may_end_a_batch(
    conn: &mut SqliteConnection,
    by_batch: &BTreeMap<i64, Vec<&Answer>>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    for (&key, answers) in by_batch {
        let Some(row) = live_batch(conn, key).await? else {
            continue;
        };
        let state: i64 = get(&row, "state")?;
        let unanswered = get::<i64>(&row, "total")?
            - get::<i64>(&row, "succeeded")?
            - get::<i64>(&row, "errored")?;
        if state == CANCELING
            || get::<i64>(&row, "expires_at")? <= now.as_micros()
            || answers.len() as i64 >= unanswered
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The row of a batch that still takes answers (in progress or canceling, not deleted).
async fn live_batch(
    conn: &mut SqliteConnection,
    key: i64,
) -> Result<Option<SqliteRow>, StoreError> {
    let Some(row) = sqlx::query(RECORD_BATCH)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
    else {
        return Ok(None);
    };
    let state: i64 = get(&row, "state")?;
    let live = get::<i64>(&row, "deleted")? == 0 && (state == IN_PROGRESS || state == CANCELING);
    Ok(live.then_some(row))
}

/// `INSERT OR IGNORE`s results of one outcome and returns how many rows were really new, so a
/// repeated answer is neither stored nor counted twice.
async fn insert_results(
    conn: &mut SqliteConnection,
    outcome: Outcome,
    answers: Vec<&Answer>,
) -> Result<u64, StoreError> {
    let mut inserted = 0;
    let mut rows = answers.into_iter();
    for size in insert_sizes(rows.len()) {
        let sql = values_sql(
            "INSERT OR IGNORE INTO results (rid, outcome, body, custom_id) VALUES ",
            "(?,?,?,?)",
            size,
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for answer in rows.by_ref().take(size) {
            query = query
                .bind(rid(answer.slot.batch_key, answer.slot.index))
                .bind(outcome.code())
                .bind(answer.body.as_str())
                .bind(answer.custom_id.as_str());
        }
        inserted += query.execute(&mut *conn).await.map_err(db)?.rows_affected();
    }
    Ok(inserted)
}
