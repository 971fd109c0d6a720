//! Splitting a streamed create body into its requests, so each is parsed from a slice.
//!
//! serde_json reads a `Read` one byte at a time through a trait call, and capturing `params` as
//! raw text that way took 44% of a 256 MB create's CPU. This scanner walks the body in 256 KiB
//! windows, tracking only what delimits values (strings, escapes, nesting; string contents are
//! skipped with `memchr`), and hands each element of the `requests` array on as one slice: to
//! `raw_json`'s scan, or to the same visitor on serde_json's fast slice reader (the create's
//! `plain_item` says which). Memory stays bounded by the window plus the largest single
//! request, as before.
//!
//! It only takes bodies that begin `{"requests": [` (whitespace allowed); anything else is given
//! back untouched ([`Scanner::into_rest`]) to the streaming parser, which produces the exact
//! messages for unusual envelopes.

use std::io::{self, Read};

const WINDOW: usize = 256 * 1024;
/// How much of the body must be seen to recognise the envelope's opening.
const PREFIX_LOOKAHEAD: usize = 64;

pub(crate) struct Scanner<R> {
    reader: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl<R: Read> Scanner<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buf: vec![0; WINDOW],
            pos: 0,
            len: 0,
            eof: false,
        }
    }

    /// Reads more, keeping the unconsumed bytes. False when the body has ended.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Consumes `{"requests": [` if the body starts with exactly that (whitespace allowed).
    /// Consumes nothing otherwise.
    pub fn requests_prefix(&mut self) -> io::Result<bool> {
        while self.len - self.pos < PREFIX_LOOKAHEAD && self.fill()? {}
        let bytes = &self.buf[self.pos..self.len];
        let mut at = 0;
        for token in [&b"{"[..], b"\"requests\"", b":", b"["] {
            while bytes.get(at).copied().is_some_and(is_ws) {
                at += 1;
            }
            if !bytes[at.min(bytes.len())..].starts_with(token) {
                return Ok(false);
            }
            at += token.len();
        }
        self.pos += at;
        Ok(true)
    }

    /// Skips whitespace; the next byte, not consumed, or `None` at the end of the body.
    pub fn peek(&mut self) -> io::Result<Option<u8>> {
        loop {
            while self.pos < self.len {
                let b = self.buf[self.pos];
                if !is_ws(b) {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Consumes the byte [`Scanner::peek`] returned.
    pub fn bump(&mut self) {
        self.pos += 1;
    }

    /// Appends the next JSON value (whitespace before it skipped) to `out`. Only its extent is
    /// found here, not its validity: the caller parses it. False if the body ended inside it.
    pub fn value_into(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        if self.peek()?.is_none() {
            return Ok(false);
        }
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let mut started = false;
        loop {
            let mut i = self.pos;
            let mut end = None;
            while i < self.len {
                let b = self.buf[i];
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    } else {
                        // Jump to the next quote or backslash: string contents are the bulk.
                        match memchr::memchr2(b'"', b'\\', &self.buf[i..self.len]) {
                            Some(off) => i += off,
                            None => i = self.len,
                        }
                        continue;
                    }
                } else {
                    match b {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' if depth == 0 => {
                            end = Some(i);
                            break;
                        }
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(i + 1);
                                break;
                            }
                        }
                        b',' if depth == 0 => {
                            end = Some(i);
                            break;
                        }
                        _ if depth == 0 && started && is_ws(b) => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                started = true;
                i += 1;
            }
            let stop = end.unwrap_or(self.len);
            out.extend_from_slice(&self.buf[self.pos..stop]);
            self.pos = stop;
            if end.is_some() {
                return Ok(true);
            }
            if !self.fill()? {
                // A scalar may end with the body; anything open may not.
                return Ok(depth == 0 && !in_string && !out.is_empty());
            }
        }
    }

    /// What has not been consumed, for another parser to continue from.
    pub fn into_rest(self) -> impl Read {
        io::Cursor::new(self.buf[self.pos..self.len].to_vec()).chain(self.reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per call: every value crosses window refills.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let Some((&b, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            out[0] = b;
            self.0 = rest;
            Ok(1)
        }
    }

    fn values(body: &str) -> (bool, Vec<String>) {
        let mut s = Scanner::new(Trickle(body.as_bytes()));
        let prefix = s.requests_prefix().unwrap();
        let mut out = Vec::new();
        loop {
            let mut v = Vec::new();
            if !s.value_into(&mut v).unwrap() {
                break;
            }
            out.push(String::from_utf8(v).unwrap());
            match s.peek().unwrap() {
                Some(b',') => s.bump(),
                _ => break,
            }
        }
        (prefix, out)
    }

    #[test]
    fn elements_are_split_at_their_own_ends() {
        let (prefix, found) = values(
            " {\n \"requests\" : [ {\"a\":\"x,]}\\\"\"} , [1,[2]] ,\"s\\\\\", 12 ,true,null ]}",
        );
        assert!(prefix);
        assert_eq!(
            found,
            [
                r#"{"a":"x,]}\""}"#,
                "[1,[2]]",
                r#""s\\""#,
                "12",
                "true",
                "null"
            ]
        );
    }

    #[test]
    fn other_envelopes_are_left_untouched() {
        for body in [
            r#"{"request": []}"#,
            r#"["requests"]"#,
            r#"{"x":1,"requests":[]}"#,
            "",
        ] {
            let mut s = Scanner::new(body.as_bytes());
            assert!(!s.requests_prefix().unwrap(), "{body}");
            let mut rest = String::new();
            s.into_rest().read_to_string(&mut rest).unwrap();
            assert_eq!(rest, body);
        }
    }

    #[test]
    fn a_body_cut_inside_a_value_is_reported() {
        let mut s = Scanner::new(&br#"{"requests": [{"a": "unterminated"#[..]);
        assert!(s.requests_prefix().unwrap());
        assert!(!s.value_into(&mut Vec::new()).unwrap());
    }
}
