//! API keys: stored as SHA-256 hashes with a display prefix, looked up by hash.

use batchd_domain::Timestamp;
use batchd_domain::keys::{self, KeyHash};
use batchd_store::{KeyInfo, StoreError};
use sqlx::Connection as _;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStore;
use crate::db::{BEGIN_IMMEDIATE, Durability, db};
use crate::rows::Cols;

pub(crate) const WORKSPACE_FOR_KEY: &str =
    "SELECT workspace FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL";

fn key_from_row(row: &SqliteRow) -> Result<KeyInfo, StoreError> {
    batchd_store::rows::key_info(&Cols(row))
}

impl SqliteStore {
    /// Inserts a key; with `only_first`, only into an empty table (the write lock taken by
    /// `BEGIN IMMEDIATE` makes the check and the insert one step).
    pub(crate) async fn insert_key(
        &self,
        workspace: &str,
        hash: KeyHash,
        prefix: &str,
        now: Timestamp,
        only_first: bool,
    ) -> Result<Option<KeyInfo>, StoreError> {
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        let sql = if only_first {
            "INSERT INTO api_keys (id, workspace, hash, prefix, created_at) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM api_keys) \
             RETURNING id, workspace, prefix, created_at, revoked_at"
        } else {
            "INSERT INTO api_keys (id, workspace, hash, prefix, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             RETURNING id, workspace, prefix, created_at, revoked_at"
        };
        let row = sqlx::query(sql)
            .bind(keys::generate_key_id())
            .bind(workspace)
            .bind(&hash.0[..])
            .bind(prefix)
            .bind(now.as_micros())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let info = row.as_ref().map(key_from_row).transpose()?;
        tx.commit().await.map_err(db)?;
        Ok(info)
    }

    pub(crate) async fn list_keys_impl(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, workspace, prefix, created_at, revoked_at FROM api_keys \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.pools.reader)
        .await
        .map_err(db)?;
        rows.iter().map(key_from_row).collect()
    }

    pub(crate) async fn revoke_key_impl(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn.begin_with(BEGIN_IMMEDIATE).await.map_err(db)?;
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL")
                .bind(now.as_micros())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    /// An indexed equality lookup on the hash: the hash is of a ~238-bit random key, so timing
    /// differences reveal nothing a caller could use to approach a valid key.
    pub(crate) async fn workspace_for_key_impl(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(WORKSPACE_FOR_KEY)
            .bind(&hash.0[..])
            .fetch_optional(&self.pools.reader)
            .await
            .map_err(db)
    }
}
