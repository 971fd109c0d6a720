//! One claimed request's life: an upstream attempt in named phases, each of which may end it
//! with the report the recorder gets.
//!
//! * [`route`]: is it still wanted, is it due, is it valid (its `max_tokens` within its model's
//!   cap included), which backend serves its model (and, for an OpenAI batch, its endpoint);
//! * [`admit`]: that backend's breaker, queue, rate limit and concurrency slot;
//! * [`send`]: the call itself, counted as in flight, timed and labelled;
//! * [`settle`]: what the outcome teaches the backend's guards, then the answer or the next
//!   attempt.
//!
//! Both surfaces take the same phases, limits and retries. An OpenAI batch's request (its
//! `params` are the input line's `body`) is routed by `body.model` alone, sent byte for byte
//! through [`Backend::send_openai`](batchd_backends::Backend::send_openai), and its result is
//! the whole output or error line (`openai_line`), so the files are the stored rows in order.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use batchd_backends::limits::{Admission, Concurrency, Permit};
use batchd_backends::{
    BackendError, BackendRequest, GuardedBackend, OpenAiAnswer, OpenAiRequest, cannot_serve,
    derived_request_id, estimate_input_tokens, mock,
};
use batchd_domain::openai::Endpoint;
use batchd_domain::params::{self, Params};
use batchd_domain::script::{self, Answer, Scripted};
use batchd_domain::{ErrorType, Outcome, Timestamp, models, raw_json};
use batchd_store::{Retry, WorkItem, ending};
use batchd_wire::ErrorEnvelope;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::openai_line::{self, LineOf, code};
use crate::recorder::Report;
use crate::{BackendMetrics, Shared, lock, retry, saturation};

/// Longest wait for a rate-limit turn while holding a dispatch slot; a later turn is waited for
/// in the store.
const RATE_WAIT_HERE: Duration = Duration::from_secs(1);

/// Runs one request to its answer (or its next attempt), or gives it back unsent.
pub(crate) async fn run(
    shared: Arc<Shared>,
    item: WorkItem,
    _permit: OwnedSemaphorePermit,
    reports: mpsc::Sender<Report>,
) {
    let report = match attempt(&shared, &item).await {
        Ok(report) | Err(report) => report,
    };
    // The recorder only goes away at shutdown after every sender is dropped, so this cannot fail
    // while we hold a sender.
    let _ = reports.send(report).await;
}

/// One upstream attempt. `Err` is the report of an attempt that ended before sending.
async fn attempt(shared: &Shared, item: &WorkItem) -> Result<Report, Report> {
    let routed = route(shared, item)?;
    if let Some(report) = scripted(shared, item, &routed).await {
        return Ok(report);
    }
    let admitted = admit(shared, item, &routed).await?;
    let sent = send(shared, item, &routed).await;
    Ok(settle(shared, item, &routed, admitted, sent))
}

/// What goes to the backend, by surface.
enum Prepared {
    /// Validated Messages params.
    Messages(Params),
    /// An OpenAI line's body (sent as stored), with its model read out of it.
    OpenAi { model: String },
}

/// A valid request and the backend that serves its model.
struct Routed<'s> {
    prepared: Prepared,
    /// Position of `backend` in the backend table, which is also that of `metrics`.
    index: usize,
    backend: &'s GuardedBackend,
    metrics: &'s BackendMetrics,
}

impl Routed<'_> {
    fn name(&self) -> &str {
        self.backend.backend.name()
    }

    /// Estimated input tokens, for the backend's `input_tokens_per_minute`; only counted for a
    /// backend that has that limit.
    fn tokens(&self, item: &WorkItem) -> u64 {
        match self.prepared {
            Prepared::Messages(_) => estimate_input_tokens(&item.params),
            // The usual quarter of the characters, here of the whole body.
            Prepared::OpenAi { .. } => (item.params.len() as u64).div_ceil(4).max(1),
        }
    }
}

