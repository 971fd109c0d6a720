//! `POST /v1/messages/batches`: a streaming, bounded-memory create.
//!
//! The body (up to 256 MB) is never held whole. It is parsed as it arrives on a blocking thread,
//! each request from a slice the `create_scan` scanner splits off (for speed), read by
//! `raw_json`'s scan when it has the plain shape and by a serde visitor otherwise (the visitor
//! alone reads an unusual envelope as a stream); requests are validated one by one (`custom_id` grammar and
//! uniqueness, the `requests` list bounds, unknown keys) and handed in chunks over a small
//! channel to the store, which appends them to an invisible draft. Only when the whole body has
//! parsed cleanly is the draft committed (durably) and the 200 sent; on any error the draft is
//! aborted and nothing is ever visible. `params` are kept as the raw JSON the client sent: their
//! validation is deferred to processing, as the real API does. A body that keeps the server
//! waiting falls behind a minimum pace ([`MIN_BODY_RATE`]) and is cut with a 400
//! (`request_body_timeout`), so a client cannot hold a blocking thread and a draft by trickling.
//! A compressed body is decoded as it is parsed ([`crate::encoding`]). Before a byte of the body
//! is read, the create takes a slot in the process-wide budget ([`crate::create_budget`]) and its
//! declared `Content-Encoding` and `Content-Type` are checked: a coding the server decodes, and
//! JSON or none. A batch that would take its workspace over its queue cap is refused (429): at
//! once when the queue is already full, else at commit, the count and the commit one
//! transaction; a batch larger than the cap itself is told not to retry.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use batchd_domain::batch::MAX_REQUESTS;
use batchd_domain::custom_id::CustomId;
use batchd_domain::validation::{
    self, DUPLICATE_KEY, EXTRA, NOT_DICT, NOT_LIST, NOT_STRING, REQUIRED, at, too_few_items,
    too_many_items,
};
use batchd_domain::{BatchId, ErrorType, raw_json};
use batchd_store::{Draft, NewBatch, NewRequest};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::auth::Caller;
use crate::batches::batch_response;
use crate::create_scan::Scanner;
use crate::encoding::{self, ContentEncoding};
use crate::error::ErrorCode;
use crate::{ApiError, AppState, quota};

/// The average rate, in bytes per second, a create body must keep up once it has waited for the
/// client longer than [`crate::HttpConfig::body_timeout`]: a body trickling in holds a blocking
/// thread and a draft, so it may not take longer than its size at this rate.
pub const MIN_BODY_RATE: u64 = 64 * 1024;

/// The message of the 400 (`request_body_timeout`) for a body that did not arrive in time, in the
/// words the SDKs use to document that code.
pub(crate) const BODY_TOO_SLOW: &str = "The request body did not finish arriving in time, so \
                                        nothing was done. Send a smaller body, or send it over a \
                                        faster connection.";

/// The message of the 400 for a create body declared as another media type than JSON.
pub const NOT_JSON_CONTENT_TYPE: &str =
    "The request body must be JSON, sent with `Content-Type: application/json`.";

/// A chunk is handed to the store when it holds this many requests or bytes of params.
///
/// A create holds at most three chunks: the one being filled, one queued ([`CHUNK_QUEUE`]) and
/// the one being stored, so ~6 MiB of params besides the scanner's window. 2 MiB and one
/// queued rather than 4 MiB and two: on a 100,000-request, 259 MB create (`batchd-bench --rows
/// ingest,dispatch-rss`, release builds alternated three times) the peak RSS growth fell from
/// 39/37/33 MB to 26/22/23 MB and the create took 0.38-0.40 s against 0.39-0.56 s; the peak
/// while a 10,000-request batch is created and then dispatched fell from 52.6-55.8 MB to
/// 51.3-53.3 MB. 1 MiB chunks (two queued) saved a few MB more (20-23 MB growth) but each chunk
/// is a transaction, and the create took 0.39-0.67 s.
const CHUNK_REQUESTS: usize = 2_000;
const CHUNK_BYTES: usize = 2 * 1024 * 1024;
/// Full chunks waiting for the store while the parser fills the next one.
const CHUNK_QUEUE: usize = 1;

/// Why a create body was refused.
#[derive(Debug)]
enum Refusal {
    /// Envelope validation failed: a 400 with this message.
    Invalid(String),
    /// The body is not JSON.
    NotJson(String),
    /// The client went away, or the store stopped taking chunks.
    Aborted,
}

