//! The mock's answers on the OpenAI surface: one deterministic object per endpoint, in the
//! shapes (and key orders) the hosted API's synchronous endpoints return, so that output files
//! read like real ones.
//!
//! * `/v1/chat/completions`: a `chat.completion` saying `You said: ` and the first
//!   [`ECHO_WORDS`] words of the last user message, one choice per `n`; `max_completion_tokens`
//!   (or `max_tokens`) truncates word by word (`finish_reason: "length"`), `stop` cuts it.
//! * `/v1/completions`: a `text_completion`, one choice per prompt (`max_tokens` defaults to
//!   16, as the hosted endpoint's does).
//! * `/v1/responses`: a `response` with one `message` output of one `output_text`.
//! * `/v1/embeddings`: one unit-length vector per input, derived from the model and the input
//!   alone (the same text always embeds the same), `dimensions` long (default 3072 for
//!   `text-embedding-3-large`, else 1536); `encoding_format: "base64"` gives the base64 of the
//!   little-endian `f32`s, as the hosted API does.
//! * `/v1/moderations`: nothing flagged.
//!
//! Tokens are counted as the Messages mock counts them: one word of the reply per output token,
//! `ceil(chars / 4)` of the input. Ids and `request_id` are hashes of (batch id, custom id);
//! `created` is the batch's creation second, read from its id, so an answer is the same bytes
//! every time. A body the endpoint cannot use is refused with a 400 in the API's error envelope,
//! as an upstream would.

use batchd_domain::ids::{FNV_OFFSET, fnv1a};
use batchd_domain::openai::Endpoint;
use batchd_domain::{ErrorType, Timestamp};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use super::{ECHO_WORDS, Reply, texts_of};
use crate::message::{
    ChatChoice, ChatCompletion, ChatMessage, ChatUsage, CompletionDetails, PromptDetails,
};
use crate::{BackendError, OpenAiAnswer, OpenAiRequest};

/// Vector length of `text-embedding-3-large`.
const LARGE_DIMENSIONS: usize = 3072;
/// Vector length of every other embedding model (`text-embedding-3-small`, `-ada-002`).
const DEFAULT_DIMENSIONS: usize = 1536;
/// Longest vector the mock makes: the largest model's, as the API allows no more.
const MAX_DIMENSIONS: usize = LARGE_DIMENSIONS;
/// Most inputs (embeddings) or prompts (completions) in one request, as the API allows: what
/// bounds one answer's size (at most 2,048 vectors of [`MAX_DIMENSIONS`]), so one small line
/// cannot make the mock build gigabytes.
const MAX_INPUTS: usize = 2048;
/// The most choices `n` asks for, as the hosted API allows.
const MAX_CHOICES: u64 = 128;
/// The hosted `/v1/completions`' default `max_tokens`.
const COMPLETIONS_MAX_TOKENS: u64 = 16;
const FINGERPRINT: &str = "fp_ba7cd0e5f1";

/// The answer to `request`, or the upstream-like refusal of a body the endpoint cannot use.
pub(super) fn answer(request: OpenAiRequest<'_>) -> Result<OpenAiAnswer, BackendError> {
    let body: Value = serde_json::from_str(request.body).map_err(|_| {
        refusal(
            "We could not parse the JSON body of your request.",
            None,
            None,
        )
    })?;
    if !body.is_object() {
        return Err(refusal(
            "The request body must be a JSON object.",
            None,
            None,
        ));
    }
    let ids = Ids::new(request.batch_id, request.custom_id);
    let model = request.model;
    let json = match request.endpoint {
        Endpoint::ChatCompletions => chat(&body, model, &ids),
        Endpoint::Completions => completion(&body, model, &ids),
        Endpoint::Responses => response(&body, model, &ids),
        Endpoint::Embeddings => embeddings(&body, model),
        Endpoint::Moderations => moderation(&body, model, &ids),
        Endpoint::Messages => {
            return Err(BackendError::cannot_serve("mock", request.endpoint));
        }
    }?
    .map_err(|err| {
        BackendError::fatal(
            ErrorType::Api,
            format!("mock backend could not serialize its answer: {err}"),
        )
    })?;
    Ok(OpenAiAnswer {
        status_code: 200,
        request_id: crate::derived_request_id(request.batch_id, request.custom_id),
        body: json,
    })
}

