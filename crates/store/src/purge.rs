//! Reclaiming the rows of deleted, aborted and archived batches, and the chunks of deleted
//! files, in short steps. Each engine
//! says how to remove one step's rows; how a call is cut into steps is decided here.

use crate::Result;

/// Rows removed per purge transaction, whatever the caller's limit: keeps each one short.
pub const ROWS_PER_STEP: u64 = 2_000;

/// File chunks removed per purge transaction: a chunk is up to 1 MiB
/// ([`crate::FILE_CHUNK_BYTES`]), so a step of [`ROWS_PER_STEP`] of them would be gigabytes.
/// Each counts as one row of the caller's limit.
pub const CHUNKS_PER_STEP: u64 = 16;

/// Which batch a purge step reclaims, in this order: deleted batches (rows and batch row) first,
/// then archived ones (rows only: the batch stays visible and is marked reclaimed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Deleted,
    Archived,
}

impl Target {
    /// The order in which a step looks for a batch to reclaim.
    pub const ORDER: [Target; 2] = [Target::Deleted, Target::Archived];
}

/// Removes up to `limit` rows by calling `step` with the most rows it may remove, each call its
/// own transaction, until `limit` is reached or a step removes nothing. Returns the rows removed.
pub async fn in_steps<F, Fut>(limit: u32, mut step: F) -> Result<u64>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let mut removed = 0;
    while removed < u64::from(limit) {
        let n = step((u64::from(limit) - removed).min(ROWS_PER_STEP)).await?;
        if n == 0 {
            break;
        }
        removed += n;
    }
    Ok(removed)
}

/// One step's budget of rows, spent over a batch's tables in order: each removal is asked for
/// at most what is left, and none once the budget is spent.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    step: u64,
    removed: u64,
}

impl Budget {
    pub fn new(step: u64) -> Self {
        Self { step, removed: 0 }
    }

    /// The most rows the next removal may take; `None` once the budget is spent.
    pub fn left(&self) -> Option<u64> {
        (self.removed < self.step).then(|| self.step - self.removed)
    }

    pub fn spend(&mut self, removed: u64) {
        self.removed += removed;
    }

    /// Fewer rows removed than allowed: every table is empty for the batch now, so its batch row
    /// may go too.
    pub fn tables_emptied(&self) -> bool {
        self.removed < self.step
    }

    pub fn removed(&self) -> u64 {
        self.removed
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        // The futures here never wait on anything.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn steps_are_capped_and_stop_when_nothing_is_left() {
        let asked = RefCell::new(Vec::new());
        let mut left = 4_500u64;
        let removed = run(in_steps(10_000, |max| {
            asked.borrow_mut().push(max);
            let n = max.min(left);
            left -= n;
            async move { Ok(n) }
        }))
        .unwrap();
        assert_eq!(removed, 4_500);
        assert_eq!(*asked.borrow(), [2_000, 2_000, 2_000, 2_000]);
    }

    #[test]
    fn the_caller_limit_bounds_the_last_step() {
        let removed = run(in_steps(2_500, |max| async move { Ok(max) })).unwrap();
        assert_eq!(removed, 2_500);
    }

    #[test]
    fn a_step_budget_is_spent_across_tables_in_order() {
        let mut budget = Budget::new(50);
        assert_eq!(budget.left(), Some(50));
        budget.spend(30);
        assert_eq!(budget.left(), Some(20));
        assert!(budget.tables_emptied());
        budget.spend(20);
        assert_eq!((budget.left(), budget.removed()), (None, 50));
        assert!(!budget.tables_emptied());
    }

    #[test]
    fn deleted_batches_are_reclaimed_before_archived_ones() {
        assert_eq!(Target::ORDER, [Target::Deleted, Target::Archived]);
    }
}
