//! Recording answers: one transaction per group, begun by [`begin`] (which locks the group's
//! batches in the same round trip), whose writes are one statement ([`RECORD`]: insert the
//! results, take them off the queue, free the claims of answers without one, add to the
//! tallies), then, only when the group touches a canceling batch, one read of what is still
//! claimed, and, only when a batch ends, one write of its end. A group that ends nothing costs
//! BEGIN, one statement and COMMIT; its transaction plans its statements generically
//! ([`BEGIN_GENERIC`]). At most one result per request, and the tallies grow only by the rows
//! really inserted.

use std::collections::HashSet;

use batchd_domain::{BatchId, EndReason, Outcome, Timestamp};
use batchd_store::ending::{self, Tally};
use batchd_store::{Answer, StoreError};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::claim::slot_arrays;
use crate::db::{BEGIN_GENERIC, query_error};
use crate::rows::{CANCELING, ENDED, IN_PROGRESS, count, end_reason_code, get, parse_id};

/// The start of a record group's transaction: [`BEGIN_GENERIC`], then the group's batch rows
/// locked in key order (so groups touching the same batches never deadlock on each other), in
/// one round trip. `keys` are the group's batch keys, sorted; as integers they are written into
/// the text, since a simple query (the only kind that can carry `BEGIN`) takes no parameters.
///
/// * FOR NO KEY UPDATE is the lock the tally update takes anyway: it serialises record groups of
///   a batch and a cancel (FOR UPDATE), but not the claims (FOR KEY SHARE), which do not wait
///   for a record group to commit.
/// * Taken in a statement of its own, before [`RECORD`]: a statement that waits for a row lock
///   goes on with the snapshot it began with, in which the row is the version before the
///   holder's update, and the tally update of the same statement must lock that old version
///   again. A third group queued for the row holds the old version's tuple lock while it waits
///   for the second one's transaction: PostgreSQL found the deadlock after `deadlock_timeout`
///   (1 s), aborted a group and the recorder retried it. In the bench's PostgreSQL rows, three
///   processes on one batch at 0 ms ran at 12,860-16,823 req/s against 31,011-37,590 for one
///   (`tests::concurrent_record_groups_of_one_batch_never_deadlock` failed on every run). Locked
///   first, [`RECORD`]'s snapshot is taken after the lock and sees the newest row, whose lock
///   this transaction already holds.
pub(crate) async fn begin<'c>(
    conn: &'c mut PgConnection,
    keys: &[i64],
) -> Result<Transaction<'c, Postgres>, StoreError> {
    use std::fmt::Write as _;
    let mut sql = String::with_capacity(BEGIN_GENERIC.len() + 80 + keys.len() * 12);
    sql.push_str(BEGIN_GENERIC);
    if !keys.is_empty() {
        sql.push_str("; SELECT FROM batches WHERE key IN (");
        for (i, key) in keys.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(sql, "{comma}{key}");
        }
        sql.push_str(") ORDER BY key FOR NO KEY UPDATE");
    }
    sqlx::Connection::begin_with(conn, sqlx::AssertSqlSafe(sql))
        .await
        .map_err(query_error)
}

