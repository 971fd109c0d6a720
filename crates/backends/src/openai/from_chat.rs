//! Converts the `body` of an OpenAI Batch API line (`POST /v1/chat/completions`) into Messages
//! API `params`: used by `anthropic`-kind backends serving the OpenAI surface, and by the
//! `batchd batches create` CLI to put OpenAI lines on the Message Batches API.
//!
//! The conversion is deliberately narrow: it maps only what has an exact counterpart and refuses
//! everything else, so a converted batch never silently asks for something different.
//!
//! | Chat Completions | Messages |
//! |---|---|
//! | `model` | `model` (kept verbatim) |
//! | `system` / `developer` messages before the conversation | `system`, their texts joined with a blank line |
//! | `user` / `assistant` messages with string content | the same message |
//! | … with an array of `text` parts | the same message with `text` content blocks |
//! | `max_tokens` or `max_completion_tokens` | `max_tokens` (default 1024) |
//! | `temperature` (0–1), `top_p` | the same |
//! | `stop` (string or list) | `stop_sequences` |
//! | `user` | `metadata.user_id` |
//!
//! Keys set to `null`, `n: 1`, `stream: false`, `logprobs: false` and zero penalties ask for the
//! default behaviour and are accepted. Anything else — tools and function calling, images, audio
//! or file parts, `n > 1`, `response_format`, `seed`, `logit_bias`, non-zero penalties,
//! `temperature` above 1, `name` on a message, system messages in the middle of a conversation,
//! `tool`/`function` roles, … — is an error naming what could not be expressed.

use serde::Serialize;
use serde_json::{Number, Value};

/// `max_tokens` when the OpenAI body sets neither `max_tokens` nor `max_completion_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

/// Messages API `params`, serialised in a fixed key order.
#[derive(Debug, Serialize)]
pub struct MessagesParams {
    model: String,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata>,
}

#[derive(Debug, Serialize)]
struct Message {
    role: &'static str,
    content: Content,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<TextBlock>),
}

#[derive(Debug, Serialize)]
struct TextBlock {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
}

#[derive(Debug, Serialize)]
struct Metadata {
    user_id: String,
}

/// Converts a Chat Completions request body; the error says what cannot be expressed.
pub fn convert(body: &Value) -> Result<MessagesParams, String> {
    let body = body
        .as_object()
        .ok_or("`body` must be a JSON object (a Chat Completions request)")?;

    let mut model = None;
    let mut messages = None;
    let mut max_tokens = None;
    let mut max_completion_tokens = None;
    let mut temperature = None;
    let mut top_p = None;
    let mut stop_sequences = None;
    let mut metadata = None;

    for (key, value) in body {
        if value.is_null() {
            continue; // `null` is OpenAI's "not set"
        }
        match key.as_str() {
            "model" => model = Some(string(value, "model")?),
            "messages" => messages = Some(value),
            "max_tokens" => max_tokens = Some(positive(value, key)?),
            "max_completion_tokens" => max_completion_tokens = Some(positive(value, key)?),
            "temperature" => {
                let t = number(value, key)?;
                if !t.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)) {
                    return Err(format!(
                        "`temperature` {t} is outside the Messages API's range 0 to 1"
                    ));
                }
                temperature = Some(t);
            }
            "top_p" => top_p = Some(number(value, key)?),
            "stop" => stop_sequences = stop(value)?,
            "user" => {
                metadata = Some(Metadata {
                    user_id: string(value, "user")?,
                })
            }
            "n" if value.as_u64() == Some(1) => {}
            "n" => {
                return Err(format!(
                    "`n` = {value}: the Messages API returns one completion per request"
                ));
            }
            "stream" if value == &Value::Bool(false) => {}
            "stream" => return Err("`stream: true` is not allowed in a batch".into()),
            "logprobs" if value == &Value::Bool(false) => {}
            "presence_penalty" | "frequency_penalty" if value.as_f64() == Some(0.0) => {}
            "tools" | "tool_choice" | "functions" | "function_call" | "parallel_tool_calls" => {
                return Err(format!(
                    "`{key}`: tool and function calling cannot be converted to the Messages API"
                ));
            }
            _ => {
                return Err(format!(
                    "`{key}` has no exact equivalent in the Messages API and cannot be converted"
                ));
            }
        }
    }

    let model = model.ok_or("`model` is required")?;
    let messages = messages.ok_or("`messages` is required")?;
    let (system, messages) = convert_messages(messages)?;
    let max_tokens = match (max_tokens, max_completion_tokens) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "`max_tokens` ({a}) and `max_completion_tokens` ({b}) disagree"
            ));
        }
        (a, b) => a.or(b).unwrap_or(DEFAULT_MAX_TOKENS),
    };
    Ok(MessagesParams {
        model,
        max_tokens,
        system,
        messages,
        stop_sequences,
        temperature,
        top_p,
        metadata,
    })
}