type Rendered = Result<serde_json::Result<String>, BackendError>;

/// A 400 as the hosted API words it, carried as the upstream's answer.
fn refusal(message: &str, param: Option<&str>, code: Option<&str>) -> BackendError {
    BackendError::openai_refusal(message, param, code)
}

fn missing(param: &str) -> BackendError {
    refusal(
        &format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

fn invalid(param: &str, what: &str) -> BackendError {
    refusal(
        &format!("Invalid '{param}': {what}"),
        Some(param),
        Some("invalid_value"),
    )
}

/// The deterministic parts of one answer: a seed from (batch id, custom id) and the batch's
/// creation second.
struct Ids {
    seed: u64,
    created: u64,
}

impl Ids {
    fn new(batch_id: &str, custom_id: &str) -> Self {
        // 0xFF never occurs in UTF-8, so it separates the two parts unambiguously.
        let seed = fnv1a(
            fnv1a(fnv1a(FNV_OFFSET, batch_id.as_bytes()), &[0xFF]),
            custom_id.as_bytes(),
        );
        Self {
            seed,
            created: created_of(batch_id),
        }
    }

    /// `prefix` and `len` alphanumerics, different per `salt`.
    fn id(&self, prefix: &str, len: usize, salt: u64) -> String {
        const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut state = self.seed ^ salt;
        let mut s = String::with_capacity(prefix.len() + len);
        s.push_str(prefix);
        for _ in 0..len {
            s.push(ALNUM[(splitmix(&mut state) % ALNUM.len() as u64) as usize] as char);
        }
        s
    }
}

/// The creation second an OpenAI batch id carries in its first 8 hex digits; now for any
/// other id.
pub(crate) fn created_of(batch_id: &str) -> u64 {
    batch_id
        .strip_prefix("batch_")
        .and_then(|hex| hex.get(..8))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| Timestamp::now().as_micros().max(0) as u64 / 1_000_000)
}

/// splitmix64: cheap, well mixed, stable across platforms.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `ceil(chars / 4)`, at least 1: the mock's input tokens.
fn tokens_of(chars: usize) -> u64 {
    chars.div_ceil(4).max(1) as u64
}

/// `stop`: a string or a list of strings.
fn stops(body: &Value) -> Vec<&str> {
    match body.get("stop") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The reply to `words` under `limit` output tokens and the `stop` sequences, with whether it
/// ran out of tokens.
fn reply<'a>(words: impl Iterator<Item = &'a str>, limit: u64, stops: &[&str]) -> (Reply, bool) {
    let mut words = words
        .flat_map(str::split_whitespace)
        .take(ECHO_WORDS)
        .peekable();
    let mut reply = Reply::new(limit);
    if words.peek().is_none() {
        reply.extend(["You", "said", "nothing."]);
    } else {
        reply.extend(["You", "said:"].into_iter().chain(words));
    }
    let stopped = reply.stop_at(stops.iter().copied()).is_some();
    let truncated = reply.truncated && !stopped;
    (reply, truncated)
}

fn limit(body: &Value, keys: &[&str], default: u64) -> Result<u64, BackendError> {
    for key in keys {
        match body.get(*key) {
            None | Some(Value::Null) => continue,
            Some(v) => {
                return v
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| invalid(key, "expected a positive integer."));
            }
        }
    }
    Ok(default)
}

