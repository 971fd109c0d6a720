//! The recorder: group commit of answers.

use std::sync::Arc;
use std::time::Duration;

use batchd_domain::{Outcome, Timestamp};
use batchd_store::Answer;
use tokio::sync::mpsc;

use crate::{Shared, report_ended, timed};

/// Drains answers into groups of up to `record_group` and writes each group in one store call.
/// A failed write is retried with backoff until it succeeds: an answer is never dropped, and the
/// bounded channel behind us makes the request tasks wait meanwhile.
pub(crate) async fn record_loop(shared: Arc<Shared>, mut answers: mpsc::Receiver<Answer>) {
    let group = shared.config.record_group.max(1);
    let mut buf = Vec::with_capacity(group);
    loop {
        if answers.recv_many(&mut buf, group).await == 0 {
            return;
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            match timed("record", shared.store.record(&buf, Timestamp::now())).await {
                Ok(ended) => {
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
                    report_ended(ended);
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, answers = buf.len(), "recording results failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        buf.clear();
    }
}
