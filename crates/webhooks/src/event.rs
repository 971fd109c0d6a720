//! The events a delivery carries, one per batch whose end became visible, its type following
//! the batch's surface ([`event_type`]): on the Anthropic surface `{"id":"evt_…","type":
//! "message_batch.ended","created_at":"…","data":{the batch as GET returns it}}`, built by the
//! worker at each attempt from the batch as it is then (an ended batch changes only when its
//! results are archived, which shows in `archived_at`); on the OpenAI surface OpenAI's thin
//! `{"object":"event","id":"evt_…","type":"batch.completed","created_at":<unix s>,"data":{"id":
//! "batch_…"}}` (`shared/spec/openai-batches.md`, section 7). Each attempt signs exactly the
//! bytes it sends. The event id, fixed when the delivery is made, doubles as the `webhook-id`,
//! which receivers deduplicate on.

use batchd_domain::Batch;
use batchd_domain::openai::{Surface, status};
use batchd_wire::MessageBatch;
use batchd_wire::openai::OpenAiBatchStatus;
use rand::Rng as _;
use serde_json::json;

/// The one Anthropic-surface event: a batch ended, for any reason (its `request_counts` and
/// `cancel_initiated_at` say which).
pub const MESSAGE_BATCH_ENDED: &str = "message_batch.ended";
/// The OpenAI surface's events, one per terminal status a batch shows there.
pub const BATCH_COMPLETED: &str = "batch.completed";
pub const BATCH_FAILED: &str = "batch.failed";
pub const BATCH_EXPIRED: &str = "batch.expired";
pub const BATCH_CANCELLED: &str = "batch.cancelled";
/// Event types an endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 5] = [
    MESSAGE_BATCH_ENDED,
    BATCH_COMPLETED,
    BATCH_FAILED,
    BATCH_EXPIRED,
    BATCH_CANCELLED,
];
/// Prefixes of the ids of events and endpoints.
pub const EVENT_PREFIX: &str = "evt_";
pub const ENDPOINT_PREFIX: &str = "whep_";

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_id(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + 24);
    s.push_str(prefix);
    for _ in 0..24 {
        s.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    s
}

/// A new event id.
pub fn event_id() -> String {
    random_id(EVENT_PREFIX)
}

/// A new endpoint id.
pub fn endpoint_id() -> String {
    random_id(ENDPOINT_PREFIX)
}

/// The type of an ended batch's event: on the OpenAI surface the one its terminal `status`
/// names; `None` while it does not show a terminal status (the store writes the outbox row only
/// once it does, so that is a batch the worker has nothing to say about).
pub fn event_type(batch: &Batch) -> Option<&'static str> {
    match batch.endpoint.surface() {
        Surface::Anthropic => Some(MESSAGE_BATCH_ENDED),
        Surface::OpenAi => match status(batch) {
            OpenAiBatchStatus::Completed => Some(BATCH_COMPLETED),
            OpenAiBatchStatus::Failed => Some(BATCH_FAILED),
            OpenAiBatchStatus::Expired => Some(BATCH_EXPIRED),
            OpenAiBatchStatus::Cancelled => Some(BATCH_CANCELLED),
            _ => None,
        },
    }
}

