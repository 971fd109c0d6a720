//! The built-in mock model: answers any model with a deterministic assistant `Message` derived
//! from the request, shaped exactly like a 2026 batch result, optionally after a
//! simulated latency under a bounded number of concurrent "model slots".
//!
//! Its `model` is the id the API would report ([`models::resolve`]: the dated id for an older
//! alias). With `strict_models`, a model the API does not list is answered as the API answers
//! it, `not_found_error` `model: <name>`; off by default, so tests may name any model.
//!
//! What it says: `You said: ` followed by the first [`ECHO_WORDS`] words of the last user
//! message (`You said nothing.` when that message has no text). One word counts as one output
//! token, so `max_tokens` truncates word by word; `stop_sequences` cut the reply like a real model
//! would. Input tokens are `ceil(chars / 4)` over the system prompt and every message's text.
//! The message id is a hash of (batch id, custom id), so re-running a batch reproduces its
//! results byte for byte.
//!
//! On the OpenAI surface it answers every endpoint a batch may name, in the shapes of
//! the hosted API's objects (see `mock/openai.rs`), under the same latency and model slots.
//!
//! It runs once per request at the server's full request rate, so it reads the raw params in one
//! typed pass (the turns, system prompt and stop sequences, borrowed, no `Value` tree), does one
//! serialization and a handful of allocations, and touches no shared state when latency is
//! zero.

use std::time::Duration;

use async_trait::async_trait;
use batchd_domain::ErrorType;
use batchd_domain::ids;
use batchd_domain::models;
use batchd_domain::openai::Endpoint;
use batchd_domain::params::Params;
use std::borrow::Cow;

use batchd_domain::raw_json::{self, Object, Raw};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::message::{Block, Message, Usage};
use crate::{Backend, BackendError, BackendRequest, OpenAiAnswer, OpenAiRequest};

pub(crate) mod openai;

/// How many words of the user's last message the reply quotes.
pub const ECHO_WORDS: usize = 20;

/// A deterministic model server; see the module docs for what it answers.
#[derive(Debug)]
pub struct MockBackend {
    name: String,
    latency: Duration,
    /// Model slots, held for the simulated latency. Untouched when latency is zero: there is
    /// nothing to wait for, and the dispatcher bounds in-flight requests anyway.
    slots: Semaphore,
    /// Refuse models the API does not list, as the API does.
    strict_models: bool,
    #[cfg(test)]
    gauge: tests::Gauge,
}

impl MockBackend {
    /// `concurrency` is how many requests may be "on the model" at once (0 is taken as 1);
    /// `latency` is how long each one stays there.
    pub fn new(latency: Duration, concurrency: usize) -> Self {
        Self::named("mock", latency, concurrency)
    }

    /// A mock configured as a `[[backends]]` entry, reported under its own name.
    pub fn named(name: &str, latency: Duration, concurrency: usize) -> Self {
        Self {
            name: name.to_owned(),
            latency,
            slots: Semaphore::new(concurrency.clamp(1, Semaphore::MAX_PERMITS)),
            strict_models: false,
            #[cfg(test)]
            gauge: tests::Gauge::default(),
        }
    }

    /// Whether a model missing from [`models::MODELS`] is refused rather than answered.
    pub fn strict_models(mut self, strict: bool) -> Self {
        self.strict_models = strict;
        self
    }

    /// The simulated time on the model, under the bound of model slots.
    async fn on_model(&self) -> Result<(), BackendError> {
        if !self.latency.is_zero() {
            // The semaphore is never closed; if it ever were, the request could be retried.
            let _slot = self.slots.acquire().await.map_err(|_| {
                BackendError::retryable(ErrorType::Overloaded, "Overloaded".into(), None)
            })?;
            #[cfg(test)]
            let _on_model = self.gauge.enter();
            tokio::time::sleep(self.latency).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for MockBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, request: BackendRequest<'_>) -> Result<String, BackendError> {
        if self.strict_models && models::lookup(&request.params.model).is_none() {
            return Err(BackendError::fatal(
                ErrorType::NotFound,
                format!("model: {}", request.params.model),
            ));
        }
        self.on_model().await?;
        render(
            request.params,
            request.raw_params,
            request.batch_id,
            request.custom_id,
        )
        .map_err(|err| {
            BackendError::fatal(
                ErrorType::Api,
                format!("mock backend could not serialize its answer: {err}"),
            )
        })
    }

    fn serves_endpoint(&self, endpoint: Endpoint) -> bool {
        endpoint != Endpoint::Messages
    }

    fn is_mock(&self) -> bool {
        true
    }

    /// `strict_models` does not apply here: the models it knows are the Anthropic API's.
    async fn send_openai(&self, request: OpenAiRequest<'_>) -> Result<OpenAiAnswer, BackendError> {
        if !self.serves_endpoint(request.endpoint) {
            return Err(BackendError::cannot_serve(&self.name, request.endpoint));
        }
        self.on_model().await?;
        openai::answer(request)
    }
}

/// What the mock reads of validated params, borrowed from the raw JSON: each turn's role and
/// content, the system prompt and the stop sequences.
#[derive(Default)]
struct Body<'a> {
    system: Option<Raw<'a>>,
    messages: Vec<Turn<'a>>,
    stop_sequences: Option<Vec<String>>,
}

