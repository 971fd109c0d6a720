//! The claimer and the per-request tasks.

use std::sync::Arc;
use std::time::Duration;

use batchd_backends::BackendRequest;
use batchd_domain::params;
use batchd_domain::{ErrorType, Outcome, Timestamp};
use batchd_store::{Answer, WorkItem};
use batchd_wire::ErrorEnvelope;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::task::TaskTracker;

use std::sync::atomic::Ordering;

use crate::{Shared, lock, timed};

/// Claims work whenever a permit is free and spawns one task per claimed request.
pub(crate) async fn claim_loop(
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    answers: mpsc::Sender<Answer>,
    in_flight: TaskTracker,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let first = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            () = shared.stop.cancelled() => return,
        };
        // Claim as many as there are free permits, so claimed requests never wait in memory for
        // a slot (a cancel then finds little to drop) and the store sees one call per group.
        let want = (permits.available_permits() + 1).min(shared.config.claim_group);
        let items = match timed(
            "claim",
            shared
                .store
                .claim(want, shared.config.lease, Timestamp::now()),
        )
        .await
        {
            Ok(items) => {
                backoff = Duration::from_millis(50);
                items
            }
            Err(err) => {
                tracing::warn!(error = %err, "claiming work failed; retrying");
                drop(first);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shared.stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if items.is_empty() {
            drop(first);
            tokio::select! {
                () = shared.work.notified() => {}
                () = tokio::time::sleep(shared.config.idle_poll) => {}
                () = shared.stop.cancelled() => return,
            }
            continue;
        }
        let mut first = Some(first);
        for item in items {
            let permit = match first.take() {
                Some(p) => p,
                // Only this loop takes permits, and it claimed no more than were free.
                None => match permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let abandon = shared.abandon.clone();
            let run = run_item(shared.clone(), item, permit, answers.clone());
            in_flight.spawn(async move {
                tokio::select! {
                    () = run => {}
                    () = abandon.cancelled() => {}
                }
            });
        }
    }
}

/// Runs one request to its answer, or gives it back unsent.
async fn run_item(
    shared: Arc<Shared>,
    item: WorkItem,
    _permit: OwnedSemaphorePermit,
    answers: mpsc::Sender<Answer>,
) {
    let canceled = lock(&shared.canceled).contains(&item.batch_key);
    if canceled || Timestamp::now() >= item.expires_at {
        // Never sent: it ends as canceled or expired with its batch.
        if let Err(err) = shared.store.release(&[item.slot()]).await {
            tracing::warn!(error = %err, "releasing an unsent request failed");
        }
        shared.maintenance.notify_one();
        return;
    }
    let (outcome, body) = match params::validate(&item.params) {
        Err(err) => (Outcome::Errored, errored_body(err.kind, &err.message)),
        Ok(params) => {
            let request = BackendRequest {
                params: &params,
                raw_params: &item.params,
                betas: &item.betas,
                batch_id: item.batch_id.as_str(),
                custom_id: &item.custom_id,
            };
            let _in_flight = InFlight::enter(&shared);
            let started = std::time::Instant::now();
            let answer = shared.backend.send(request).await;
            let backend = shared.backend.name().to_owned();
            metrics::histogram!("batchd_upstream_request_duration_seconds", "backend" => backend.clone())
                .record(started.elapsed().as_secs_f64());
            let result = match &answer {
                Ok(_) => "ok",
                Err(err) => err.kind.as_str(),
            };
            metrics::counter!("batchd_upstream_requests_total", "backend" => backend, "result" => result).increment(1);
            match answer {
                Ok(message) => (Outcome::Succeeded, succeeded_body(&message)),
                Err(err) => (Outcome::Errored, errored_body(err.kind, &err.message)),
            }
        }
    };
    // The recorder only goes away at shutdown after every sender is dropped, so this cannot fail
    // while we hold a sender.
    let _ = answers
        .send(Answer {
            slot: item.slot(),
            outcome,
            body,
        })
        .await;
}

/// Counts a request as in flight for as long as it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("batchd_requests_in_flight").set(now as f64);
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
        metrics::gauge!("batchd_requests_in_flight").set(now as f64);
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