/// The body of an OpenAI-surface event: OpenAI's thin shape, `created_at` in unix seconds, as
/// the OpenAI API writes times.
pub fn openai_batch_event(id: &str, event_type: &str, created_at: u64, batch_id: &str) -> Vec<u8> {
    let body = json!({
        "object": "event",
        "id": id,
        "type": event_type,
        "created_at": created_at,
        "data": {"id": batch_id},
    });
    // Serializing a Value cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The body of a `message_batch.ended` event; `created_at` is RFC 3339, as the batch's times.
pub fn batch_ended(id: &str, created_at: &str, batch: &MessageBatch) -> Vec<u8> {
    let body = json!({
        "id": id,
        "type": MESSAGE_BATCH_ENDED,
        "created_at": created_at,
        "data": batch,
    });
    // Serializing a Value cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use batchd_wire::{MessageBatchType, ProcessingStatus, RequestCounts};

    use super::*;

    #[test]
    fn the_body_holds_the_batch_as_get_returns_it() {
        let batch = MessageBatch {
            id: "msgbatch_01".into(),
            kind: MessageBatchType::MessageBatch,
            processing_status: ProcessingStatus::Ended,
            request_counts: RequestCounts {
                succeeded: 2,
                ..Default::default()
            },
            ended_at: Some("2026-12-04T20:00:01Z".into()),
            created_at: "2026-12-04T20:00:00Z".into(),
            expires_at: "2026-12-05T20:00:00Z".into(),
            archived_at: None,
            cancel_initiated_at: None,
            results_url: Some("https://h/v1/messages/batches/msgbatch_01/results".into()),
        };
        let id = event_id();
        assert!(id.starts_with("evt_") && id.len() == 28);
        assert!(endpoint_id().starts_with("whep_"));
        let body = batch_ended(&id, "2026-12-04T20:00:01Z", &batch);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["id"], id.as_str());
        assert_eq!(value["type"], "message_batch.ended");
        assert_eq!(value["created_at"], "2026-12-04T20:00:01Z");
        assert_eq!(value["data"], serde_json::to_value(&batch).unwrap());
    }

    fn openai_batch() -> Batch {
        use batchd_domain::openai::{Endpoint, OpenAiBatchMeta};
        use batchd_domain::{ApiVersion, BatchId, Timestamp};
        Batch {
            key: 1,
            id: BatchId::parse("msgbatch_01abc").unwrap(),
            workspace: "w".into(),
            status: ProcessingStatus::Ended,
            total: 1,
            succeeded: 1,
            errored: 0,
            end_reason: None,
            created_at: Timestamp::from_micros(1),
            expires_at: Timestamp::from_micros(2),
            ended_at: Some(Timestamp::from_micros(3)),
            cancel_initiated_at: None,
            archived_at: None,
            betas: vec![],
            api_version: ApiVersion::default(),
            user_profile_id: None,
            endpoint: Endpoint::ChatCompletions,
            openai: Some(OpenAiBatchMeta {
                input_file_id: "file-in".into(),
                completion_window: "24h".into(),
                metadata: None,
                output_expires_after: None,
                model: None,
                errors: vec![],
                output_file_id: None,
                error_file_id: None,
                usage: None,
            }),
            finalized_at: None,
        }
    }

    #[test]
    fn an_openai_batch_has_the_event_of_the_terminal_status_it_shows() {
        use batchd_domain::openai::{Endpoint, LineError};
        use batchd_domain::{EndReason, Timestamp};
        let mut b = openai_batch();
        assert_eq!(event_type(&b), None, "finalizing: not terminal yet");
        b.finalized_at = Some(Timestamp::from_micros(4));
        assert_eq!(event_type(&b), Some(BATCH_COMPLETED));
        b.end_reason = Some(EndReason::Expired);
        assert_eq!(event_type(&b), Some(BATCH_EXPIRED));
        b.end_reason = Some(EndReason::Canceled);
        assert_eq!(event_type(&b), Some(BATCH_CANCELLED));
        b.finalized_at = None;
        assert_eq!(
            event_type(&b),
            None,
            "cancelling until its files are written"
        );
        b.openai.as_mut().unwrap().errors = vec![LineError {
            code: "invalid_json_line".into(),
            message: "m".into(),
            param: None,
            line: Some(1),
        }];
        assert_eq!(event_type(&b), Some(BATCH_FAILED));
        b.endpoint = Endpoint::Messages;
        b.openai = None;
        assert_eq!(event_type(&b), Some(MESSAGE_BATCH_ENDED));
        for t in [
            BATCH_COMPLETED,
            BATCH_FAILED,
            BATCH_EXPIRED,
            BATCH_CANCELLED,
        ] {
            assert!(EVENT_TYPES.contains(&t), "{t} may be subscribed to");
        }
    }

    #[test]
    fn the_openai_body_is_thin() {
        let body = openai_batch_event("evt_1", BATCH_COMPLETED, 1_750_287_018, "batch_abc");
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"object": "event", "id": "evt_1", "type": "batch.completed",
                "created_at": 1_750_287_018, "data": {"id": "batch_abc"}})
        );
    }
}
