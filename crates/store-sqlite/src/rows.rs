//! How domain values are laid out in rows: state codes, request ids (`rid`), and decoding a
//! `batches` row into a [`Batch`], where anything unexpected is [`StoreError::Corrupt`].

use batchd_domain::Batch;
use batchd_store::rows::{self, Columns};
use batchd_store::{StoreError, StoredFile};
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, Type};

pub(crate) use batchd_store::rows::{
    CANCELING, DRAFT, ENDED, FILE_DELETED, FILE_DRAFT, FILE_VISIBLE, IN_PROGRESS,
};

/// Bits of `rid` that hold the request index. 2^20 > 100,000, the API's request limit.
pub(crate) const INDEX_BITS: u32 = 20;
/// How many request indices a batch's rid range holds: what this encoding allows a batch, not
/// what the API does.
pub(crate) const RID_INDICES: u64 = 1 << INDEX_BITS;

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

pub(crate) use batchd_store::rows::{
    count, openai_text, parse_betas, parse_endpoint, parse_id, parse_outcome, parse_version,
};
pub(crate) use batchd_store::{batch_columns, file_columns};

pub(crate) fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(column)
        .map_err(|e| rows::column_error(column, e))
}

/// SQLite rows as the shared decoder reads them.
pub(crate) struct Cols<'r>(pub &'r SqliteRow);

impl Columns for Cols<'_> {
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        get(self.0, column)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        get(self.0, column)
    }
    fn text(&self, column: &str) -> Result<String, StoreError> {
        get(self.0, column)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        get(self.0, column)
    }
}

pub(crate) fn batch_from_row(row: &SqliteRow) -> Result<Batch, StoreError> {
    rows::batch(&Cols(row))
}

pub(crate) fn file_from_row(row: &SqliteRow) -> Result<StoredFile, StoreError> {
    rows::file(&Cols(row))
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
