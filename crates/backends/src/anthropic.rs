//! The `anthropic` backend: any server that speaks `POST /v1/messages` (api.anthropic.com,
//! LiteLLM, vLLM's and SGLang's Anthropic endpoints, another batchd's mock…).
//!
//! The request's `params` go upstream byte for byte, with its batch's `anthropic-version` as
//! the hosted API names it ([`ApiVersion::upstream`](batchd_domain::ApiVersion::upstream)),
//! unless the backend fixes one, and those of the batch's `anthropic-beta` values a Messages
//! endpoint knows ([`betas::forwarded`]). The Message that comes back is the result, its fields
//! in the order the upstream sent them, with `usage.service_tier` set to `"batch"` as the real
//! batch API reports.
//!
//! On the OpenAI surface it serves `/v1/chat/completions`: the line's body becomes Messages
//! params ([`from_chat`]: what has no exact counterpart, e.g. `n > 1`, `logprobs`, audio, tools,
//! is refused as that line's 400 `invalid_request_error`, never sent and never approximated),
//! and the Message that comes back becomes a `chat.completion`
//! ([`translate::chat_completion_from_message`]). Other endpoints it cannot serve.

use std::borrow::Cow;

use async_trait::async_trait;
use batchd_domain::openai::Endpoint;
use batchd_domain::raw_json;
use batchd_domain::{ApiVersion, betas};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::value::RawValue;

use crate::config::BackendSpec;
use crate::mock::openai::created_of;
use crate::openai::{from_chat, translate};
use crate::upstream::{Dialect, Upstream};
use crate::{
    Backend, BackendError, BackendRequest, OpenAiAnswer, OpenAiRequest, derived_request_id,
};

#[derive(Debug)]
pub struct AnthropicBackend {
    name: String,
    /// The backend sends its configured `anthropic-version` (a default header) for every
    /// request rather than the batch's.
    fixed_version: bool,
    upstream: Upstream,
}

impl AnthropicBackend {
    pub fn new(spec: &BackendSpec) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        let fixed_version = spec.anthropic_version.is_some();
        if let Some(version) = &spec.anthropic_version {
            let version = HeaderValue::from_str(version).map_err(|_| {
                format!(
                    "backend `{}`: field `anthropic_version`: not a valid header value",
                    spec.name
                )
            })?;
            headers.insert("anthropic-version", version);
        }
        if let Some(key) = &spec.api_key {
            let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
                format!(
                    "backend `{}`: the upstream key is not a valid header value",
                    spec.name
                )
            })?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        Ok(Self {
            name: spec.name.clone(),
            fixed_version,
            upstream: Upstream::new(spec, "/v1/messages", headers, Dialect::Anthropic)?,
        })
    }
}

#[async_trait]
impl Backend for AnthropicBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, request: BackendRequest<'_>) -> Result<String, BackendError> {
        let mut extra = self.version_header(request.version);
        let forwarded: Vec<&str> = request
            .betas
            .iter()
            .map(String::as_str)
            .filter(|b| betas::forwarded(b))
            .collect();
        if !forwarded.is_empty() {
            // Values were checked against the known names when the batch was created.
            if let Ok(value) = HeaderValue::from_str(&forwarded.join(",")) {
                extra.push((HeaderName::from_static("anthropic-beta"), value));
            }
        }
        let body = self
            .upstream
            .post(request.raw_params.to_owned(), &extra)
            .await?;
        with_batch_tier(&body).map_err(|what| self.upstream.bad_body(&what))
    }

    fn serves_endpoint(&self, endpoint: Endpoint) -> bool {
        endpoint == Endpoint::ChatCompletions
    }

    async fn send_openai(&self, request: OpenAiRequest<'_>) -> Result<OpenAiAnswer, BackendError> {
        if request.endpoint != Endpoint::ChatCompletions {
            return Err(BackendError::cannot_serve(&self.name, request.endpoint));
        }
        // The body was checked to be a JSON object when the batch was created; anything else
        // is refused below like any body that cannot be converted.
        let body = serde_json::from_str(request.body).unwrap_or_default();
        let params = from_chat::convert(&body).map_err(|why| {
            BackendError::openai_refusal(
                &format!(
                    "{why} (backend `{}` serves this model through the Anthropic Messages API)",
                    self.name
                ),
                None,
                None,
            )
        })?;
        let params = serde_json::to_string(&params).map_err(|e| {
            BackendError::fatal(
                batchd_domain::ErrorType::Api,
                format!("serializing the Messages params: {e}"),
            )
        })?;
        // OpenAI batches carry no `anthropic-version`: the default one, as for any client
        // that sends the oldest.
        let extra = self.version_header(ApiVersion::default());
        let message = self.upstream.post(params, &extra).await?;
        let body = translate::chat_completion_from_message(
            &message,
            request.model,
            created_of(request.batch_id),
        )
        .map_err(|e| self.upstream.bad_body(&e.to_string()))?;
        Ok(OpenAiAnswer {
            status_code: 200,
            request_id: derived_request_id(request.batch_id, request.custom_id),
            body,
        })
    }
}

