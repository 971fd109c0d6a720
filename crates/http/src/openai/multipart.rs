//! A streaming `multipart/form-data` reader (RFC 7578) for `POST /v1/files`: bytes are pushed
//! in as they arrive and come out as events, a part's content in pieces that are never held
//! whole, so an upload of any size passes through in bounded memory (about one pushed chunk
//! plus the boundary). Written here rather than taken from a crate because it is small and the
//! upload needs nothing else of one.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;

/// Largest header block of one part. The SDKs send two or three short headers.
const MAX_PART_HEADERS: usize = 16 * 1024;

/// What the reader found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A part starts: its form field name and, for a file, its file name.
    Part {
        name: String,
        filename: Option<String>,
    },
    /// A piece of the current part's content.
    Data(Bytes),
    /// The current part's content is complete.
    PartEnd,
}

/// A body that is not the multipart it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("the part headers are too long")]
    HeadersTooLong,
    #[error("a part has no Content-Disposition form-data name")]
    NoName,
    #[error("the boundary is not followed by a line break")]
    BadBoundary,
    #[error("the body ended before the closing boundary")]
    Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first boundary (the preamble is skipped).
    Preamble,
    /// Just past a boundary: `--` closes the body, a line break opens a part.
    AfterBoundary {
        close_part: bool,
    },
    Headers,
    Body,
    /// Past the closing boundary: everything else is ignored.
    Done,
}

/// The reader. Push bytes with [`Multipart::push`], then take events with
/// [`Multipart::next_event`] until it answers `None` (it needs more bytes).
pub struct Multipart {
    /// `\r\n--` and the boundary: what ends a part's content.
    finder: memmem::Finder<'static>,
    delimiter_len: usize,
    buf: BytesMut,
    state: State,
}

impl Multipart {
    /// The boundary of a `multipart/form-data` content type, if it is one.
    pub fn boundary(content_type: &str) -> Option<String> {
        let mut params = content_type.split(';');
        let mime = params.next()?.trim();
        if !mime.eq_ignore_ascii_case("multipart/form-data") {
            return None;
        }
        params
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| unquote(v.trim()))
            .filter(|b| !b.is_empty() && b.len() <= 200)
    }

    pub fn new(boundary: &str) -> Self {
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        // The first boundary need not follow a line break: pretend one precedes the body so
        // that every boundary looks the same.
        buf.extend_from_slice(b"\r\n");
        Self {
            delimiter_len: delimiter.len(),
            finder: memmem::Finder::new(&delimiter).into_owned(),
            buf,
            state: State::Preamble,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.state != State::Done {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Whether the closing boundary has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The body ended: an error unless the closing boundary was read.
    pub fn finish(&self) -> Result<(), MultipartError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(MultipartError::Truncated)
        }
    }

    /// The next event, or `None` when more bytes are needed (or the body is done).
    pub fn next_event(&mut self) -> Result<Option<Event>, MultipartError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Preamble => match self.finder.find(&self.buf) {
                    Some(at) => {
                        self.buf.advance(at + self.delimiter_len);
                        self.state = State::AfterBoundary { close_part: false };
                    }
                    None => {
                        self.keep_tail();
                        return Ok(None);
                    }
                },
                State::AfterBoundary { close_part } => {
                    if close_part {
                        self.state = State::AfterBoundary { close_part: false };
                        return Ok(Some(Event::PartEnd));
                    }
                    if self.buf.len() < 2 {
                        return Ok(None);
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = State::Done;
                        self.buf.clear();
                        return Ok(None);
                    }
                    // Transport padding (spaces, tabs) may follow a boundary before its CRLF.
                    let pad = self
                        .buf
                        .iter()
                        .take_while(|b| **b == b' ' || **b == b'\t')
                        .count();
                    if self.buf.len() < pad + 2 {
                        return Ok(None);
                    }
                    if &self.buf[pad..pad + 2] != b"\r\n" {
                        return Err(MultipartError::BadBoundary);
                    }
                    self.buf.advance(pad + 2);
                    self.state = State::Headers;
                }
                State::Headers => {
                    let Some(end) = memmem::find(&self.buf, b"\r\n\r\n") else {
                        if self.buf.len() > MAX_PART_HEADERS {
                            return Err(MultipartError::HeadersTooLong);
                        }
                        return Ok(None);
                    };
                    if end > MAX_PART_HEADERS {
                        return Err(MultipartError::HeadersTooLong);
                    }
                    let block = self.buf.split_to(end + 4);
                    let (name, filename) = disposition(&block[..end])?;
                    self.state = State::Body;
                    return Ok(Some(Event::Part { name, filename }));
                }
                State::Body => match self.finder.find(&self.buf) {
                    Some(at) => {
                        let data = self.buf.split_to(at).freeze();
                        self.buf.advance(self.delimiter_len);
                        self.state = State::AfterBoundary { close_part: true };
                        if !data.is_empty() {
                            return Ok(Some(Event::Data(data)));
                        }
                    }
                    None => {
                        // Everything but what could be the start of a boundary is content.
                        let safe = self.buf.len().saturating_sub(self.delimiter_len - 1);
                        if safe == 0 {
                            return Ok(None);
                        }
                        return Ok(Some(Event::Data(self.buf.split_to(safe).freeze())));
                    }
                },
            }
        }
    }

    /// Drops preamble bytes that cannot be part of a boundary.
    fn keep_tail(&mut self) {
        let drop = self.buf.len().saturating_sub(self.delimiter_len - 1);
        self.buf.advance(drop);
    }
}

