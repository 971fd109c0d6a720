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

/// The `params` of request `i`, about `target` bytes long.
pub fn params(i: usize, target: usize) -> String {
    let mut rng = Rng::new(i as u64 + 1);
    let mut assistant = String::new();
    rng.words(&mut assistant, 180);
    let mut last = format!("Question {i}:");
    rng.words(&mut last, 160);
    let skeleton = |first: &str| {
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
    };
    let fixed = skeleton("").len();
    let mut first = String::new();
    rng.words(&mut first, target.saturating_sub(fixed + 8));
    skeleton(&first)
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

/// The realistic workload: each request's params (for the direct load generator) and the
/// batch body carrying the same params (for batchd).
#[derive(Debug, Clone)]
pub struct Workload {
    pub params: Vec<Bytes>,
    pub body: Bytes,
}

impl Workload {
    pub fn realistic(n: usize, param_bytes: usize) -> Self {
        let params: Vec<Bytes> = (0..n)
            .map(|i| Bytes::from(params(i, param_bytes)))
            .collect();
        let body = batch_body(params.iter().map(|p| p.as_ref()));
        Self { params, body }
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
}
