//! The claimer and the per-request tasks.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use batchd_backends::limits::{Admission, Concurrency};
use batchd_backends::{BackendRequest, Route, estimate_input_tokens};
use batchd_domain::params;
use batchd_domain::{ErrorType, Outcome, Timestamp};
use batchd_store::{Answer, Retry, Slot, WorkItem};
use batchd_wire::ErrorEnvelope;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::task::TaskTracker;

use std::sync::atomic::Ordering;

use crate::{Shared, lock, retry, timed};

/// How much claimed work to keep ready, in time: the claimer prefetches what the request tasks
/// are expected to take in this long, so a claim's round trip overlaps with spawning instead of
/// stalling it, while a new batch or a cancel never waits behind more than this much work.
const PREFETCH: Duration = Duration::from_millis(20);
/// Longest wait for a rate-limit turn while holding a dispatch slot; a later turn is waited for
/// in the store.
const RATE_WAIT_HERE: Duration = Duration::from_secs(1);
/// The consumption rate is re-estimated over windows of this length.
const RATE_WINDOW: Duration = Duration::from_millis(50);

type ClaimFuture =
    Pin<Box<dyn Future<Output = (usize, batchd_store::Result<Vec<WorkItem>>)> + Send>>;

/// Claims work in groups and spawns one task per claimed request as permits free up.
///
/// Claims run concurrently with spawning: the next group is fetched while the last one is
/// handed out. How much is kept ready is the larger of the free permits (a start, a burst) and
/// what [`PREFETCH`] worth of the measured rate would consume, capped by `claim_group`.
pub(crate) async fn claim_loop(
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    reports: mpsc::Sender<Report>,
    in_flight: TaskTracker,
) {
    let mut ready: VecDeque<WorkItem> = VecDeque::new();
    let mut claiming: Option<ClaimFuture> = None;
    // The store may have more to hand out right now.
    let mut more = true;
    // New work was announced while a claim was out: that claim may have read the store before
    // the work was committed, so its short answer must not put the loop to sleep.
    let mut announced_during_claim = false;
    let mut backoff = Duration::from_millis(50);
    let mut rate = Rate::new();
    loop {
        let target = (permits.available_permits() + rate.expected(PREFETCH))
            .clamp(1, shared.config.claim_group.max(1));
        // Refill at half the target, so each claim brings a real group rather than the one or
        // two requests taken while the last claim was out.
        if claiming.is_none() && more && ready.len() <= target / 2 {
            let want = target - ready.len();
            let store = shared.store.clone();
            let lease = shared.config.lease;
            let skip = saturated_batches(&shared);
            claiming = Some(Box::pin(async move {
                let items = timed("claim", store.claim(want, lease, Timestamp::now(), &skip)).await;
                (want, items)
            }));
        }
        let idle = !more && ready.is_empty() && claiming.is_none();
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            permit = permits.clone().acquire_owned(), if !ready.is_empty() => {
                let Ok(permit) = permit else { break };
                let Some(item) = ready.pop_front() else { continue };
                if skipped(&shared, item.batch_key) {
                    // Claimed before its backend's queue filled: straight back, without a task.
                    drop(permit);
                    give_back(&reports, [item]).await;
                    continue;
                }
                rate.consumed(1);
                let abandon = shared.abandon.clone();
                let run = run_item(shared.clone(), item, permit, reports.clone());
                in_flight.spawn(async move {
                    tokio::select! {
                        () = run => {}
                        () = abandon.cancelled() => {}
                    }
                });
            }
            (want, items) = async { claiming.as_mut().expect("guarded").await }, if claiming.is_some() => {
                claiming = None;
                let announced = std::mem::take(&mut announced_during_claim);
                match items {
                    Ok(items) => {
                        backoff = Duration::from_millis(50);
                        more = items.len() >= want || announced;
                        ready.extend(items);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "claiming work failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = shared.stop.cancelled() => break,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            () = shared.canceled_ready.notified() => {
                // Requests of a just-canceled batch must not wait for a permit to be dropped.
                let canceled = lock(&shared.canceled).clone();
                let (drop, keep): (Vec<_>, Vec<_>) =
                    ready.drain(..).partition(|item| canceled.contains(&item.batch_key));
                ready = keep.into();
                give_back(&reports, drop).await;
            }
            () = shared.work.notified() => {
                more = true;
                announced_during_claim = claiming.is_some();
            }
            () = tokio::time::sleep(shared.config.idle_poll), if idle => more = true,
        }
    }
    // Stopping: what was claimed but never started goes back.
    if let Some(claim) = claiming.take()
        && let (_, Ok(items)) = claim.await
    {
        ready.extend(items);
    }
    give_back(&reports, ready).await;
}

/// The batches claims leave out: those that met a full queue at a backend whose queue has no
/// room yet. The others are forgotten here, so their next claim serves them again.
fn saturated_batches(shared: &Shared) -> Vec<i64> {
    let mut saturated = lock(&shared.saturated);
    saturated.retain(|_, &mut route| !has_room(shared, route));
    saturated.keys().copied().collect()
}

/// Whether requests of this batch are to go back to the store rather than to a task.
fn skipped(shared: &Shared, batch_key: i64) -> bool {
    lock(&shared.saturated)
        .get(&batch_key)
        .is_some_and(|&route| !has_room(shared, route))
}

/// Whether route `index` can take a real group of new requests (see `Concurrency::has_room`).
fn has_room(shared: &Shared, index: usize) -> bool {
    shared.router.routes()[index]
        .concurrency
        .as_ref()
        .is_none_or(|limit| limit.has_room())
}

/// Publishes a backend's adaptive concurrency limit.
fn concurrency_gauge(backend: &str, limit: &Concurrency) {
    metrics::gauge!("batchd_backend_concurrency_limit", "backend" => backend.to_owned())
        .set(limit.limit() as f64);
}

/// Turns a request away from a backend whose queue is full: it goes back to the store unsent,
/// and its batch is not claimed again until the queue has room, which leaves the dispatch slots
/// to other backends' requests.
fn turn_away(shared: &Shared, item: &WorkItem, route: usize) -> Option<Report> {
    lock(&shared.saturated).insert(item.batch_key, route);
    // The queue may have made room between the refusal and the insert, with nobody left to say.
    if has_room(shared, route) {
        shared.work.notify_one();
    }
    None
}

/// Hands claimed, unsent requests to the recorder, which gives them back to the store in groups.
async fn give_back(reports: &mpsc::Sender<Report>, items: impl IntoIterator<Item = WorkItem>) {
    for item in items {
        // The recorder outlives every sender.
        let _ = reports.send(Report::Release(item.slot())).await;
    }
}

/// Requests handed to tasks per second, re-estimated every [`RATE_WINDOW`].
struct Rate {
    per_second: f64,
    window_start: Instant,
    in_window: u64,
}

impl Rate {
    fn new() -> Self {
        Self {
            per_second: 0.0,
            window_start: Instant::now(),
            in_window: 0,
        }
    }

    fn consumed(&mut self, n: u64) {
        self.in_window += n;
        let elapsed = self.window_start.elapsed();
        if elapsed >= RATE_WINDOW {
            let now = self.in_window as f64 / elapsed.as_secs_f64();
            // Half the weight on the newest window: follows a change within a few windows.
            self.per_second = 0.5 * self.per_second + 0.5 * now;
            self.window_start = Instant::now();
            self.in_window = 0;
        }
    }

    /// Requests expected to be taken within `horizon`.
    fn expected(&self, horizon: Duration) -> usize {
        (self.per_second * horizon.as_secs_f64()).ceil() as usize
    }
}

/// What a request task hands to the recorder.
#[derive(Debug)]
pub(crate) enum Report {
    Answer(Answer),
    /// Try again later (stored, so a restart keeps the attempt count and the back-off).
    Retry(Retry),
    /// Never sent: back to the store, to be claimed again or to end with its batch as canceled
    /// or expired. Grouped like the rest, which matters when a full backend queue turns many
    /// away at once.
    Release(Slot),
}

/// Runs one request to its answer (or its next attempt), or gives it back unsent.
async fn run_item(
    shared: Arc<Shared>,
    item: WorkItem,
    _permit: OwnedSemaphorePermit,
    reports: mpsc::Sender<Report>,
) {
    let report = attempt(&shared, &item)
        .await
        .unwrap_or(Report::Release(item.slot()));
    // The recorder only goes away at shutdown after every sender is dropped, so this cannot fail
    // while we hold a sender.
    let _ = reports.send(report).await;
}

/// Whether the request must not be sent (now): its batch was canceled or has expired.
fn stopped(shared: &Shared, item: &WorkItem) -> bool {
    lock(&shared.canceled).contains(&item.batch_key) || Timestamp::now() >= item.expires_at
}

/// One upstream attempt. `None` when the request was not sent and goes back to the store.
async fn attempt(shared: &Shared, item: &WorkItem) -> Option<Report> {
    if stopped(shared, item) {
        return None;
    }
    let answer = |outcome, body| Some(Report::Answer(item.answer(outcome, body)));
    if let Some(at) = item.not_before.filter(|&at| at > Timestamp::now()) {
        // Claimed again by a restarted process while its back-off is still running.
        return Some(Report::Retry(Retry {
            slot: item.slot(),
            attempts: item.attempts,
            not_before: at,
        }));
    }
    let params = match params::validate(&item.params) {
        Ok(params) => params,
        Err(err) => return answer(Outcome::Errored, errored_body(err.kind, &err.message)),
    };
    let Some(index) = shared.router.position(&params.model) else {
        // What the real API answers for a model it does not serve.
        let message = format!("model: {}", params.model);
        return answer(
            Outcome::Errored,
            errored_body(ErrorType::NotFound, &message),
        );
    };
    let route = &shared.router.routes()[index];
    let handles = &shared.route_metrics[index];
    let backend = route.backend.name();
    // The same attempt count and a later time: waiting for a paused backend spends nothing.
    let wait = |wait: Duration| {
        Some(Report::Retry(Retry {
            slot: item.slot(),
            attempts: item.attempts,
            not_before: Timestamp::now().plus(wait),
        }))
    };
    if let Some(paused) = route.breaker.wait() {
        return wait(paused);
    }

    // Admission: the backend's rate limits, then a slot at the upstream. A turn far off, or a
    // full queue at the upstream, is waited for in the store, not here: a request waiting here
    // holds a dispatch slot that another backend's requests could use. The queue is looked at
    // first so that a request turned away has not taken a rate-limit turn.
    if route.concurrency.as_ref().is_some_and(|c| c.queue_full()) {
        return turn_away(shared, item, index);
    }
    if !route.rate.is_unlimited() {
        match route.rate.admit(estimate_input_tokens(&params), RATE_WAIT_HERE).await {
            Ok(waited) => metrics::histogram!("batchd_rate_limit_wait_seconds", "backend" => backend.to_owned())
                .record(waited.as_secs_f64()),
            Err(turn) => return wait(turn),
        }
    }
    let _slot = match &route.concurrency {
        Some(limit) => match limit.acquire().await {
            Some(slot) => {
                // The queue just shortened: batches skipped for it may be claimed again.
                if limit.has_room() && !lock(&shared.saturated).is_empty() {
                    shared.work.notify_one();
                }
                Some(slot)
            }
            None => return turn_away(shared, item, index),
        },
        None => None,
    };
    if stopped(shared, item) {
        return None;
    }
    // Taken last: a probe, once granted, is sent (nothing above may drop it on the floor, which
    // would leave the breaker waiting for an answer that never comes).
    let admission = route.breaker.admit();
    if let Admission::Open(paused) = admission {
        return wait(paused);
    }

    let attempts = item.attempts.saturating_add(1);
    let request = BackendRequest {
        params: &params,
        raw_params: &item.params,
        betas: &item.betas,
        batch_id: item.batch_id.as_str(),
        custom_id: &item.custom_id,
    };
    let started = Instant::now();
    let sent = {
        let _in_flight = InFlight::enter(shared);
        route.backend.send(request).await
    };
    let result = match &sent {
        Ok(_) => "ok",
        Err(err) => err.kind.as_str(),
    };
    let attempt_label = if attempts == 1 { "first" } else { "retry" };
    handles.duration.record(started.elapsed().as_secs_f64());
    match (&sent, attempts) {
        (Ok(_), 1) => handles.ok_first.increment(1),
        _ => metrics::counter!("batchd_upstream_requests_total", "backend" => backend.to_owned(), "result" => result, "attempt" => attempt_label)
            .increment(1),
    }
    let err = match sent {
        Ok(message) => {
            if let Some(limit) = &route.concurrency
                && limit.succeeded()
            {
                concurrency_gauge(backend, limit);
            }
            if admission == Admission::Probe || route.breaker.is_open() {
                close_breaker(route, backend);
            }
            return answer(Outcome::Succeeded, succeeded_body(&message));
        }
        Err(err) => err,
    };
    if err.unwell {
        let opened = route.breaker.failed(|n| {
            retry::delay(
                n,
                None,
                shared.config.retry_base_delay,
                shared.config.retry_max_delay,
                1.0,
            )
        });
        if opened {
            tracing::warn!(backend, error = %err, "backend keeps failing; pausing it, one probe at a time until it answers");
            metrics::gauge!("batchd_backend_paused", "backend" => backend.to_owned()).set(1.0);
        }
        if admission == Admission::Probe {
            // A failed probe re-opened the breaker: wait for it like everyone else.
            return wait(match route.breaker.admit() {
                Admission::Open(until) => until,
                _ => Duration::ZERO,
            });
        }
    } else if admission == Admission::Probe || route.breaker.is_open() {
        // It answered, if only to refuse this request: it is up.
        close_breaker(route, backend);
    }
    if let Some(limit) = &route.concurrency {
        if err.throttled {
            limit.throttled();
        }
        concurrency_gauge(backend, limit);
    }
    if err.retryable && attempts < route.max_attempts {
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
            metrics::counter!("batchd_upstream_retries_total", "backend" => backend.to_owned(), "reason" => err.kind.as_str())
                .increment(1);
            tracing::debug!(batch = %item.batch_id, custom_id = %item.custom_id, attempts, ?wait, error = %err, "upstream attempt failed; will retry");
            return Some(Report::Retry(Retry {
                slot: item.slot(),
                attempts,
                not_before: at,
            }));
        }
    }
    let message = if err.retryable && attempts > 1 {
        format!("{} (gave up after {attempts} attempts)", err.message)
    } else {
        err.message
    };
    answer(Outcome::Errored, errored_body(err.kind, &message))
}

fn close_breaker(route: &Route, backend: &str) {
    if route.breaker.is_open() {
        tracing::info!(backend, "backend answers again; resuming");
    }
    route.breaker.succeeded();
    metrics::gauge!("batchd_backend_paused", "backend" => backend.to_owned()).set(0.0);
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
