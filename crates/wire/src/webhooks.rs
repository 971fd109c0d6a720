//! The objects of batchd's webhook endpoint routes (`/v1/batchd/webhooks`): an endpoint (with
//! its secret only in the answers of create and `rotate_secret`), the list of a workspace's
//! endpoints, a deleted endpoint, and an endpoint's recent deliveries.

use serde::{Deserialize, Serialize};

/// The constant `"webhook_endpoint"` type tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookEndpointType {
    #[default]
    #[serde(rename = "webhook_endpoint")]
    WebhookEndpoint,
}

/// A webhook endpoint. `secret` (`whsec_…`) is present only in the answers of create and
/// `rotate_secret`, the only times it is shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    #[serde(rename = "type")]
    pub kind: WebhookEndpointType,
    pub id: String,
    pub url: String,
    /// The event types delivered to it.
    pub events: Vec<String>,
    pub description: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// When its deliveries had failed for too long and it stopped receiving events; RFC 3339.
    pub disabled_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for WebhookEndpoint {
    /// Everything but the secret, so that logging an endpoint cannot leak it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("description", &self.description)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /v1/batchd/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateWebhookEndpoint {
    pub url: String,
    /// Omitted: the server's default (`message_batch.ended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The constant `"webhook_endpoint_deleted"` type tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeletedWebhookEndpointType {
    #[default]
    #[serde(rename = "webhook_endpoint_deleted")]
    WebhookEndpointDeleted,
}

/// The answer of `DELETE /v1/batchd/webhooks/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedWebhookEndpoint {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: DeletedWebhookEndpointType,
}

/// The constant `"webhook_delivery"` type tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookDeliveryType {
    #[default]
    #[serde(rename = "webhook_delivery")]
    WebhookDelivery,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookDeliveryState {
    /// Not delivered yet; tried again at `next_attempt_at`.
    Pending,
    Delivered,
    /// Given up on.
    Failed,
}

impl WebhookDeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// One event's delivery to one endpoint: `GET /v1/batchd/webhooks/{id}/deliveries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    #[serde(rename = "type")]
    pub kind: WebhookDeliveryType,
    /// The event's id, sent as `webhook-id` on every attempt.
    pub event_id: String,
    /// The batch the event is about; null once the batch is gone.
    pub batch_id: Option<String>,
    pub state: WebhookDeliveryState,
    pub attempts: u32,
    /// The receiver's status at the last attempt, when it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed without an answer.
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_attempt_at: Option<String>,
    /// Set while pending; RFC 3339.
    pub next_attempt_at: Option<String>,
}

/// An endpoint's recent deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDeliveryList {
    pub data: Vec<WebhookDelivery>,
}
