//! Fault directives carried in the request body: `[[fake:…]]`, parsed only when the fast
//! `memmem` scan finds the marker, so requests without one pay a single substring search.

use std::time::Duration;

use memchr::memmem;

/// The marker every directive starts with.
const MARKER: &[u8] = b"[[fake:";

/// What a scripted request gets while its fault budget lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// An HTTP status with the dialect's error body.
    Status(u16),
    /// Never answer; the client has to give up.
    Hang,
    /// Close the TCP connection with a reset and no response.
    Reset,
    /// 200 with a body that is not JSON.
    Malformed,
}

/// One parsed `[[fake:…]]` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// How many attempts of this exact body get the fault; `None` means every attempt.
    pub fail: Option<u32>,
    pub kind: FaultKind,
    /// `retry-after` header value in seconds (429/529/503 and friends).
    pub retry_after: Option<u64>,
    /// `retry-after-ms` header value in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// Error message for status faults; a default per status otherwise.
    pub message: Option<String>,
    /// Extra latency before this request's answer (fault or success), on top of the
    /// configured one: lets a test slow down one request among many.
    pub delay: Option<Duration>,
}

/// A directive that could not be parsed: answered as a 400 so a typo in a test fails loudly
/// instead of silently succeeding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectiveError(pub String);

/// Finds and parses the first directive in `body`. `Ok(None)` when there is none.
pub fn find(body: &[u8]) -> Result<Option<Directive>, DirectiveError> {
    // A precompiled finder would save a few nanoseconds; memmem's one-shot search is already
    // SIMD and the needle is tiny, so it stays simple.
    let Some(start) = memmem::find(body, MARKER) else {
        return Ok(None);
    };
    let rest = &body[start + MARKER.len()..];
    let Some(end) = memmem::find(rest, b"]]") else {
        return Err(DirectiveError("unterminated [[fake:…]] directive".into()));
    };
    let text = std::str::from_utf8(&rest[..end])
        .map_err(|_| DirectiveError("directive is not UTF-8".into()))?;
    parse(text).map(Some)
}

fn parse(text: &str) -> Result<Directive, DirectiveError> {
    let mut d = Directive {
        fail: Some(1),
        kind: FaultKind::Status(500),
        retry_after: None,
        retry_after_ms: None,
        message: None,
        delay: None,
    };
    let mut status = None;
    let mut kind = None;
    let mut rest = text;
    while !rest.is_empty() {
        // `message=` takes everything up to the closing `]]`, so it may contain commas.
        if let Some(message) = rest.strip_prefix("message=") {
            d.message = Some(message.to_owned());
            break;
        }
        let (item, tail) = rest.split_once(',').unwrap_or((rest, ""));
        rest = tail;
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        let bad = || DirectiveError(format!("bad directive item `{item}`"));
        match key {
            "always" => d.fail = None,
            "fail" => d.fail = Some(value.parse().map_err(|_| bad())?),
            "status" => status = Some(value.parse::<u16>().map_err(|_| bad())?),
            "kind" => kind = Some(value.to_owned()),
            "retry_after" => d.retry_after = Some(value.parse().map_err(|_| bad())?),
            "retry_after_ms" => d.retry_after_ms = Some(value.parse().map_err(|_| bad())?),
            "delay_ms" => d.delay = Some(Duration::from_millis(value.parse().map_err(|_| bad())?)),
            _ => return Err(DirectiveError(format!("unknown directive key `{key}`"))),
        }
    }
    d.kind = match kind.as_deref() {
        None | Some("status") => FaultKind::Status(status.unwrap_or(500)),
        Some("hang") => FaultKind::Hang,
        Some("reset") => FaultKind::Reset,
        Some("malformed") => FaultKind::Malformed,
        Some(other) => return Err(DirectiveError(format!("unknown fault kind `{other}`"))),
    };
    if let FaultKind::Status(code) = d.kind
        && !(100..=999).contains(&code)
    {
        return Err(DirectiveError(format!("bad status {code}")));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(find(b"no directive here").unwrap(), None);
        let d = find(br#"{"content":"hi [[fake:fail=2,status=429,retry_after=1]] there"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(d.fail, Some(2));
        assert_eq!(d.kind, FaultKind::Status(429));
        assert_eq!(d.retry_after, Some(1));
        let d = find(b"[[fake:fail=3,kind=reset]]").unwrap().unwrap();
        assert_eq!((d.fail, d.kind), (Some(3), FaultKind::Reset));
        let d = find(b"[[fake:always,status=400,message=max_tokens: too big, really]]")
            .unwrap()
            .unwrap();
        assert_eq!(d.fail, None);
        assert_eq!(d.message.as_deref(), Some("max_tokens: too big, really"));
        let d = find(b"[[fake:kind=hang]]").unwrap().unwrap();
        assert_eq!((d.fail, d.kind), (Some(1), FaultKind::Hang));
        let d = find(b"[[fake:status=529,retry_after_ms=150,delay_ms=20]]")
            .unwrap()
            .unwrap();
        assert_eq!(d.retry_after_ms, Some(150));
        assert_eq!(d.delay, Some(Duration::from_millis(20)));
    }

    #[test]
    fn refuses_typos() {
        assert!(find(b"[[fake:fial=2]]").is_err());
        assert!(find(b"[[fake:kind=explode]]").is_err());
        assert!(find(b"[[fake:fail=2").is_err());
        assert!(find(b"[[fake:status=77]]").is_err());
    }
}
