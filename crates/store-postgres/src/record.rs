//! Recording answers: one transaction per group, in short named steps (lock the group's
//! batches, insert the results, free the claims of answers without one, see which canceling
//! batches are still claimed, write the tallies and ends). At most one result per request, and
//! the tallies grow only by the rows really inserted.

use std::collections::{BTreeMap, HashMap, HashSet};

use batchd_domain::{BatchId, EndReason, Outcome, Timestamp};
use batchd_store::ending::{self, Tally};
use batchd_store::{Answer, Slot, StoreError, clock};
use sqlx::PgConnection;

use crate::claim::{RELEASE, slot_arrays};
use crate::db::query_error;
use crate::rows::{CANCELING, ENDED, IN_PROGRESS, count, end_reason_code, get, parse_id};

/// The batches of a record group, locked in key order (so groups touching the same batches
/// never deadlock).
/// FOR NO KEY UPDATE, the lock the tally update takes anyway: it serialises record groups of a
/// batch and a cancel (FOR UPDATE), but not the claims (FOR KEY SHARE), which no longer wait for
/// a record group to commit.
/// Each with its workspace's clock offset: its deadline is on that clock.
const RECORD_BATCHES: &str = concat!(
    "SELECT key, id, state, deleted, total, succeeded, errored, expires_at, ",
    batch_clock_offset!("batches"),
    " AS clock_offset FROM batches WHERE key = ANY($1) ORDER BY key FOR NO KEY UPDATE OF batches"
);

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

/// Writes the new tallies and end states of a group's batches in one statement; `ended_at` on
/// the batch's workspace's clock (NULL, unended, stays NULL).
const UPDATE_TALLIES: &str = concat!(
    "UPDATE batches b SET succeeded = u.s, errored = u.e, state = u.st, \
         end_reason = u.r, ended_at = ",
    ended_at!("u.at", "b"),
    " FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::smallint[], $5::smallint[], \
         $6::bigint[]) AS u(k, s, e, st, r, at) \
     WHERE b.key = u.k"
);

fn outcome_code(outcome: Outcome) -> i16 {
    // Codes are small (see `Outcome::code`).
    outcome.code() as i16
}

/// A batch of a record group that still takes answers, as locked.
pub(crate) struct Live {
    id: BatchId,
    state: i16,
    tally: Tally,
}

/// A batch row to write: its key, tallies, state and end reason.
pub(crate) type TallyUpdate = (i64, u64, u64, i16, Option<EndReason>);

/// The group's batches, locked: those that still take answers, and the updates and ends of those
/// that expired meanwhile (their late answers are dropped).
pub(crate) struct Locked {
    pub live: BTreeMap<i64, Live>,
    pub updates: Vec<TallyUpdate>,
    pub ended: Vec<(BatchId, EndReason)>,
}

/// The keys of the batches a group answers, sorted (the order rows are locked in) and unique.
pub(crate) fn batch_keys(answers: &[Answer]) -> Vec<i64> {
    let mut keys: Vec<i64> = answers.iter().map(|a| a.slot.batch_key).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Locks the group's batches and sorts them: drafts cannot have claims; ended and deleted
/// batches drop late answers; a batch past its deadline expires now, whether or not maintenance
/// got there first.
pub(crate) async fn lock_batches(
    tx: &mut PgConnection,
    keys: &[i64],
    now: Timestamp,
) -> Result<Locked, StoreError> {
    let rows = sqlx::query(RECORD_BATCHES)
        .bind(keys)
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error)?;
    let mut locked = Locked {
        live: BTreeMap::new(),
        updates: Vec::new(),
        ended: Vec::new(),
    };
    for row in &rows {
        let state: i16 = get(row, "state")?;
        if get::<bool>(row, "deleted")? || !(state == IN_PROGRESS || state == CANCELING) {
            continue;
        }
        let key: i64 = get(row, "key")?;
        let batch = Live {
            id: parse_id(get(row, "id")?)?,
            state,
            tally: Tally {
                total: count(get(row, "total")?, "total")?,
                succeeded: count(get(row, "succeeded")?, "succeeded")?,
                errored: count(get(row, "errored")?, "errored")?,
            },
        };
        let clock_now = clock::virtual_now(now, get(row, "clock_offset")?);
        if Timestamp::from_micros(get(row, "expires_at")?) <= clock_now {
            let Tally {
                succeeded, errored, ..
            } = batch.tally;
            locked
                .updates
                .push((key, succeeded, errored, ENDED, Some(EndReason::Expired)));
            locked.ended.push((batch.id, EndReason::Expired));
            continue;
        }
        locked.live.insert(key, batch);
    }
    Ok(locked)
}