struct Turn<'a> {
    role: Option<Cow<'a, str>>,
    content: Option<Raw<'a>>,
}

impl<'a> Body<'a> {
    /// One scan of the params, its turns read in it (the last of a repeated key counting, as in
    /// validation); turns that are not objects are passed over.
    fn read(raw: &'a str) -> Self {
        let Some(body) = raw_json::Body::parse(raw) else {
            return Self::default();
        };
        let messages = match body.messages {
            Some(Ok(turns)) => turns
                .into_iter()
                .filter_map(Result::ok)
                .map(|m| Turn {
                    role: m.get("role").and_then(raw_json::string),
                    content: m.get("content"),
                })
                .collect(),
            _ => Vec::new(),
        };
        let body = body.members;
        let stop_sequences = body
            .get("stop_sequences")
            .and_then(raw_json::array)
            .map(|s| {
                s.into_iter()
                    .filter_map(raw_json::string)
                    .map(Cow::into_owned)
                    .collect()
            });
        Self {
            system: body.get("system").filter(|v| !raw_json::is_null(*v)),
            messages,
            stop_sequences,
        }
    }
}

/// Input tokens as the mock counts them: a quarter of the characters of the system prompt and
/// every message's text, at least one.
fn input_tokens(body: &Body<'_>) -> u64 {
    let chars = |content: Raw<'_>| -> usize {
        raw_texts(content, "text")
            .iter()
            .map(|t| t.chars().count())
            .sum()
    };
    let mut input_chars = body.system.map_or(0, chars);
    for turn in &body.messages {
        input_chars += turn.content.map_or(0, chars);
    }
    input_chars.div_ceil(4).max(1) as u64
}

/// The serialized `Message` the mock answers `params` (`raw` as sent) with when test mode
/// scripts its text: the mock's own id, model and usage, `text` as the only block, one output
/// token per word, `end_turn`.
pub fn scripted_message(
    params: &Params,
    raw: &str,
    batch_id: &str,
    custom_id: &str,
    text: &str,
) -> serde_json::Result<String> {
    let id = message_id(batch_id, custom_id);
    serde_json::to_string(&Message::assistant(
        &id,
        models::resolve(&params.model),
        vec![Block::text(text)],
        ("end_turn", None),
        Usage::batch(
            input_tokens(&Body::read(raw)),
            0,
            text.split_whitespace().count() as u64,
        ),
    ))
}

/// The serialized `Message` answering `params` (`raw` as sent).
fn render(
    params: &Params,
    raw: &str,
    batch_id: &str,
    custom_id: &str,
) -> serde_json::Result<String> {
    let body = Body::read(raw);
    let last_user = body
        .messages
        .iter()
        .rev()
        .find(|t| t.role.as_deref() == Some("user"))
        .and_then(|t| t.content)
        .map(|content| raw_texts(content, "text"))
        .unwrap_or_default();
    let mut echo = last_user
        .iter()
        .flat_map(|t| t.split_whitespace())
        .take(ECHO_WORDS)
        .peekable();

    let mut reply = Reply::new(params.max_tokens);
    if echo.peek().is_none() {
        reply.extend(["You", "said", "nothing."]);
    } else {
        reply.extend(["You", "said:"].into_iter().chain(echo));
    }

    let stops = body.stop_sequences.as_deref().unwrap_or_default();
    let (stop_reason, stop_sequence) = match reply.stop_at(stops.iter().map(String::as_str)) {
        Some(seq) => ("stop_sequence", Some(seq)),
        None if reply.truncated => ("max_tokens", None),
        None => ("end_turn", None),
    };

    let id = message_id(batch_id, custom_id);
    serde_json::to_string(&Message::assistant(
        &id,
        models::resolve(&params.model),
        vec![Block::text(&reply.text)],
        (stop_reason, stop_sequence),
        Usage::batch(input_tokens(&body), 0, reply.words),
    ))
}

