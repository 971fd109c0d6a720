//! How domain values are laid out in rows: state codes, and decoding a `batches` row into a
//! [`Batch`], where anything unexpected is [`StoreError::Corrupt`].

use batchd_domain::{Batch, EndReason};
use batchd_store::rows::{self, Columns};
use batchd_store::{StoreError, StoredFile};
use sqlx::postgres::PgRow;
use sqlx::{Decode, Postgres, Row, Type};

/// `batches.state`: the shared codes, as this schema's SMALLINT.
pub(crate) const DRAFT: i16 = rows::DRAFT as i16;
pub(crate) const IN_PROGRESS: i16 = rows::IN_PROGRESS as i16;
pub(crate) const CANCELING: i16 = rows::CANCELING as i16;
pub(crate) const ENDED: i16 = rows::ENDED as i16;

pub(crate) use batchd_store::rows::{
    FILE_DELETED, FILE_DRAFT, FILE_VISIBLE, count, openai_text, parse_betas, parse_endpoint,
    parse_id, parse_outcome, parse_version,
};
pub(crate) use batchd_store::{batch_columns, file_columns};

pub(crate) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(column)
        .map_err(|e| rows::column_error(column, e))
}

pub(crate) fn index(value: i32) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative index {value}")))
}

pub(crate) fn end_reason_code(reason: EndReason) -> i16 {
    // Codes are small (see `EndReason::code`).
    reason.code() as i16
}

/// PostgreSQL rows as the shared decoder reads them: state codes are SMALLINT here.
pub(crate) struct Cols<'r>(pub &'r PgRow);

impl Columns for Cols<'_> {
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        match column {
            "state" | "endpoint" => get::<i16>(self.0, column).map(i64::from),
            _ => get(self.0, column),
        }
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        match column {
            "end_reason" => Ok(get::<Option<i16>>(self.0, column)?.map(i64::from)),
            _ => get(self.0, column),
        }
    }
    fn text(&self, column: &str) -> Result<String, StoreError> {
        get(self.0, column)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        get(self.0, column)
    }
}

pub(crate) fn batch_from_row(row: &PgRow) -> Result<Batch, StoreError> {
    rows::batch(&Cols(row))
}

pub(crate) fn file_from_row(row: &PgRow) -> Result<StoredFile, StoreError> {
    rows::file(&Cols(row))
}

/// A small code (state, endpoint) as this schema's SMALLINT.
pub(crate) fn small(code: i64) -> i16 {
    // Every code the store writes is a small constant.
    code as i16
}
