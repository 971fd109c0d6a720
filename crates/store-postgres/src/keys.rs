//! API keys, [`KeyStore`] for PostgreSQL: stored as SHA-256 hashes with a display prefix,
//! looked up by hash.

use async_trait::async_trait;
use batchd_domain::Timestamp;
use batchd_domain::keys::{self, KeyHash};
use batchd_store::rows;
use batchd_store::{KeyInfo, KeyStore, StoreError, key_columns};
use sqlx::postgres::PgRow;

use crate::PostgresStore;
use crate::db::query_error;
use crate::rows::Cols;

/// The advisory lock that serializes first-key creation (an arbitrary constant: "bk" + 1).
const FIRST_KEY_LOCK: i64 = 0x626b_0001;

fn key_from_row(row: &PgRow) -> Result<KeyInfo, StoreError> {
    batchd_store::rows::key_info(&Cols(row))
}

#[async_trait]
impl KeyStore for PostgresStore {
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
        .fetch_all(&self.pool)
        .await
        .map_err(query_error)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now.as_micros())
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(query_error)?;
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
        sqlx::query_scalar("SELECT workspace FROM api_keys WHERE hash = $1 AND revoked_at IS NULL")
            .bind(&hash.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error)
    }
}

impl PostgresStore {
    /// Inserts a key; with `only_first`, only into an empty table. Concurrent first-key inserts
    /// queue on one transaction-scoped advisory lock, and the insert, taking its snapshot after
    /// the lock, sees the key a predecessor committed. That needs READ COMMITTED, which is set
    /// explicitly: under a server default of REPEATABLE READ the snapshot would predate the lock.
    async fn insert_key(
        &self,
        workspace: &str,
        hash: KeyHash,
        prefix: &str,
        now: Timestamp,
        only_first: bool,
    ) -> Result<Option<KeyInfo>, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(query_error)?;
        let sql = if only_first {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(FIRST_KEY_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
            concat!(
                "INSERT INTO api_keys (id, workspace, hash, prefix, created_at) \
             SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM api_keys) \
             RETURNING ",
                key_columns!()
            )
        } else {
            concat!(
                "INSERT INTO api_keys (id, workspace, hash, prefix, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
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
