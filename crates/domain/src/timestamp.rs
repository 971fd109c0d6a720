//! Timestamps as microseconds since the Unix epoch: the precision the API shows, an integer that
//! every storage engine sorts and compares natively, rendered as RFC 3339 with `+00:00`.
//!
//! [`Timestamp::now`] never goes backwards within a process: the system clock can be stepped back
//! (NTP corrections, a VM's clock catching up), and a batch canceled just after its creation
//! must not show a `cancel_initiated_at` before its `created_at`. Processes of a cluster share
//! no such guarantee beyond their clocks' agreement.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A UTC instant with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The system clock, or the latest instant already handed out if the clock went back.
    pub fn now() -> Self {
        static LATEST: AtomicI64 = AtomicI64::new(i64::MIN);
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self(not_before(
            &LATEST,
            i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        ))
    }

    /// `self + d`, saturating rather than overflowing for absurd durations.
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// `self - d`, saturating.
    pub fn minus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// Time from `self` until `later`, zero if `later` is not after `self`.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_micros(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }

    /// RFC 3339 with six fractional digits and a `+00:00` offset, as the real API writes it.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = i128::from(self.0) * 1000;
        let dt = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| fmt::Error)?;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.microsecond()
        )
    }
}

/// `system`, or `latest` if that is later; `latest` becomes the answer.
fn not_before(latest: &AtomicI64, system: i64) -> i64 {
    latest.fetch_max(system, Ordering::Relaxed).max(system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_stepped_back_does_not_move_now_back() {
        let latest = AtomicI64::new(i64::MIN);
        assert_eq!(not_before(&latest, 1_000), 1_000);
        assert_eq!(not_before(&latest, 995), 1_000, "the clock went back 5 µs");
        assert_eq!(not_before(&latest, 1_010), 1_010);
        assert!(Timestamp::now() <= Timestamp::now());
    }

    #[test]
    fn formats_like_the_real_api() {
        // 2025-01-29T14:25:40.141141+00:00 from the recorded create response.
        let t = Timestamp::from_micros(1_738_160_740_141_141);
        assert_eq!(t.to_string(), "2025-01-29T14:25:40.141141+00:00");
        let parsed = time::OffsetDateTime::parse(
            &t.to_string(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(parsed.unix_timestamp_nanos(), 1_738_160_740_141_141_000);
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_micros(10);
        assert_eq!(t.plus(Duration::from_micros(5)).as_micros(), 15);
        assert_eq!(t.until(Timestamp::from_micros(4)), Duration::ZERO);
        assert_eq!(
            Timestamp::from_micros(i64::MAX - 1)
                .plus(Duration::MAX)
                .as_micros(),
            i64::MAX
        );
    }
}