fn convert_messages(messages: &Value) -> Result<(Option<String>, Vec<Message>), String> {
    let list = messages.as_array().ok_or("`messages` must be an array")?;
    let mut system = Vec::new();
    let mut out = Vec::new();
    for (i, message) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let obj = message
            .as_object()
            .ok_or_else(|| format!("{at} must be an object"))?;
        for (key, value) in obj {
            match key.as_str() {
                "role" | "content" => {}
                _ if value.is_null() => {}
                "name" => {
                    return Err(format!(
                        "{at}.name: participant names cannot be expressed in the Messages API"
                    ));
                }
                "tool_calls" | "function_call" => {
                    return Err(format!(
                        "{at}.{key}: tool and function calling cannot be converted to the Messages API"
                    ));
                }
                _ => {
                    return Err(format!(
                        "{at}.{key} has no equivalent in the Messages API and cannot be converted"
                    ));
                }
            }
        }
        let role = obj
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{at}.role must be a string"))?;
        let content = obj.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                if !out.is_empty() {
                    return Err(format!(
                        "{at}: a `{role}` message after the conversation has started cannot be \
                         expressed (the Messages API has a single top-level system prompt)"
                    ));
                }
                match content {
                    Value::String(s) => system.push(s.clone()),
                    Value::Array(_) => {
                        system.extend(text_parts(content, &at)?.into_iter().map(|b| b.text));
                    }
                    _ => return Err(format!("{at}.content must be a string or text parts")),
                }
            }
            "user" | "assistant" => {
                let role = if role == "user" { "user" } else { "assistant" };
                let content = match content {
                    Value::String(s) => Content::Text(s.clone()),
                    Value::Array(_) => Content::Blocks(text_parts(content, &at)?),
                    Value::Null => {
                        return Err(format!(
                            "{at}: a message without content (e.g. a tool call) cannot be converted"
                        ));
                    }
                    _ => return Err(format!("{at}.content must be a string or text parts")),
                };
                out.push(Message { role, content });
            }
            other => {
                return Err(format!(
                    "{at}: role `{other}` cannot be converted (only system, developer, user and \
                     assistant text messages can)"
                ));
            }
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    Ok((system, out))
}

/// An array of `{"type":"text","text":…}` parts; any other part type is refused.
fn text_parts(content: &Value, at: &str) -> Result<Vec<TextBlock>, String> {
    let parts = content.as_array().expect("checked by the caller");
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        let obj = part
            .as_object()
            .ok_or_else(|| format!("{here} must be an object"))?;
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "text" {
            return Err(format!(
                "{here}: `{kind}` parts cannot be converted (only text parts can)"
            ));
        }
        if let Some((key, _)) = obj
            .iter()
            .find(|(k, v)| !matches!(k.as_str(), "type" | "text") && !v.is_null())
        {
            return Err(format!("{here}.{key} cannot be converted"));
        }
        let text = obj
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{here}.text must be a string"))?;
        out.push(TextBlock {
            kind: "text",
            text: text.to_owned(),
        });
    }
    Ok(out)
}

fn stop(value: &Value) -> Result<Option<Vec<String>>, String> {
    match value {
        Value::String(s) => Ok(Some(vec![s.clone()])),
        Value::Array(items) => {
            let stops = items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or("`stop` must be a string or a list of strings")
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((!stops.is_empty()).then_some(stops))
        }
        _ => Err("`stop` must be a string or a list of strings".into()),
    }
}

