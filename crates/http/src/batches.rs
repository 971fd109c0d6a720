//! Retrieve, list, cancel, delete, re-run and results.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use batchd_domain::openai::Surface;
use batchd_domain::rerun::{self, RerunSet};
use batchd_domain::{Batch, BatchId, ErrorType, Outcome};
use batchd_store::rerun::{RerunOutcome, RerunTerms};
use batchd_store::{BatchStore, CancelOutcome, Cursor, DeleteOutcome, StoreError};
use batchd_wire::{DeletedMessageBatch, DeletedType, ListPage};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::auth::Caller;
use crate::error::parse_batch_id;
use crate::extract::{IdParam, QueryParams};
use crate::{ApiError, AppState};

/// Rows read per results page: each page is one short read, so downloads never pin the database.
/// With ~2.8 KB results a page is ~360 KB, small enough to stay in cache through its copies and
/// to be recycled by the allocators; 1,000-row pages cost a third more CPU, mostly in page faults
/// on freshly mapped memory.
const RESULTS_PAGE: u32 = 128;
/// Pages read at once for one download, each its own query. Reading is most of a download's CPU
/// and one page at a time left the cores half idle: 2 took a download from ~680 to ~870 MB/s. With
/// SQLite's blocking page reader, 3 measured within noise of 2 on two cores.
const RESULTS_READ_AHEAD: usize = 2;

/// A compact JSON 200 with the content type the SDKs expect.
pub(crate) fn json<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(&e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// The batch object as this server shows it.
pub(crate) fn batch_response(
    state: &AppState,
    headers: &HeaderMap,
    batch: &Batch,
) -> Result<Response, ApiError> {
    json(&batch.to_wire(&state.public_base(headers)))
}

async fn find(state: &AppState, caller: &Caller, raw_id: &str) -> Result<Batch, ApiError> {
    let id = parse_batch_id(raw_id)?;
    state
        .inner
        .store
        .get_batch(&caller.workspace, &id)
        .await?
        .ok_or_else(|| ApiError::batch_not_found(raw_id))
}

#[utoipa::path(
    get,
    path = "/v1/messages/batches/{message_batch_id}",
    operation_id = "retrieve_message_batch",
    tag = "Message Batches",
    summary = "Retrieve a Message Batch",
    description = "Idempotent; poll it until `processing_status` is `ended`, then download `results_url`.",
    params(crate::openapi::BatchIdPath, crate::openapi::ApiHeaders, crate::openapi::BetaQuery),
    responses(
        (status = 200, description = "The batch.", body = batchd_wire::MessageBatch, headers(("retry-after" = String, description = "`10` (seconds, a polling hint) while the batch has not ended."))),
    ),
    security(("ApiKeyAuth" = []), ("BearerAuth" = [])),
)]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(id): IdParam,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let batch = find(&state, &caller, &id).await?;
    let mut response = batch_response(&state, &headers, &batch)?;
    if !batch.is_ended() {
        // The real API suggests a polling interval this way while a batch runs.
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/v1/messages/batches",
    operation_id = "list_message_batches",
    tag = "Message Batches",
    summary = "List Message Batches",
    description = "The batches of the key's workspace, most recently created first, a page at a time.",
    params(crate::openapi::ListQuery, crate::openapi::ApiHeaders, crate::openapi::BetaQuery),
    responses(
        (status = 200, description = "One page.", body = batchd_wire::ListPage<batchd_wire::MessageBatch>),
    ),
    security(("ApiKeyAuth" = []), ("BearerAuth" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let limit = match query.get("limit") {
        None => 20,
        Some(raw) => {
            let n: i64 = raw.trim().parse().map_err(|_| {
                ApiError::invalid(
                    "limit: Input should be a valid integer, unable to parse string as an integer",
                )
            })?;
            if n < 1 {
                return Err(ApiError::invalid(
                    "limit: Input should be greater than or equal to 1",
                ));
            }
            if n > 1000 {
                return Err(ApiError::invalid(
                    "limit: Input should be less than or equal to 1000",
                ));
            }
            n as u32
        }
    };
    let cursor_id = |name: &str| -> Result<Option<BatchId>, ApiError> {
        match query.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(raw) => parse_batch_id(raw).map(Some),
        }
    };
    let cursor = match (cursor_id("before_id")?, cursor_id("after_id")?) {
        // Neither the API reference nor the SDKs exclude the pair, and the SDKs' own tests send
        // both and expect a page: the window between them, paged from `after_id` as usual.
        (Some(before), Some(after)) => Cursor::Between { after, before },
        (Some(before), None) => Cursor::Before(before),
        (None, Some(after)) => Cursor::After(after),
        (None, None) => Cursor::Start,
    };
    let page = state
        .inner
        .store
        .list_batches(&caller.workspace, Surface::Anthropic, cursor, limit)
        .await?;
    let base = state.public_base(&headers);
    let data: Vec<_> = page.batches.iter().map(|b| b.to_wire(&base)).collect();
    json(&ListPage {
        first_id: data.first().map(|b| b.id.clone()),
        last_id: data.last().map(|b| b.id.clone()),
        has_more: page.has_more,
        data,
    })
}

#[utoipa::path(
    post,
    path = "/v1/messages/batches/{message_batch_id}/cancel",
    operation_id = "cancel_message_batch",
    tag = "Message Batches",
    summary = "Cancel a Message Batch",
    description = "Starts cancellation: the batch becomes `canceling`, requests not yet sent are canceled, and it ends once the requests in flight are answered. Any body is ignored. A batch that has already ended gives a 400.",
    params(crate::openapi::BatchIdPath, crate::openapi::ApiHeaders, crate::openapi::BetaQuery),
    responses(
        (status = 200, description = "The batch, `canceling` (or unchanged if it already was).", body = batchd_wire::MessageBatch),
    ),
    security(("ApiKeyAuth" = []), ("BearerAuth" = [])),
)]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(raw_id): IdParam,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_batch_id(&raw_id)?;
    match state
        .inner
        .store
        .cancel_batch(
            &caller.workspace,
            &id,
            state.now_in(&caller.workspace).await?,
        )
        .await?
    {
        CancelOutcome::NotFound => Err(ApiError::batch_not_found(&raw_id)),
        CancelOutcome::AlreadyEnded(_) => Err(ApiError::invalid(format!(
            "Message Batch {raw_id} has already ended and cannot be canceled."
        ))),
        CancelOutcome::Canceling(batch) => {
            state.inner.work.notify_canceled(batch.key);
            batch_response(&state, &headers, &batch)
        }
    }
}