fn chat(body: &Value, model: &str, ids: &Ids) -> Rendered {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| missing("messages"))?;
    let limit = limit(body, &["max_completion_tokens", "max_tokens"], u64::MAX)?;
    let n = match body.get("n") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_CHOICES).contains(n))
            .ok_or_else(|| invalid("n", "expected an integer from 1 to 128."))?,
    };
    let input_chars: usize = messages
        .iter()
        .filter_map(|m| m.get("content"))
        .flat_map(|c| texts_of(c, "text"))
        .map(|t| t.chars().count())
        .sum();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"));
    let (reply, truncated) = reply(
        last_user.into_iter().flat_map(|c| texts_of(c, "text")),
        limit,
        &stops(body),
    );
    let finish_reason = if truncated { "length" } else { "stop" };
    let prompt_tokens = tokens_of(input_chars);
    let completion_tokens = reply.words * n;
    Ok(serde_json::to_string(&ChatCompletion {
        id: ids.id("chatcmpl-", 29, 1),
        object: "chat.completion",
        created: ids.created,
        model,
        choices: (0..n)
            .map(|index| ChatChoice {
                index,
                message: ChatMessage {
                    role: "assistant",
                    content: &reply.text,
                    refusal: None,
                    annotations: &[],
                },
                logprobs: None,
                finish_reason,
            })
            .collect(),
        usage: ChatUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptDetails {
                cached_tokens: 0,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: 0,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        },
        service_tier: "default",
        system_fingerprint: Some(FINGERPRINT),
    }))
}

fn completion(body: &Value, model: &str, ids: &Ids) -> Rendered {
    let prompts: Vec<&str> = match body.get("prompt") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) if list.len() > MAX_INPUTS => {
            return Err(invalid(
                "prompt",
                &format!("expected at most {MAX_INPUTS} prompts."),
            ));
        }
        Some(Value::Array(list)) if list.iter().all(Value::is_string) && !list.is_empty() => {
            list.iter().filter_map(Value::as_str).collect()
        }
        // Token ids: nothing to quote.
        Some(Value::Array(list)) if !list.is_empty() => vec![""],
        _ => return Err(missing("prompt")),
    };
    let limit = limit(body, &["max_tokens"], COMPLETIONS_MAX_TOKENS)?;
    let stops = stops(body);
    let (mut prompt_tokens, mut completion_tokens) = (0, 0);
    let mut choices = Vec::with_capacity(prompts.len());
    for (index, prompt) in prompts.iter().enumerate() {
        let (reply, truncated) = reply(std::iter::once(*prompt), limit, &stops);
        prompt_tokens += tokens_of(prompt.chars().count());
        completion_tokens += reply.words;
        choices.push(TextChoice {
            text: reply.text,
            index: index as u64,
            logprobs: None,
            finish_reason: if truncated { "length" } else { "stop" },
        });
    }
    Ok(serde_json::to_string(&TextCompletion {
        id: ids.id("cmpl-", 29, 2),
        object: "text_completion",
        created: ids.created,
        model,
        system_fingerprint: FINGERPRINT,
        choices,
        usage: TextUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        },
    }))
}

#[derive(Serialize)]
struct TextCompletion<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<TextChoice>,
    usage: TextUsage,
}