fn string(value: &Value, key: &str) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("`{key}` must be a string"))
}

fn number(value: &Value, key: &str) -> Result<Number, String> {
    match value {
        Value::Number(n) => Ok(n.clone()),
        _ => Err(format!("`{key}` must be a number")),
    }
}

fn positive(value: &Value, key: &str) -> Result<u64, String> {
    value
        .as_u64()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("`{key}` must be a positive integer"))
}

/// Converts to the exact JSON `params`, for tests and callers that want text.
#[cfg(test)]
fn convert_to_string(body: &str) -> Result<String, String> {
    let body: Value = serde_json::from_str(body).unwrap();
    convert(&body).map(|p| serde_json::to_string(&p).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden cases: an OpenAI body → the exact Messages params.
    #[test]
    fn golden_conversions() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hello"}]}"#,
                r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello"}]}"#,
            ),
            (
                r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":[{"type":"text","text":"Use French."}]},{"role":"user","content":"Hi"},{"role":"assistant","content":"Salut"},{"role":"user","content":[{"type":"text","text":"Again"},{"type":"text","text":"please"}]}],"max_tokens":50,"temperature":0.7,"top_p":0.9,"stop":"END"}"#,
                r#"{"model":"m","max_tokens":50,"system":"Be brief.\n\nUse French.","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Salut"},{"role":"user","content":[{"type":"text","text":"Again"},{"type":"text","text":"please"}]}],"stop_sequences":["END"],"temperature":0.7,"top_p":0.9}"#,
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x","name":null}],"max_completion_tokens":7,"stop":["a","b"],"n":1,"stream":false,"user":"u-1","presence_penalty":0,"frequency_penalty":0.0,"logprobs":false,"tools":null,"temperature":0}"#,
                r#"{"model":"m","max_tokens":7,"messages":[{"role":"user","content":"x"}],"stop_sequences":["a","b"],"temperature":0,"metadata":{"user_id":"u-1"}}"#,
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":9,"max_completion_tokens":9,"stop":[]}"#,
                r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"x"}]}"#,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(convert_to_string(input).as_deref(), Ok(*want), "{input}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_express() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#,
                "`tools`",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x/y.png"}}]}]}"#,
                "messages[0].content[0]: `image_url` parts",
            ),
            (r#"{"model":"m","messages":[],"n":2}"#, "`n` = 2"),
            (
                r#"{"model":"m","messages":[],"response_format":{"type":"json_object"}}"#,
                "`response_format`",
            ),
            (r#"{"model":"m","messages":[],"seed":1}"#, "`seed`"),
            (
                r#"{"model":"m","messages":[],"stream":true}"#,
                "`stream: true`",
            ),
            (
                r#"{"model":"m","messages":[],"temperature":1.5}"#,
                "`temperature` 1.5",
            ),
            (
                r#"{"model":"m","messages":[],"presence_penalty":0.5}"#,
                "`presence_penalty`",
            ),
            (
                r#"{"model":"m","messages":[],"max_tokens":0}"#,
                "`max_tokens`",
            ),
            (
                r#"{"model":"m","messages":[],"max_tokens":5,"max_completion_tokens":6}"#,
                "disagree",
            ),
            (r#"{"messages":[]}"#, "`model` is required"),
            (r#"{"model":"m"}"#, "`messages` is required"),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"system","content":"late"}]}"#,
                "messages[1]: a `system` message after the conversation",
            ),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"r","tool_call_id":"c"}]}"#,
                "messages[0].tool_call_id",
            ),
            (
                r#"{"model":"m","messages":[{"role":"function","content":"r"}]}"#,
                "role `function`",
            ),
            (
                r#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[]}]}"#,
                "messages[0].tool_calls",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x","name":"bob"}]}"#,
                "messages[0].name",
            ),
            (r#"[1]"#, "must be a JSON object"),
        ];
        for (input, needle) in cases {
            let err = convert_to_string(input).expect_err(input);
            assert!(err.contains(needle), "{input}: {err}");
        }
    }
}
