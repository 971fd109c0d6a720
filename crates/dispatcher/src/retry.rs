//! How long a request waits before its next upstream attempt.
//!
//! Exponential back-off from `base`, doubling per attempt up to `max`, with "equal jitter" (the
//! second half of the interval is random) so that requests failed together by one overload do
//! not come back together; an upstream's `retry-after` is a floor, never shortened by jitter.
//! Whether there is a next attempt at all (attempt budget, the batch's `expires_at`) is the
//! request task's call.

use std::time::Duration;

/// `attempts` is how many attempts were made so far (1 after the first failure); `jitter` is a
/// random number in `[0, 1)`.
pub(crate) fn delay(
    attempts: u32,
    retry_after: Option<Duration>,
    base: Duration,
    max: Duration,
    jitter: f64,
) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let backoff = base.saturating_mul(1 << exponent).min(max);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let jittered = backoff.mul_f64(0.5 + 0.5 * jitter);
    jittered.max(retry_after.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(60);

    #[test]
    fn doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        assert_eq!(delay(1, None, BASE, MAX, 1.0), Duration::from_secs(1));
        assert_eq!(delay(1, None, BASE, MAX, 0.0), Duration::from_millis(500));
        assert_eq!(delay(3, None, BASE, MAX, 1.0), Duration::from_secs(4));
        assert_eq!(delay(40, None, BASE, MAX, 1.0), MAX);
        assert_eq!(delay(2, None, BASE, MAX, f64::NAN), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let hint = Some(Duration::from_secs(7));
        assert_eq!(delay(1, hint, BASE, MAX, 0.3), Duration::from_secs(7));
        assert_eq!(
            delay(10, Some(Duration::from_millis(10)), BASE, MAX, 1.0),
            MAX
        );
    }
}
