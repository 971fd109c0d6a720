//! Validation of one request's `params` (a Messages create body), as the real API performs it
//! when the request is processed. Failures become `errored` results, never create-time errors.
//!
//! The real API validates with Pydantic and reports the first failure as `<location>: <message>`,
//! so the texts come from [`crate::validation`]. The checks run in two phases, like the real
//! service: first the schema (fields in the published schema's order, then unknown keys), then the rules
//! that are not expressible in the schema (what batches refuse, an empty `messages`).
//!
//! Only what the API documents is checked. Content blocks, tools and nested configuration
//! objects are checked for shape, not deeply: new block and tool types appear often and a request
//! the real API accepts must never be turned into an errored row here.
//!
//! What a request may hold also depends on its batch ([`Terms`]): the `anthropic-version` the
//! batch was created with (the rules in [`crate::api_version`]), its betas (the fields they
//! unlock, [`crate::betas`]) and its user profile.
//!
//! The raw JSON is read in place ([`crate::raw_json`]): members stay slices of the input and
//! only what a rule looks at is decoded, so no `Value` tree is built for a request; what passes
//! keeps its model and `max_tokens` ([`Params`]) and the backend gets the raw bytes. It reads the
//! JSON as a full parse would (the last of a repeated key, escapes decoded, unknown keys in
//! code-point order, a document that parse refuses is not a dictionary). What a validation
//! costs is measured by `validate_throughput` below; the figures are beside the scan that does
//! the reading (`raw_json::scan`), where the time goes.

use serde_json::Number;

use crate::ErrorType;
use crate::api_version::{self, ApiVersion, VersionRules};
use crate::betas::{self, BETA_FIELDS};
use crate::raw_json::{self, Body, Kind, Object, Raw, is_null};
use crate::validation::{
    BILL_TO_USER_PROFILE, EXTRA, FRACTIONAL, NOT_BOOL, NOT_DICT, NOT_INT, NOT_LIST, NOT_NUMBER,
    NOT_STRING, REQUIRED, ROLE, ROLE_OR_SYSTEM, USER_PROFILE_CONFLICT,
};

/// What a batch's create said that applies to each of its requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terms<'a> {
    /// The `anthropic-version` the batch was created with.
    pub version: ApiVersion,
    /// The batch's `anthropic-beta` values.
    pub betas: &'a [String],
    /// The batch's `anthropic-user-profile-id`.
    pub user_profile_id: Option<&'a str>,
}

/// What validation reads out of `params` that passed it. The rest stays in the raw JSON, which
/// backends forward as is or read what they need from ([`crate::raw_json`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub model: String,
    pub max_tokens: u64,
}

/// Why `params` were refused: the `error.type` and `error.message` of the errored row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct ParamsError {
    pub kind: ErrorType,
    pub message: String,
}

/// Longest `metadata.user_id` the API accepts, in characters.
const USER_ID_MAX_CHARS: usize = 512;

/// Fields of the Messages create body that the Message Batches API refuses per request
/// (the batch API's documented refusals). `stream` is absent: only `stream: true` is refused, with its own text.
const BATCH_REFUSED: &[&str] = &[
    "speed",
    "store",
    "previous_thread_event_id",
    "cache_hint",
    "context_hint",
    "research_preview_2026_02",
];

fn invalid(message: String) -> ParamsError {
    ParamsError {
        kind: ErrorType::InvalidRequest,
        message,
    }
}

/// `<loc>: <msg>`; only built on the error path, so formatting cost does not matter.
fn at(loc: impl std::fmt::Display, msg: &str) -> ParamsError {
    invalid(crate::validation::at(loc, msg))
}

/// Whether a top-level key belongs to the Messages create schema of this version, beta-only
/// fields aside. Batch-refused fields count as known so they get their own, clearer message
/// instead of "Extra inputs".
fn is_known_key(key: &str, rules: &VersionRules) -> bool {
    if rules.no_sampling && api_version::SAMPLING_FIELDS.contains(&key) {
        return false;
    }
    matches!(
        key,
        "model"
            | "messages"
            | "max_tokens"
            | "system"
            | "metadata"
            | "stop_sequences"
            | "temperature"
            | "top_p"
            | "top_k"
            | "tools"
            | "tool_choice"
            | "thinking"
            | "service_tier"
            | "output_config"
            | "container"
            | "inference_geo"
            | "cache_control"
            | "stream"
            | "diagnostics"
            // Spec 4.1 lists a user_profile_id conflict as a per-request failure, so the field exists.
            | "user_profile_id"
    ) || BATCH_REFUSED.contains(&key)
}

/// Whether a top-level key is one the schema does not have for this batch: unknown, or a
/// beta-only field that none of the batch's betas unlocks in the form given.
fn is_extra(key: &str, value: Raw<'_>, terms: &Terms<'_>) -> bool {
    if BETA_FIELDS.contains(&key) {
        !betas::unlocked(terms.betas, key, Kind::of(value))
    } else {
        !is_known_key(key, terms.version.rules())
    }
}