#[utoipa::path(
    post,
    path = "/v1/messages/batches",
    operation_id = "create_message_batch",
    tag = "Message Batches",
    summary = "Create a Message Batch",
    description = "Creates a batch of Messages API requests, processed asynchronously. The envelope (`requests`, each `custom_id`, unknown keys) is validated now; each request's `params` only when it is processed, so problems there become `errored` results. Up to 100,000 requests; the body may be up to 256 MB (the server's default limit). The body may be compressed with `Content-Encoding: gzip`, `deflate` or `br`; the limit then holds for the body both as sent and once decoded.",
    params(crate::openapi::ApiHeaders, crate::openapi::BetaQuery),
    request_body(content = batchd_wire::CreateBatch, description = "The requests of the batch.", content_type = "application/json"),
    responses(
        (status = 200, description = "The new batch: `in_progress`, every request counted as `processing`.", body = batchd_wire::MessageBatch),
        (status = 400, response = crate::openapi::CreateInvalidRequest),
        (status = 413, response = crate::openapi::RequestTooLarge),
        (status = 529, response = crate::openapi::CreateOverloaded),
    ),
    security(("ApiKeyAuth" = []), ("BearerAuth" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let max = state.inner.config.max_create_bytes;
    let coding = match ContentEncoding::from_headers(&headers) {
        Ok(coding) => coding,
        Err(refusal) => return refuse_unread(&state, body, &headers, refusal),
    };
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(too_large());
    }
    if let Err(refusal) = json_content_type(&headers) {
        return refuse_unread(&state, body, &headers, refusal);
    }
    // A queue already full refuses at once, before the body is uploaded and stored; the count
    // may be stale, so the commit checks again.
    let cap = state.inner.config.quotas.queue_cap(&caller.workspace);
    let waiting = match state.inner.store.waiting_requests(&caller.workspace).await {
        Ok(waiting) => waiting,
        Err(err) => return refuse_unread(&state, body, &headers, err),
    };
    if waiting >= cap {
        tracing::info!(
            workspace = %caller.workspace,
            waiting,
            cap,
            "create refused before its body: the workspace's queue is full"
        );
        return refuse_unread(&state, body, &headers, quota::queue_full(cap, waiting));
    }
    // Taken before the body is read, so a create that waits for a slot holds none of it.
    let slot = match state.inner.creates.admit().await {
        Ok(slot) => slot,
        Err(refusal) => return refuse_unread(&state, body, &headers, refusal),
    };

    // On the workspace's clock in test mode.
    let now = match state.now_in(&caller.workspace).await {
        Ok(now) => now,
        Err(err) => return refuse_unread(&state, body, &headers, err),
    };
    let store = state.inner.store.clone();
    let begun = store
        .begin_batch(NewBatch {
            id: BatchId::generate(),
            workspace: caller.workspace.clone(),
            created_at: now,
            expires_at: now.plus(state.inner.config.batch_expiry),
            betas: caller.betas.clone(),
            api_version: caller.version,
            user_profile_id: user_profile(&headers),
            endpoint: batchd_domain::openai::Endpoint::Messages,
            openai: None,
        })
        .await;
    let draft = match begun {
        Ok(draft) => draft,
        Err(err) => return refuse_unread(&state, body, &headers, err),
    };

    // Count bytes as they arrive so a body without (or lying about) content-length is still cut
    // off at the limit.
    let exceeded = Arc::new(AtomicBool::new(false));
    let flag = exceeded.clone();
    let mut seen: u64 = 0;
    let too_slow = Arc::new(AtomicBool::new(false));
    let stream = Box::pin(paced(
        body.into_data_stream(),
        state.inner.config.body_timeout,
        too_slow.clone(),
    ))
    .map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > max {
            flag.store(true, Ordering::Relaxed);
            return Err(io::Error::other("request body over the size limit"));
        }
        Ok::<_, io::Error>(chunk)
    });
    let wire = SyncIoBridge::new(StreamReader::new(stream));
    let decoding = Arc::new(encoding::Outcome::default());
    let outcome = decoding.clone();
    let (tx, mut rx) = mpsc::channel::<Vec<NewRequest>>(CHUNK_QUEUE);
    let parser_slot = slot.clone();
    let parser = tokio::task::spawn_blocking(move || {
        // Built here: decoders read their header from the wire as they are made.
        let reader = coding.decode(wire, max, outcome);
        let parsed = parse(reader, tx);
        drop(parser_slot);
        parsed
    });

    let mut stored = Ok(());
    while let Some(chunk) = rx.recv().await {
        stored = store.append_requests(&draft, chunk).await;
        if stored.is_err() {
            // Dropping the receiver makes the parser stop at its next chunk.
            break;
        }
    }
    drop(rx);
    let parsed = parser.await.unwrap_or(Err(Refusal::Aborted));

    let refusal = match (stored, parsed) {
        (Ok(()), Ok(total)) if total > cap => {
            abandon(&state, draft).await;
            return Err(quota::batch_over_cap(cap, total));
        }
        (Ok(()), Ok(total)) => {
            let full = match store.commit_batch_within(draft, total, cap).await? {
                Ok(batch) => {
                    state.inner.work.notify_created();
                    return batch_response(&state, &headers, &batch);
                }
                Err(full) => full,
            };
            abandon(&state, full.draft).await;
            tracing::info!(
                workspace = %caller.workspace,
                requests = total,
                waiting = full.waiting,
                cap,
                "create refused: the workspace's queue is full"
            );
            return Err(quota::queue_full(cap, full.waiting));
        }
        (Err(err), _) => Err(err),
        (Ok(()), Err(refusal)) => Ok(refusal),
    };
    abandon(&state, draft).await;
    let refusal = refusal?;
    if exceeded.load(Ordering::Relaxed) {
        return Err(too_large());
    }
    if too_slow.load(Ordering::Relaxed) {
        tracing::info!(workspace = %caller.workspace, "create cut: its body arrived too slowly");
        return Err(ApiError::invalid(BODY_TOO_SLOW).with_code(ErrorCode::RequestBodyTimeout));
    }
    if let Some(refusal) = decoding.refusal() {
        return Err(refusal);
    }
    match refusal {
        Refusal::Invalid(message) => Err(ApiError::invalid(message)),
        Refusal::NotJson(detail) => Err(ApiError::invalid(validation::not_json(detail))),
        Refusal::Aborted => Err(ApiError::invalid(
            "The request body could not be read completely.",
        )),
    }
}

