//! The OpenAI surface's files, [`FileStore`] for PostgreSQL. Each piece is one short statement;
//! a draft belongs to the process writing it (`owner`) and is abandoned with it (`liveness`).

use async_trait::async_trait;
use batchd_domain::Timestamp;
use batchd_domain::openai::FileId;
use batchd_store::files::{self, Listing, Pieces};
use batchd_store::{FileDraft, FilePage, FileStore, NewFile, StoreError, StoredFile, paging};
use sqlx::AssertSqlSafe;

use crate::PostgresStore;
use crate::db::query_error;
use crate::rows::{
    FILE_DELETED, FILE_DRAFT, FILE_VISIBLE, file_columns, file_from_row, get, small,
};

pub(crate) const GET_FILE: &str = concat!(
    "SELECT ",
    file_columns!(),
    " FROM files WHERE id = $1 AND workspace = $2 AND state = 1"
);

pub(crate) const CHUNK: &str = "SELECT data FROM file_chunks WHERE file_key = $1 AND seq = $2";

/// Stores a piece, only while the file is an open draft (locked against a concurrent
/// abandonment by the reaper).
const APPEND: &str = "WITH f AS (SELECT key FROM files WHERE key = $1 AND state = 0 FOR SHARE) \
     INSERT INTO file_chunks (file_key, seq, data) SELECT f.key, $2, $3 FROM f";

/// Visible files due to expire, oldest expiry first, through `files_expiry`, each leaving its
/// tombstone in the same statement; how many. Due on their workspace's clock (test mode's
/// offset, none without a `clocks` row); the first bound, by the farthest clock, keeps the scan
/// of the index to the files that may be due. The outer `state = 1` makes a file that a
/// concurrent pass (or delete) took first count once.
pub(crate) const EXPIRE_FILES: &str = "WITH gone AS (UPDATE files SET state = 2 WHERE state = 1 \
     AND key IN (SELECT key FROM files WHERE state = 1 AND expires_at IS NOT NULL \
     AND expires_at <= $1 + (SELECT COALESCE(MAX(offset_micros), 0) FROM clocks) \
     AND expires_at <= $1 + COALESCE((SELECT c.offset_micros FROM clocks c \
     WHERE c.workspace = files.workspace), 0) ORDER BY expires_at LIMIT $2) \
     RETURNING id, workspace, created_at, key), \
     kept AS (INSERT INTO file_tombstones (id, workspace, created_at, key) SELECT * FROM gone \
     ON CONFLICT (id) DO NOTHING) SELECT COUNT(*) FROM gone";

/// Deletes a visible file (`$1` id, `$2` workspace), leaving its tombstone; how many (0 or 1).
const DELETE_FILE: &str = "WITH gone AS (UPDATE files SET state = 2 WHERE id = $1 \
     AND workspace = $2 AND state = 1 RETURNING id, workspace, created_at, key), \
     kept AS (INSERT INTO file_tombstones (id, workspace, created_at, key) SELECT * FROM gone \
     ON CONFLICT (id) DO NOTHING) SELECT COUNT(*) FROM gone";

/// Makes `draft` visible in `tx` with the purpose and expiry it holds now, once its pieces are
/// checked against the `bytes` written.
/// Shared by a file's own commit and the finalize that commits a batch's files with it.
pub(crate) async fn commit_draft(
    tx: &mut sqlx::PgConnection,
    draft: &FileDraft,
    bytes: u64,
) -> Result<StoredFile, StoreError> {
    let key = draft.key;
    // Locks the draft first: the reaper cannot abandon it between the check and the commit.
    let open: Option<i64> =
        sqlx::query_scalar("SELECT key FROM files WHERE key = $1 AND state = 0 FOR UPDATE")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?;
    if open.is_none() {
        return Err(files::not_a_draft(key));
    }
    // `octet_length` of a stored value reads its size, not its bytes.
    let (count, last_seq, stored): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(MAX(seq), -1)::bigint, \
         COALESCE(SUM(octet_length(data)), 0)::bigint FROM file_chunks WHERE file_key = $1",
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
        "UPDATE files SET state = $1, bytes = $2, owner = NULL, purpose = $4, expires_at = $5 \
         WHERE key = $3 RETURNING ",
        file_columns!()
    ))
    .bind(small(FILE_VISIBLE))
    .bind(stored)
    .bind(key)
    .bind(&draft.file.purpose)
    .bind(draft.file.expires_at.map(Timestamp::as_micros))
    .fetch_one(&mut *tx)
    .await
    .map_err(query_error)?;
    file_from_row(&row)
}

