//! `/v1/files`: upload (multipart, streamed to the store piece by piece, each piece stored
//! while the next arrives, never whole in memory), list, retrieve, download (streamed piece by
//! piece) and delete. A batch upload gets the light content check of spec §5.2 (Tier 0) as it
//! streams; its lines are checked fully when a batch uses it. The form's fields may come before
//! or after the file: the file is stored as it arrives, and committed with the purpose and
//! expiry the whole form names.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use batchd_domain::Timestamp;
use batchd_domain::openai::FileId;
use batchd_store::{FILE_CHUNK_BYTES, FileDraft, FileStore, NewFile, StoreError, StoredFile};
use batchd_wire::openai::{FileDeleted, FileList, FileObject};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::jsonl::{NotJsonl, UploadScan};
use super::multipart::{Event, Multipart};
use super::{IdParam, OpenAiError, QueryParams, json, status::unix};
use crate::AppState;
use crate::auth::Caller;
use crate::create::paced;

/// The purposes an upload may name, in the order the API's refusal lists them (spec §5.6).
pub const UPLOAD_PURPOSES: [&str; 6] = [
    "fine-tune",
    "assistants",
    "batch",
    "user_data",
    "vision",
    "evals",
];
pub use batchd_domain::openai::{BATCH_PURPOSE, OUTPUT_PURPOSE as BATCH_OUTPUT_PURPOSE};
/// Purposes whose content the API does not hand back (spec §5.7).
const NOT_DOWNLOADABLE: [&str; 2] = ["assistants", "user_data"];
// How long a batch input file is kept when the upload says nothing (spec §5.6).
use batchd_domain::openai::DEFAULT_FILE_EXPIRY as BATCH_FILE_EXPIRY;
/// Bounds of `expires_after[seconds]` (spec §8): an hour to the default expiry.
const EXPIRY_SECONDS: (i64, i64) = (3_600, BATCH_FILE_EXPIRY.as_secs() as i64);
/// Largest form field other than the file: the SDKs send a purpose and two expiry fields.
const MAX_FIELD_BYTES: usize = 1024;
/// Default and largest `limit` of a file list (spec §5.7).
const LIST_LIMIT: (i64, i64) = (10_000, 10_000);

/// The File object of a stored file.
pub fn file_object(file: &StoredFile) -> FileObject {
    FileObject {
        object: FileObject::OBJECT.to_owned(),
        id: file.id.to_string(),
        purpose: file.purpose.clone(),
        filename: file.filename.clone(),
        bytes: file.bytes,
        created_at: unix(file.created_at),
        expires_at: file.expires_at.map(unix),
        status: FileObject::PROCESSED.to_owned(),
        status_details: None,
    }
}

/// The form's small fields, as they arrive.
#[derive(Debug, Default)]
struct Fields {
    purpose: Option<String>,
    anchor: Option<String>,
    seconds: Option<String>,
}

impl Fields {
    fn set(&mut self, name: &str, value: String) {
        match name {
            "purpose" => self.purpose = Some(value),
            "expires_after[anchor]" => self.anchor = Some(value),
            "expires_after[seconds]" => self.seconds = Some(value),
            // Fields the API does not define are ignored rather than refused: some clients
            // send their own extras.
            _ => {}
        }
    }

    /// The checked purpose.
    fn purpose(&self) -> Result<&str, OpenAiError> {
        let purpose = self
            .purpose
            .as_deref()
            .ok_or_else(|| OpenAiError::missing_parameter("purpose"))?;
        if UPLOAD_PURPOSES.contains(&purpose) {
            Ok(purpose)
        } else {
            Err(OpenAiError::invalid_purpose(purpose, &UPLOAD_PURPOSES))
        }
    }

    /// When the file expires: `expires_after` if given, else 30 days for a batch file, else
    /// never.
    fn expires_at(
        &self,
        created_at: Timestamp,
        purpose: &str,
    ) -> Result<Option<Timestamp>, OpenAiError> {
        if self.anchor.is_none() && self.seconds.is_none() {
            return Ok((purpose == BATCH_PURPOSE).then(|| created_at.plus(BATCH_FILE_EXPIRY)));
        }
        let anchor = self
            .anchor
            .as_deref()
            .ok_or_else(|| OpenAiError::missing_parameter("expires_after.anchor"))?;
        if anchor != "created_at" {
            return Err(OpenAiError::invalid_value(
                "expires_after.anchor",
                anchor,
                &["created_at"],
            ));
        }
        let raw = self
            .seconds
            .as_deref()
            .ok_or_else(|| OpenAiError::missing_parameter("expires_after.seconds"))?;
        let seconds = expiry_seconds("expires_after.seconds", raw.trim())?;
        Ok(Some(created_at.plus(Duration::from_secs(seconds))))
    }
}