#[utoipa::path(
    delete,
    path = "/v1/messages/batches/{message_batch_id}",
    operation_id = "delete_message_batch",
    tag = "Message Batches",
    summary = "Delete a Message Batch",
    description = "Deletes an ended batch and its results. A batch that has not ended gives a 400: cancel it first.",
    params(crate::openapi::BatchIdPath, crate::openapi::ApiHeaders, crate::openapi::BetaQuery),
    responses(
        (status = 200, description = "The batch is deleted.", body = batchd_wire::DeletedMessageBatch),
    ),
    security(("ApiKeyAuth" = []), ("BearerAuth" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(raw_id): IdParam,
) -> Result<Response, ApiError> {
    let id = parse_batch_id(&raw_id)?;
    match state
        .inner
        .store
        .delete_batch(&caller.workspace, &id)
        .await?
    {
        DeleteOutcome::NotFound => Err(ApiError::batch_not_found(&raw_id)),
        DeleteOutcome::NotEnded => Err(ApiError::invalid(
            "In progress batches cannot be deleted. Consider canceling the batch instead.",
        )),
        DeleteOutcome::Deleted => {
            state.inner.work.notify_reclaimable();
            json(&DeletedMessageBatch {
                id: raw_id,
                kind: DeletedType::MessageBatchDeleted,
            })
        }
    }
}

/// A re-run's answer: the new batch as `GET` shows it, and last, so that the SDKs' models
/// (which keep unknown keys and ignore them) read it as a plain `MessageBatch`, the batch it
/// re-runs.
#[derive(Serialize)]
struct Rerun {
    #[serde(flatten)]
    batch: batchd_wire::MessageBatch,
    rerun_of: String,
}

#[utoipa::path(
    post,
    path = "/v1/messages/batches/{message_batch_id}/rerun",
    operation_id = "rerun_message_batch",
    tag = "Message Batches",
    summary = "Re-run the unfinished requests of a Message Batch (batchd)",
    description = "An extension of batchd: a new batch of the requests of an ended batch whose result was one of `only` (`errored`, `expired`, `canceled`; all three by default), with the same `custom_id`, `params`, betas and version, copied inside the server. The answer is the new batch with `rerun_of`, the original's id. The original is untouched. It counts under the workspace's queue cap as a create does.",
    params(crate::openapi::BatchIdPath, crate::openapi::ApiHeaders, crate::openapi::BetaQuery),
    responses(
        (status = 200, description = "The new batch, `in_progress`, with `rerun_of`.", body = batchd_wire::MessageBatch),
    ),
    security(("ApiKeyAuth" = []), ("BearerAuth" = [])),
)]
pub async fn rerun(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(raw_id): IdParam,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_batch_id(&raw_id)?;
    let only = RerunSet::from_body(&body).map_err(ApiError::invalid)?;
    let cap = state.inner.config.quotas.queue_cap(&caller.workspace);
    let terms = RerunTerms {
        id: BatchId::generate(),
        now: state.now_in(&caller.workspace).await?,
        expiry: state.inner.config.batch_expiry,
        queue_cap: cap,
    };
    let outcome = state
        .inner
        .store
        .rerun_batch(&caller.workspace, &id, only, terms)
        .await?;
    match outcome {
        RerunOutcome::NotFound => Err(ApiError::batch_not_found(&raw_id)),
        RerunOutcome::NotEnded => Err(ApiError::invalid(rerun::NOT_ENDED)),
        RerunOutcome::Archived => Err(ApiError::invalid(rerun::archived(&raw_id))),
        RerunOutcome::Nothing => Err(ApiError::invalid(rerun::nothing_to_rerun(&raw_id))),
        RerunOutcome::QueueFull { requests, .. } if requests > cap => {
            Err(crate::quota::batch_over_cap(cap, requests))
        }
        RerunOutcome::QueueFull { waiting, .. } => Err(crate::quota::queue_full(cap, waiting)),
        RerunOutcome::Created(batch) => {
            state.inner.work.notify_created();
            json(&Rerun {
                batch: batch.to_wire(&state.public_base(&headers)),
                rerun_of: raw_id,
            })
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/messages/batches/{message_batch_id}/results",
    operation_id = "message_batch_results",
    tag = "Message Batches",
    summary = "Retrieve Message Batch results",
    description = "Streams the results of an ended batch as JSONL: one `{custom_id, result}` object per line, one line per request, not necessarily in request order (match them by `custom_id`). Prefer the batch's `results_url` to building this path. Before the batch ends, and once its results are archived, this answers 404.",
    params(crate::openapi::BatchIdPath, crate::openapi::ApiHeaders, crate::openapi::BetaQuery),
    responses(
        (status = 200, description = "One JSON object per line, each terminated by `\\n`; the schema describes one line.", content_type = "application/x-jsonl", body = batchd_wire::ResultLine),
    ),
    security(("ApiKeyAuth" = []), ("BearerAuth" = [])),
)]
pub async fn results(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(raw_id): IdParam,
) -> Result<Response, ApiError> {
    let batch = find(&state, &caller, &raw_id).await?;
    if !batch.is_ended() || batch.archived_at.is_some() {
        return Err(ApiError::new(
            ErrorType::NotFound,
            format!("Message Batch {raw_id} has no available results."),
        ));
    }
    // The `result` of requests without a stored one. A batch whose every request has a result
    // needs none, and the store may then read the results alone.
    let unanswered: Option<&'static str> = if batch.unanswered() == 0 {
        None
    } else if batch.end_reason.map(|r| r.unanswered_outcome()) == Some(Outcome::Canceled) {
        Some(r#"{"type":"canceled"}"#)
    } else {
        Some(r#"{"type":"expired"}"#)
    };
    // Pages are produced by a task and handed over through a small channel: memory stays bounded
    // by a few pages whatever the batch size, and a slow client only slows its own producer.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let store = state.inner.store.clone();
    tokio::spawn(async move {
        let mut pages = futures_util::stream::iter(0..batch.total.div_ceil(RESULTS_PAGE.into()))
            .map(|k| fetch_results_page(store.as_ref(), batch.key, batch.total, k, unanswered))
            .buffered(RESULTS_READ_AHEAD);
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(err) => {
                    tracing::error!(error = %err, batch = %batch.id, "results stream failed");
                    let _ = tx.send(Err(std::io::Error::other(err))).await;
                    return;
                }
            };
            // One frame per page: the Vec becomes the frame without a copy.
            if tx.send(Ok(Bytes::from(page))).await.is_err() {
                return; // client went away
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-jsonl"),
    );
    Ok(response)
}

/// The JSONL of page `k` of a batch of `total` requests: indices `[k × RESULTS_PAGE, (k + 1) ×
/// RESULTS_PAGE)`. A batch's indices are exactly `0..total` (a create commits only with all of
/// them), which is what lets pages be fetched by number, several at a time, rather than each
/// waiting for the previous one's last index. A page that does not end where that says, or does
/// not hold a line for each index, is an error, never a duplicated or missing line.
async fn fetch_results_page(
    store: &dyn BatchStore,
    batch_key: i64,
    total: u64,
    k: u64,
    unanswered: Option<&str>,
) -> Result<Vec<u8>, StoreError> {
    let size = u64::from(RESULTS_PAGE);
    // Indices are below 2^20 (the store's limit), so these fit in a u32.
    let start = k * size;
    let after = (k > 0).then(|| (start - 1) as u32);
    let end = (start + size).min(total) - 1;
    match store
        .results_lines(batch_key, after, RESULTS_PAGE, unanswered)
        .await?
    {
        Some(page)
            if u64::from(page.last_index) == end && u64::from(page.rows) == end + 1 - start =>
        {
            Ok(page.lines)
        }
        _ => Err(StoreError::Corrupt(format!(
            "results page {k} does not hold indices {start} to {end}"
        ))),
    }
}

/// Live progress: an extension beside the documented object, which keeps its "counts move at
/// the end" semantics. Here the buckets move as results are recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(
    description = "Live progress of a batch (batchd extension): `request_counts` move as results \
                   are recorded instead of at the end."
)]
pub struct Progress {
    #[schema(example = "msgbatch_01Kk2gPdvEq73ifNWGPfvmyd")]
    pub id: String,
    #[serde(rename = "type")]
    #[schema(value_type = crate::openapi::ProgressType)]
    pub kind: &'static str,
    pub processing_status: batchd_wire::ProcessingStatus,
    /// Requests in the batch.
    pub total: u64,
    /// Outcomes recorded so far; `processing` counts the requests still without one.
    pub request_counts: batchd_wire::RequestCounts,
    /// Average rate since creation (until the end, for an ended batch).
    pub requests_per_second: f64,
    /// Seconds until every request is answered at the current rate; null when unknown or ended.
    #[schema(required = true)]
    pub eta_seconds: Option<f64>,
    /// When this was computed (RFC 3339).
    #[schema(format = DateTime)]
    pub as_of: String,
}

impl Progress {
    pub fn of(batch: &Batch, now: batchd_domain::Timestamp) -> Self {
        let counts = if batch.is_ended() {
            batch.request_counts()
        } else {
            batchd_wire::RequestCounts {
                processing: batch.unanswered(),
                succeeded: batch.succeeded,
                errored: batch.errored,
                canceled: 0,
                expired: 0,
            }
        };
        let answered = batch.succeeded + batch.errored;
        let elapsed = batch
            .created_at
            .until(batch.ended_at.unwrap_or(now))
            .as_secs_f64();
        let rate = if elapsed > 0.0 {
            answered as f64 / elapsed
        } else {
            0.0
        };
        let eta = (!batch.is_ended() && rate > 0.0).then(|| counts.processing as f64 / rate);
        Self {
            id: batch.id.to_string(),
            kind: "message_batch_progress",
            processing_status: batch.status,
            total: batch.total,
            request_counts: counts,
            requests_per_second: (rate * 100.0).round() / 100.0,
            eta_seconds: eta.map(|e| (e * 10.0).round() / 10.0),
            as_of: now.to_rfc3339(),
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/messages/batches/{message_batch_id}/progress",
    operation_id = "message_batch_progress",
    tag = "batchd extensions",
    summary = "Live progress of a Message Batch (batchd extension)",
    description = "**batchd extension**, not part of Anthropic's Message Batches API. While a batch runs, its `request_counts` keep every request in `processing` until the end, as the API documents; this route shows the outcomes as they are recorded, with a rate and an estimated time to completion.",
    params(crate::openapi::BatchIdPath, crate::openapi::ApiHeaders, crate::openapi::BetaQuery),
    responses(
        (status = 200, description = "The progress of the batch.", body = Progress),
    ),
    security(("ApiKeyAuth" = []), ("BearerAuth" = [])),
)]
pub async fn progress(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdParam(id): IdParam,
) -> Result<Response, ApiError> {
    let batch = find(&state, &caller, &id).await?;
    json(&Progress::of(
        &batch,
        state.now_in(&caller.workspace).await?,
    ))
}
