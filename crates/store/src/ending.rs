//! When a batch ends. Engines write the end in SQL of their own; whether a record group ends a
//! batch, and what its tallies become, is decided here once.

use batchd_domain::{EndReason, Outcome};

/// Whether an answer's outcome is stored as a result. Canceled and expired are what a batch's
/// end reason says about requests without a result; they are never stored, so such an answer
/// only gives its claim back.
pub fn is_stored(outcome: Outcome) -> bool {
    match outcome {
        Outcome::Succeeded | Outcome::Errored => true,
        Outcome::Canceled | Outcome::Expired => false,
    }
}

/// A live batch's tallies as a record group found them (`total` requests, `succeeded` and
/// `errored` results).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub total: u64,
    pub succeeded: u64,
    pub errored: u64,
}

/// What a record group does to one live batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub succeeded: u64,
    pub errored: u64,
    /// Set when the batch ends in this group.
    pub end: Option<EndReason>,
}

/// The batch after a record group inserted `new_succeeded` and `new_errored` results that were
/// really new: it completes when every request has a result; a canceling batch with nothing
/// left claimed (`idle_canceling`) ends as canceled. `None` when nothing changes, so the batch
/// row needs no write.
pub fn after_record(
    before: Tally,
    new_succeeded: u64,
    new_errored: u64,
    idle_canceling: impl FnOnce() -> bool,
) -> Option<Recorded> {
    let succeeded = before.succeeded + new_succeeded;
    let errored = before.errored + new_errored;
    let end = if succeeded + errored >= before.total {
        Some(EndReason::Completed)
    } else if idle_canceling() {
        Some(EndReason::Canceled)
    } else {
        None
    };
    (new_succeeded + new_errored > 0 || end.is_some()).then_some(Recorded {
        succeeded,
        errored,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALF_DONE: Tally = Tally {
        total: 4,
        succeeded: 1,
        errored: 1,
    };

    #[test]
    fn the_last_result_completes_the_batch() {
        let done = after_record(HALF_DONE, 1, 1, || unreachable!()).unwrap();
        assert_eq!((done.succeeded, done.errored), (2, 2));
        assert_eq!(done.end, Some(EndReason::Completed));
    }

    #[test]
    fn a_canceling_batch_ends_once_nothing_is_claimed() {
        let canceled = after_record(HALF_DONE, 1, 0, || true).unwrap();
        assert_eq!(canceled.end, Some(EndReason::Canceled));
        // Even when the group brought nothing new (all duplicates or unstored outcomes).
        let canceled = after_record(HALF_DONE, 0, 0, || true).unwrap();
        assert_eq!(
            (canceled.succeeded, canceled.end),
            (1, Some(EndReason::Canceled))
        );
        let going_on = after_record(HALF_DONE, 1, 0, || false).unwrap();
        assert_eq!((going_on.succeeded, going_on.end), (2, None));
    }

    #[test]
    fn nothing_new_and_no_end_writes_nothing() {
        assert_eq!(after_record(HALF_DONE, 0, 0, || false), None);
    }

    #[test]
    fn only_succeeded_and_errored_are_stored() {
        assert!(is_stored(Outcome::Succeeded) && is_stored(Outcome::Errored));
        assert!(!is_stored(Outcome::Canceled) && !is_stored(Outcome::Expired));
    }
}