#[derive(Serialize)]
struct TextChoice {
    text: String,
    index: u64,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct TextUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

fn response(body: &Value, model: &str, ids: &Ids) -> Rendered {
    let input = body.get("input").ok_or_else(|| missing("input"))?;
    let instructions = body.get("instructions").and_then(Value::as_str);
    let max_output_tokens = match body.get("max_output_tokens") {
        None | Some(Value::Null) => None,
        Some(_) => Some(limit(body, &["max_output_tokens"], u64::MAX)?),
    };
    // `input` is a string (one user message) or a list of items with a role and content.
    let items: &[Value] = match input {
        Value::Array(items) => items,
        _ => std::slice::from_ref(input),
    };
    let input_chars: usize = instructions.map_or(0, |s| s.chars().count())
        + items
            .iter()
            .flat_map(item_texts)
            .map(|t| t.chars().count())
            .sum::<usize>();
    let last_user = items.iter().rev().find(|i| {
        i.is_string()
            || i.get("role")
                .and_then(Value::as_str)
                .is_none_or(|r| r == "user")
    });
    let user_texts = last_user.map(item_texts).unwrap_or_default();
    let (reply, truncated) = reply(
        user_texts.into_iter(),
        max_output_tokens.unwrap_or(u64::MAX),
        &[],
    );
    let input_tokens = tokens_of(input_chars);
    let output_tokens = reply.words;
    Ok(serde_json::to_string(&Response {
        id: ids.id("resp_", 48, 3),
        object: "response",
        created_at: ids.created,
        status: if truncated { "incomplete" } else { "completed" },
        error: None,
        incomplete_details: truncated.then_some(Incomplete {
            reason: "max_output_tokens",
        }),
        instructions,
        max_output_tokens,
        model,
        output: [OutputMessage {
            kind: "message",
            id: ids.id("msg_", 48, 4),
            status: if truncated { "incomplete" } else { "completed" },
            role: "assistant",
            content: [OutputText {
                kind: "output_text",
                annotations: &[],
                logprobs: &[],
                text: &reply.text,
            }],
        }],
        parallel_tool_calls: true,
        previous_response_id: None,
        reasoning: Reasoning {
            effort: None,
            summary: None,
        },
        service_tier: "default",
        store: true,
        temperature: 1.0,
        text: TextFormat {
            format: FormatType { kind: "text" },
        },
        tool_choice: "auto",
        tools: &[],
        top_p: 1.0,
        truncation: "disabled",
        usage: ResponseUsage {
            input_tokens,
            input_tokens_details: CachedTokens { cached_tokens: 0 },
            output_tokens,
            output_tokens_details: ReasoningTokens {
                reasoning_tokens: 0,
            },
            total_tokens: input_tokens + output_tokens,
        },
        user: None,
        metadata: Empty {},
    }))
}

/// The texts of one `input` item: a string, or a message whose content is a string or a list of
/// `input_text` parts.
fn item_texts(item: &Value) -> Vec<&str> {
    let content = match item {
        Value::String(s) => return vec![s],
        _ => item.get("content"),
    };
    match content {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| {
                matches!(
                    p.get("type").and_then(Value::as_str),
                    Some("input_text" | "text")
                )
            })
            .filter_map(|p| p.get("text")?.as_str())
            .collect(),
        _ => Vec::new(),
    }
}

#[derive(Serialize)]
struct Response<'a> {
    id: String,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    error: Option<()>,
    incomplete_details: Option<Incomplete>,
    instructions: Option<&'a str>,
    max_output_tokens: Option<u64>,
    model: &'a str,
    output: [OutputMessage<'a>; 1],
    parallel_tool_calls: bool,
    previous_response_id: Option<()>,
    reasoning: Reasoning,
    service_tier: &'static str,
    store: bool,
    temperature: f64,
    text: TextFormat,
    tool_choice: &'static str,
    tools: &'static [()],
    top_p: f64,
    truncation: &'static str,
    usage: ResponseUsage,
    user: Option<()>,
    metadata: Empty,
}

#[derive(Serialize)]
struct Incomplete {
    reason: &'static str,
}

#[derive(Serialize)]
struct OutputMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    status: &'static str,
    role: &'static str,
    content: [OutputText<'a>; 1],
}

#[derive(Serialize)]
struct OutputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    annotations: &'static [()],
    logprobs: &'static [()],
    text: &'a str,
}

#[derive(Serialize)]
struct Reasoning {
    effort: Option<()>,
    summary: Option<()>,
}

#[derive(Serialize)]
struct TextFormat {
    format: FormatType,
}

