//! Webhook endpoints as stored: what [`crate::WebhookStore`] takes and gives. The secret is
//! stored as it is (it must sign) and is the caller's to keep out of logs; after a rotation the
//! previous one stays valid until `previous_until`, so deliveries in that window carry both
//! signatures.

use std::time::Duration;

use batchd_domain::{Batch, Timestamp};

/// The event type an ended batch's event has (it follows what its surface shows), or `None`
/// when it has no event; fan-out asks it of each batch, so an endpoint gets only the types it
/// subscribed to.
pub type EventTypeOf = fn(&Batch) -> Option<&'static str>;

/// The columns every engine selects for an endpoint, in this order.
pub const ENDPOINT_COLUMNS: &str = "key, id, workspace, url, events, description, secret, \
     previous_secret, previous_until, created_at, disabled_at";

/// An endpoint about to be created.
#[derive(Clone)]
pub struct NewEndpoint {
    pub id: String,
    pub workspace: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub secret: String,
    pub created_at: Timestamp,
}

/// A stored endpoint (never a deleted one).
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub key: i64,
    pub id: String,
    pub workspace: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_until: Option<Timestamp>,
    pub created_at: Timestamp,
    /// Set once its deliveries have failed for too long.
    pub disabled_at: Option<Timestamp>,
}

impl std::fmt::Debug for Endpoint {
    /// Everything but the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("key", &self.key)
            .field("id", &self.id)
            .field("workspace", &self.workspace)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("previous_until", &self.previous_until)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NewEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEndpoint")
            .field("id", &self.id)
            .field("workspace", &self.workspace)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Decodes the stored event list.
pub fn parse_events(text: &str) -> Result<Vec<String>, crate::StoreError> {
    serde_json::from_str(text).map_err(|e| crate::StoreError::Corrupt(format!("events: {e}")))
}

/// A delivery's state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn code(self) -> i64 {
        match self {
            Self::Pending => 0,
            Self::Delivered => 1,
            Self::Failed => 2,
        }
    }

    pub fn from_code(code: i64) -> Result<Self, crate::StoreError> {
        match code {
            0 => Ok(Self::Pending),
            1 => Ok(Self::Delivered),
            2 => Ok(Self::Failed),
            other => Err(crate::StoreError::Corrupt(format!(
                "webhook delivery state {other}"
            ))),
        }
    }
}

/// The last error of a delivery whose endpoint was deleted or disabled before it was sent.
pub const ENDPOINT_GONE: &str = "endpoint deleted or disabled";

/// A delivery handed to one worker until `lease_until`: what it needs to build, sign and send
/// the event. `event_id` was fixed at fan-out, so every attempt carries the same `webhook-id`.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub key: i64,
    pub event_id: String,
    /// The batch's `ended_at`, on its workspace's clock: the event's `created_at`.
    pub event_at: Timestamp,
    /// When the delivery was made: the origin of its retry schedule.
    pub created_at: Timestamp,
    pub attempts: u32,
    /// `None` once the batch's row is gone (purged): there is nothing left to send.
    pub batch_id: Option<String>,
    pub endpoint: Endpoint,
}

/// How one attempt went, as the worker decided it with the retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// Why the attempt failed without an answer.
    pub error: Option<String>,
    pub outcome: SettleOutcome,
    /// Whether the attempt says something about the endpoint (false when there was nothing to
    /// send, e.g. the batch is gone): only then does it start or end the endpoint's failures.
    pub about_endpoint: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    Delivered,
    /// Failed; tried again at this time.
    RetryAt(Timestamp),
    /// Failed for the last time.
    GiveUp,
}

/// One delivery as `GET …/deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub event_id: String,
    pub batch_id: Option<String>,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Timestamp>,
    /// Set while pending.
    pub next_attempt_at: Option<Timestamp>,
}

/// How far behind completion webhooks are, as `/metrics` shows it: read with one indexed
/// lookup per table (the outbox's first row by `seq`; the due index of pending deliveries), so a
/// scrape never scans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// The event time (the batch's `ended_at`) of the outbox row waiting longest to be fanned
    /// out; `None` when the outbox is empty.
    pub outbox_oldest: Option<Timestamp>,
    /// When the earliest pending delivery is due; `None` when none is pending.
    pub next_due: Option<Timestamp>,
}

impl Backlog {
    /// How long the oldest outbox row has waited at `now`: zero when there is none (or its
    /// time is ahead, as a test-mode clock can put it).
    pub fn outbox_age(&self, now: Timestamp) -> Duration {
        self.outbox_oldest.map_or(Duration::ZERO, |t| t.until(now))
    }

    /// How long the most overdue pending delivery has been due at `now`: zero when none is
    /// due yet. A delivery being sent counts as due until it is settled.
    pub fn delivery_lag(&self, now: Timestamp) -> Duration {
        self.next_due.map_or(Duration::ZERO, |t| t.until(now))
    }
}

/// The endpoint columns prefixed with `e.`, for joins.
pub fn endpoint_columns_of(alias: &str) -> String {
    ENDPOINT_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pattern an endpoint's stored `events` JSON matches when it holds `event_type`.
pub fn subscribed_pattern(event_type: &str) -> String {
    format!("%\"{event_type}\"%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_ages_are_zero_when_empty_or_ahead() {
        let now = Timestamp::from_micros(10_000_000);
        assert_eq!(Backlog::default().outbox_age(now), Duration::ZERO);
        assert_eq!(Backlog::default().delivery_lag(now), Duration::ZERO);
        let backlog = Backlog {
            outbox_oldest: Some(Timestamp::from_micros(7_000_000)),
            next_due: Some(Timestamp::from_micros(12_000_000)),
        };
        assert_eq!(backlog.outbox_age(now), Duration::from_secs(3));
        assert_eq!(backlog.delivery_lag(now), Duration::ZERO, "not due yet");
    }
}
