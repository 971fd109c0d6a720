//! Cancel's state switch: what a cancel does to a batch depends only on its state, read (and
//! locked where the engine locks) inside the cancel's transaction.

use std::ops::ControlFlow;

use batchd_domain::Batch;
use batchd_wire::ProcessingStatus;

use crate::CancelOutcome;

/// `Continue` with the batch when it is in progress and is now to be switched to canceling;
/// otherwise the outcome to report as it is (already canceling, or already ended).
pub fn switch(batch: Batch) -> ControlFlow<CancelOutcome, Batch> {
    match batch.status {
        ProcessingStatus::InProgress => ControlFlow::Continue(batch),
        ProcessingStatus::Canceling => ControlFlow::Break(CancelOutcome::Canceling(batch)),
        ProcessingStatus::Ended => ControlFlow::Break(CancelOutcome::AlreadyEnded(batch)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::batch;

    #[test]
    fn only_a_batch_in_progress_is_switched() {
        assert!(matches!(
            switch(batch(1, ProcessingStatus::InProgress)),
            ControlFlow::Continue(b) if b.key == 1
        ));
        assert!(matches!(
            switch(batch(2, ProcessingStatus::Canceling)),
            ControlFlow::Break(CancelOutcome::Canceling(b)) if b.key == 2
        ));
        assert!(matches!(
            switch(batch(3, ProcessingStatus::Ended)),
            ControlFlow::Break(CancelOutcome::AlreadyEnded(b)) if b.key == 3
        ));
    }
}
