//! Validation of one request's `params` (a Messages create body), as the real API performs it
//! when the request is processed. Failures become `errored` results, never create-time errors.

use serde_json::{Map, Value};

use crate::ErrorType;

/// `params` that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub model: String,
    pub max_tokens: u64,
    /// The whole object, for backends that need more than the essentials.
    pub body: Map<String, Value>,
}

/// Why `params` were refused: the `error.type` and `error.message` of the errored row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct ParamsError {
    pub kind: ErrorType,
    pub message: String,
}

/// Parses and validates raw `params` JSON.
pub fn validate(raw: &str) -> Result<Params, ParamsError> {
    let body: Map<String, Value> = serde_json::from_str(raw).map_err(|_| ParamsError {
        kind: ErrorType::InvalidRequest,
        message: "params: Input should be a valid dictionary".into(),
    })?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(1);
    Ok(Params {
        model,
        max_tokens,
        body,
    })
}
