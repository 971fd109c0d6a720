//! The input file's JSONL, read as a stream: [`UploadScan`] is the light check of a batch
//! upload (spec §5.2 Tier 0: not empty, a JSON first line), [`LineSplitter`] cuts
//! chunks into lines (each with its offset in the stream), and [`LineValidator`] is the check of
//! every line when a batch is created (Tier 1), with the texts of the errors it collects, and
//! where a good line's `body` lies in it. Pure: no I/O, so each rule has a unit
//! test.

use std::collections::HashSet;

use batchd_domain::CustomId;
use batchd_domain::openai::{Endpoint, LineError, MAX_LINE_BYTES};

/// Most bytes of an upload's first line kept to check that it is JSON. A longer first line is
/// not checked at upload; the batch create checks every line anyway.
const FIRST_LINE_CHECK_BYTES: usize = 8 * 1024 * 1024;

/// Most entries in a failed batch's `errors.data`: a file of 50,000 bad lines must not make a
/// batch object of megabytes. The hosted API's cap is unknown.
pub const MAX_LINE_ERRORS: usize = 1_000;

/// Whether a line holds anything but whitespace; blank lines are skipped everywhere, as the
/// batch runners that read this format do.
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The streaming check of a `purpose=batch` upload.
#[derive(Debug)]
pub struct UploadScan {
    /// Lines with content seen so far.
    lines: u64,
    /// Whether the line being read has content yet.
    in_line: bool,
    /// The first line with content, while it is being read (`None` once checked or given up).
    first: Option<Vec<u8>>,
    first_ok: Option<bool>,
}

/// Why an upload's content is refused: it is empty, or its first line is not JSON. More lines
/// than a batch may have pass, as on the hosted API: the batch created on the file fails with
/// `too_many_tasks` (Tier 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotJsonl;

impl Default for UploadScan {
    fn default() -> Self {
        Self {
            lines: 0,
            in_line: false,
            first: Some(Vec::new()),
            first_ok: None,
        }
    }
}

impl UploadScan {
    /// Reads the next bytes; once refused, every later call says so at once.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), NotJsonl> {
        if self.first_ok == Some(false) {
            return Err(NotJsonl);
        }
        while !bytes.is_empty() {
            let (segment, newline) = match memchr::memchr(b'\n', bytes) {
                Some(at) => (&bytes[..at], true),
                None => (bytes, false),
            };
            if !self.in_line && !is_blank(segment) {
                self.in_line = true;
                self.lines += 1;
            }
            if self.lines == 1
                && let Some(first) = &mut self.first
            {
                if first.len() + segment.len() > FIRST_LINE_CHECK_BYTES {
                    self.first = None;
                } else {
                    first.extend_from_slice(segment);
                }
            }
            if newline {
                if self.in_line {
                    self.end_first_line()?;
                }
                self.in_line = false;
                bytes = &bytes[segment.len() + 1..];
            } else {
                bytes = &[];
            }
        }
        Ok(())
    }

    fn end_first_line(&mut self) -> Result<(), NotJsonl> {
        if self.lines == 1 && self.first_ok.is_none() {
            let ok = self
                .first
                .take()
                .is_none_or(|line| serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok());
            self.first_ok = Some(ok);
            if !ok {
                return Err(NotJsonl);
            }
        }
        Ok(())
    }

    /// The upload ended: the line count, or why the content is refused.
    pub fn finish(mut self) -> Result<u64, NotJsonl> {
        if self.first_ok == Some(false) {
            return Err(NotJsonl);
        }
        if self.in_line {
            self.end_first_line()?;
        }
        if self.lines == 0 {
            return Err(NotJsonl);
        }
        Ok(self.lines)
    }
}

/// Cuts a stream of chunks into lines (without their `\n`), numbered from 1. A line is held
/// whole only while it is being completed, and never beyond the cap: a longer line is handed
/// on as `None` (too long) without its bytes, which are skipped up to its end, so memory stays
/// bounded by the cap whatever the file.
#[derive(Debug)]
pub struct LineSplitter {
    partial: Vec<u8>,
    line_no: u64,
    max_line: usize,
    /// The current line passed the cap: its remaining bytes are dropped.
    over: bool,
    /// Bytes pushed so far, and where the current line starts in the stream.
    read: u64,
    start: u64,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new(MAX_LINE_BYTES)
    }
}

