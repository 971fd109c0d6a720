//! Whether `serde_json::from_str::<Value>` would take a document, decided by one scan of its
//! bytes that builds nothing: [`parses`].
//!
//! Every dispatched request's params go through this check before their members are read, and
//! most of their bytes are the text of string values. serde_json's walk decodes each string
//! through its visitor, eight bytes at a time; here a string's body is found with `memchr`
//! (the bytes that end or escape it) and checked for control bytes in wide chunks, and only
//! escapes are looked at one by one. Numbers other than short integers are handed to
//! serde_json itself, so range and grammar are its own. With the bench's size of params
//! (`BENCH_PARAMS_WORDS=150 cargo test -p batchd-domain --release --lib validate_throughput --
//! --ignored --nocapture`, two runs of each build) the check took 577 ns through serde_json's
//! walk and 292-296 ns here, and a whole validation 1.84 µs against 1.53 µs.
//!
//! The rules are serde_json's (1.0.154), which the tests check byte for byte against
//! `from_str::<Value>`: whitespace is space, tab, LF and CR; a string holds no byte below 0x20;
//! a `\u` escape of a low surrogate, or of a high surrogate not followed by `\u` and a low one,
//! is refused; arrays and objects nest at most 127 deep; nothing but whitespace may follow the
//! value.

/// The deepest nesting of arrays and objects serde_json takes: its recursion limit of 128 is
/// reached (and refused) by the 128th level.
const MAX_DEPTH: u32 = 127;

/// An integer of at most this many digits fits an `i64` and an `f64`, so it parses whatever
/// its digits: longer ones (and every fraction or exponent) are left to serde_json.
const SHORT_DIGITS: usize = 15;

