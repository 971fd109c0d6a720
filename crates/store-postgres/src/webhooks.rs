//! Webhook endpoints and their deliveries (fan-out, claim, settle), [`WebhookStore`] for
//! PostgreSQL. Many processes may deliver: outbox rows and due deliveries are taken with
//! `FOR UPDATE SKIP LOCKED` and a delivery is leased to its owner until its lease runs out, so
//! no event is fanned out twice nor sent by two processes at once.

use crate::PostgresStore;
use crate::db::query_error;
use crate::rows::{batch_columns, batch_from_row};
use async_trait::async_trait;
use batchd_domain::Timestamp;
use batchd_store::webhooks::{
    Backlog, ClaimedDelivery, DeliveryRecord, DeliveryState, ENDPOINT_COLUMNS, ENDPOINT_GONE,
    Endpoint, EventTypeOf, NewEndpoint, SettleOutcome, Settlement, endpoint_columns_of,
    parse_events, subscribed_pattern,
};
use batchd_store::{StoreError, WebhookStore};
use sqlx::{AssertSqlSafe, Row as _};

fn corrupt(e: sqlx::Error) -> StoreError {
    StoreError::Corrupt(format!("webhook delivery: {e}"))
}

fn claimed_from_row(row: &sqlx::postgres::PgRow) -> Result<ClaimedDelivery, StoreError> {
    Ok(ClaimedDelivery {
        key: row.try_get("delivery_key").map_err(corrupt)?,
        event_id: row.try_get("event_id").map_err(corrupt)?,
        event_at: Timestamp::from_micros(row.try_get("event_at").map_err(corrupt)?),
        created_at: Timestamp::from_micros(row.try_get("delivery_created_at").map_err(corrupt)?),
        attempts: row.try_get::<i64, _>("attempts").map_err(corrupt)? as u32,
        batch_id: row.try_get("batch_id").map_err(corrupt)?,
        endpoint: endpoint_from_row(row)?,
    })
}

