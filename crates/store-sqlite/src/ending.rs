//! Ending a batch in SQL: the one `UPDATE` that both a record group (a batch's last answer, or
//! a canceling batch drained) and maintenance (expiry, canceling batches with nothing claimed)
//! run inside their own transactions. Whether a batch ends is decided in `batchd_store::ending`.

use batchd_domain::{BatchId, EndReason, Timestamp};
use batchd_store::{Ended, StoreError};
use sqlx::SqliteConnection;

use crate::db::query_error;
use crate::rows::ENDED;

/// `ended_at` is on the batch's workspace's clock.
pub(crate) const END: &str = concat!(
    "UPDATE batches SET state = ?1, end_reason = ?2, ended_at = ",
    ended_at!("?3"),
    " WHERE key = ?4"
);

/// A batch ended by this call: its key (for the lease bookkeeping) and what the caller sees.
pub(crate) type EndedBatch = (i64, BatchId, EndReason);

/// What the caller of a store method sees of the batches it ended.
pub(crate) fn report(ended: &[EndedBatch]) -> Ended {
    Ended {
        batches: ended
            .iter()
            .map(|(_, id, reason)| (id.clone(), *reason))
            .collect(),
    }
}

pub(crate) async fn end_batch(
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
        .map_err(query_error)?;
    Ok(())
}
