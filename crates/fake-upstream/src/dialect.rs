//! The two wire dialects: parsing just enough of a request to answer it (model and the last
//! user turn, borrowed from the body), and the success and error bodies each one returns.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Which API a request came in on; decides the shape of every body, errors included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /v1/chat/completions`.
    OpenAi,
}

/// Words of the last user turn echoed back by default: enough to check which request an answer
/// belongs to, small enough that answers stay cheap.
pub const ECHO_WORDS: usize = 8;

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(borrow)]
    messages: Vec<Turn<'a>>,
}

#[derive(Deserialize)]
struct Turn<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    // Raw, so only the one turn that gets echoed is parsed further.
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// What an answer needs from the request.
pub struct Parsed<'a> {
    pub model: Cow<'a, str>,
    pub echo: String,
}

/// Parses the parts of a request body both dialects share (`model`, `messages[].role`,
/// `messages[].content` as a string or an array of blocks with `text`), and builds the echo:
/// the first [`ECHO_WORDS`] words of the last user turn, or exactly `words` words (cycling the
/// turn when it is shorter) so a benchmark can ask for answers as large as real ones.
pub fn parse(body: &[u8], words: Option<usize>) -> Result<Parsed<'_>, String> {
    let request: Request<'_> =
        serde_json::from_slice(body).map_err(|e| format!("could not parse request body: {e}"))?;
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|turn| turn.role == "user")
        .and_then(|turn| turn.content);
    let text: Cow<'_, str> = match last_user {
        None => Cow::Borrowed(""),
        Some(raw) => {
            let raw = raw.get();
            if raw.starts_with('"') {
                serde_json::from_str::<Cow<'_, str>>(raw).map_err(|e| e.to_string())?
            } else if raw.starts_with('[') {
                let blocks: Vec<Block<'_>> =
                    serde_json::from_str(raw).map_err(|e| e.to_string())?;
                blocks
                    .into_iter()
                    .find_map(|b| b.text)
                    .unwrap_or(Cow::Borrowed(""))
            } else {
                Cow::Borrowed("")
            }
        }
    };
    let mut echo = String::with_capacity(64);
    let all = text.split_whitespace();
    let chosen: Box<dyn Iterator<Item = &str>> = match words {
        None => Box::new(all.take(ECHO_WORDS)),
        Some(n) => Box::new(all.cycle().take(n)),
    };
    for word in chosen {
        if !echo.is_empty() {
            echo.push(' ');
        }
        echo.push_str(word);
    }
    if echo.is_empty() {
        echo.push_str("ok");
    }
    Ok(Parsed {
        model: request.model,
        echo,
    })
}

/// A deterministic token estimate: a quarter of the body's bytes, at least one.
pub fn input_tokens(body: &[u8]) -> u64 {
    (body.len() as u64 / 4).max(1)
}

/// Output tokens: one per echoed word.
pub fn output_tokens(echo: &str) -> u64 {
    echo.split(' ').count() as u64
}

#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [TextBlock<'a>; 1],
    stop_reason: &'static str,
    stop_sequence: Option<()>,
    usage: Usage,
}

#[derive(Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: ChatUsage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: ChatMessage<'a>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// The 200 body for a parsed request. `seq` makes ids unique; `created` is the Unix time.
pub fn success(
    dialect: Dialect,
    parsed: &Parsed<'_>,
    body: &[u8],
    seq: u64,
    created: u64,
) -> Vec<u8> {
    let input = input_tokens(body);
    let output = output_tokens(&parsed.echo);
    match dialect {
        Dialect::Anthropic => {
            let id = format!("msg_fake_{seq:08}");
            serde_json::to_vec(&Message {
                id: &id,
                kind: "message",
                role: "assistant",
                model: &parsed.model,
                content: [TextBlock {
                    kind: "text",
                    text: &parsed.echo,
                }],
                stop_reason: "end_turn",
                stop_sequence: None,
                usage: Usage {
                    input_tokens: input,
                    output_tokens: output,
                },
            })
        }
        Dialect::OpenAi => {
            let id = format!("chatcmpl-fake{seq:08}");
            serde_json::to_vec(&ChatCompletion {
                id: &id,
                object: "chat.completion",
                created,
                model: &parsed.model,
                choices: [Choice {
                    index: 0,
                    message: ChatMessage {
                        role: "assistant",
                        content: &parsed.echo,
                    },
                    finish_reason: "stop",
                }],
                usage: ChatUsage {
                    prompt_tokens: input,
                    completion_tokens: output,
                    total_tokens: input + output,
                },
            })
        }
    }
    .expect("serializing plain structs cannot fail")
}

/// The error type name each dialect uses for a status.
pub fn error_type(dialect: Dialect, status: u16) -> &'static str {
    match dialect {
        Dialect::Anthropic => match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            504 => "timeout_error",
            529 => "overloaded_error",
            _ => "api_error",
        },
        Dialect::OpenAi => match status {
            400 | 413 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            _ => "server_error",
        },
    }
}

/// A default message per status, as the real APIs phrase them.
pub fn default_message(status: u16) -> &'static str {
    match status {
        400 => "Invalid request.",
        404 => "Not found.",
        429 => "Rate limit exceeded.",
        500 => "Internal server error.",
        502 => "Bad gateway.",
        503 => "Service unavailable.",
        504 => "Request timed out.",
        529 => "Overloaded",
        _ => "Error.",
    }
}

/// The error body: Anthropic's envelope or OpenAI's.
pub fn error(dialect: Dialect, status: u16, message: &str) -> Vec<u8> {
    let kind = error_type(dialect, status);
    let value = match dialect {
        Dialect::Anthropic => serde_json::json!({
            "type": "error",
            "error": {"type": kind, "message": message},
        }),
        Dialect::OpenAi => serde_json::json!({
            "error": {"message": message, "type": kind, "param": null, "code": null},
        }),
    };
    serde_json::to_vec(&value).expect("serializing a Value cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_the_last_user_turn_in_both_content_forms() {
        let body = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"one two"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"a b c d e f g h i j"}]}]}"#;
        let p = parse(body, None).unwrap();
        assert_eq!(
            parse(body, Some(12)).unwrap().echo,
            "a b c d e f g h i j a b"
        );
        assert_eq!(p.model, "m");
        assert_eq!(p.echo, "a b c d e f g h");
        let v: serde_json::Value =
            serde_json::from_slice(&success(Dialect::Anthropic, &p, body, 7, 0)).unwrap();
        assert_eq!(v["content"][0]["text"], "a b c d e f g h");
        assert_eq!(v["usage"]["output_tokens"], 8);
        assert_eq!(v["stop_sequence"], serde_json::Value::Null);
        let v: serde_json::Value =
            serde_json::from_slice(&success(Dialect::OpenAi, &p, body, 7, 0)).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "a b c d e f g h");
        assert_eq!(v["object"], "chat.completion");
    }

    #[test]
    fn refuses_bodies_without_model_or_messages() {
        assert!(parse(b"{", None).is_err());
        assert!(parse(br#"{"messages":[]}"#, None).is_err());
        assert!(parse(br#"{"model":"m"}"#, None).is_err());
    }
}