/// Phase 1: whether the request is to be sent at all, and where.
fn route<'s>(shared: &'s Shared, item: &WorkItem) -> Result<Routed<'s>, Report> {
    if stopped(shared, item) {
        return Err(Report::Release(item.slot()));
    }
    if let Some(at) = item.not_before.filter(|&at| at > Timestamp::now()) {
        // Claimed again by a restarted process while its back-off is still running.
        return Err(retry_at(item, item.attempts, at));
    }
    if item.endpoint != Endpoint::Messages {
        return route_openai(shared, item);
    }
    let terms = params::Terms {
        version: item.api_version,
        betas: &item.betas,
        user_profile_id: item.user_profile_id.as_deref(),
    };
    let params = params::validate(&item.params, &terms)
        .and_then(|p| {
            // Per model, and only for models the API lists: a self-hosted model is the
            // upstream's to limit.
            models::check_max_tokens(&p.model, p.max_tokens, &item.betas)?;
            Ok(p)
        })
        .map_err(|err| errored(item, err.kind, &err.message))?;
    let Some(index) = shared.backends.index_for(&params.model) else {
        // What the real API answers for a model it does not serve.
        let message = format!("model: {}", params.model);
        return Err(errored(item, ErrorType::NotFound, &message));
    };
    Ok(Routed {
        prepared: Prepared::Messages(params),
        index,
        backend: &shared.backends.backends()[index],
        metrics: &shared.backend_metrics[index],
    })
}

/// Phase 1 of an OpenAI batch's request: only `body.model` is read (the body was checked when
/// the batch was created, and the upstream judges the rest, as the hosted API does).
fn route_openai<'s>(shared: &'s Shared, item: &WorkItem) -> Result<Routed<'s>, Report> {
    // Read as the create read it (`raw_json::fields`), so a body it took has a model here.
    let model = raw_json::fields(&item.params, ["model"])
        .and_then(|[model]| serde_json::from_str::<String>(model?).ok());
    let model = match model {
        Some(model) => model,
        None => {
            return Err(line_error(
                item,
                code::INVALID_REQUEST,
                "The request body has no 'model'.",
            ));
        }
    };
    let Some(index) = shared.backends.index_for(&model) else {
        let message = openai_line::model_not_found_message(&model);
        return Err(line_error(item, code::MODEL_NOT_FOUND, &message));
    };
    let backend = &shared.backends.backends()[index];
    if !backend.backend.serves_endpoint(item.endpoint) {
        let message = cannot_serve(backend.backend.name(), item.endpoint);
        return Err(line_error(item, code::ENDPOINT_NOT_SUPPORTED, &message));
    }
    Ok(Routed {
        prepared: Prepared::OpenAi { model },
        index,
        backend,
        metrics: &shared.backend_metrics[index],
    })
}

/// Test mode: what the request's workspace scripted for it, when a mock serves it (scripts
/// apply to the Messages surface only). A scripted answer skips the mock, its latency and its
/// admission limits, and waits its own `delay_ms` instead, holding its dispatch slot as the
/// mock's latency would.
async fn scripted(shared: &Shared, item: &WorkItem, routed: &Routed<'_>) -> Option<Report> {
    let scripts = shared.config.scripts.as_ref()?;
    let Prepared::Messages(params) = &routed.prepared else {
        return None;
    };
    if !routed.backend.backend.is_mock() {
        return None;
    }
    let request = script::Request {
        custom_id: &item.custom_id,
        model: &params.model,
        params: &item.params,
    };
    let (answer, delay) = match scripts.lookup(&item.workspace, &request)? {
        Scripted::Replay { outcome, result } if ending::is_stored(outcome) => {
            return Some(answer(item, outcome, result.to_string()));
        }
        // A replayed `canceled` or `expired` row is what a request without a result shows when
        // its batch ends: it is left unanswered, like `unanswered`.
        Scripted::Replay { .. } => (Answer::Unanswered, Duration::ZERO),
        Scripted::Answer { answer, delay } => (answer, delay),
    };
    if !delay.is_zero() {
        // Like every request task, dropped unanswered if shutdown's grace ends meanwhile.
        tokio::time::sleep(delay).await;
    }
    Some(match answer {
        Answer::Text(text) => {
            match mock::scripted_message(
                params,
                &item.params,
                item.batch_id.as_str(),
                &item.custom_id,
                &text,
            ) {
                Ok(message) => self::answer(item, Outcome::Succeeded, succeeded_body(&message)),
                Err(err) => errored(item, ErrorType::Api, &format!("scripted answer: {err}")),
            }
        }
        Answer::Message(message) => {
            self::answer(item, Outcome::Succeeded, succeeded_body(&message))
        }
        Answer::Errored { kind, message } => errored(item, kind, &message),
        // Back to the store until the batch's end, spending no attempt: it ends `expired` at
        // expiry or `canceled` on cancel, and is never sent meanwhile.
        Answer::Unanswered => retry_at(item, item.attempts, item.expires_at),
    })
}

