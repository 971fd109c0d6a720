//! Webhook endpoints as stored: what [`crate::WebhookStore`] takes and gives. The secret is
//! stored as it is (it must sign) and is the caller's to keep out of logs; after a rotation the
//! previous one stays valid until `previous_until`, so deliveries in that window carry both
//! signatures.

use batchd_domain::Timestamp;

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
