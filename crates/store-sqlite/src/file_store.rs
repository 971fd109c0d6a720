//! The OpenAI surface's files, [`FileStore`] for SQLite. Every write goes through the single
//! writer like any other (`BEGIN IMMEDIATE`, one short transaction per piece), so a 200 MB
//! upload never holds the write lock for more than one piece at a time; reads use the read pool.

use async_trait::async_trait;
use batchd_domain::Timestamp;
use batchd_domain::openai::FileId;
use batchd_store::files::{self, Listing, Pieces};
use batchd_store::{FileDraft, FilePage, FileStore, NewFile, StoreError, StoredFile, paging};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::SqliteStore;
use crate::db::{BEGIN_IMMEDIATE, Durability, query_error};
use crate::rows::{FILE_DELETED, FILE_DRAFT, FILE_VISIBLE, file_columns, file_from_row, get};

pub(crate) const GET_FILE: &str = concat!(
    "SELECT ",
    file_columns!(),
    " FROM files WHERE id = ?1 AND workspace = ?2 AND state = 1"
);

/// The keys of visible files due to expire (`?1` now, `?2` how many at most), oldest expiry
/// first, through `files_expiry`: due on their workspace's clock (test mode's offset, none
/// without a `clocks` row). The first bound, by the farthest clock, keeps the scan of the index
/// to the files that may be due.
macro_rules! due_files {
    () => {
        "SELECT key FROM files WHERE state = 1 AND expires_at IS NOT NULL \
         AND expires_at <= ?1 + (SELECT COALESCE(MAX(offset_micros), 0) FROM clocks) \
         AND expires_at <= ?1 + COALESCE((SELECT c.offset_micros FROM clocks c \
         WHERE c.workspace = files.workspace), 0) ORDER BY expires_at LIMIT ?2"
    };
}

/// Visible files due to expire (`?1` now, `?2` how many at most), oldest expiry first, through
/// `files_expiry`.
const DUE_FILES: &str = concat!("key IN (", due_files!(), ")");

/// Expires [`DUE_FILES`]. The outer `state = 1` makes a file that a concurrent pass (or delete)
/// took first count once.
pub(crate) const EXPIRE_FILES: &str = concat!(
    "UPDATE files SET state = 2 WHERE state = 1 AND key IN (",
    due_files!(),
    ")"
);

/// Makes `draft` visible in `tx` with the purpose and expiry it holds now, once its pieces are
/// checked against the `bytes` written.
/// Shared by a file's own commit and the finalize that commits a batch's files with it.
pub(crate) async fn commit_draft(
    tx: &mut sqlx::SqliteConnection,
    draft: &FileDraft,
    bytes: u64,
) -> Result<StoredFile, StoreError> {
    let key = draft.key;
    // `length` of a blob reads its size, not its bytes.
    let (count, last_seq, stored): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(MAX(seq), -1), COALESCE(SUM(length(data)), 0) \
         FROM file_chunks WHERE file_key = ?1",
    )
    .bind(key)
    .fetch_one(&mut *tx)
    .await
    .map_err(query_error)?;
    let pieces = Pieces {
        count,
        last_seq,
        bytes: stored,
    };
    files::check_commit(key, pieces, bytes)?;
    let row = sqlx::query(concat!(
        "UPDATE files SET state = ?1, bytes = ?2, purpose = ?5, expires_at = ?6 \
         WHERE key = ?3 AND state = ?4 RETURNING ",
        file_columns!()
    ))
    .bind(FILE_VISIBLE)
    .bind(stored)
    .bind(key)
    .bind(FILE_DRAFT)
    .bind(&draft.file.purpose)
    .bind(draft.file.expires_at.map(Timestamp::as_micros))
    .fetch_optional(&mut *tx)
    .await
    .map_err(query_error)?
    .ok_or_else(|| files::not_a_draft(key))?;
    file_from_row(&row)
}

fn placeholder(n: usize) -> String {
    format!("?{n}")
}