impl AnthropicBackend {
    /// The `anthropic-version` header to send for `version`, unless the backend fixes one.
    fn version_header(&self, version: ApiVersion) -> Vec<(HeaderName, HeaderValue)> {
        if self.fixed_version {
            return Vec::new();
        }
        vec![(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(version.upstream()),
        )]
    }
}

/// Checks that `body` is a Message and sets `usage.service_tier` to `"batch"`, keeping every
/// other byte of every field and their order.
pub(crate) fn with_batch_tier(body: &[u8]) -> Result<String, String> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(format!("not a JSON object ({})", not_an_object(body)));
    };
    let message = Ordered::read(text)
        .ok_or_else(|| format!("not a JSON object ({})", not_an_object(body)))?;
    let kind = message
        .get("type")
        .and_then(|raw| serde_json::from_str::<&str>(raw).ok());
    if kind != Some("message") {
        return Err("not a Message (its `type` is not \"message\")".into());
    }
    let Some(usage_raw) = message.get("usage") else {
        return Err("a Message without `usage`".into());
    };
    let usage = Ordered::read(usage_raw).ok_or_else(|| "`usage` is not an object".to_owned())?;
    // Written without a space between tokens (as hosted APIs answer), the Message written
    // anew would be the same bytes but for the tier: splice the tier in instead of writing
    // every member again. (What it saves per answer, a copy of the Message and an allocation
    // per member, is below the dispatch bench's run-to-run noise of several µs per request.)
    if message.is_compact(text) && usage.is_compact(usage_raw) {
        return Ok(spliced(text, usage_raw, &usage));
    }
    Ok(reserialized(message, usage))
}

/// Why `body` is not a JSON object, in serde_json's words: read as a map of raw values, which
/// takes and refuses what [`Ordered::read`] does, it says what is wrong and where. Only a
/// failed answer pays for this second reading.
fn not_an_object(body: &[u8]) -> String {
    match serde_json::from_slice::<std::collections::BTreeMap<String, Box<RawValue>>>(body) {
        Err(e) => e.to_string(),
        Ok(_) => "not an object".to_owned(),
    }
}

/// [`with_batch_tier`] for a compact `text`: the text with `usage` (the subslice `usage_text`,
/// parsed as `usage`) carrying `"service_tier":"batch"` in place of its first `service_tier`,
/// or last when it had none.
fn spliced(text: &str, usage_text: &str, usage: &Ordered<'_>) -> String {
    const BATCH: &str = "\"batch\"";
    let start = offset_in(text, usage_text);
    let mut out = String::with_capacity(text.len() + BATCH.len() + 16);
    out.push_str(&text[..start]);
    match usage.get("service_tier") {
        Some(tier) => {
            let at = offset_in(usage_text, tier);
            out.push_str(&usage_text[..at]);
            out.push_str(BATCH);
            out.push_str(&usage_text[at + tier.len()..]);
        }
        None => {
            out.push_str(&usage_text[..usage_text.len() - 1]);
            if !usage.0.is_empty() {
                out.push(',');
            }
            out.push_str("\"service_tier\":");
            out.push_str(BATCH);
            out.push('}');
        }
    }
    out.push_str(&text[start + usage_text.len()..]);
    out
}

