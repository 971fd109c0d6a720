//! Test mode's scripted outcomes for the built-in mock: what a workspace's rules, chaos setting
//! and replayed results say one request's answer is, and the registry that holds them.
//!
//! * **Rules** (`PUT /v1/batchd/test/mock/rules`): a `match` (a `custom_id` glob, a `model`
//!   glob, a `text` that the last user message contains; all optional, all must hold) and an
//!   `outcome` (`succeeded` with a `text` or a whole `message`, `errored` with an `error`,
//!   `unanswered`), with an optional `delay_ms` before the answer. The first rule that matches
//!   wins. Parsing names the path of the first failure (`rules.0.outcome.type: ...`), in the
//!   API's `<location>: <message>` form.
//! * **Chaos** (beside the rules): `errored` rows of realistic types spread over the requests no
//!   rule matches, picked by a hash of (seed, `custom_id`) so that one seed always picks the same
//!   requests and the same types.
//! * **Fixtures** (`POST /v1/batchd/test/mock/fixtures`): lines of a results file. A request
//!   whose `custom_id` has a line, or whose `params` equal a line's `params` as JSON values,
//!   gets that line's `result`, byte for byte.
//!
//! [`Scripts`] holds all three per workspace, in memory (a test suite sets them up as it runs;
//! a restart or a reset clears them), and answers [`Scripts::lookup`] in the order of
//! precedence: a fixture, then the first matching rule, then chaos, then nothing (the mock's
//! normal answer).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::raw_json::{self, Object};
use crate::validation::{self, at};
use crate::{ErrorType, Outcome, glob};

/// The longest `delay_ms` a rule may ask for: a scripted answer holds a dispatch slot while it
/// waits, like the mock's latency.
pub const MAX_DELAY_MS: u64 = 600_000;

/// The error types and messages chaos picks from: the server-side failures a batch's rows
/// really show (overloads about twice as often as internal errors).
const CHAOS_ERRORS: [(ErrorType, &str); 3] = [
    (ErrorType::Overloaded, "Overloaded"),
    (ErrorType::Overloaded, "Overloaded"),
    (ErrorType::Api, "Internal server error"),
];

/// Characters that mean something in other glob dialects (classes, braces, escapes) and can
/// never appear in a custom id or a model name: a pattern using them was written for a matcher
/// this is not.
const NOT_GLOB: &[char] = &['[', ']', '{', '}', '\\'];

/// What a scripted request gets instead of the mock's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    /// A fixture's `result` object, recorded byte for byte with its outcome.
    Replay { outcome: Outcome, result: Arc<str> },
    /// A rule's or chaos' answer, after `delay`.
    Answer { answer: Answer, delay: Duration },
}

/// The answer a rule gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A message in the mock's shape with this text as its only block.
    Text(String),
    /// This serialized message object, as given.
    Message(String),
    /// An `errored` row with this error.
    Errored { kind: ErrorType, message: String },
    /// Never answered: the request ends `expired` at expiry, or `canceled` on cancel.
    Unanswered,
}

/// One request as the scripts see it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub custom_id: &'a str,
    pub model: &'a str,
    /// The request's `params` as stored (the client's JSON), for fixtures matched by params and
    /// the last user message's text.
    pub params: &'a str,
}

/// A rule's condition; a field left out always holds.
#[derive(Debug, Clone, Default, PartialEq)]
struct Match {
    custom_id: Option<String>,
    model: Option<String>,
    text: Option<String>,
}

impl Match {
    fn holds(&self, request: &Request<'_>) -> bool {
        self.custom_id
            .as_deref()
            .is_none_or(|g| glob::matches(g, request.custom_id))
            && self
                .model
                .as_deref()
                .is_none_or(|g| glob::matches(g, request.model))
            && self
                .text
                .as_deref()
                .is_none_or(|t| last_user_text(request.params).contains(t))
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    matcher: Match,
    answer: Answer,
    delay: Duration,
}

/// The seeded spread of `errored` rows over requests no rule matches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chaos {
    pub seed: u64,
    /// The share of those requests that error, from 0 to 1.
    pub errored_rate: f64,
}