#[async_trait]
impl FileStore for SqliteStore {
    async fn begin_file(&self, file: NewFile) -> Result<FileDraft, StoreError> {
        // Invisible and disposable until commit, so it needs no fsync.
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let key: i64 = sqlx::query_scalar(
            "INSERT INTO files (id, workspace, purpose, filename, created_at, expires_at, state) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING key",
        )
        .bind(file.id.as_str())
        .bind(&file.workspace)
        .bind(&file.purpose)
        .bind(&file.filename)
        .bind(file.created_at.as_micros())
        .bind(file.expires_at.map(Timestamp::as_micros))
        .bind(FILE_DRAFT)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error)?;
        tx.commit().await.map_err(query_error)?;
        Ok(FileDraft { key, file })
    }

    async fn append_file(
        &self,
        draft: &FileDraft,
        seq: u32,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        files::check_piece(bytes.len())?;
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let inserted = sqlx::query(
            "INSERT INTO file_chunks (file_key, seq, data) \
             SELECT key, ?2, ?3 FROM files WHERE key = ?1 AND state = ?4",
        )
        .bind(draft.key)
        .bind(i64::from(seq))
        .bind(bytes)
        .bind(FILE_DRAFT)
        .execute(&mut *tx)
        .await
        .map_err(query_error)?
        .rows_affected();
        if inserted != 1 {
            return Err(files::not_a_draft(draft.key));
        }
        tx.commit().await.map_err(query_error)
    }

    async fn commit_file(&self, draft: FileDraft, bytes: u64) -> Result<StoredFile, StoreError> {
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        let file = commit_draft(&mut tx, &draft, bytes).await?;
        tx.commit().await.map_err(query_error)?;
        Ok(file)
    }

    async fn abort_file(&self, draft: FileDraft) -> Result<(), StoreError> {
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        sqlx::query("UPDATE files SET state = ?1 WHERE key = ?2 AND state = ?3")
            .bind(FILE_DELETED)
            .bind(draft.key)
            .bind(FILE_DRAFT)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        tx.commit().await.map_err(query_error)
    }

    async fn get_file(
        &self,
        workspace: &str,
        id: &FileId,
    ) -> Result<Option<StoredFile>, StoreError> {
        let row = sqlx::query(GET_FILE)
            .bind(id.as_str())
            .bind(workspace)
            .fetch_optional(&self.pools.reader)
            .await
            .map_err(query_error)?;
        row.as_ref().map(file_from_row).transpose()
    }

    async fn list_files(
        &self,
        workspace: &str,
        purpose: Option<&str>,
        after: Option<&FileId>,
        limit: u32,
        order_desc: bool,
    ) -> Result<FilePage, StoreError> {
        let reader = &self.pools.reader;
        let position = match after {
            None => None,
            Some(id) => {
                let row = sqlx::query(AssertSqlSafe(files::cursor_sql(placeholder)))
                    .bind(id.as_str())
                    .bind(workspace)
                    .fetch_optional(reader)
                    .await
                    .map_err(query_error)?;
                let Some(row) = row else {
                    return Ok(FilePage {
                        files: Vec::new(),
                        has_more: false,
                    });
                };
                Some((get::<i64>(&row, "created_at")?, get::<i64>(&row, "key")?))
            }
        };
        let listing = Listing {
            purpose: purpose.is_some(),
            after: position.is_some(),
            order_desc,
        };
        let sql = files::list_sql(listing, placeholder);
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(workspace);
        if let Some(purpose) = purpose {
            query = query.bind(purpose);
        }
        if let Some((created_at, key)) = position {
            query = query.bind(created_at).bind(key);
        }
        let rows = query
            .bind(paging::rows_to_read(limit))
            .fetch_all(reader)
            .await
            .map_err(query_error)?;
        files::page(&rows, limit, file_from_row)
    }

    async fn file_chunk(&self, file_key: i64, seq: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.downloads.file_piece(file_key, seq).await
    }

    async fn delete_file(&self, workspace: &str, id: &FileId) -> Result<bool, StoreError> {
        // FULL: a file the API said is deleted stays deleted.
        let mut conn = self.pools.writer(Durability::Full).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        sqlx::query(AssertSqlSafe(files::tombstones_sql(
            "id = ?1 AND workspace = ?2",
        )))
        .bind(id.as_str())
        .bind(workspace)
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        let deleted = sqlx::query(
            "UPDATE files SET state = ?1 WHERE id = ?2 AND workspace = ?3 AND state = ?4",
        )
        .bind(FILE_DELETED)
        .bind(id.as_str())
        .bind(workspace)
        .bind(FILE_VISIBLE)
        .execute(&mut *tx)
        .await
        .map_err(query_error)?
        .rows_affected();
        tx.commit().await.map_err(query_error)?;
        Ok(deleted == 1)
    }

    async fn expire_files(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        // NORMAL: a file whose expiry an OS crash undoes is simply expired again.
        let mut conn = self.pools.writer(Durability::Normal).await?;
        let mut tx = conn
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(query_error)?;
        // The same rows as the update's: one writer, one transaction.
        sqlx::query(AssertSqlSafe(files::tombstones_sql(DUE_FILES)))
            .bind(now.as_micros())
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
        let expired = sqlx::query(EXPIRE_FILES)
            .bind(now.as_micros())
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await
            .map_err(query_error)?
            .rows_affected();
        tx.commit().await.map_err(query_error)?;
        Ok(expired)
    }
}