/// A record group's writes in one statement, in the transaction [`begin`] started: it locks the
/// group's batches again (held already, so it does not wait), inserts the results of those that
/// still take answers (at most one per request), takes the answered requests off the queue,
/// frees this process's claims of answers without a result, and adds the rows really inserted
/// to the batches' tallies; it returns every locked batch as it was found, whether it still
/// takes answers, and what the group added to it. Whether a batch ends is then decided by
/// `store::ending` and written by [`END`], in the same transaction.
///
/// * The batch rows it reads are the newest (see [`begin`]), and `ON CONFLICT DO NOTHING` sees
///   results committed after the statement began: the tallies grow by exactly the rows really
///   inserted.
/// * Every write is gated on `(SELECT COUNT(*) FROM locked)`, an init plan run before the
///   write's first row, so all the group's batches are locked before any result or queue row
///   is touched, whatever plan the joins get.
/// * A batch takes answers while not deleted, in progress or canceling, before its deadline on
///   its workspace's clock (`$1` now); answers past its `total` are dropped.
/// * `$2` batch keys; `$3`..`$6` the results (key, index, outcome, body, first answer per
///   request only); `$7`, `$8` the slots of answers without a result; `$9` this worker; `$10`,
///   `$11` the succeeded and errored codes; `$12`, `$13` the in-progress and canceling states.
pub(crate) const RECORD: &str = concat!(
    "WITH locked AS MATERIALIZED (SELECT key, id, state, total, succeeded, errored, \
         NOT deleted AND state IN ($12, $13) AS open, expires_at <= $1 + ",
    batch_clock_offset!("batches"),
    " AS expired FROM batches WHERE key = ANY($2) ORDER BY key FOR NO KEY UPDATE OF batches), \
     live AS MATERIALIZED (SELECT key, total FROM locked WHERE open AND NOT expired), \
     ins AS (INSERT INTO results (batch_key, idx, outcome, body) \
         SELECT u.k, u.i, u.o, u.b FROM UNNEST($3::bigint[], $4::int[], $5::smallint[], \
             $6::text[]) AS u(k, i, o, b) JOIN live l ON l.key = u.k \
         WHERE u.i < l.total AND (SELECT COUNT(*) FROM locked) >= 0 \
         ON CONFLICT DO NOTHING RETURNING batch_key, outcome), \
     del AS (DELETE FROM pending p USING UNNEST($3::bigint[], $4::int[]) AS u(k, i), live l \
         WHERE l.key = u.k AND u.i < l.total AND p.batch_key = u.k AND p.idx = u.i \
             AND (SELECT COUNT(*) FROM locked) >= 0), \
     rel AS (UPDATE pending p SET worker = NULL \
         FROM UNNEST($7::bigint[], $8::int[]) AS u(k, i), live l \
         WHERE l.key = u.k AND u.i < l.total AND p.batch_key = u.k AND p.idx = u.i \
             AND p.worker = $9 AND (SELECT COUNT(*) FROM locked) >= 0), \
     new AS MATERIALIZED (SELECT batch_key, COUNT(*) FILTER (WHERE outcome = $10) AS s, \
         COUNT(*) FILTER (WHERE outcome = $11) AS e FROM ins GROUP BY batch_key), \
     tallied AS (UPDATE batches b SET succeeded = b.succeeded + n.s, errored = b.errored + n.e \
         FROM new n WHERE b.key = n.batch_key) \
     SELECT l.key, l.id, l.state, l.total, l.succeeded, l.errored, l.open, l.expired, \
         COALESCE(n.s, 0) AS new_succeeded, COALESCE(n.e, 0) AS new_errored \
     FROM locked l LEFT JOIN new n ON n.batch_key = l.key ORDER BY l.key"
);

/// The canceling batches among `$1` on which some process still holds a claim, read after
/// [`RECORD`] (so without the claims it freed or answered) in the same transaction: the batch
/// rows are locked by then, and claims cannot be added to a canceling batch (a claim locks the
/// batch row and needs it in progress), so this stays true until the commit.
const CLAIMED_BATCHES: &str =
    "SELECT DISTINCT batch_key FROM pending WHERE batch_key = ANY($1) AND worker IS NOT NULL";

/// Ends the group's batches that end (their tallies are already written by [`RECORD`]);
/// `ended_at` on the batch's workspace's clock.
pub(crate) const END: &str = concat!(
    "UPDATE batches b SET state = $1, end_reason = u.r, ended_at = ",
    ended_at!("$2", "b"),
    " FROM UNNEST($3::bigint[], $4::smallint[]) AS u(k, r) WHERE b.key = u.k"
);

fn outcome_code(outcome: Outcome) -> i16 {
    // Codes are small (see `Outcome::code`).
    outcome.code() as i16
}