/// `body` as long as it keeps pace: the time spent waiting for it may exceed `grace` only as far
/// as the bytes received so far would have taken at [`MIN_BODY_RATE`]. Only waiting counts, so a
/// server slow to take the chunks never makes a client late. When the body falls behind, the
/// stream ends with an error and `too_slow` is set.
pub(crate) fn paced(
    body: axum::body::BodyDataStream,
    grace: Duration,
    too_slow: Arc<AtomicBool>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
    let pace = Pace {
        body,
        grace,
        waited: Duration::ZERO,
        received: 0,
        too_slow,
    };
    futures_util::stream::unfold(Some(pace), |pace| async move {
        let mut pace = pace?;
        let allowed = pace.grace.max(Duration::from_secs_f64(
            pace.received as f64 / MIN_BODY_RATE as f64,
        ));
        let started = Instant::now();
        let next = tokio::time::timeout(allowed.saturating_sub(pace.waited), pace.body.next());
        match next.await {
            Err(_) => {
                pace.too_slow.store(true, Ordering::Relaxed);
                let err = io::Error::new(io::ErrorKind::TimedOut, "request body too slow");
                Some((Err(err), None))
            }
            Ok(None) => None,
            Ok(Some(chunk)) => {
                pace.waited += started.elapsed();
                let chunk = chunk.map_err(io::Error::other);
                if let Ok(bytes) = &chunk {
                    pace.received += bytes.len() as u64;
                }
                Some((chunk, Some(pace)))
            }
        }
    })
}

/// The state of [`paced`].
struct Pace {
    body: axum::body::BodyDataStream,
    grace: Duration,
    waited: Duration,
    received: u64,
    too_slow: Arc<AtomicBool>,
}

/// The `anthropic-user-profile-id` the batch's requests are attributed to. Its shape is not
/// checked: profiles are the hosted API's to know, and the SDKs' own tests send any string.
fn user_profile(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("anthropic-user-profile-id")?;
    let value = String::from_utf8_lossy(value.as_bytes()).trim().to_owned();
    (!value.is_empty()).then_some(value)
}

/// Refuses a body declared as anything but JSON. Without a `Content-Type` the body is taken as
/// JSON, as the SDKs always send it and `curl` users often forget it; any parameter (`charset`)
/// is allowed.
fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if media.is_some_and(|m| m.eq_ignore_ascii_case("application/json")) {
        Ok(())
    } else {
        Err(ApiError::invalid(NOT_JSON_CONTENT_TYPE))
    }
}

/// Refuses a create whose body is still unread, draining the body in the background so the
/// client reads the answer rather than a reset.
/// Gives up on a draft: its rows are reclaimed in the background.
async fn abandon(state: &AppState, draft: Draft) {
    if let Err(err) = state.inner.store.abort_batch(draft).await {
        tracing::warn!(error = %err, "could not abort a draft batch; it is reclaimed at next start");
    }
    state.inner.work.notify_reclaimable();
}

fn refuse_unread(
    state: &AppState,
    body: Body,
    headers: &HeaderMap,
    refusal: impl Into<ApiError>,
) -> Result<Response, ApiError> {
    state.inner.drains.discard(body, headers);
    Err(refusal.into())
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorType::RequestTooLarge,
        "Request exceeds the maximum size",
    )
}

