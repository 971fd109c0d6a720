//! The one scan of a raw JSON document: it checks the document as
//! `serde_json::from_str::<Value>` would, and hands the values it passes to its caller as slices
//! of the input ([`Raw`]), keys decoded. [`parses`] only checks. [`skips`],
//! [`members_as_written`] and [`fields`] check JSON's grammar alone, as serde_json does for a
//! value it skips: that is how an upstream's answer is read before batchd passes it on as
//! written, and how a create's request elements and an OpenAI input line's envelope are read
//! (as serde read them).
//!
//! Every dispatched request's params are read this way, and most of their bytes are the text of
//! string values. serde_json's walk decodes each string through its visitor, eight bytes at a
//! time; here a string's body is found with `memchr` (the bytes that end or escape it) and
//! checked for control bytes in wide chunks, and only escapes are looked at one by one. Numbers
//! other than short integers are handed to serde_json itself, so range and grammar are its own.
//! Measured with `BENCH_PARAMS_WORDS=150 cargo test -p batchd-domain --release --lib
//! validate_throughput -- --ignored --nocapture` (the bench's size of params), two runs of each
//! build on one machine: a whole validation took 1.84 µs when serde_json walked the params twice
//! (a check, then into `RawValue` members), 1.53 µs with this scan as the check, and 0.78-0.79 µs
//! with this scan reading the members as well.
//!
//! The rules are serde_json's (1.0.154); the tests compare what this scan takes and refuses, and
//! the members it reads, with `from_str::<Value>` (and the grammar-only readings with
//! `IgnoredAny`, a map of raw values and a derived struct): whitespace is space, tab, LF and CR; a string
//! holds no byte below 0x20; a `\u` escape of a low surrogate, or of a high surrogate not
//! followed by `\u` and a low one, is refused; arrays and objects nest at most 127 deep; nothing
//! but whitespace may follow the value.

use std::borrow::Cow;

use super::Raw;

/// The deepest nesting of arrays and objects serde_json takes: its recursion limit of 128 is
/// reached (and refused) by the 128th level.
const MAX_DEPTH: u32 = 127;

/// An integer of at most this many digits fits an `i64` and an `f64`, so it parses whatever
/// its digits: longer ones (and every fraction or exponent) are left to serde_json.
const SHORT_DIGITS: usize = 15;

/// Whether `from_str::<serde_json::Value>(text)` succeeds.
pub fn parses(text: &str) -> bool {
    Scan::document(text, false, |scan| scan.value(0).then_some(())).is_some()
}

/// Whether `from_str::<serde::de::IgnoredAny>(text)` succeeds: JSON's grammar only, as serde_json
/// skips a value it does not keep. A `\u` escape may name any code unit, a number any magnitude,
/// and arrays and objects nest to any depth (followed with a stack, not by recursion).
pub fn skips(text: &str) -> bool {
    Scan::document(text, true, |scan| scan.skip_any_depth().then_some(())).is_some()
}

/// The members of the object `text` holds, in document order, a repeated key each time: values
/// checked for the grammar only, as [`skips`] checks them, and left as written; keys decoded,
/// and so checked as serde_json checks any string it decodes (a lone surrogate refused), since
/// serde_json reads a map's keys that way whatever it does with the values.
pub fn members_as_written(text: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    Scan::document(text, true, |scan| {
        let mut members = Vec::with_capacity(16);
        let read = scan.object(0, |key, scan, _| match scan.written() {
            Some(value) => {
                members.push((key, value));
                true
            }
            None => false,
        });
        read.then_some(members)
    })
}

/// The members of the object `text` holds that `names` names, as a serde-derived struct of
/// `Option<&RawValue>` fields reads them: values checked for the grammar only and left as
/// written, keys decoded, other members skipped; `None` when `text` is not one such object or
/// holds one of `names` twice (serde's "duplicate field"). A member whose value is `null`
/// counts as absent, as serde reads it into an `Option`, but it is still seen for duplicates.
pub fn fields<'a, const N: usize>(text: &'a str, names: [&str; N]) -> Option<[Option<&'a str>; N]> {
    Scan::document(text, true, |scan| {
        let mut found = [None; N];
        let mut seen = [false; N];
        let read = scan.object(0, |key, scan, _| {
            let Some(value) = scan.written() else {
                return false;
            };
            let Some(k) = names.iter().position(|name| *name == key) else {
                return true;
            };
            found[k] = (value != "null").then_some(value);
            !std::mem::replace(&mut seen[k], true)
        });
        read.then_some(found)
    })
}

