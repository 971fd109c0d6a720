//! Incremental, strict JSONL framing for the results stream.
//!
//! [`LineSplitter`] turns arbitrary byte chunks into lines: it splits on `\n`, removes one `\r`
//! before it (so `\r\n` files work), and treats a final line without a terminator as a line,
//! like the SDK decoders. It never skips anything silently: a blank line is an error (the Python
//! and TypeScript SDKs fail on one too), and so is a line longer than the configured cap, which
//! keeps memory bounded by the longest line rather than by the whole body.
//!
//! [`split_lines`] applies the splitter to a byte stream.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, Stream, StreamExt};

use crate::Error;

/// Default cap on one results line: far above any real Message, far below "the whole file".
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// One complete line, without its terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the stream.
    pub number: u64,
    /// The line's bytes, without `\n` or `\r\n`.
    pub bytes: Bytes,
}

/// Why a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// An empty (or whitespace-only) line.
    #[error("line {line} is blank")]
    Blank {
        /// 1-based line number.
        line: u64,
    },
    /// A line longer than the cap.
    #[error("line {line} is longer than {max} bytes")]
    TooLong {
        /// 1-based line number.
        line: u64,
        /// The cap in bytes.
        max: usize,
    },
}

/// Splits byte chunks into JSONL lines; see the module docs.
#[derive(Debug)]
pub struct LineSplitter {
    partial: BytesMut,
    next_number: u64,
    max_line_bytes: usize,
}

impl LineSplitter {
    /// A splitter that rejects lines longer than `max_line_bytes` (terminator excluded).
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            partial: BytesMut::new(),
            next_number: 1,
            max_line_bytes,
        }
    }

    /// Feeds one chunk; appends every line it completes to `out`.
    pub fn push(&mut self, mut chunk: Bytes, out: &mut VecDeque<Line>) -> Result<(), LineError> {
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            let head = chunk.split_to(pos + 1);
            let line = if self.partial.is_empty() {
                head.slice(..pos)
            } else {
                self.partial.extend_from_slice(&head[..pos]);
                self.partial.split().freeze()
            };
            out.push_back(self.emit(line)?);
        }
        if !chunk.is_empty() {
            // An unterminated tail: its last byte may be the `\r` of a `\r\n`, which does not
            // count, so the buffer never holds more than the cap plus one byte.
            if self.partial.len() + chunk.len() - 1 > self.max_line_bytes {
                return Err(LineError::TooLong {
                    line: self.next_number,
                    max: self.max_line_bytes,
                });
            }
            self.partial.extend_from_slice(&chunk);
        }
        Ok(())
    }

    /// Ends the input: an unterminated last line is still a line.
    pub fn finish(&mut self) -> Result<Option<Line>, LineError> {
        if self.partial.is_empty() {
            return Ok(None);
        }
        let line = self.partial.split().freeze();
        self.emit(line).map(Some)
    }

    fn emit(&mut self, mut line: Bytes) -> Result<Line, LineError> {
        let number = self.next_number;
        self.next_number += 1;
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.max_line_bytes {
            return Err(LineError::TooLong {
                line: number,
                max: self.max_line_bytes,
            });
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return Err(LineError::Blank { line: number });
        }
        Ok(Line {
            number,
            bytes: line,
        })
    }
}

