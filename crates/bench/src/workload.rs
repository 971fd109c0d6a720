//! Request bodies for the benchmark: realistic `params` of a chosen size (system prompt,
//! multi-turn conversation, metadata, sampling settings), built deterministically so every run
//! sends the same bytes, and the batch bodies wrapping them.

use bytes::{BufMut, Bytes, BytesMut};

/// Words the filler text is drawn from: plain lowercase, so nothing needs JSON escaping.
const WORDS: &[&str] = &[
    "the",
    "model",
    "batch",
    "request",
    "answer",
    "question",
    "summarize",
    "following",
    "text",
    "customer",
    "review",
    "product",
    "quality",
    "shipping",
    "delivery",
    "support",
    "ticket",
    "classify",
    "sentiment",
    "positive",
    "negative",
    "neutral",
    "explain",
    "reasoning",
    "briefly",
    "document",
    "section",
    "paragraph",
    "contract",
    "clause",
    "invoice",
    "amount",
    "date",
    "translate",
    "into",
    "french",
    "german",
    "spanish",
    "with",
    "without",
    "should",
    "would",
    "could",
    "please",
    "return",
    "json",
    "object",
    "field",
    "value",
    "list",
    "items",
    "each",
    "record",
    "database",
    "query",
    "result",
    "error",
    "retry",
    "timeout",
    "server",
    "client",
    "latency",
    "throughput",
    "memory",
];

/// A small deterministic generator (xorshift64*): the same seed gives the same text forever.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn words(&mut self, out: &mut String, bytes: usize) {
        let end = out.len() + bytes;
        while out.len() < end {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
            out.push_str(WORDS[(self.next() % WORDS.len() as u64) as usize]);
        }
    }
}

const SYSTEM: &str = "You are a careful assistant for a customer operations team. Answer in plain \
English, keep answers short and factual, never invent order numbers or dates, and when the \
question is ambiguous say which reading you chose. Return JSON only when asked for it, and \
follow the requested field names exactly.";

/// A conversation of about `target` bytes for request `i`: `skeleton(first, assistant, last)`
/// lays out the turns in a dialect, and the first user turn is filled until the whole is about
/// `target` bytes. Both dialects draw the same text, so their figures compare.
fn conversation(i: usize, target: usize, skeleton: impl Fn(&str, &str, &str) -> String) -> String {
    let mut rng = Rng::new(i as u64 + 1);
    let mut assistant = String::new();
    rng.words(&mut assistant, 180);
    let mut last = format!("Question {i}:");
    rng.words(&mut last, 160);
    let fixed = skeleton("", &assistant, &last).len();
    let mut first = String::new();
    rng.words(&mut first, target.saturating_sub(fixed + 8));
    skeleton(&first, &assistant, &last)
}

/// The `params` of request `i`, about `target` bytes long.
pub fn params(i: usize, target: usize) -> String {
    conversation(i, target, |first, assistant, last| {
        format!(
            concat!(
                r#"{{"model":"claude-sonnet-4-5","max_tokens":1024,"temperature":0.7,"#,
                r#""metadata":{{"user_id":"bench-user-{}"}},"system":"{}","messages":["#,
                r#"{{"role":"user","content":"{}"}},{{"role":"assistant","content":"{}"}},"#,
                r#"{{"role":"user","content":[{{"type":"text","text":"{}"}}]}}]}}"#
            ),
            i % 1000,
            SYSTEM,
            first,
            assistant,
            last
        )
    })
}

/// The `body` of a `/v1/chat/completions` request `i`, about `target` bytes long: the same
/// conversation as [`params`], the system prompt as the first message.
pub fn chat_params(i: usize, target: usize) -> String {
    conversation(i, target, |first, assistant, last| {
        format!(
            concat!(
                r#"{{"model":"gpt-4o-mini","max_tokens":1024,"temperature":0.7,"#,
                r#""user":"bench-user-{}","messages":[{{"role":"system","content":"{}"}},"#,
                r#"{{"role":"user","content":"{}"}},{{"role":"assistant","content":"{}"}},"#,
                r#"{{"role":"user","content":[{{"type":"text","text":"{}"}}]}}]}}"#
            ),
            i % 1000,
            SYSTEM,
            first,
            assistant,
            last
        )
    })
}

/// Small `params` (about 150 bytes): for batches whose size should not matter.
pub fn compact_params(i: usize) -> String {
    format!(
        r#"{{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{{"role":"user","content":"Question number {i}: say something short"}}]}}"#
    )
}

/// `{"requests":[{"custom_id":"req-0000000","params":…},…]}` around the given params.
pub fn batch_body<'a>(params: impl ExactSizeIterator<Item = &'a [u8]> + Clone) -> Bytes {
    let size: usize = params.clone().map(|p| p.len() + 48).sum::<usize>() + 16;
    let mut body = BytesMut::with_capacity(size);
    body.put_slice(b"{\"requests\":[");
    for (i, p) in params.enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(format!("{{\"custom_id\":\"req-{i:07}\",\"params\":").as_bytes());
        body.put_slice(p);
        body.put_u8(b'}');
    }
    body.put_slice(b"]}");
    body.freeze()
}

/// The part of an OpenAI batch input line before its `body`.
fn line_head(i: usize) -> String {
    format!(
        r#"{{"custom_id":"req-{i:07}","method":"POST","url":"{}","body":"#,
        Surface::OpenAi.upstream_path()
    )
}

