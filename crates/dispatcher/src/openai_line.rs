//! The OpenAI surface's output and error lines, one home for their shape and texts: what the
//! dispatcher records as a request's result (the whole line, so the files are the stored rows
//! in index order) and what the finalizer writes for requests that never got one.
//!
//! Every line is `{"id","custom_id","response","error"}` in that order, compact. A request that
//! reached its upstream has a `response` with the upstream's status, request id and body (a
//! success line, or an error line carrying the upstream's error body); one that never did has
//! `"response":null` and an `error` with a code and message. The hosted API writes `", "` and
//! `": "` between tokens; batchd writes compact JSON, which every JSON reader takes the same.
//! The tokens a line's answer used ([`add_usage`]) are read back from it here too, for the
//! batch's `usage`. The behavioural reference is `shared/spec/openai-batches.md` (§6).

use batchd_backends::{OpenAiAnswer, compact_json};
use batchd_domain::EndReason;
use batchd_domain::openai::batch_request_id;
use batchd_domain::raw_json;
use batchd_wire::openai::BatchUsage;
use serde::Deserialize;

/// Error codes of lines without a `response`.
pub(crate) mod code {
    pub const MODEL_NOT_FOUND: &str = "model_not_found";
    pub const ENDPOINT_NOT_SUPPORTED: &str = "endpoint_not_supported";
    pub const REQUEST_TIMEOUT: &str = "request_timeout";
    pub const SERVER_ERROR: &str = "server_error";
    pub const INVALID_REQUEST: &str = "invalid_request";
    pub const BATCH_EXPIRED: &str = "batch_expired";
    pub const BATCH_CANCELLED: &str = "batch_cancelled";
}

/// The hosted API's text for requests left when the window closed.
const EXPIRED_MESSAGE: &str =
    "This request could not be executed before the completion window expired.";
/// The exact hosted text is not known; this is the spec's recommended default (§6.3).
const CANCELLED_MESSAGE: &str = "This request was cancelled before it could be executed.";
/// The exact hosted text is not known; this is the spec's recommended default (§6.3).
pub(crate) const TIMEOUT_MESSAGE: &str = "The request timed out.";

pub(crate) fn model_not_found_message(model: &str) -> String {
    format!("The model '{model}' is not served by this batchd (no backend matches it).")
}

/// Where a line belongs: its batch, its index in the input file and its `custom_id`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineOf<'a> {
    pub batch_id: &'a str,
    pub index: u32,
    pub custom_id: &'a str,
}