fn placeholder(n: usize) -> String {
    format!("${n}")
}

#[async_trait]
impl FileStore for PostgresStore {
    async fn begin_file(&self, file: NewFile) -> Result<FileDraft, StoreError> {
        let key: i64 = sqlx::query_scalar(
            "INSERT INTO files (id, workspace, purpose, filename, created_at, expires_at, state, \
             owner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING key",
        )
        .bind(file.id.as_str())
        .bind(&file.workspace)
        .bind(&file.purpose)
        .bind(&file.filename)
        .bind(file.created_at.as_micros())
        .bind(file.expires_at.map(Timestamp::as_micros))
        .bind(small(FILE_DRAFT))
        .bind(self.me()?)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error)?;
        Ok(FileDraft { key, file })
    }

    async fn append_file(
        &self,
        draft: &FileDraft,
        seq: u32,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        files::check_piece(bytes.len())?;
        let seq = i32::try_from(seq)
            .map_err(|_| batchd_store::misuse(format!("file piece {seq} is beyond any file")))?;
        let inserted = sqlx::query(APPEND)
            .bind(draft.key)
            .bind(seq)
            .bind(bytes)
            .execute(&self.pool)
            .await
            .map_err(query_error)?
            .rows_affected();
        if inserted != 1 {
            return Err(files::not_a_draft(draft.key));
        }
        Ok(())
    }

    async fn commit_file(&self, draft: FileDraft, bytes: u64) -> Result<StoredFile, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        let file = commit_draft(&mut tx, &draft, bytes).await?;
        tx.commit().await.map_err(query_error)?;
        Ok(file)
    }

    async fn abort_file(&self, draft: FileDraft) -> Result<(), StoreError> {
        sqlx::query("UPDATE files SET state = $1 WHERE key = $2 AND state = $3")
            .bind(small(FILE_DELETED))
            .bind(draft.key)
            .bind(small(FILE_DRAFT))
            .execute(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(())
    }

    async fn get_file(
        &self,
        workspace: &str,
        id: &FileId,
    ) -> Result<Option<StoredFile>, StoreError> {
        let row = sqlx::query(GET_FILE)
            .bind(id.as_str())
            .bind(workspace)
            .fetch_optional(&self.pool)
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
        let position = match after {
            None => None,
            Some(id) => {
                let row = sqlx::query(AssertSqlSafe(files::cursor_sql(placeholder)))
                    .bind(id.as_str())
                    .bind(workspace)
                    .fetch_optional(&self.pool)
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
            .fetch_all(&self.pool)
            .await
            .map_err(query_error)?;
        files::page(&rows, limit, file_from_row)
    }

    async fn file_chunk(&self, file_key: i64, seq: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let Ok(seq) = i32::try_from(seq) else {
            return Ok(None);
        };
        sqlx::query_scalar(CHUNK)
            .bind(file_key)
            .bind(seq)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error)
    }

    async fn delete_file(&self, workspace: &str, id: &FileId) -> Result<bool, StoreError> {
        let deleted: i64 = sqlx::query_scalar(DELETE_FILE)
            .bind(id.as_str())
            .bind(workspace)
            .fetch_one(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(deleted == 1)
    }

    async fn expire_files(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let expired: i64 = sqlx::query_scalar(EXPIRE_FILES)
            .bind(now.as_micros())
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(expired as u64)
    }
}