/// Parses a create body from `reader`, sending validated requests in chunks. Returns the count.
fn parse<R: Read>(reader: R, tx: mpsc::Sender<Vec<NewRequest>>) -> Result<u64, Refusal> {
    let mut sink = Sink {
        tx,
        chunk: Vec::with_capacity(CHUNK_REQUESTS),
        chunk_bytes: 0,
        seen: HashSet::new(),
        count: 0,
        refusal: None,
    };
    let mut scanner = Scanner::new(reader);
    let outcome = match scanner.requests_prefix() {
        Ok(true) => parse_elements(&mut scanner, &mut sink),
        Ok(false) => parse_stream(BufReader::new(scanner.into_rest()), &mut sink),
        Err(_) => Err(Refusal::Aborted),
    };
    if let Some(refusal) = sink.refusal.take() {
        return Err(refusal);
    }
    outcome?;
    if sink.count == 0 {
        return Err(Refusal::Invalid(at("requests", too_few_items(1, 0))));
    }
    if sink.count > MAX_REQUESTS {
        return Err(Refusal::Invalid(at(
            "requests",
            too_many_items(MAX_REQUESTS, sink.count),
        )));
    }
    sink.flush().map_err(|()| Refusal::Aborted)?;
    Ok(sink.count)
}

/// Any body, through the visitors on serde_json's streaming reader.
fn parse_stream<R: Read>(reader: R, sink: &mut Sink) -> Result<(), Refusal> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    CreateBody(sink)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|err| {
            if err.is_io() {
                Refusal::Aborted
            } else {
                Refusal::NotJson(err.to_string())
            }
        })
}

/// The rest of a body that began `{"requests": [`: each element split off by the scanner and
/// read from a slice, by [`plain_item`] or else by the same [`Item`] visitor; then the
/// envelope's end.
fn parse_elements<R: Read>(scanner: &mut Scanner<R>, sink: &mut Sink) -> Result<(), Refusal> {
    let io = |_: io::Error| Refusal::Aborted;
    let cut = || Refusal::NotJson("EOF while parsing the request body".into());
    let mut element = Vec::new();
    if scanner.peek().map_err(io)? == Some(b']') {
        scanner.bump();
    } else {
        loop {
            element.clear();
            if !scanner.value_into(&mut element).map_err(io)? {
                return Err(cut());
            }
            if sink.count >= MAX_REQUESTS {
                // Over the limit: keep counting for the message, store nothing more.
                sink.count += 1;
            } else {
                let index = sink.count;
                let request = match plain_item(&element, index, &mut sink.seen) {
                    Some(request) => request,
                    None => {
                        let mut de = serde_json::Deserializer::from_slice(&element);
                        Item { sink, index }
                            .deserialize(&mut de)
                            .and_then(|request| de.end().map(|()| request))
                            .map_err(|err| Refusal::NotJson(err.to_string()))?
                    }
                };
                sink.push(request).map_err(|()| Refusal::Aborted)?;
            }
            match scanner.peek().map_err(io)? {
                Some(b',') => scanner.bump(),
                Some(b']') => {
                    scanner.bump();
                    break;
                }
                Some(_) => {
                    return Err(Refusal::NotJson("expected `,` or `]` in `requests`".into()));
                }
                None => return Err(cut()),
            }
        }
    }
    match scanner.peek().map_err(io)? {
        Some(b'}') => scanner.bump(),
        Some(b',') => {
            // Another key after `requests`: the same refusal the visitor gives.
            scanner.bump();
            element.clear();
            if !scanner.value_into(&mut element).map_err(io)? {
                return Err(cut());
            }
            let key: String = serde_json::from_slice(&element)
                .map_err(|err| Refusal::NotJson(err.to_string()))?;
            return Err(Refusal::Invalid(if key == "requests" {
                at(key, DUPLICATE_KEY)
            } else {
                at(key, EXTRA)
            }));
        }
        Some(_) => {
            return Err(Refusal::NotJson(
                "expected `,` or `}` after `requests`".into(),
            ));
        }
        None => return Err(cut()),
    }
    match scanner.peek().map_err(io)? {
        None => Ok(()),
        Some(_) => Err(Refusal::NotJson(
            "trailing characters after the request body".into(),
        )),
    }
}

/// Parser state shared by the visitors.
struct Sink {
    tx: mpsc::Sender<Vec<NewRequest>>,
    chunk: Vec<NewRequest>,
    chunk_bytes: usize,
    /// custom_ids seen so far; at most 100,000 short strings.
    seen: HashSet<String>,
    count: u64,
    /// The first validation failure; a visitor that sets it returns a serde error to unwind.
    refusal: Option<Refusal>,
}

impl Sink {
    fn refuse<E: de::Error>(&mut self, refusal: Refusal) -> E {
        if self.refusal.is_none() {
            self.refusal = Some(refusal);
        }
        E::custom("refused")
    }

