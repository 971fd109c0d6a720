//! The OpenAI surface's files (`FileStore`) on this engine.

use async_trait::async_trait;
use batchd_domain::Timestamp;
use batchd_domain::openai::FileId;
use batchd_store::{FileDraft, FilePage, FileStore, NewFile, StoreError, StoredFile};

use crate::PostgresStore;
use crate::db::misuse;

fn not_yet() -> StoreError {
    misuse("files are not stored by this engine yet")
}

#[async_trait]
impl FileStore for PostgresStore {
    async fn begin_file(&self, _file: NewFile) -> Result<FileDraft, StoreError> {
        Err(not_yet())
    }
    async fn append_file(
        &self,
        _draft: &FileDraft,
        _seq: u32,
        _bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        Err(not_yet())
    }
    async fn commit_file(&self, _draft: FileDraft, _bytes: u64) -> Result<StoredFile, StoreError> {
        Err(not_yet())
    }
    async fn abort_file(&self, _draft: FileDraft) -> Result<(), StoreError> {
        Err(not_yet())
    }
    async fn get_file(
        &self,
        _workspace: &str,
        _id: &FileId,
    ) -> Result<Option<StoredFile>, StoreError> {
        Err(not_yet())
    }
    async fn list_files(
        &self,
        _workspace: &str,
        _purpose: Option<&str>,
        _after: Option<&FileId>,
        _limit: u32,
        _order_desc: bool,
    ) -> Result<FilePage, StoreError> {
        Err(not_yet())
    }
    async fn file_chunk(&self, _file_key: i64, _seq: u32) -> Result<Option<Vec<u8>>, StoreError> {
        Err(not_yet())
    }
    async fn delete_file(&self, _workspace: &str, _id: &FileId) -> Result<bool, StoreError> {
        Err(not_yet())
    }
    async fn expire_files(&self, _now: Timestamp, _limit: u32) -> Result<u64, StoreError> {
        Err(not_yet())
    }
}
