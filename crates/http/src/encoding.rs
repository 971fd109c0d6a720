//! Compressed request bodies: which `Content-Encoding` values a create body may carry, the
//! streaming decoders in front of the create parser, and the texts of their refusals.
//!
//! Decoding is a `Read` chain on the parser's blocking thread, so a compressed body is never
//! held whole either: the wire bytes stay bounded by the size limit and the minimum pace, as for
//! a plain body, and the decoded bytes by the same size limit, counted as they come out. The
//! hosted API is known to accept `gzip`; `deflate` and `br`, the other codings HTTP names for
//! bodies, are accepted too. A list of several codings is refused: no client sends one.
//! Routes without a body ignore the header.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::{HeaderMap, header};
use batchd_domain::ErrorType;

use crate::ApiError;
use crate::error::ErrorCode;

/// The message of the 400 for a `Content-Encoding` the server does not decode.
pub const UNSUPPORTED: &str = "The request's `Content-Encoding` is not supported. Send the body \
                               uncompressed, or compressed with `gzip`, `deflate` or `br`.";

/// The message of the 400 for a body its `Content-Encoding` cannot decode.
pub const INVALID: &str = "The request body is not valid for its `Content-Encoding`.";

/// The message of the 413 for a compressed body over the size limit once decoded.
pub const TOO_LARGE_AFTER_DECODING: &str =
    "The compressed request body exceeds the request size limit once decoded.";

/// Bytes the brotli decoder reads from the wire at a time.
const BROTLI_INPUT_BUFFER: usize = 64 * 1024;

/// A `Content-Encoding` the server decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    /// No header, or `identity`: the body is plain.
    Identity,
    /// `gzip` or `x-gzip`.
    Gzip,
    /// `deflate`: zlib-wrapped as HTTP defines it; a raw deflate stream, which some clients send
    /// under the same name, is taken too.
    Deflate,
    /// `br`.
    Brotli,
}

impl ContentEncoding {
    /// The coding `headers` declare. `identity` entries are no coding; more than one other
    /// coding, or any unknown one, is refused with `request_body_encoding_unsupported`.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let mut found = Self::Identity;
        for value in headers.get_all(header::CONTENT_ENCODING) {
            let value = value.to_str().map_err(|_| unsupported())?;
            for coding in value.split(',').map(str::trim) {
                let coding = match coding.to_ascii_lowercase().as_str() {
                    "" | "identity" => continue,
                    "gzip" | "x-gzip" => Self::Gzip,
                    "deflate" => Self::Deflate,
                    "br" => Self::Brotli,
                    _ => return Err(unsupported()),
                };
                if found != Self::Identity {
                    return Err(unsupported());
                }
                found = coding;
            }
        }
        Ok(found)
    }

    /// `wire` decoded, and cut after `max` decoded bytes. What went wrong is kept in `outcome`.
    /// It may read from `wire` at once: call it where blocking is allowed.
    pub fn decode<R: Read + Send + 'static>(
        self,
        wire: R,
        max: u64,
        outcome: Arc<Outcome>,
    ) -> Box<dyn Read + Send> {
        let wire = Wire {
            inner: wire,
            outcome: outcome.clone(),
        };
        let decoded: Box<dyn Read + Send> = match self {
            Self::Identity => return Box::new(wire.inner),
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(wire)),
            Self::Deflate => deflate(wire),
            Self::Brotli => Box::new(brotli_decompressor::Decompressor::new(
                wire,
                BROTLI_INPUT_BUFFER,
            )),
        };
        Box::new(Decoded {
            inner: decoded,
            max,
            seen: 0,
            outcome,
        })
    }
}

/// What stopped a decoding, read once the parser is done.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Reading the wire failed (the body was too large, too slow, or cut): not the coding's fault.
    wire_failed: AtomicBool,
    /// The decoder refused the bytes.
    invalid: AtomicBool,
    /// More than the limit came out.
    too_large: AtomicBool,
}

impl Outcome {
    /// The refusal the decoding calls for, if it is what stopped the body.
    pub fn refusal(&self) -> Option<ApiError> {
        if self.too_large.load(Ordering::Relaxed) {
            Some(
                ApiError::new(ErrorType::RequestTooLarge, TOO_LARGE_AFTER_DECODING)
                    .with_code(ErrorCode::RequestBodyTooLargeAfterDecoding),
            )
        } else if self.invalid.load(Ordering::Relaxed) {
            Some(ApiError::invalid(INVALID).with_code(ErrorCode::RequestBodyEncodingInvalid))
        } else {
            None
        }
    }
}

fn unsupported() -> ApiError {
    ApiError::invalid(UNSUPPORTED).with_code(ErrorCode::RequestBodyEncodingUnsupported)
}

