//! JSON made fit for one line of a JSONL file: an upstream may answer pretty-printed JSON, and an
//! output line must not break. Whitespace between tokens is dropped; every other byte (key order,
//! number spelling, escapes) is kept as the upstream sent it.

use serde::de::IgnoredAny;

/// `bytes` without the whitespace between its tokens, or `None` when it is not JSON.
pub fn compact_json(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    serde_json::from_str::<IgnoredAny>(text).ok()?;
    let is_space = |b: &u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t');
    // The common case (already compact) copies once and scans once.
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped, mut start) = (false, false, 0);
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if is_space(&b) {
            out.push_str(&text[start..i]);
            start = i + 1;
        }
    }
    out.push_str(&text[start..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_goes_everything_else_stays() {
        assert_eq!(
            compact_json(b"{\n  \"b\" : [1, 2.50],\r\n\t\"a\": \"x y\\\" z\"\n}\n").as_deref(),
            Some(r#"{"b":[1,2.50],"a":"x y\" z"}"#)
        );
        assert_eq!(
            compact_json(br#"{"a":"\\"}"#).as_deref(),
            Some(r#"{"a":"\\"}"#)
        );
        assert_eq!(compact_json(b"<html>"), None);
        assert_eq!(compact_json(b"{\"a\":1} x"), None);
        assert_eq!(compact_json(&[0xff]), None);
    }
}
