//! Recording answers: one write transaction per group, at most one result per request, the
//! tallies updated and completed or drained batches ended in that same transaction. A group is
//! written by the group writer (see `group_writer`), in one blocking step.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use batchd_domain::{EndReason, Outcome, Timestamp};
use batchd_store::ending::{self, Tally};
use batchd_store::rows::column_error;
use batchd_store::{Answer, StoreError, clock};
use rusqlite::types::FromSql;
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::db::{Durability, rusqlite_error};
use crate::ending::{END, EndedBatch};
use crate::group_writer::Session;
use crate::leases::{self, Claims};
use crate::rows::{CANCELING, ENDED, IN_PROGRESS, count, parse_id, rid};

/// A batch of a record group, with its workspace's clock offset (its deadline is on that clock).
pub(crate) const RECORD_BATCH: &str = concat!(
    "SELECT id, state, deleted, total, succeeded, errored, expires_at, ",
    batch_clock_offset!(),
    " AS clock_offset FROM batches WHERE key = ?1"
);

/// Stores one result; ignored (no row changed) when the request has one already.
const INSERT_RESULT: &str =
    "INSERT OR IGNORE INTO results (rid, outcome, body, custom_id) VALUES (?1, ?2, ?3, ?4)";

/// A batch's new tallies, and its end if it ended (`ended_at` on the workspace's clock; NULL,
/// unended, stays NULL).
pub(crate) const RECORD_TALLY: &str = concat!(
    "UPDATE batches SET succeeded = ?1, errored = ?2, state = ?3, end_reason = ?4, ",
    "ended_at = ",
    ended_at!("?5"),
    " WHERE key = ?6"
);

/// Writes a group of answers, grouped by batch key, in one transaction; returns the batches it
/// ended. `claims` tells whether a canceling batch has claims out besides these answers.
pub(crate) fn record_group(
    session: &mut Session<'_>,
    claims: &Mutex<Claims>,
    by_batch: &BTreeMap<i64, Vec<Answer>>,
    now: Timestamp,
) -> Result<Vec<EndedBatch>, StoreError> {
    let durability = if may_end_a_batch(session.conn(), by_batch, now)? {
        Durability::Full
    } else {
        Durability::Normal
    };
    let tx = session.begin(durability)?;
    let mut ended = Vec::new();
    for (&key, answers) in by_batch {
        // Drafts cannot have claims; ended and deleted batches drop late answers.
        let Some(row) = live_batch(&tx, key)? else {
            continue;
        };
        let id = parse_id(&row.id)?;
        if row.past_deadline(now) {
            // Past its deadline: the batch expires now and the late answers are dropped,
            // whether or not maintenance got there first.
            tx.prepare_cached(END)
                .map_err(rusqlite_error)?
                .execute(params![
                    ENDED,
                    EndReason::Expired.code(),
                    now.as_micros(),
                    key
                ])
                .map_err(rusqlite_error)?;
            ended.push((key, id, EndReason::Expired));
            continue;
        }
        let total = count(row.total, "total")?;
        let answering: HashSet<u32> = answers.iter().map(|a| a.slot.index).collect();
        let mut insert = tx.prepare_cached(INSERT_RESULT).map_err(rusqlite_error)?;
        // Succeeded first, then errored: of two answers to one request in a group, a success
        // wins.
        let mut inserted = [0u64; 2];
        for (n, outcome) in [Outcome::Succeeded, Outcome::Errored]
            .into_iter()
            .enumerate()
        {
            // Canceled and expired outcomes are never stored: see
            // `batchd_store::ending::is_stored`.
            for answer in answers
                .iter()
                .filter(|a| a.outcome == outcome && u64::from(a.slot.index) < total)
            {
                inserted[n] += insert
                    .execute(params![
                        rid(answer.slot.batch_key, answer.slot.index),
                        outcome.code(),
                        answer.body,
                        answer.custom_id,
                    ])
                    .map_err(rusqlite_error)? as u64;
            }
        }
        let before = Tally {
            total,
            succeeded: count(row.succeeded, "succeeded")?,
            errored: count(row.errored, "errored")?,
        };
        // No claim can be added to a canceling batch, so idleness cannot go stale before the
        // commit.
        let idle_canceling =
            || row.state == CANCELING && leases::lock(claims).idle_after(key, &answering);
        let Some(recorded) = ending::after_record(before, inserted[0], inserted[1], idle_canceling)
        else {
            continue;
        };
        tx.prepare_cached(RECORD_TALLY)
            .map_err(rusqlite_error)?
            .execute(params![
                recorded.succeeded as i64,
                recorded.errored as i64,
                if recorded.end.is_some() {
                    ENDED
                } else {
                    row.state
                },
                recorded.end.map(EndReason::code),
                recorded.end.map(|_| now.as_micros()),
                key,
            ])
            .map_err(rusqlite_error)?;
        if let Some(reason) = recorded.end {
            ended.push((key, id, reason));
        }
    }
    tx.commit().map_err(rusqlite_error)?;
    Ok(ended)
}