/// A zlib stream, or a raw deflate one: a zlib header is two bytes whose first names the deflate
/// method and which, read as a big-endian number, are a multiple of 31 (RFC 1950).
fn deflate<R: Read + Send + 'static>(mut wire: Wire<R>) -> Box<dyn Read + Send> {
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < head.len() {
        match wire.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Handed on: the decoder reports it at its first read.
            Err(e) => return Box::new(Failed(Some(e))),
        }
    }
    let zlib = got == 2 && head[0] & 0x0f == 8 && u16::from_be_bytes(head).is_multiple_of(31);
    let wire = io::Cursor::new(head[..got].to_vec()).chain(wire);
    if zlib {
        Box::new(flate2::read::ZlibDecoder::new(wire))
    } else {
        Box::new(flate2::read::DeflateDecoder::new(wire))
    }
}

/// A reader whose first read fails with the error it holds.
struct Failed(Option<io::Error>);

impl Read for Failed {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::other("request body unreadable")))
    }
}

/// The compressed bytes; notes that an error came from the wire rather than the decoder.
struct Wire<R> {
    inner: R,
    outcome: Arc<Outcome>,
}

impl<R: Read> Read for Wire<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.outcome.wire_failed.store(true, Ordering::Relaxed);
            }
        })
    }
}

/// The decoded bytes, counted against the limit; a decoder error not caused by the wire marks
/// the body invalid.
struct Decoded {
    inner: Box<dyn Read + Send>,
    max: u64,
    seen: u64,
    outcome: Arc<Outcome>,
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted
                    && !self.outcome.wire_failed.load(Ordering::Relaxed)
                {
                    self.outcome.invalid.store(true, Ordering::Relaxed);
                }
                return Err(e);
            }
        };
        self.seen += n as u64;
        if self.seen > self.max {
            self.outcome.too_large.store(true, Ordering::Relaxed);
            return Err(io::Error::other("decoded request body over the size limit"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::HeaderValue;

    use super::*;

    fn declared(values: &[&str]) -> Result<ContentEncoding, Option<&'static str>> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::CONTENT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        ContentEncoding::from_headers(&headers).map_err(|e| e.code.map(ErrorCode::as_str))
    }

    #[test]
    fn codings_are_read_from_the_header() {
        use ContentEncoding::*;
        assert_eq!(declared(&[]), Ok(Identity));
        assert_eq!(declared(&["identity"]), Ok(Identity));
        assert_eq!(declared(&["gzip"]), Ok(Gzip));
        assert_eq!(declared(&["X-GZIP"]), Ok(Gzip));
        assert_eq!(declared(&["deflate"]), Ok(Deflate));
        assert_eq!(declared(&[" br "]), Ok(Brotli));
        assert_eq!(declared(&["identity, gzip"]), Ok(Gzip));
        let unsupported = Err(Some("request_body_encoding_unsupported"));
        assert_eq!(declared(&["zstd"]), unsupported);
        assert_eq!(declared(&["compress"]), unsupported);
        assert_eq!(declared(&["gzip, br"]), unsupported);
        assert_eq!(declared(&["gzip", "gzip"]), unsupported);
    }

    fn decode(coding: ContentEncoding, wire: Vec<u8>, max: u64) -> (io::Result<Vec<u8>>, Outcome) {
        let outcome = Arc::new(Outcome::default());
        let mut out = Vec::new();
        let read = coding
            .decode(io::Cursor::new(wire), max, outcome.clone())
            .read_to_end(&mut out)
            .map(|_| out);
        (read, Arc::into_inner(outcome).unwrap_or_default())
    }

    const PLAIN: &[u8] = br#"{"requests":[{"custom_id":"a","params":{}}]}"#;

    #[test]
    fn zlib_and_raw_deflate_both_decode() {
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), Default::default());
        zlib.write_all(PLAIN).unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
        raw.write_all(PLAIN).unwrap();
        for wire in [zlib.finish().unwrap(), raw.finish().unwrap()] {
            let (read, outcome) = decode(ContentEncoding::Deflate, wire, 1 << 20);
            assert_eq!(read.unwrap(), PLAIN);
            assert!(outcome.refusal().is_none());
        }
    }

    #[test]
    fn corrupt_and_oversized_bodies_are_told_apart() {
        let (read, outcome) = decode(ContentEncoding::Gzip, b"not gzip at all".to_vec(), 1 << 20);
        assert!(read.is_err());
        let code = outcome.refusal().and_then(|e| e.code);
        assert_eq!(code, Some(ErrorCode::RequestBodyEncodingInvalid));

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
        gz.write_all(&[b' '; 4096]).unwrap();
        let (read, outcome) = decode(ContentEncoding::Gzip, gz.finish().unwrap(), 1000);
        assert!(read.is_err());
        let refusal = outcome.refusal().unwrap();
        assert_eq!(refusal.status.as_u16(), 413);
        assert_eq!(
            refusal.code,
            Some(ErrorCode::RequestBodyTooLargeAfterDecoding)
        );
    }
}