/// Leave to send now.
struct Admitted<'s> {
    /// `Probe` when this attempt tests whether a paused backend is back.
    admission: Admission,
    /// The backend's concurrency slot, held until the attempt is settled.
    _slot: Option<Permit<'s>>,
}

/// Phase 2: the backend's admission limits. A turn far off, or a full queue at the upstream, is
/// waited for in the store, not here: a request waiting here holds a dispatch slot that another
/// backend's requests could use.
async fn admit<'s>(
    shared: &Shared,
    item: &WorkItem,
    routed: &Routed<'s>,
) -> Result<Admitted<'s>, Report> {
    let backend = routed.backend;
    if let Some(paused) = backend.breaker.wait() {
        return Err(later(item, paused));
    }
    // The queue is looked at first so that a request turned away has not taken a rate-limit
    // turn.
    if backend.concurrency.as_ref().is_some_and(|c| c.queue_full()) {
        return Err(saturation::turn_away(shared, item, routed.index));
    }
    if !backend.rate.is_unlimited() {
        match backend
            .rate
            .admit(routed.tokens(item), RATE_WAIT_HERE)
            .await
        {
            Ok(waited) => metrics::histogram!("batchd_rate_limit_wait_seconds", "backend" => routed.name().to_owned())
                .record(waited.as_secs_f64()),
            Err(turn) => return Err(later(item, turn)),
        }
    }
    let slot = match &backend.concurrency {
        Some(limit) => match limit.acquire().await {
            Some(slot) => {
                saturation::queue_shortened(shared, limit);
                Some(slot)
            }
            None => return Err(saturation::turn_away(shared, item, routed.index)),
        },
        None => None,
    };
    if stopped(shared, item) {
        return Err(Report::Release(item.slot()));
    }
    // Taken last: a probe, once granted, is sent (nothing above may drop it on the floor, which
    // would leave the breaker waiting for an answer that never comes).
    let admission = backend.breaker.admit();
    if let Admission::Open(paused) = admission {
        return Err(later(item, paused));
    }
    Ok(Admitted {
        admission,
        _slot: slot,
    })
}

/// What the backend gave back, and how many attempts the request has now had.
struct Sent {
    attempts: u32,
    result: Result<Answered, BackendError>,
}

/// A backend's answer, by surface.
enum Answered {
    /// The serialized Message.
    Message(String),
    OpenAi(OpenAiAnswer),
}

/// Phase 3: the call.
async fn send(shared: &Shared, item: &WorkItem, routed: &Routed<'_>) -> Sent {
    let attempts = item.attempts.saturating_add(1);
    let backend = &routed.backend.backend;
    let started = Instant::now();
    let result = {
        let _in_flight = InFlight::enter(shared);
        match &routed.prepared {
            Prepared::Messages(params) => backend
                .send(BackendRequest {
                    params,
                    raw_params: &item.params,
                    betas: &item.betas,
                    version: item.api_version,
                    batch_id: item.batch_id.as_str(),
                    custom_id: &item.custom_id,
                })
                .await
                .map(Answered::Message),
            Prepared::OpenAi { model } => backend
                .send_openai(OpenAiRequest {
                    endpoint: item.endpoint,
                    body: &item.params,
                    model,
                    batch_id: item.batch_id.as_str(),
                    custom_id: &item.custom_id,
                })
                .await
                .map(Answered::OpenAi),
        }
    };
    routed
        .metrics
        .duration
        .record(started.elapsed().as_secs_f64());
    match (&result, attempts) {
        (Ok(_), 1) => routed.metrics.ok_first.increment(1),
        _ => {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(err) => err.kind.as_str(),
            };
            let attempt = if attempts == 1 { "first" } else { "retry" };
            metrics::counter!("batchd_upstream_requests_total", "backend" => routed.name().to_owned(), "result" => outcome, "attempt" => attempt)
                .increment(1)
        }
    }
    Sent { attempts, result }
}

