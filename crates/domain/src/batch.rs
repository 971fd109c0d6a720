//! A batch and its lifecycle: `in_progress → (canceling →) ended`.
//!
//! Storage keeps live tallies of recorded results (`succeeded`, `errored`) while a batch runs,
//! but the API shows the documented semantics: every request counts as `processing` until the
//! batch ends, then all buckets, `processing_status`, `ended_at` and `results_url` change together.
//! Requests that never got a result when a batch ends are not written one by one: the batch's
//! [`EndReason`] says which bucket they fall into (`canceled` or `expired`), which keeps cancel and
//! expiry O(1) in the number of requests while every request still has exactly one result.

use batchd_wire::{MessageBatch, MessageBatchType, ProcessingStatus, RequestCounts};

use crate::openai::{Endpoint, OpenAiBatchMeta};
use crate::{ApiVersion, BatchId, Timestamp};

/// Most requests in one batch, as the real API allows.
pub const MAX_REQUESTS: u64 = 100_000;

/// The outcome of one request, as stored and as shown in `result.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Succeeded,
    Errored,
    Canceled,
    Expired,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Errored => "errored",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
        }
    }

    /// Stable small integer for storage.
    pub fn code(self) -> i64 {
        match self {
            Self::Succeeded => 1,
            Self::Errored => 2,
            Self::Canceled => 3,
            Self::Expired => 4,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => Self::Succeeded,
            2 => Self::Errored,
            3 => Self::Canceled,
            4 => Self::Expired,
            _ => return None,
        })
    }
}

/// Why a batch ended with requests left unanswered, and so which bucket those requests count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// Every request got a result; nothing is left over.
    Completed,
    /// Canceled: unanswered requests are `canceled`.
    Canceled,
    /// Reached `expires_at`: unanswered requests are `expired`.
    Expired,
}

impl EndReason {
    /// The outcome of a request that has no stored result in a batch that ended this way.
    pub fn unanswered_outcome(self) -> Outcome {
        match self {
            Self::Canceled => Outcome::Canceled,
            // A completed batch has no unanswered requests; expired is the safe reading if one ever shows up.
            Self::Completed | Self::Expired => Outcome::Expired,
        }
    }

    pub fn code(self) -> i64 {
        match self {
            Self::Completed => 1,
            Self::Canceled => 2,
            Self::Expired => 3,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => Self::Completed,
            2 => Self::Canceled,
            3 => Self::Expired,
            _ => return None,
        })
    }
}

/// Everything stored about a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Storage key (sequence number): orders batches created in the same microsecond.
    pub key: i64,
    pub id: BatchId,
    pub workspace: String,
    pub status: ProcessingStatus,
    /// Number of requests in the batch.
    pub total: u64,
    /// Results recorded so far, by outcome. Live; shown only once the batch has ended.
    pub succeeded: u64,
    pub errored: u64,
    /// Set when the batch ends.
    pub end_reason: Option<EndReason>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub cancel_initiated_at: Option<Timestamp>,
    pub archived_at: Option<Timestamp>,
    /// The `anthropic-beta` values given at create time; they apply to every request.
    pub betas: Vec<String>,
    /// The `anthropic-version` of the create: every request is validated under it.
    pub api_version: ApiVersion,
    /// The create's `anthropic-user-profile-id`: every request is attributed to it.
    pub user_profile_id: Option<String>,
    /// What every request is sent to; [`Endpoint::Messages`] for every Anthropic batch, and so
    /// the batch's surface.
    pub endpoint: Endpoint,
    /// What an OpenAI batch stores beyond this; `None` for an Anthropic batch.
    pub openai: Option<OpenAiBatchMeta>,
    /// When an ended OpenAI batch's output and error files were written and recorded in
    /// `openai`; `None` before that, and always for an Anthropic batch.
    pub finalized_at: Option<Timestamp>,
}

impl Batch {
    pub fn is_ended(&self) -> bool {
        self.status == ProcessingStatus::Ended
    }

    /// Requests that have no recorded result.
    pub fn unanswered(&self) -> u64 {
        self.total.saturating_sub(self.succeeded + self.errored)
    }

    /// `request_counts` as the API documents them.
    pub fn request_counts(&self) -> RequestCounts {
        if !self.is_ended() {
            return RequestCounts {
                processing: self.total,
                ..Default::default()
            };
        }
        let mut counts = RequestCounts {
            processing: 0,
            succeeded: self.succeeded,
            errored: self.errored,
            canceled: 0,
            expired: 0,
        };
        match self
            .end_reason
            .unwrap_or(EndReason::Completed)
            .unanswered_outcome()
        {
            Outcome::Canceled => counts.canceled = self.unanswered(),
            _ => counts.expired = self.unanswered(),
        }
        counts
    }

    /// The wire object. `results_base` is this server's public base URL without a trailing slash.
    pub fn to_wire(&self, results_base: &str) -> MessageBatch {
        MessageBatch {
            id: self.id.to_string(),
            kind: MessageBatchType::MessageBatch,
            processing_status: self.status,
            request_counts: self.request_counts(),
            ended_at: self.ended_at.map(Timestamp::to_rfc3339),
            created_at: self.created_at.to_rfc3339(),
            expires_at: self.expires_at.to_rfc3339(),
            archived_at: self.archived_at.map(Timestamp::to_rfc3339),
            cancel_initiated_at: self.cancel_initiated_at.map(Timestamp::to_rfc3339),
            results_url: self
                .is_ended()
                .then(|| format!("{results_base}/v1/messages/batches/{}/results", self.id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(status: ProcessingStatus, end: Option<EndReason>) -> Batch {
        Batch {
            key: 1,
            id: BatchId::parse("msgbatch_01abc").unwrap(),
            workspace: "w".into(),
            status,
            total: 10,
            succeeded: 3,
            errored: 2,
            end_reason: end,
            created_at: Timestamp::from_micros(0),
            expires_at: Timestamp::from_micros(1),
            ended_at: end.map(|_| Timestamp::from_micros(1)),
            cancel_initiated_at: None,
            archived_at: None,
            betas: vec![],
            api_version: ApiVersion::default(),
            user_profile_id: None,
            endpoint: Endpoint::Messages,
            openai: None,
            finalized_at: None,
        }
    }

    #[test]
    fn counts_stay_processing_until_the_end() {
        for status in [ProcessingStatus::InProgress, ProcessingStatus::Canceling] {
            let c = batch(status, None).request_counts();
            assert_eq!(
                c,
                RequestCounts {
                    processing: 10,
                    ..Default::default()
                }
            );
            assert!(
                batch(status, None)
                    .to_wire("http://h")
                    .results_url
                    .is_none()
            );
        }
    }

    #[test]
    fn unanswered_requests_land_in_the_end_reason_bucket() {
        let c = batch(ProcessingStatus::Ended, Some(EndReason::Canceled)).request_counts();
        assert_eq!(
            (c.succeeded, c.errored, c.canceled, c.expired, c.processing),
            (3, 2, 5, 0, 0)
        );
        let c = batch(ProcessingStatus::Ended, Some(EndReason::Expired)).request_counts();
        assert_eq!((c.canceled, c.expired), (0, 5));
        assert_eq!(c.total(), 10);
        let w = batch(ProcessingStatus::Ended, Some(EndReason::Expired)).to_wire("http://h:1");
        assert_eq!(
            w.results_url.unwrap(),
            "http://h:1/v1/messages/batches/msgbatch_01abc/results"
        );
    }
}
