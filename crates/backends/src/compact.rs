//! JSON made fit for one line of a JSONL file: an upstream may answer pretty-printed JSON, and an
//! output line must not break. Whitespace between tokens is dropped; every other byte (key order,
//! number spelling, escapes) is kept as the upstream sent it.

use batchd_domain::raw_json;

/// `bytes` without the whitespace between its tokens, or `None` when it is not JSON (as serde_json
/// skips a value: its grammar only).
pub fn compact_json(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !raw_json::skips(text) {
        return None;
    }
    let b = text.as_bytes();
    // The common case (already compact) is copied once, in one piece.
    let mut out = String::with_capacity(text.len());
    let (mut i, mut start) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'"' => {
                // A string, most of an answer's bytes: from one quote or backslash to the next.
                // Byte by byte, this function was a fifth of batchd's instructions dispatching
                // OpenAI chat completions (52,000 a request of 240,000; then 14,000 of 201,000:
                // `scripts/instructions.sh openai-dispatch`, three runs each). With the check
                // by `raw_json::skips` instead of serde_json's walk, 11,000 instead of 13,700
                // (`callgrind_annotate --inclusive=yes` on the files that script leaves).
                i += 1;
                while let Some(at) = memchr::memchr2(b'"', b'\\', b.get(i..).unwrap_or_default()) {
                    if b[i + at] == b'"' {
                        i += at;
                        break;
                    }
                    // The escaped byte, whatever it is, is not the string's end.
                    i += at + 2;
                }
                i += 1;
            }
            b' ' | b'\n' | b'\r' | b'\t' => {
                out.push_str(&text[start..i]);
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
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

    /// Only the grammar is checked, as serde_json checks a value it skips: an upstream's lone
    /// surrogate, a number beyond `f64` or deep nesting is passed on as written.
    #[test]
    fn what_the_grammar_allows_is_kept() {
        let deep = "[".repeat(1_000) + &"]".repeat(1_000);
        for text in [r#"["\ud800", 1e400]"#, &deep] {
            assert_eq!(
                compact_json(text.as_bytes()).as_deref(),
                Some(text.replace(' ', "").as_str())
            );
        }
        assert_eq!(compact_json(b"[01]"), None);
        assert_eq!(compact_json(b"{\"a\":1,}"), None);
    }

    #[test]
    fn strings_are_kept_whole_whatever_they_hold() {
        let long = "word ".repeat(500);
        let pretty = format!(
            "{{ \"a\" : \"{long}\" ,\n \"b\": [ \"\\\\\" , \"x\\\" ]\" , \"\\u00e9 \\\"\" ],\t\"c\":\"é \" }}"
        );
        assert_eq!(
            compact_json(pretty.as_bytes()),
            Some(format!(
                "{{\"a\":\"{long}\",\"b\":[\"\\\\\",\"x\\\" ]\",\"\\u00e9 \\\"\"],\"c\":\"é \"}}"
            ))
        );
    }
}
