//! The claimer: leases requests from the store in groups, keeps some ready ahead of the
//! request tasks (sized by the rate they are taken at), and hands each to a task of its own as
//! dispatch permits free up. Batches whose backend's queue is full are left out of its claims
//! ([`crate::saturation`]).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use batchd_domain::Timestamp;
use batchd_store::WorkItem;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;

use crate::recorder::Report;
use crate::saturation::{saturated_batches, skipped};
use crate::{Shared, lock, request, timed};

/// How much claimed work to keep ready, in time: the claimer prefetches what the request tasks
/// are expected to take in this long, so a claim's round trip overlaps with spawning instead of
/// stalling it, while a new batch or a cancel never waits behind more than this much work.
/// 100 ms rather than 20: against a slow upstream the rate is low, so 20 ms of it made claims of
/// a dozen requests, each a transaction. `batchd-bench --rows postgres --requests 50000` at
/// 200 ms (release builds alternated): PostgreSQL's CPU per 1,000 requests 41/37/38 ms with
/// 1/2/3 processes against 67/58/58, batchd's 29/26/26 against 39/34/32; at 0 ms the claims
/// were already at `claim_group` and nothing changed, nor on SQLite at 0 or 50 ms (three pairs
/// of `--rows dispatch,dispatch-rss`).
const PREFETCH: Duration = Duration::from_millis(100);
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
    request_tasks: TaskTracker,
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
            let skip = saturated_batches(&shared);
            claiming = Some(Box::pin(async move {
                let items = timed("claim", store.claim(want, Timestamp::now(), &skip)).await;
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
                let run = request::run(shared.clone(), item, permit, reports.clone());
                request_tasks.spawn(async move {
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
            () = shared.canceled_here.notified() => {
                // Requests of a just-canceled batch must not wait for a permit to be dropped.
                let canceled = lock(&shared.canceling).clone();
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