/// A checked `seconds` of `expires_after` or `output_expires_after`.
pub fn expiry_seconds(param: &str, raw: &str) -> Result<u64, OpenAiError> {
    let n: i64 = raw
        .parse()
        .map_err(|_| OpenAiError::not_an_integer(param, raw))?;
    if n < EXPIRY_SECONDS.0 {
        return Err(OpenAiError::integer_below_min(param, EXPIRY_SECONDS.0, n));
    }
    if n > EXPIRY_SECONDS.1 {
        return Err(OpenAiError::integer_above_max(param, EXPIRY_SECONDS.1, n));
    }
    Ok(n as u64)
}

/// The upload in progress: its draft, the piece being filled, the piece being stored, and the
/// batch check.
struct Upload {
    draft: FileDraft,
    piece: Vec<u8>,
    seq: u32,
    /// The append of the previous piece, which runs while the next one arrives: awaited one
    /// after the other, the store's writes of a 200 MB upload (0.51 s, release build, SQLite)
    /// and its receipt and parse (0.13 s) added up. One at a time keeps memory to two pieces
    /// and the pieces in order.
    storing: Option<tokio::task::JoinHandle<Result<(), StoreError>>>,
    bytes: u64,
    /// The batch check; `None` once its verdict is taken.
    scan: Option<UploadScan>,
    /// Whether the purpose was known to be `batch` when the file started, so that a refusal
    /// can stop the upload at once.
    batch: bool,
}

impl Upload {
    async fn data(
        &mut self,
        store: &Arc<dyn FileStore>,
        mut data: &[u8],
        max: u64,
    ) -> Result<(), OpenAiError> {
        self.bytes += data.len() as u64;
        if self.bytes > max {
            return Err(OpenAiError::file_too_large());
        }
        // A file whose purpose is not known yet is stored whatever the check says: the check
        // keeps its refusal for `check_batch`, should the purpose turn out to be `batch`.
        if let Some(scan) = &mut self.scan
            && scan.push(data).is_err()
            && self.batch
        {
            return Err(OpenAiError::invalid_batch_file());
        }
        while !data.is_empty() {
            let room = FILE_CHUNK_BYTES - self.piece.len();
            let take = room.min(data.len());
            self.piece.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.piece.len() == FILE_CHUNK_BYTES {
                self.flush(store).await?;
            }
        }
        Ok(())
    }

    /// Hands the piece being filled to the store, once the previous one is stored.
    async fn flush(&mut self, store: &Arc<dyn FileStore>) -> Result<(), OpenAiError> {
        if self.piece.is_empty() {
            return Ok(());
        }
        self.stored().await?;
        let piece = std::mem::replace(&mut self.piece, Vec::with_capacity(FILE_CHUNK_BYTES));
        let (store, seq) = (Arc::clone(store), self.seq);
        let draft = FileDraft {
            key: self.draft.key,
            file: self.draft.file.clone(),
        };
        self.storing = Some(tokio::spawn(async move {
            store.append_file(&draft, seq, piece).await
        }));
        self.seq += 1;
        Ok(())
    }

    /// Waits for the piece being stored, if any.
    async fn stored(&mut self) -> Result<(), OpenAiError> {
        match self.storing.take() {
            None => Ok(()),
            Some(task) => Ok(task.await.map_err(|e| OpenAiError::internal(&e))??),
        }
    }

    /// The batch check's verdict on the whole file.
    fn check_batch(&mut self) -> Result<(), OpenAiError> {
        let scanned = self.scan.take().map(UploadScan::finish);
        if !self.draft.file.filename.ends_with(".jsonl") || matches!(scanned, Some(Err(NotJsonl))) {
            return Err(OpenAiError::invalid_batch_file());
        }
        Ok(())
    }
}