#[derive(Serialize)]
struct FormatType {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct ResponseUsage {
    input_tokens: u64,
    input_tokens_details: CachedTokens,
    output_tokens: u64,
    output_tokens_details: ReasoningTokens,
    total_tokens: u64,
}

#[derive(Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

#[derive(Serialize)]
struct Empty {}

fn embeddings(body: &Value, model: &str) -> Rendered {
    let input = body.get("input").ok_or_else(|| missing("input"))?;
    // One vector per string or per token list; a flat list of token ids is one input.
    let inputs: Vec<&Value> = match input {
        Value::String(_) => vec![input],
        Value::Array(list) if list.is_empty() => {
            return Err(invalid("input", "expected a non-empty string or array."));
        }
        Value::Array(list) if list.iter().all(Value::is_number) => vec![input],
        Value::Array(list) if list.len() > MAX_INPUTS => {
            return Err(invalid(
                "input",
                &format!("expected at most {MAX_INPUTS} inputs."),
            ));
        }
        Value::Array(list) if list.iter().all(|v| v.is_string() || v.is_array()) => {
            list.iter().collect()
        }
        _ => {
            return Err(invalid(
                "input",
                "expected a string or an array of strings or token arrays.",
            ));
        }
    };
    let dimensions = match body.get("dimensions") {
        None | Some(Value::Null) => default_dimensions(model),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_DIMENSIONS).contains(n))
            .ok_or_else(|| {
                invalid(
                    "dimensions",
                    &format!("expected an integer from 1 to {MAX_DIMENSIONS}."),
                )
            })?,
    };
    let base64 = match body.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => {
            return Err(invalid(
                "encoding_format",
                "expected one of 'float' or 'base64'.",
            ));
        }
    };
    let mut prompt_tokens = 0;
    let mut data = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.into_iter().enumerate() {
        let (seed_bytes, tokens) = match input {
            Value::String(s) => (s.as_bytes().to_vec(), tokens_of(s.chars().count())),
            other => {
                let tokens = other.as_array().map_or(1, Vec::len).max(1) as u64;
                (other.to_string().into_bytes(), tokens)
            }
        };
        prompt_tokens += tokens;
        let seed = fnv1a(
            fnv1a(fnv1a(FNV_OFFSET, model.as_bytes()), &[0xFF]),
            &seed_bytes,
        );
        let vector = unit_vector(seed, dimensions);
        data.push(Embedding {
            object: "embedding",
            index: index as u64,
            embedding: if base64 {
                Vector::Base64(base64_of_f32(&vector))
            } else {
                Vector::Floats(vector)
            },
        });
    }
    Ok(serde_json::to_string(&EmbeddingList {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    }))
}

fn default_dimensions(model: &str) -> usize {
    if model == "text-embedding-3-large" {
        LARGE_DIMENSIONS
    } else {
        DEFAULT_DIMENSIONS
    }
}