/// A cursor in a document. Its readers take `depth`, the number of arrays and objects around
/// the value at the cursor, and leave the cursor just past what they read.
pub(super) struct Scan<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    /// Grammar only ([`skips`]): no surrogate pairing, no number range.
    lax: bool,
}

impl<'a> Scan<'a> {
    /// Reads `text` as one value with `read` (the cursor at the value, past any whitespace),
    /// then nothing but whitespace; `None` when either fails. `lax` reads the grammar only.
    pub(super) fn document<T>(
        text: &'a str,
        lax: bool,
        read: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<T> {
        let mut scan = Scan {
            text,
            b: text.as_bytes(),
            i: 0,
            lax,
        };
        scan.ws();
        let value = read(&mut scan)?;
        scan.ws();
        (scan.i == scan.b.len()).then_some(value)
    }

    /// The value at the cursor, checked and skipped.
    pub(super) fn raw(&mut self, depth: u32) -> Option<Raw<'a>> {
        let start = self.i;
        self.value(depth).then(|| Raw(&self.text[start..self.i]))
    }

    /// The object at the cursor: `member` is called with each key (decoded), the cursor at its
    /// value and the value's depth, and must read the value; it answers `false` to refuse the
    /// document.
    pub(super) fn object(
        &mut self,
        depth: u32,
        mut member: impl FnMut(Cow<'a, str>, &mut Self, u32) -> bool,
    ) -> bool {
        self.items(depth, b'{', b'}', |scan, depth| {
            let Some((key, escaped)) = scan.key() else {
                return false;
            };
            match decode(key, escaped) {
                Some(key) => member(key, scan, depth),
                None => false,
            }
        })
    }

    /// The array at the cursor: `item` is called with the cursor at each item and its depth,
    /// and must read the item; it answers `false` to refuse the document.
    pub(super) fn array(&mut self, depth: u32, item: impl FnMut(&mut Self, u32) -> bool) -> bool {
        self.items(depth, b'[', b']', item)
    }

    /// The items of the array or object at the cursor, between `open` and `close`, each read by
    /// `item` (for an object, its key too).
    fn items(
        &mut self,
        depth: u32,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self, u32) -> bool,
    ) -> bool {
        if self.peek() != Some(open) || depth >= MAX_DEPTH {
            return false;
        }
        if self.opened_empty(close) {
            return true;
        }
        loop {
            if !item(self, depth + 1) {
                return false;
            }
            match self.comma_or_close(close) {
                Some(false) => {}
                Some(true) => return true,
                None => return false,
            }
        }
    }

    /// Past the opening bracket at the cursor and the whitespace after it: whether `close`
    /// follows at once (then past it too).
    fn opened_empty(&mut self, close: u8) -> bool {
        self.i += 1;
        self.ws();
        let empty = self.peek() == Some(close);
        self.i += usize::from(empty);
        empty
    }