/// `POST /v1/files`.
pub async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OpenAiError> {
    let config = &state.inner.config.openai;
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Multipart::boundary);
    let Some(boundary) = boundary else {
        state.inner.drains.discard(body, &headers);
        return Err(OpenAiError::malformed_upload(
            "the Content-Type must be multipart/form-data with a boundary",
        ));
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // The form's other fields and the part headers come on top of the file itself.
    let max_body = config.max_file_bytes.saturating_add(64 * 1024);
    if declared.is_some_and(|len| len > max_body) {
        state.inner.drains.discard(body, &headers);
        return Err(OpenAiError::file_too_large());
    }
    let mut stream = Box::pin(paced(
        body.into_data_stream(),
        state.inner.config.body_timeout,
        Arc::new(AtomicBool::new(false)),
    ));
    let mut reader = Multipart::new(&boundary);
    let mut fields = Fields::default();
    let mut upload: Option<Upload> = None;
    let mut current: Option<(String, Vec<u8>)> = None;
    let mut file_seen = false;
    let store = state.inner.files.clone();
    // Every byte counts against the bound, not only the file's: a body without a length that
    // carries an endless preamble or endless fields is cut as a too large one is.
    let mut received: u64 = 0;
    let outcome: Result<(), OpenAiError> = async {
        while !reader.is_done() {
            let Some(chunk) = stream.next().await else {
                return reader
                    .finish()
                    .map_err(|e| OpenAiError::malformed_upload(&e.to_string()));
            };
            let chunk = chunk.map_err(|e| OpenAiError::malformed_upload(&e.to_string()))?;
            received = received.saturating_add(chunk.len() as u64);
            if received > max_body {
                return Err(OpenAiError::file_too_large());
            }
            reader.push(&chunk);
            while let Some(event) = reader
                .next_event()
                .map_err(|e| OpenAiError::malformed_upload(&e.to_string()))?
            {
                match event {
                    Event::Part { name, filename } if name == "file" => {
                        if file_seen {
                            return Err(OpenAiError::malformed_upload(
                                "more than one file was sent",
                            ));
                        }
                        file_seen = true;
                        // Control characters (NUL among them, which PostgreSQL refuses in
                        // text) have no place in a name that is echoed in headers and JSON.
                        let filename: String = filename
                            .unwrap_or_else(|| "upload".to_owned())
                            .chars()
                            .map(|c| if c.is_control() { '_' } else { c })
                            .collect();
                        // Python's SDK sends the fields first, Node's in the order of the
                        // caller's object (`{ file, purpose }` in OpenAI's own examples). With
                        // the purpose known, a batch file is checked as it arrives and refused
                        // at once; otherwise the draft begins as a batch file would, the check
                        // runs anyway, and the commit below gives the draft the purpose and
                        // expiry the whole form names.
                        let purpose = match &fields.purpose {
                            Some(_) => fields.purpose()?.to_owned(),
                            None => BATCH_PURPOSE.to_owned(),
                        };
                        let batch = fields.purpose.is_some() && purpose == BATCH_PURPOSE;
                        if batch && !filename.ends_with(".jsonl") {
                            return Err(OpenAiError::invalid_batch_file());
                        }
                        let now = state.now_in(&caller.workspace).await?;
                        // An `expires_after` sent whole before the file is refused here, before
                        // the file is stored; half of one may be completed after it.
                        let expires_at = if fields.anchor.is_some() == fields.seconds.is_some() {
                            fields.expires_at(now, &purpose)?
                        } else {
                            None
                        };
                        let draft = store
                            .begin_file(NewFile {
                                id: FileId::generate(),
                                workspace: caller.workspace.clone(),
                                purpose,
                                filename,
                                created_at: now,
                                expires_at,
                            })
                            .await?;
                        upload = Some(Upload {
                            draft,
                            piece: Vec::with_capacity(FILE_CHUNK_BYTES),
                            seq: 0,
                            storing: None,
                            bytes: 0,
                            scan: Some(UploadScan::default()),
                            batch,
                        });
                    }
                    Event::Part { name, .. } => current = Some((name, Vec::new())),
                    Event::Data(data) => match (&mut current, &mut upload) {
                        (Some((_, value)), _) => {
                            if value.len() + data.len() > MAX_FIELD_BYTES {
                                return Err(OpenAiError::malformed_upload(
                                    "a form field is too long",
                                ));
                            }
                            value.extend_from_slice(&data);
                        }
                        (None, Some(upload)) => {
                            upload.data(&store, &data, config.max_file_bytes).await?;
                        }
                        (None, None) => {}
                    },
                    Event::PartEnd => {
                        if let Some((name, value)) = current.take() {
                            fields.set(&name, String::from_utf8_lossy(&value).trim().to_owned());
                        }
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    let outcome = outcome.and_then(|()| {
        if file_seen {
            Ok(())
        } else {
            Err(OpenAiError::missing_parameter("file"))
        }
    });
    let checked = outcome.and_then(|()| {
        let purpose = fields.purpose()?.to_owned();
        let created_at = upload
            .as_ref()
            .map_or_else(Timestamp::now, |u| u.draft.file.created_at);
        let expires_at = fields.expires_at(created_at, &purpose)?;
        Ok((purpose, expires_at))
    });
    let Some(mut upload) = upload else {
        // Refused before any file was stored.
        if !reader.is_done() {
            state
                .inner
                .drains
                .discard(Body::from_stream(stream), &headers);
        }
        return Err(checked
            .err()
            .unwrap_or_else(|| OpenAiError::missing_parameter("file")));
    };
    // Kept to abort the draft if the commit does not happen.
    let (key, file) = (upload.draft.key, upload.draft.file.clone());
    let committed = async {
        // First, so that no piece is stored after an abort below.
        let stored = upload.stored().await;
        let (purpose, expires_at) = checked?;
        stored?;
        if purpose == BATCH_PURPOSE {
            upload.check_batch()?;
        }
        upload.draft.file.purpose = purpose;
        upload.draft.file.expires_at = expires_at;
        upload.flush(&store).await?;
        upload.stored().await?;
        Ok::<_, OpenAiError>(store.commit_file(upload.draft, upload.bytes).await?)
    };
    match committed.await {
        Ok(stored) => json(&file_object(&stored)),
        Err(err) => {
            if let Err(abort) = store.abort_file(FileDraft { key, file }).await {
                tracing::warn!(error = %abort, "could not abort a file draft; it is reclaimed later");
            }
            state.inner.work.notify_reclaimable();
            if !reader.is_done() {
                state
                    .inner
                    .drains
                    .discard(Body::from_stream(stream), &headers);
            }
            Err(err)
        }
    }
}

/// `GET /v1/files`.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams,
) -> Result<Response, OpenAiError> {
    let limit = super::limit(&query, LIST_LIMIT.0, LIST_LIMIT.1)?;
    let order_desc = match query.get("order").map(|o| o.trim()) {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => return Err(OpenAiError::invalid_value("order", other, &["asc", "desc"])),
    };
    let purpose = query
        .get("purpose")
        .map(|p| p.trim())
        .filter(|p| !p.is_empty());
    let after = query
        .get("after")
        .map(|a| a.trim())
        .filter(|a| !a.is_empty());
    let page = match after {
        // An id of no file of ours names no position: an empty last page rather than the
        // first one again, which would loop a client paging through (spec §10).
        Some(raw) => match FileId::parse(raw) {
            None => return json(&FileList::new(Vec::new(), false, |f| &f.id)),
            Some(id) => {
                state
                    .inner
                    .files
                    .list_files(&caller.workspace, purpose, Some(&id), limit, order_desc)
                    .await?
            }
        },
        None => {
            state
                .inner
                .files
                .list_files(&caller.workspace, purpose, None, limit, order_desc)
                .await?
        }
    };
    let data = page.files.iter().map(file_object).collect();
    json(&FileList::new(data, page.has_more, |f| &f.id))
}

/// The visible file `raw` of the caller's workspace, or the API's 404.
async fn find(state: &AppState, caller: &Caller, raw: &str) -> Result<StoredFile, OpenAiError> {
    let Some(id) = FileId::parse(raw) else {
        return Err(OpenAiError::no_such_file(raw));
    };
    state
        .inner
        .files
        .get_file(&caller.workspace, &id)
        .await?
        .ok_or_else(|| OpenAiError::no_such_file(raw))
}

/// `GET /v1/files/{id}`.
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(id): IdParam,
) -> Result<Response, OpenAiError> {
    json(&file_object(&find(&state, &caller, &id).await?))
}

/// `DELETE /v1/files/{id}`. Deleting the input file of a running batch is allowed: the batch
/// already holds its requests (the spec's recommendation, §5.7).
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(raw): IdParam,
) -> Result<Response, OpenAiError> {
    let Some(id) = FileId::parse(&raw) else {
        return Err(OpenAiError::no_such_file(&raw));
    };
    if !state
        .inner
        .files
        .delete_file(&caller.workspace, &id)
        .await?
    {
        return Err(OpenAiError::no_such_file(&raw));
    }
    state.inner.work.notify_reclaimable();
    json(&FileDeleted {
        object: FileObject::OBJECT.to_owned(),
        id: raw,
        deleted: true,
    })
}

/// `GET /v1/files/{id}/content`: the stored bytes, streamed a piece at a time.
pub async fn content(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(raw): IdParam,
) -> Result<Response, OpenAiError> {
    let file = find(&state, &caller, &raw).await?;
    if NOT_DOWNLOADABLE.contains(&file.purpose.as_str()) {
        return Err(OpenAiError::download_not_allowed(&file.purpose));
    }
    // A task reads the pieces and hands them over through a small channel, so memory stays at
    // a couple of pieces whatever the file's size, and a slow client only slows its reader.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let store = state.inner.files.clone();
    let key = file.key;
    let id = file.id.clone();
    tokio::spawn(async move {
        let mut seq = 0u32;
        loop {
            match store.file_chunk(key, seq).await {
                Ok(Some(piece)) => {
                    if tx.send(Ok(Bytes::from(piece))).await.is_err() {
                        return; // client went away
                    }
                    seq += 1;
                }
                Ok(None) => return,
                Err(err) => {
                    tracing::error!(error = %err, file = %id, "file download failed");
                    let _ = tx.send(Err(std::io::Error::other(err))).await;
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.bytes));
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file.filename.replace(['"', '\\', '\r', '\n'], "_")
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(purpose: Option<&str>, anchor: Option<&str>, seconds: Option<&str>) -> Fields {
        Fields {
            purpose: purpose.map(Into::into),
            anchor: anchor.map(Into::into),
            seconds: seconds.map(Into::into),
        }
    }

    #[test]
    fn purposes_come_from_the_upload_enum() {
        assert_eq!(fields(Some("batch"), None, None).purpose(), Ok("batch"));
        assert_eq!(
            fields(Some("vector_store"), None, None)
                .purpose()
                .unwrap_err()
                .message,
            "'vector_store' is not one of ['fine-tune', 'assistants', 'batch', 'user_data', 'vision', 'evals'] - 'purpose'"
        );
        assert_eq!(
            fields(None, None, None).purpose().unwrap_err().message,
            "Missing required parameter: 'purpose'."
        );
        // The output purpose is the server's to give, not an upload's.
        assert!(fields(Some("batch_output"), None, None).purpose().is_err());
    }

    #[test]
    fn batch_files_expire_after_thirty_days_unless_told_otherwise() {
        let at = Timestamp::from_micros(1_000_000);
        let secs = |t: Option<Timestamp>| t.map(|t| (t.as_micros() - at.as_micros()) / 1_000_000);
        let f = fields(Some("batch"), None, None);
        assert_eq!(secs(f.expires_at(at, "batch").unwrap()), Some(2_592_000));
        assert_eq!(f.expires_at(at, "user_data").unwrap(), None);
        let f = fields(Some("batch"), Some("created_at"), Some("3600"));
        assert_eq!(secs(f.expires_at(at, "batch").unwrap()), Some(3600));
        let f = fields(Some("batch"), Some("created_at"), Some("60"));
        assert_eq!(
            f.expires_at(at, "batch").unwrap_err().message,
            "Invalid 'expires_after.seconds': integer below minimum value. Expected a value >= 3600, but got 60 instead."
        );
        let f = fields(Some("batch"), Some("last_active_at"), Some("3600"));
        assert_eq!(
            f.expires_at(at, "batch").unwrap_err().message,
            "Invalid value: 'last_active_at'. Supported values are: 'created_at'."
        );
        let f = fields(Some("batch"), None, Some("3600"));
        assert!(f.expires_at(at, "batch").is_err());
    }
}
