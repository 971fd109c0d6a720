//! How domain values are laid out in rows: state codes, and decoding a `batches` row into a
//! [`Batch`], where anything unexpected is [`StoreError::Corrupt`].

use batchd_domain::{Batch, BatchId, EndReason, Timestamp};
use batchd_store::StoreError;
use batchd_wire::ProcessingStatus;
use sqlx::postgres::PgRow;
use sqlx::{Decode, Postgres, Row, Type};

/// `batches.state`. Drafts are invisible to everything but their creator and the purge.
pub(crate) const DRAFT: i16 = 0;
pub(crate) const IN_PROGRESS: i16 = 1;
pub(crate) const CANCELING: i16 = 2;
pub(crate) const ENDED: i16 = 3;

/// Columns of `batches` that [`batch_from_row`] reads, for `concat!`ing into static SQL.
macro_rules! batch_columns {
    () => {
        "key, id, workspace, state, total, succeeded, errored, end_reason, created_at, \
         expires_at, ended_at, cancel_initiated_at, archived_at, betas"
    };
}
pub(crate) use batch_columns;

pub(crate) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(column)
        .map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

pub(crate) fn count(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what}: {value}")))
}

pub(crate) fn index(value: i32) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative index {value}")))
}

pub(crate) fn parse_id(id: &str) -> Result<BatchId, StoreError> {
    BatchId::parse(id).ok_or_else(|| StoreError::Corrupt(format!("bad batch id {id:?}")))
}

pub(crate) fn parse_betas(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("betas {json:?}: {e}")))
}

fn status(state: i16) -> Result<ProcessingStatus, StoreError> {
    match state {
        IN_PROGRESS => Ok(ProcessingStatus::InProgress),
        CANCELING => Ok(ProcessingStatus::Canceling),
        ENDED => Ok(ProcessingStatus::Ended),
        other => Err(StoreError::Corrupt(format!(
            "batch state {other} where a visible batch was expected"
        ))),
    }
}

pub(crate) fn end_reason_code(reason: EndReason) -> i16 {
    // Codes are small (see `EndReason::code`).
    reason.code() as i16
}

pub(crate) fn batch_from_row(row: &PgRow) -> Result<Batch, StoreError> {
    let end_reason = get::<Option<i16>>(row, "end_reason")?
        .map(|code| {
            EndReason::from_code(i64::from(code))
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
