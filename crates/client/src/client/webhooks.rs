//! batchd's webhook endpoint calls of [`Client`] (`/v1/batchd/webhooks`): create, list,
//! retrieve, delete, `rotate_secret` and an endpoint's recent deliveries, with the wire types of
//! [`batchd_wire::webhooks`]. The secret is in the answers of create and rotate only.

use batchd_wire::ListPage;
use batchd_wire::webhooks::{
    CreateWebhookEndpoint, DeletedWebhookEndpoint, WebhookDeliveryList, WebhookEndpoint,
};
use bytes::Bytes;
use reqwest::{Method, Url};

use super::Client;
use crate::error::{Error, Result};

impl Client {
    /// `POST /v1/batchd/webhooks`: the answer carries the endpoint's secret.
    pub async fn create_webhook(&self, body: &CreateWebhookEndpoint) -> Result<WebhookEndpoint> {
        let body = serde_json::to_vec(body).map_err(|e| Error::Invalid(e.to_string()))?;
        let url = self.webhooks_endpoint(&[])?;
        self.json(Method::POST, url, Some(body.into())).await
    }

    /// `GET /v1/batchd/webhooks`: the workspace's endpoints, oldest first, in one page.
    pub async fn list_webhooks(&self) -> Result<ListPage<WebhookEndpoint>> {
        self.json(Method::GET, self.webhooks_endpoint(&[])?, None)
            .await
    }

    /// `GET /v1/batchd/webhooks/{id}`.
    pub async fn retrieve_webhook(&self, id: &str) -> Result<WebhookEndpoint> {
        let url = self.webhooks_endpoint(&[check_webhook_id(id)?])?;
        self.json(Method::GET, url, None).await
    }

    /// `DELETE /v1/batchd/webhooks/{id}`.
    pub async fn delete_webhook(&self, id: &str) -> Result<DeletedWebhookEndpoint> {
        let url = self.webhooks_endpoint(&[check_webhook_id(id)?])?;
        self.json(Method::DELETE, url, None).await
    }

    /// `POST /v1/batchd/webhooks/{id}/rotate_secret`: the answer carries the new secret; the
    /// previous one keeps signing for the server's overlap.
    pub async fn rotate_webhook_secret(&self, id: &str) -> Result<WebhookEndpoint> {
        let url = self.webhooks_endpoint(&[check_webhook_id(id)?, "rotate_secret"])?;
        self.json(Method::POST, url, Some(Bytes::from_static(b"{}")))
            .await
    }

    /// `GET /v1/batchd/webhooks/{id}/deliveries`: its recent deliveries, newest first.
    pub async fn webhook_deliveries(&self, id: &str) -> Result<WebhookDeliveryList> {
        let url = self.webhooks_endpoint(&[check_webhook_id(id)?, "deliveries"])?;
        self.json(Method::GET, url, None).await
    }

    /// `{base}/v1/batchd/webhooks/{segments…}`.
    fn webhooks_endpoint(&self, segments: &[&str]) -> Result<Url> {
        self.batchd_endpoint(&["webhooks"], segments)
    }
}

fn check_webhook_id(id: &str) -> Result<&str> {
    if id.trim().is_empty() {
        return Err(Error::Invalid(
            "expected a non-empty value for `webhook_endpoint_id`".into(),
        ));
    }
    Ok(id)
}