/// Phase 4: the answer, or the next attempt. The concurrency slot is given back only after the
/// backend's guards have learned the outcome.
fn settle(
    shared: &Shared,
    item: &WorkItem,
    routed: &Routed<'_>,
    admitted: Admitted<'_>,
    sent: Sent,
) -> Report {
    let probe = admitted.admission == Admission::Probe;
    match sent.result {
        Ok(answered) => {
            learn_from_success(routed, probe);
            let body = match answered {
                Answered::Message(message) => succeeded_body(&message),
                Answered::OpenAi(answer) => line_of(item).success(&answer),
            };
            answer(item, Outcome::Succeeded, body)
        }
        Err(err) => match learn_from_failure(shared, item, routed, probe, &err) {
            Ok(()) => retry_or_give_up(shared, item, routed, sent.attempts, err),
            Err(report) => report,
        },
    }
}

/// The upstream answered: its concurrency limit may grow, and a paused backend resumes.
fn learn_from_success(routed: &Routed<'_>, probe: bool) {
    let backend = routed.backend;
    if let Some(limit) = &backend.concurrency
        && limit.succeeded()
    {
        concurrency_gauge(routed.name(), limit);
    }
    if probe || backend.breaker.is_open() {
        close_breaker(backend, routed.name());
    }
}

/// What a failure teaches the backend's guards. `Err` when it was the probe of a paused backend
/// and the backend is still unwell: the request then waits for the breaker like every other.
fn learn_from_failure(
    shared: &Shared,
    item: &WorkItem,
    routed: &Routed<'_>,
    probe: bool,
    err: &BackendError,
) -> Result<(), Report> {
    let backend = routed.backend;
    let name = routed.name();
    if err.unwell {
        let opened = backend.breaker.failed(|n| {
            retry::delay(
                n,
                None,
                shared.config.retry_base_delay,
                shared.config.retry_max_delay,
                1.0,
            )
        });
        if opened {
            tracing::warn!(backend = name, error = %err, "backend keeps failing; pausing it, one probe at a time until it answers");
            metrics::gauge!("batchd_backend_paused", "backend" => name.to_owned()).set(1.0);
        }
        if probe {
            // A failed probe re-opened the breaker: wait for it like everyone else.
            return Err(later(
                item,
                match backend.breaker.admit() {
                    Admission::Open(until) => until,
                    _ => Duration::ZERO,
                },
            ));
        }
    } else if probe || backend.breaker.is_open() {
        // It answered, if only to refuse this request: it is up.
        close_breaker(backend, name);
    }
    if let Some(limit) = &backend.concurrency {
        if err.throttled {
            limit.throttled();
        }
        concurrency_gauge(name, limit);
    }
    Ok(())
}

/// Another attempt when the failure may clear, the backend's attempt budget allows one and the
/// batch still runs by then; otherwise the errored result.
fn retry_or_give_up(
    shared: &Shared,
    item: &WorkItem,
    routed: &Routed<'_>,
    attempts: u32,
    err: BackendError,
) -> Report {
    if err.retryable && attempts < routed.backend.max_attempts {
        let wait = retry::delay(
            attempts,
            err.retry_after,
            shared.config.retry_base_delay,
            shared.config.retry_max_delay,
            rand::random(),
        );
        let at = Timestamp::now().plus(wait);
        // No attempt past the batch's end: it would be thrown away.
        if at < item.expires_at {
            metrics::counter!("batchd_upstream_retries_total", "backend" => routed.name().to_owned(), "reason" => err.kind.as_str())
                .increment(1);
            tracing::debug!(batch = %item.batch_id, custom_id = %item.custom_id, attempts, ?wait, error = %err, "upstream attempt failed; will retry");
            return retry_at(item, attempts, at);
        }
    }
    let message = if err.retryable && attempts > 1 {
        format!("{} (gave up after {attempts} attempts)", err.message)
    } else {
        err.message
    };
    if item.endpoint == Endpoint::Messages {
        return errored(item, err.kind, &message);
    }
    // An OpenAI error line: the upstream's own answer when it gave one, else why there was none.
    let line = line_of(item);
    let body = match &err.upstream {
        Some((status, body)) => {
            let request_id = derived_request_id(item.batch_id.as_str(), &item.custom_id);
            line.upstream_error(*status, &request_id, body, &message)
        }
        None if err.kind == ErrorType::Timeout => {
            line.error(code::REQUEST_TIMEOUT, openai_line::TIMEOUT_MESSAGE)
        }
        None => line.error(code::SERVER_ERROR, &message),
    };
    answer(item, Outcome::Errored, body)
}