/// Splits a byte stream into lines. The stream ends after the first error.
pub fn split_lines<S>(bytes: S, max_line_bytes: usize) -> BoxStream<'static, Result<Line, Error>>
where
    S: Stream<Item = Result<Bytes, Error>> + Send + 'static,
{
    struct State<S> {
        bytes: S,
        splitter: LineSplitter,
        ready: VecDeque<Line>,
        failed: Option<Error>,
        done: bool,
    }
    let state = State {
        bytes: Box::pin(bytes),
        splitter: LineSplitter::new(max_line_bytes),
        ready: VecDeque::new(),
        failed: None,
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if let Some(line) = st.ready.pop_front() {
                return Some((Ok(line), st));
            }
            if let Some(e) = st.failed.take() {
                return Some((Err(e), st));
            }
            if st.done {
                return None;
            }
            match st.bytes.next().await {
                Some(Ok(chunk)) => {
                    if let Err(e) = st.splitter.push(chunk, &mut st.ready) {
                        // Lines completed before the bad one go out first, then the error.
                        st.done = true;
                        st.failed = Some(Error::Decode(format!("results: {e}")));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    match st.splitter.finish() {
                        Ok(Some(line)) => return Some((Ok(line), st)),
                        Ok(None) => return None,
                        Err(e) => return Some((Err(Error::Decode(format!("results: {e}"))), st)),
                    }
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `input` fed in the given chunk sizes (cycled); returns lines as strings.
    fn split(input: &[u8], sizes: &[usize], max: usize) -> Result<Vec<(u64, String)>, LineError> {
        let mut s = LineSplitter::new(max);
        let mut out = VecDeque::new();
        let mut rest = input;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            s.push(Bytes::copy_from_slice(&rest[..n]), &mut out)?;
            rest = &rest[n..];
            i += 1;
        }
        out.extend(s.finish()?);
        Ok(out
            .into_iter()
            .map(|l| (l.number, String::from_utf8(l.bytes.to_vec()).unwrap()))
            .collect())
    }

    fn expected(lines: &[&str]) -> Vec<(u64, String)> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, (*l).to_owned()))
            .collect()
    }

    #[test]
    fn chunk_boundaries_anywhere() {
        let body = "{\"a\":1}\n{\"b\":\"x\\ny\"}\r\n{\"c\":[1,2,3]}\n";
        let want = expected(&[r#"{"a":1}"#, r#"{"b":"x\ny"}"#, r#"{"c":[1,2,3]}"#]);
        // Every single split point, and every pair of split points.
        for a in 0..=body.len() {
            for b in a..=body.len() {
                let mut s = LineSplitter::new(1024);
                let mut out = VecDeque::new();
                for part in [&body[..a], &body[a..b], &body[b..]] {
                    s.push(Bytes::copy_from_slice(part.as_bytes()), &mut out)
                        .unwrap();
                }
                out.extend(s.finish().unwrap());
                let got: Vec<_> = out
                    .into_iter()
                    .map(|l| (l.number, String::from_utf8(l.bytes.to_vec()).unwrap()))
                    .collect();
                assert_eq!(got, want, "split at {a},{b}");
            }
        }
        for size in 1..=body.len() {
            assert_eq!(
                split(body.as_bytes(), &[size], 1024).unwrap(),
                want,
                "size {size}"
            );
        }
        assert_eq!(split(body.as_bytes(), &[1, 7, 2, 13], 1024).unwrap(), want);
    }

    #[test]
    fn final_line_without_newline_counts() {
        assert_eq!(
            split(b"{}\n{\"z\":0}", &[3], 64).unwrap(),
            expected(&["{}", "{\"z\":0}"])
        );
        assert_eq!(
            split(b"{}\r\n{}\r", &[1], 64).unwrap(),
            expected(&["{}", "{}"])
        );
        assert_eq!(split(b"", &[1], 64).unwrap(), expected(&[]));
    }

    #[test]
    fn blank_lines_are_errors_not_skipped() {
        for (input, line) in [
            (&b"{}\n\n{}\n"[..], 2),
            (b"\n{}\n", 1),
            (b"{}\r\n\r\n", 2),
            (b"{}\n  \n{}\n", 2),
            (b"{}\n{}\n \t", 3),
        ] {
            for size in 1..=input.len() {
                assert_eq!(
                    split(input, &[size], 64),
                    Err(LineError::Blank { line }),
                    "{:?} / {size}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn long_lines_are_rejected_in_bounded_memory() {
        let max = 8;
        assert_eq!(
            split(b"12345678\n", &[2], max).unwrap(),
            expected(&["12345678"])
        );
        assert_eq!(
            split(b"12345678\r\n", &[1], max).unwrap(),
            expected(&["12345678"])
        );
        assert_eq!(
            split(b"12345678", &[3], max).unwrap(),
            expected(&["12345678"])
        );
        for size in 1..=12 {
            assert_eq!(
                split(b"{}\n123456789\n", &[size], max),
                Err(LineError::TooLong { line: 2, max }),
                "size {size}"
            );
        }
        // A terminator that never comes is caught before the buffer grows past the cap.
        let mut s = LineSplitter::new(max);
        let mut out = VecDeque::new();
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = s.push(Bytes::from_static(b"xyz"), &mut out) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(LineError::TooLong { line: 1, max }));
        assert!(s.partial.len() <= max + 1);
    }

    #[tokio::test]
    async fn stream_adapter_propagates_errors_and_stops() {
        let chunks: Vec<Result<Bytes, Error>> = vec![
            Ok(Bytes::from_static(b"{\"a\":1}\n{\"b\"")),
            Ok(Bytes::from_static(b":2}\n")),
            Err(Error::Decode("boom".into())),
            Ok(Bytes::from_static(b"{}\n")),
        ];
        let got: Vec<_> = split_lines(stream::iter(chunks), 64).collect().await;
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0].as_ref().unwrap().bytes,
            Bytes::from_static(b"{\"a\":1}")
        );
        assert_eq!(got[1].as_ref().unwrap().number, 2);
        assert!(matches!(&got[2], Err(Error::Decode(m)) if m == "boom"));

        let chunks: Vec<Result<Bytes, Error>> = vec![Ok(Bytes::from_static(b"{}\n\n{}\n"))];
        let got: Vec<_> = split_lines(stream::iter(chunks), 64).collect().await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().bytes, Bytes::from_static(b"{}"));
        assert!(matches!(&got[1], Err(Error::Decode(m)) if m.contains("line 2 is blank")));
    }
}
