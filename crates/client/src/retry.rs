//! The retry policy of the official Anthropic SDKs, as pure functions.
//!
//! Which failures are retried and how long to wait in between follows the Python SDK
//! (`_should_retry`, `_parse_retry_after_header`, `_calculate_retry_timeout`), which the
//! TypeScript and Go SDKs match in all points that matter here:
//!
//! * connection errors and timeouts are retried;
//! * responses with `x-should-retry: true` are retried and with `x-should-retry: false` are not,
//!   whatever their status; otherwise 408, 409, 429 and every status ≥ 500 (529 included) are;
//! * the delay is the server's `retry-after-ms` (milliseconds), else `retry-after` (seconds,
//!   fractions allowed, or an HTTP date), honoured only when 0 < delay ≤ 60 s; otherwise
//!   exponential back-off 0.5 s · 2ⁿ capped at 8 s, minus up to 25 % random jitter.
//!
//! The functions take the clock and the random jitter as arguments so they can be tested exactly.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// Retries after the first attempt unless configured otherwise (all three SDKs use 2).
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// Back-off before the first retry when the server gives no usable hint.
pub const INITIAL_RETRY_DELAY: Duration = Duration::from_millis(500);
/// Upper bound of the exponential back-off.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(8);
/// Server-provided delays longer than this (or ≤ 0) are ignored in favour of the back-off.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whether an error response should be retried (given retries remain).
///
/// `x-should-retry` overrides the status-based rule when it is exactly `true` or `false`.
pub fn should_retry_status(status: u16, headers: &HeaderMap) -> bool {
    match header_str(headers, "x-should-retry") {
        Some("true") => return true,
        Some("false") => return false,
        _ => {}
    }
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// The server's requested delay in seconds, from `retry-after-ms` or `retry-after` (see
/// [`batchd_wire::retry_after::seconds`]); [`retry_delay`] decides whether to honour it.
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<f64> {
    batchd_wire::retry_after::seconds(|name| header_str(headers, name), now)
}

/// How long to sleep before the next retry.
///
/// `retries_taken` is the number of retries already made (0 before the first retry), `headers`
/// those of the failed response (`None` after a connection error or timeout), and `jitter` a
/// random number in `[0, 1)` that shortens the back-off by up to 25 %.
pub fn retry_delay(
    headers: Option<&HeaderMap>,
    retries_taken: u32,
    now: SystemTime,
    jitter: f64,
) -> Duration {
    if let Some(seconds) = headers.and_then(|h| parse_retry_after(h, now))
        && seconds > 0.0
        && seconds <= MAX_RETRY_AFTER.as_secs_f64()
    {
        return Duration::from_secs_f64(seconds);
    }
    let exponent = i32::try_from(retries_taken.min(1000)).unwrap_or(1000);
    let backoff = (INITIAL_RETRY_DELAY.as_secs_f64() * 2f64.powi(exponent))
        .min(MAX_RETRY_DELAY.as_secs_f64());
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Duration::from_secs_f64((backoff * (1.0 - 0.25 * jitter)).max(0.0))
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn now() -> SystemTime {
        // Wed, 21 Oct 2015 07:28:00 GMT
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    #[test]
    fn retryable_statuses() {
        let none = HeaderMap::new();
        for s in [408, 409, 429, 500, 502, 503, 504, 529, 599] {
            assert!(should_retry_status(s, &none), "{s}");
        }
        for s in [400, 401, 402, 403, 404, 405, 413, 422, 499] {
            assert!(!should_retry_status(s, &none), "{s}");
        }
    }

    #[test]
    fn x_should_retry_overrides_the_status() {
        assert!(!should_retry_status(
            529,
            &headers(&[("x-should-retry", "false")])
        ));
        assert!(!should_retry_status(
            429,
            &headers(&[("x-should-retry", "false")])
        ));
        assert!(should_retry_status(
            400,
            &headers(&[("x-should-retry", "true")])
        ));
        assert!(should_retry_status(
            404,
            &headers(&[("x-should-retry", "true")])
        ));
        // Anything but the exact words falls back to the status rule, as in the SDKs.
        assert!(should_retry_status(
            500,
            &headers(&[("x-should-retry", "TRUE!")])
        ));
        assert!(!should_retry_status(
            400,
            &headers(&[("x-should-retry", "yes")])
        ));
    }

    #[test]
    fn honours_server_delays_only_within_zero_and_sixty_seconds() {
        let t = now();
        let d = |pairs: &[(&'static str, &str)]| retry_delay(Some(&headers(pairs)), 0, t, 0.0);
        assert_eq!(d(&[("retry-after-ms", "10")]), Duration::from_millis(10));
        assert_eq!(d(&[("retry-after", "60")]), Duration::from_secs(60));
        assert_eq!(d(&[("retry-after", "1.5")]), Duration::from_millis(1500));
        assert_eq!(
            d(&[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")]),
            Duration::from_secs(30)
        );
        // Out of range, zero, negative, NaN: back-off instead (0.5 s before the first retry).
        for bad in [
            "61",
            "0",
            "-1",
            "NaN",
            "inf",
            "Wed, 21 Oct 2015 07:27:00 GMT",
        ] {
            assert_eq!(d(&[("retry-after", bad)]), INITIAL_RETRY_DELAY, "{bad}");
        }
        assert_eq!(d(&[("retry-after-ms", "60001")]), INITIAL_RETRY_DELAY);
    }

    #[test]
    fn exponential_backoff_with_negative_jitter() {
        let t = now();
        let expected = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0];
        for (n, secs) in expected.iter().enumerate() {
            let n = n as u32;
            assert_eq!(
                retry_delay(None, n, t, 0.0),
                Duration::from_secs_f64(*secs),
                "{n}"
            );
            // Full jitter takes off 25 %; never more, never adds.
            assert_eq!(
                retry_delay(None, n, t, 1.0),
                Duration::from_secs_f64(secs * 0.75),
                "{n}"
            );
            let mid = retry_delay(None, n, t, 0.5);
            assert!(
                mid < Duration::from_secs_f64(*secs) && mid > Duration::from_secs_f64(secs * 0.75)
            );
        }
        assert_eq!(retry_delay(None, u32::MAX, t, 0.0), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(None, 0, t, f64::NAN), INITIAL_RETRY_DELAY);
    }
}
