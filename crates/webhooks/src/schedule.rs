//! When a failed delivery is tried again, and when an endpoint is disabled. Any answer but a
//! 2xx is a failure (a 3xx too: redirects are not followed), as is no answer within
//! [`crate::policy::SEND_TIMEOUT`]. Retries back off exponentially from [`FIRST_RETRY`] with
//! full jitter in the upper half of each step, so a receiver that was restarting hears again
//! within seconds and a dead one is not hammered; after [`GIVE_UP_AFTER`] from the event the
//! delivery is abandoned. An endpoint whose deliveries have all failed for [`DISABLE_AFTER`] is
//! disabled.

use std::time::Duration;

/// The nominal delay before the first retry; with jitter it is between half and all of it.
pub const FIRST_RETRY: Duration = Duration::from_secs(10);
/// The longest delay between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(6 * 3_600);
/// How long after its event a delivery is still tried.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(72 * 3_600);
/// How long an endpoint may fail without a success before it is disabled.
pub const DISABLE_AFTER: Duration = Duration::from_secs(5 * 86_400);

/// The nominal delay after the `failures`-th failed attempt (1 for the first): 10 s, 20 s,
/// 40 s… up to [`MAX_DELAY`].
pub fn nominal_delay(failures: u32) -> Duration {
    nominal_delay_from(FIRST_RETRY, failures)
}

/// [`nominal_delay`] with another first step (tests shorten it), capped the same way.
pub fn nominal_delay_from(first: Duration, failures: u32) -> Duration {
    let doubled = first.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    doubled.min(MAX_DELAY)
}

/// The delay after the `failures`-th failure, jittered into `[nominal / 2, nominal]`.
pub fn delay(failures: u32, rng: &mut impl rand::Rng) -> Duration {
    delay_from(FIRST_RETRY, failures, rng)
}

/// [`delay`] from another first step.
pub fn delay_from(first: Duration, failures: u32, rng: &mut impl rand::Rng) -> Duration {
    let nominal = nominal_delay_from(first, failures);
    let half = nominal / 2;
    half + Duration::from_millis(rng.random_range(0..=half.as_millis() as u64))
}

/// The time of the next attempt, as an offset from the event's creation, after the
/// `failures`-th failure `elapsed` after it; `None` when the delivery is given up.
pub fn next_attempt(
    failures: u32,
    elapsed: Duration,
    rng: &mut impl rand::Rng,
) -> Option<Duration> {
    next_attempt_from(FIRST_RETRY, failures, elapsed, rng)
}

/// [`next_attempt`] from another first step.
pub fn next_attempt_from(
    first: Duration,
    failures: u32,
    elapsed: Duration,
    rng: &mut impl rand::Rng,
) -> Option<Duration> {
    let at = elapsed + delay_from(first, failures, rng);
    (at <= GIVE_UP_AFTER).then_some(at)
}

/// Whether an endpoint failing since `failing_for` (no success in between) is to be disabled.
pub fn disable(failing_for: Duration) -> bool {
    failing_for >= DISABLE_AFTER
}

/// Whether an HTTP status counts as delivered.
pub fn delivered(status: u16) -> bool {
    (200..300).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retry_comes_within_ten_seconds_and_later_ones_back_off() {
        let mut rng = rand::rng();
        for _ in 0..100 {
            let first = delay(1, &mut rng);
            assert!(
                first >= Duration::from_secs(5) && first <= FIRST_RETRY,
                "{first:?}"
            );
        }
        assert_eq!(nominal_delay(2), Duration::from_secs(20));
        assert_eq!(nominal_delay(3), Duration::from_secs(40));
        assert_eq!(nominal_delay(30), MAX_DELAY);
        assert_eq!(nominal_delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn a_shorter_first_step_scales_the_back_off_but_not_the_caps() {
        let first = Duration::from_millis(50);
        let mut rng = rand::rng();
        let d = delay_from(first, 1, &mut rng);
        assert!(d >= first / 2 && d <= first, "{d:?}");
        assert_eq!(nominal_delay_from(first, 3), Duration::from_millis(200));
        assert_eq!(
            nominal_delay_from(first, 40),
            MAX_DELAY.min(first * (1 << 20))
        );
        assert_eq!(
            next_attempt_from(first, 1, GIVE_UP_AFTER, &mut rng),
            None,
            "given up after 72 hours whatever the step"
        );
    }

    #[test]
    fn deliveries_are_given_up_after_72_hours() {
        let mut rng = rand::rng();
        let (mut elapsed, mut failures) = (Duration::ZERO, 0);
        while let Some(at) = next_attempt(failures + 1, elapsed, &mut rng) {
            failures += 1;
            assert!(at > elapsed);
            elapsed = at;
        }
        assert!(elapsed <= GIVE_UP_AFTER);
        // Several hours apart at the end, so a few dozen attempts in all.
        assert!((10..40).contains(&failures), "{failures}");
        assert!(GIVE_UP_AFTER - elapsed <= MAX_DELAY);
    }

    #[test]
    fn only_2xx_is_delivered_and_five_days_of_failure_disable() {
        assert!(delivered(200) && delivered(204) && delivered(299));
        for status in [100, 301, 302, 307, 400, 404, 500, 503] {
            assert!(!delivered(status), "{status}");
        }
        assert!(!disable(DISABLE_AFTER - Duration::from_secs(1)));
        assert!(disable(DISABLE_AFTER));
    }
}
