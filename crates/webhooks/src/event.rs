//! The event a delivery carries: `{"id":"evt_…","type":"message_batch.ended","created_at":"…",
//! "data":{the batch as GET returns it}}`, built by the worker at each attempt from the batch as
//! it is then (an ended batch changes only when its results are archived, which shows in
//! `archived_at`); each attempt signs exactly the bytes it sends. The event id, fixed when the
//! delivery is made, doubles as the `webhook-id`, which receivers deduplicate on.

use batchd_wire::MessageBatch;
use rand::Rng as _;
use serde_json::json;

/// The one Anthropic-surface event: a batch ended, for any reason (its `request_counts` and
/// `cancel_initiated_at` say which).
pub const MESSAGE_BATCH_ENDED: &str = "message_batch.ended";
/// Event types an endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 1] = [MESSAGE_BATCH_ENDED];
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
}
