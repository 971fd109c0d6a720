//! Test mode's virtual clocks, engine-neutral: what a settle and a reset report, and the one
//! rule for moving an offset forward. The SQL that applies an offset lives in each engine.

use batchd_domain::Timestamp;

use crate::{Ended, StoreError, misuse};

/// What [`crate::ClockStore::settle`] did.
#[derive(Debug, Clone, Default)]
pub struct Settled {
    pub ended: Ended,
    /// Batches archived (their rows now wait for the purge).
    pub archived: u64,
}

/// What [`crate::ClockStore::reset_workspace`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reset {
    /// Keys of the batches of either surface removed, ended or not, so the dispatcher can drop
    /// what it still holds of them.
    pub batch_keys: Vec<i64>,
    /// Visible files removed.
    pub files: u64,
}

/// The farthest a clock may run ahead of real time: 1000 years, so that every time it yields
/// (plus a batch's expiry and retention) still renders as RFC 3339.
pub const MAX_OFFSET_MICROS: i64 = 1000 * 366 * 86_400 * 1_000_000;

/// The offset after moving `current` forward `by` microseconds. A clock never goes back, nor
/// past [`MAX_OFFSET_MICROS`].
pub fn advanced(current: i64, by: i64) -> Result<i64, StoreError> {
    if by < 0 {
        return Err(misuse(format!(
            "a clock moves forward only, not by {by} µs"
        )));
    }
    current
        .checked_add(by)
        .filter(|&offset| offset <= MAX_OFFSET_MICROS)
        .ok_or_else(|| {
            misuse(format!(
                "a clock offset of {current} µs + {by} µs is too far"
            ))
        })
}

/// A workspace's time: real `now` moved by its offset.
pub fn virtual_now(now: Timestamp, offset: i64) -> Timestamp {
    Timestamp::from_micros(now.as_micros().saturating_add(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_only_grow_and_never_overflow() {
        assert_eq!(advanced(0, 5).unwrap(), 5);
        assert_eq!(advanced(5, 0).unwrap(), 5);
        assert!(advanced(5, -1).is_err());
        assert!(advanced(MAX_OFFSET_MICROS, 1).is_err());
        assert!(advanced(1, i64::MAX).is_err());
    }

    #[test]
    fn virtual_now_adds_the_offset() {
        let now = Timestamp::from_micros(1_000);
        assert_eq!(virtual_now(now, 0), now);
        assert_eq!(virtual_now(now, 500), Timestamp::from_micros(1_500));
    }
}
