//! The one throttle on repeated warnings: an event a client can cause at will (a refused
//! create, a full connection cap, a failed TLS handshake) is logged above debug at most once
//! per [`LOG_INTERVAL`], with the count of those held back, so a flood cannot flood the logs.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often, at most, each kind of event is logged above debug.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Lets an event through at most once per [`LOG_INTERVAL`], counting the ones held back.
#[derive(Debug, Default)]
pub struct LogThrottle {
    last: Mutex<Option<Instant>>,
    missed: AtomicU64,
}

impl LogThrottle {
    /// `Some(events held back since the last one let through)` when this one may be logged.
    pub fn due(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < LOG_INTERVAL) {
            self.missed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.missed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::LogThrottle;

    #[test]
    fn lets_the_first_through_and_counts_the_rest() {
        let throttle = LogThrottle::default();
        assert_eq!(throttle.due(), Some(0));
        assert_eq!(throttle.due(), None);
        assert_eq!(throttle.due(), None);
        // Within the interval nothing more is let through; the count waits for the next one.
        assert_eq!(
            throttle.missed.load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }
}