/// Whether recording these answers may end a batch. Such a group is committed with
/// `synchronous = FULL`: once a batch has been seen ended (and its results perhaps downloaded),
/// an OS crash must not turn it back into an unended batch with fewer results. Every other group
/// commits with `NORMAL`, so the fsync is paid once per batch rather than once per group.
///
/// Read before the transaction: nothing else writes batches while the group's caller holds the
/// writer (and this process the data-dir lock), so the answer cannot go stale; it overestimates
/// (duplicates are counted as new), which only costs an fsync.
fn may_end_a_batch(
    conn: &Connection,
    by_batch: &BTreeMap<i64, Vec<Answer>>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    for (&key, answers) in by_batch {
        let Some(row) = live_batch(conn, key)? else {
            continue;
        };
        let unanswered = row.total - row.succeeded - row.errored;
        if row.state == CANCELING || row.past_deadline(now) || answers.len() as i64 >= unanswered {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A [`RECORD_BATCH`] row.
struct BatchRow {
    id: String,
    state: i64,
    deleted: i64,
    total: i64,
    succeeded: i64,
    errored: i64,
    expires_at: i64,
    clock_offset: i64,
}

impl BatchRow {
    fn read(row: &rusqlite::Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            id: get(row, "id")?,
            state: get(row, "state")?,
            deleted: get(row, "deleted")?,
            total: get(row, "total")?,
            succeeded: get(row, "succeeded")?,
            errored: get(row, "errored")?,
            expires_at: get(row, "expires_at")?,
            clock_offset: get(row, "clock_offset")?,
        })
    }

    /// Whether its deadline has passed at real time `now`, on its workspace's clock.
    fn past_deadline(&self, now: Timestamp) -> bool {
        Timestamp::from_micros(self.expires_at) <= clock::virtual_now(now, self.clock_offset)
    }
}

/// The row of a batch that still takes answers (in progress or canceling, not deleted).
fn live_batch(conn: &Connection, key: i64) -> Result<Option<BatchRow>, StoreError> {
    let Some(row) = conn
        .prepare_cached(RECORD_BATCH)
        .map_err(rusqlite_error)?
        .query_row([key], |row| Ok(BatchRow::read(row)))
        .optional()
        .map_err(rusqlite_error)?
        .transpose()?
    else {
        return Ok(None);
    };
    let live = row.deleted == 0 && (row.state == IN_PROGRESS || row.state == CANCELING);
    Ok(live.then_some(row))
}

/// A column of a row, a type mismatch being [`StoreError::Corrupt`].
fn get<T: FromSql>(row: &rusqlite::Row<'_>, column: &str) -> Result<T, StoreError> {
    row.get(column).map_err(|e| column_error(column, e))
}
