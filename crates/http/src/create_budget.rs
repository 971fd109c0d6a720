//! The process-wide budget of creates in progress.
//!
//! A create holds a blocking thread and, while its body streams through, up to ~7 MB: the scanner's
//! window, the chunk being filled, the one queued and the one being stored (see `CHUNK_BYTES` in
//! [`crate::create`]). Without a cap, enough parallel creates exhaust memory and the blocking pool.
//! Each create takes a slot before it reads a byte of its body, so one that waits holds neither;
//! past a short wait it is refused with 529 `overloaded_error` and `retry-after`, which the SDKs
//! retry on their own. Below the cap a create never waits.

use std::sync::Arc;
use std::time::Duration;

use batchd_domain::ErrorType;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ApiError;
use crate::error::OVERLOADED;
use crate::log_throttle::LogThrottle;

/// What a refused create is told to wait before trying again: a slot frees as soon as any
/// create in progress ends, so a retry soon after is likely to get one.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A create's place in the budget, shared by the handler and its parsing thread: the slot is
/// given back when both are done.
pub(crate) type CreateSlot = Arc<OwnedSemaphorePermit>;

pub(crate) struct CreateBudget {
    slots: Arc<Semaphore>,
    max: usize,
    wait: Duration,
    refusals: LogThrottle,
}

impl CreateBudget {
    pub fn new(max: usize, wait: Duration) -> Self {
        let max = max.max(1);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            wait,
            refusals: LogThrottle::default(),
        }
    }

    /// A slot now if one is free, else the first to free up within the wait, else the 529.
    pub async fn admit(&self) -> Result<CreateSlot, ApiError> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(Arc::new(slot));
        }
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(Arc::new(slot)),
            _ => {
                self.refused();
                Err(ApiError::new(ErrorType::Overloaded, OVERLOADED).with_retry_after(RETRY_AFTER))
            }
        }
    }

    fn refused(&self) {
        match self.refusals.due() {
            Some(missed) => tracing::warn!(
                max_concurrent_creates = self.max,
                times_since_last_warning = missed,
                "create refused with 529: the creates in progress fill the budget"
            ),
            None => {
                tracing::debug!("create refused with 529: the creates in progress fill the budget")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_a_slot_then_refuses() {
        let budget = CreateBudget::new(1, Duration::from_millis(50));
        let held = budget.admit().await.expect("a free slot");
        let refused = budget.admit().await.expect_err("the budget is full");
        assert_eq!(refused.status.as_u16(), 529);
        assert_eq!(refused.retry_after, Some(RETRY_AFTER.as_secs()));
        drop(held);
        budget.admit().await.expect("the slot was given back");
    }
}