/// Where `inner`, a subslice of `outer`, starts in it.
fn offset_in(outer: &str, inner: &str) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

/// [`with_batch_tier`] by writing the Message again, member by member, with the new `usage`.
fn reserialized(message: Ordered<'_>, mut usage: Ordered<'_>) -> String {
    usage.set("service_tier", "\"batch\"");
    let usage = usage.written();
    // Rebound, so that it may borrow the new `usage`.
    let mut message: Ordered<'_> = message;
    message.set("usage", &usage);
    message.written()
}

/// A JSON object as its members in document order (a repeated key each time), values as
/// written ([`raw_json::members_as_written`]).
struct Ordered<'a>(Vec<(Cow<'a, str>, &'a str)>);

impl<'a> Ordered<'a> {
    fn read(text: &'a str) -> Option<Self> {
        raw_json::members_as_written(text).map(Ordered)
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| k == key).map(|&(_, v)| v)
    }

    /// Whether `source`, the text this was read from, is exactly what [`Ordered::written`]
    /// writes: no space between tokens and no escape in a key (a key with one is not borrowed).
    /// No shorter text holds the same members, so an equal length means there is nothing else.
    fn is_compact(&self, source: &str) -> bool {
        let mut len = 2 + self.0.len().saturating_sub(1);
        for (key, value) in &self.0 {
            let Cow::Borrowed(key) = key else {
                return false;
            };
            len += key.len() + 3 + value.len();
        }
        len == source.len()
    }

    /// Replaces the member in place, or appends it.
    fn set(&mut self, key: &'static str, value: &'a str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(member) => member.1 = value,
            None => self.0.push((Cow::Borrowed(key), value)),
        }
    }

    /// The object written without space between its members, keys escaped as serde_json
    /// escapes a string, values as they were.
    fn written(&self) -> String {
        let size: usize = self.0.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        let mut out = String::with_capacity(size + 2);
        out.push('{');
        for (n, (key, value)) in self.0.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            // Serializing a string cannot fail.
            out.push_str(&serde_json::to_string(key.as_ref()).unwrap_or_default());
            out.push(':');
            out.push_str(value);
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tier_is_set_and_everything_else_kept_in_order() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"h\u00e9"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1,"service_tier":"standard"},"zeta":1}"#;
        assert_eq!(
            with_batch_tier(body).unwrap(),
            r#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"h\u00e9"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1,"service_tier":"batch"},"zeta":1}"#
        );
        let added = with_batch_tier(br#"{"type":"message","usage":{"output_tokens":1}}"#).unwrap();
        assert_eq!(
            added,
            r#"{"type":"message","usage":{"output_tokens":1,"service_tier":"batch"}}"#
        );
    }

    /// The splice is the writing anew, byte for byte, wherever it applies; anything else is
    /// written anew, keeping values as they were but dropping the space between members.
    #[test]
    fn the_splice_writes_what_writing_anew_would() {
        let anew = |body: &str| {
            let message = Ordered::read(body).unwrap();
            let usage = Ordered::read(message.get("usage").unwrap()).unwrap();
            reserialized(message, usage)
        };
        for body in [
            r#"{"type":"message","usage":{"input_tokens":3,"service_tier":"standard","x":[1]},"z":{}}"#,
            r#"{"usage":{"service_tier":null},"type":"message","usage":{"service_tier":1}}"#,
            r#"{"type":"message","usage":{"a":{"service_tier":"inner"}}}"#,
            r#"{"type":"message","usage":{}}"#,
            r#"{"usage":{"output_tokens":1},"type":"message"}"#,
            r#"{"type":"message","usage":{"service_tier":"standard","service_tier":"x"}}"#,
            // Space inside a value is kept either way.
            r#"{"type":"message","usage":{"output_tokens":1,"x":[1, 2]},"c":[1, 2]}"#,
        ] {
            let message = Ordered::read(body).unwrap();
            let usage_text = message.get("usage").unwrap();
            let usage = Ordered::read(usage_text).unwrap();
            assert!(
                message.is_compact(body) && usage.is_compact(usage_text),
                "{body}"
            );
            assert_eq!(spliced(body, usage_text, &usage), anew(body), "{body}");
            assert_eq!(with_batch_tier(body.as_bytes()).unwrap(), anew(body));
        }
        for body in [
            "{\"type\":\"message\",\"usage\":{\"output_tokens\":1} }",
            " {\"type\":\"message\",\"usage\":{\"output_tokens\":1}}",
            "{\"type\":\"message\",\"usage\":{\"output_tokens\": 1}}",
            "{\"type\" :\"message\",\"usage\":{\"output_tokens\":1}}",
            r#"{"type":"message","usage":{"\u0073ervice_tier":"standard"}}"#,
            r#"{"\u0074ype":"message","type":"message","usage":{"output_tokens":1}}"#,
        ] {
            let message = Ordered::read(body).unwrap();
            let usage_text = message.get("usage").unwrap();
            let usage = Ordered::read(usage_text).unwrap();
            assert!(
                !(message.is_compact(body) && usage.is_compact(usage_text)),
                "{body}"
            );
            assert_eq!(with_batch_tier(body.as_bytes()).unwrap(), anew(body));
        }
        assert_eq!(
            with_batch_tier(b"{\n  \"type\": \"message\",\n  \"usage\": {\"output_tokens\": 1, \"service_tier\": \"standard\"},\n  \"c\": [1, 2]\n}\n").unwrap(),
            r#"{"type":"message","usage":{"output_tokens":1,"service_tier":"batch"},"c":[1, 2]}"#
        );
    }

    /// An answer is checked for JSON's grammar only, as serde_json checks a value it skips: an
    /// upstream's lone surrogate, a number beyond `f64` or deep nesting passes as written.
    #[test]
    fn values_pass_as_the_upstream_wrote_them() {
        let deep = "[".repeat(1_000) + &"]".repeat(1_000);
        let body = format!(
            r#"{{"type":"message","content":[{{"type":"text","text":"\ud83d"}}],"x":1e400,"d":{deep},"usage":{{"output_tokens":1}}}}"#
        );
        let tiered = body.replace(
            r#""output_tokens":1}"#,
            r#""output_tokens":1,"service_tier":"batch"}"#,
        );
        assert_eq!(with_batch_tier(body.as_bytes()).unwrap(), tiered);
        let err = with_batch_tier(b"{\"type\":\"message\",}").unwrap_err();
        assert!(
            err.starts_with("not a JSON object (trailing comma"),
            "{err}"
        );
        // Written anew (a space between members), keys are escaped as serde_json escapes them.
        let spaced =
            "{\"type\":\"message\", \"usage\":{\"output_tokens\":1},\"a\\u0001\\n\\u00e9\":1}";
        assert_eq!(
            with_batch_tier(spaced.as_bytes()).unwrap(),
            r#"{"type":"message","usage":{"output_tokens":1,"service_tier":"batch"},"a\u0001\né":1}"#
        );
    }

    #[test]
    fn anything_but_a_message_is_refused() {
        for body in [
            &b"not json"[..],
            b"[1]",
            br#"{"type":"error","error":{}}"#,
            br#"{"type":"message"}"#,
            br#"{"type":"message","usage":3}"#,
            br#"{"type":"message","usage":{},"\ud800":1}"#,
        ] {
            assert!(
                with_batch_tier(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