/// The results a group inserts, as arrays for [`RECORD`].
#[derive(Default)]
pub(crate) struct Results<'a> {
    keys: Vec<i64>,
    indices: Vec<i32>,
    outcomes: Vec<i16>,
    bodies: Vec<&'a str>,
}

/// Sorts a group's answers to live batches into the results to insert (the first answer per
/// request wins within the group too) and the slots of answers that carry no result, whose
/// claims are only freed.
pub(crate) fn sort_answers<'a>(
    answers: &'a [Answer],
    live: &BTreeMap<i64, Live>,
) -> (Results<'a>, Vec<Slot>) {
    let mut seen = HashSet::new();
    let mut results = Results::default();
    let mut unstored = Vec::new();
    for answer in answers {
        let slot = answer.slot;
        let Some(batch) = live.get(&slot.batch_key) else {
            continue;
        };
        if u64::from(slot.index) >= batch.tally.total || !seen.insert(slot) {
            continue;
        }
        if ending::is_stored(answer.outcome) {
            results.keys.push(slot.batch_key);
            results
                .indices
                .push(i32::try_from(slot.index).unwrap_or(i32::MAX));
            results.outcomes.push(outcome_code(answer.outcome));
            results.bodies.push(answer.body.as_str());
        } else {
            unstored.push(slot);
        }
    }
    (results, unstored)
}

/// Inserts the results and takes the answered requests off the queue; returns how many rows of
/// each outcome were really new, per batch.
pub(crate) async fn insert_results(
    tx: &mut PgConnection,
    results: Results<'_>,
) -> Result<HashMap<i64, (u64, u64)>, StoreError> {
    let mut new = HashMap::new();
    if results.keys.is_empty() {
        return Ok(new);
    }
    let counted = sqlx::query(RECORD)
        .bind(results.keys)
        .bind(results.indices)
        .bind(results.outcomes)
        .bind(results.bodies)
        .bind(outcome_code(Outcome::Succeeded))
        .bind(outcome_code(Outcome::Errored))
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error)?;
    for row in &counted {
        new.insert(
            get(row, "batch_key")?,
            (
                count(get(row, "succeeded")?, "succeeded")?,
                count(get(row, "errored")?, "errored")?,
            ),
        );
    }
    Ok(new)
}

/// Frees this process's claims of answers that carry no result.
pub(crate) async fn release_unstored(
    tx: &mut PgConnection,
    unstored: Vec<Slot>,
    me: i64,
) -> Result<(), StoreError> {
    let (keys, indices) = slot_arrays(unstored.into_iter());
    sqlx::query(RELEASE)
        .bind(keys)
        .bind(indices)
        .bind(me)
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
    Ok(())
}

/// The canceling batches of the group on which some process still holds a claim. A canceling
/// batch ends once none does; claims cannot be added to it (a claim locks the batch row and
/// needs it in progress), so this stays true until the commit.
pub(crate) async fn still_claimed(
    tx: &mut PgConnection,
    live: &BTreeMap<i64, Live>,
) -> Result<HashSet<i64>, StoreError> {
    let canceling: Vec<i64> = live
        .iter()
        .filter(|(_, b)| b.state == CANCELING)
        .map(|(&k, _)| k)
        .collect();
    if canceling.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(sqlx::query_scalar::<_, i64>(CLAIMED_BATCHES)
        .bind(canceling)
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error)?
        .into_iter()
        .collect())
}

/// Adds to `locked` the updates and ends of the live batches after the group.
pub(crate) fn tally(
    locked: &mut Locked,
    new: &HashMap<i64, (u64, u64)>,
    still_claimed: &HashSet<i64>,
) {
    for (key, batch) in std::mem::take(&mut locked.live) {
        let (new_succeeded, new_errored) = new.get(&key).copied().unwrap_or((0, 0));
        let idle_canceling = || batch.state == CANCELING && !still_claimed.contains(&key);
        let Some(recorded) =
            ending::after_record(batch.tally, new_succeeded, new_errored, idle_canceling)
        else {
            continue;
        };
        let state = if recorded.end.is_some() {
            ENDED
        } else {
            batch.state
        };
        locked.updates.push((
            key,
            recorded.succeeded,
            recorded.errored,
            state,
            recorded.end,
        ));
        if let Some(reason) = recorded.end {
            locked.ended.push((batch.id, reason));
        }
    }
}

/// Writes the new tallies and end states in one statement.
pub(crate) async fn update_tallies(
    tx: &mut PgConnection,
    updates: Vec<TallyUpdate>,
    now: Timestamp,
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
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
        .map_err(query_error)?;
    Ok(())
}