fn record_from_row(row: &sqlx::postgres::PgRow) -> Result<DeliveryRecord, StoreError> {
    let state = DeliveryState::from_code(row.try_get("state").map_err(corrupt)?)?;
    Ok(DeliveryRecord {
        event_id: row.try_get("event_id").map_err(corrupt)?,
        batch_id: row.try_get("batch_id").map_err(corrupt)?,
        state,
        attempts: row.try_get::<i64, _>("attempts").map_err(corrupt)? as u32,
        last_status: row
            .try_get::<Option<i64>, _>("last_status")
            .map_err(corrupt)?
            .map(|s| s as u16),
        last_error: row.try_get("last_error").map_err(corrupt)?,
        last_attempt_at: row
            .try_get::<Option<i64>, _>("last_attempt_at")
            .map_err(corrupt)?
            .map(Timestamp::from_micros),
        next_attempt_at: (state == DeliveryState::Pending)
            .then(|| row.try_get::<i64, _>("next_attempt_at"))
            .transpose()
            .map_err(corrupt)?
            .map(Timestamp::from_micros),
    })
}

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
    async fn fan_out(
        &self,
        event_type: EventTypeOf,
        limit: usize,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        let rows = sqlx::query(
            "SELECT seq, batch_key, created_at FROM webhook_outbox \
             ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error)?;
        for row in &rows {
            let seq: i64 = row.try_get("seq").map_err(corrupt)?;
            let batch_key: i64 = row.try_get("batch_key").map_err(corrupt)?;
            let event_at: i64 = row.try_get("created_at").map_err(corrupt)?;
            let batch = sqlx::query(concat!(
                "SELECT ",
                batch_columns!(),
                " FROM batches WHERE key = $1 AND NOT deleted"
            ))
            .bind(batch_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?
            .as_ref()
            .map(batch_from_row)
            .transpose()?;
            if let Some((batch, kind)) = batch.and_then(|b| event_type(&b).map(|k| (b, k))) {
                sqlx::query(
                    "INSERT INTO webhook_deliveries \
                     (event_id, endpoint_key, batch_key, event_at, created_at, next_attempt_at) \
                     SELECT 'evt_' || substr(md5(random()::text || clock_timestamp()::text), 1, 24), e.key, $1, $2, $3, $3 \
                     FROM webhook_endpoints e WHERE e.workspace = $4 AND NOT e.deleted \
                     AND e.disabled_at IS NULL AND e.created_at <= $2 AND e.events LIKE $5 \
                     ON CONFLICT (batch_key, endpoint_key) DO NOTHING",
                )
                .bind(batch_key)
                .bind(event_at)
                .bind(now.as_micros())
                .bind(&batch.workspace)
                .bind(subscribed_pattern(kind))
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
            }
            sqlx::query("DELETE FROM webhook_outbox WHERE seq = $1")
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
        }
        tx.commit().await.map_err(query_error)?;
        Ok(rows.len())
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        limit: usize,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        sqlx::query(
            "UPDATE webhook_deliveries SET state = 2, last_error = $1, lease_owner = NULL, \
             lease_until = NULL WHERE state = 0 AND next_attempt_at <= $2 AND endpoint_key IN \
             (SELECT key FROM webhook_endpoints WHERE deleted OR disabled_at IS NOT NULL)",
        )
        .bind(ENDPOINT_GONE)
        .bind(now.as_micros())
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        let keys: Vec<i64> = sqlx::query_scalar(
            "UPDATE webhook_deliveries SET lease_owner = $1, lease_until = $2 WHERE key IN \
             (SELECT key FROM webhook_deliveries WHERE state = 0 AND next_attempt_at <= $3 \
              AND (lease_until IS NULL OR lease_until <= $3) ORDER BY next_attempt_at LIMIT $4 \
              FOR UPDATE SKIP LOCKED) \
             RETURNING key",
        )
        .bind(owner)
        .bind(lease_until.as_micros())
        .bind(now.as_micros())
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error)?;
        let mut claimed = Vec::with_capacity(keys.len());
        for key in keys {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT d.key AS delivery_key, d.event_id, d.event_at, \
                 d.created_at AS delivery_created_at, d.attempts, b.id AS batch_id, {} \
                 FROM webhook_deliveries d JOIN webhook_endpoints e ON e.key = d.endpoint_key \
                 LEFT JOIN batches b ON b.key = d.batch_key WHERE d.key = $1",
                endpoint_columns_of("e")
            )))
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error)?;
            claimed.push(claimed_from_row(&row)?);
        }
        tx.commit().await.map_err(query_error)?;
        Ok(claimed)
    }

    async fn settle_delivery(
        &self,
        key: i64,
        owner: &str,
        settlement: Settlement,
        now: Timestamp,
        disable_before: Timestamp,
    ) -> Result<(), StoreError> {
        let (state, retry_at) = match settlement.outcome {
            SettleOutcome::Delivered => (DeliveryState::Delivered, None),
            SettleOutcome::RetryAt(at) => (DeliveryState::Pending, Some(at.as_micros())),
            SettleOutcome::GiveUp => (DeliveryState::Failed, None),
        };
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        let endpoint: Option<i64> = sqlx::query_scalar(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $1, \
             last_error = $2, last_attempt_at = $3, state = $4, \
             next_attempt_at = COALESCE($5::BIGINT, next_attempt_at), lease_owner = NULL, \
             lease_until = NULL WHERE key = $6 AND lease_owner = $7 AND state = 0 \
             RETURNING endpoint_key",
        )
        .bind(settlement.status.map(i64::from))
        .bind(&settlement.error)
        .bind(now.as_micros())
        .bind(state.code())
        .bind(retry_at)
        .bind(key)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error)?;
        if let Some(endpoint) = endpoint {
            if !settlement.about_endpoint {
                // Nothing the endpoint did: its run of failures neither starts nor ends.
            } else if settlement.outcome == SettleOutcome::Delivered {
                sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE key = $1")
                    .bind(endpoint)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error)?;
            } else {
                sqlx::query(
                    "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1::BIGINT) \
                     WHERE key = $2",
                )
                .bind(now.as_micros())
                .bind(endpoint)
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
                sqlx::query(
                    "UPDATE webhook_endpoints SET disabled_at = $1 WHERE key = $2 \
                     AND disabled_at IS NULL AND failing_since <= $3",
                )
                .bind(now.as_micros())
                .bind(endpoint)
                .bind(disable_before.as_micros())
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
            }
        }
        tx.commit().await.map_err(query_error)?;
        Ok(())
    }

    async fn list_deliveries(
        &self,
        workspace: &str,
        endpoint_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.event_id, b.id AS batch_id, d.state, d.attempts, d.last_status, \
             d.last_error, d.last_attempt_at, d.next_attempt_at \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.key = d.endpoint_key \
             LEFT JOIN batches b ON b.key = d.batch_key \
             WHERE e.id = $1 AND e.workspace = $2 AND NOT e.deleted \
             ORDER BY d.key DESC LIMIT $3",
        )
        .bind(endpoint_id)
        .bind(workspace)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        // Two single-row reads, each the first entry of an index: the outbox's primary key
        // (rows arrive in `seq` order) and the partial index of pending deliveries by due time.
        let outbox_oldest: Option<i64> =
            sqlx::query_scalar("SELECT created_at FROM webhook_outbox ORDER BY seq LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(query_error)?;
        let next_due: Option<i64> = sqlx::query_scalar(
            "SELECT next_attempt_at FROM webhook_deliveries WHERE state = 0 \
             ORDER BY next_attempt_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error)?;
        Ok(Backlog {
            outbox_oldest: outbox_oldest.map(Timestamp::from_micros),
            next_due: next_due.map(Timestamp::from_micros),
        })
    }
}
