//! What the crash test's clients were told, and the checks of an ended batch against it.
//!
//! Every create attempt gets a tag; its requests are `{tag}-g{i}` (valid params) or `{tag}-b{i}`
//! (`max_tokens: 0`, so the row must end `errored`). A batch found in the list can so always be
//! traced back to the attempt that created it, acknowledged or not.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::server::{Rng, counts, parse_jsonl};

/// What became of a create call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateState {
    /// Sent; no answer yet.
    InFlight,
    /// 200 with this batch id.
    Acked(String),
    /// An HTTP error status (only expected for deliberately invalid bodies).
    Refused(u16),
    /// The connection failed or the answer could not be read: the batch may or may not exist.
    Lost,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub tag: String,
    pub n: usize,
    /// Indices whose params are invalid.
    pub bad: HashSet<usize>,
    /// The body repeats a custom_id: the create must be refused and nothing may ever show.
    pub must_refuse: bool,
    pub state: CreateState,
}

impl Attempt {
    pub fn new(tag: String, rng: &mut Rng) -> Self {
        let n = match rng.range(0, 99) {
            0..=49 => rng.range(1, 20),
            50..=84 => rng.range(21, 400),
            _ => rng.range(401, 3_000),
        } as usize;
        let bad_pct = rng.range(0, 20);
        let bad = (0..n).filter(|_| rng.range(0, 99) < bad_pct).collect();
        let must_refuse = n >= 2 && rng.chance(0.04);
        Self {
            tag,
            n,
            bad,
            must_refuse,
            state: CreateState::InFlight,
        }
    }

    pub fn custom_id(&self, i: usize) -> String {
        if self.bad.contains(&i) {
            format!("{}-b{i}", self.tag)
        } else {
            format!("{}-g{i}", self.tag)
        }
    }

    /// The create body.
    pub fn body(&self) -> Vec<u8> {
        let requests: Vec<Value> = (0..self.n)
            .map(|i| {
                // A refused body repeats the first custom_id at the end.
                let custom_id = if self.must_refuse && i == self.n - 1 {
                    self.custom_id(0)
                } else {
                    self.custom_id(i)
                };
                let max_tokens = if self.bad.contains(&i) { 0 } else { 32 };
                json!({
                    "custom_id": custom_id,
                    "params": {
                        "model": "claude-haiku-4-5",
                        "max_tokens": max_tokens,
                        "messages": [{"role": "user", "content": format!("Crash test request {i}")}]
                    }
                })
            })
            .collect();
        serde_json::to_vec(&json!({ "requests": requests })).unwrap()
    }

    pub fn expected_ids(&self) -> HashSet<String> {
        (0..self.n).map(|i| self.custom_id(i)).collect()
    }
}

/// How far a cancel or delete got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Call {
    #[default]
    None,
    /// Sent, answer lost: it may or may not have happened.
    Attempted,
    /// Answered 200.
    Acked,
}

/// An acknowledged batch.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub attempt: usize,
    pub n: usize,
    pub cancel: Call,
    pub delete: Call,
    /// Seen `ended` (or refused a cancel as already ended).
    pub ended_seen: bool,
    /// Results downloaded and checked before a delete.
    pub checked: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub attempts: Vec<Attempt>,
    pub by_tag: HashMap<String, usize>,
    pub batches: HashMap<String, Tracked>,
    /// Acknowledged ids in creation order.
    pub ids: Vec<String>,
    pub violations: Vec<String>,
    pub requests_checked: usize,
    pub batches_checked: usize,
    pub cancels_acked: usize,
    pub deletes_acked: usize,
    pub polls: usize,
}

impl Ledger {
    pub fn add_attempt(&mut self, attempt: Attempt) -> usize {
        let i = self.attempts.len();
        self.by_tag.insert(attempt.tag.clone(), i);
        self.attempts.push(attempt);
        i
    }

    pub fn violation(&mut self, msg: String) {
        eprintln!("VIOLATION: {msg}");
        self.violations.push(msg);
    }