/// A record group's transaction on `conn`, committed, with the batches that end in it.
pub(crate) async fn record(
    conn: &mut PgConnection,
    answers: &[Answer],
    now: Timestamp,
    me: i64,
) -> Result<Vec<(BatchId, EndReason)>, StoreError> {
    let keys = batch_keys(answers);
    let mut tx = begin(conn, &keys).await?;
    let (results, unstored) = sort_answers(answers);
    let rows = sqlx::query(RECORD)
        .bind(now.as_micros())
        .bind(&keys)
        .bind(results.keys)
        .bind(results.indices)
        .bind(results.outcomes)
        .bind(results.bodies)
        .bind(unstored.0)
        .bind(unstored.1)
        .bind(me)
        .bind(outcome_code(Outcome::Succeeded))
        .bind(outcome_code(Outcome::Errored))
        .bind(IN_PROGRESS)
        .bind(CANCELING)
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error)?;
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        found.push(Found {
            key: get(row, "key")?,
            id: parse_id(get(row, "id")?)?,
            canceling: get::<i16>(row, "state")? == CANCELING,
            open: get(row, "open")?,
            expired: get(row, "expired")?,
            tally: Tally {
                total: count(get(row, "total")?, "total")?,
                succeeded: count(get(row, "succeeded")?, "succeeded")?,
                errored: count(get(row, "errored")?, "errored")?,
            },
            new_succeeded: count(get(row, "new_succeeded")?, "new_succeeded")?,
            new_errored: count(get(row, "new_errored")?, "new_errored")?,
        });
    }
    let canceling: Vec<i64> = found
        .iter()
        .filter(|b| b.open && !b.expired && b.canceling)
        .map(|b| b.key)
        .collect();
    let still_claimed: HashSet<i64> = if canceling.is_empty() {
        HashSet::new()
    } else {
        sqlx::query_scalar::<_, i64>(CLAIMED_BATCHES)
            .bind(canceling)
            .fetch_all(&mut *tx)
            .await
            .map_err(query_error)?
            .into_iter()
            .collect()
    };
    let ends = ends(found, &still_claimed);
    if !ends.is_empty() {
        let (keys, reasons): (Vec<i64>, Vec<i16>) = ends
            .iter()
            .map(|(key, _, reason)| (*key, end_reason_code(*reason)))
            .unzip();
        sqlx::query(END)
            .bind(ENDED)
            .bind(now.as_micros())
            .bind(keys)
            .bind(reasons)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
    }
    tx.commit().await.map_err(query_error)?;
    Ok(ends
        .into_iter()
        .map(|(_, id, reason)| (id, reason))
        .collect())
}

/// A batch of a record group as [`RECORD`] found and left it.
pub(crate) struct Found {
    key: i64,
    id: BatchId,
    canceling: bool,
    /// Not deleted, and in progress or canceling.
    open: bool,
    /// Past its deadline on its workspace's clock: an open batch takes answers until then.
    expired: bool,
    /// As found, before the group.
    tally: Tally,
    new_succeeded: u64,
    new_errored: u64,
}

/// The batches that end in the group, with their reasons: a batch that still took answers ends
/// as `store::ending` says; one past its deadline that had not ended expires now, whether or
/// not maintenance got there first (its late answers were dropped).
pub(crate) fn ends(
    found: Vec<Found>,
    still_claimed: &HashSet<i64>,
) -> Vec<(i64, BatchId, EndReason)> {
    let mut ends = Vec::new();
    for batch in found {
        if !batch.open {
            continue;
        }
        if batch.expired {
            ends.push((batch.key, batch.id, EndReason::Expired));
            continue;
        }
        let idle_canceling = || batch.canceling && !still_claimed.contains(&batch.key);
        let recorded = ending::after_record(
            batch.tally,
            batch.new_succeeded,
            batch.new_errored,
            idle_canceling,
        );
        if let Some(end) = recorded.and_then(|r| r.end) {
            ends.push((batch.key, batch.id, end));
        }
    }
    ends
}

/// The keys of the batches a group answers, sorted (the order rows are locked in) and unique.
fn batch_keys(answers: &[Answer]) -> Vec<i64> {
    let mut keys: Vec<i64> = answers.iter().map(|a| a.slot.batch_key).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The results a group inserts, as arrays for [`RECORD`].
#[derive(Default)]
struct Results<'a> {
    keys: Vec<i64>,
    indices: Vec<i32>,
    outcomes: Vec<i16>,
    bodies: Vec<&'a str>,
}

/// Sorts a group's answers into the results to insert (the first answer per request wins
/// within the group too) and the slots of answers that carry no result, whose claims are only
/// freed. Which batches still take them is for [`RECORD`] to see, under its lock.
fn sort_answers(answers: &[Answer]) -> (Results<'_>, (Vec<i64>, Vec<i32>)) {
    let mut seen = HashSet::new();
    let mut results = Results::default();
    let mut unstored = Vec::new();
    for answer in answers {
        let slot = answer.slot;
        if !seen.insert(slot) {
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
    (results, slot_arrays(unstored.into_iter()))
}
