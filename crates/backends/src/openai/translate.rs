//! Messages ↔ Chat Completions translation for the `openai` backend kind: pure functions, no
//! I/O, so every decision is covered by golden files (`tests/golden/openai/`).
//!
//! Direction one, [`chat_request`]: an Anthropic Messages `params` object becomes a Chat
//! Completions request body. The rule is *same answer or no answer*: whatever the upstream could
//! only approximate (documents, extended thinking, server tools, prefill, …) is refused with an
//! [`Unsupported`] naming the field path, which becomes an `invalid_request_error` row. Only
//! hints that cannot change the answer are dropped (`cache_control`, `service_tier`,
//! `user_profile_id`).
//!
//! Direction two, [`message_from_chat`]: the upstream's answer becomes the Anthropic `Message`,
//! serialized in the exact field order and usage shape the real API (and the built-in mock)
//! emits. An answer that cannot be read faithfully is a [`BadUpstream`] (an `api_error`).
//!
//! Choices made where the two APIs differ, and why:
//! - `max_tokens` is sent as `max_tokens`, not `max_completion_tokens`: every self-hosted server
//!   this backend targets (vLLM, SGLang, llama.cpp, Ollama, LiteLLM) reads `max_tokens`, while
//!   `max_completion_tokens` is missing or ignored on several of them, which would silently lift
//!   the cap.
//! - The Message's `model` is the one the client asked for, not the upstream's report: servers
//!   report a deployment detail there (vLLM a weights path, LiteLLM a provider-prefixed name),
//!   and batch results are matched by clients against the model they requested.
//! - `id` is `msg_` plus a body derived from a hash of the whole upstream answer (its id
//!   included): deterministic, and unique even where upstream ids are not (Ollama numbers them
//!   `chatcmpl-0` to `chatcmpl-998`).
//! - A `stop` finish is `stop_sequence` when a requested stop sequence is proven to have fired:
//!   the text contains it (servers that keep it, or ignore `stop`: the text is cut at its first
//!   occurrence, as Anthropic would have stopped there), or the choice names it (vLLM's
//!   non-standard `stop_reason`, SGLang's `matched_stop`). Plain OpenAI-style servers strip the
//!   stop string and say nothing, so there a fired stop sequence reads as `end_turn`: the text
//!   is right, only the reason is unknowable.
//! - `tool_result` with `is_error: true` has no Chat Completions field, so the tool message's
//!   text is prefixed with `Error: ` rather than dropping the signal.
//! - `thinking` / `redacted_thinking` blocks in assistant history are dropped: Anthropic itself
//!   ignores earlier turns' thinking when thinking is off, and it cannot be on here.

use std::fmt::Display;

use batchd_domain::ids;
use batchd_domain::validation::{self, NOT_BOOL, NOT_DICT, NOT_LIST, NOT_STRING, REQUIRED, ROLE};

use crate::message::{Block, Message, ToolUseBlock, Usage};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// What the upstream accepts beyond standard Chat Completions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatOptions {
    /// The upstream takes the non-standard `top_k` (vLLM, SGLang and llama.cpp do; OpenAI does
    /// not). Without it a request with `top_k` is refused rather than sampled differently.
    pub top_k: bool,
}

/// A request the upstream cannot express faithfully; becomes an `invalid_request_error` row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

/// An upstream answer that cannot be turned into a Message; becomes an `api_error` row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadUpstream(pub String);

/// `<path>: <what> not supported by this backend (openai)`, in the real API's `<loc>: <msg>`
/// style so clients see where the request went beyond this backend.
fn refuse(path: impl Display, what: impl Display) -> Unsupported {
    Unsupported(format!(
        "{path}: {what} not supported by this backend (openai)"
    ))
}

/// A malformed part of `params` that validation does not look into (it checks blocks and tools
/// for shape only); worded like the real API's validation messages.
fn invalid(path: impl Display, message: &str) -> Unsupported {
    Unsupported(validation::at(path, message))
}

/// The first key of `object` outside `allowed`, refused: an unknown key may change the answer
/// (new Anthropic features arrive as new keys), so it is never ignored.
fn only_keys(
    object: &Map<String, Value>,
    allowed: &[&str],
    path: &dyn Fn() -> String,
) -> Result<(), Unsupported> {
    match object
        .iter()
        .find(|(k, v)| !v.is_null() && !allowed.contains(&k.as_str()))
    {
        Some((key, _)) => Err(refuse(child(path, key), "this field is")),
        None => Ok(()),
    }
}

/// `path.key`, or `key` at the top level (whose path is empty).
fn child(path: &dyn Fn() -> String, key: &str) -> String {
    let path = path();
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `object[key]`, with `null` read as absent (the API treats an explicit `null` as not given).
fn get<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

fn required_str<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &dyn Fn() -> String,
) -> Result<&'a str, Unsupported> {
    match get(object, key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(child(path, key), NOT_STRING)),
        None => Err(invalid(child(path, key), REQUIRED)),
    }
}

fn as_object<'a>(
    value: &'a Value,
    path: &dyn Fn() -> String,
) -> Result<&'a Map<String, Value>, Unsupported> {
    value.as_object().ok_or_else(|| invalid(path(), NOT_DICT))
}

/// Top-level `params` keys this module reads. Anything else is refused by name, so a field added
/// to the Messages API later is never dropped silently.
const TOP_LEVEL: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "output_config",
    "inference_geo",
    "cache_control",
    "stream",
    "user_profile_id",
];