impl LineOf<'_> {
    /// `{"id":"…","custom_id":"…","response":` — the part every line shares.
    fn open(&self, capacity: usize) -> String {
        let mut line = String::with_capacity(capacity + self.custom_id.len() + 96);
        line.push_str(r#"{"id":""#);
        line.push_str(&batch_request_id(self.batch_id, self.index));
        line.push_str(r#"","custom_id":"#);
        push_json_string(&mut line, self.custom_id);
        line.push_str(r#","response":"#);
        line
    }

    /// A 2xx answer: the output file's line.
    pub fn success(&self, answer: &OpenAiAnswer) -> String {
        self.response(answer.status_code, &answer.request_id, &answer.body)
    }

    /// An upstream's error answer, its body as the upstream sent it (made compact). A body that
    /// is not JSON (a proxy's HTML page) becomes the API's error envelope around `message`.
    pub fn upstream_error(
        &self,
        status: u16,
        request_id: &str,
        body: &str,
        message: &str,
    ) -> String {
        match compact_json(body.as_bytes()) {
            Some(body) => self.response(status, request_id, &body),
            None => {
                let kind = if status >= 500 {
                    "server_error"
                } else {
                    "invalid_request_error"
                };
                let mut envelope = String::with_capacity(message.len() + 80);
                envelope.push_str(r#"{"error":{"message":"#);
                push_json_string(&mut envelope, message);
                envelope.push_str(r#","type":""#);
                envelope.push_str(kind);
                envelope.push_str(r#"","param":null,"code":null}}"#);
                self.response(status, request_id, &envelope)
            }
        }
    }

    fn response(&self, status: u16, request_id: &str, body: &str) -> String {
        let mut line = self.open(body.len() + request_id.len() + 48);
        line.push_str(r#"{"status_code":"#);
        line.push_str(&status.to_string());
        line.push_str(r#","request_id":"#);
        push_json_string(&mut line, request_id);
        line.push_str(r#","body":"#);
        line.push_str(body);
        line.push_str(r#"},"error":null}"#);
        line
    }

    /// A request that never reached an upstream (or got no answer from it).
    pub fn error(&self, code: &str, message: &str) -> String {
        let mut line = self.open(message.len() + 48);
        line.push_str(r#"null,"error":{"code":"#);
        push_json_string(&mut line, code);
        line.push_str(r#","message":"#);
        push_json_string(&mut line, message);
        line.push_str("}}");
        line
    }

    /// The line of a request without a result in a batch that ended for `reason`; `None` for a
    /// completed batch, where every request has one.
    pub fn unanswered(&self, reason: EndReason) -> Option<String> {
        match reason {
            EndReason::Completed => None,
            EndReason::Expired => Some(self.error(code::BATCH_EXPIRED, EXPIRED_MESSAGE)),
            EndReason::Canceled => Some(self.error(code::BATCH_CANCELLED, CANCELLED_MESSAGE)),
        }
    }
}

/// Adds the tokens the answer of a stored line used to `sum`, as the batch's `usage` counts
/// them: Chat Completions' and Completions' `prompt_tokens` and `completion_tokens` (and their
/// details) as input and output, the Responses API's `input_tokens` and `output_tokens` as
/// they are, Embeddings' `prompt_tokens` as input. A line without a `response.body.usage` that
/// reads so adds nothing, and so does one whose `usage` names a count twice (both APIs' names
/// at once) or writes one as anything but a whole number. Each step reads one member with the
/// raw scan, the object itself only at the last.
pub(crate) fn add_usage(sum: &mut BatchUsage, line: &str) {
    let usage = raw_json::fields(line, ["response"])
        .and_then(|[response]| raw_json::fields(response?, ["body"]))
        .and_then(|[body]| raw_json::fields(body?, ["usage"]))
        .and_then(|[usage]| serde_json::from_str::<AnswerUsage>(usage?).ok());
    let Some(usage) = usage else { return };
    let (input, output) = (
        usage.input_tokens.unwrap_or(0),
        usage.output_tokens.unwrap_or(0),
    );
    let add = |to: &mut u64, n: u64| *to = to.saturating_add(n);
    add(&mut sum.input_tokens, input);
    add(&mut sum.output_tokens, output);
    add(
        &mut sum.total_tokens,
        usage.total_tokens.unwrap_or(input.saturating_add(output)),
    );
    let cached = usage.input_details.and_then(|d| d.cached_tokens);
    let reasoning = usage.output_details.and_then(|d| d.reasoning_tokens);
    add(
        &mut sum.input_tokens_details.cached_tokens,
        cached.unwrap_or(0),
    );
    add(
        &mut sum.output_tokens_details.reasoning_tokens,
        reasoning.unwrap_or(0),
    );
}

/// An answer's `usage`, in either API's names; every member may be missing or `null`.
#[derive(Deserialize)]
struct AnswerUsage {
    #[serde(alias = "prompt_tokens")]
    input_tokens: Option<u64>,
    #[serde(alias = "completion_tokens")]
    output_tokens: Option<u64>,
    total_tokens: Option<u64>,
    #[serde(rename = "input_tokens_details", alias = "prompt_tokens_details")]
    input_details: Option<TokenDetails>,
    #[serde(rename = "output_tokens_details", alias = "completion_tokens_details")]
    output_details: Option<TokenDetails>,
}

#[derive(Deserialize)]
struct TokenDetails {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

fn push_json_string(out: &mut String, s: &str) {
    // Serializing a `str` cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const BATCH: &str = "batch_67d450d0a1b281909f3c2e1d0a4b5c6d";

    fn line() -> LineOf<'static> {
        LineOf {
            batch_id: BATCH,
            index: 3,
            custom_id: "req \"3\"",
        }
    }

    fn id() -> String {
        batch_request_id(BATCH, 3)
    }

    #[test]
    fn a_success_line_has_the_hosted_keys_in_order() {
        let got = line().success(&OpenAiAnswer {
            status_code: 200,
            request_id: "abc".into(),
            body: r#"{"object":"list"}"#.into(),
        });
        assert_eq!(
            got,
            format!(
                r#"{{"id":"{}","custom_id":"req \"3\"","response":{{"status_code":200,"request_id":"abc","body":{{"object":"list"}}}},"error":null}}"#,
                id()
            )
        );
        let _: Value = serde_json::from_str(&got).unwrap();
    }

    #[test]
    fn an_upstream_error_keeps_its_body_or_wraps_one_that_is_not_json() {
        let got = line().upstream_error(
            429,
            "r1",
            "{\n \"error\": {\"message\": \"slow down\"}\n}",
            "ignored",
        );
        assert_eq!(
            got,
            format!(
                r#"{{"id":"{}","custom_id":"req \"3\"","response":{{"status_code":429,"request_id":"r1","body":{{"error":{{"message":"slow down"}}}}}},"error":null}}"#,
                id()
            )
        );
        let got =
            line().upstream_error(502, "r1", "<html>", "backend `x` answered 502 Bad Gateway");
        let v: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["response"]["status_code"], 502);
        assert_eq!(
            v["response"]["body"]["error"]["message"],
            "backend `x` answered 502 Bad Gateway"
        );
        assert_eq!(v["response"]["body"]["error"]["type"], "server_error");
        assert_eq!(v["error"], Value::Null);
    }

    #[test]
    fn lines_without_a_response_carry_a_code_and_message() {
        assert_eq!(
            line().error(code::MODEL_NOT_FOUND, &model_not_found_message("gpt-x")),
            format!(
                r#"{{"id":"{}","custom_id":"req \"3\"","response":null,"error":{{"code":"model_not_found","message":"The model 'gpt-x' is not served by this batchd (no backend matches it)."}}}}"#,
                id()
            )
        );
        assert_eq!(line().unanswered(EndReason::Completed), None);
        let expired: Value =
            serde_json::from_str(&line().unanswered(EndReason::Expired).unwrap()).unwrap();
        assert_eq!(expired["error"]["code"], "batch_expired");
        assert_eq!(
            expired["error"]["message"],
            "This request could not be executed before the completion window expired."
        );
        let cancelled: Value =
            serde_json::from_str(&line().unanswered(EndReason::Canceled).unwrap()).unwrap();
        assert_eq!(cancelled["error"]["code"], "batch_cancelled");
        assert_eq!(cancelled["response"], Value::Null);
    }

    #[test]
    fn usage_is_summed_in_the_batch_names_from_either_api() {
        let success = |body: &str| {
            line().success(&OpenAiAnswer {
                status_code: 200,
                request_id: "r".into(),
                body: body.into(),
            })
        };
        let mut sum = BatchUsage::default();
        // Chat Completions, with its details.
        add_usage(
            &mut sum,
            &success(
                r#"{"choices":[],"usage":{"prompt_tokens":6,"completion_tokens":5,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":2,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":3}}}"#,
            ),
        );
        // The Responses API, a usage string in the content (not a member), and no total.
        add_usage(
            &mut sum,
            &success(
                r#"{"output":[{"text":"\"usage\":{\"input_tokens\":1000}"}],"usage":{"input_tokens":10,"output_tokens":4,"input_tokens_details":null}}"#,
            ),
        );
        // Embeddings: prompt tokens only.
        add_usage(
            &mut sum,
            &success(r#"{"data":[],"usage":{"prompt_tokens":7,"total_tokens":7}}"#),
        );
        let before = sum;
        // Lines that add nothing: no usage, a usage that is not an object, no response, and a
        // line that is not JSON.
        for nothing in [
            success(r#"{"object":"list"}"#),
            success(r#"{"usage":"lots"}"#),
            line().error(code::SERVER_ERROR, "gone"),
            "{not json".to_owned(),
        ] {
            add_usage(&mut sum, &nothing);
        }
        assert_eq!(sum, before);
        assert_eq!(
            serde_json::to_value(sum).unwrap(),
            serde_json::json!({
                "input_tokens": 23,
                "input_tokens_details": {"cached_tokens": 2},
                "output_tokens": 9,
                "output_tokens_details": {"reasoning_tokens": 3},
                "total_tokens": 32,
            })
        );
    }
}