impl Chaos {
    /// The error chaos gives `custom_id`, if any: the same for one seed every time.
    pub fn pick(&self, custom_id: &str) -> Option<(ErrorType, &'static str)> {
        let digest = Sha256::new()
            .chain_update(self.seed.to_le_bytes())
            .chain_update(custom_id.as_bytes())
            .finalize();
        let word = |i: usize| u64::from_le_bytes(digest[i..i + 8].try_into().expect("8 bytes"));
        // The top 53 bits as a uniform fraction in [0, 1).
        let draw = (word(0) >> 11) as f64 / (1u64 << 53) as f64;
        (draw < self.errored_rate).then(|| {
            let (kind, message) = CHAOS_ERRORS[(word(8) % CHAOS_ERRORS.len() as u64) as usize];
            (kind, message)
        })
    }
}

/// A workspace's rules and chaos, with the JSON they were given in (what `GET` answers).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSet {
    rules: Vec<Rule>,
    chaos: Option<Chaos>,
    rules_json: Vec<Value>,
    chaos_json: Value,
}

impl RuleSet {
    /// Parses a rules body, `{"rules": [...], "chaos": {...}}`; the error is the 400's message,
    /// naming the path of the first failure.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| format!("The request body is not valid JSON: {e}"))?;
        let Value::Object(mut fields) = value else {
            return Err(validation::NOT_DICT.to_owned());
        };
        if let Some(extra) = fields
            .keys()
            .find(|k| !["rules", "chaos"].contains(&k.as_str()))
        {
            return Err(at(extra, validation::EXTRA));
        }
        let rules_json = match fields.remove("rules") {
            Some(Value::Array(rules)) => rules,
            Some(_) => return Err(at("rules", validation::NOT_LIST)),
            None => return Err(at("rules", validation::REQUIRED)),
        };
        let rules = rules_json
            .iter()
            .enumerate()
            .map(|(i, rule)| parse_rule(&format!("rules.{i}"), rule))
            .collect::<Result<_, _>>()?;
        let chaos_json = fields.remove("chaos").unwrap_or(Value::Null);
        let chaos = match &chaos_json {
            Value::Null => None,
            chaos => Some(parse_chaos(chaos)?),
        };
        Ok(Self {
            rules,
            chaos,
            rules_json,
            chaos_json,
        })
    }

    /// The rules as given.
    pub fn rules_json(&self) -> &[Value] {
        &self.rules_json
    }

    /// The chaos setting as given, `null` when there is none.
    pub fn chaos_json(&self) -> &Value {
        &self.chaos_json
    }

    fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.chaos.is_none()
    }
}

fn object<'v>(path: &str, value: &'v Value) -> Result<&'v Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| at(path, validation::NOT_DICT))
}

fn only_keys(path: &str, fields: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => Err(at(format!("{path}.{extra}"), validation::EXTRA)),
        None => Ok(()),
    }
}

fn string<'v>(path: &str, value: &'v Value) -> Result<&'v str, String> {
    value
        .as_str()
        .ok_or_else(|| at(path, validation::NOT_STRING))
}

fn glob_of(path: &str, value: &Value) -> Result<String, String> {
    let glob = string(path, value)?;
    if glob.is_empty() {
        return Err(at(path, "a glob may not be empty"));
    }
    if glob.contains(NOT_GLOB) {
        return Err(at(
            path,
            "Invalid glob: only `*` (any run of characters) and `?` (one character) are special",
        ));
    }
    Ok(glob.to_owned())
}