/// Anthropic `params` (already validated: `model`, `max_tokens` and `messages` are present and
/// well typed) → the Chat Completions request body.
pub fn chat_request(
    params: &Map<String, Value>,
    options: &ChatOptions,
) -> Result<Value, Unsupported> {
    only_keys(params, TOP_LEVEL, &String::new)?;

    let mut body = Map::new();
    let model = required_str(params, "model", &String::new)?;
    body.insert("model".into(), model.into());

    let mut messages = Vec::new();
    if let Some(system) = get(params, "system") {
        system_message(system, &mut messages)?;
    }
    let turns = match get(params, "messages") {
        Some(Value::Array(turns)) => turns,
        Some(_) => return Err(invalid("messages", NOT_LIST)),
        None => return Err(invalid("messages", REQUIRED)),
    };
    for (i, turn) in turns.iter().enumerate() {
        let path = || format!("messages.{i}");
        let turn = as_object(turn, &path)?;
        only_keys(turn, &["role", "content"], &path)?;
        let content = get(turn, "content")
            .ok_or_else(|| invalid(format_args!("messages.{i}.content"), REQUIRED))?;
        match required_str(turn, "role", &path)? {
            "user" => user_turn(i, content, &mut messages)?,
            "assistant" if i + 1 == turns.len() => {
                // Anthropic continues a final assistant message; Chat Completions starts a new
                // turn after it, a different answer.
                return Err(refuse(path(), "a final assistant message (prefill) is"));
            }
            "assistant" => messages.push(assistant_turn(i, content)?),
            _ => {
                return Err(invalid(format_args!("messages.{i}.role"), ROLE));
            }
        }
    }
    body.insert("messages".into(), messages.into());

    match get(params, "max_tokens") {
        Some(n @ Value::Number(_)) => body.insert("max_tokens".into(), n.clone()),
        _ => return Err(invalid("max_tokens", REQUIRED)),
    };
    body.insert("stream".into(), false.into());
    // The answer is one Message: never let an upstream default produce several choices.
    body.insert("n".into(), 1.into());

    if let Some(stops) = get(params, "stop_sequences") {
        let stops = stops
            .as_array()
            .ok_or_else(|| invalid("stop_sequences", NOT_LIST))?;
        if !stops.is_empty() {
            body.insert("stop".into(), stops.clone().into());
        }
    }
    // Same scale in both APIs (logits divided by the temperature), so the value passes as is.
    for key in ["temperature", "top_p"] {
        if let Some(value) = get(params, key) {
            body.insert(key.into(), value.clone());
        }
    }
    if let Some(top_k) = get(params, "top_k") {
        if !options.top_k {
            return Err(refuse("top_k", "this field is"));
        }
        body.insert("top_k".into(), top_k.clone());
    }
    if let Some(metadata) = get(params, "metadata") {
        let metadata = as_object(metadata, &|| "metadata".into())?;
        only_keys(metadata, &["user_id"], &|| "metadata".into())?;
        // Chat Completions' end-user id: it does not change the answer, and it keeps abuse
        // reports attributable on upstreams that use it.
        if let Some(user) = get(metadata, "user_id") {
            body.insert("user".into(), user.clone());
        }
    }
    if let Some(tools) = get(params, "tools") {
        let tools = tools.as_array().ok_or_else(|| invalid("tools", NOT_LIST))?;
        let functions = tools
            .iter()
            .enumerate()
            .map(|(i, tool)| function_tool(i, tool))
            .collect::<Result<Vec<_>, _>>()?;
        if !functions.is_empty() {
            body.insert("tools".into(), functions.into());
        }
    }
    if let Some(choice) = get(params, "tool_choice") {
        tool_choice(choice, &mut body)?;
    }
    if let Some(thinking) = get(params, "thinking") {
        let thinking = as_object(thinking, &|| "thinking".into())?;
        let kind = required_str(thinking, "type", &|| "thinking".into())?;
        if kind != "disabled" {
            return Err(refuse(
                "thinking.type",
                format_args!("extended thinking (`{kind}`) is"),
            ));
        }
    }
    if let Some(config) = get(params, "output_config") {
        output_config(config, &mut body)?;
    }
    if let Some(geo) = get(params, "inference_geo")
        && geo.as_str() != Some("global")
    {
        // A placement guarantee this backend cannot give; `global` asks for none.
        return Err(refuse("inference_geo", "this field is"));
    }
    // Batch validation refuses it first; checked again so this function is total on its own.
    if get(params, "stream").is_some_and(|s| s != &Value::Bool(false)) {
        return Err(refuse("stream", "streaming is"));
    }
    // `service_tier`, `cache_control`, `user_profile_id` and `stream: false` change nothing in
    // the answer: dropped.
    Ok(Value::Object(body))
}

/// A Chat Completions content part built from an Anthropic block.
enum Part<'a> {
    Text(&'a str),
    ImageUrl(String),
}

/// Chat content for parts: a plain string for a lone text part, which every chat template
/// understands; otherwise the parts array (also for none: an empty turn stays empty).
fn content(parts: &[Part<'_>]) -> Value {
    if let [Part::Text(text)] = parts {
        return (*text).into();
    }
    parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => json!({"type": "text", "text": text}),
            Part::ImageUrl(url) => json!({"type": "image_url", "image_url": {"url": url}}),
        })
        .collect::<Vec<_>>()
        .into()
}

fn system_message(system: &Value, out: &mut Vec<Value>) -> Result<(), Unsupported> {
    let parts = match system {
        Value::String(text) => vec![Part::Text(text)],
        Value::Array(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                let path = || format!("system.{i}");
                let block = as_object(block, &path)?;
                match required_str(block, "type", &path)? {
                    "text" => parts.push(text_part(block, &path)?),
                    other => {
                        return Err(refuse(
                            format_args!("system.{i}.type"),
                            format_args!("{other} blocks are"),
                        ));
                    }
                }
            }
            parts
        }
        _ => return Err(invalid("system", NOT_LIST)),
    };
    // No system text is no system prompt; an empty system message would also suppress the
    // default prompt some chat templates insert when there is none.
    if parts
        .iter()
        .any(|p| matches!(p, Part::Text(t) if !t.is_empty()))
    {
        out.push(json!({"role": "system", "content": content(&parts)}));
    }
    Ok(())
}

fn text_part<'a>(
    block: &'a Map<String, Value>,
    path: &dyn Fn() -> String,
) -> Result<Part<'a>, Unsupported> {
    text_of(block, path).map(Part::Text)
}

/// A text block's text. Citations would need the cited documents, which cannot be sent.
fn text_of<'a>(
    block: &'a Map<String, Value>,
    path: &dyn Fn() -> String,
) -> Result<&'a str, Unsupported> {
    only_keys(block, &["type", "text", "cache_control", "citations"], path)?;
    if get(block, "citations").is_some_and(|c| c.as_array().is_none_or(|c| !c.is_empty())) {
        return Err(refuse(
            format_args!("{}.citations", path()),
            "citations are",
        ));
    }
    required_str(block, "text", path)
}