/// The reply under construction, one word per output token, capped at `max_tokens`.
struct Reply {
    text: String,
    words: u64,
    limit: u64,
    /// A word did not fit: the model "ran out" of tokens.
    truncated: bool,
}

impl Reply {
    fn new(limit: u64) -> Self {
        Self {
            text: String::with_capacity(128),
            words: 0,
            limit,
            truncated: false,
        }
    }

    fn extend<'a>(&mut self, words: impl IntoIterator<Item = &'a str>) {
        for word in words {
            if self.words == self.limit {
                self.truncated = true;
                return;
            }
            if self.words > 0 {
                self.text.push(' ');
            }
            self.text.push_str(word);
            self.words += 1;
        }
    }

    /// Cuts the reply before the earliest stop sequence found in it (where a real model would
    /// have stopped; ties go to the first listed) and returns that sequence.
    fn stop_at<'s>(&mut self, stops: impl Iterator<Item = &'s str>) -> Option<&'s str> {
        let mut stop: Option<(usize, &str)> = None;
        for seq in stops.filter(|s| !s.is_empty()) {
            if let Some(at) = self.text.find(seq)
                && stop.is_none_or(|(best, _)| at < best)
            {
                stop = Some((at, seq));
            }
        }
        let (at, seq) = stop?;
        self.text.truncate(at);
        self.words = self.text.split_whitespace().count() as u64;
        Some(seq)
    }
}

/// The text of a `content` or `system` value: the string itself, or its `text` blocks.
/// The text of a content value: the string itself, or the `text` of its parts of type `kind`.
fn texts_of<'v>(content: &'v Value, kind: &'static str) -> impl Iterator<Item = &'v str> {
    let (single, blocks) = match content {
        Value::String(s) => (Some(s.as_str()), &[][..]),
        Value::Array(blocks) => (None, blocks.as_slice()),
        _ => (None, &[][..]),
    };
    single
        .into_iter()
        .chain(blocks.iter().filter_map(move |block| {
            (block.get("type")?.as_str()? == kind)
                .then(|| block.get("text")?.as_str())
                .flatten()
        }))
}

/// [`texts_of`] on raw JSON: the string itself, or the `text` of its parts of type `kind`,
/// borrowed from the input unless they hold escapes.
fn raw_texts<'a>(content: Raw<'a>, kind: &str) -> Vec<Cow<'a, str>> {
    if let Some(text) = raw_json::string(content) {
        return vec![text];
    }
    raw_json::array(content)
        .unwrap_or_default()
        .into_iter()
        .filter_map(Object::of)
        .filter(|b| b.get("type").and_then(raw_json::string).as_deref() == Some(kind))
        .filter_map(|b| b.get("text").and_then(raw_json::string))
        .collect()
}