/// The `name` and `filename` of a part's `Content-Disposition: form-data` header.
fn disposition(headers: &[u8]) -> Result<(String, Option<String>), MultipartError> {
    let text = String::from_utf8_lossy(headers);
    for line in text.split("\r\n") {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        let mut name = None;
        let mut filename = None;
        for param in split_params(value).into_iter().skip(1) {
            let Some((k, v)) = param.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "name" => name = Some(unquote(v.trim())),
                "filename" => filename = Some(unquote(v.trim())),
                _ => {}
            }
        }
        return name.map(|n| (n, filename)).ok_or(MultipartError::NoName);
    }
    Err(MultipartError::NoName)
}

/// Splits a header value at the `;` outside quoted strings.
fn split_params(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

/// A parameter value without its quotes and backslash escapes.
fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in; \\\"x\\\".jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\nline1\r\n--Xy not a boundary\nline2\n\r\n--XyZ--\r\nepilogue";

    /// A part as the tests see it: name, file name, content.
    type Part = (String, Option<String>, Vec<u8>);

    /// Feeds `body` in pieces of `step` bytes and folds the events into parts.
    fn parse(body: &[u8], step: usize) -> Result<Vec<Part>, MultipartError> {
        let mut reader = Multipart::new("XyZ");
        let mut parts: Vec<Part> = Vec::new();
        let mut open = false;
        for piece in body.chunks(step) {
            reader.push(piece);
            while let Some(event) = reader.next_event()? {
                match event {
                    Event::Part { name, filename } => {
                        assert!(!open);
                        open = true;
                        parts.push((name, filename, Vec::new()));
                    }
                    Event::Data(d) => parts.last_mut().unwrap().2.extend_from_slice(&d),
                    Event::PartEnd => {
                        assert!(open);
                        open = false;
                    }
                }
            }
        }
        reader.finish()?;
        Ok(parts)
    }

    #[test]
    fn parts_come_out_whole_whatever_the_piece_size() {
        for step in [1, 2, 3, 5, 7, 16, 64, 1000] {
            let parts = parse(BODY.as_bytes(), step).unwrap();
            assert_eq!(
                parts,
                vec![
                    ("purpose".into(), None, b"batch".to_vec()),
                    (
                        "file".into(),
                        Some("in; \"x\".jsonl".into()),
                        b"line1\r\n--Xy not a boundary\nline2\n".to_vec()
                    ),
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_body_without_its_closing_boundary_is_truncated() {
        let cut = &BODY.as_bytes()[..BODY.find("--XyZ--").unwrap()];
        assert_eq!(parse(cut, 10), Err(MultipartError::Truncated));
    }

    #[test]
    fn a_part_without_a_name_is_refused() {
        let body = b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--\r\n";
        assert_eq!(parse(body, 4), Err(MultipartError::NoName));
    }

    #[test]
    fn content_is_never_held_back_more_than_a_boundary() {
        let mut reader = Multipart::new("XyZ");
        reader.push(b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n");
        assert!(matches!(reader.next_event(), Ok(Some(Event::Part { .. }))));
        reader.push(&[b'a'; 100_000]);
        let Ok(Some(Event::Data(d))) = reader.next_event() else {
            panic!("no data")
        };
        assert!(d.len() >= 100_000 - "\r\n--XyZ".len());
    }

    #[test]
    fn boundaries_are_read_from_the_content_type() {
        assert_eq!(
            Multipart::boundary("multipart/form-data; boundary=abc"),
            Some("abc".into())
        );
        assert_eq!(
            Multipart::boundary("Multipart/Form-Data;charset=utf-8; Boundary=\"a b\""),
            Some("a b".into())
        );
        assert_eq!(Multipart::boundary("application/json"), None);
        assert_eq!(Multipart::boundary("multipart/form-data"), None);
    }
}