    /// After an item of an array or object: `Some(false)` past a comma and the whitespace after
    /// it (an item follows), `Some(true)` past `close`, `None` at anything else.
    fn comma_or_close(&mut self, close: u8) -> Option<bool> {
        self.ws();
        match self.peek()? {
            b',' => {
                self.i += 1;
                self.ws();
                Some(false)
            }
            b if b == close => {
                self.i += 1;
                Some(true)
            }
            _ => None,
        }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// One value starting at the cursor (no whitespace before it), checked and skipped.
    fn value(&mut self, depth: u32) -> bool {
        match self.peek() {
            Some(b'{') => self.object(depth, |_, scan, depth| scan.value(depth)),
            Some(b'[') => self.array(depth, |scan, depth| scan.value(depth)),
            _ => self.scalar(),
        }
    }

    /// A string, literal or number at the cursor, checked and skipped.
    fn scalar(&mut self) -> bool {
        match self.peek() {
            Some(b'"') => self.string().is_some(),
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    /// The value at the cursor as written, checked for the grammar only ([`Scan::skip_any_depth`]).
    fn written(&mut self) -> Option<&'a str> {
        let start = self.i;
        self.skip_any_depth().then(|| &self.text[start..self.i])
    }

    /// The value at the cursor skipped, at any depth: the brackets still open are kept on a
    /// stack, as serde_json's own skip keeps them, so no input can exhaust the thread's stack.
    fn skip_any_depth(&mut self) -> bool {
        // The closing bracket of each array or object the cursor is inside, innermost last.
        let mut open = Vec::new();
        loop {
            // A value at the cursor, or the first item of a container.
            let scalar = match self.peek() {
                Some(close @ (b'{' | b'[')) => {
                    let close = if close == b'{' { b'}' } else { b']' };
                    if !self.opened_empty(close) {
                        open.push(close);
                        if close == b'}' && self.key().is_none() {
                            return false;
                        }
                        continue;
                    }
                    true
                }
                _ => self.scalar(),
            };
            if !scalar {
                return false;
            }
            // A value ended: close every container that ends here, up to one with another item.
            loop {
                let Some(&close) = open.last() else {
                    return true;
                };
                match self.comma_or_close(close) {
                    Some(true) => {
                        open.pop();
                    }
                    Some(false) if close == b'}' && self.key().is_none() => return false,
                    Some(false) => break,
                    None => return false,
                }
            }
        }
    }

    /// A member's key and its colon at the cursor, and the whitespace after them: the key as
    /// written (quotes included) and whether it holds escapes. Inlined: left a call, it made a
    /// whole validation 6 % slower (`validate_throughput`, 0.83 µs against 0.78).
    #[inline(always)]
    fn key(&mut self) -> Option<(&'a str, bool)> {
        let start = self.i;
        let escaped = self.string()?;
        let key = &self.text[start..self.i];
        self.ws();
        if self.peek() != Some(b':') {
            return None;
        }
        self.i += 1;
        self.ws();
        Some((key, escaped))
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let ok = self.b[self.i..].starts_with(word);
        if ok {
            self.i += word.len();
        }
        ok
    }

    /// A string whose opening quote is at the cursor (the input is `str`, so its bytes are
    /// UTF-8 already): whether it holds escapes, `None` when it is not a valid string.
    fn string(&mut self) -> Option<bool> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.i += 1;
        let mut escaped = false;
        loop {
            let rest = &self.b[self.i..];
            let at = memchr::memchr2(b'"', b'\\', rest)?;
            if has_control(&rest[..at]) {
                return None;
            }
            self.i += at + 1;
            if rest[at] == b'"' {
                return Some(escaped);
            }
            escaped = true;
            if !self.escape() {
                return None;
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
            b'u' if self.lax => self.hex4().is_some(),
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
        if self.lax {
            return is_number(token);
        }
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

/// Whether `token` is one number in JSON's grammar: an optional minus, an integer part without
/// leading zeros, an optional fraction and an optional exponent, each with digits.
fn is_number(token: &[u8]) -> bool {
    let digits = |t: &[u8]| t.iter().take_while(|b| b.is_ascii_digit()).count();
    let t = token.strip_prefix(b"-").unwrap_or(token);
    let int = digits(t);
    if int == 0 || (int > 1 && t[0] == b'0') {
        return false;
    }
    let mut rest = &t[int..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = digits(fraction);
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    if let [b'e' | b'E', exponent @ ..] = rest {
        let exponent = match exponent {
            [b'+' | b'-', signed @ ..] => signed,
            unsigned => unsigned,
        };
        let n = digits(exponent);
        if n == 0 {
            return false;
        }
        rest = &exponent[n..];
    }
    rest.is_empty()
}

/// A checked string (quotes included) decoded: borrowed from the input unless it holds escapes.
pub(super) fn decode(string: &str, escaped: bool) -> Option<Cow<'_, str>> {
    if escaped {
        serde_json::from_str(string).ok().map(Cow::Owned)
    } else {
        string.get(1..string.len() - 1).map(Cow::Borrowed)
    }
}

/// Whether `bytes` holds a byte below 0x20, which a JSON string may not. Chunks without an
/// early exit inside, so that the compiler checks each with vector instructions (eight bytes at
/// a time with integer arithmetic instead made a whole validation 10 % slower).
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
    use crate::raw_json::{Body, Kind, Object, string};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::{Map, Value};

    /// `object` holds `map`'s members but `skip`, each with the value `Value` holds (and a
    /// string decoded as `Value` decodes it).
    fn same_members(object: &Object<'_>, map: &Map<String, Value>, skip: Option<&str>, text: &str) {
        let expected = map.len() - usize::from(skip.is_some_and(|k| map.contains_key(k)));
        assert_eq!(object.len(), expected, "{text:?}");
        for (key, value) in map.iter().filter(|(k, _)| Some(k.as_str()) != skip) {
            let raw = object.get(key).expect("every key is read");
            let read: Value = serde_json::from_str(raw.get()).unwrap();
            assert_eq!(&read, value, "{text:?}");
            if let Some(s) = value.as_str() {
                assert_eq!(string(raw).as_deref(), Some(s), "{text:?}");
            }
        }
    }

    /// [`members_as_written`] reads what serde_json reads as a map of raw values, in order.
    fn same_as_written(text: &str) {
        let read = members_as_written(text);
        let oracle = serde_json::from_str::<Entries>(text).ok();
        assert_eq!(read.is_some(), oracle.is_some(), "{text:?}");
        if let (Some(read), Some(Entries(oracle))) = (read, oracle) {
            let read: Vec<(String, String)> = read
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.to_owned()))
                .collect();
            assert_eq!(read, oracle, "{text:?}");
        }
    }

    /// An object's entries as serde_json reads them into a map of raw values, in order.
    struct Entries(Vec<(String, String)>);

    impl<'de> serde::Deserialize<'de> for Entries {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Entries;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<M: serde::de::MapAccess<'de>>(
                    self,
                    mut map: M,
                ) -> Result<Entries, M::Error> {
                    let mut entries = Vec::new();
                    while let Some((k, v)) =
                        map.next_entry::<String, &serde_json::value::RawValue>()?
                    {
                        entries.push((k, v.get().to_owned()));
                    }
                    Ok(Entries(entries))
                }
            }
            d.deserialize_map(V)
        }
    }

    fn kind_of(value: &Value) -> Kind {
        match value {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }

    fn value_skips(text: &str) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    }

    fn value_parses(text: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(text).is_ok()
    }

    fn agree(text: &str) {
        assert_eq!(parses(text), value_parses(text), "{text:?}");
        assert_eq!(skips(text), value_skips(text), "skips {text:?}");
        same_as_written(text);
        same_fields(text);
    }

    /// What a derived struct of `Option<&RawValue>` fields reads, the oracle for [`fields`].
    #[derive(serde::Deserialize)]
    struct Derived<'a> {
        #[serde(borrow, default)]
        a: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        model: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        messages: Option<&'a serde_json::value::RawValue>,
    }

    /// [`fields`] reads what the derive reads from an object (a derive also reads a struct from
    /// an array; `fields` refuses one, as its callers want).
    fn same_fields(text: &str) {
        let read = fields(text, ["a", "model", "messages"]);
        let object = text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{');
        let oracle = serde_json::from_str::<Derived<'_>>(text)
            .ok()
            .filter(|_| object)
            .map(|d| [d.a, d.model, d.messages].map(|v| v.map(|v| v.get())));
        assert_eq!(read, oracle, "fields {text:?}");
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
            "\"\\ud800\\u0041\"",
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
            r#"{"model":null}"#,
            r#"{"model":nul}"#,
            r#"{"model":null,"model":"m"}"#,
            r#"{"a":1,"x":2,"a":1}"#,
            r#"{"x":1,"x":2}"#,
            r#"{"model":"\ud800","messages":1e999}"#,
            r#"["m",null,[]]"#,
            r#"{"mod\u0065l":"m"}"#,
            "{ \"model\" :\t\"m\" ,\r\n\"a\" : 1 }\r\n",
            "\u{feff}{}",
            "{\"model\":\"m\"}\u{c}",
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
        // Skipping follows any depth without recursion, as serde_json's skip does; the
        // grammar still holds at the bottom of it.
        for (text, ok) in [
            (nested(100_000, "[", "]"), true),
            (
                r#"{"a":"#.repeat(100_000) + "1" + &"}".repeat(100_000),
                true,
            ),
            ("[".repeat(100_000) + &"]".repeat(99_999), false),
            (nested(100_000, "[", "]") + "]", false),
            ("[".repeat(100_000) + "01" + &"]".repeat(100_000), false),
        ] {
            assert_eq!(skips(&text), ok);
            assert_eq!(value_skips(&text), ok);
            assert!(!parses(&text));
        }
        // A body's turns are read by their own path, with the same limit: 3 levels to a turn's
        // content, then 124 arrays is 127 deep.
        for n in [124, 125] {
            let text = format!(
                r#"{{"messages":[{{"content":{}]}}"#,
                nested(n, "[", "]") + "}"
            );
            assert_eq!(Body::parse(&text).is_some(), value_parses(&text), "{n}");
            assert_eq!(Body::parse(&text).is_some(), n == 124, "{n}");
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
            r#"{"a":1,"b":{"c":2},"a":"x\u0041","\u0061b":[1],"messages":7,"messages":[{"role":"user"},3]}"#,
            r#"{"model":null,"a":"\ud800","mod\u0065l":"m","x":{"model":1},"messages":[]}"#,
        ];
        let alphabet: &[&str] = &[
            "\"", "\\", "{", "}", "[", "]", ":", ",", " ", "\n", "0", "1", "9", "-", "+", ".", "e",
            "E", "u", "d800", "dc00", "\\u", "\\ud83d", "\\ude00", "n", "t", "f", "a", "é",
            "\u{1}", "\u{1f}", "\t", "null", "true", "1e400", "00",
        ];
        const ROUNDS: usize = 60_000;
        let mut rng = StdRng::seed_from_u64(18);
        let mut refused = 0;
        let mut grammar_only = 0;
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
            let value = serde_json::from_str::<Value>(&text).ok();
            assert_eq!(parses(&text), value.is_some(), "{text:?}");
            assert_eq!(skips(&text), value_skips(&text), "skips {text:?}");
            same_as_written(&text);
            same_fields(&text);
            refused += usize::from(value.is_none());
            grammar_only += usize::from(value.is_none() && value_skips(&text));
            // An object's members, and a body's turns, read in the same scan, are those `Value`
            // holds.
            let map = value.as_ref().and_then(Value::as_object);
            let object = Object::parse(&text);
            let body = Body::parse(&text);
            assert_eq!(object.is_some(), map.is_some(), "{text:?}");
            assert_eq!(body.is_some(), map.is_some(), "{text:?}");
            if let (Some(object), Some(body), Some(map)) = (object, body, map) {
                same_members(&object, map, None, &text);
                same_members(&body.members, map, Some("messages"), &text);
                match (body.messages, map.get("messages")) {
                    (None, None) => {}
                    (Some(Ok(turns)), Some(Value::Array(items))) => {
                        assert_eq!(turns.len(), items.len(), "{text:?}");
                        for (turn, item) in turns.iter().zip(items) {
                            match (turn, item) {
                                (Ok(turn), Value::Object(item)) => {
                                    same_members(turn, item, None, &text)
                                }
                                (Err(kind), item) => assert_eq!(*kind, kind_of(item), "{text:?}"),
                                _ => panic!("{text:?}: a turn read as {turn:?}"),
                            }
                        }
                    }
                    (Some(Err(kind)), Some(messages)) => {
                        assert_eq!(kind, kind_of(messages), "{text:?}")
                    }
                    (read, _) => panic!("{text:?}: `messages` read as {read:?}"),
                }
            }
        }
        // The mutations reach both answers, so the comparison tests something.
        assert!(
            refused >= 5_000 && ROUNDS - refused >= 5_000,
            "{refused} of {ROUNDS} refused"
        );
        // And documents that only the grammar-only reading takes (a lone surrogate, a number
        // beyond `f64`).
        assert!(
            grammar_only >= 500,
            "{grammar_only} taken by the grammar only"
        );
    }
}
