//! Webhook endpoints, [`WebhookStore`] for PostgreSQL.

use crate::PostgresStore;
use crate::db::query_error;
use async_trait::async_trait;
use batchd_domain::Timestamp;
use batchd_store::webhooks::{ENDPOINT_COLUMNS, Endpoint, NewEndpoint, parse_events};
use batchd_store::{StoreError, WebhookStore};
use sqlx::{AssertSqlSafe, Row as _};

fn endpoint_from_row(row: &sqlx::postgres::PgRow) -> Result<Endpoint, StoreError> {
    let get = |e: sqlx::Error| StoreError::Corrupt(format!("webhook endpoint: {e}"));
    let at = |v: Option<i64>| v.map(Timestamp::from_micros);
    Ok(Endpoint {
        key: row.try_get("key").map_err(get)?,
        id: row.try_get("id").map_err(get)?,
        workspace: row.try_get("workspace").map_err(get)?,
        url: row.try_get("url").map_err(get)?,
        events: parse_events(&row.try_get::<String, _>("events").map_err(get)?)?,
        description: row.try_get("description").map_err(get)?,
        secret: row.try_get("secret").map_err(get)?,
        previous_secret: row.try_get("previous_secret").map_err(get)?,
        previous_until: at(row.try_get("previous_until").map_err(get)?),
        created_at: Timestamp::from_micros(row.try_get("created_at").map_err(get)?),
        disabled_at: at(row.try_get("disabled_at").map_err(get)?),
    })
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn create_endpoint(&self, endpoint: NewEndpoint) -> Result<Endpoint, StoreError> {
        let events = serde_json::to_string(&endpoint.events).map_err(batchd_store::other)?;
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO webhook_endpoints (id, workspace, url, events, description, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ENDPOINT_COLUMNS}"
        )))
        .bind(&endpoint.id)
        .bind(&endpoint.workspace)
        .bind(&endpoint.url)
        .bind(events)
        .bind(&endpoint.description)
        .bind(&endpoint.secret)
        .bind(endpoint.created_at.as_micros())
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error)?;
        let created = endpoint_from_row(&row)?;
        tx.commit().await.map_err(query_error)?;
        Ok(created)
    }

    async fn list_endpoints(&self, workspace: &str) -> Result<Vec<Endpoint>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE workspace = $1 AND NOT deleted ORDER BY key"
        )))
        .bind(workspace)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error)?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn get_endpoint(
        &self,
        workspace: &str,
        id: &str,
    ) -> Result<Option<Endpoint>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND workspace = $2 AND NOT deleted"
        )))
        .bind(id)
        .bind(workspace)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error)?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    async fn delete_endpoint(&self, workspace: &str, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET deleted = true WHERE id = $1 AND workspace = $2 AND NOT deleted",
        )
        .bind(id)
        .bind(workspace)
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn rotate_secret(
        &self,
        workspace: &str,
        id: &str,
        secret: &str,
        previous_until: Timestamp,
    ) -> Result<Option<Endpoint>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE webhook_endpoints SET previous_secret = secret, secret = $1, previous_until = $2 \
             WHERE id = $3 AND workspace = $4 AND NOT deleted RETURNING {ENDPOINT_COLUMNS}"
        )))
        .bind(secret)
        .bind(previous_until.as_micros())
        .bind(id)
        .bind(workspace)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error)?;
        let rotated = row.as_ref().map(endpoint_from_row).transpose()?;
        tx.commit().await.map_err(query_error)?;
        Ok(rotated)
    }
}