    fn invalid<E: de::Error>(&mut self, message: String) -> E {
        self.refuse(Refusal::Invalid(message))
    }

    /// Takes a validated request, handing a full chunk to the store.
    fn push(&mut self, request: NewRequest) -> Result<(), ()> {
        self.count += 1;
        self.chunk_bytes += request.params.len();
        self.chunk.push(request);
        if self.chunk.len() >= CHUNK_REQUESTS || self.chunk_bytes >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_REQUESTS));
        self.chunk_bytes = 0;
        self.tx.blocking_send(chunk).map_err(|_| ())
    }
}

/// Implements "anything but the expected shape" for a visitor: records `message` and fails.
macro_rules! refuse_other_types {
    ($message:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            let m = $message(&self);
            Err(self.sink.invalid(m))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            let m = $message(&self);
            Err(self.sink.invalid(m))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            let m = $message(&self);
            Err(self.sink.invalid(m))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            let m = $message(&self);
            Err(self.sink.invalid(m))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            let m = $message(&self);
            Err(self.sink.invalid(m))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            let m = $message(&self);
            Err(self.sink.invalid(m))
        }
    };
}

/// The top-level object: `{"requests": [...]}` and nothing else.
struct CreateBody<'a>(&'a mut Sink);

impl<'de> DeserializeSeed<'de> for CreateBody<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(BodyVisitor { sink: self.0 })
    }
}

struct BodyVisitor<'a> {
    sink: &'a mut Sink,
}

impl<'de> Visitor<'de> for BodyVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    refuse_other_types!(|_: &Self| NOT_DICT.to_owned());
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.sink.invalid(NOT_DICT.into()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut saw_requests = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "requests" && !saw_requests {
                saw_requests = true;
                map.next_value_seed(Requests(self.sink))?;
            } else if key == "requests" {
                return Err(self.sink.invalid(at(key, DUPLICATE_KEY)));
            } else {
                return Err(self.sink.invalid(at(key, EXTRA)));
            }
        }
        if !saw_requests {
            return Err(self.sink.invalid(at("requests", REQUIRED)));
        }
        Ok(())
    }
}

/// The `requests` array.
struct Requests<'a>(&'a mut Sink);

impl<'de> DeserializeSeed<'de> for Requests<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(RequestsVisitor { sink: self.0 })
    }
}

struct RequestsVisitor<'a> {
    sink: &'a mut Sink,
}

impl<'de> Visitor<'de> for RequestsVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of requests")
    }
    refuse_other_types!(|_: &Self| at("requests", NOT_LIST));
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.sink.invalid(at("requests", NOT_LIST)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            if self.sink.count >= MAX_REQUESTS {
                // Over the limit: keep counting for the message, store nothing more.
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Ok(());
                }
                self.sink.count += 1;
                continue;
            }
            let index = self.sink.count;
            let Some(request) = seq.next_element_seed(Item {
                sink: self.sink,
                index,
            })?
            else {
                return Ok(());
            };
            let sink = &mut *self.sink;
            sink.push(request)
                .map_err(|()| sink.refuse(Refusal::Aborted))?;
        }
    }
}

