//! The assistant Message as batchd writes it into `succeeded` rows when it builds one itself (the
//! mock, the `openai` translation): the real API's wire shape, field order included (serde derive
//! keeps declaration order), as captured in its batch results. Likewise the `chat.completion`
//! object of the OpenAI surface (the mock's, and an `anthropic` backend's translated answer), in
//! the hosted API's key order.

use serde::Serialize;
use serde_json::value::RawValue;

#[derive(Serialize)]
pub(crate) struct Message<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: &'a str,
    pub content: Vec<Block<'a>>,
    pub stop_reason: &'static str,
    pub stop_sequence: Option<&'a str>,
    pub usage: Usage,
}

impl<'a> Message<'a> {
    pub fn assistant(
        id: &'a str,
        model: &'a str,
        content: Vec<Block<'a>>,
        stop: (&'static str, Option<&'a str>),
        usage: Usage,
    ) -> Self {
        Self {
            id,
            kind: "message",
            role: "assistant",
            model,
            content,
            stop_reason: stop.0,
            stop_sequence: stop.1,
            usage,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum Block<'a> {
    Text(TextBlock<'a>),
    ToolUse(ToolUseBlock),
}

impl<'a> Block<'a> {
    pub fn text(text: &'a str) -> Self {
        Self::Text(TextBlock { kind: "text", text })
    }
}

#[derive(Serialize)]
pub(crate) struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
pub(crate) struct ToolUseBlock {
    #[serde(rename = "type")]
    kind: &'static str,
    pub id: String,
    name: String,
    input: Box<RawValue>,
}

impl ToolUseBlock {
    pub fn new(id: String, name: String, input: Box<RawValue>) -> Self {
        Self {
            kind: "tool_use",
            id,
            name,
            input,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Usage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation: CacheCreation,
    output_tokens: u64,
    service_tier: &'static str,
    inference_geo: &'static str,
}

impl Usage {
    /// Usage of a batch request: no cache writes, `service_tier` `"batch"`.
    pub fn batch(input_tokens: u64, cache_read_input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens,
            cache_creation: CacheCreation {
                ephemeral_5m_input_tokens: 0,
                ephemeral_1h_input_tokens: 0,
            },
            output_tokens,
            service_tier: "batch",
            inference_geo: "not_available",
        }
    }
}

#[derive(Serialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: u64,
    ephemeral_1h_input_tokens: u64,
}

/// A `chat.completion` response object.
#[derive(Serialize)]
pub(crate) struct ChatCompletion<'a> {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChatChoice<'a>>,
    pub usage: ChatUsage,
    pub service_tier: &'static str,
    pub system_fingerprint: Option<&'static str>,
}

#[derive(Serialize)]
pub(crate) struct ChatChoice<'a> {
    pub index: u64,
    pub message: ChatMessage<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: &'static str,
}

#[derive(Serialize)]
pub(crate) struct ChatMessage<'a> {
    pub role: &'static str,
    pub content: &'a str,
    pub refusal: Option<()>,
    pub annotations: &'static [()],
}

#[derive(Serialize)]
pub(crate) struct ChatUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptDetails,
    pub completion_tokens_details: CompletionDetails,
}

#[derive(Serialize)]
pub(crate) struct PromptDetails {
    pub cached_tokens: u64,
    pub audio_tokens: u64,
}

#[derive(Serialize)]
pub(crate) struct CompletionDetails {
    pub reasoning_tokens: u64,
    pub audio_tokens: u64,
    pub accepted_prediction_tokens: u64,
    pub rejected_prediction_tokens: u64,
}