fn image_part(
    block: &Map<String, Value>,
    path: &dyn Fn() -> String,
) -> Result<Part<'static>, Unsupported> {
    only_keys(block, &["type", "source", "cache_control"], path)?;
    let source_path = || format!("{}.source", path());
    let source = get(block, "source").ok_or_else(|| invalid(source_path(), REQUIRED))?;
    let source = as_object(source, &source_path)?;
    let url = match required_str(source, "type", &source_path)? {
        "base64" => {
            only_keys(source, &["type", "media_type", "data"], &source_path)?;
            let media_type = required_str(source, "media_type", &source_path)?;
            let data = required_str(source, "data", &source_path)?;
            format!("data:{media_type};base64,{data}")
        }
        "url" => {
            only_keys(source, &["type", "url"], &source_path)?;
            required_str(source, "url", &source_path)?.to_owned()
        }
        other => {
            return Err(refuse(
                format_args!("{}.type", source_path()),
                format_args!("{other} image sources are"),
            ));
        }
    };
    Ok(Part::ImageUrl(url))
}

/// One user turn: its text and images as one user message, its `tool_result` blocks as `tool`
/// messages, in block order (Chat Completions wants tool answers right after the call).
fn user_turn(i: usize, content_value: &Value, out: &mut Vec<Value>) -> Result<(), Unsupported> {
    let blocks = match content_value {
        Value::String(text) => {
            out.push(json!({"role": "user", "content": text}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => return Err(invalid(format_args!("messages.{i}.content"), NOT_LIST)),
    };
    let mut parts = Vec::new();
    let mut tool_answers = false;
    for (j, block) in blocks.iter().enumerate() {
        let path = || format!("messages.{i}.content.{j}");
        let block = as_object(block, &path)?;
        match required_str(block, "type", &path)? {
            "text" => parts.push(text_part(block, &path)?),
            "image" => parts.push(image_part(block, &path)?),
            "tool_result" => {
                if !parts.is_empty() {
                    out.push(json!({"role": "user", "content": content(&parts)}));
                    parts.clear();
                }
                out.push(tool_message(block, &path)?);
                tool_answers = true;
            }
            other => return Err(unsupported_block(&path, other)),
        }
    }
    if !parts.is_empty() || !tool_answers {
        out.push(json!({"role": "user", "content": content(&parts)}));
    }
    Ok(())
}

fn unsupported_block(path: &dyn Fn() -> String, kind: &str) -> Unsupported {
    refuse(
        format_args!("{}.type", path()),
        format_args!("{kind} blocks are"),
    )
}

fn tool_message(
    block: &Map<String, Value>,
    path: &dyn Fn() -> String,
) -> Result<Value, Unsupported> {
    only_keys(
        block,
        &[
            "type",
            "tool_use_id",
            "content",
            "is_error",
            "cache_control",
        ],
        path,
    )?;
    let id = required_str(block, "tool_use_id", path)?;
    // Tool messages take text only: most chat templates render them as one string, so the
    // blocks are joined rather than sent as parts.
    let mut text = String::new();
    match get(block, "content") {
        None => {}
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(blocks)) => {
            for (k, inner) in blocks.iter().enumerate() {
                let inner_path = || format!("{}.content.{k}", path());
                let inner = as_object(inner, &inner_path)?;
                match required_str(inner, "type", &inner_path)? {
                    "text" => {
                        if k > 0 {
                            text.push('\n');
                        }
                        text.push_str(text_of(inner, &inner_path)?);
                    }
                    // Chat Completions tool messages cannot carry images or documents.
                    other => {
                        return Err(refuse(
                            format_args!("{}.type", inner_path()),
                            format_args!("{other} blocks inside tool_result are"),
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(invalid(format_args!("{}.content", path()), NOT_LIST)),
    }
    match get(block, "is_error") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            text = if text.is_empty() {
                "Error".to_owned()
            } else {
                format!("Error: {text}")
            };
        }
        Some(_) => {
            return Err(invalid(format_args!("{}.is_error", path()), NOT_BOOL));
        }
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

fn assistant_turn(i: usize, content_value: &Value) -> Result<Value, Unsupported> {
    let blocks = match content_value {
        Value::String(text) => return Ok(json!({"role": "assistant", "content": text})),
        Value::Array(blocks) => blocks,
        _ => return Err(invalid(format_args!("messages.{i}.content"), NOT_LIST)),
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let path = || format!("messages.{i}.content.{j}");
        let block = as_object(block, &path)?;
        match required_str(block, "type", &path)? {
            "text" => parts.push(text_part(block, &path)?),
            "tool_use" => {
                only_keys(
                    block,
                    &["type", "id", "name", "input", "cache_control"],
                    &path,
                )?;
                let input = get(block, "input").ok_or_else(|| {
                    invalid(format_args!("messages.{i}.content.{j}.input"), REQUIRED)
                })?;
                as_object(input, &|| format!("messages.{i}.content.{j}.input"))?;
                calls.push(json!({
                    "id": required_str(block, "id", &path)?,
                    "type": "function",
                    "function": {
                        "name": required_str(block, "name", &path)?,
                        "arguments": input.to_string(),
                    },
                }));
            }
            // Earlier turns' thinking is ignored by Anthropic too when thinking is off.
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported_block(&path, other)),
        }
    }
    let mut message = json!({
        "role": "assistant",
        // `null`, not `""`, when there is no text: what OpenAI itself sends back with tool calls.
        "content": if parts.is_empty() { Value::Null } else { content(&parts) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = calls.into();
    }
    Ok(message)
}

fn function_tool(i: usize, tool: &Value) -> Result<Value, Unsupported> {
    let path = || format!("tools.{i}");
    let tool = as_object(tool, &path)?;
    if get(tool, "type").is_some() {
        let kind = required_str(tool, "type", &path)?;
        if kind != "custom" {
            // Server tools (web search, code execution, …) run at Anthropic, and Anthropic's
            // client tools (bash, text editor, computer) have schemas only it knows.
            return Err(refuse(
                format_args!("tools.{i}.type"),
                format_args!("{kind} tools are"),
            ));
        }
    }
    only_keys(
        tool,
        &[
            "type",
            "name",
            "description",
            "input_schema",
            "cache_control",
            "strict",
        ],
        &path,
    )?;
    let mut function = Map::new();
    function.insert("name".into(), required_str(tool, "name", &path)?.into());
    if let Some(description) = get(tool, "description") {
        function.insert("description".into(), description.clone());
    }
    let schema = get(tool, "input_schema")
        .ok_or_else(|| invalid(format_args!("tools.{i}.input_schema"), REQUIRED))?;
    function.insert("parameters".into(), schema.clone());
    // Same field, same meaning in Chat Completions.
    if let Some(strict) = get(tool, "strict") {
        function.insert("strict".into(), strict.clone());
    }
    Ok(json!({"type": "function", "function": function}))
}

fn tool_choice(choice: &Value, body: &mut Map<String, Value>) -> Result<(), Unsupported> {
    let path = || "tool_choice".to_owned();
    let choice = as_object(choice, &path)?;
    only_keys(
        choice,
        &["type", "name", "disable_parallel_tool_use"],
        &path,
    )?;
    let value = match required_str(choice, "type", &path)? {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => json!({
            "type": "function",
            "function": {"name": required_str(choice, "name", &path)?},
        }),
        _ => {
            return Err(invalid(
                "tool_choice.type",
                "Input should be 'auto', 'any', 'tool' or 'none'",
            ));
        }
    };
    body.insert("tool_choice".into(), value);
    match get(choice, "disable_parallel_tool_use") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            body.insert("parallel_tool_calls".into(), false.into());
        }
        Some(_) => {
            return Err(invalid("tool_choice.disable_parallel_tool_use", NOT_BOOL));
        }
    }
    Ok(())
}

/// `output_config.format` (structured outputs) is Chat Completions' `response_format`;
/// `effort` has no equivalent on a model without adaptive reasoning, except its default.
fn output_config(config: &Value, body: &mut Map<String, Value>) -> Result<(), Unsupported> {
    let path = || "output_config".to_owned();
    let config = as_object(config, &path)?;
    only_keys(config, &["format", "effort"], &path)?;
    if let Some(effort) = get(config, "effort")
        && effort.as_str() != Some("high")
    {
        return Err(refuse("output_config.effort", "this field is"));
    }
    if let Some(format) = get(config, "format") {
        let format_path = || "output_config.format".to_owned();
        let format = as_object(format, &format_path)?;
        match required_str(format, "type", &format_path)? {
            "json_schema" => {
                only_keys(format, &["type", "schema"], &format_path)?;
                let schema = get(format, "schema")
                    .ok_or_else(|| invalid("output_config.format.schema", REQUIRED))?;
                body.insert(
                    "response_format".into(),
                    json!({
                        "type": "json_schema",
                        // Chat Completions requires a name; Anthropic's format has none.
                        "json_schema": {"name": "output", "schema": schema, "strict": true},
                    }),
                );
            }
            other => {
                return Err(refuse(
                    "output_config.format.type",
                    format_args!("{other} output formats are"),
                ));
            }
        }
    }
    Ok(())
}

// ---- Chat Completions response → Message -------------------------------------------------

#[derive(Deserialize)]
struct ChatResponse {
    choices: Option<Vec<Choice>>,
    usage: Option<ChatUsage>,
    /// Some servers answer an error with status 200.
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<ChatMessage>,
    finish_reason: Option<String>,
    /// vLLM: the stop string (or token id) that ended the choice.
    stop_reason: Option<Value>,
    /// SGLang: the same, under its own name.
    matched_stop: Option<Value>,
}

#[derive(Deserialize)]
struct ChatMessage {
    content: Option<Value>,
    refusal: Option<String>,
    tool_calls: Option<Vec<ToolCall>>,
    /// The pre-`tools` form of a single call.
    function_call: Option<FunctionCall>,
}

#[derive(Deserialize)]
struct ToolCall {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    function: FunctionCall,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: Option<String>,
    /// Raw, so the model's key order survives into `input`.
    arguments: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    cached_tokens: Option<u64>,
}

fn bad(message: impl Display) -> BadUpstream {
    BadUpstream(message.to_string())
}

/// At most the first 200 characters of upstream text quoted in a complaint: enough to
/// recognise it, not a whole generation copied into every errored row.
fn snippet(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A Chat Completions response body → the Anthropic Message JSON (compact), with
/// `usage.service_tier` = `"batch"`. `params` is the request it answers (for `model` and
/// `stop_sequences`).
pub fn message_from_chat(
    response: &[u8],
    params: &Map<String, Value>,
) -> Result<String, BadUpstream> {
    let seed = ids::fnv1a(ids::FNV_OFFSET, response);
    let response: ChatResponse = serde_json::from_slice(response)
        .map_err(|e| bad(format_args!("not a Chat Completions response: {e}")))?;
    let Some(choices) = response.choices else {
        return Err(match response.error {
            Some(error) => bad(format_args!(
                "an error instead of choices: {}",
                snippet(
                    &error
                        .get("message")
                        .and_then(Value::as_str)
                        .map_or_else(|| error.to_string(), str::to_owned)
                )
            )),
            None => bad("no `choices`"),
        });
    };
    // `n` is 1: the first choice is the answer.
    let choice = choices
        .into_iter()
        .next()
        .ok_or_else(|| bad("`choices` is empty"))?;
    let message = choice
        .message
        .ok_or_else(|| bad("the choice has no `message`"))?;
    let usage = response.usage.ok_or_else(|| bad("no `usage`"))?;

    let mut text = message_text(message.content.as_ref())?;
    let mut tool_uses: Vec<ToolUseBlock> = Vec::new();
    let calls = message
        .tool_calls
        .into_iter()
        .flatten()
        .map(|call| (call.id, call.kind, call.function));
    let legacy = message.function_call.map(|f| (None, None, f));
    for (index, (id, kind, function)) in calls.chain(legacy).enumerate() {
        if kind.as_deref().is_some_and(|k| k != "function") {
            return Err(bad(format_args!(
                "tool call {index} is not a function call"
            )));
        }
        let block = tool_use(id, function, seed, index, &tool_uses)
            .map_err(|e| bad(format_args!("tool call {index}: {}", e.0)))?;
        tool_uses.push(block);
    }

    let stops: Vec<&str> = params
        .get("stop_sequences")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    let finish = choice
        .finish_reason
        .as_deref()
        .ok_or_else(|| bad("the choice has no `finish_reason`"))?;
    let (mut stop_reason, stop_sequence) = match finish {
        "stop" | "length" if tool_uses.is_empty() => {
            let reported = [&choice.stop_reason, &choice.matched_stop]
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find_map(|s| stops.iter().copied().find(|stop| *stop == s));
            match fired_stop(&text, &stops).or(reported.map(|s| (text.len(), s))) {
                Some((at, sequence)) => {
                    text.truncate(at);
                    ("stop_sequence", Some(sequence))
                }
                None if finish == "stop" => ("end_turn", None),
                None => ("max_tokens", None),
            }
        }
        // Some servers end a turn of tool calls with `stop`; the turn still ended to use tools.
        "stop" | "tool_calls" | "function_call" if !tool_uses.is_empty() => ("tool_use", None),
        "length" => ("max_tokens", None),
        "content_filter" => ("refusal", None),
        "tool_calls" | "function_call" => {
            return Err(bad(format_args!(
                "finish_reason `{finish}` without a tool call"
            )));
        }
        other => return Err(bad(format_args!("unknown finish_reason `{other}`"))),
    };
    if let Some(refusal) = message.refusal.filter(|r| !r.is_empty()) {
        stop_reason = "refusal";
        if text.is_empty() {
            text = refusal;
        }
    }

    let mut content = Vec::with_capacity(1 + tool_uses.len());
    if !text.is_empty() {
        content.push(Block::text(&text));
    }
    content.extend(tool_uses.into_iter().map(Block::ToolUse));

    // Anthropic counts cache reads apart from `input_tokens`; OpenAI counts them inside.
    let cached = usage
        .prompt_tokens_details
        .and_then(|d| d.cached_tokens)
        .unwrap_or(0)
        .min(usage.prompt_tokens);
    let id = format!("msg_{}", ids::deterministic_body(seed));
    let model = params
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let usage = Usage::batch(
        usage.prompt_tokens - cached,
        cached,
        usage.completion_tokens,
    );
    let message = Message::assistant(&id, model, content, (stop_reason, stop_sequence), usage);
    serde_json::to_string(&message).map_err(|e| bad(format_args!("serializing the Message: {e}")))
}

/// The assistant text: a string, or text parts (some servers answer with parts).
fn message_text(content: Option<&Value>) -> Result<String, BadUpstream> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (
                    part.get("type").and_then(Value::as_str),
                    part.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(bad(format_args!(
                            "a content part that is not text: {}",
                            snippet(&part.to_string())
                        )));
                    }
                }
            }
            Ok(text)
        }
        Some(other) => Err(bad(format_args!(
            "`content` is neither text nor parts: {}",
            snippet(&other.to_string())
        ))),
    }
}

/// Where a requested stop sequence ends the text, if one occurs in it: the upstream kept the
/// stop string, or did not honour `stop`; either way Anthropic would have stopped there. The
/// first to *complete* wins (generation stops as soon as one matches); ties go to the first
/// listed. Returns where to cut (the match's start) and the sequence.
fn fired_stop<'s>(text: &str, stops: &[&'s str]) -> Option<(usize, &'s str)> {
    let mut best: Option<(usize, usize, &str)> = None;
    for &stop in stops {
        if let Some(at) = text.find(stop) {
            let end = at + stop.len();
            if best.is_none_or(|(best_end, _, _)| end < best_end) {
                best = Some((end, at, stop));
            }
        }
    }
    best.map(|(_, at, stop)| (at, stop))
}

fn tool_use(
    id: Option<String>,
    function: FunctionCall,
    seed: u64,
    index: usize,
    earlier: &[ToolUseBlock],
) -> Result<ToolUseBlock, BadUpstream> {
    let name = function
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("no function name"))?;
    // OpenAI sends the arguments as a JSON string; some servers send the object itself.
    let arguments = match &function.arguments {
        None => String::new(),
        Some(raw) if raw.get().starts_with('"') => serde_json::from_str::<String>(raw.get())
            .map_err(|e| bad(format_args!("arguments: {e}")))?,
        Some(raw) => raw.get().to_owned(),
    };
    let input = if arguments.trim().is_empty() {
        // No-argument calls come back as `""` from some servers.
        RawValue::from_string("{}".to_owned())
    } else {
        let parsed = serde_json::from_str::<&RawValue>(&arguments).map_err(|e| {
            bad(format_args!(
                "arguments are not JSON ({e}): {}",
                snippet(&arguments)
            ))
        })?;
        if !parsed.get().starts_with('{') {
            return Err(bad(format_args!(
                "arguments are not a JSON object: {}",
                snippet(&arguments)
            )));
        }
        RawValue::from_string(compact(parsed.get()))
    }
    .map_err(|e| bad(format_args!("arguments: {e}")))?;
    // Kept when Anthropic would accept it back as a `tool_use_id` (so the upstream sees its own
    // id on the next turn); otherwise one derived from the answer, stable across replays.
    let id = match id {
        Some(id) if usable_tool_id(&id) && earlier.iter().all(|b| b.id != id) => id,
        _ => format!(
            "toolu_{}",
            ids::deterministic_body(ids::fnv1a(seed, &(index as u64).to_le_bytes()))
        ),
    };
    Ok(ToolUseBlock::new(id, name, input))
}