/// Whether the request must not be sent (now): its batch was canceled or has expired.
fn stopped(shared: &Shared, item: &WorkItem) -> bool {
    lock(&shared.canceling).contains(&item.batch_key) || Timestamp::now() >= item.expires_at
}

/// The same attempt count and a later time: waiting for a paused or busy backend spends nothing
/// of the attempt budget.
fn later(item: &WorkItem, wait: Duration) -> Report {
    retry_at(item, item.attempts, Timestamp::now().plus(wait))
}

fn retry_at(item: &WorkItem, attempts: u32, not_before: Timestamp) -> Report {
    Report::Retry(Retry {
        slot: item.slot(),
        attempts,
        not_before,
    })
}

fn answer(item: &WorkItem, outcome: Outcome, body: String) -> Report {
    Report::Answer(item.answer(outcome, body))
}

fn errored(item: &WorkItem, kind: ErrorType, message: &str) -> Report {
    answer(item, Outcome::Errored, errored_body(kind, message))
}

/// Where an OpenAI request's line belongs.
fn line_of(item: &WorkItem) -> LineOf<'_> {
    LineOf {
        batch_id: item.batch_id.as_str(),
        index: item.index,
        custom_id: &item.custom_id,
    }
}

/// An OpenAI request's error line without a `response`: it never reached an upstream.
fn line_error(item: &WorkItem, code: &str, message: &str) -> Report {
    answer(item, Outcome::Errored, line_of(item).error(code, message))
}

/// Publishes a backend's adaptive concurrency limit.
fn concurrency_gauge(backend: &str, limit: &Concurrency) {
    metrics::gauge!("batchd_backend_concurrency_limit", "backend" => backend.to_owned())
        .set(limit.limit() as f64);
}

fn close_breaker(backend: &GuardedBackend, name: &str) {
    if backend.breaker.is_open() {
        tracing::info!(backend = name, "backend answers again; resuming");
    }
    backend.breaker.succeeded();
    metrics::gauge!("batchd_backend_paused", "backend" => name.to_owned()).set(0.0);
}

/// Counts a request as in flight for as long as it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        shared.in_flight_gauge.set(now as f64);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let now = self
            .0
            .in_flight
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        self.0.in_flight_gauge.set(now as f64);
    }
}

/// `result` object of a succeeded row around an already serialized Message.
pub(crate) fn succeeded_body(message: &str) -> String {
    let mut body = String::with_capacity(message.len() + 36);
    body.push_str(r#"{"type":"succeeded","message":"#);
    body.push_str(message);
    body.push('}');
    body
}

/// `result` object of an errored row. `request_id` is null, as the real API writes for requests
/// refused before reaching a model.
pub(crate) fn errored_body(kind: ErrorType, message: &str) -> String {
    #[derive(serde::Serialize)]
    struct Errored<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        error: &'a ErrorEnvelope,
    }
    let envelope = ErrorEnvelope::new(kind.as_str(), message, None);
    serde_json::to_string(&Errored { kind: "errored", error: &envelope })
        .unwrap_or_else(|_| r#"{"type":"errored","error":{"type":"error","error":{"type":"api_error","message":"Internal server error"},"request_id":null}}"#.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_bodies_have_the_documented_shape() {
        assert_eq!(
            succeeded_body(r#"{"id":"msg_1"}"#),
            r#"{"type":"succeeded","message":{"id":"msg_1"}}"#
        );
        assert_eq!(
            errored_body(ErrorType::NotFound, "model: x"),
            r#"{"type":"errored","error":{"type":"error","error":{"type":"not_found_error","message":"model: x"},"request_id":null}}"#
        );
    }
}
