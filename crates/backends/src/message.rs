//! The assistant Message as batchd writes it into `succeeded` rows when it builds one itself (the
//! mock, the `openai` translation): the real API's wire shape, field order included (serde derive
//! keeps declaration order), as captured in its batch results.

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
