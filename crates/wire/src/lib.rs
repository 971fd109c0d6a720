//! Wire types of the Message Batches API: exactly the JSON objects that cross the socket.
//!
//! Field order in every struct is the order the real API emits (serde serialises in declaration
//! order), nullable fields serialise as `null` rather than being skipped, and timestamps are kept
//! as the already formatted RFC 3339 strings so that server and client agree byte for byte.
//! This crate has no async or HTTP dependencies so the client can share it; [`retry_after`]
//! reads the one response header both sides interpret. [`openai`] holds the objects of the
//! OpenAI Batch and Files surface; [`test_mode`] those of the test routes; [`webhooks`] those of
//! the webhook endpoint routes.

pub mod openai;
pub mod retry_after;
pub mod test_mode;
pub mod webhooks;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `processing_status` of a batch.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingStatus {
    InProgress,
    Canceling,
    Ended,
}

impl ProcessingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Canceling => "canceling",
            Self::Ended => "ended",
        }
    }
}

/// Per-outcome request tallies; the five always sum to the batch's request count.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub processing: u64,
    pub succeeded: u64,
    pub errored: u64,
    pub canceled: u64,
    pub expired: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.processing + self.succeeded + self.errored + self.canceled + self.expired
    }
}

/// The `MessageBatch` object (10 keys, all present, in the documented order).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBatch {
    /// Unique object identifier (`msgbatch_` + 24 characters).
    #[cfg_attr(
        feature = "openapi",
        schema(example = "msgbatch_01Kk2gPdvEq73ifNWGPfvmyd")
    )]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: MessageBatchType,
    pub processing_status: ProcessingStatus,
    pub request_counts: RequestCounts,
    /// When every request had an outcome; null until then.
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime, example = "2025-01-29T14:25:40.141141+00:00"))]
    pub ended_at: Option<String>,
    /// RFC 3339 creation time.
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2025-01-29T14:25:40.141141+00:00"))]
    pub created_at: String,
    /// `created_at` plus the batch lifetime (24 hours by default).
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2025-01-29T14:25:40.141141+00:00"))]
    pub expires_at: String,
    /// When the results were archived and stopped being downloadable; null until then.
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime, example = "2025-01-29T14:25:40.141141+00:00"))]
    pub archived_at: Option<String>,
    /// When cancellation was requested; null unless canceled.
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime, example = "2025-01-29T14:25:40.141141+00:00"))]
    pub cancel_initiated_at: Option<String>,
    /// Absolute URL of the results JSONL once the batch has ended; null until then.
    #[cfg_attr(feature = "openapi", schema(required = true, format = "uri"))]
    pub results_url: Option<String>,
}

/// The constant `"message_batch"` type tag.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBatchType {
    #[default]
    #[serde(rename = "message_batch")]
    MessageBatch,
}

/// Body of a successful DELETE.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedMessageBatch {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: DeletedType,
}

/// The constant `"message_batch_deleted"` type tag.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeletedType {
    #[default]
    #[serde(rename = "message_batch_deleted")]
    MessageBatchDeleted,
}

/// One page of `GET /v1/messages/batches`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPage<T> {
    /// Newest first.
    pub data: Vec<T>,
    /// Whether more results exist in the requested page direction.
    pub has_more: bool,
    /// First id in `data`, the `before_id` of the previous page; null when `data` is empty.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub first_id: Option<String>,
    /// Last id in `data`, the `after_id` of the next page; null when `data` is empty.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_id: Option<String>,
}

/// The error envelope used by every non-2xx response and inside `errored` result rows.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    #[serde(rename = "type")]
    pub kind: ErrorTag,
    pub error: ErrorBody,
    /// The same value as the `request-id` response header.
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, example = "req_011CSHoEeqs5C35K2UUqR7Fy")
    )]
    pub request_id: Option<String>,
}

/// The constant `"error"` type tag.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorTag {
    #[default]
    #[serde(rename = "error")]
    Error,
}

/// `error.type`, `error.message` and, for some causes, `error.details`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `request_too_large`, `rate_limit_error`, `api_error`, `timeout_error`, `overloaded_error`;
    /// more values may appear.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(example = "not_found_error"))]
    pub kind: String,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "Message Batch msgbatch_01AHxNhUeZwskhx38tGz1QVj not found.")
    )]
    pub message: String,
    /// Machine-readable detail about the cause; absent when the error has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub details: Option<ErrorDetails>,
}

/// `error.details`: `error_code` names the cause, stable where `message` is not, so clients
/// branch on it. Other keys may appear beside it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, example = "request_body_encoding_unsupported")
    )]
    pub error_code: Option<String>,
}

impl ErrorEnvelope {
    pub fn new(
        kind: impl Into<String>,
        message: impl Into<String>,
        request_id: Option<String>,
    ) -> Self {
        Self {
            kind: ErrorTag::Error,
            error: ErrorBody {
                kind: kind.into(),
                message: message.into(),
                details: None,
            },
            request_id,
        }
    }

