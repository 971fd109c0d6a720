//! Reads the JSONL file of `batchd batches create`: one request per line, either native
//! (`{"custom_id","params"}`, `params` passed through byte for byte) or an OpenAI Batch API line
//! (`{"custom_id","method":"POST","url":"/v1/chat/completions","body"}`, converted by
//! [`batchd_backends::openai::from_chat`]). Blank lines are skipped; every other problem is an error that names its
//! line, including `custom_id`s the API would refuse (so the message points at a line rather
//! than at an index in the body).

use std::collections::{BTreeMap, HashMap};

use batchd_client::BatchRequest;
use batchd_domain::CustomId;
use serde_json::Value;
use serde_json::value::RawValue;

use batchd_backends::openai::from_chat;

/// The parsed requests and how many of them were converted from the OpenAI format.
#[derive(Debug)]
pub struct Requests {
    pub requests: Vec<BatchRequest>,
    pub converted: usize,
}

/// Parses the whole file; the error names the first bad line.
pub fn parse(text: &str) -> Result<Requests, String> {
    let mut requests = Vec::new();
    let mut converted = 0;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, line) in text.split('\n').enumerate() {
        let number = index + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let (request, was_openai) = parse_line(line).map_err(|e| format!("line {number}: {e}"))?;
        if let Some(first) = seen.insert(request.custom_id.clone(), number) {
            return Err(format!(
                "line {number}: duplicate custom_id `{}` (first used on line {first})",
                request.custom_id
            ));
        }
        converted += usize::from(was_openai);
        requests.push(request);
    }
    if requests.is_empty() {
        return Err("the file contains no requests".into());
    }
    Ok(Requests {
        requests,
        converted,
    })
}

fn parse_line(line: &str) -> Result<(BatchRequest, bool), String> {
    let fields: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let custom_id = match fields.get("custom_id") {
        None => return Err("`custom_id` is missing".into()),
        Some(raw) => serde_json::from_str::<String>(raw.get())
            .map_err(|_| "`custom_id` must be a string".to_owned())?,
    };
    if CustomId::parse(&custom_id).is_err() {
        return Err(format!(
            "custom_id `{custom_id}` must be 1-{} characters of letters, digits, `_` and `-`",
            CustomId::MAX_LEN
        ));
    }

    if let Some(params) = fields.get("params") {
        if let Some(extra) = fields
            .keys()
            .find(|k| !matches!(k.as_str(), "custom_id" | "params"))
        {
            return Err(format!(
                "unexpected key `{extra}` (a request is {{\"custom_id\", \"params\"}})"
            ));
        }
        if !params.get().trim_start().starts_with('{') {
            return Err("`params` must be a JSON object".into());
        }
        let params = params.clone();
        return Ok((BatchRequest { custom_id, params }, false));
    }

    if fields.contains_key("body") || fields.contains_key("url") || fields.contains_key("method") {
        if let Some(extra) = fields
            .keys()
            .find(|k| !matches!(k.as_str(), "custom_id" | "method" | "url" | "body"))
        {
            return Err(format!("unexpected key `{extra}` in an OpenAI batch line"));
        }
        let method: Option<String> = field(&fields, "method")?;
        if method.as_deref() != Some("POST") {
            return Err("OpenAI batch lines must have \"method\": \"POST\"".into());
        }
        let url: Option<String> = field(&fields, "url")?;
        if url.as_deref() != Some("/v1/chat/completions") {
            return Err(format!(
                "only OpenAI lines for \"/v1/chat/completions\" can be converted, not {}",
                url.map_or_else(|| "a line without `url`".to_owned(), |u| format!("{u:?}"))
            ));
        }
        let body: Value = field(&fields, "body")?.ok_or("`body` is missing")?;
        let params = from_chat::convert(&body)?;
        let params = serde_json::value::to_raw_value(&params).map_err(|e| e.to_string())?;
        return Ok((BatchRequest { custom_id, params }, true));
    }

    Err(
        "expected {\"custom_id\", \"params\"} or an OpenAI batch line \
         {\"custom_id\", \"method\", \"url\", \"body\"}"
            .into(),
    )
}

fn field<T: serde::de::DeserializeOwned>(
    fields: &BTreeMap<String, Box<RawValue>>,
    key: &str,
) -> Result<Option<T>, String> {
    fields
        .get(key)
        .map(|raw| serde_json::from_str(raw.get()).map_err(|e| format!("`{key}`: {e}")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_params_pass_through_verbatim_and_blank_lines_are_skipped() {
        let text = "{\"custom_id\":\"a\",\"params\":{\"model\":\"m\",  \"max_tokens\":5,\"messages\":[],\"zzz\":1}}\r\n\n  \n{\"params\":{},\"custom_id\":\"b\"}\n";
        let r = parse(text).unwrap();
        assert_eq!(r.converted, 0);
        assert_eq!(r.requests.len(), 2);
        assert_eq!(r.requests[0].custom_id, "a");
        assert_eq!(
            r.requests[0].params.get(),
            "{\"model\":\"m\",  \"max_tokens\":5,\"messages\":[],\"zzz\":1}"
        );
        assert_eq!(r.requests[1].custom_id, "b");
    }

    #[test]
    fn openai_lines_are_converted() {
        let text = r#"{"custom_id":"req-1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"Hi"}],"max_tokens":10}}"#;
        let r = parse(text).unwrap();
        assert_eq!(r.converted, 1);
        assert_eq!(
            r.requests[0].params.get(),
            r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"Hi"}]}"#
        );
    }

    #[test]
    fn errors_name_the_line() {
        let ok = r#"{"custom_id":"a","params":{}}"#;
        let cases = [
            (format!("{ok}\n\nnot json\n"), "line 3: not a JSON object"),
            (
                format!("{ok}\n{ok}\n"),
                "line 2: duplicate custom_id `a` (first used on line 1)",
            ),
            (
                "{\"custom_id\":\"a b\",\"params\":{}}".to_owned(),
                "line 1: custom_id `a b`",
            ),
            (
                "{\"params\":{}}".to_owned(),
                "line 1: `custom_id` is missing",
            ),
            (
                "{\"custom_id\":\"a\",\"params\":[]}".to_owned(),
                "line 1: `params` must be",
            ),
            (
                "{\"custom_id\":\"a\",\"params\":{},\"x\":1}".to_owned(),
                "line 1: unexpected key `x`",
            ),
            ("{\"custom_id\":\"a\"}".to_owned(), "line 1: expected"),
            (
                format!(
                    "{ok}\n{}",
                    r#"{"custom_id":"b","method":"POST","url":"/v1/embeddings","body":{}}"#
                ),
                "line 2: only OpenAI lines for \"/v1/chat/completions\"",
            ),
            (
                format!(
                    "{ok}\r\n{}",
                    r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[],"tools":[]}}"#
                ),
                "line 2: `tools`",
            ),
            ("\n \n".to_owned(), "no requests"),
        ];
        for (text, needle) in cases {
            let err = parse(&text).expect_err(&text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
