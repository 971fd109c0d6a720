//! API keys: stored as SHA-256 hashes with a display prefix, looked up by hash.

use batchd_domain::Timestamp;
use batchd_domain::keys::{self, KeyHash};
use batchd_store::{KeyInfo, StoreError};
use sqlx::postgres::PgRow;

use crate::PostgresStore;
use crate::db::db;
use crate::rows::{Cols, count};

fn key_from_row(row: &PgRow) -> Result<KeyInfo, StoreError> {
    batchd_store::rows::key_info(&Cols(row))
}

impl PostgresStore {
    pub(crate) async fn create_key_impl(
        &self,
        workspace: &str,
        hash: KeyHash,
        prefix: &str,
        now: Timestamp,
    ) -> Result<KeyInfo, StoreError> {
        let row = sqlx::query(
            "INSERT INTO api_keys (id, workspace, hash, prefix, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             RETURNING id, workspace, prefix, created_at, revoked_at",
        )
        .bind(keys::generate_key_id())
        .bind(workspace)
        .bind(&hash.0[..])
        .bind(prefix)
        .bind(now.as_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        key_from_row(&row)
    }

    pub(crate) async fn list_keys_impl(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, workspace, prefix, created_at, revoked_at FROM api_keys \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(key_from_row).collect()
    }

    pub(crate) async fn revoke_key_impl(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now.as_micros())
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn count_keys_impl(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        count(n, "key count")
    }

    /// An indexed equality lookup on the hash: the hash is of a ~238-bit random key, so timing
    /// differences reveal nothing a caller could use to approach a valid key.
    pub(crate) async fn workspace_for_key_impl(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT workspace FROM api_keys WHERE hash = $1 AND revoked_at IS NULL")
            .bind(&hash.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }
}
