//! How domain values are laid out in rows: state codes, request ids (`rid`), and decoding a
//! `batches` row into a [`Batch`], where anything unexpected is [`StoreError::Corrupt`].

use batchd_domain::{Batch, BatchId, EndReason, Timestamp};
use batchd_store::StoreError;
use batchd_wire::ProcessingStatus;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, Type};

/// `batches.state`. Drafts are invisible to everything but their creator and the purge.
pub(crate) const DRAFT: i64 = 0;
pub(crate) const IN_PROGRESS: i64 = 1;
pub(crate) const CANCELING: i64 = 2;
pub(crate) const ENDED: i64 = 3;

/// Bits of `rid` that hold the request index. 2^20 > 100,000, the API's request limit.
pub(crate) const INDEX_BITS: u32 = 20;
pub(crate) const MAX_REQUESTS: u64 = 1 << INDEX_BITS;

pub(crate) fn rid(batch_key: i64, index: u32) -> i64 {
    (batch_key << INDEX_BITS) | i64::from(index)
}

/// The rid range `[lo, hi)` holding every row of a batch.
pub(crate) fn rid_range(batch_key: i64) -> (i64, i64) {
    (batch_key << INDEX_BITS, (batch_key + 1) << INDEX_BITS)
}

pub(crate) fn index_of(rid: i64) -> u32 {
    // The mask keeps 20 bits, which always fit.
    (rid & ((1 << INDEX_BITS) - 1)) as u32
}

/// Columns of `batches` that [`batch_from_row`] reads, for `concat!`ing into static SQL.
macro_rules! batch_columns {
    () => {
        "key, id, workspace, state, total, succeeded, errored, end_reason, created_at, \
         expires_at, ended_at, cancel_initiated_at, archived_at, betas"
    };
}
pub(crate) use batch_columns;

pub(crate) fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(column)
        .map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

pub(crate) fn count(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what}: {value}")))
}

pub(crate) fn parse_id(id: &str) -> Result<BatchId, StoreError> {
    BatchId::parse(id).ok_or_else(|| StoreError::Corrupt(format!("bad batch id {id:?}")))
}

pub(crate) fn parse_betas(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("betas {json:?}: {e}")))
}

pub(crate) fn status(state: i64) -> Result<ProcessingStatus, StoreError> {
    match state {
        IN_PROGRESS => Ok(ProcessingStatus::InProgress),
        CANCELING => Ok(ProcessingStatus::Canceling),
        ENDED => Ok(ProcessingStatus::Ended),
        other => Err(StoreError::Corrupt(format!(
            "batch state {other} where a visible batch was expected"
        ))),
    }
}

pub(crate) fn batch_from_row(row: &SqliteRow) -> Result<Batch, StoreError> {
    let end_reason = get::<Option<i64>>(row, "end_reason")?
        .map(|code| {
            EndReason::from_code(code)
                .ok_or_else(|| StoreError::Corrupt(format!("end_reason {code}")))
        })
        .transpose()?;
    let status = status(get(row, "state")?)?;
    if (status == ProcessingStatus::Ended) != end_reason.is_some() {
        return Err(StoreError::Corrupt(format!(
            "batch in state {status:?} with end_reason {end_reason:?}"
        )));
    }
    let ts = |column: &str| -> Result<Option<Timestamp>, StoreError> {
        Ok(get::<Option<i64>>(row, column)?.map(Timestamp::from_micros))
    };
    Ok(Batch {
        key: get(row, "key")?,
        id: parse_id(get(row, "id")?)?,
        workspace: get(row, "workspace")?,
        status,
        total: count(get(row, "total")?, "total")?,
        succeeded: count(get(row, "succeeded")?, "succeeded")?,
        errored: count(get(row, "errored")?, "errored")?,
        end_reason,
        created_at: Timestamp::from_micros(get(row, "created_at")?),
        expires_at: Timestamp::from_micros(get(row, "expires_at")?),
        ended_at: ts("ended_at")?,
        cancel_initiated_at: ts("cancel_initiated_at")?,
        archived_at: ts("archived_at")?,
        betas: parse_betas(get(row, "betas")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rids_keep_batches_apart_and_in_index_order() {
        let (lo, hi) = rid_range(7);
        assert_eq!(rid(7, 0), lo);
        assert!(rid(7, 99_999) < hi);
        assert_eq!(rid(8, 0), hi);
        assert_eq!(index_of(rid(7, 12_345)), 12_345);
        assert!(rid(7, 1) < rid(7, 2));
    }
}
