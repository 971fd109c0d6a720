//! Decoding stored rows into domain values, for every engine: a `batches` row into a [`Batch`]
//! (the state codes, the checks that turn anything unexpected into [`StoreError::Corrupt`], the
//! column list), a `files` row into a [`StoredFile`] and an `api_keys` row into a [`KeyInfo`].
//! An engine only says how to read one column of its row type ([`Columns`]). The one value
//! engines encode beyond plain columns, an OpenAI batch's extras, is encoded here too
//! ([`openai_text`]), beside its decoding.

use batchd_domain::openai::{Endpoint, FileId, OpenAiBatchMeta};
use batchd_domain::{ApiVersion, Batch, BatchId, EndReason, Outcome, Timestamp};
use batchd_wire::ProcessingStatus;

use crate::{KeyInfo, StoreError, StoredFile};

/// `batches.state`. Drafts are invisible to everything but their creator and the purge.
pub const DRAFT: i64 = 0;
pub const IN_PROGRESS: i64 = 1;
pub const CANCELING: i64 = 2;
pub const ENDED: i64 = 3;

/// `files.state`. Drafts are invisible to everything but their writer and the purge; deleted
/// files (deleted, aborted or expired) are invisible and wait for their chunks to be reclaimed.
pub const FILE_DRAFT: i64 = 0;
pub const FILE_VISIBLE: i64 = 1;
pub const FILE_DELETED: i64 = 2;

/// Columns of `batches` that [`batch`] reads, for `concat!`ing into static SQL.
#[macro_export]
macro_rules! batch_columns {
    () => {
        "key, id, workspace, state, total, succeeded, errored, end_reason, created_at, \
         expires_at, ended_at, cancel_initiated_at, archived_at, betas, api_version, \
         user_profile_id, endpoint, openai, finalized_at"
    };
}

/// Reading one column of an engine's row; integers of any width come back as `i64`.
pub trait Columns {
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
}

pub fn count(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what}: {value}")))
}

/// A stored batch id, of either surface.
pub fn parse_id(id: &str) -> Result<BatchId, StoreError> {
    BatchId::parse(id)
        .or_else(|| BatchId::parse_openai(id))
        .ok_or_else(|| StoreError::Corrupt(format!("bad batch id {id:?}")))
}

/// `results.outcome`.
pub fn parse_outcome(code: i64) -> Result<Outcome, StoreError> {
    Outcome::from_code(code).ok_or_else(|| StoreError::Corrupt(format!("outcome {code}")))
}

/// `batches.endpoint`.
pub fn parse_endpoint(code: i64) -> Result<Endpoint, StoreError> {
    Endpoint::from_code(code).ok_or_else(|| StoreError::Corrupt(format!("endpoint {code}")))
}

/// `batches.openai`: an OpenAI batch's extras as stored.
pub fn openai_text(meta: Option<&OpenAiBatchMeta>) -> Result<Option<String>, StoreError> {
    meta.map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Other(Box::new(e)))
}

pub fn parse_openai(json: &str) -> Result<OpenAiBatchMeta, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("openai {json:?}: {e}")))
}

pub fn parse_betas(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("betas {json:?}: {e}")))
}

pub fn parse_version(version: &str) -> Result<ApiVersion, StoreError> {
    ApiVersion::parse(version)
        .ok_or_else(|| StoreError::Corrupt(format!("anthropic-version {version:?}")))
}

fn status(state: i64) -> Result<ProcessingStatus, StoreError> {
    match state {
        IN_PROGRESS => Ok(ProcessingStatus::InProgress),
        CANCELING => Ok(ProcessingStatus::Canceling),
        ENDED => Ok(ProcessingStatus::Ended),
        other => Err(StoreError::Corrupt(format!(
            "batch state {other} where a visible batch was expected"
        ))),
    }
}

/// A visible batch from a row holding [`batch_columns!`].
pub fn batch(row: &impl Columns) -> Result<Batch, StoreError> {
    let end_reason = row
        .opt_int("end_reason")?
        .map(|code| {
            EndReason::from_code(code)
                .ok_or_else(|| StoreError::Corrupt(format!("end_reason {code}")))
        })
        .transpose()?;
    let status = status(row.int("state")?)?;
    if (status == ProcessingStatus::Ended) != end_reason.is_some() {
        return Err(StoreError::Corrupt(format!(
            "batch in state {status:?} with end_reason {end_reason:?}"
        )));
    }
    let ts = |column: &str| -> Result<Option<Timestamp>, StoreError> {
        Ok(row.opt_int(column)?.map(Timestamp::from_micros))
    };
    Ok(Batch {
        key: row.int("key")?,
        id: parse_id(&row.text("id")?)?,
        workspace: row.text("workspace")?,
        status,
        total: count(row.int("total")?, "total")?,
        succeeded: count(row.int("succeeded")?, "succeeded")?,
        errored: count(row.int("errored")?, "errored")?,
        end_reason,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        expires_at: Timestamp::from_micros(row.int("expires_at")?),
        ended_at: ts("ended_at")?,
        cancel_initiated_at: ts("cancel_initiated_at")?,
        archived_at: ts("archived_at")?,
        betas: parse_betas(&row.text("betas")?)?,
        api_version: parse_version(&row.text("api_version")?)?,
        user_profile_id: row.opt_text("user_profile_id")?,
        endpoint: parse_endpoint(row.int("endpoint")?)?,
        openai: row
            .opt_text("openai")?
            .as_deref()
            .map(parse_openai)
            .transpose()?,
        finalized_at: ts("finalized_at")?,
    })
}

/// Columns of `files` that [`file()`] reads, for `concat!`ing into static SQL.
#[macro_export]
macro_rules! file_columns {
    () => {
        "key, id, workspace, purpose, filename, bytes, created_at, expires_at"
    };
}

/// A file from a row holding [`file_columns!`].
pub fn file(row: &impl Columns) -> Result<StoredFile, StoreError> {
    let id = row.text("id")?;
    Ok(StoredFile {
        key: row.int("key")?,
        id: FileId::parse(&id).ok_or_else(|| StoreError::Corrupt(format!("bad file id {id:?}")))?,
        workspace: row.text("workspace")?,
        purpose: row.text("purpose")?,
        filename: row.text("filename")?,
        bytes: count(row.int("bytes")?, "bytes")?,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        expires_at: row.opt_int("expires_at")?.map(Timestamp::from_micros),
    })
}

/// Columns of `api_keys` that [`key_info`] reads, for `concat!`ing into static SQL.
#[macro_export]
macro_rules! key_columns {
    () => {
        "id, workspace, prefix, created_at, revoked_at"
    };
}

/// The key an `INSERT … RETURNING` of one key gave back; an insert without a condition always
/// returns its row.
pub fn inserted_key(row: Option<KeyInfo>) -> Result<KeyInfo, StoreError> {
    row.ok_or_else(|| StoreError::Corrupt("an INSERT of a key returned no row".into()))
}

/// A column that cannot be read as the type the store wrote into it.
pub fn column_error(column: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("column {column}: {e}"))
}

/// An API key as listed, from a row holding [`key_columns!`].
pub fn key_info(row: &impl Columns) -> Result<KeyInfo, StoreError> {
    Ok(KeyInfo {
        id: row.text("id")?,
        workspace: row.text("workspace")?,
        prefix: row.text("prefix")?,
        created_at: Timestamp::from_micros(row.int("created_at")?),
        revoked_at: row.opt_int("revoked_at")?.map(Timestamp::from_micros),
    })
}