/// `msg_` plus a body seeded by FNV-1a over (batch id, custom id).
fn message_id(batch_id: &str, custom_id: &str) -> String {
    // 0xFF never occurs in UTF-8, so it separates the two parts unambiguously.
    let hash = ids::fnv1a(ids::FNV_OFFSET, batch_id.as_bytes());
    let hash = ids::fnv1a(ids::fnv1a(hash, &[0xFF]), custom_id.as_bytes());
    let body = ids::deterministic_body(hash);
    let mut id = String::with_capacity(4 + body.len());
    id.push_str("msg_");
    id.push_str(&body);
    id
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use batchd_domain::{ApiVersion, params};
    use tokio::time::Instant;

    use super::*;

    /// How many requests are on the model right now, and the most there ever were.
    #[derive(Debug, Default)]
    pub(super) struct Gauge {
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    pub(super) struct OnModel<'a>(&'a Gauge);

    impl Gauge {
        pub(super) fn enter(&self) -> OnModel<'_> {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            OnModel(self)
        }
    }

    impl Drop for OnModel<'_> {
        fn drop(&mut self) {
            self.0.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    const BATCH: &str = "msgbatch_01TestBatch000000000000";

    /// Validated params and the raw JSON they came from, as the dispatcher hands them over.
    struct Asked {
        params: Params,
        raw: String,
    }

    fn params(raw: &str) -> Asked {
        Asked {
            params: params::validate(raw, &params::Terms::default())
                .expect("test params are valid"),
            raw: raw.to_owned(),
        }
    }

    fn ask(user: &str, extra: &str) -> Asked {
        let user = serde_json::to_string(user).unwrap();
        params(&format!(
            r#"{{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{{"role":"user","content":{user}}}]{extra}}}"#
        ))
    }

    async fn send(backend: &MockBackend, asked: &Asked, custom_id: &str) -> String {
        backend
            .send(BackendRequest {
                params: &asked.params,
                raw_params: &asked.raw,
                betas: &[],
                version: ApiVersion::default(),
                batch_id: BATCH,
                custom_id,
            })
            .await
            .unwrap()
    }

    async fn answer(params: &Asked) -> Value {
        let json = send(&MockBackend::new(Duration::ZERO, 1), params, "c").await;
        serde_json::from_str(&json).unwrap()
    }

    #[tokio::test]
    async fn a_scripted_text_keeps_the_mock_id_model_and_input_usage() {
        let p = ask("hello there", "");
        let own = answer(&p).await;
        let scripted: Value = serde_json::from_str(
            &scripted_message(&p.params, &p.raw, BATCH, "c", "REFUND APPROVED now").unwrap(),
        )
        .unwrap();
        assert_eq!(scripted["id"], own["id"]);
        assert_eq!(scripted["model"], own["model"]);
        assert_eq!(
            scripted["usage"]["input_tokens"],
            own["usage"]["input_tokens"]
        );
        assert_eq!(scripted["usage"]["output_tokens"], 3);
        assert_eq!(
            scripted["content"],
            serde_json::json!([{"type": "text", "text": "REFUND APPROVED now"}])
        );
        assert_eq!(scripted["stop_reason"], "end_turn");
        assert!(MockBackend::new(Duration::ZERO, 1).is_mock());
    }

    #[tokio::test]
    async fn exact_shape_and_key_order() {
        let json = send(
            &MockBackend::new(Duration::ZERO, 1),
            &ask("What is 1+1? Answer briefly.", ""),
            "req-1",
        )
        .await;
        // The id is pinned too, so a change of hash or id scheme is a deliberate decision.
        assert_eq!(
            json,
            r#"{"id":"msg_01Pytwgahs4AzD3GghjWhDa2","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[{"type":"text","text":"You said: What is 1+1? Answer briefly."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":7,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":7,"service_tier":"batch","inference_geo":"not_available"}}"#
        );
    }

    #[tokio::test]
    async fn answers_with_the_id_the_api_reports() {
        let m = answer(&ask("hi", "")).await;
        assert_eq!(m["model"], "claude-haiku-4-5-20251001");
        let p = params(
            r#"{"model":"claude-sonnet-4-6","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(answer(&p).await["model"], "claude-sonnet-4-6");
    }

    #[tokio::test]
    async fn strict_models_refuses_what_the_api_does_not_list() {
        let unknown = params(
            r#"{"model":"claude-does-not-exist-9","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        fn request(p: &Asked) -> BackendRequest<'_> {
            BackendRequest {
                params: &p.params,
                raw_params: &p.raw,
                betas: &[],
                version: ApiVersion::default(),
                batch_id: BATCH,
                custom_id: "c",
            }
        }
        let strict = MockBackend::new(Duration::ZERO, 1).strict_models(true);
        let err = strict.send(request(&unknown)).await.unwrap_err();
        assert_eq!(err.kind, ErrorType::NotFound);
        assert_eq!(err.message, "model: claude-does-not-exist-9");
        assert!(!err.retryable);
        let known = ask("hi", "");
        assert!(strict.send(request(&known)).await.is_ok());
        // Off by default: any model name is answered.
        let lenient = MockBackend::new(Duration::ZERO, 1);
        assert!(lenient.send(request(&unknown)).await.is_ok());
    }

    #[tokio::test]
    async fn same_input_same_bytes() {
        let backend = MockBackend::new(Duration::ZERO, 4);
        let p = ask("Tell me about determinism", r#","system":"Be brief.""#);
        let first = send(&backend, &p, "a").await;
        assert_eq!(first, send(&backend, &p, "a").await);
        assert_eq!(
            first,
            send(&MockBackend::new(Duration::ZERO, 1), &p, "a").await
        );

        // Another custom_id changes only the id.
        let other = send(&backend, &p, "b").await;
        assert_ne!(first, other);
        let (mut a, mut b): (Value, Value) = (
            serde_json::from_str(&first).unwrap(),
            serde_json::from_str(&other).unwrap(),
        );
        let (id_a, id_b) = (a["id"].take(), b["id"].take());
        assert_ne!(id_a, id_b);
        assert_eq!(a, b);
        for id in [id_a, id_b] {
            let id = id.as_str().unwrap().to_owned();
            assert!(id.starts_with("msg_01") && id.len() == 28, "{id}");
        }
    }

    #[tokio::test]
    async fn echoes_the_last_user_message_up_to_twenty_words() {
        let long: Vec<String> = (1..=30).map(|i| format!("w{i}")).collect();
        let p = params(&format!(
            r#"{{"model":"m","max_tokens":100,"messages":[
                {{"role":"user","content":"first question"}},
                {{"role":"assistant","content":"an answer"}},
                {{"role":"user","content":[{{"type":"image","source":{{}}}},{{"type":"text","text":"{}"}}]}}
            ]}}"#,
            long.join(" ")
        ));
        let m = answer(&p).await;
        let expected = format!("You said: {}", long[..20].join(" "));
        assert_eq!(m["content"][0]["text"], expected.as_str());
        assert_eq!(m["usage"]["output_tokens"], 22);
        assert_eq!(m["stop_reason"], "end_turn");
        assert_eq!(m["model"], "m");
    }

    #[tokio::test]
    async fn no_user_text_still_answers() {
        let p = params(
            r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]}"#,
        );
        let m = answer(&p).await;
        assert_eq!(m["content"][0]["text"], "You said nothing.");
        assert_eq!(m["usage"]["output_tokens"], 3);
        assert_eq!(m["usage"]["input_tokens"], 1);
    }

    #[tokio::test]
    async fn input_tokens_cover_system_and_every_message() {
        // 12 (system blocks) + 5 + 4 + 8 = 29 chars -> 8 tokens; "é" counts once.
        let p = params(
            r#"{"model":"m","max_tokens":10,"system":[{"type":"text","text":"abcdef"},{"type":"text","text":"ghijkl"}],
                "messages":[{"role":"user","content":"héllo"},{"role":"assistant","content":"abcd"},
                            {"role":"user","content":[{"type":"text","text":"abcdefgh"}]}]}"#,
        );
        assert_eq!(answer(&p).await["usage"]["input_tokens"], 8);
    }

    /// A repeated key's last value counts, as in validation.
    #[tokio::test]
    async fn a_repeated_key_counts_its_last_value() {
        let m = answer(&params(
            r#"{"model":"m","max_tokens":64,"stop_sequences":["zzz"],"messages":[{"role":"user","content":"first"}],
                "messages":[{"role":"user","content":"hello there"}],"stop_sequences":["there"]}"#,
        ))
        .await;
        assert_eq!(m["content"][0]["text"], "You said: hello ");
        assert_eq!(m["stop_reason"], "stop_sequence");
        assert_eq!(m["stop_sequence"], "there");
        assert_eq!(m["usage"]["input_tokens"], 3);
    }

    #[tokio::test]
    async fn max_tokens_truncates_word_by_word() {
        let m = answer(&ask("What is 1+1? Answer briefly.", r#","max_tokens":3"#)).await;
        assert_eq!(m["content"][0]["text"], "You said: What");
        assert_eq!(m["stop_reason"], "max_tokens");
        assert_eq!(m["stop_sequence"], Value::Null);
        assert_eq!(m["usage"]["output_tokens"], 3);

        // Exactly enough is a natural end, not a truncation.
        let m = answer(&ask("one two", r#","max_tokens":4"#)).await;
        assert_eq!(m["content"][0]["text"], "You said: one two");
        assert_eq!(m["stop_reason"], "end_turn");
    }

    #[tokio::test]
    async fn stop_sequences_cut_before_the_earliest_match() {
        let m = answer(&ask(
            "What is 1+1? Answer briefly.",
            r#","stop_sequences":["briefly","1+1","absent"]"#,
        ))
        .await;
        assert_eq!(m["content"][0]["text"], "You said: What is ");
        assert_eq!(m["stop_reason"], "stop_sequence");
        assert_eq!(m["stop_sequence"], "1+1");
        assert_eq!(m["usage"]["output_tokens"], 4);

        // A stop sequence past the max_tokens cut-off is never generated.
        let m = answer(&ask(
            "alpha beta gamma",
            r#","max_tokens":3,"stop_sequences":["gamma"]"#,
        ))
        .await;
        assert_eq!(m["content"][0]["text"], "You said: alpha");
        assert_eq!(m["stop_reason"], "max_tokens");
        assert_eq!(m["stop_sequence"], Value::Null);

        // Within the cut-off it wins over max_tokens.
        let m = answer(&ask(
            "alpha beta gamma",
            r#","max_tokens":3,"stop_sequences":["alp"]"#,
        ))
        .await;
        assert_eq!(m["content"][0]["text"], "You said: ");
        assert_eq!(m["stop_reason"], "stop_sequence");
        assert_eq!(m["usage"]["output_tokens"], 2);
    }

    /// Runs `n` concurrent requests and returns (virtual time taken, peak requests on the model).
    async fn run_concurrently(backend: MockBackend, n: usize) -> (Duration, usize) {
        let backend = Arc::new(backend);
        let p = Arc::new(ask("hi", ""));
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (backend, p) = (Arc::clone(&backend), Arc::clone(&p));
                tokio::spawn(async move { send(&backend, &p, &format!("c{i}")).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        (start.elapsed(), backend.gauge.peak.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn latency_is_served_within_the_concurrency_bound() {
        let (elapsed, peak) =
            run_concurrently(MockBackend::new(Duration::from_millis(100), 3), 10).await;
        assert_eq!(peak, 3);
        // ceil(10 / 3) waves of 100 ms each.
        assert_eq!(elapsed, Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_concurrency_means_one() {
        let (elapsed, peak) =
            run_concurrently(MockBackend::new(Duration::from_millis(50), 0), 3).await;
        assert_eq!(peak, 1);
        assert_eq!(elapsed, Duration::from_millis(150));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_latency_takes_no_time_and_no_slot() {
        let (elapsed, peak) = run_concurrently(MockBackend::new(Duration::ZERO, 1), 5).await;
        assert_eq!(elapsed, Duration::ZERO);
        assert_eq!(peak, 0);
    }

    /// `cargo test -p batchd-backends --release -- --ignored --nocapture mock_throughput`
    #[test]
    #[ignore = "micro-benchmark; run on demand in --release"]
    fn mock_throughput() {
        const N: usize = 200_000;
        let p = Arc::new(ask(
            "Summarise the following paragraph in one sentence, please: the quick brown fox jumps over the lazy dog.",
            r#","system":"You are terse.","max_tokens":1024"#,
        ));
        let custom_ids: Arc<Vec<String>> = Arc::new((0..N).map(|i| format!("req-{i}")).collect());
        let backend = Arc::new(MockBackend::new(Duration::ZERO, 1));

        // One task, one thread: the per-request cost.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let start = std::time::Instant::now();
        rt.block_on(async {
            for id in custom_ids.iter() {
                std::hint::black_box(send(&backend, &p, id).await);
            }
        });
        let secs = start.elapsed().as_secs_f64();
        println!(
            "mock send, 1 thread:  {N} in {secs:.3}s = {:.0} requests/s",
            N as f64 / secs
        );

        // Two workers, as on the target machine.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let start = std::time::Instant::now();
        rt.block_on(async {
            let tasks: Vec<_> = (0..2)
                .map(|w| {
                    let (backend, p, ids) = (
                        Arc::clone(&backend),
                        Arc::clone(&p),
                        Arc::clone(&custom_ids),
                    );
                    tokio::spawn(async move {
                        for id in ids.iter().skip(w).step_by(2) {
                            std::hint::black_box(send(&backend, &p, id).await);
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        let secs = start.elapsed().as_secs_f64();
        println!(
            "mock send, 2 workers: {N} in {secs:.3}s = {:.0} requests/s",
            N as f64 / secs
        );
    }
}