    /// Requests still to be processed, as far as the clients know: the brake on creates.
    pub fn outstanding(&self) -> usize {
        let unended: usize = self
            .batches
            .values()
            .filter(|b| !b.ended_seen && b.cancel != Call::Acked)
            .map(|b| b.n)
            .sum();
        let in_flight: usize = self
            .attempts
            .iter()
            .filter(|a| a.state == CreateState::InFlight)
            .map(|a| a.n)
            .sum();
        unended + in_flight
    }
}

/// Checks an ended batch (its JSON and its results download) against the attempt that created
/// it. `cancel` says whether a cancel may have reached it. Returns the number of result lines.
pub fn check_ended(
    batch: &Value,
    results: &str,
    attempt: &Attempt,
    cancel: Call,
) -> Result<usize, String> {
    let id = batch["id"].as_str().unwrap_or("?");
    let ctx = |msg: String| format!("batch {id} (attempt {}): {msg}", attempt.tag);
    if batch["processing_status"] != "ended" {
        return Err(ctx(format!("not ended: {batch}")));
    }
    if !batch["ended_at"].is_string() || !batch["results_url"].is_string() {
        return Err(ctx(format!("ended without ended_at/results_url: {batch}")));
    }
    let [processing, succeeded, errored, canceled, expired] =
        counts(batch).ok_or_else(|| ctx(format!("bad request_counts: {batch}")))?;
    let n = attempt.n as u64;
    if processing != 0 || succeeded + errored + canceled + expired != n {
        return Err(ctx(format!("request_counts do not sum to {n}: {batch}")));
    }
    if expired != 0 {
        return Err(ctx(format!("expired requests with a 24 h expiry: {batch}")));
    }
    match cancel {
        Call::Acked if !batch["cancel_initiated_at"].is_string() => {
            return Err(ctx(format!(
                "cancel was acknowledged but cancel_initiated_at is null: {batch}"
            )));
        }
        Call::None if !batch["cancel_initiated_at"].is_null() || canceled != 0 => {
            return Err(ctx(format!("never canceled, yet: {batch}")));
        }
        _ => {}
    }

    let lines = parse_jsonl(results).map_err(&ctx)?;
    if lines.len() as u64 != n {
        return Err(ctx(format!(
            "{} result lines for {n} requests",
            lines.len()
        )));
    }
    let expected = attempt.expected_ids();
    let mut seen = HashSet::new();
    let mut by_type = [0u64; 4];
    for line in &lines {
        let cid = line["custom_id"]
            .as_str()
            .ok_or_else(|| ctx(format!("line without custom_id: {line}")))?;
        if !expected.contains(cid) {
            return Err(ctx(format!("unexpected custom_id {cid}")));
        }
        if !seen.insert(cid.to_owned()) {
            return Err(ctx(format!("custom_id {cid} twice in the results")));
        }
        let bad = cid.contains("-b");
        let kind = line["result"]["type"].as_str().unwrap_or("");
        let ok = match kind {
            "succeeded" => {
                by_type[0] += 1;
                !bad && line["result"]["message"]["type"] == "message"
            }
            "errored" => {
                by_type[1] += 1;
                bad && line["result"]["error"]["error"]["type"] == "invalid_request_error"
            }
            "canceled" => {
                by_type[2] += 1;
                line["result"] == json!({"type": "canceled"})
            }
            "expired" => {
                by_type[3] += 1;
                false
            }
            _ => false,
        };
        if !ok {
            return Err(ctx(format!("wrong result for {cid}: {line}")));
        }
    }
    if by_type != [succeeded, errored, canceled, expired] {
        return Err(ctx(format!(
            "result lines by type {by_type:?} disagree with request_counts {batch}"
        )));
    }
    if cancel == Call::None
        && (succeeded, errored) != (n - attempt.bad.len() as u64, attempt.bad.len() as u64)
    {
        return Err(ctx(format!(
            "uncanceled batch with {} bad requests: {batch}",
            attempt.bad.len()
        )));
    }
    Ok(lines.len())
}