/// Validates raw `params` JSON for a request of a batch with these terms. Nothing is built but
/// what the checks look at: members are slices of `raw`, decoded where a rule reads them.
pub fn validate(raw: &str, terms: &Terms<'_>) -> Result<Params, ParamsError> {
    let rules = terms.version.rules();
    // The scan checks the whole document: one the full parse refuses anywhere is not a
    // dictionary, even where the members read below would not show it.
    let Some(Body {
        members: body,
        messages,
    }) = Body::parse(raw)
    else {
        return Err(invalid(format!("params: {NOT_DICT}")));
    };

    // Phase 1: the schema, in the published field order.
    let model = match body.get("model") {
        None => return Err(at("model", REQUIRED)),
        Some(v) => match raw_json::string(v) {
            Some(s) => s.into_owned(),
            None => return Err(at("model", NOT_STRING)),
        },
    };
    let messages = match messages {
        None => return Err(at("messages", REQUIRED)),
        Some(Ok(turns)) => turns,
        Some(Err(_)) => return Err(at("messages", NOT_LIST)),
    };
    for (i, message) in messages.iter().enumerate() {
        check_message(i, message.as_ref().ok(), rules)?;
    }
    let max_tokens = match body.get("max_tokens") {
        None => return Err(at("max_tokens", REQUIRED)),
        // Below zero and zero share the batch rule's message (phase 2), so clamp here.
        Some(v) => integer(v).map_err(|msg| at("max_tokens", msg))?.max(0) as u64,
    };
    check_optional(&body, terms)?;
    if let Some(key) = body.first_key(|k, v| is_extra(k, v, terms)) {
        return Err(at(key, EXTRA));
    }

    // Phase 2: rules beyond the schema.
    if body.get("stream").is_some_and(|v| v.get() == "true") {
        return Err(invalid(
            "\"stream=True\" is not supported in the Message Batches API".into(),
        ));
    }
    // `null` means "not given" everywhere else in the schema, so it is not a use of the field.
    if let Some(field) = BATCH_REFUSED
        .iter()
        .find(|f| body.get(f).is_some_and(|v| !is_null(v)))
    {
        return Err(invalid(format!(
            "{field}: \"{field}\" is not supported in the Message Batches API"
        )));
    }
    check_version_rules(&messages, rules)?;
    if let (Some(header), Some(asked)) = (
        terms.user_profile_id,
        body.get("user_profile_id").and_then(raw_json::string),
    ) && header != asked
    {
        return Err(at("user_profile_id", USER_PROFILE_CONFLICT));
    }
    // Only reachable with the beta that unlocks `billing_policy` (checked in phase 1).
    if body
        .get("billing_policy")
        .and_then(Object::of)
        .and_then(|p| p.get("bill_to"))
        .and_then(raw_json::string)
        .as_deref()
        == Some("user_profile")
    {
        return Err(at("billing_policy.bill_to", BILL_TO_USER_PROFILE));
    }
    if max_tokens < 1 {
        return Err(at("max_tokens", "must be greater than or equal to 1"));
    }
    if messages.is_empty() {
        return Err(at("messages", "at least one message is required"));
    }

    Ok(Params { model, max_tokens })
}

/// An integer the way Pydantic's lax mode reads JSON: integral floats pass, fractions and
/// non-numbers do not. Values beyond `i64` saturate; they fail later range checks anyway.
fn integer(v: Raw<'_>) -> Result<i64, &'static str> {
    match raw_json::number(v) {
        Some(n) => number_as_i64(&n),
        None => Err(NOT_INT),
    }
}

fn number_as_i64(n: &Number) -> Result<i64, &'static str> {
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    if n.is_u64() {
        return Ok(i64::MAX);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 => Ok(f as i64),
        _ => Err(FRACTIONAL),
    }
}

/// What a version refuses in the turns themselves, once the schema has passed.
fn check_version_rules(
    messages: &[Result<Object<'_>, Kind>],
    rules: &VersionRules,
) -> Result<(), ParamsError> {
    if !(rules.no_assistant_documents || rules.no_user_citations) {
        return Ok(());
    }
    let cited = |block: Raw<'_>| {
        Object::of(block).is_some_and(|block| {
            block.get("type").and_then(raw_json::string).as_deref() == Some("text")
                && block
                    .get("citations")
                    .and_then(raw_json::array)
                    .is_some_and(|c| !c.is_empty())
        })
    };
    for (i, message) in messages.iter().enumerate() {
        // Every message passed the schema: an object with a role.
        let Ok(message) = message else {
            continue;
        };
        let Some(blocks) = message.get("content").and_then(raw_json::array) else {
            continue;
        };
        let role = message.get("role").and_then(raw_json::string);
        let role = role.as_deref();
        for (j, block) in blocks.iter().enumerate() {
            let block_obj = Object::of(*block);
            let kind = block_obj
                .as_ref()
                .and_then(|b| b.get("type"))
                .and_then(raw_json::string);
            let kind = kind.as_deref();
            if role == Some("assistant") && rules.no_assistant_documents && kind == Some("document")
            {
                return Err(at(
                    format_args!("messages.{i}.content.{j}"),
                    api_version::ASSISTANT_DOCUMENT,
                ));
            }
            if role != Some("user") || !rules.no_user_citations {
                continue;
            }
            if cited(*block) {
                return Err(at(
                    format_args!("messages.{i}.content.{j}.citations"),
                    api_version::USER_CITATIONS,
                ));
            }
            if kind == Some("search_result")
                && let Some(inner) = block_obj
                    .as_ref()
                    .and_then(|b| b.get("content"))
                    .and_then(raw_json::array)
                && let Some(k) = inner.iter().position(|b| cited(*b))
            {
                return Err(at(
                    format_args!("messages.{i}.content.{j}.content.{k}.citations"),
                    api_version::USER_CITATIONS,
                ));
            }
        }
    }
    Ok(())
}