/// Whether `from_str::<serde_json::Value>(text)` succeeds.
pub fn parses(text: &str) -> bool {
    let mut scan = Scan {
        b: text.as_bytes(),
        i: 0,
    };
    scan.ws();
    if !scan.value(0) {
        return false;
    }
    scan.ws();
    scan.i == scan.b.len()
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// One value starting at the cursor (no whitespace before it), inside `depth` arrays or
    /// objects.
    fn value(&mut self, depth: u32) -> bool {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{') => depth < MAX_DEPTH && self.object(depth + 1),
            Some(b'[') => depth < MAX_DEPTH && self.array(depth + 1),
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let ok = self.b[self.i..].starts_with(word);
        self.i += word.len();
        ok
    }

    fn array(&mut self, depth: u32) -> bool {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return true;
        }
        loop {
            if !self.value(depth) {
                return false;
            }
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.i += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    fn object(&mut self, depth: u32) -> bool {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return true;
        }
        loop {
            if self.peek() != Some(b'"') || !self.string() {
                return false;
            }
            self.ws();
            if self.peek() != Some(b':') {
                return false;
            }
            self.i += 1;
            self.ws();
            if !self.value(depth) {
                return false;
            }
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    /// A string whose opening quote is at the cursor; the input is `str`, so its bytes are
    /// UTF-8 already.
    fn string(&mut self) -> bool {
        self.i += 1;
        loop {
            let rest = &self.b[self.i..];
            let Some(at) = memchr::memchr2(b'"', b'\\', rest) else {
                return false;
            };
            if has_control(&rest[..at]) {
                return false;
            }
            self.i += at + 1;
            if rest[at] == b'"' {
                return true;
            }
            if !self.escape() {
                return false;
            }
        }
    }

    /// The rest of an escape whose backslash is behind the cursor.
    fn escape(&mut self) -> bool {
        let Some(c) = self.peek() else {
            return false;
        };
        self.i += 1;
        match c {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => true,
            b'u' => match self.hex4() {
                Some(0xDC00..=0xDFFF) | None => false,
                // A high surrogate: only `\u` and a low one may follow.
                Some(0xD800..=0xDBFF) => {
                    if !self.b[self.i..].starts_with(b"\\u") {
                        return false;
                    }
                    self.i += 2;
                    matches!(self.hex4(), Some(0xDC00..=0xDFFF))
                }
                Some(_) => true,
            },
            _ => false,
        }
    }

    fn hex4(&mut self) -> Option<u16> {
        let digits = self.b.get(self.i..self.i + 4)?;
        self.i += 4;
        digits.iter().try_fold(0u16, |n, &d| {
            let v = (d as char).to_digit(16)?;
            Some(n << 4 | v as u16)
        })
    }

    /// A number at the cursor. A number ends at a byte that cannot be in one, and every byte
    /// that may follow a value (whitespace, `,`, `]`, `}`) is such a byte: so when the run of
    /// number bytes is not one valid number, the document is refused, whatever serde_json
    /// would have read of it first.
    fn number(&mut self) -> bool {
        let start = self.i;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
            self.i += 1;
        }
        let token = &self.b[start..self.i];
        let digits = token.strip_prefix(b"-").unwrap_or(token);
        let short = match digits {
            [b'0'] => true,
            [b'1'..=b'9', rest @ ..] => {
                rest.len() < SHORT_DIGITS && rest.iter().all(u8::is_ascii_digit)
            }
            _ => false,
        };
        short
            || std::str::from_utf8(token)
                .is_ok_and(|t| serde_json::from_str::<serde_json::Number>(t).is_ok())
    }
}

/// Whether `bytes` holds a byte below 0x20, which a JSON string may not. Chunks without an
/// early exit inside, so that the compiler checks each with vector instructions.
fn has_control(bytes: &[u8]) -> bool {
    let chunks = bytes.chunks_exact(32);
    let rest = chunks.remainder();
    chunks
        .into_iter()
        .any(|chunk| chunk.iter().fold(0u8, |seen, &b| seen | u8::from(b < 0x20)) != 0)
        || rest.iter().any(|&b| b < 0x20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn value_parses(text: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(text).is_ok()
    }

    fn agree(text: &str) {
        assert_eq!(parses(text), value_parses(text), "{text:?}");
    }

    #[test]
    fn edges_agree_with_value() {
        let nested = |n: usize, open: &str, close: &str| open.repeat(n) + &close.repeat(n);
        for text in [
            "",
            " ",
            "null",
            " null ",
            "nul",
            "nulll",
            "true",
            "tru",
            "false",
            "falsey",
            "0",
            "-0",
            "01",
            "-01",
            "-",
            "1.",
            ".1",
            "1.5",
            "1e5",
            "1E+5",
            "1e-5",
            "1e",
            "1e+",
            "2.5e400",
            "1e400",
            "-1e400",
            "1e-400",
            "0e99999999999999999999",
            "123456789012345",
            "1234567890123456",
            "99999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1-2",
            "[1-2]",
            "[1,]",
            "[,1]",
            "[]",
            "[ ]",
            "[1 2]",
            "{}",
            "{ }",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":}"#,
            r#"{a:1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":1}x"#,
            r#"{"a":1} "#,
            "\u{feff}1",
            "\"\"",
            "\"abc",
            "\"a\u{1}b\"",
            "\"a\u{7f}b\"",
            "\"é\"",
            "\"a\\\"b\"",
            "\"\\\\\"",
            "\"\\/\"",
            "\"\\b\\f\\n\\r\\t\"",
            "\"\\x\"",
            "\"\\u00e9\"",
            "\"\\u00E9\"",
            "\"\\u00g9\"",
            "\"\\u00e\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\udc00\"",
            "\"\\ud800\\ud800\"",
            "\"\\ud800x\"",
            "\"\\ud800\\n\"",
            "\"\\ud800\\u",
            "\"\\",
            "\"\\u",
            "[\"\\ud83d\\ude00\"]",
            r#"{"\ud800":1}"#,
            "\t\n\r 1 \t\n\r",
            "\u{a0}1",
            "[1]\n\n",
            "[true,false,null]",
        ] {
            agree(text);
        }
        for text in [
            "9".repeat(400),
            nested(126, "[", "]"),
            nested(127, "[", "]"),
            nested(128, "[", "]"),
            r#"{"a":"#.repeat(127) + "1" + &"}".repeat(127),
            r#"{"a":"#.repeat(128) + "1" + &"}".repeat(128),
        ] {
            agree(&text);
        }
        // A string as long as a request's text, with a control byte at each place a chunk
        // (or the bytes after the last whole one) could put it.
        for at in [0, 1, 31, 32, 33, 63, 64, 1000, 2047, 2048, 2049] {
            let mut s = "x".repeat(2050);
            s.replace_range(at..=at, "\u{1f}");
            agree(&format!("\"{s}\""));
        }
    }

    /// Documents mutated at random from valid ones, with the bytes that matter most to a JSON
    /// reader, must be taken or refused as `Value` takes or refuses them.
    #[test]
    fn mutations_agree_with_value() {
        let seeds = [
            r#"{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"hi \u00e9 \ud83d\ude00"}],"temperature":0.25,"stop":null,"x":[true,false,-1e-3,{}]}"#,
            r#"[1, -0.5e+2, "a\"b\\c\/d\n", {"k": [[]]}, null]"#,
            r#"  {"deep": [[[[{"a": [1, 2, {"b": "c"}]}]]]]}  "#,
        ];
        let alphabet: &[&str] = &[
            "\"", "\\", "{", "}", "[", "]", ":", ",", " ", "\n", "0", "1", "9", "-", "+", ".", "e",
            "E", "u", "d800", "dc00", "\\u", "\\ud83d", "\\ude00", "n", "t", "f", "a", "é",
            "\u{1}", "\u{1f}", "\t", "null", "true", "1e400", "00",
        ];
        const ROUNDS: usize = 60_000;
        let mut rng = StdRng::seed_from_u64(18);
        let mut refused = 0;
        for round in 0..ROUNDS {
            let mut text = seeds[round % seeds.len()].to_owned();
            for _ in 0..rng.random_range(1..=3) {
                // Cut only at character boundaries: the input is a `str`.
                let bounds: Vec<usize> = (0..=text.len())
                    .filter(|&i| text.is_char_boundary(i))
                    .collect();
                let at = bounds[rng.random_range(0..bounds.len())];
                let piece = alphabet[rng.random_range(0..alphabet.len())];
                match rng.random_range(0..3) {
                    0 => text.insert_str(at, piece),
                    1 => {
                        let end = bounds.iter().copied().find(|&e| e > at).unwrap_or(at);
                        text.replace_range(at..end, piece);
                    }
                    _ => {
                        let end = bounds.iter().copied().find(|&e| e > at).unwrap_or(at);
                        text.replace_range(at..end, "");
                    }
                }
            }
            let value = value_parses(&text);
            assert_eq!(parses(&text), value, "{text:?}");
            refused += usize::from(!value);
        }
        // The mutations reach both answers, so the comparison tests something.
        assert!(
            refused >= 5_000 && ROUNDS - refused >= 5_000,
            "{refused} of {ROUNDS} refused"
        );
    }
}