    /// The envelope with `error.details.error_code` set.
    pub fn with_error_code(mut self, code: impl Into<String>) -> Self {
        self.error.details = Some(ErrorDetails {
            error_code: Some(code.into()),
        });
        self
    }
}

/// One request of a create body as it goes out from a client. The server parses bodies with a
/// streaming visitor instead, so it can report errors with their index and stay in bounded memory.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(description = "One request of a batch."))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchRequest {
    /// Names the request's result; unique within the batch.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 64,
            pattern = "^[a-zA-Z0-9_-]{1,64}$",
            example = "my-first-request"
        )
    )]
    pub custom_id: String,
    /// A Messages API create body (`model`, `max_tokens`, `messages`, ...). It is validated when
    /// the request is processed: problems become an `errored` result, not a 400 here.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub params: Box<RawValue>,
}

/// The body of `POST /v1/messages/batches`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateBatch {
    // The limit is `batchd_domain::batch::MAX_REQUESTS` (the derive takes only a literal; the
    // OpenAPI test holds the two together).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 100_000))]
    pub requests: Vec<BatchRequest>,
}

/// One line of the results JSONL.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultLine {
    pub custom_id: String,
    pub result: BatchResult,
}

/// The `result` of one request, discriminated by `type`.
///
/// `Deserialize` is written by hand: serde's derive for internally tagged enums buffers the
/// input, and a buffered value cannot become a `RawValue`, so the derived impl rejected every
/// `succeeded` row. The serialised form is the derived one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(description = "The outcome of one request, discriminated by `type`.")
)]
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BatchResult {
    Succeeded {
        /// The Messages API `Message` the model produced.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        message: Box<RawValue>,
    },
    Errored {
        error: ErrorEnvelope,
    },
    Canceled,
    Expired,
}

impl<'de> Deserialize<'de> for BatchResult {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;

        #[derive(Deserialize)]
        struct Flat {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            message: Option<Box<RawValue>>,
            #[serde(default)]
            error: Option<ErrorEnvelope>,
        }
        let flat = Flat::deserialize(deserializer)?;
        match flat.kind.as_str() {
            "succeeded" => Ok(Self::Succeeded {
                message: flat
                    .message
                    .ok_or_else(|| D::Error::missing_field("message"))?,
            }),
            "errored" => Ok(Self::Errored {
                error: flat.error.ok_or_else(|| D::Error::missing_field("error"))?,
            }),
            "canceled" => Ok(Self::Canceled),
            "expired" => Ok(Self::Expired),
            other => Err(D::Error::unknown_variant(
                other,
                &["succeeded", "errored", "canceled", "expired"],
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_serialises_in_documented_order_with_nulls() {
        let b = MessageBatch {
            id: "msgbatch_x".into(),
            kind: MessageBatchType::MessageBatch,
            processing_status: ProcessingStatus::InProgress,
            request_counts: RequestCounts {
                processing: 2,
                ..Default::default()
            },
            ended_at: None,
            created_at: "2025-01-29T14:25:40.141141+00:00".into(),
            expires_at: "2025-01-30T14:25:40.141141+00:00".into(),
            archived_at: None,
            cancel_initiated_at: None,
            results_url: None,
        };
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"id":"msgbatch_x","type":"message_batch","processing_status":"in_progress","request_counts":{"processing":2,"succeeded":0,"errored":0,"canceled":0,"expired":0},"ended_at":null,"created_at":"2025-01-29T14:25:40.141141+00:00","expires_at":"2025-01-30T14:25:40.141141+00:00","archived_at":null,"cancel_initiated_at":null,"results_url":null}"#
        );
    }

    #[test]
    fn result_lines_round_trip() {
        let line = r#"{"custom_id":"a","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"m"},"request_id":null}}}"#;
        let parsed: ResultLine = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), line);
        let succeeded = r#"{"custom_id":"s","result":{"type":"succeeded","message":{"id":"msg_1","content":[{"type":"text","text":"hi"}]}}}"#;
        let parsed: ResultLine = serde_json::from_str(succeeded).unwrap();
        assert!(
            matches!(&parsed.result, BatchResult::Succeeded { message } if message.get().starts_with("{\"id\":\"msg_1\""))
        );
        assert_eq!(serde_json::to_string(&parsed).unwrap(), succeeded);
        let expired = r#"{"custom_id":"e","result":{"type":"expired"}}"#;
        let parsed: ResultLine = serde_json::from_str(expired).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), expired);
        assert!(
            serde_json::from_str::<ResultLine>(
                r#"{"custom_id":"x","result":{"type":"succeeded"}}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<ResultLine>(r#"{"custom_id":"x","result":{"type":"weird"}}"#)
                .is_err()
        );
        let canceled = r#"{"custom_id":"b","result":{"type":"canceled"}}"#;
        let parsed: ResultLine = serde_json::from_str(canceled).unwrap();
        assert!(matches!(parsed.result, BatchResult::Canceled));
        assert_eq!(serde_json::to_string(&parsed).unwrap(), canceled);
    }
}