fn check_message(
    i: usize,
    message: Option<&Object<'_>>,
    rules: &VersionRules,
) -> Result<(), ParamsError> {
    let Some(message) = message else {
        return Err(at(format_args!("messages.{i}"), NOT_DICT));
    };
    match message.get("role") {
        None => return Err(at(format_args!("messages.{i}.role"), REQUIRED)),
        Some(role) => match raw_json::string(role).as_deref() {
            Some("user" | "assistant") => {}
            Some("system") if rules.system_role => {}
            _ => {
                let expected = if rules.system_role {
                    ROLE_OR_SYSTEM
                } else {
                    ROLE
                };
                return Err(at(format_args!("messages.{i}.role"), expected));
            }
        },
    }
    match message.get("content") {
        None => return Err(at(format_args!("messages.{i}.content"), REQUIRED)),
        Some(content) => match Kind::of(content) {
            Kind::String => {}
            Kind::Array => {
                for (j, block) in raw_json::array(content)
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    check_block(format_args!("messages.{i}.content.{j}"), *block, None)?;
                }
            }
            _ => return Err(at(format_args!("messages.{i}.content"), NOT_LIST)),
        },
    }
    if let Some(key) = message.first_key(|k, _| !matches!(k, "role" | "content")) {
        return Err(at(format_args!("messages.{i}.{key}"), EXTRA));
    }
    Ok(())
}

/// One content block: an object with a string `type`; `text` blocks also need a string `text`.
/// `only` restricts the type (the system prompt takes text blocks only).
fn check_block(
    loc: std::fmt::Arguments<'_>,
    block: Raw<'_>,
    only: Option<&str>,
) -> Result<(), ParamsError> {
    let Some(block) = Object::of(block) else {
        return Err(at(loc, NOT_DICT));
    };
    let kind = match block.get("type") {
        None => return Err(at(format_args!("{loc}.type"), REQUIRED)),
        Some(t) => match raw_json::string(t) {
            Some(t) => t,
            None => return Err(at(format_args!("{loc}.type"), NOT_STRING)),
        },
    };
    if let Some(only) = only
        && kind != only
    {
        return Err(at(
            format_args!("{loc}.type"),
            &format!("Input should be '{only}'"),
        ));
    }
    if kind == "text" {
        match block.get("text").map(Kind::of) {
            None => return Err(at(format_args!("{loc}.text"), REQUIRED)),
            Some(Kind::String) => {}
            Some(_) => return Err(at(format_args!("{loc}.text"), NOT_STRING)),
        }
    }
    Ok(())
}

/// The optional fields, in schema order. `null` is accepted for each, as "not given".
fn check_optional(body: &Object<'_>, terms: &Terms<'_>) -> Result<(), ParamsError> {
    let get = |key: &str| body.get(key).filter(|v| !is_null(*v));
    // Removed fields are extra inputs, reported with the unknown keys.
    let sampling = |key: &str| get(key).filter(|_| !terms.version.rules().no_sampling);
    // A beta-only field is checked only when a beta unlocks it; otherwise it is an extra input.
    let beta_field =
        |key: &str| get(key).filter(|v| betas::unlocked(terms.betas, key, Kind::of(*v)));

    if let Some(metadata) = get("metadata") {
        let Some(metadata) = Object::of(metadata) else {
            return Err(at("metadata", NOT_DICT));
        };
        match metadata.get("user_id") {
            None => {}
            Some(id) => match Kind::of(id) {
                Kind::Null => {}
                Kind::String => {
                    // Cheap byte bound first: most ids are short ASCII (escapes only make the
                    // raw text longer than the decoded one).
                    if id.get().len() > USER_ID_MAX_CHARS + 2
                        && raw_json::string(id)
                            .is_some_and(|id| id.chars().count() > USER_ID_MAX_CHARS)
                    {
                        return Err(at(
                            "metadata.user_id",
                            "String should have at most 512 characters",
                        ));
                    }
                }
                _ => return Err(at("metadata.user_id", NOT_STRING)),
            },
        }
        if let Some(key) = metadata.first_key(|k, _| k != "user_id") {
            return Err(at(format_args!("metadata.{key}"), EXTRA));
        }
    }
    if let Some(stops) = get("stop_sequences") {
        let Some(stops) = raw_json::array(stops) else {
            return Err(at("stop_sequences", NOT_LIST));
        };
        if let Some(i) = stops.iter().position(|s| Kind::of(*s) != Kind::String) {
            return Err(at(format_args!("stop_sequences.{i}"), NOT_STRING));
        }
    }
    if let Some(stream) = get("stream")
        && Kind::of(stream) != Kind::Bool
    {
        return Err(at("stream", NOT_BOOL));
    }
    if let Some(system) = get("system") {
        match Kind::of(system) {
            Kind::String => {}
            Kind::Array => {
                for (i, block) in raw_json::array(system)
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    check_block(format_args!("system.{i}"), *block, Some("text"))?;
                }
            }
            _ => return Err(at("system", NOT_LIST)),
        }
    }
    if let Some(t) = sampling("temperature") {
        check_unit_interval("temperature", t)?;
    }
    dict("thinking", get("thinking"))?;
    dict("tool_choice", get("tool_choice"))?;
    if let Some(tools) = get("tools") {
        let Some(tools) = raw_json::array(tools) else {
            return Err(at("tools", NOT_LIST));
        };
        if let Some(i) = tools.iter().position(|t| Kind::of(*t) != Kind::Object) {
            return Err(at(format_args!("tools.{i}"), NOT_DICT));
        }
    }
    if let Some(k) = sampling("top_k") {
        let k = integer(k).map_err(|msg| at("top_k", msg))?;
        if k < 0 {
            return Err(at("top_k", "Input should be greater than or equal to 0"));
        }
    }
    if let Some(p) = sampling("top_p") {
        check_unit_interval("top_p", p)?;
    }
    if let Some(tier) = get("service_tier")
        && !matches!(
            raw_json::string(tier).as_deref(),
            Some("auto" | "standard_only")
        )
    {
        return Err(at(
            "service_tier",
            "Input should be 'auto' or 'standard_only'",
        ));
    }
    dict("output_config", get("output_config"))?;
    if let Some(geo) = get("inference_geo")
        && Kind::of(geo) != Kind::String
    {
        return Err(at("inference_geo", NOT_STRING));
    }
    dict("cache_control", get("cache_control"))?;
    if let Some(servers) = beta_field("mcp_servers")
        && Kind::of(servers) != Kind::Array
    {
        return Err(at("mcp_servers", NOT_LIST));
    }
    dict("context_management", beta_field("context_management"))?;
    if let Some(id) = get("user_profile_id")
        && Kind::of(id) != Kind::String
    {
        return Err(at("user_profile_id", NOT_STRING));
    }
    Ok(())
}

