//! Recording answers: one write transaction per group, at most one result per request, the
//! tallies updated and completed or drained batches ended in that same transaction.

use std::collections::{BTreeMap, HashSet};

use batchd_domain::{EndReason, Outcome, Timestamp};
use batchd_store::ending::{self, Tally};
use batchd_store::{Answer, StoreError, clock};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Connection as _, SqliteConnection};

use crate::SqliteStore;
use crate::batches::{insert_sizes, values_sql};
use crate::db::{BEGIN_IMMEDIATE, Durability, query_error, set_durability};
use crate::ending::{EndedBatch, end_batch};
use crate::rows::{CANCELING, ENDED, IN_PROGRESS, count, get, parse_id, rid};

/// A batch of a record group, with its workspace's clock offset (its deadline is on that clock).
pub(crate) const RECORD_BATCH: &str = concat!(
    "SELECT id, state, deleted, total, succeeded, errored, expires_at, ",
    batch_clock_offset!(),
    " AS clock_offset FROM batches WHERE key = ?1"
);

impl SqliteStore {
    pub(crate) async fn record_tx(
        &self,
        by_batch: BTreeMap<i64, Vec<&Answer>>,
        now: Timestamp,
    ) -> Result<Vec<EndedBatch>, StoreError> {
        let mut conn = self.pools.writer.acquire().await.map_err(query_error)?;
        let durability = if may_end_a_batch(&mut conn, &by_batch, now).await? {
            Durability::Full
        } else {
            Durability::Normal
        };
        set_durability(&mut conn, durability).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let mut ended = Vec::new();
        for (key, answers) in by_batch {
            // Drafts cannot have claims; ended and deleted batches drop late answers.
            let Some(row) = live_batch(&mut tx, key).await? else {
                continue;
            };
            let state: i64 = get(&row, "state")?;
            let id = parse_id(get(&row, "id")?)?;
            if past_deadline(&row, now)? {
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
                    // Never stored: see `batchd_store::ending::is_stored`.
                    Outcome::Canceled | Outcome::Expired => {}
                }
            }
            let new_succeeded = insert_results(&mut tx, Outcome::Succeeded, succeeded).await?;
            let new_errored = insert_results(&mut tx, Outcome::Errored, errored).await?;
            let before = Tally {
                total,
                succeeded: count(get(&row, "succeeded")?, "succeeded")?,
                errored: count(get(&row, "errored")?, "errored")?,
            };
            // No claim can be added to a canceling batch, so idleness cannot go stale before the
            // commit.
            let idle_canceling = || state == CANCELING && self.claims().idle_after(key, &answering);
            let Some(recorded) =
                ending::after_record(before, new_succeeded, new_errored, idle_canceling)
            else {
                continue;
            };
            // `ended_at` on the workspace's clock (NULL, unended, stays NULL).
            sqlx::query(concat!(
                "UPDATE batches SET succeeded = ?1, errored = ?2, state = ?3, end_reason = ?4, ",
                "ended_at = ",
                ended_at!("?5"),
                " WHERE key = ?6"
            ))
            .bind(recorded.succeeded as i64)
            .bind(recorded.errored as i64)
            .bind(if recorded.end.is_some() { ENDED } else { state })
            .bind(recorded.end.map(EndReason::code))
            .bind(recorded.end.map(|_| now.as_micros()))
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
            if let Some(reason) = recorded.end {
                ended.push((key, id, reason));
            }
        }
        tx.commit().await.map_err(query_error)?;
        Ok(ended)
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
        if state == CANCELING || past_deadline(&row, now)? || answers.len() as i64 >= unanswered {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a [`RECORD_BATCH`] row's deadline has passed at real time `now`, on its workspace's
/// clock.
fn past_deadline(row: &SqliteRow, now: Timestamp) -> Result<bool, StoreError> {
    let offset: i64 = get(row, "clock_offset")?;
    Ok(Timestamp::from_micros(get(row, "expires_at")?) <= clock::virtual_now(now, offset))
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
        .map_err(query_error)?
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
        inserted += query
            .execute(&mut *conn)
            .await
            .map_err(query_error)?
            .rows_affected();
    }
    Ok(inserted)
}
