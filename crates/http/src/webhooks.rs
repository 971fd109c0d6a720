//! batchd's webhook endpoints under `/v1/batchd/webhooks`: create (the only answer, with rotate,
//! that shows the secret), list, retrieve, delete and `rotate_secret`. A URL is checked when the
//! endpoint is created, by the rules of `batchd_webhooks::policy`, and again at every send; and
//! an endpoint's recent deliveries (`deliveries`). The objects are `batchd_wire::webhooks`'.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use batchd_domain::ErrorType;
use batchd_store::WebhookStore;
use batchd_store::webhooks::{DeliveryRecord, DeliveryState, Endpoint, NewEndpoint};
use batchd_webhooks::event::{EVENT_TYPES, MESSAGE_BATCH_ENDED, endpoint_id};
use batchd_webhooks::{Secret, policy};
use batchd_wire::ListPage;
use batchd_wire::webhooks::{
    DeletedWebhookEndpoint, DeletedWebhookEndpointType, WebhookDelivery, WebhookDeliveryList,
    WebhookDeliveryState, WebhookDeliveryType, WebhookEndpoint, WebhookEndpointType,
};
use bytes::Bytes;
use serde_json::Value;

use crate::auth::Caller;
use crate::batches::json;
use crate::extract::IdParam;
use crate::{ApiError, AppState};

/// How long the previous secret keeps signing after a rotation (Standard Webhooks lets a
/// delivery carry several signatures).
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3_600);
/// Longest description.
const MAX_DESCRIPTION: usize = 512;
/// How many recent deliveries `GET …/deliveries` lists.
const RECENT_DELIVERIES: usize = 100;

impl AppState {
    /// Serves the webhook routes from `store`. Set before the state is shared.
    pub fn with_webhooks(mut self, store: Arc<dyn WebhookStore>) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.webhooks = Some(store),
            None => tracing::error!("webhooks were set after the state was shared; they stay off"),
        }
        self
    }

    fn webhooks(&self) -> Result<&dyn WebhookStore, ApiError> {
        self.inner
            .webhooks
            .as_deref()
            .ok_or_else(|| ApiError::new(ErrorType::NotFound, "Not found"))
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorType::NotFound,
        format!("Webhook endpoint {id} not found."),
    )
}

/// The endpoint as the API shows it; `secret` only when given.
fn endpoint_json(e: &Endpoint, secret: Option<&Secret>) -> WebhookEndpoint {
    WebhookEndpoint {
        kind: WebhookEndpointType::WebhookEndpoint,
        id: e.id.clone(),
        url: e.url.clone(),
        events: e.events.clone(),
        description: e.description.clone(),
        created_at: e.created_at.to_rfc3339(),
        disabled_at: e.disabled_at.map(|t| t.to_rfc3339()),
        secret: secret.map(|s| s.expose().to_owned()),
    }
}

/// The create body: `url` (required), `events` (default: `message_batch.ended` only), `description`.
fn parse_create(
    body: &[u8],
    policy: policy::Policy,
) -> Result<(String, Vec<String>, Option<String>), ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(batchd_domain::validation::not_json(e)))?;
    let Value::Object(map) = value else {
        return Err(ApiError::invalid(batchd_domain::validation::NOT_DICT));
    };
    let (mut url, mut events, mut description) = (None, None, None);
    for (key, value) in map {
        match key.as_str() {
            "url" => url = Some(value),
            "events" => events = Some(value),
            "description" => description = Some(value),
            _ => {
                return Err(ApiError::invalid(format!(
                    "{key}: Extra inputs are not permitted"
                )));
            }
        }
    }
    let url = match url {
        None => return Err(ApiError::invalid("url: Field required")),
        Some(Value::String(url)) => url,
        Some(_) => return Err(ApiError::invalid("url: Input should be a valid string")),
    };
    policy::check_url(&url, policy)
        .map_err(|why| ApiError::invalid(format!("url: {url} {why}")))?;
    let events = match events {
        None => vec![MESSAGE_BATCH_ENDED.to_owned()],
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str().filter(|e| EVENT_TYPES.contains(e)) {
                    Some(e) if !out.iter().any(|o: &String| o == e) => out.push(e.to_owned()),
                    Some(_) => {}
                    None => {
                        return Err(ApiError::invalid(format!(
                            "events.{i}: Input should be {}",
                            one_of(&EVENT_TYPES)
                        )));
                    }
                }
            }
            out
        }
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                "events: List should have at least 1 item after validation, not 0",
            ));
        }
        Some(_) => return Err(ApiError::invalid("events: Input should be a valid list")),
    };
    let description = match description {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d.chars().count() <= MAX_DESCRIPTION => Some(d),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid(format!(
                "description: String should have at most {MAX_DESCRIPTION} characters"
            )));
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "description: Input should be a valid string",
            ));
        }
    };
    Ok((url, events, description))
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let policy = state.inner.config.webhooks;
    let (url, events, description) = parse_create(&body, policy)?;
    // A name that resolves to a forbidden address is refused now too; one that does not
    // resolve yet is accepted (the send-time check applies to it).
    if let Ok(parsed) = batchd_webhooks::policy::Url::parse(&url)
        && let Err(policy::Refusal::Private) = policy::resolve(&parsed, policy).await
    {
        return Err(ApiError::invalid(format!(
            "url: {url} {}",
            policy::Refusal::Private
        )));
    }
    let secret = Secret::generate();
    let endpoint = state
        .webhooks()?
        .create_endpoint(NewEndpoint {
            id: endpoint_id(),
            workspace: caller.workspace.clone(),
            url,
            events,
            description,
            secret: secret.expose().to_owned(),
            created_at: state.now_in(&caller.workspace).await?,
        })
        .await?;
    json(&endpoint_json(&endpoint, Some(&secret)))
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let endpoints = state.webhooks()?.list_endpoints(&caller.workspace).await?;
    json(&ListPage {
        data: endpoints.iter().map(|e| endpoint_json(e, None)).collect(),
        has_more: false,
        first_id: endpoints.first().map(|e| e.id.clone()),
        last_id: endpoints.last().map(|e| e.id.clone()),
    })
}

pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(id): IdParam,
) -> Result<Response, ApiError> {
    let endpoint = state
        .webhooks()?
        .get_endpoint(&caller.workspace, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    json(&endpoint_json(&endpoint, None))
}

fn delivery_json(d: &DeliveryRecord) -> WebhookDelivery {
    WebhookDelivery {
        kind: WebhookDeliveryType::WebhookDelivery,
        event_id: d.event_id.clone(),
        batch_id: d.batch_id.clone(),
        state: match d.state {
            DeliveryState::Pending => WebhookDeliveryState::Pending,
            DeliveryState::Delivered => WebhookDeliveryState::Delivered,
            DeliveryState::Failed => WebhookDeliveryState::Failed,
        },
        attempts: d.attempts,
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        last_attempt_at: d.last_attempt_at.map(|t| t.to_rfc3339()),
        next_attempt_at: d.next_attempt_at.map(|t| t.to_rfc3339()),
    }
}

/// The endpoint's recent deliveries, newest first.
pub async fn deliveries(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(id): IdParam,
) -> Result<Response, ApiError> {
    let store = state.webhooks()?;
    store
        .get_endpoint(&caller.workspace, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let records = store
        .list_deliveries(&caller.workspace, &id, RECENT_DELIVERIES)
        .await?;
    json(&WebhookDeliveryList {
        data: records.iter().map(delivery_json).collect(),
    })
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(id): IdParam,
) -> Result<Response, ApiError> {
    if !state
        .webhooks()?
        .delete_endpoint(&caller.workspace, &id)
        .await?
    {
        return Err(not_found(&id));
    }
    json(&DeletedWebhookEndpoint {
        id,
        kind: DeletedWebhookEndpointType::WebhookEndpointDeleted,
    })
}

pub async fn rotate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(id): IdParam,
) -> Result<Response, ApiError> {
    let secret = Secret::generate();
    let until = state
        .now_in(&caller.workspace)
        .await?
        .plus(ROTATION_OVERLAP);
    let endpoint = state
        .webhooks()?
        .rotate_secret(&caller.workspace, &id, secret.expose(), until)
        .await?
        .ok_or_else(|| not_found(&id))?;
    json(&endpoint_json(&endpoint, Some(&secret)))
}

/// Pydantic's wording of a literal's choices: `'a', 'b' or 'c'`.
fn one_of(choices: &[&str]) -> String {
    let quoted: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: policy::Policy = policy::Policy {
        allow_http: false,
        allow_private: false,
    };

    fn refusal(body: &str) -> String {
        let err = parse_create(body.as_bytes(), STRICT).unwrap_err();
        format!("{err:?}")
    }

    #[test]
    fn create_bodies_are_checked() {
        let (url, events, description) =
            parse_create(br#"{"url":"https://example.com/h"}"#, STRICT).unwrap();
        assert_eq!(
            (url.as_str(), events, description),
            (
                "https://example.com/h",
                vec![MESSAGE_BATCH_ENDED.to_owned()],
                None
            )
        );
        assert!(
            refusal(r#"{"url":"http://example.com/h"}"#)
                .contains("url: http://example.com/h must use https")
        );
        assert!(
            refusal(r#"{"url":"https://169.254.169.254/"}"#)
                .contains("loopback, private, link-local or metadata")
        );
        assert!(refusal(r#"{}"#).contains("url: Field required"));
        let (_, events, _) = parse_create(
            br#"{"url":"https://e.com","events":["batch.completed","batch.failed","batch.expired","batch.cancelled","message_batch.ended"]}"#,
            STRICT,
        )
        .unwrap();
        assert_eq!(
            events.len(),
            5,
            "every surface's events may be subscribed to"
        );
        assert!(
            refusal(r#"{"url":"https://e.com","events":["batch.completed","batch.done"]}"#)
                .contains(
                    "events.1: Input should be 'message_batch.ended', 'batch.completed', \
                     'batch.failed', 'batch.expired' or 'batch.cancelled'"
                )
        );
        assert!(refusal(r#"{"url":"https://e.com","events":[]}"#).contains("at least 1 item"));
        assert!(refusal(r#"{"url":"https://e.com","x":1}"#).contains("x: Extra inputs"));
    }
}