fn parse_rule(path: &str, rule: &Value) -> Result<Rule, String> {
    let fields = object(path, rule)?;
    only_keys(path, fields, &["match", "outcome"])?;
    let matcher = match fields.get("match") {
        None | Some(Value::Null) => Match::default(),
        Some(m) => {
            let path = format!("{path}.match");
            let m = object(&path, m)?;
            only_keys(&path, m, &["custom_id", "model", "text"])?;
            Match {
                custom_id: m
                    .get("custom_id")
                    .map(|g| glob_of(&format!("{path}.custom_id"), g))
                    .transpose()?,
                model: m
                    .get("model")
                    .map(|g| glob_of(&format!("{path}.model"), g))
                    .transpose()?,
                text: m
                    .get("text")
                    .map(|t| string(&format!("{path}.text"), t).map(str::to_owned))
                    .transpose()?,
            }
        }
    };
    let path = format!("{path}.outcome");
    let outcome = object(
        &path,
        fields
            .get("outcome")
            .ok_or_else(|| at(&path, validation::REQUIRED))?,
    )?;
    let kind = match outcome.get("type") {
        None => return Err(at(format!("{path}.type"), validation::REQUIRED)),
        Some(kind) => string(&format!("{path}.type"), kind)?,
    };
    let answer = match kind {
        "succeeded" => {
            only_keys(&path, outcome, &["type", "text", "message", "delay_ms"])?;
            match (outcome.get("text"), outcome.get("message")) {
                (Some(text), None) => {
                    Answer::Text(string(&format!("{path}.text"), text)?.to_owned())
                }
                (None, Some(message)) => {
                    let message = object(&format!("{path}.message"), message)?;
                    Answer::Message(serde_json::to_string(message).map_err(|e| e.to_string())?)
                }
                (None, None) => {
                    return Err(at(
                        format!("{path}.text"),
                        "Field required (or give a whole `message`)",
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(at(
                        format!("{path}.message"),
                        "give either `text` or `message`, not both",
                    ));
                }
            }
        }
        "errored" => {
            only_keys(&path, outcome, &["type", "error", "delay_ms"])?;
            let error_path = format!("{path}.error");
            let error = object(
                &error_path,
                outcome
                    .get("error")
                    .ok_or_else(|| at(&error_path, validation::REQUIRED))?,
            )?;
            only_keys(&error_path, error, &["type", "message"])?;
            let type_path = format!("{error_path}.type");
            let kind = string(
                &type_path,
                error
                    .get("type")
                    .ok_or_else(|| at(&type_path, validation::REQUIRED))?,
            )?;
            let kind = ErrorType::parse(kind).ok_or_else(|| {
                at(
                    &type_path,
                    "Input should be one of the API's error types (e.g. 'overloaded_error', \
                     'api_error', 'invalid_request_error', 'rate_limit_error')",
                )
            })?;
            let message_path = format!("{error_path}.message");
            let message = string(
                &message_path,
                error
                    .get("message")
                    .ok_or_else(|| at(&message_path, validation::REQUIRED))?,
            )?;
            Answer::Errored {
                kind,
                message: message.to_owned(),
            }
        }
        "unanswered" => {
            only_keys(&path, outcome, &["type"])?;
            Answer::Unanswered
        }
        _ => {
            return Err(at(
                format!("{path}.type"),
                "Input should be 'succeeded', 'errored' or 'unanswered'",
            ));
        }
    };
    let delay_ms = match outcome.get("delay_ms") {
        None => 0,
        Some(delay) => whole(&format!("{path}.delay_ms"), delay, MAX_DELAY_MS)?,
    };
    Ok(Rule {
        matcher,
        answer,
        delay: Duration::from_millis(delay_ms),
    })
}

/// A whole number from 0 to `max` (a whole float counts, as Pydantic reads it).
fn whole(path: &str, value: &Value, max: u64) -> Result<u64, String> {
    let Value::Number(n) = value else {
        return Err(at(path, validation::NOT_INT));
    };
    if let Some(u) = n.as_u64() {
        return if u > max {
            Err(at(path, validation::at_most(max)))
        } else {
            Ok(u)
        };
    }
    match n.as_f64() {
        Some(f) if f.fract() != 0.0 => Err(at(path, validation::FRACTIONAL)),
        Some(f) if f < 0.0 => Err(at(path, validation::at_least(0))),
        Some(f) if f > max as f64 => Err(at(path, validation::at_most(max))),
        Some(f) => Ok(f as u64),
        None => Err(at(path, validation::NOT_INT)),
    }
}

fn parse_chaos(value: &Value) -> Result<Chaos, String> {
    let fields = object("chaos", value)?;
    only_keys("chaos", fields, &["seed", "errored_rate"])?;
    let seed = whole(
        "chaos.seed",
        fields
            .get("seed")
            .ok_or_else(|| at("chaos.seed", validation::REQUIRED))?,
        u64::MAX,
    )?;
    let errored_rate = match fields.get("errored_rate") {
        None => return Err(at("chaos.errored_rate", validation::REQUIRED)),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(_) => return Err(at("chaos.errored_rate", validation::NOT_NUMBER)),
    };
    if !(0.0..=1.0).contains(&errored_rate) {
        return Err(at(
            "chaos.errored_rate",
            "Input should be between 0 and 1 (a share of the requests)",
        ));
    }
    Ok(Chaos { seed, errored_rate })
}

/// The text of the last user message: its string content, or its text blocks joined by
/// newlines; empty when there is none.
pub fn last_user_text(params: &str) -> String {
    let content = Object::parse(params)
        .and_then(|body| body.get("messages"))
        .and_then(raw_json::array)
        .and_then(|messages| {
            messages
                .into_iter()
                .rev()
                .filter_map(Object::of)
                .find(|m| m.get("role").and_then(raw_json::string).as_deref() == Some("user"))
        })
        .and_then(|m| m.get("content"));
    let Some(content) = content else {
        return String::new();
    };
    if let Some(text) = raw_json::string(content) {
        return text.into_owned();
    }
    raw_json::array(content)
        .unwrap_or_default()
        .into_iter()
        .filter_map(Object::of)
        .filter(|b| b.get("type").and_then(raw_json::string).as_deref() == Some("text"))
        .filter_map(|b| b.get("text").and_then(raw_json::string))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A replayed result.
#[derive(Debug, Clone, PartialEq)]
struct Replay {
    outcome: Outcome,
    result: Arc<str>,
}

/// One fixture line: a results line, optionally with the request's `params`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    custom_id: Option<String>,
    /// The canonical text of the line's `params` (keys sorted, no spaces).
    params: Option<String>,
    replay: Replay,
}

/// The canonical text of a JSON value: `serde_json`'s maps are sorted by key, so two values
/// equal as JSON values print the same.
fn canonical(value: &Value) -> String {
    value.to_string()
}

/// Parses a fixtures body (JSONL in the format of a results file), all or nothing; the error
/// names the line (from 1). Blank lines are skipped.
pub fn parse_fixtures(body: &[u8]) -> Result<Vec<Fixture>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "The body is not valid UTF-8".to_owned())?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| parse_fixture(line).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

fn parse_fixture(line: &str) -> Result<Fixture, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line<'a> {
        #[serde(default)]
        custom_id: Option<String>,
        #[serde(default)]
        params: Option<Value>,
        #[serde(borrow)]
        result: &'a RawValue,
    }
    let parsed: Line<'_> = serde_json::from_str(line).map_err(|e| e.to_string())?;
    if parsed.custom_id.is_none() && parsed.params.is_none() {
        return Err(at(
            "custom_id",
            "Field required (or give the request's `params`)",
        ));
    }
    let result: Value = serde_json::from_str(parsed.result.get()).map_err(|e| e.to_string())?;
    let result = object("result", &result)?;
    let kind = string(
        "result.type",
        result
            .get("type")
            .ok_or_else(|| at("result.type", validation::REQUIRED))?,
    )?;
    let (outcome, needs) = match kind {
        "succeeded" => (Outcome::Succeeded, Some("message")),
        "errored" => (Outcome::Errored, Some("error")),
        "canceled" => (Outcome::Canceled, None),
        "expired" => (Outcome::Expired, None),
        _ => {
            return Err(at(
                "result.type",
                "Input should be 'succeeded', 'errored', 'canceled' or 'expired'",
            ));
        }
    };
    if let Some(field) = needs {
        object(
            &format!("result.{field}"),
            result
                .get(field)
                .ok_or_else(|| at(format!("result.{field}"), validation::REQUIRED))?,
        )?;
    }
    Ok(Fixture {
        custom_id: parsed.custom_id,
        params: parsed.params.as_ref().map(canonical),
        replay: Replay {
            outcome,
            result: Arc::from(parsed.result.get()),
        },
    })
}

