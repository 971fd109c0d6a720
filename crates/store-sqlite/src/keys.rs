//! API keys, [`KeyStore`] for SQLite: stored as SHA-256 hashes with a display prefix, looked up
//! by hash.

use async_trait::async_trait;
use batchd_domain::Timestamp;
use batchd_domain::keys::{self, KeyHash};
use batchd_store::rows;
use batchd_store::{KeyInfo, KeyStore, StoreError, key_columns};
use sqlx::Connection as _;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStore;
use crate::db::{BEGIN_IMMEDIATE, Durability, query_error};
use crate::rows::Cols;

pub(crate) const WORKSPACE_FOR_KEY: &str =
    "SELECT workspace FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL";

fn key_from_row(row: &SqliteRow) -> Result<KeyInfo, StoreError> {
    batchd_store::rows::key_info(&Cols(row))
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(
        &self,
        workspace: &str,
        hash: KeyHash,
        prefix: &str,
        now: Timestamp,
    ) -> Result<KeyInfo, StoreError> {
        rows::inserted_key(self.insert_key(workspace, hash, prefix, now, false).await?)
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys ORDER BY created_at, id"
        ))
        .fetch_all(&self.pools.reader)
        .await
        .map_err(query_error)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL")
                .bind(now.as_micros())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_first_key(
        &self,
        workspace: &str,
        hash: KeyHash,
        prefix: &str,
        now: Timestamp,
    ) -> Result<Option<KeyInfo>, StoreError> {
        self.insert_key(workspace, hash, prefix, now, true).await
    }

    /// An indexed equality lookup on the hash: the hash is of a ~238-bit random key, so timing
    /// differences reveal nothing a caller could use to approach a valid key.
    async fn workspace_for_key(&self, hash: &KeyHash) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(WORKSPACE_FOR_KEY)
            .bind(&hash.0[..])
            .fetch_optional(&self.pools.reader)
            .await
            .map_err(query_error)
    }
}

impl SqliteStore {
    /// Inserts a key; with `only_first`, only into an empty table (the write lock taken by
    /// `BEGIN IMMEDIATE` makes the check and the insert one step).
    async fn insert_key(
        &self,
        workspace: &str,
        hash: KeyHash,
        prefix: &str,
        now: Timestamp,
        only_first: bool,
    ) -> Result<Option<KeyInfo>, StoreError> {
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let sql = if only_first {
            concat!(
                "INSERT INTO api_keys (id, workspace, hash, prefix, created_at) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM api_keys) \
             RETURNING ",
                key_columns!()
            )
        } else {
            concat!(
                "INSERT INTO api_keys (id, workspace, hash, prefix, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             RETURNING ",
                key_columns!()
            )
        };
        let row = sqlx::query(sql)
            .bind(keys::generate_key_id())
            .bind(workspace)
            .bind(&hash.0[..])
            .bind(prefix)
            .bind(now.as_micros())
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?;
        let info = row.as_ref().map(key_from_row).transpose()?;
        tx.commit().await.map_err(query_error)?;
        Ok(info)
    }
}