/// An element of `requests` in its plain shape, read by one scan of `raw_json` rather than by
/// [`Item`] on serde_json's slice reader, which skipped each params' strings eight bytes at a
/// time: an object holding `custom_id` once, a string that is a valid id not seen before, and
/// `params` once, an object. Whatever else an element is (refused, or valid in an unusual way:
/// a repeated key, say) gives `None`, and [`Item`] reads it, so the answers and the error texts
/// stay the visitor's. Counted with `scripts/instructions.sh ingest 20000` and
/// `callgrind_annotate --inclusive=yes` on the file it leaves: the create's `parse` took 400.7
/// million instructions against 437.2 million with the visitor alone (−8 %); of the 400.7,
/// this function's UTF-8 check is 77 and its scan 174.
fn plain_item(element: &[u8], index: u64, seen: &mut HashSet<String>) -> Option<NewRequest> {
    let text = std::str::from_utf8(element).ok()?;
    let (mut custom_id, mut params) = (None, None);
    for (key, value) in raw_json::members_as_written(text)? {
        let slot = match &*key {
            "custom_id" => &mut custom_id,
            "params" if value.starts_with('{') => &mut params,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let custom_id = serde_json::from_str::<String>(custom_id?).ok()?;
    let custom_id = CustomId::parse(&custom_id).ok()?;
    let params = params?.to_owned();
    if !seen.insert(custom_id.as_str().to_owned()) {
        return None;
    }
    Some(NewRequest {
        index: u32::try_from(index).unwrap_or(u32::MAX),
        custom_id,
        params,
        source: None,
    })
}

/// One element of `requests`.
struct Item<'a> {
    sink: &'a mut Sink,
    index: u64,
}

impl<'de> DeserializeSeed<'de> for Item<'_> {
    type Value = NewRequest;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<NewRequest, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Item<'_> {
    type Value = NewRequest;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request object")
    }
    refuse_other_types!(|me: &Self| at(format_args!("requests.{}", me.index), NOT_DICT));
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<NewRequest, A::Error> {
        let loc = format!("requests.{}", self.index);
        Err(self.sink.invalid(at(loc, NOT_DICT)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NewRequest, A::Error> {
        let i = self.index;
        let mut custom_id: Option<CustomId> = None;
        let mut params: Option<Box<RawValue>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "custom_id" => {
                    let value: serde_json::Value = map.next_value()?;
                    let serde_json::Value::String(raw) = value else {
                        return Err(self
                            .sink
                            .invalid(at(format_args!("requests.{i}.custom_id"), NOT_STRING)));
                    };
                    match CustomId::parse(&raw) {
                        Ok(id) => custom_id = Some(id),
                        Err(why) => {
                            return Err(self
                                .sink
                                .invalid(at(format_args!("requests.{i}.custom_id"), why)));
                        }
                    }
                }
                "params" => {
                    let raw: Box<RawValue> = map.next_value()?;
                    if !raw.get().starts_with('{') {
                        return Err(self
                            .sink
                            .invalid(at(format_args!("requests.{i}.params"), NOT_DICT)));
                    }
                    params = Some(raw);
                }
                other => {
                    return Err(self
                        .sink
                        .invalid(at(format_args!("requests.{i}.{other}"), EXTRA)));
                }
            }
        }
        let Some(custom_id) = custom_id else {
            return Err(self
                .sink
                .invalid(at(format_args!("requests.{i}.custom_id"), REQUIRED)));
        };
        let Some(params) = params else {
            return Err(self
                .sink
                .invalid(at(format_args!("requests.{i}.params"), REQUIRED)));
        };
        if !self.sink.seen.insert(custom_id.as_str().to_owned()) {
            return Err(self.sink.invalid(format!(
                "requests: custom_id's must be unique within a batch. Duplicate custom_id found: {custom_id}"
            )));
        }
        Ok(NewRequest {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            custom_id,
            params: String::from(Box::<str>::from(params)),
            source: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// What [`Item`] reads of one element, as `(custom_id, params)`, with the ids in `seen`
    /// seen before (the visitor adds the id when it takes the element).
    fn visitor_reads(element: &[u8], seen: &mut HashSet<String>) -> Option<(String, String)> {
        let (tx, _rx) = mpsc::channel(1);
        let mut sink = Sink {
            tx,
            chunk: Vec::new(),
            chunk_bytes: 0,
            seen: std::mem::take(seen),
            count: 0,
            refusal: None,
        };
        let mut de = serde_json::Deserializer::from_slice(element);
        let request = Item {
            sink: &mut sink,
            index: 0,
        }
        .deserialize(&mut de)
        .and_then(|request| de.end().map(|()| request));
        *seen = sink.seen;
        let request = request.ok()?;
        Some((request.custom_id.as_str().to_owned(), request.params))
    }

    /// Reads `element` as `parse_elements` does, the plain path first and the visitor on the
    /// same set of ids when it declines, and checks the plain path against the visitor alone:
    /// what it takes, the visitor takes alike, adding the same id; what it declines, it leaves
    /// no trace of. Answers which of the two took the element.
    fn agree(element: &[u8]) -> (bool, bool) {
        let before = HashSet::from(["dup".to_owned()]);
        let mut alone = before.clone();
        let visitor = visitor_reads(element, &mut alone);
        let mut seen = before.clone();
        let read = plain_item(element, 0, &mut seen);
        let shown = String::from_utf8_lossy(element);
        match &read {
            Some(request) => {
                let read = (
                    request.custom_id.as_str().to_owned(),
                    request.params.clone(),
                );
                assert_eq!(Some(read), visitor, "{shown:?}");
                assert_eq!(seen, alone, "{shown:?}");
            }
            None => {
                assert_eq!(seen, before, "{shown:?}");
                assert_eq!(visitor_reads(element, &mut seen), visitor, "{shown:?}");
                assert_eq!(seen, alone, "{shown:?}");
            }
        }
        (read.is_some(), visitor.is_some())
    }

    #[test]
    fn the_plain_path_reads_what_the_visitor_reads() {
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        let fixed: Vec<(Vec<u8>, (bool, bool))> = [
            (r#"{"custom_id":"a","params":{}}"#.to_owned(), (true, true)),
            (
                r#"{"custom_id":"a","params":[1]}"#.to_owned(),
                (false, false),
            ),
            (
                r#"{"custom_id":"a","params":"{}"}"#.to_owned(),
                (false, false),
            ),
            (
                r#"{"custom_id":"a","params":null}"#.to_owned(),
                (false, false),
            ),
            (
                r#"{"custom_id":7,"custom_id":"a","params":{}}"#.to_owned(),
                (false, false),
            ),
            (
                r#"{"custom_id":"a b","custom_id":"a","params":{}}"#.to_owned(),
                (false, false),
            ),
            (
                r#"{"custom_id":"a","params":[],"params":{}}"#.to_owned(),
                (false, false),
            ),
            (
                r#"{"custom_id":"a","params":{},"params":{"b":1}}"#.to_owned(),
                (false, true),
            ),
            (
                r#"{"custom_id":"a","params":{},"x":1}"#.to_owned(),
                (false, false),
            ),
            (
                r#"{"custom_id":"\ud800","params":{}}"#.to_owned(),
                (false, false),
            ),
            (
                r#"{"custom_id":"\u0061","params":{"s":"\ud800"}}"#.to_owned(),
                (true, true),
            ),
            (
                r#"{"c\u0075stom_id":"a","p\u0061rams":{}}"#.to_owned(),
                (true, true),
            ),
            (
                r#"{"\ud800":1,"custom_id":"a","params":{}}"#.to_owned(),
                (false, false),
            ),
            (r#"{"params":{}}"#.to_owned(), (false, false)),
            (r#"{"custom_id":"a"}"#.to_owned(), (false, false)),
            (
                r#"[{"custom_id":"a","params":{}}]"#.to_owned(),
                (false, false),
            ),
            (
                r#"{"custom_id":"dup","params":{}}"#.to_owned(),
                (false, false),
            ),
            (
                format!(r#"{{"custom_id":"a","params":{{"x":{}}}}}"#, deep(200)),
                (true, true),
            ),
            (
                format!(r#"{{"custom_id":{},"params":{{}}}}"#, deep(200)),
                (false, false),
            ),
        ]
        .into_iter()
        .map(|(text, taken)| (text.into_bytes(), taken))
        .chain([
            (
                b"{\"custom_id\":\"a\",\"params\":{\"s\":\"\xff\"}}".to_vec(),
                (false, false),
            ),
            (
                b"{\"custom_id\":\"a\",\"params\":{\"s\":\"\xed\xa0\x80\"}}".to_vec(),
                (false, false),
            ),
            (
                b"{\"custom_id\":\"\xff\",\"params\":{}}".to_vec(),
                (false, false),
            ),
            (
                b"{\"\xff\":1,\"custom_id\":\"a\",\"params\":{}}".to_vec(),
                (false, false),
            ),
        ])
        .collect();
        for (element, taken) in &fixed {
            let shown = String::from_utf8_lossy(element);
            assert_eq!(agree(element), *taken, "{shown:?}");
        }
        // Elements mutated at random from valid ones.
        let seeds = [
            r#"{"custom_id":"req-1","params":{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"hi \u00e9 \ud83d\ude00"}]}}"#,
            r#" { "params" : {"model":"m","x":[1,-2.5e3,null,true,false,{}]} , "custom_id" : "a_b-C" } "#,
            r#"{"custom_id":"d\u0065f","params":{},"params":{"a":1}}"#,
        ];
        let alphabet: &[&str] = &[
            "\"",
            "\\",
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            " ",
            "\n",
            "\t",
            "\r",
            "0",
            "1",
            "-",
            "+",
            ".",
            "e",
            "E",
            "u",
            "\\u",
            "\\ud800",
            "d800",
            "n",
            "t",
            "f",
            "é",
            "\u{1}",
            "\u{1f}",
            "null",
            "custom_id",
            "params",
            "\"custom_id\":\"z\",",
            "\"params\":{},",
            "x".repeat(70).leak(),
        ];
        let mut rng = StdRng::seed_from_u64(9);
        let (mut plain, mut valid) = (0, 0);
        for round in 0..40_000 {
            let mut text = seeds[round % seeds.len()].to_owned();
            for _ in 0..rng.random_range(1..=2) {
                let bounds: Vec<usize> = (0..=text.len())
                    .filter(|&i| text.is_char_boundary(i))
                    .collect();
                let at = bounds[rng.random_range(0..bounds.len())];
                let end = bounds.iter().copied().find(|&e| e > at).unwrap_or(at);
                let piece = alphabet[rng.random_range(0..alphabet.len())];
                match rng.random_range(0..3) {
                    0 => text.insert_str(at, piece),
                    1 => text.replace_range(at..end, piece),
                    _ => text.replace_range(at..end, ""),
                }
            }
            let (read, visitor) = agree(text.as_bytes());
            // The third seed repeats `params`, which is left to the visitor.
            if round % seeds.len() != 2 {
                plain += usize::from(read);
                valid += usize::from(visitor);
            }
        }
        assert!(plain * 10 >= valid * 9, "plain {plain} of {valid} valid");
        assert!(valid >= 5_000, "{valid} valid");
        // Through the whole parse: an element the plain path declined leaves its id to the
        // visitor, which takes it once, and a later element with that id is a duplicate.
        let twice = r#"{"custom_id":"a","params":{},"params":{}}"#;
        let (r, reqs) = run(&format!(
            r#"{{"requests":[{twice},{{"custom_id":"b","params":{{}}}}]}}"#
        ));
        assert_eq!((r.unwrap(), reqs.len()), (2, 2));
        let message = invalid(&format!(
            r#"{{"requests":[{twice},{{"custom_id":"a","params":{{}}}}]}}"#
        ));
        assert!(
            message.contains("Duplicate custom_id found: a"),
            "{message}"
        );
    }

    fn run(body: &str) -> (Result<u64, Refusal>, Vec<NewRequest>) {
        let (tx, mut rx) = mpsc::channel(1024);
        let result = parse(body.as_bytes(), tx);
        let mut all = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            all.extend(chunk);
        }
        (result, all)
    }

    fn invalid(body: &str) -> String {
        match run(body).0 {
            Err(Refusal::Invalid(m)) => m,
            other => panic!("expected a validation error for {body}, got {other:?}"),
        }
    }

    #[test]
    fn parses_requests_and_keeps_params_verbatim() {
        let (r, reqs) = run(
            r#"{"requests":[{"custom_id":"a","params":{"model":"m", "max_tokens":1}},{"params":{},"custom_id":"b"}]}"#,
        );
        assert_eq!(r.unwrap(), 2);
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].params, r#"{"model":"m", "max_tokens":1}"#);
        assert_eq!((reqs[1].index, reqs[1].custom_id.as_str()), (1, "b"));
    }

    #[test]
    fn envelope_errors_use_the_real_messages() {
        assert_eq!(
            invalid(r#"{"requests":[]}"#),
            "requests: List should have at least 1 item after validation, not 0"
        );
        assert_eq!(invalid(r#"{}"#), "requests: Field required");
        assert_eq!(
            invalid(r#"{"requests":[],"x":1}"#),
            "x: Extra inputs are not permitted"
        );
        assert_eq!(
            invalid(r#"{"x":1,"requests":[]}"#),
            "x: Extra inputs are not permitted"
        );
        assert_eq!(
            invalid(r#"{"requests":{}}"#),
            "requests: Input should be a valid list"
        );
        assert_eq!(
            invalid(r#"{"requests":[{"params":{}}]}"#),
            "requests.0.custom_id: Field required"
        );
        assert_eq!(
            invalid(r#"{"requests":[{"custom_id":"a"}]}"#),
            "requests.0.params: Field required"
        );
        assert_eq!(
            invalid(r#"{"requests":[{"custom_id":7,"params":{}}]}"#),
            "requests.0.custom_id: Input should be a valid string"
        );
        assert_eq!(
            invalid(&format!(
                r#"{{"requests":[{{"custom_id":"{}","params":{{}}}}]}}"#,
                "a".repeat(65)
            )),
            "requests.0.custom_id: String should have at most 64 characters"
        );
        assert_eq!(
            invalid(r#"{"requests":[{"custom_id":"a b","params":{}}]}"#),
            "requests.0.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'"
        );
        assert_eq!(
            invalid(
                r#"{"requests":[{"custom_id":"dup","params":{}},{"custom_id":"dup","params":{}}]}"#
            ),
            "requests: custom_id's must be unique within a batch. Duplicate custom_id found: dup"
        );
        assert_eq!(
            invalid(r#"{"requests":[{"custom_id":"a","params":[]}]}"#),
            "requests.0.params: Input should be a valid dictionary"
        );
        assert_eq!(
            invalid(r#"{"requests":[{"custom_id":"a","params":{},"extra":1}]}"#),
            "requests.0.extra: Extra inputs are not permitted"
        );
        assert_eq!(invalid(r#"[1]"#), "Input should be a valid dictionary");
    }

    #[test]
    fn over_the_limit_counts_everything() {
        let mut body = String::from(r#"{"requests":["#);
        for i in 0..=MAX_REQUESTS {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(r#"{{"custom_id":"r{i}","params":{{}}}}"#));
        }
        body.push_str("]}");
        assert_eq!(
            invalid(&body),
            "requests: List should have at most 100000 items after validation, not 100001"
        );
    }

    #[test]
    fn syntax_errors_are_not_json() {
        for body in [
            "",
            "{",
            r#"{"requests":[}"#,
            r#"{"requests":[{"custom_id":"a","params":{}}]} x"#,
        ] {
            assert!(matches!(run(body).0, Err(Refusal::NotJson(_))), "{body:?}");
        }
    }
}