/// A workspace's replayed results, by `custom_id` and by canonical `params`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fixtures {
    by_custom_id: HashMap<String, Replay>,
    by_params: HashMap<String, Replay>,
}

impl Fixtures {
    fn is_empty(&self) -> bool {
        self.by_custom_id.is_empty() && self.by_params.is_empty()
    }

    fn find(&self, request: &Request<'_>) -> Option<&Replay> {
        if let Some(replay) = self.by_custom_id.get(request.custom_id) {
            return Some(replay);
        }
        if self.by_params.is_empty() {
            return None;
        }
        let params: Value = serde_json::from_str(request.params).ok()?;
        self.by_params.get(&canonical(&params))
    }
}

/// Everything scripted for one workspace.
#[derive(Debug, Clone, Default, PartialEq)]
struct Workspace {
    rules: RuleSet,
    fixtures: Fixtures,
}

impl Workspace {
    fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.fixtures.is_empty()
    }
}

/// The scripts of every workspace, shared by the test routes (which write them) and the
/// dispatcher (which reads them for every request a mock answers).
#[derive(Debug, Default)]
pub struct Scripts {
    // Copy on write: a lookup clones an `Arc` under the read lock and never blocks a writer for
    // longer than that.
    workspaces: RwLock<HashMap<String, Arc<Workspace>>>,
}