/// An OpenAI batch input file (JSONL, one `POST /v1/chat/completions` line per body).
pub fn jsonl_file<'a>(bodies: impl ExactSizeIterator<Item = &'a [u8]> + Clone) -> Bytes {
    let head = line_head(0).len();
    let size: usize = bodies.clone().map(|b| b.len() + head + 2).sum();
    let mut file = BytesMut::with_capacity(size);
    for (i, b) in bodies.enumerate() {
        file.put_slice(line_head(i).as_bytes());
        file.put_slice(b);
        file.put_slice(b"}\n");
    }
    file.freeze()
}

/// Which of batchd's two APIs a workload goes through, and so what it is made of and where
/// the direct load generator sends its bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Message Batches: one create body holding every request's `params`.
    Anthropic,
    /// OpenAI's Batch API: a JSONL input file uploaded to `/v1/files`, then a batch on it.
    OpenAi,
}

impl Surface {
    /// The upstream route a request of this surface is sent to (by batchd and by the direct
    /// load generator alike).
    pub fn upstream_path(self) -> &'static str {
        match self {
            Self::Anthropic => "/v1/messages",
            Self::OpenAi => "/v1/chat/completions",
        }
    }

    /// How progress and notes name the surface.
    pub fn name(self) -> &'static str {
        match self {
            Self::Anthropic => "Message Batches",
            Self::OpenAi => "OpenAI",
        }
    }

    /// The `[[backends]]` kind that forwards this surface's requests without translating them.
    pub fn backend_kind(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
        }
    }
}

/// A realistic workload: each request's body (for the direct load generator) and what batchd
/// receives carrying the same bodies: the create body of a Message Batch, or the input file of
/// an OpenAI batch.
#[derive(Debug, Clone)]
pub struct Workload {
    pub surface: Surface,
    pub params: Vec<Bytes>,
    pub body: Bytes,
}

impl Workload {
    pub fn realistic(n: usize, param_bytes: usize) -> Self {
        let params: Vec<Bytes> = (0..n)
            .map(|i| Bytes::from(params(i, param_bytes)))
            .collect();
        let body = batch_body(params.iter().map(|p| p.as_ref()));
        Self {
            surface: Surface::Anthropic,
            params,
            body,
        }
    }

    /// `n` chat completions of about `param_bytes` each, as an OpenAI batch input file.
    pub fn chat(n: usize, param_bytes: usize) -> Self {
        let params: Vec<Bytes> = (0..n)
            .map(|i| Bytes::from(chat_params(i, param_bytes)))
            .collect();
        let body = jsonl_file(params.iter().map(|p| p.as_ref()));
        Self {
            surface: Surface::OpenAi,
            params,
            body,
        }
    }

    /// An OpenAI batch input file of `lines` lines of about `line_bytes` each, for uploads
    /// where only the file matters (its bodies are not kept).
    pub fn chat_file(lines: usize, line_bytes: usize) -> Bytes {
        let body_bytes = line_bytes.saturating_sub(line_head(0).len() + 2);
        let bodies: Vec<String> = (0..lines).map(|i| chat_params(i, body_bytes)).collect();
        jsonl_file(bodies.iter().map(|b| b.as_bytes()))
    }

    /// A stand-in for phases whose rows need no workload.
    pub fn empty(surface: Surface) -> Self {
        Self {
            surface,
            params: vec![Bytes::from_static(b"{}")],
            body: Bytes::new(),
        }
    }

    pub fn compact(n: usize) -> Bytes {
        let params: Vec<String> = (0..n).map(compact_params).collect();
        batch_body(params.iter().map(|p| p.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_valid_json_of_the_requested_size() {
        for i in [0, 1, 99_999] {
            let p = params(i, 2560);
            let v: serde_json::Value = serde_json::from_str(&p).unwrap();
            assert_eq!(v["messages"].as_array().unwrap().len(), 3);
            assert!((2500..=2600).contains(&p.len()), "{}", p.len());
            assert_eq!(p, params(i, 2560), "deterministic");
        }
        let w = Workload::realistic(3, 1000);
        let v: serde_json::Value = serde_json::from_slice(&w.body).unwrap();
        assert_eq!(v["requests"][2]["custom_id"], "req-0000002");
        let v: serde_json::Value = serde_json::from_slice(&Workload::compact(2)).unwrap();
        assert_eq!(v["requests"][1]["params"]["max_tokens"], 16);
    }

    #[test]
    fn chat_files_are_jsonl_of_chat_completions_of_the_requested_size() {
        let w = Workload::chat(3, 1000);
        assert_eq!(w.surface, Surface::OpenAi);
        let lines: Vec<&[u8]> = w.body.split(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 4, "three lines, each ending in a newline");
        assert!(lines[3].is_empty());
        let line: serde_json::Value = serde_json::from_slice(lines[2]).unwrap();
        assert_eq!(line["custom_id"], "req-0000002");
        assert_eq!(line["url"], "/v1/chat/completions");
        let body: serde_json::Value = serde_json::from_slice(&w.params[2]).unwrap();
        assert_eq!(
            line["body"], body,
            "the line carries the direct generator's body"
        );
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"].as_array().unwrap().len(), 4);
        assert!(
            (950..=1050).contains(&w.params[1].len()),
            "{}",
            w.params[1].len()
        );

        let file = Workload::chat_file(10, 4000);
        for line in file.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            assert!((3950..=4050).contains(&(line.len() + 1)), "{}", line.len());
            serde_json::from_slice::<serde_json::Value>(line).unwrap();
        }
    }
}
