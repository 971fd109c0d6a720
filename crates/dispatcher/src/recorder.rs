//! The recorder: group commit of answers, of retries (attempt counts and back-off), and of
//! requests given back unsent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use batchd_domain::{Outcome, Timestamp};
use batchd_store::{Answer, Retry, Slot};
use tokio::sync::mpsc;

use crate::{Shared, report_ended, timed};

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

/// A group this big is written at once rather than held for `record_linger`: its write's fixed
/// cost is already small beside its rows', and answers held longer only raise the memory peak
/// (at 0 ms upstream latency a 20 ms linger alone would hold a full `record_group`).
const LINGER_UNTIL: usize = 128;

/// Drains answers into groups of up to `record_group`, gathered for up to `record_linger` while
/// they are fewer than [`LINGER_UNTIL`], and writes each group in one store call.
/// A failed write is retried with backoff until it succeeds: an answer is never dropped, and the
/// bounded channel behind us makes the request tasks wait meanwhile.
pub(crate) async fn record_loop(shared: Arc<Shared>, mut reports: mpsc::Receiver<Report>) {
    let group = shared.config.record_group.max(1);
    let mut received = Vec::with_capacity(group);
    let mut buf: Vec<Answer> = Vec::with_capacity(group);
    let mut retries: Vec<Retry> = Vec::new();
    let mut released: Vec<Slot> = Vec::new();
    loop {
        if reports.recv_many(&mut received, group).await == 0 {
            return;
        }
        let linger = tokio::time::Instant::now() + shared.config.record_linger;
        while received.len() < group.min(LINGER_UNTIL) {
            let room = group - received.len();
            let more = reports.recv_many(&mut received, room);
            match tokio::time::timeout_at(linger, more).await {
                // Closed: what was received is written, and the next receive returns.
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        for report in received.drain(..) {
            match report {
                Report::Answer(answer) => buf.push(answer),
                Report::Retry(retry) => retries.push(retry),
                Report::Release(slot) => released.push(slot),
            }
        }
        if !released.is_empty() {
            until_stored("release", released.len(), || {
                shared.store.release(&released)
            })
            .await;
            released.clear();
            // A canceling batch may have nothing claimed any more.
            shared.maintenance.notify_one();
        }
        // Retries first: their claims go back only once their attempt counts are stored.
        if !retries.is_empty() {
            until_stored("defer", retries.len(), || {
                shared.store.defer(&retries, Timestamp::now())
            })
            .await;
            retries.clear();
        }
        if buf.is_empty() {
            continue;
        }
        let ended = until_stored("record", buf.len(), || {
            shared.store.record(&buf, Timestamp::now())
        })
        .await;
        metrics::histogram!("batchd_record_group_size").record(buf.len() as f64);
        // One registry lookup per outcome, not per answer: this runs at full rate.
        let succeeded = buf
            .iter()
            .filter(|a| a.outcome == Outcome::Succeeded)
            .count();
        for (outcome, n) in [
            (Outcome::Succeeded, succeeded),
            (Outcome::Errored, buf.len() - succeeded),
        ] {
            if n > 0 {
                metrics::counter!("batchd_requests_finished_total", "outcome" => outcome.as_str())
                    .increment(n as u64);
            }
        }
        report_ended(&shared, ended);
        buf.clear();
    }
}

/// Runs a store write of `rows` rows until it succeeds, with back-off, logging each failure.
async fn until_stored<T, F>(op: &'static str, rows: usize, mut write: impl FnMut() -> F) -> T
where
    F: Future<Output = batchd_store::Result<T>>,
{
    let mut backoff = Duration::from_millis(50);
    loop {
        match timed(op, write()).await {
            Ok(done) => return done,
            Err(err) => {
                tracing::warn!(error = %err, op, rows, "storage write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