impl Scripts {
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, workspace: &str) -> Option<Arc<Workspace>> {
        let map = self
            .workspaces
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(workspace).cloned()
    }

    fn update(&self, workspace: &str, change: impl FnOnce(&mut Workspace)) {
        let mut map = self
            .workspaces
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut scripts = map
            .get(workspace)
            .map(|w| Workspace::clone(w))
            .unwrap_or_default();
        change(&mut scripts);
        if scripts.is_empty() {
            map.remove(workspace);
        } else {
            map.insert(workspace.to_owned(), Arc::new(scripts));
        }
    }

    /// Replaces `workspace`'s rules and chaos.
    pub fn put_rules(&self, workspace: &str, rules: RuleSet) {
        self.update(workspace, |w| w.rules = rules);
    }

    /// `workspace`'s rules and chaos (none when never put).
    pub fn rules(&self, workspace: &str) -> RuleSet {
        self.get(workspace)
            .map(|w| w.rules.clone())
            .unwrap_or_default()
    }

    /// Adds fixtures to `workspace`'s; a later line for the same `custom_id` or `params`
    /// replaces an earlier one. Returns how many lines were loaded.
    pub fn load_fixtures(&self, workspace: &str, fixtures: Vec<Fixture>) -> usize {
        let loaded = fixtures.len();
        self.update(workspace, |w| {
            for fixture in fixtures {
                if let Some(custom_id) = fixture.custom_id {
                    w.fixtures
                        .by_custom_id
                        .insert(custom_id, fixture.replay.clone());
                }
                if let Some(params) = fixture.params {
                    w.fixtures.by_params.insert(params, fixture.replay);
                }
            }
        });
        loaded
    }

    /// Forgets everything scripted for `workspace` (a reset).
    pub fn clear(&self, workspace: &str) {
        self.update(workspace, |w| *w = Workspace::default());
    }

    /// What `request` of `workspace` gets: a fixture, else the first matching rule, else
    /// chaos, else `None` (the mock's own answer).
    pub fn lookup(&self, workspace: &str, request: &Request<'_>) -> Option<Scripted> {
        let scripts = self.get(workspace)?;
        if let Some(replay) = scripts.fixtures.find(request) {
            return Some(Scripted::Replay {
                outcome: replay.outcome,
                result: replay.result.clone(),
            });
        }
        if let Some(rule) = scripts
            .rules
            .rules
            .iter()
            .find(|r| r.matcher.holds(request))
        {
            return Some(Scripted::Answer {
                answer: rule.answer.clone(),
                delay: rule.delay,
            });
        }
        let (kind, message) = scripts.rules.chaos?.pick(request.custom_id)?;
        Some(Scripted::Answer {
            answer: Answer::Errored {
                kind,
                message: message.to_owned(),
            },
            delay: Duration::ZERO,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Result<RuleSet, String> {
        RuleSet::parse(json.as_bytes())
    }

    fn body(model: &str, text: &str) -> Map<String, Value> {
        serde_json::json!({
            "model": model,
            "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "earlier"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": text}]}
            ]
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn look(
        scripts: &Scripts,
        ws: &str,
        custom_id: &str,
        body: &Map<String, Value>,
    ) -> Option<Scripted> {
        let params = Value::Object(body.clone()).to_string();
        scripts.lookup(
            ws,
            &Request {
                custom_id,
                model: body["model"].as_str().unwrap(),
                params: &params,
            },
        )
    }

    fn answer(answer: Answer) -> Option<Scripted> {
        Some(Scripted::Answer {
            answer,
            delay: Duration::ZERO,
        })
    }

    const ISSUE_RULES: &str = r#"{"rules": [
      {"match": {"custom_id": "boom-*"}, "outcome": {"type": "errored", "error": {"type": "overloaded_error", "message": "Overloaded"}}},
      {"match": {"model": "claude-opus-*", "text": "refund"}, "outcome": {"type": "succeeded", "text": "REFUND APPROVED"}},
      {"match": {"custom_id": "slow-*"}, "outcome": {"type": "unanswered"}},
      {"match": {"custom_id": "late-?"}, "outcome": {"type": "succeeded", "message": {"id": "msg_x", "content": []}, "delay_ms": 250}}
    ]}"#;

    #[test]
    fn the_first_matching_rule_wins_and_every_field_must_hold() {
        let scripts = Scripts::new();
        scripts.put_rules("ws", rules(ISSUE_RULES).unwrap());
        let opus = body("claude-opus-4-1", "I want a refund please");
        let errored = answer(Answer::Errored {
            kind: ErrorType::Overloaded,
            message: "Overloaded".into(),
        });
        assert_eq!(
            look(&scripts, "ws", "boom-1", &opus),
            errored,
            "first rule first"
        );
        assert_eq!(
            look(&scripts, "ws", "a", &opus),
            answer(Answer::Text("REFUND APPROVED".into()))
        );
        assert_eq!(
            look(&scripts, "ws", "a", &body("claude-sonnet-4", "refund")),
            None,
            "model must hold"
        );
        assert_eq!(
            look(&scripts, "ws", "a", &body("claude-opus-4", "hello")),
            None,
            "text must hold"
        );
        assert_eq!(
            look(&scripts, "ws", "slow-9", &opus),
            answer(Answer::Text("REFUND APPROVED".into()))
        );
        let sonnet = body("claude-sonnet-4", "hello");
        assert_eq!(
            look(&scripts, "ws", "slow-9", &sonnet),
            answer(Answer::Unanswered)
        );
        assert_eq!(
            look(&scripts, "ws", "late-1", &sonnet),
            Some(Scripted::Answer {
                answer: Answer::Message(r#"{"content":[],"id":"msg_x"}"#.into()),
                delay: Duration::from_millis(250),
            })
        );
        assert_eq!(
            look(&scripts, "ws", "late-12", &sonnet),
            None,
            "? is one character"
        );
        assert_eq!(
            look(&scripts, "other", "boom-1", &opus),
            None,
            "workspaces are apart"
        );
        let back = scripts.rules("ws");
        assert_eq!(back.rules_json().len(), 4);
        assert_eq!(back.chaos_json(), &Value::Null);
    }

    #[test]
    fn text_matches_the_last_user_message_only() {
        let b = body("m", "second one");
        assert_eq!(
            last_user_text(&Value::Object(b.clone()).to_string()),
            "second one"
        );
        let scripts = Scripts::new();
        scripts.put_rules(
            "ws",
            rules(r#"{"rules":[{"match":{"text":"earlier"},"outcome":{"type":"unanswered"}}]}"#)
                .unwrap(),
        );
        assert_eq!(look(&scripts, "ws", "a", &b), None);
        let plain = r#"{"messages":[{"role":"user","content":"say earlier"}]}"#;
        assert_eq!(last_user_text(plain), "say earlier");
        assert_eq!(last_user_text("{}"), "");
    }

    #[test]
    fn parse_errors_name_the_path() {
        for (json, error) in [
            ("[]", validation::NOT_DICT.to_owned()),
            ("{}", "rules: Field required".to_owned()),
            (r#"{"rules":{}}"#, "rules: Input should be a valid list".to_owned()),
            (r#"{"rules":[],"x":1}"#, "x: Extra inputs are not permitted".to_owned()),
            (r#"{"rules":[1]}"#, "rules.0: Input should be a valid dictionary".to_owned()),
            (r#"{"rules":[{"match":{}}]}"#, "rules.0.outcome: Field required".to_owned()),
            (
                r#"{"rules":[{"outcome":{"type":"unanswered"}},{"outcome":{"type":"exploded"}}]}"#,
                "rules.1.outcome.type: Input should be 'succeeded', 'errored' or 'unanswered'".to_owned(),
            ),
            (r#"{"rules":[{"outcome":{}}]}"#, "rules.0.outcome.type: Field required".to_owned()),
            (
                r#"{"rules":[{"match":{"custom_id":"a[0-9]"},"outcome":{"type":"unanswered"}}]}"#,
                "rules.0.match.custom_id: Invalid glob: only `*` (any run of characters) and `?` (one character) are special".to_owned(),
            ),
            (
                r#"{"rules":[{"match":{"model":""},"outcome":{"type":"unanswered"}}]}"#,
                "rules.0.match.model: a glob may not be empty".to_owned(),
            ),
            (
                r#"{"rules":[{"match":{"text":3},"outcome":{"type":"unanswered"}}]}"#,
                "rules.0.match.text: Input should be a valid string".to_owned(),
            ),
            (
                r#"{"rules":[{"match":{"params":3},"outcome":{"type":"unanswered"}}]}"#,
                "rules.0.match.params: Extra inputs are not permitted".to_owned(),
            ),
            (
                r#"{"rules":[{"outcome":{"type":"succeeded"}}]}"#,
                "rules.0.outcome.text: Field required (or give a whole `message`)".to_owned(),
            ),
            (
                r#"{"rules":[{"outcome":{"type":"succeeded","text":"a","message":{}}}]}"#,
                "rules.0.outcome.message: give either `text` or `message`, not both".to_owned(),
            ),
            (
                r#"{"rules":[{"outcome":{"type":"succeeded","message":"hi"}}]}"#,
                "rules.0.outcome.message: Input should be a valid dictionary".to_owned(),
            ),
            (
                r#"{"rules":[{"outcome":{"type":"errored"}}]}"#,
                "rules.0.outcome.error: Field required".to_owned(),
            ),
            (
                r#"{"rules":[{"outcome":{"type":"errored","error":{"type":"oops","message":"m"}}}]}"#,
                "rules.0.outcome.error.type: Input should be one of the API's error types (e.g. 'overloaded_error', 'api_error', 'invalid_request_error', 'rate_limit_error')".to_owned(),
            ),
            (
                r#"{"rules":[{"outcome":{"type":"errored","error":{"type":"api_error"}}}]}"#,
                "rules.0.outcome.error.message: Field required".to_owned(),
            ),
            (
                r#"{"rules":[{"outcome":{"type":"unanswered","delay_ms":5}}]}"#,
                "rules.0.outcome.delay_ms: Extra inputs are not permitted".to_owned(),
            ),
            (
                r#"{"rules":[{"outcome":{"type":"succeeded","text":"a","delay_ms":-1}}]}"#,
                "rules.0.outcome.delay_ms: Input should be greater than or equal to 0".to_owned(),
            ),
            (
                r#"{"rules":[{"outcome":{"type":"succeeded","text":"a","delay_ms":1.5}}]}"#,
                format!("rules.0.outcome.delay_ms: {}", validation::FRACTIONAL),
            ),
            (
                r#"{"rules":[{"outcome":{"type":"succeeded","text":"a","delay_ms":600001}}]}"#,
                "rules.0.outcome.delay_ms: Input should be less than or equal to 600000".to_owned(),
            ),
            (r#"{"rules":[],"chaos":{"seed":1}}"#, "chaos.errored_rate: Field required".to_owned()),
            (
                r#"{"rules":[],"chaos":{"seed":1,"errored_rate":1.5}}"#,
                "chaos.errored_rate: Input should be between 0 and 1 (a share of the requests)".to_owned(),
            ),
            (
                r#"{"rules":[],"chaos":{"seed":-1,"errored_rate":0.5}}"#,
                "chaos.seed: Input should be greater than or equal to 0".to_owned(),
            ),
            (r#"{"rules":[],"chaos":[]}"#, "chaos: Input should be a valid dictionary".to_owned()),
        ] {
            assert_eq!(rules(json).unwrap_err(), error, "{json}");
        }
        assert!(
            rules("nope")
                .unwrap_err()
                .starts_with("The request body is not valid JSON")
        );
    }

    #[test]
    fn chaos_is_deterministic_per_seed_and_custom_id() {
        let chaos = |seed| Chaos {
            seed,
            errored_rate: 0.3,
        };
        let picks = |seed| {
            (0..400)
                .map(|i| chaos(seed).pick(&format!("req-{i}")))
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(42), picks(42));
        assert_ne!(picks(42), picks(43));
        let errored = picks(42).iter().filter(|p| p.is_some()).count();
        assert!((80..=160).contains(&errored), "about 30% of 400: {errored}");
        assert!(
            picks(42)
                .iter()
                .flatten()
                .any(|p| p.0 == ErrorType::Overloaded)
        );
        assert!(picks(42).iter().flatten().any(|p| p.0 == ErrorType::Api));
        let none = Chaos {
            seed: 1,
            errored_rate: 0.0,
        };
        let all = Chaos {
            seed: 1,
            errored_rate: 1.0,
        };
        assert!((0..100).all(|i| none.pick(&i.to_string()).is_none()));
        assert!((0..100).all(|i| all.pick(&i.to_string()).is_some()));
    }

    #[test]
    fn chaos_applies_only_where_no_rule_matches() {
        let scripts = Scripts::new();
        scripts.put_rules(
            "ws",
            rules(r#"{"rules":[{"match":{"custom_id":"keep-*"},"outcome":{"type":"succeeded","text":"kept"}}],
                      "chaos":{"seed":7,"errored_rate":1.0}}"#)
            .unwrap(),
        );
        let b = body("m", "hi");
        assert_eq!(
            look(&scripts, "ws", "keep-1", &b),
            answer(Answer::Text("kept".into()))
        );
        assert!(matches!(
            look(&scripts, "ws", "other", &b),
            Some(Scripted::Answer {
                answer: Answer::Errored { .. },
                ..
            })
        ));
        assert_eq!(scripts.rules("ws").chaos_json()["seed"], 7);
    }

    const SUCCEEDED: &str = r#"{"type":"succeeded","message":{"id":"msg_1","type":"message","content":[{"type":"text","text":"hi"}]}}"#;

    #[test]
    fn fixtures_replay_by_custom_id_or_by_params_and_come_first() {
        let scripts = Scripts::new();
        scripts.put_rules("ws", rules(ISSUE_RULES).unwrap());
        let b = body("claude-opus-4", "refund");
        let params = Value::Object(b.clone());
        let jsonl = format!(
            "{{\"custom_id\":\"boom-1\",\"result\":{SUCCEEDED}}}\n\n\
             {{\"params\":{params},\"result\":{{\"type\":\"expired\"}}}}\n\
             {{\"custom_id\":\"c\",\"result\": {{ \"type\" : \"canceled\" }}}}\n"
        );
        let fixtures = parse_fixtures(jsonl.as_bytes()).unwrap();
        assert_eq!(scripts.load_fixtures("ws", fixtures), 3);
        assert_eq!(
            look(&scripts, "ws", "boom-1", &body("m", "x")),
            Some(Scripted::Replay {
                outcome: Outcome::Succeeded,
                result: SUCCEEDED.into()
            }),
            "a fixture beats the first rule"
        );
        // Any custom id, params equal as JSON values whatever their key order.
        let raw = r#"{"messages":[{"role":"user","content":"earlier"},{"role":"assistant","content":"ok"},{"role":"user","content":[{"text":"refund","type":"text"}]}],"max_tokens":10,"model":"claude-opus-4"}"#;
        assert_eq!(
            scripts.lookup(
                "ws",
                &Request {
                    custom_id: "random-77",
                    model: "claude-opus-4",
                    params: raw,
                }
            ),
            Some(Scripted::Replay {
                outcome: Outcome::Expired,
                result: r#"{"type":"expired"}"#.into()
            })
        );
        assert_eq!(
            look(&scripts, "ws", "c", &body("m", "x")),
            Some(Scripted::Replay {
                outcome: Outcome::Canceled,
                result: r#"{ "type" : "canceled" }"#.into()
            }),
            "byte for byte, spaces included"
        );
        scripts.clear("ws");
        assert_eq!(look(&scripts, "ws", "boom-1", &b), None, "cleared");
        assert_eq!(scripts.rules("ws"), RuleSet::default());
    }

    #[test]
    fn fixture_lines_are_checked_and_errors_name_the_line() {
        let ok = format!("{{\"custom_id\":\"a\",\"result\":{SUCCEEDED}}}");
        for (line2, error) in [
            (
                r#"{"result":{"type":"expired"}}"#,
                "line 2: custom_id: Field required (or give the request's `params`)",
            ),
            (
                r#"{"custom_id":"b","result":{"type":"done"}}"#,
                "line 2: result.type: Input should be 'succeeded', 'errored', 'canceled' or 'expired'",
            ),
            (
                r#"{"custom_id":"b","result":{"type":"succeeded"}}"#,
                "line 2: result.message: Field required",
            ),
            (
                r#"{"custom_id":"b","result":{"type":"errored","error":"x"}}"#,
                "line 2: result.error: Input should be a valid dictionary",
            ),
            (
                r#"{"custom_id":"b","result":[]}"#,
                "line 2: result: Input should be a valid dictionary",
            ),
        ] {
            let body = format!("{ok}\n{line2}\n");
            assert_eq!(
                parse_fixtures(body.as_bytes()).unwrap_err(),
                error,
                "{line2}"
            );
        }
        for line2 in [
            r#"{"custom_id":"b"}"#,
            r#"{"custom_id":"b","result":{"type":"expired"},"x":1}"#,
            "not json",
        ] {
            let body = format!("{ok}\n{line2}");
            assert!(
                parse_fixtures(body.as_bytes())
                    .unwrap_err()
                    .starts_with("line 2: "),
                "{line2}"
            );
        }
        assert_eq!(parse_fixtures(b"").unwrap(), vec![]);
    }
}
