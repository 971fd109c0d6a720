//! Listing batches after the query: every engine reads one row more than the page holds, in the
//! cursor's direction, and turns those rows into a newest-first [`BatchPage`] here. Also where a
//! page of results is cut by bytes ([`ByteBudget`]).

use batchd_domain::Batch;

use crate::{BatchPage, Cursor, StoreError};

/// Rows to read for a page of `limit`: one extra row says whether there is more in that
/// direction.
pub fn rows_to_read(limit: u32) -> i64 {
    i64::from(limit) + 1
}

/// Whether the cursor's rows are read oldest first (the `limit` closest to a [`Cursor::Before`]
/// cursor are the oldest of those newer than it).
pub fn reads_oldest_first(cursor: &Cursor) -> bool {
    matches!(cursor, Cursor::Before(_))
}

/// The page from the rows read for `cursor` (at most [`rows_to_read`] of them), each decoded by
/// `batch`.
pub fn page<R>(
    rows: &[R],
    limit: u32,
    cursor: &Cursor,
    batch: impl Fn(&R) -> Result<Batch, StoreError>,
) -> Result<BatchPage, StoreError> {
    let has_more = rows.len() as u64 > u64::from(limit);
    let mut batches = rows
        .iter()
        .take(limit as usize)
        .map(batch)
        .collect::<Result<Vec<_>, _>>()?;
    if reads_oldest_first(cursor) {
        // Read oldest first to get the ones closest to the cursor; the page is newest first.
        batches.reverse();
    }
    Ok(BatchPage { batches, has_more })
}

/// The bytes a page of rows may still take: rows are read one by one until the row that spends
/// the budget, which is the page's last (a page holds at least one row, however large).
#[derive(Debug, Clone, Copy)]
pub struct ByteBudget {
    left: usize,
}

impl ByteBudget {
    pub fn new(max_bytes: usize) -> Self {
        Self { left: max_bytes }
    }

    /// Counts a row of `bytes` into the page; true when the page is full with it.
    pub fn spend(&mut self, bytes: usize) -> bool {
        self.left = self.left.saturating_sub(bytes);
        self.left == 0
    }
}

#[cfg(test)]
mod tests {
    use batchd_domain::BatchId;
    use batchd_wire::ProcessingStatus;

    use super::*;
    use crate::tests::batch;

    #[test]
    fn a_page_ends_at_the_row_that_spends_its_bytes() {
        let mut budget = ByteBudget::new(10);
        assert!(!budget.spend(4));
        assert!(!budget.spend(5));
        assert!(budget.spend(1));
        let mut huge = ByteBudget::new(10);
        assert!(
            huge.spend(1_000),
            "one row over the budget is a page of its own"
        );
        assert!(!ByteBudget::new(usize::MAX).spend(1 << 30));
    }

    #[test]
    fn the_extra_row_only_says_there_is_more() {
        let rows = [1, 2, 3];
        let page = page(&rows, 2, &Cursor::Start, |&k| {
            Ok(batch(k, ProcessingStatus::InProgress))
        })
        .unwrap();
        assert!(page.has_more);
        assert_eq!(
            page.batches.iter().map(|b| b.key).collect::<Vec<_>>(),
            [1, 2]
        );
        let page = super::page(&rows, 3, &Cursor::Start, |&k| {
            Ok(batch(k, ProcessingStatus::InProgress))
        })
        .unwrap();
        assert!(!page.has_more);
        assert_eq!(rows_to_read(3), 4);
    }

    #[test]
    fn rows_read_towards_newer_batches_come_back_newest_first() {
        let before = Cursor::Before(BatchId::generate());
        let page = page(&[1, 2, 3], 2, &before, |&k| {
            Ok(batch(k, ProcessingStatus::InProgress))
        })
        .unwrap();
        assert!(page.has_more);
        assert_eq!(
            page.batches.iter().map(|b| b.key).collect::<Vec<_>>(),
            [2, 1]
        );
    }
}