fn dict(key: &str, value: Option<Raw<'_>>) -> Result<(), ParamsError> {
    match value {
        Some(v) if Kind::of(v) != Kind::Object => Err(at(key, NOT_DICT)),
        _ => Ok(()),
    }
}

/// A number within `0..=1` (`temperature`, `top_p`).
fn check_unit_interval(key: &str, value: Raw<'_>) -> Result<(), ParamsError> {
    let Some(x) = raw_json::number(value).and_then(|n| n.as_f64()) else {
        return Err(at(key, NOT_NUMBER));
    };
    if x < 0.0 {
        return Err(at(key, "Input should be greater than or equal to 0"));
    }
    if x > 1.0 {
        return Err(at(key, "Input should be less than or equal to 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;

    /// A valid body with `extra` merged over it (a `null` in `extra` removes the key).
    fn with(extra: &str) -> String {
        let mut base: Map<String, Value> = serde_json::from_str(
            r#"{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"Hi"}]}"#,
        )
        .unwrap();
        let extra: Map<String, Value> = serde_json::from_str(extra).unwrap();
        for (k, v) in extra {
            if v.is_null() {
                base.remove(&k);
            } else {
                base.insert(k, v);
            }
        }
        Value::Object(base).to_string()
    }

    fn refusal(raw: &str) -> String {
        let err = validate(raw, &Terms::default()).expect_err(raw);
        assert_eq!(err.kind, ErrorType::InvalidRequest, "{raw}");
        err.message
    }

    #[test]
    fn accepts_a_minimal_request() {
        let params = validate(&with("{}"), &Terms::default()).unwrap();
        assert_eq!(params.model, "claude-haiku-4-5");
        assert_eq!(params.max_tokens, 16);
    }

    #[test]
    fn accepts_every_documented_optional_field() {
        let raw = with(
            r#"{
            "system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
            "metadata":{"user_id":"u-1"},
            "stop_sequences":["\n\nHuman:"],
            "temperature":0.5, "top_p":1, "top_k":5,
            "tools":[{"name":"t","input_schema":{"type":"object"}}],
            "tool_choice":{"type":"auto"},
            "thinking":{"type":"adaptive"},
            "service_tier":"standard_only",
            "output_config":{"effort":"low"},
            "container":"container_1",
            "inference_geo":"us",
            "cache_control":{"type":"ephemeral"},
            "stream":false,
            "mcp_servers":[],
            "context_management":{"edits":[]},
            "user_profile_id":"up_1",
            "diagnostics":{},
            "speed":null,
            "max_tokens":1024.0,
            "messages":[
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"image","source":{}}]},
                {"role":"user","content":"consecutive same-role turns are merged, not refused"},
                {"role":"assistant","content":[{"type":"some_future_block"}]}
            ]
        }"#,
        );
        let betas = [
            "mcp-client-2025-04-04".into(),
            "context-management-2025-06-27".into(),
        ];
        let terms = Terms {
            betas: &betas,
            ..Terms::default()
        };
        let params = validate(&raw, &terms).unwrap();
        assert_eq!(params.max_tokens, 1024);
    }

    #[test]
    fn accepts_null_for_optional_fields() {
        validate(&with(
            r#"{"system":null,"metadata":{"user_id":null},"stop_sequences":null,"temperature":null,"top_k":null,"tools":null,"stream":null}"#,
        ), &Terms::default())
        .unwrap();
    }

    #[test]
    fn refuses_what_the_real_api_refuses() {
        let long_id = "é".repeat(513);
        let user_id_too_long = with(&format!(r#"{{"metadata":{{"user_id":"{long_id}"}}}}"#));
        let cases: &[(&str, &str)] = &[
            // Shape of params itself.
            ("[]", "params: Input should be a valid dictionary"),
            ("\"x\"", "params: Input should be a valid dictionary"),
            ("null", "params: Input should be a valid dictionary"),
            ("not json", "params: Input should be a valid dictionary"),
            // Required fields, in schema order.
            (&with(r#"{"model":null}"#), "model: Field required"),
            (
                &with(r#"{"model":7}"#),
                "model: Input should be a valid string",
            ),
            (&with(r#"{"messages":null}"#), "messages: Field required"),
            (
                &with(r#"{"messages":"hi"}"#),
                "messages: Input should be a valid list",
            ),
            (
                &with(r#"{"max_tokens":null}"#),
                "max_tokens: Field required",
            ),
            (
                &with(r#"{"max_tokens":"16"}"#),
                "max_tokens: Input should be a valid integer",
            ),
            (
                &with(r#"{"max_tokens":1.5}"#),
                "max_tokens: Input should be a valid integer, got a number with a fractional part",
            ),
            (r#"{"messages":[]}"#, "model: Field required"),
            (
                r#"{"model":"m","max_tokens":1}"#,
                "messages: Field required",
            ),
            // Messages.
            (
                &with(r#"{"messages":[1]}"#),
                "messages.0: Input should be a valid dictionary",
            ),
            (
                &with(r#"{"messages":[{"content":"x"}]}"#),
                "messages.0.role: Field required",
            ),
            (
                &with(
                    r#"{"messages":[{"role":"user","content":"a"},{"role":"system","content":"b"}]}"#,
                ),
                "messages.1.role: Input should be 'user' or 'assistant'",
            ),
            (
                &with(r#"{"messages":[{"role":1,"content":"b"}]}"#),
                "messages.0.role: Input should be 'user' or 'assistant'",
            ),
            (
                &with(r#"{"messages":[{"role":"user"}]}"#),
                "messages.0.content: Field required",
            ),
            (
                &with(r#"{"messages":[{"role":"user","content":{"type":"text"}}]}"#),
                "messages.0.content: Input should be a valid list",
            ),
            (
                &with(r#"{"messages":[{"role":"user","content":["hi"]}]}"#),
                "messages.0.content.0: Input should be a valid dictionary",
            ),
            (
                &with(
                    r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"text":"b"}]}]}"#,
                ),
                "messages.0.content.1.type: Field required",
            ),
            (
                &with(r#"{"messages":[{"role":"user","content":[{"type":3}]}]}"#),
                "messages.0.content.0.type: Input should be a valid string",
            ),
            (
                &with(r#"{"messages":[{"role":"user","content":[{"type":"text"}]}]}"#),
                "messages.0.content.0.text: Field required",
            ),
            (
                &with(r#"{"messages":[{"role":"user","content":[{"type":"text","text":1}]}]}"#),
                "messages.0.content.0.text: Input should be a valid string",
            ),
            (
                &with(r#"{"messages":[{"role":"user","content":"a","name":"bob"}]}"#),
                "messages.0.name: Extra inputs are not permitted",
            ),
            // Optional fields.
            (
                &with(r#"{"metadata":"u"}"#),
                "metadata: Input should be a valid dictionary",
            ),
            (
                &with(r#"{"metadata":{"user_id":5}}"#),
                "metadata.user_id: Input should be a valid string",
            ),
            (
                &user_id_too_long,
                "metadata.user_id: String should have at most 512 characters",
            ),
            (
                &with(r#"{"metadata":{"session":"s"}}"#),
                "metadata.session: Extra inputs are not permitted",
            ),
            (
                &with(r#"{"stop_sequences":"END"}"#),
                "stop_sequences: Input should be a valid list",
            ),
            (
                &with(r#"{"stop_sequences":["END",1]}"#),
                "stop_sequences.1: Input should be a valid string",
            ),
            (
                &with(r#"{"stream":"yes"}"#),
                "stream: Input should be a valid boolean",
            ),
            (
                &with(r#"{"system":42}"#),
                "system: Input should be a valid list",
            ),
            (
                &with(r#"{"system":["be brief"]}"#),
                "system.0: Input should be a valid dictionary",
            ),
            (
                &with(r#"{"system":[{"text":"x"}]}"#),
                "system.0.type: Field required",
            ),
            (
                &with(r#"{"system":[{"type":"image","source":{}}]}"#),
                "system.0.type: Input should be 'text'",
            ),
            (
                &with(r#"{"system":[{"type":"text"}]}"#),
                "system.0.text: Field required",
            ),
            (
                &with(r#"{"temperature":"hot"}"#),
                "temperature: Input should be a valid number",
            ),
            (
                &with(r#"{"temperature":1.5}"#),
                "temperature: Input should be less than or equal to 1",
            ),
            (
                &with(r#"{"temperature":-0.1}"#),
                "temperature: Input should be greater than or equal to 0",
            ),
            (
                &with(r#"{"thinking":"on"}"#),
                "thinking: Input should be a valid dictionary",
            ),
            (
                &with(r#"{"tool_choice":"auto"}"#),
                "tool_choice: Input should be a valid dictionary",
            ),
            (
                &with(r#"{"tools":{"name":"t"}}"#),
                "tools: Input should be a valid list",
            ),
            (
                &with(r#"{"tools":[{"name":"t"},"u"]}"#),
                "tools.1: Input should be a valid dictionary",
            ),
            (
                &with(r#"{"top_k":-1}"#),
                "top_k: Input should be greater than or equal to 0",
            ),
            (
                &with(r#"{"top_k":2.5}"#),
                "top_k: Input should be a valid integer, got a number with a fractional part",
            ),
            (
                &with(r#"{"top_k":"5"}"#),
                "top_k: Input should be a valid integer",
            ),
            (
                &with(r#"{"top_p":true}"#),
                "top_p: Input should be a valid number",
            ),
            (
                &with(r#"{"top_p":2}"#),
                "top_p: Input should be less than or equal to 1",
            ),
            (
                &with(r#"{"service_tier":"batch"}"#),
                "service_tier: Input should be 'auto' or 'standard_only'",
            ),
            (
                &with(r#"{"output_config":[]}"#),
                "output_config: Input should be a valid dictionary",
            ),
            (
                &with(r#"{"inference_geo":1}"#),
                "inference_geo: Input should be a valid string",
            ),
            (
                &with(r#"{"cache_control":"ephemeral"}"#),
                "cache_control: Input should be a valid dictionary",
            ),
            (
                &with(r#"{"user_profile_id":1}"#),
                "user_profile_id: Input should be a valid string",
            ),
            // Unknown keys, after every field check.
            (
                &with(r#"{"betas":["x"]}"#),
                "betas: Extra inputs are not permitted",
            ),
            (
                &with(r#"{"foo":1,"model":1}"#),
                "model: Input should be a valid string",
            ),
            // What batches refuse on top of the schema.
            (
                &with(r#"{"stream":true}"#),
                "\"stream=True\" is not supported in the Message Batches API",
            ),
            (
                &with(r#"{"speed":"fast"}"#),
                "speed: \"speed\" is not supported in the Message Batches API",
            ),
            (
                &with(r#"{"store":true}"#),
                "store: \"store\" is not supported in the Message Batches API",
            ),
            (
                &with(r#"{"previous_thread_event_id":"e"}"#),
                "previous_thread_event_id: \"previous_thread_event_id\" is not supported in the Message Batches API",
            ),
            (
                &with(r#"{"cache_hint":{}}"#),
                "cache_hint: \"cache_hint\" is not supported in the Message Batches API",
            ),
            (
                &with(r#"{"context_hint":"x"}"#),
                "context_hint: \"context_hint\" is not supported in the Message Batches API",
            ),
            (
                &with(r#"{"research_preview_2026_02":true}"#),
                "research_preview_2026_02: \"research_preview_2026_02\" is not supported in the Message Batches API",
            ),
            (
                &with(r#"{"max_tokens":0}"#),
                "max_tokens: must be greater than or equal to 1",
            ),
            (
                &with(r#"{"max_tokens":-5}"#),
                "max_tokens: must be greater than or equal to 1",
            ),
            (
                &with(r#"{"messages":[]}"#),
                "messages: at least one message is required",
            ),
            // Schema failures win over batch rules.
            (
                &with(r#"{"messages":[],"max_tokens":0,"bogus":1}"#),
                "bogus: Extra inputs are not permitted",
            ),
            (
                &with(r#"{"stream":true,"max_tokens":0}"#),
                "\"stream=True\" is not supported in the Message Batches API",
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(refusal(raw), *expected, "params: {raw}");
        }
    }

    fn under(version: ApiVersion, raw: &str) -> Result<(), String> {
        let terms = Terms {
            version,
            ..Terms::default()
        };
        validate(raw, &terms).map(drop).map_err(|e| {
            assert_eq!(e.kind, ErrorType::InvalidRequest, "{raw}");
            e.message
        })
    }

    /// Every rule of the version table: accepted on the versions before 2026-10-21, errored on
    /// it (or, for what 2026-10-21 adds, the other way round).
    #[test]
    fn each_version_applies_its_own_rules() {
        use ApiVersion::*;
        let user_cited = r#"{"type":"text","text":"a","citations":[{"type":"char_location","cited_text":"a","document_index":0,"start_char_index":0,"end_char_index":1}]}"#;
        let cases: Vec<(String, Option<&str>, Option<&str>)> = vec![
            // Sampling parameters: removed, at any value (even the default).
            (
                with(r#"{"temperature":1.0}"#),
                None,
                Some("temperature: Extra inputs are not permitted"),
            ),
            (
                with(r#"{"top_p":0.9}"#),
                None,
                Some("top_p: Extra inputs are not permitted"),
            ),
            (
                with(r#"{"top_k":5}"#),
                None,
                Some("top_k: Extra inputs are not permitted"),
            ),
            // Removed means removed: their old range checks no longer apply either.
            (
                with(r#"{"temperature":7}"#),
                Some("temperature: Input should be less than or equal to 1"),
                Some("temperature: Extra inputs are not permitted"),
            ),
            // A document directly in an assistant turn.
            (
                with(
                    r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"text","text":"b"},{"type":"document","source":{}}]}]}"#,
                ),
                None,
                Some("messages.1.content.1: document blocks are not allowed in assistant messages"),
            ),
            // Non-empty citations on a user text block, directly or in a search result.
            (
                with(&format!(
                    r#"{{"messages":[{{"role":"user","content":[{user_cited}]}}]}}"#
                )),
                None,
                Some(
                    "messages.0.content.0.citations: citations are not allowed on text blocks in user messages",
                ),
            ),
            (
                with(&format!(
                    r#"{{"messages":[{{"role":"user","content":[{{"type":"text","text":"q"}},{{"type":"search_result","source":"s","title":"t","content":[{{"type":"text","text":"x"}},{user_cited}]}}]}}]}}"#
                )),
                None,
                Some(
                    "messages.0.content.1.content.1.citations: citations are not allowed on text blocks in user messages",
                ),
            ),
            // A `system` role message exists from 2026-10-21 on.
            (
                with(
                    r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"a"}]}"#,
                ),
                Some("messages.0.role: Input should be 'user' or 'assistant'"),
                None,
            ),
            (
                with(r#"{"messages":[{"role":"tool","content":"a"}]}"#),
                Some("messages.0.role: Input should be 'user' or 'assistant'"),
                Some("messages.0.role: Input should be 'user', 'assistant' or 'system'"),
            ),
        ];
        for (raw, classic, newest) in &cases {
            for version in [V2023_01_01, V2023_06_01] {
                assert_eq!(
                    under(version, raw).err().as_deref(),
                    *classic,
                    "{version}: {raw}"
                );
            }
            assert_eq!(
                under(V2026_10_21, raw).err().as_deref(),
                *newest,
                "2026-10-21: {raw}"
            );
        }
    }

    /// What 2026-10-21 leaves alone.
    #[test]
    fn the_newest_version_keeps_what_it_does_not_name() {
        let cited = r#"[{"type":"char_location","cited_text":"a","document_index":0,"start_char_index":0,"end_char_index":1}]"#;
        for raw in [
            // Citations on system text, and empty or null ones on user text.
            with(&format!(
                r#"{{"system":[{{"type":"text","text":"s","citations":{cited}}}]}}"#
            )),
            with(
                r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a","citations":[]}]}]}"#,
            ),
            with(
                r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a","citations":null}]}]}"#,
            ),
            // Citations on assistant text, and documents in user turns or nested deeper.
            with(&format!(
                r#"{{"messages":[{{"role":"user","content":"a"}},{{"role":"assistant","content":[{{"type":"text","text":"b","citations":{cited}}}]}}]}}"#
            )),
            with(r#"{"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}"#),
            with(
                r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_result","content":[{"type":"document"}]}]}]}"#,
            ),
            // Sampling fields given as null are not given.
            with(r#"{"temperature":null,"top_k":null,"top_p":null}"#),
        ] {
            assert_eq!(under(ApiVersion::V2026_10_21, &raw), Ok(()), "{raw}");
        }
    }

    fn with_betas(betas: &[&str], raw: &str) -> Result<(), String> {
        let betas: Vec<String> = betas.iter().map(|b| b.to_string()).collect();
        let terms = Terms {
            betas: &betas,
            ..Terms::default()
        };
        validate(raw, &terms).map(drop).map_err(|e| e.message)
    }

    /// Each beta-only field: an extra input without the beta that unlocks it (in its form),
    /// accepted with it.
    #[test]
    fn beta_fields_need_their_beta() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "fallbacks",
                r#"[{"model":"claude-sonnet-4-5"}]"#,
                "server-side-fallback-2026-06-01",
            ),
            (
                "fallbacks",
                r#""default""#,
                "server-side-fallback-2026-07-01",
            ),
            (
                "fallback_credit_token",
                r#""tok""#,
                "fallback-credit-2026-06-01",
            ),
            (
                "fallback_credit_token",
                r#"{"token":"t","mode":"m"}"#,
                "fallback-credit-2026-07-01",
            ),
            (
                "context_management",
                r#"{"edits":[]}"#,
                "context-management-2025-06-27",
            ),
            ("mcp_servers", "[]", "mcp-client-2025-04-04"),
            ("mcp_servers", "[]", "mcp-client-2026-09-15"),
            (
                "compaction",
                r#"{"type":"summarize"}"#,
                "compact-2026-09-04",
            ),
            (
                "thread",
                r#"{"type":"create"}"#,
                "message-threads-2026-08-12",
            ),
            (
                "billing_policy",
                r#"{"bill_to":"self"}"#,
                "user-profiles-billing-2026-10-01",
            ),
            (
                "output_format",
                r#"{"type":"json_schema","schema":{}}"#,
                "structured-outputs-2025-11-13",
            ),
        ];
        for (field, value, beta) in cases {
            let raw = with(&format!(r#"{{"{field}":{value}}}"#));
            let extra = format!("{field}: Extra inputs are not permitted");
            assert_eq!(with_betas(&[], &raw), Err(extra.clone()), "{raw}");
            assert_eq!(
                with_betas(&["files-api-2025-04-14"], &raw),
                Err(extra),
                "{raw}"
            );
            assert_eq!(with_betas(&[beta], &raw), Ok(()), "{beta}: {raw}");
        }
        // Each form of a two-form field has its own beta.
        assert_eq!(
            with_betas(
                &["server-side-fallback-2026-07-01"],
                &with(r#"{"fallbacks":[]}"#)
            ),
            Err("fallbacks: Extra inputs are not permitted".into())
        );
        assert_eq!(
            with_betas(
                &["fallback-credit-2026-06-01"],
                &with(r#"{"fallback_credit_token":{"token":"t"}}"#)
            ),
            Err("fallback_credit_token: Extra inputs are not permitted".into())
        );
        // Unlocked fields keep their shallow shape checks.
        assert_eq!(
            with_betas(&["mcp-client-2025-04-04"], &with(r#"{"mcp_servers":{}}"#)),
            Err("mcp_servers: Input should be a valid list".into())
        );
        assert_eq!(
            with_betas(
                &["context-management-2025-06-27"],
                &with(r#"{"context_management":1}"#)
            ),
            Err("context_management: Input should be a valid dictionary".into())
        );
        // Generally available now: no beta needed.
        assert_eq!(with_betas(&[], &with(r#"{"diagnostics":{}}"#)), Ok(()));
        // Batches cannot bill a user profile.
        assert_eq!(
            with_betas(
                &["user-profiles-billing-2026-10-01"],
                &with(r#"{"billing_policy":{"bill_to":"user_profile"}}"#)
            ),
            Err("billing_policy.bill_to: \"user_profile\" is not supported in the Message Batches API".into())
        );
    }

    #[test]
    fn a_request_may_not_name_another_user_profile_than_its_batch() {
        let check = |header: Option<&str>, body: &str| {
            let terms = Terms {
                user_profile_id: header,
                ..Terms::default()
            };
            validate(&with(body), &terms)
                .map(drop)
                .map_err(|e| e.message)
        };
        let conflict =
            Err("user_profile_id: does not match the anthropic-user-profile-id header".to_owned());
        assert_eq!(
            check(Some("uprof_a"), r#"{"user_profile_id":"uprof_b"}"#),
            conflict
        );
        assert_eq!(
            check(Some("uprof_a"), r#"{"user_profile_id":"uprof_a"}"#),
            Ok(())
        );
        assert_eq!(check(Some("uprof_a"), "{}"), Ok(()));
        assert_eq!(check(None, r#"{"user_profile_id":"uprof_b"}"#), Ok(()));
    }

    #[test]
    fn user_id_limit_counts_characters_not_bytes() {
        let id = "é".repeat(512);
        validate(
            &with(&format!(r#"{{"metadata":{{"user_id":"{id}"}}}}"#)),
            &Terms::default(),
        )
        .unwrap();
    }

    #[test]
    fn huge_max_tokens_saturates_instead_of_failing() {
        let params = validate(
            &with(r#"{"max_tokens":18446744073709551615}"#),
            &Terms::default(),
        )
        .unwrap();
        assert_eq!(params.max_tokens, i64::MAX as u64);
    }

    /// What the JSON parser decides, kept the same however `params` are read: a duplicate key's
    /// last value counts, escapes in keys and strings are decoded, unknown keys are reported in
    /// code-point order, and a document a full parse refuses anywhere (a number beyond `f64`, a
    /// lone surrogate, arrays or objects nested 128 deep) is not a dictionary at all.
    #[test]
    fn reads_the_json_as_a_full_parse_would() {
        let ok = |raw: &str| validate(raw, &Terms::default()).map_err(|e| e.message);
        // A valid body followed by `members`, verbatim (a repeated key's last value counts).
        let with = |members: &str| {
            format!(
                r#"{{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{{"role":"user","content":"Hi"}}],{members}}}"#
            )
        };
        let msgs = r#""messages":[{"role":"user","content":"Hi"}]"#;
        let params = ok(&format!(
            r#"{{"model":7,"model":"m\u00e9","max_tokens":1,"max_tokens":16,{msgs}}}"#
        ))
        .unwrap();
        assert_eq!((params.model.as_str(), params.max_tokens), ("mé", 16));
        assert_eq!(
            ok(&format!(
                r#"{{"model":"m","model":7,"max_tokens":16,{msgs}}}"#
            )),
            Err("model: Input should be a valid string".into())
        );
        let escaped = ok(&format!(
            r#" {{ "mod\u0065l" : "m" , "max_tokens" : 1.6e1 , {msgs} }} "#
        ))
        .unwrap();
        assert_eq!((escaped.model.as_str(), escaped.max_tokens), ("m", 16));
        ok(&with(
            r#""messages":[{"role":"bot","role":"user","content":7,"content":"x"}]"#,
        ))
        .unwrap();
        assert_eq!(
            ok(&with(r#""zeta":1,"alpha":2,"Beta":3"#)),
            Err("Beta: Extra inputs are not permitted".into())
        );
        assert_eq!(
            ok(&with(
                r#""messages":[{"role":"user","content":"x","zz":1,"aa":2}]"#
            )),
            Err("messages.0.aa: Extra inputs are not permitted".into())
        );
        assert_eq!(
            ok(&with(r#""metadata":{"zz":1,"user_id":"u","ab":2}"#)),
            Err("metadata.ab: Extra inputs are not permitted".into())
        );
        assert_eq!(
            ok(&with(r#""stream":false,"stream":true"#)),
            Err("\"stream=True\" is not supported in the Message Batches API".into())
        );
        let deep = format!("{}{}", "[".repeat(130), "]".repeat(130));
        let not_a_dict = Err("params: Input should be a valid dictionary".to_owned());
        for refused in [
            with(r#""tools":[{"name":"t","input_schema":{"maximum":1e400}}]"#),
            with(r#""messages":[{"role":"user","content":"\ud800"}]"#),
            with(r#""tools":[{"name":"t","input_schema":{"\udc00":1}}]"#),
            with(&format!(
                r#""tools":[{{"name":"t","input_schema":{deep}}}]"#
            )),
            format!(r#"{{"model":"m","max_tokens":16,{msgs}}} x"#),
        ] {
            assert_eq!(ok(&refused), not_a_dict, "{refused}");
        }
    }

    #[test]
    fn the_last_of_a_repeated_messages_counts() {
        let turns = r#"[{"role":"user","content":"Hi"}]"#;
        let check = |first: &str, last: &str| {
            let raw =
                format!(r#"{{"model":"m","max_tokens":16,"messages":{first},"messages":{last}}}"#);
            validate(&raw, &Terms::default()).map_err(|e| e.message)
        };
        assert!(check("7", turns).is_ok());
        // A key is compared once its escapes are decoded, as `Value` reads it.
        let escaped =
            format!(r#"{{"model":"m","max_tokens":16,"messages":{turns},"mess\u0061ges":7}}"#);
        assert_eq!(
            validate(&escaped, &Terms::default()).unwrap_err().message,
            "messages: Input should be a valid list"
        );
        assert_eq!(
            check(turns, "7").unwrap_err(),
            "messages: Input should be a valid list"
        );
    }

    /// `cargo test -p batchd-domain --release -- --ignored --nocapture validate_throughput`
    #[test]
    #[ignore = "micro-benchmark; run on demand in --release"]
    fn validate_throughput() {
        let raw = with(
            r#"{"system":"You are terse.","temperature":0.2,"metadata":{"user_id":"u-1"},
                "messages":[{"role":"user","content":"Summarise the following paragraph in one sentence, please: the quick brown fox jumps over the lazy dog."}]}"#,
        );
        // `BENCH_PARAMS_WORDS=400` makes the first turn as long as the bench's 2.5 KB params.
        let words: usize = std::env::var("BENCH_PARAMS_WORDS")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        let raw = if words == 0 {
            raw
        } else {
            let text = "lorem ipsum dolor ".repeat(words / 3);
            with(&format!(
                r#"{{"system":"You are terse.","temperature":0.7,"metadata":{{"user_id":"u-1"}},
                "messages":[{{"role":"user","content":"{text}"}},{{"role":"assistant","content":"{text}"}},
                {{"role":"user","content":[{{"type":"text","text":"{text}"}}]}}]}}"#
            ))
        };
        let n = 200_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(validate(std::hint::black_box(&raw), &Terms::default()).unwrap());
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "validate: {n} in {secs:.3}s = {:.0} requests/s",
            n as f64 / secs
        );
        // What the parts cost, beside what a `Value` tree alone costs (the old first step).
        let time = |what: &str, f: &dyn Fn()| {
            let start = std::time::Instant::now();
            for _ in 0..n {
                f();
            }
            let ns = start.elapsed().as_secs_f64() * 1e9 / n as f64;
            println!("{what}: {ns:.0} ns");
        };
        time("Value tree", &|| {
            std::hint::black_box(serde_json::from_str::<Value>(std::hint::black_box(&raw)).ok());
        });
        time("raw_json::parses", &|| {
            std::hint::black_box(raw_json::parses(std::hint::black_box(&raw)));
        });
        time("Body::parse", &|| {
            std::hint::black_box(Body::parse(std::hint::black_box(&raw)));
        });
    }
}
