//! The `retry-after-ms` and `retry-after` response headers: how long a server asks to be left
//! alone. Read by the client (the SDKs' retry policy) and by the backends (an upstream's hint);
//! each decides for itself which delays to honour.

use std::time::SystemTime;

/// The server's requested delay in seconds, from `retry-after-ms` (milliseconds) or else
/// `retry-after` (seconds, fractions allowed, or an HTTP date). `header` looks a header up by
/// name and gives its value when it is text.
///
/// The value may be zero, negative (an HTTP date in the past) or not finite. `None` when neither
/// header parses.
pub fn seconds<'h>(header: impl Fn(&str) -> Option<&'h str>, now: SystemTime) -> Option<f64> {
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Some(ms / 1000.0);
    }
    let value = header("retry-after")?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Some(seconds);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(match at.duration_since(now) {
        Ok(ahead) => ahead.as_secs_f64(),
        Err(behind) => -behind.duration().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn now() -> SystemTime {
        // Wed, 21 Oct 2015 07:28:00 GMT
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    fn parse(pairs: &[(&str, &'static str)]) -> Option<f64> {
        let pairs = pairs.to_vec();
        seconds(
            |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v),
            now(),
        )
    }

    #[test]
    fn parses_retry_after_ms_seconds_and_dates() {
        assert_eq!(parse(&[("retry-after-ms", "1500")]), Some(1.5));
        assert_eq!(parse(&[("retry-after-ms", " 20.5 ")]), Some(0.0205));
        assert_eq!(parse(&[("retry-after", "3")]), Some(3.0));
        assert_eq!(parse(&[("retry-after", "0.25")]), Some(0.25));
        assert_eq!(
            parse(&[("retry-after", "Wed, 21 Oct 2015 07:28:07 GMT")]),
            Some(7.0)
        );
        assert_eq!(
            parse(&[("retry-after", "Wed, 21 Oct 2015 07:27:50 GMT")]),
            Some(-10.0)
        );
        // retry-after-ms wins over retry-after; an unparsable ms value falls through.
        assert_eq!(
            parse(&[("retry-after-ms", "100"), ("retry-after", "5")]),
            Some(0.1)
        );
        assert_eq!(
            parse(&[("retry-after-ms", "soon"), ("retry-after", "5")]),
            Some(5.0)
        );
        assert_eq!(parse(&[("retry-after", "later")]), None);
        assert_eq!(parse(&[]), None);
    }
}