impl LineSplitter {
    /// A splitter refusing lines of more than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            partial: Vec::new(),
            line_no: 0,
            max_line,
            over: false,
            read: 0,
            start: 0,
        }
    }

    /// Calls `each(line_no, line)` for every line completed by `chunk` (`None` for a line over
    /// the cap).
    pub fn push<E>(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(u64, Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.push_at(chunk, |n, _, line| each(n, line))
    }

    /// [`push`](Self::push), each line also with the stream offset of its first byte.
    pub fn push_at<E>(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(u64, u64, Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        let base = self.read;
        self.read += chunk.len() as u64;
        let mut rest = chunk;
        while let Some(at) = memchr::memchr(b'\n', rest) {
            self.line_no += 1;
            let piece = &rest[..at];
            rest = &rest[at + 1..];
            let start =
                std::mem::replace(&mut self.start, base + (chunk.len() - rest.len()) as u64);
            if self.over || self.partial.len() + piece.len() > self.max_line {
                self.over = false;
                self.partial.clear();
                each(self.line_no, start, None)?;
            } else if self.partial.is_empty() {
                each(self.line_no, start, Some(piece))?;
            } else {
                self.partial.extend_from_slice(piece);
                let line = std::mem::take(&mut self.partial);
                each(self.line_no, start, Some(&line))?;
            }
        }
        if !self.over {
            if self.partial.len() + rest.len() > self.max_line {
                self.over = true;
                self.partial = Vec::new();
            } else {
                self.partial.extend_from_slice(rest);
            }
        }
        Ok(())
    }

    /// The last line, if the stream did not end with `\n`.
    pub fn finish<E>(
        self,
        mut each: impl FnMut(u64, Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.finish_at(|n, _, line| each(n, line))
    }

    /// [`finish`](Self::finish), the line also with the stream offset of its first byte.
    pub fn finish_at<E>(
        mut self,
        mut each: impl FnMut(u64, u64, Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.over {
            return each(self.line_no + 1, self.start, None);
        }
        if self.partial.is_empty() {
            return Ok(());
        }
        self.line_no += 1;
        let line = std::mem::take(&mut self.partial);
        each(self.line_no, self.start, Some(&line))
    }
}

/// The members of an input line the create reads (its envelope; `body` stays raw text), and
/// the members of `body` it checks (the rest is the backend's to judge, Tier 2). Read as a
/// serde-derived struct of optional raw values reads them (`raw_json::fields`): a repeated one
/// fails the line, `null` counts as absent. Against the two serde derives this replaced, one
/// line of the bench's 4,000 bytes took 1.60-1.66 µs instead of 2.05-2.11
/// (`line_check_throughput`, three rounds of 50,000 lines each, release).
const LINE_FIELDS: [&str; 4] = ["custom_id", "method", "url", "body"];
/// The members of a line's `body` the create checks; see [`LINE_FIELDS`].
const BODY_FIELDS: [&str; 5] = ["model", "stream", "messages", "input", "prompt"];

/// A line that passed: what the batch stores for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoodLine {
    pub custom_id: CustomId,
    pub model: String,
    /// Where `body` lies in the line, exactly as uploaded: the create stores this place rather
    /// than a copy.
    pub body: std::ops::Range<usize>,
}

/// The create's check of every line of the input file (spec §5.2 Tier 1). Feed it every line;
/// it keeps the `custom_id`s seen (for duplicates), the first model, and the errors, each line's
/// first problem only, in line order.
#[derive(Debug)]
pub struct LineValidator {
    endpoint: Endpoint,
    single_model: bool,
    max_lines: u64,
    seen: HashSet<String>,
    first_model: Option<String>,
    requests: u64,
    errors: Vec<LineError>,
    /// Errors beyond [`MAX_LINE_ERRORS`], counted but not kept.
    dropped: u64,
}

fn line_error(
    code: &str,
    message: impl Into<String>,
    param: Option<&str>,
    line: Option<u64>,
) -> LineError {
    LineError {
        code: code.to_owned(),
        message: message.into(),
        param: param.map(str::to_owned),
        line,
    }
}

/// The name a JSON value's type goes by in the API's type errors (of a line and of a create's
/// body alike).
pub(super) fn json_type_name(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn as_string(raw: &str) -> Option<String> {
    serde_json::from_str::<String>(raw).ok()
}

impl LineValidator {
    pub fn new(endpoint: Endpoint, single_model: bool, max_lines: u64) -> Self {
        Self {
            endpoint,
            single_model,
            max_lines,
            seen: HashSet::new(),
            first_model: None,
            requests: 0,
            errors: Vec::new(),
            dropped: 0,
        }
    }

    /// Checks line `line_no` (1-based), `None` when it was over [`MAX_LINE_BYTES`]. `Some` when
    /// it is a request to store; blank lines and bad lines give `None` (bad ones are recorded).
    pub fn line(&mut self, line_no: u64, line: Option<&[u8]>) -> Option<GoodLine> {
        let Some(line) = line else {
            self.requests += 1;
            self.push_error(line_error(
                "invalid_json_line",
                format!(
                    "This line is larger than the maximum of {} bytes for one request.",
                    group_thousands(MAX_LINE_BYTES as u64)
                ),
                None,
                Some(line_no),
            ));
            return None;
        };
        if is_blank(line) {
            return None;
        }
        self.requests += 1;
        match self.check(line_no, line) {
            Ok(good) => Some(good),
            Err(err) => {
                self.push_error(err);
                None
            }
        }
    }

    fn push_error(&mut self, err: LineError) {
        if self.errors.len() < MAX_LINE_ERRORS {
            self.errors.push(err);
        } else {
            self.dropped += 1;
        }
    }

    /// Whether the file is already known to fail: no line read after this changes that.
    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Requests (non-blank lines) seen.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The model of the first good line.
    pub fn model(&self) -> Option<&str> {
        self.first_model.as_deref()
    }

    /// All lines were read: the errors that fail the batch (empty when it may run), including
    /// the whole-file ones.
    pub fn finish(mut self) -> Vec<LineError> {
        if self.requests == 0 {
            self.errors.push(line_error(
                "empty_file",
                "The batch input file is empty.",
                None,
                None,
            ));
        } else if self.requests > self.max_lines {
            self.errors.insert(
                0,
                line_error(
                    "too_many_tasks",
                    format!(
                        "The batch exceeds the maximum of {} requests.",
                        group_thousands(self.max_lines)
                    ),
                    None,
                    None,
                ),
            );
            self.errors.truncate(MAX_LINE_ERRORS);
        }
        self.errors
    }

    fn check(&mut self, n: u64, line: &[u8]) -> Result<GoodLine, LineError> {
        let at = Some(n);
        // A byte that is not UTF-8 anywhere fails the line, which JSON text must be (a derive
        // reading bytes let it pass in a member it skipped).
        let text = std::str::from_utf8(line).ok();
        let Some((text, [custom_id, method, url, body_raw])) =
            text.and_then(|text| Some((text, batchd_domain::raw_json::fields(text, LINE_FIELDS)?)))
        else {
            return Err(line_error(
                "invalid_json_line",
                "This line is not parseable as valid JSON.",
                None,
                at,
            ));
        };
        let missing = |name: &str| {
            line_error(
                "missing_required_parameter",
                format!("Missing required parameter: '{name}'."),
                Some(name),
                at,
            )
        };
        let wrong_type = |name: &str, expected: &str, got: &str| {
            line_error(
                "invalid_type",
                format!(
                    "Invalid type for '{name}': expected {expected}, but got {} instead.",
                    json_type_name(got)
                ),
                Some(name),
                at,
            )
        };
        let custom_id = custom_id.ok_or_else(|| missing("custom_id"))?;
        let custom_id =
            as_string(custom_id).ok_or_else(|| wrong_type("custom_id", "a string", custom_id))?;
        let custom_id = CustomId::parse_openai(&custom_id).map_err(|_| {
            line_error(
                "invalid_value",
                format!(
                    "Invalid 'custom_id': expected a non-empty string of at most {} characters.",
                    CustomId::OPENAI_MAX_LEN
                ),
                Some("custom_id"),
                at,
            )
        })?;
        let method = method.ok_or_else(|| missing("method"))?;
        // The hosted API's code and text for a wrong method are unknown; this follows its
        // `invalid_url` wording.
        if as_string(method).as_deref() != Some("POST") {
            return Err(line_error(
                "invalid_method",
                "The method provided for this request is not supported. Supported values are: 'POST'.",
                Some("method"),
                at,
            ));
        }
        let url = url.ok_or_else(|| missing("url"))?;
        if as_string(url).as_deref() != Some(self.endpoint.path()) {
            return Err(line_error(
                "invalid_url",
                "The URL provided for this request does not match the batch endpoint.",
                Some("url"),
                at,
            ));
        }
        let body_raw = body_raw.ok_or_else(|| missing("body"))?;
        let Some([model, stream, messages, input, prompt]) =
            batchd_domain::raw_json::fields(body_raw, BODY_FIELDS)
        else {
            return Err(wrong_type("body", "an object", body_raw));
        };
        if stream == Some("true") {
            return Err(line_error(
                "streaming_unsupported",
                format!(
                    "{}: Streaming is not supported in the Batch API.",
                    endpoint_name(self.endpoint)
                ),
                Some("body.stream"),
                at,
            ));
        }
        let model = model.ok_or_else(|| {
            line_error(
                "invalid_request",
                "Model parameter is required.",
                Some("body.model"),
                at,
            )
        })?;
        let model = as_string(model).ok_or_else(|| wrong_type("body.model", "a string", model))?;
        let required = match self.endpoint {
            Endpoint::ChatCompletions => Some(("messages", messages.is_some())),
            Endpoint::Embeddings | Endpoint::Moderations => Some(("input", input.is_some())),
            Endpoint::Completions => Some(("prompt", prompt.is_some())),
            Endpoint::Responses | Endpoint::Messages => None,
        };
        if let Some((field, false)) = required {
            let mut name = field.to_owned();
            name[..1].make_ascii_uppercase();
            return Err(line_error(
                "invalid_request",
                format!("{name} parameter is required."),
                Some(&format!("body.{field}")),
                at,
            ));
        }
        match &self.first_model {
            None => self.first_model = Some(model.clone()),
            Some(first) if self.single_model && *first != model => {
                return Err(line_error(
                    "model_mismatch",
                    "The model for this request does not match the model of the first request in the batch.",
                    Some("body.model"),
                    at,
                ));
            }
            Some(_) => {}
        }
        if !self.seen.insert(custom_id.as_str().to_owned()) {
            return Err(line_error(
                "duplicate_custom_id",
                "The custom_id for this request is a duplicate of another request.",
                Some("custom_id"),
                at,
            ));
        }
        // `body_raw` is a slice of `text`, so its place in the line is the distance between the
        // two.
        let at = body_raw.as_ptr() as usize - text.as_ptr() as usize;
        let body = at..at + body_raw.len();
        debug_assert_eq!(line.get(body.clone()), Some(body_raw.as_bytes()));
        Ok(GoodLine {
            custom_id,
            model,
            body,
        })
    }
}

/// The endpoint's name in the API's `streaming_unsupported` text.
fn endpoint_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "Chat Completions",
        Endpoint::Completions => "Completions",
        Endpoint::Embeddings => "Embeddings",
        Endpoint::Responses => "Responses",
        Endpoint::Moderations => "Moderations",
        Endpoint::Messages => "Messages",
    }
}

/// `50000` → `50,000`, as the API writes limits in its texts.
fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(pieces: &[&str]) -> Result<u64, NotJsonl> {
        let mut s = UploadScan::default();
        for p in pieces {
            s.push(p.as_bytes())?;
        }
        s.finish()
    }

    #[test]
    fn uploads_need_a_json_first_line() {
        assert_eq!(scan(&["{\"a\":", "1}\n", "not json\n"]), Ok(2));
        assert_eq!(scan(&["\n  \n{}", "\n\n{}"]), Ok(2));
        assert_eq!(scan(&["{}"]), Ok(1));
        assert_eq!(scan(&[""]), Err(NotJsonl));
        assert_eq!(scan(&["\n \n"]), Err(NotJsonl));
        assert_eq!(scan(&["{oops}\n{}\n"]), Err(NotJsonl));
        assert_eq!(scan(&["{\"a\"", ":"]), Err(NotJsonl));
    }

    #[test]
    fn each_line_knows_where_it_starts_in_the_stream() {
        let mut starts = Vec::new();
        let mut splitter = LineSplitter::new(4);
        for chunk in ["ab", "c\nd", "\n\nlong", "er\nef"] {
            splitter
                .push_at::<()>(chunk.as_bytes(), |n, at, _| {
                    starts.push((n, at));
                    Ok(())
                })
                .unwrap();
        }
        splitter
            .finish_at::<()>(|n, at, _| {
                starts.push((n, at));
                Ok(())
            })
            .unwrap();
        // "abc\n" "d\n" "\n" "longer\n" (over the cap) "ef"
        assert_eq!(starts, vec![(1, 0), (2, 4), (3, 6), (4, 7), (5, 14)]);
    }

    #[test]
    fn lines_are_cut_across_chunks() {
        let mut lines = Vec::new();
        let mut splitter = LineSplitter::default();
        for chunk in ["ab", "c\nd", "\n\ne", "f"] {
            splitter
                .push::<()>(chunk.as_bytes(), |n, l| {
                    lines.push((n, String::from_utf8_lossy(l.unwrap()).into_owned()));
                    Ok(())
                })
                .unwrap();
        }
        splitter
            .finish::<()>(|n, l| {
                lines.push((n, String::from_utf8_lossy(l.unwrap()).into_owned()));
                Ok(())
            })
            .unwrap();
        assert_eq!(
            lines,
            vec![
                (1, "abc".into()),
                (2, "d".into()),
                (3, "".into()),
                (4, "ef".into())
            ]
        );
    }

    /// The lines a splitter with a cap of `max` bytes cuts `chunks` into (`None`: too long).
    fn split(max: usize, chunks: &[&str]) -> Vec<(u64, Option<String>)> {
        let mut lines = Vec::new();
        let mut splitter = LineSplitter::new(max);
        let mut each = |n, l: Option<&[u8]>| -> Result<(), ()> {
            lines.push((n, l.map(|l| String::from_utf8_lossy(l).into_owned())));
            Ok(())
        };
        for chunk in chunks {
            splitter.push(chunk.as_bytes(), &mut each).unwrap();
            assert!(splitter.partial.len() <= max, "held beyond the cap");
        }
        splitter.finish(&mut each).unwrap();
        lines
    }

    #[test]
    fn lines_over_the_cap_are_named_without_being_held() {
        let some = |s: &str| Some(s.to_owned());
        // Over the cap within one chunk, across chunks, and at the end of the stream.
        assert_eq!(
            split(4, &["abcd\nabcde\nx"]),
            vec![(1, some("abcd")), (2, None), (3, some("x"))]
        );
        assert_eq!(
            split(4, &["ab", "cd", "e", "fgh", "ij\nok\n"]),
            vec![(1, None), (2, some("ok"))]
        );
        assert_eq!(
            split(4, &["ok\nabc", "de"]),
            vec![(1, some("ok")), (2, None)]
        );
        assert_eq!(split(4, &["ab", "cd\n"]), vec![(1, some("abcd"))]);
    }

    #[test]
    fn a_line_over_the_cap_fails_the_batch_naming_it() {
        let mut v = LineValidator::new(Endpoint::ChatCompletions, false, 10);
        v.line(1, None);
        let errors = v.finish();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].code.as_str(), errors[0].line),
            ("invalid_json_line", Some(1))
        );
        assert_eq!(
            errors[0].message,
            "This line is larger than the maximum of 33,554,432 bytes for one request."
        );
    }

    fn errors(
        endpoint: Endpoint,
        single: bool,
        lines: &[&str],
    ) -> Vec<(String, Option<String>, Option<u64>)> {
        let mut v = LineValidator::new(endpoint, single, 3);
        for (i, l) in lines.iter().enumerate() {
            v.line(i as u64 + 1, Some(l.as_bytes()));
        }
        codes(v)
    }

    /// The errors a validator ends with, as `(code, param, line)`.
    fn codes(v: LineValidator) -> Vec<(String, Option<String>, Option<u64>)> {
        v.finish()
            .into_iter()
            .map(|e| (e.code, e.param, e.line))
            .collect()
    }

    fn e(
        code: &str,
        param: Option<&str>,
        line: Option<u64>,
    ) -> (String, Option<String>, Option<u64>) {
        (code.into(), param.map(Into::into), line)
    }

    const OK: &str = r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}"#;

    #[test]
    fn every_bad_line_is_reported_in_order_with_its_code() {
        let got = errors(
            Endpoint::ChatCompletions,
            false,
            &[
                OK,
                "nope",
                r#"{"method":"POST"}"#,
                r#"{"custom_id":7,"method":"POST"}"#,
                r#"{"custom_id":"b","method":"GET","url":"/v1/chat/completions","body":{}}"#,
                r#"{"custom_id":"b","method":"POST","url":"/v1/embeddings","body":{}}"#,
                r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions"}"#,
                r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":[1]}"#,
                r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[],"stream":true}}"#,
                r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"messages":[]}}"#,
                r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#,
                OK,
                "[1]",
            ],
        );
        assert_eq!(
            got,
            vec![
                e("too_many_tasks", None, None),
                e("invalid_json_line", None, Some(2)),
                e("missing_required_parameter", Some("custom_id"), Some(3)),
                e("invalid_type", Some("custom_id"), Some(4)),
                e("invalid_method", Some("method"), Some(5)),
                e("invalid_url", Some("url"), Some(6)),
                e("missing_required_parameter", Some("body"), Some(7)),
                e("invalid_type", Some("body"), Some(8)),
                e("streaming_unsupported", Some("body.stream"), Some(9)),
                e("invalid_request", Some("body.model"), Some(10)),
                e("invalid_request", Some("body.messages"), Some(11)),
                e("duplicate_custom_id", Some("custom_id"), Some(12)),
                e("invalid_json_line", None, Some(13)),
            ]
        );
    }

    /// The members are read as the serde derive this check once used read them: `null` is
    /// absent, a repeated member fails its object, keys are decoded.
    #[test]
    fn members_are_read_as_the_derive_read_them() {
        let mut v = LineValidator::new(Endpoint::ChatCompletions, false, 10);
        let head = r#""method":"POST","url":"/v1/chat/completions""#;
        for (n, line) in [
            format!(r#"{{"custom_id":null,{head},"body":{{"model":"m","messages":[]}}}}"#),
            format!(r#"{{"custom_id":"b","custom_id":"c",{head},"body":{{"model":"m"}}}}"#),
            format!(r#"{{"custom_id":"d",{head},"body":{{"model":"m","model":"m","messages":[]}}}}"#),
            format!(r#"{{"custom_id":"e",{head},"body":{{"model":"m","messages":null}}}}"#),
            format!(r#"{{"custom_id":"f",{head},"body":{{"model":"m","messages":[],"stream" : true }}}}"#),
            format!(r#"{{"custom_id":"g",{head},"body":{{"model":"m","messages":[],"stream":false,"x":null}},"x":1,"x":2}}"#),
        ]
        .iter()
        .enumerate()
        {
            v.line(n as u64 + 1, Some(line.as_bytes()));
        }
        assert_eq!(
            codes(v),
            vec![
                e("missing_required_parameter", Some("custom_id"), Some(1)),
                e("invalid_json_line", None, Some(2)),
                e("invalid_type", Some("body"), Some(3)),
                e("invalid_request", Some("body.messages"), Some(4)),
                e("streaming_unsupported", Some("body.stream"), Some(5)),
            ]
        );
    }

    #[test]
    fn good_lines_keep_their_body_byte_for_byte_and_blank_lines_are_skipped() {
        let mut v = LineValidator::new(Endpoint::Embeddings, false, 10);
        let line = "{\"url\":\"/v1/embeddings\",\"custom_id\":\"x y\",\"method\":\"POST\",\"body\" :\t{ \"input\": \"hi\", \"model\":\"e\" }\r\n,\"extra\":1}";
        assert_eq!(v.line(1, Some(b"   ")), None);
        let good = v.line(2, Some(line.as_bytes())).unwrap();
        assert_eq!(good.custom_id.as_str(), "x y");
        assert_eq!(good.model, "e");
        assert_eq!(&line[good.body], r#"{ "input": "hi", "model":"e" }"#);
        assert_eq!(v.requests(), 1);
        assert!(v.finish().is_empty());
    }

    #[test]
    fn a_body_that_is_not_utf8_fails_its_line() {
        // The claim reads a stored body back as text: only UTF-8 bodies may be stored.
        // And JSON text is UTF-8 throughout: a member the create does not read is no exception.
        let mut v = LineValidator::new(Endpoint::ChatCompletions, false, 10);
        let line = b"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":[\"\xff\"]}}";
        let elsewhere = b"{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"x\":\"\xff\",\"body\":{\"model\":\"m\",\"messages\":[]}}";
        assert_eq!(v.line(1, Some(line)), None);
        assert_eq!(v.line(2, Some(elsewhere)), None);
        assert_eq!(
            codes(v),
            vec![
                e("invalid_json_line", None, Some(1)),
                e("invalid_json_line", None, Some(2))
            ]
        );
    }

    /// The create's check of every line, at the bench's size of line (`upload + create`: 4,000
    /// bytes of chat body): `cargo test -p batchd-http --release --lib line_check_throughput --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "micro-benchmark; run on demand in --release"]
    fn line_check_throughput() {
        let words = "lorem ipsum dolor sit amet ".repeat(112);
        let lines: Vec<String> = (0..50_000)
            .map(|i| {
                format!(
                    concat!(
                        r#"{{"custom_id":"req-{:07}","method":"POST","url":"/v1/chat/completions","#,
                        r#""body":{{"model":"gpt-4o-mini","max_tokens":1024,"temperature":0.7,"#,
                        r#""user":"bench-user-{}","messages":[{{"role":"system","content":"{}"}},"#,
                        r#"{{"role":"user","content":"{}"}},{{"role":"assistant","content":"{}"}},"#,
                        r#"{{"role":"user","content":[{{"type":"text","text":"{}"}}]}}]}}}}"#
                    ),
                    i,
                    i % 1000,
                    &words[..300],
                    words,
                    &words[..180],
                    &words[..160]
                )
            })
            .collect();
        let bytes: usize = lines.iter().map(String::len).sum();
        for _ in 0..3 {
            let mut v = LineValidator::new(Endpoint::ChatCompletions, true, 50_000);
            let start = std::time::Instant::now();
            for (n, line) in lines.iter().enumerate() {
                std::hint::black_box(v.line(n as u64 + 1, Some(line.as_bytes())));
            }
            let secs = start.elapsed().as_secs_f64();
            assert!(v.finish().is_empty());
            println!(
                "{} lines of {} B in {:.1} ms: {:.2} µs a line, {:.0} MB/s",
                lines.len(),
                bytes / lines.len(),
                secs * 1e3,
                secs * 1e6 / lines.len() as f64,
                bytes as f64 / secs / 1e6
            );
        }
    }

    #[test]
    fn mixed_models_fail_only_when_one_model_per_batch_is_required() {
        let other = OK
            .replace("\"model\":\"m\"", "\"model\":\"n\"")
            .replace("\"a\"", "\"b\"");
        assert!(errors(Endpoint::ChatCompletions, false, &[OK, &other]).is_empty());
        assert_eq!(
            errors(Endpoint::ChatCompletions, true, &[OK, &other]),
            vec![e("model_mismatch", Some("body.model"), Some(2))]
        );
    }

    #[test]
    fn an_empty_file_fails_as_a_whole() {
        assert_eq!(
            errors(Endpoint::ChatCompletions, false, &["", " "]),
            vec![e("empty_file", None, None)]
        );
        assert_eq!(group_thousands(50_000), "50,000");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_000_000), "1,000,000");
    }
}