/// `dimensions` floats of length 1 together. A shorter vector of the same seed is the longer
/// one cut and scaled back to length 1, as the hosted API shortens its embeddings.
fn unit_vector(seed: u64, dimensions: usize) -> Vec<f32> {
    let mut state = seed;
    let raw: Vec<f64> = (0..dimensions)
        .map(|_| (splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.into_iter().map(|x| (x / norm) as f32).collect()
}

/// Standard base64 (with padding) of the little-endian bytes of `vector`.
fn base64_of_f32(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
    base64(&bytes)
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(TABLE[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Embedding>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: u64,
    embedding: Vector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// The moderation categories, in the hosted API's order.
const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

fn moderation(body: &Value, model: &str, ids: &Ids) -> Rendered {
    let input = body.get("input").ok_or_else(|| missing("input"))?;
    let inputs = match input {
        Value::Array(list) if list.iter().all(Value::is_string) && !list.is_empty() => list.len(),
        // A string, or one multi-modal input (a list of parts).
        _ => 1,
    };
    Ok(serde_json::to_string(&Moderation {
        id: ids.id("modr-", 32, 5),
        model,
        results: (0..inputs)
            .map(|_| ModerationResult {
                flagged: false,
                categories: Categories(false),
                category_scores: Categories(1e-6),
                category_applied_input_types: Categories(["text"]),
            })
            .collect(),
    }))
}

#[derive(Serialize)]
struct Moderation<'a> {
    id: String,
    model: &'a str,
    results: Vec<ModerationResult>,
}

#[derive(Serialize)]
struct ModerationResult {
    flagged: bool,
    categories: Categories<bool>,
    category_scores: Categories<f64>,
    category_applied_input_types: Categories<[&'static str; 1]>,
}

/// Every category with the same value.
struct Categories<T>(T);

impl<T: Serialize> Serialize for Categories<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(CATEGORIES.len()))?;
        for category in CATEGORIES {
            map.serialize_entry(category, &self.0)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BATCH: &str = "batch_67d450d0a1b281909f3c2e1d0a4b5c6d";

    fn ask(endpoint: Endpoint, body: &str) -> Result<OpenAiAnswer, BackendError> {
        let model: Value = serde_json::from_str(body).unwrap();
        let model = model["model"].as_str().unwrap_or("m").to_owned();
        answer(OpenAiRequest {
            endpoint,
            body,
            model: &model,
            batch_id: BATCH,
            custom_id: "req-1",
        })
    }

    fn body(endpoint: Endpoint, body: &str) -> Value {
        serde_json::from_str(&ask(endpoint, body).unwrap().body).unwrap()
    }

    #[test]
    fn chat_completion_has_the_hosted_shape_and_key_order() {
        let answer = ask(
            Endpoint::ChatCompletions,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 1+1?"}]}"#,
        )
        .unwrap();
        assert_eq!(answer.status_code, 200);
        assert_eq!(answer.request_id.len(), 32);
        assert!(answer.request_id.bytes().all(|b| b.is_ascii_hexdigit()));
        let id = ids_of(&answer.body, "chatcmpl-");
        assert_eq!(
            answer.body,
            format!(
                r#"{{"id":"{id}","object":"chat.completion","created":1741967568,"model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","content":"You said: What is 1+1?","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":6,"completion_tokens":5,"total_tokens":11,"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"service_tier":"default","system_fingerprint":"fp_ba7cd0e5f1"}}"#
            )
        );
        assert_eq!(id.len(), "chatcmpl-".len() + 29);
    }

    fn ids_of(json: &str, prefix: &str) -> String {
        let v: Value = serde_json::from_str(json).unwrap();
        let id = v["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with(prefix), "{id}");
        id
    }

    #[test]
    fn chat_honours_limits_stops_and_n() {
        let v = body(
            Endpoint::ChatCompletions,
            r#"{"model":"m","max_completion_tokens":3,"messages":[{"role":"user","content":[{"type":"text","text":"alpha beta gamma"}]}]}"#,
        );
        assert_eq!(v["choices"][0]["message"]["content"], "You said: alpha");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        let v = body(
            Endpoint::ChatCompletions,
            r#"{"model":"m","n":2,"stop":"beta","messages":[{"role":"user","content":"alpha beta gamma"}]}"#,
        );
        assert_eq!(v["choices"].as_array().unwrap().len(), 2);
        assert_eq!(v["choices"][1]["index"], 1);
        assert_eq!(v["choices"][1]["message"]["content"], "You said: alpha ");
        assert_eq!(v["choices"][1]["finish_reason"], "stop");
        assert_eq!(v["usage"]["completion_tokens"], 6);
    }

    #[test]
    fn same_request_same_bytes_other_request_other_ids() {
        let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let a = ask(Endpoint::ChatCompletions, chat).unwrap();
        assert_eq!(a, ask(Endpoint::ChatCompletions, chat).unwrap());
        let other = answer(OpenAiRequest {
            endpoint: Endpoint::ChatCompletions,
            body: chat,
            model: "m",
            batch_id: BATCH,
            custom_id: "req-2",
        })
        .unwrap();
        assert_ne!(a.request_id, other.request_id);
        assert_ne!(
            ids_of(&a.body, "chatcmpl-"),
            ids_of(&other.body, "chatcmpl-")
        );
    }

    #[test]
    fn embeddings_one_unit_vector_per_input_of_the_asked_dimensions() {
        let norm = |v: &Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap().powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let v = body(
            Endpoint::Embeddings,
            r#"{"model":"text-embedding-3-small","input":["the cat","a dog","the cat"]}"#,
        );
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "text-embedding-3-small");
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        for (i, item) in data.iter().enumerate() {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            assert_eq!(item["embedding"].as_array().unwrap().len(), 1536);
            assert!((norm(&item["embedding"]) - 1.0).abs() < 1e-4);
        }
        // The same text embeds the same; another does not.
        assert_eq!(data[0]["embedding"], data[2]["embedding"]);
        assert_ne!(data[0]["embedding"], data[1]["embedding"]);
        assert_eq!(v["usage"]["prompt_tokens"], 2 + 2 + 2);
        assert_eq!(v["usage"]["total_tokens"], 6);

        let large = body(
            Endpoint::Embeddings,
            r#"{"model":"text-embedding-3-large","input":"x"}"#,
        );
        assert_eq!(
            large["data"][0]["embedding"].as_array().unwrap().len(),
            3072
        );
        let short = body(
            Endpoint::Embeddings,
            r#"{"model":"text-embedding-3-large","input":"x","dimensions":256}"#,
        );
        assert_eq!(short["data"][0]["embedding"].as_array().unwrap().len(), 256);
        assert!((norm(&short["data"][0]["embedding"]) - 1.0).abs() < 1e-4);
        // Token arrays: a flat list is one input, a list of lists one per list.
        let tokens = body(Endpoint::Embeddings, r#"{"model":"e","input":[1,2,3]}"#);
        assert_eq!(tokens["data"].as_array().unwrap().len(), 1);
        assert_eq!(tokens["usage"]["prompt_tokens"], 3);
        let tokens = body(Endpoint::Embeddings, r#"{"model":"e","input":[[1,2],[3]]}"#);
        assert_eq!(tokens["data"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn base64_embeddings_are_the_little_endian_floats() {
        let floats = body(
            Endpoint::Embeddings,
            r#"{"model":"e","input":"hello","dimensions":4}"#,
        );
        let b64 = body(
            Endpoint::Embeddings,
            r#"{"model":"e","input":"hello","dimensions":4,"encoding_format":"base64"}"#,
        );
        let expected: Vec<f32> = floats["data"][0]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(
            b64["data"][0]["embedding"].as_str().unwrap(),
            base64_of_f32(&expected)
        );
        // 16 bytes: 24 characters with padding.
        assert_eq!(b64["data"][0]["embedding"].as_str().unwrap().len(), 24);
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xFB, 0xFF]), "+/8=");
        assert_eq!(base64_of_f32(&[1.0]), "AACAPw==");
    }

    #[test]
    fn completions_responses_and_moderations_have_their_shapes() {
        let v = body(
            Endpoint::Completions,
            r#"{"model":"m","prompt":["one two","three"]}"#,
        );
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "You said: one two");
        assert_eq!(v["choices"][1]["index"], 1);
        assert_eq!(v["choices"][1]["finish_reason"], "stop");
        let long = "w ".repeat(30);
        let v = body(
            Endpoint::Completions,
            &format!(r#"{{"model":"m","prompt":"{long}"}}"#),
        );
        // The hosted default of 16 tokens.
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 16);

        let v = body(
            Endpoint::Responses,
            r#"{"model":"gpt-4.1","instructions":"Be brief.","input":[{"role":"user","content":[{"type":"input_text","text":"Hello there"}]}]}"#,
        );
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["instructions"], "Be brief.");
        assert_eq!(v["output"][0]["type"], "message");
        assert_eq!(v["output"][0]["role"], "assistant");
        assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
        assert_eq!(
            v["output"][0]["content"][0]["text"],
            "You said: Hello there"
        );
        assert_eq!(v["usage"]["output_tokens"], 4);
        assert!(v["id"].as_str().unwrap().starts_with("resp_"));
        let v = body(
            Endpoint::Responses,
            r#"{"model":"m","input":"a b c d","max_output_tokens":2}"#,
        );
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");

        let v = body(
            Endpoint::Moderations,
            r#"{"model":"omni-moderation-latest","input":["a","b"]}"#,
        );
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["flagged"], false);
        assert_eq!(results[0]["categories"]["self-harm/intent"], false);
        assert_eq!(results[0]["categories"].as_object().unwrap().len(), 13);
        assert_eq!(
            results[0]["category_applied_input_types"]["hate"][0],
            "text"
        );
    }

    #[test]
    fn unusable_bodies_are_refused_like_an_upstream_400() {
        let err = ask(Endpoint::ChatCompletions, r#"{"model":"m"}"#).unwrap_err();
        assert!(!err.retryable);
        assert_eq!(
            err.upstream,
            Some((
                400,
                r#"{"error":{"message":"Missing required parameter: 'messages'.","type":"invalid_request_error","param":"messages","code":"missing_required_parameter"}}"#
                    .to_owned()
            ))
        );
        let err = ask(
            Endpoint::Embeddings,
            r#"{"model":"m","input":"x","dimensions":0}"#,
        )
        .unwrap_err();
        assert_eq!(err.upstream.unwrap().0, 400);
        let err = ask(
            Endpoint::Embeddings,
            r#"{"model":"m","input":"x","encoding_format":"hex"}"#,
        )
        .unwrap_err();
        assert!(err.message.contains("encoding_format"), "{}", err.message);
    }
}