/// Anthropic's `tool_use_id` pattern, `^[a-zA-Z0-9_-]+$`.
fn usable_tool_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Valid JSON without the whitespace between tokens, so the Message stays compact while the
/// model's key order is kept (a `Value` would sort the keys).
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

// ---- Message → Chat Completions response (`anthropic` backends on the OpenAI surface) -------

/// A Message's `stop_reason` → the `finish_reason` that says the same: the inverse of how
/// [`message_from_chat`] reads `finish_reason` (a fired stop sequence is a plain `stop` there).
/// A stop reason missing here has no Chat Completions counterpart, and its answer is refused.
const FINISH_REASONS: &[(&str, &str)] = &[
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("max_tokens", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
];

#[derive(Deserialize)]
struct AnthropicMessage {
    content: Vec<AnthropicBlock>,
    stop_reason: Option<String>,
    usage: AnthropicUsage,
}

#[derive(Deserialize)]
struct AnthropicBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
struct AnthropicUsage {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

/// An Anthropic Message (the upstream's answer to [`super::from_chat`]'s params) → the
/// `chat.completion` object, compact, in the hosted API's key order. `model` is the one the
/// line asked for (as [`message_from_chat`] keeps the requested model); `created` the unix
/// second to report. Only text comes back: the request could ask for nothing else.
pub fn chat_completion_from_message(
    message: &[u8],
    model: &str,
    created: u64,
) -> Result<String, BadUpstream> {
    use crate::message::{
        ChatChoice, ChatCompletion, ChatMessage, ChatUsage, CompletionDetails, PromptDetails,
    };
    let seed = ids::fnv1a(ids::FNV_OFFSET, message);
    let message: AnthropicMessage =
        serde_json::from_slice(message).map_err(|e| bad(format_args!("not a Message: {e}")))?;
    let mut text = String::new();
    for (i, block) in message.content.iter().enumerate() {
        match (block.kind.as_str(), &block.text) {
            ("text", Some(t)) => text.push_str(t),
            (kind, _) => {
                return Err(bad(format_args!(
                    "content[{i}]: a `{kind}` block has no Chat Completions counterpart"
                )));
            }
        }
    }
    let stop_reason = message
        .stop_reason
        .as_deref()
        .ok_or_else(|| bad("the Message has no `stop_reason`"))?;
    let finish_reason = FINISH_REASONS
        .iter()
        .find(|(stop, _)| *stop == stop_reason)
        .map(|&(_, finish)| finish)
        .ok_or_else(|| {
            bad(format_args!(
                "stop_reason `{stop_reason}` has no finish_reason"
            ))
        })?;
    // OpenAI counts cached and cache-written prompt tokens inside `prompt_tokens`.
    let usage = &message.usage;
    let cached = usage.cache_read_input_tokens.unwrap_or(0);
    let prompt_tokens =
        usage.input_tokens + cached + usage.cache_creation_input_tokens.unwrap_or(0);
    let completion = ChatCompletion {
        id: format!("chatcmpl-{}", ids::deterministic_body(seed)),
        object: "chat.completion",
        created,
        model,
        choices: vec![ChatChoice {
            index: 0,
            message: ChatMessage {
                role: "assistant",
                content: &text,
                refusal: None,
                annotations: &[],
            },
            logprobs: None,
            finish_reason,
        }],
        usage: ChatUsage {
            prompt_tokens,
            completion_tokens: usage.output_tokens,
            total_tokens: prompt_tokens + usage.output_tokens,
            prompt_tokens_details: PromptDetails {
                cached_tokens: cached,
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
        system_fingerprint: None,
    };
    serde_json::to_string(&completion)
        .map_err(|e| bad(format_args!("serializing the chat completion: {e}")))
}

#[cfg(test)]
mod tests {
    //! Edge cases; the common paths are in the golden files.

    use super::*;

    fn params(raw: &str) -> Map<String, Value> {
        serde_json::from_str(raw).unwrap()
    }

    /// A minimal valid request with `extra` merged in.
    fn ask(extra: &str) -> Map<String, Value> {
        let mut base =
            params(r#"{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"Hi"}]}"#);
        base.extend(params(extra));
        base
    }

    fn request(extra: &str) -> Value {
        chat_request(&ask(extra), &ChatOptions::default()).unwrap()
    }

    fn refusal(extra: &str) -> String {
        chat_request(&ask(extra), &ChatOptions::default())
            .unwrap_err()
            .0
    }

    /// A Chat Completions answer with `choice` as its only choice.
    fn answer(choice: &str) -> String {
        format!(
            r#"{{"id":"chatcmpl-1","choices":[{choice}],"usage":{{"prompt_tokens":7,"completion_tokens":3}}}}"#
        )
    }

    fn message(body: &str, extra: &str) -> Value {
        serde_json::from_str(&message_from_chat(body.as_bytes(), &ask(extra)).unwrap()).unwrap()
    }

    fn complaint(body: &str) -> String {
        message_from_chat(body.as_bytes(), &ask("{}"))
            .unwrap_err()
            .0
    }

    fn keys_in_order(json: &str) -> Vec<String> {
        // Every `"key":` outside strings' contents, in document order.
        let mut keys = Vec::new();
        let mut rest = json;
        while let Some(at) = rest.find("\":") {
            let start = rest[..at].rfind('"').unwrap();
            keys.push(rest[start + 1..at].to_owned());
            rest = &rest[at + 2..];
        }
        keys
    }

    #[test]
    fn message_fields_come_in_the_real_apis_order() {
        // A succeeded row's Message as captured from api.anthropic.com.
        let captured = r#"{"id":"msg_x","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[{"type":"text","text":"1"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":16,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":5,"service_tier":"batch","inference_geo":"not_available"}}"#;
        let ours = message_from_chat(
            answer(r#"{"message":{"content":"1"},"finish_reason":"stop"}"#).as_bytes(),
            &ask("{}"),
        )
        .unwrap();
        assert_eq!(keys_in_order(&ours), keys_in_order(captured));
    }

    #[test]
    fn null_means_not_given() {
        let with_nulls = request(
            r#"{"system":null,"temperature":null,"top_k":null,"tools":null,"tool_choice":null,
                "metadata":null,"thinking":null,"output_config":null,"container":null,"stop_sequences":null}"#,
        );
        assert_eq!(with_nulls, request("{}"));
    }

    #[test]
    fn always_one_non_streamed_choice_and_no_empty_stop() {
        let body = request(r#"{"stop_sequences":[],"stream":false}"#);
        assert_eq!(body["stream"], false);
        assert_eq!(body["n"], 1);
        assert_eq!(body["max_tokens"], 16);
        assert!(body.get("stop").is_none());
        assert!(body.get("max_completion_tokens").is_none());
    }

    #[test]
    fn fields_without_an_equivalent_are_refused_by_path() {
        assert_eq!(
            refusal(r#"{"context_management":{"edits":[]}}"#),
            "context_management: this field is not supported by this backend (openai)"
        );
        assert_eq!(
            refusal(r#"{"thinking":{"type":"adaptive"}}"#),
            "thinking.type: extended thinking (`adaptive`) is not supported by this backend (openai)"
        );
        assert_eq!(
            refusal(r#"{"tools":[{"type":"bash_20250124","name":"bash"}]}"#),
            "tools.0.type: bash_20250124 tools are not supported by this backend (openai)"
        );
        assert_eq!(
            refusal(r#"{"tools":[{"name":"t","input_schema":{},"defer_loading":true}]}"#),
            "tools.0.defer_loading: this field is not supported by this backend (openai)"
        );
        assert_eq!(
            refusal(
                r#"{"messages":[{"role":"user","content":[{"type":"search_result","source":"s","title":"t","content":[]}]}]}"#
            ),
            "messages.0.content.0.type: search_result blocks are not supported by this backend (openai)"
        );
        assert_eq!(
            refusal(
                r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"image","source":{"type":"url","url":"u"}}]},{"role":"user","content":"b"}]}"#
            ),
            "messages.1.content.0.type: image blocks are not supported by this backend (openai)"
        );
        assert_eq!(
            refusal(r#"{"output_config":{"format":{"type":"regex","pattern":"a+"}}}"#),
            "output_config.format.type: regex output formats are not supported by this backend (openai)"
        );
    }

    #[test]
    fn malformed_parts_validation_does_not_check_are_reported_like_the_api() {
        assert_eq!(
            refusal(r#"{"tool_choice":{"type":"sometimes"}}"#),
            "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"
        );
        assert_eq!(
            refusal(r#"{"tool_choice":{"type":"tool"}}"#),
            "tool_choice.name: Field required"
        );
        assert_eq!(
            refusal(
                r#"{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"x"}}]}]}"#
            ),
            "messages.0.content.0.source.media_type: Field required"
        );
        assert_eq!(
            refusal(r#"{"tools":[{"name":"t"}]}"#),
            "tools.0.input_schema: Field required"
        );
        // Top-level paths have no leading dot.
        let mut no_model = ask("{}");
        no_model.remove("model");
        assert_eq!(
            chat_request(&no_model, &ChatOptions::default())
                .unwrap_err()
                .0,
            "model: Field required"
        );
    }

    #[test]
    fn harmless_hints_are_dropped_and_known_equivalents_kept() {
        let body = request(
            r#"{"service_tier":"standard_only","cache_control":{"type":"ephemeral"},"user_profile_id":"p",
                "output_config":{"effort":"high"},"inference_geo":null,
                "tools":[{"type":"custom","name":"t","input_schema":{"type":"object"},"strict":true}]}"#,
        );
        assert_eq!(
            body["tools"],
            json!([{"type":"function","function":{"name":"t","parameters":{"type":"object"},"strict":true}}])
        );
        for dropped in [
            "service_tier",
            "cache_control",
            "user_profile_id",
            "response_format",
        ] {
            assert!(body.get(dropped).is_none(), "{dropped}");
        }
    }

    #[test]
    fn user_blocks_keep_their_order_around_tool_results() {
        let body = request(
            r#"{"messages":[{"role":"user","content":[
                {"type":"text","text":"before"},
                {"type":"tool_result","tool_use_id":"t1","content":"r1"},
                {"type":"text","text":"after"}]}]}"#,
        );
        assert_eq!(
            body["messages"],
            json!([
                {"role":"user","content":"before"},
                {"role":"tool","tool_call_id":"t1","content":"r1"},
                {"role":"user","content":"after"},
            ])
        );
    }

    #[test]
    fn an_empty_error_result_still_says_error() {
        let body = request(
            r#"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","is_error":true}]}]}"#,
        );
        assert_eq!(body["messages"][0]["content"], "Error");
    }

    #[test]
    fn tool_use_inputs_become_argument_strings() {
        let body = request(
            r#"{"messages":[{"role":"user","content":"a"},
                {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":{"q":"x y"}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"ok"}]}]}"#,
        );
        let call = &body["messages"][1]["tool_calls"][0];
        assert_eq!(call["function"]["arguments"], r#"{"q":"x y"}"#);
        assert_eq!(body["messages"][1]["content"], Value::Null);
    }

    #[test]
    fn top_k_goes_through_only_when_the_upstream_takes_it() {
        let params = ask(r#"{"top_k":5}"#);
        let body = chat_request(&params, &ChatOptions { top_k: true }).unwrap();
        assert_eq!(body["top_k"], 5);
        assert!(chat_request(&params, &ChatOptions::default()).is_err());
    }

    #[test]
    fn ids_are_deterministic_and_shaped_like_the_real_ones() {
        let body = answer(r#"{"message":{"content":"hi"},"finish_reason":"stop"}"#);
        let first = message(&body, "{}");
        assert_eq!(first, message(&body, "{}"));
        let id = first["id"].as_str().unwrap();
        assert!(id.starts_with("msg_01") && id.len() == 4 + 24, "{id}");
        // Same upstream id, different answer (Ollama reuses ids): a different Message id.
        let other = answer(r#"{"message":{"content":"ho"},"finish_reason":"stop"}"#);
        assert_ne!(message(&other, "{}")["id"], first["id"]);
        assert_eq!(first["model"], "m");
    }

    #[test]
    fn unusable_or_repeated_tool_call_ids_are_replaced() {
        let body = answer(
            r#"{"message":{"content":null,"tool_calls":[
                {"id":"call_0","type":"function","function":{"name":"f","arguments":"{}"}},
                {"id":"call_0","type":"function","function":{"name":"g","arguments":"{}"}},
                {"id":"","type":"function","function":{"name":"h","arguments":"{}"}},
                {"function":{"name":"i","arguments":"{}"}}]},"finish_reason":"tool_calls"}"#,
        );
        let message = message(&body, "{}");
        let ids: Vec<&str> = message["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids[0], "call_0");
        for id in &ids[1..] {
            assert!(id.starts_with("toolu_01") && id.len() == 6 + 24, "{id}");
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 4, "{ids:?}");
    }

    #[test]
    fn tool_id_pattern() {
        assert!(usable_tool_id("chatcmpl-tool-8f2c_A"));
        for bad in ["", "functions.f:0", "call 1", "é"] {
            assert!(!usable_tool_id(bad), "{bad}");
        }
    }

    #[test]
    fn arguments_keep_key_order_and_lose_only_insignificant_whitespace() {
        let body = answer(
            r#"{"message":{"tool_calls":[{"id":"c","type":"function","function":{"name":"f",
                "arguments":"{ \"z\" : \"a \\\" b\" ,\n \"a\": [1, 2] }"}}]},"finish_reason":"tool_calls"}"#,
        );
        let text = message_from_chat(body.as_bytes(), &ask("{}")).unwrap();
        assert!(
            text.contains(r#""input":{"z":"a \" b","a":[1,2]}"#),
            "{text}"
        );
    }

    #[test]
    fn legacy_function_call_is_a_tool_use() {
        let body = answer(
            r#"{"message":{"content":null,"function_call":{"name":"f","arguments":"{\"x\":1}"}},"finish_reason":"function_call"}"#,
        );
        let message = message(&body, "{}");
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(message["content"][0]["name"], "f");
        assert_eq!(message["content"][0]["input"], json!({"x":1}));
    }

    #[test]
    fn the_first_stop_sequence_to_complete_wins() {
        assert_eq!(
            fired_stop("abcdef", &["cdef", "bcd", "de"]),
            Some((1, "bcd"))
        );
        assert_eq!(fired_stop("abcdef", &["de", "bcde"]), Some((3, "de")));
        assert_eq!(fired_stop("abc", &["x"]), None);
        // A reported stop string the client did not ask for is not a stop sequence.
        let body =
            answer(r#"{"message":{"content":"hi"},"finish_reason":"stop","stop_reason":"</s>"}"#);
        let message = message(&body, r#"{"stop_sequences":["END"]}"#);
        assert_eq!(message["stop_reason"], "end_turn");
        assert_eq!(message["stop_sequence"], Value::Null);
    }

    #[test]
    fn text_parts_in_the_answer_are_joined() {
        let body = answer(
            r#"{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},"finish_reason":"stop"}"#,
        );
        assert_eq!(
            message(&body, "{}")["content"],
            json!([{"type":"text","text":"ab"}])
        );
    }

    #[test]
    fn cached_tokens_never_exceed_the_prompt() {
        let body = r#"{"choices":[{"message":{"content":"x"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":9}}}"#;
        let usage = &message(body, "{}")["usage"];
        assert_eq!(usage["input_tokens"], 0);
        assert_eq!(usage["cache_read_input_tokens"], 5);
    }

    #[test]
    fn unusable_answers_are_named() {
        assert!(complaint("not json").starts_with("not a Chat Completions response"));
        assert_eq!(complaint(r#"{"choices":[]}"#), "`choices` is empty");
        assert_eq!(
            complaint(r#"{"choices":[{"message":{"content":"x"},"finish_reason":"stop"}]}"#),
            "no `usage`"
        );
        assert_eq!(
            complaint(&answer(
                r#"{"message":{"content":"x"},"finish_reason":null}"#
            )),
            "the choice has no `finish_reason`"
        );
        assert_eq!(
            complaint(&answer(
                r#"{"message":{"content":"x"},"finish_reason":"abort"}"#
            )),
            "unknown finish_reason `abort`"
        );
        assert_eq!(
            complaint(&answer(
                r#"{"message":{"content":"x"},"finish_reason":"tool_calls"}"#
            )),
            "finish_reason `tool_calls` without a tool call"
        );
        assert_eq!(
            complaint(&answer(
                r#"{"message":{"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]},"finish_reason":"tool_calls"}"#
            )),
            "tool call 0: arguments are not a JSON object: [1]"
        );
        assert_eq!(
            complaint(&answer(
                r#"{"message":{"tool_calls":[{"id":"c","type":"function","function":{"arguments":"{}"}}]},"finish_reason":"tool_calls"}"#
            )),
            "tool call 0: no function name"
        );
        let long = "x".repeat(500);
        let quoted = complaint(&format!(r#"{{"error":{{"message":"{long}"}}}}"#));
        assert!(quoted.ends_with('…') && quoted.len() < 300, "{quoted}");
    }

    #[test]
    fn a_message_becomes_a_chat_completion() {
        let message = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hel"},{"type":"text","text":"lo"}],"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":7,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,"output_tokens":4,"service_tier":"batch"}}"#;
        let out = chat_completion_from_message(message, "claude-asked", 1_700_000_000).unwrap();
        let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(id.starts_with("chatcmpl-"), "{id}");
        assert_eq!(
            out,
            format!(
                r#"{{"id":"{id}","object":"chat.completion","created":1700000000,"model":"claude-asked","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"length"}}],"usage":{{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16,"prompt_tokens_details":{{"cached_tokens":3,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"service_tier":"default","system_fingerprint":null}}"#
            )
        );
        // The same Message gives the same bytes.
        assert_eq!(
            chat_completion_from_message(message, "claude-asked", 1_700_000_000).unwrap(),
            out
        );
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("refusal", "content_filter"),
        ] {
            let m = format!(
                r#"{{"content":[],"stop_reason":"{stop}","usage":{{"input_tokens":1,"output_tokens":0}}}}"#
            );
            let out: Value =
                serde_json::from_str(&chat_completion_from_message(m.as_bytes(), "m", 0).unwrap())
                    .unwrap();
            assert_eq!(out["choices"][0]["finish_reason"], finish, "{stop}");
        }
    }

    #[test]
    fn a_message_without_a_chat_counterpart_is_refused() {
        for message in [
            &br#"{"content":[{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}"#[..],
            br#"{"content":[],"stop_reason":"pause_turn","usage":{"input_tokens":1,"output_tokens":1}}"#,
            br#"{"content":[],"usage":{"input_tokens":1,"output_tokens":1}}"#,
            br#"{"type":"error"}"#,
        ] {
            assert!(
                chat_completion_from_message(message, "m", 0).is_err(),
                "{}",
                String::from_utf8_lossy(message)
            );
        }
    }
}
