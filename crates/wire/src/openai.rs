//! Wire types of the OpenAI Batch and Files API: the JSON objects of `/v1/files` and
//! `/v1/batches`, field for field and in the order the hosted API emits them
//! (`shared/spec/openai-batches.md` §3). Unset fields serialise as `null`, never skipped, as the
//! hosted API sends them. Times are unix seconds.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A stored file (`OpenAIFile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileObject {
    /// Always `"file"`.
    pub object: String,
    pub id: String,
    pub purpose: String,
    pub filename: String,
    pub bytes: u64,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    /// Deprecated upstream but required by the SDKs' types; a stored file is always
    /// `"processed"` (`files.wait_for_processing` polls until it is).
    pub status: String,
    pub status_details: Option<String>,
}

impl FileObject {
    pub const OBJECT: &'static str = "file";
    pub const PROCESSED: &'static str = "processed";
}

/// One page of a list: `GET /v1/files` and `GET /v1/batches`. `has_more` is always a boolean:
/// the Python SDK keeps paging when it is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAiList<T> {
    /// Always `"list"`.
    pub object: String,
    pub data: Vec<T>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

impl<T> OpenAiList<T> {
    /// A page of `data`, its first and last ids taken by `id`.
    pub fn new(data: Vec<T>, has_more: bool, id: impl Fn(&T) -> &str) -> Self {
        Self {
            object: "list".to_owned(),
            first_id: data.first().map(|t| id(t).to_owned()),
            last_id: data.last().map(|t| id(t).to_owned()),
            data,
            has_more,
        }
    }
}

/// `GET /v1/files`.
pub type FileList = OpenAiList<FileObject>;
/// `GET /v1/batches`.
pub type BatchList = OpenAiList<OpenAiBatch>;

/// The answer of `DELETE /v1/files/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDeleted {
    pub object: String,
    pub id: String,
    pub deleted: bool,
}

/// `request_counts` of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAiRequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// `usage.input_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputTokensDetails {
    pub cached_tokens: u64,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u64,
}

/// `usage` of a batch. Every sub-field is required by the SDKs when the object is present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchUsage {
    pub input_tokens: u64,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u64,
}

/// One entry of `errors.data`: a line of the input file (or, with `line: null`, the file
/// itself) that made the batch fail validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub line: Option<u64>,
}

/// `errors` of a failed batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchErrors {
    /// Always `"list"`.
    pub object: String,
    pub data: Vec<BatchError>,
}

/// `status` of an OpenAI batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenAiBatchStatus {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl OpenAiBatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validating => "validating",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
            Self::Finalizing => "finalizing",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The Batch object: every key present, `null` when unset, in the wire's order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenAiBatch {
    pub id: String,
    /// Always `"batch"`.
    pub object: String,
    pub endpoint: String,
    pub model: Option<String>,
    pub errors: Option<BatchErrors>,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: OpenAiBatchStatus,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: u64,
    pub in_progress_at: Option<u64>,
    pub expires_at: Option<u64>,
    pub finalizing_at: Option<u64>,
    pub completed_at: Option<u64>,
    pub failed_at: Option<u64>,
    pub expired_at: Option<u64>,
    pub cancelling_at: Option<u64>,
    pub cancelled_at: Option<u64>,
    pub request_counts: OpenAiRequestCounts,
    pub usage: Option<BatchUsage>,
    /// The create's `metadata` exactly as sent (key order kept), or `null`.
    pub metadata: Option<Box<RawValue>>,
}

/// The body of `POST /v1/batches`, as a client sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateOpenAiBatch {
    pub input_file_id: String,
    /// The one endpoint every line of the input file names, e.g. `/v1/chat/completions`.
    pub endpoint: String,
    /// `"24h"`, the only window the API offers.
    pub completion_window: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<RawValue>>,
}

/// The error envelope of every OpenAI route: `{"error":{"message","type","param","code"}}`,
/// all four keys always present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAiErrorEnvelope {
    pub error: OpenAiErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAiErrorBody {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> OpenAiBatch {
        OpenAiBatch {
            id: "batch_1".into(),
            object: "batch".into(),
            endpoint: "/v1/chat/completions".into(),
            model: None,
            errors: None,
            input_file_id: "file-a".into(),
            completion_window: "24h".into(),
            status: OpenAiBatchStatus::Validating,
            output_file_id: None,
            error_file_id: None,
            created_at: 10,
            in_progress_at: None,
            expires_at: Some(86_410),
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            request_counts: OpenAiRequestCounts::default(),
            usage: Some(BatchUsage::default()),
            metadata: Some(RawValue::from_string(r#"{"b":"1","a":"2"}"#.into()).unwrap()),
        }
    }

    #[test]
    fn batch_keys_come_in_the_wire_order_and_nulls_are_kept() {
        let text = serde_json::to_string(&batch()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"id":"batch_1","object":"batch","endpoint":"/v1/chat/completions","model":null,"errors":null,"#,
                r#""input_file_id":"file-a","completion_window":"24h","status":"validating","output_file_id":null,"#,
                r#""error_file_id":null,"created_at":10,"in_progress_at":null,"expires_at":86410,"finalizing_at":null,"#,
                r#""completed_at":null,"failed_at":null,"expired_at":null,"cancelling_at":null,"cancelled_at":null,"#,
                r#""request_counts":{"total":0,"completed":0,"failed":0},"#,
                r#""usage":{"input_tokens":0,"input_tokens_details":{"cached_tokens":0},"output_tokens":0,"#,
                r#""output_tokens_details":{"reasoning_tokens":0},"total_tokens":0},"metadata":{"b":"1","a":"2"}}"#
            )
        );
    }

    #[test]
    fn files_and_lists_keep_the_wire_order() {
        let file = FileObject {
            object: FileObject::OBJECT.into(),
            id: "file-x".into(),
            purpose: "batch".into(),
            filename: "in.jsonl".into(),
            bytes: 3,
            created_at: 1,
            expires_at: None,
            status: FileObject::PROCESSED.into(),
            status_details: None,
        };
        let list = FileList::new(vec![file], false, |f| &f.id);
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            concat!(
                r#"{"object":"list","data":[{"object":"file","id":"file-x","purpose":"batch","filename":"in.jsonl","#,
                r#""bytes":3,"created_at":1,"expires_at":null,"status":"processed","status_details":null}],"#,
                r#""first_id":"file-x","last_id":"file-x","has_more":false}"#
            )
        );
        let empty = FileList::new(vec![], false, |f| &f.id);
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"object":"list","data":[],"first_id":null,"last_id":null,"has_more":false}"#
        );
    }

    #[test]
    fn errors_carry_all_four_keys() {
        let envelope = OpenAiErrorEnvelope {
            error: OpenAiErrorBody {
                message: "No such File object: file-a".into(),
                kind: "invalid_request_error".into(),
                param: Some("id".into()),
                code: None,
            },
        };
        assert_eq!(
            serde_json::to_string(&envelope).unwrap(),
            r#"{"error":{"message":"No such File object: file-a","type":"invalid_request_error","param":"id","code":null}}"#
        );
    }
}
