//! The dispatcher: turns stored requests into stored results.
//!
//! Three kinds of task cooperate, none of which holds a transaction across an upstream call:
//!
//! * the **claimer** (`claimer.rs`) leases requests from the store in groups (one store call per
//!   group, never one per request), keeping a few milliseconds' worth ready so claiming overlaps
//!   with sending, and spawns one task per request, bounded by a semaphore of `concurrency`
//!   permits so the in-flight count never exceeds it;
//! * each **request task** (`request.rs`) validates `params`, picks a backend by model, waits for
//!   that backend's admission limits (a turn far off, or a full queue at the backend, sends it
//!   back to the store instead, so one slow backend cannot hold every slot), calls it, and hands
//!   the answer (or, after a failure that may clear, the retry with its back-off) to
//! * the **recorder** (`recorder.rs`), which drains answers, retries and unsent requests into
//!   groups and writes each group in one transaction (group commit); the store ends a batch in
//!   the same transaction that records its last result. A retry gives the request back to the
//!   store, which hands it out again once its back-off is over, so a waiting request holds
//!   neither a slot nor memory.
//!
//! [`maintenance`] runs beside them: it ends expired batches and canceling batches with nothing in
//! flight, reclaims the rows of deleted batches, and learns of cancels made by other processes
//! sharing the store. `retry.rs` computes the back-off between attempts.
//!
//! Requests of the OpenAI surface take the same path (`request.rs` routes them by `body.model`
//! and records each one's whole output or error line, `openai_line.rs`); once such a batch has
//! ended, the [`finalizer`] writes its output and error files from those rows.

mod claimer;
pub mod finalizer;
pub mod maintenance;
mod openai_line;
mod recorder;
mod request;
mod retry;
mod saturation;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

use batchd_backends::BackendTable;
use batchd_domain::openai::Surface;
use batchd_domain::script::Scripts;
use batchd_store::DispatchStore;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tuning knobs. The defaults suit a local model server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Requests in flight at once, across all batches: the permits of the claimer's semaphore,
    /// one per dispatch slot.
    pub concurrency: usize,
    /// Most requests claimed by one store call.
    pub claim_group: usize,
    /// Most answers written by one store transaction.
    pub record_group: usize,
    /// How long the recorder waits for a small group to fill before writing what it has.
    /// Answers wait in memory meanwhile, not in a dispatch slot, so it costs a batch at most
    /// this much before it ends; what it saves is a write's fixed cost when answers come one by
    /// one (a slow upstream) instead of in bursts. Release builds alternated with the same
    /// bench binaries: 5 ms against none, `batchd-bench --rows dispatch --requests 50000`, five
    /// pairs: at 50 ms upstream latency 33-38 µs of CPU a request against 41-51;
    /// `--rows postgres --requests 50000` at 200 ms, PostgreSQL's CPU per 1,000 requests
    /// 59/61/53 ms (1/2/3 processes) against 111/105/104. Then 20 ms (with the recorder's
    /// `LINGER_UNTIL`) against 5 ms, once the claims had grown too: PostgreSQL 41/31/34 against
    /// 46/44/42, batchd 36/25/25 against 36/32/32; SQLite's rows within noise (three pairs).
    pub record_linger: Duration,
    /// How often to look for work when nobody signalled any.
    pub idle_poll: Duration,
    /// How often maintenance runs at the latest.
    pub maintenance_interval: Duration,
    /// How long after creation results are kept before the batch is archived.
    pub results_retention: Duration,
    /// Back-off before the second upstream attempt; it doubles per attempt up to
    /// `retry_max_delay`.
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    /// Test mode's scripted outcomes, asked first for every Messages request a mock backend
    /// serves; `None` (the default) outside test mode.
    pub scripts: Option<Arc<Scripts>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            concurrency: 256,
            claim_group: 512,
            record_group: 1024,
            record_linger: Duration::from_millis(20),
            idle_poll: Duration::from_millis(500),
            maintenance_interval: Duration::from_secs(1),
            results_retention: Duration::from_secs(29 * 24 * 3600),
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(60),
            scripts: None,
        }
    }
}

/// State shared by the dispatcher's tasks and its handle.
struct Shared {
    store: Arc<dyn DispatchStore>,
    backends: Arc<BackendTable>,
    config: Config,
    /// Signalled when there may be new work to claim (a batch was created).
    work: Notify,
    /// Signalled when maintenance should run now (a cancel, a release, a delete).
    maintenance: Notify,
    /// Signalled when a batch of the OpenAI surface ended: its files are to be written.
    finalize: Notify,
    /// Signalled when a batch's end became visible here (a Messages batch ended, an OpenAI
    /// batch's files were written): the webhook worker has an outbox row to deliver.
    ended: Arc<Notify>,
    /// Batches now canceling: their claimed requests must not be sent. Filled at once by a
    /// cancel made here, and replaced by what the store says every maintenance pass (cancels
    /// made by other processes; batches that have ended since).
    canceling: Mutex<HashSet<i64>>,
    /// Signalled by a cancel made here: the claimer drops that batch's requests it holds ready.
    canceled_here: Notify,
    /// Batches (by key) that met a full queue at a backend, with that backend's index in the table:
    /// claims skip them while the queue stays full, so its requests wait in the store rather
    /// than in dispatch slots that other backends could use.
    saturated: Mutex<HashMap<i64, usize>>,
    /// Stops claiming; in-flight requests still finish.
    stop: CancellationToken,
    /// Shutdown's grace period is over: request tasks still running give up at once, unanswered
    /// (their requests run again after a restart), so that nothing outlives the shutdown.
    abandon: CancellationToken,
    /// Requests sent to the backend and not yet answered (for metrics and `/metrics`).
    in_flight: AtomicUsize,
    in_flight_gauge: metrics::Gauge,
    /// Per backend (in the table's order), the metrics every request touches, registered once: a
    /// registry lookup per request is measurable at full rate.
    backend_metrics: Vec<BackendMetrics>,
}

struct BackendMetrics {
    duration: metrics::Histogram,
    ok_first: metrics::Counter,
}

impl BackendMetrics {
    fn new(backend: &str) -> Self {
        let backend = backend.to_owned();
        Self {
            duration: metrics::histogram!("batchd_upstream_request_duration_seconds", "backend" => backend.clone()),
            ok_first: metrics::counter!("batchd_upstream_requests_total", "backend" => backend, "result" => "ok", "attempt" => "first"),
        }
    }
}

/// Handle to a running dispatcher, held by the composition root, which also hands it to the HTTP
/// layer behind that layer's own narrow signal trait.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Option<Tasks>>>,
}

struct Tasks {
    claimer: JoinHandle<()>,
    recorder: JoinHandle<()>,
    maintenance: JoinHandle<()>,
    /// Started by [`Dispatcher::start_finalizer`].
    finalizer: Option<JoinHandle<()>>,
    /// Every request task, from its spawn to its report (waiting for admission included).
    request_tasks: TaskTracker,
}

impl Dispatcher {
    /// Starts the claimer, the recorder and maintenance on the current runtime.
    pub fn start(
        store: Arc<dyn DispatchStore>,
        backends: Arc<BackendTable>,
        config: Config,
    ) -> Self {
        let backend_metrics = backends
            .backends()
            .iter()
            .map(|b| BackendMetrics::new(b.backend.name()))
            .collect();
        let shared = Arc::new(Shared {
            backend_metrics,
            in_flight_gauge: metrics::gauge!("batchd_requests_in_flight"),
            store,
            backends,
            config,
            work: Notify::new(),
            maintenance: Notify::new(),
            finalize: Notify::new(),
            ended: Arc::new(Notify::new()),
            canceling: Mutex::new(HashSet::new()),
            canceled_here: Notify::new(),
            saturated: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
            abandon: CancellationToken::new(),
            in_flight: AtomicUsize::new(0),
        });
        // Bounded so that a stalled store (disk full) pushes back on request tasks, which hold
        // their permits and so stop the claimer: answers wait in memory, none is dropped.
        let (reports_tx, reports_rx) = mpsc::channel(shared.config.record_group * 8);
        let request_tasks = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(shared.config.concurrency.max(1)));
        let claimer = tokio::spawn(claimer::claim_loop(
            shared.clone(),
            permits,
            reports_tx,
            request_tasks.clone(),
        ));
        let recorder = tokio::spawn(recorder::record_loop(shared.clone(), reports_rx));
        let maintenance = tokio::spawn(maintenance::run(shared.clone()));
        Self {
            shared,
            tasks: Arc::new(Mutex::new(Some(Tasks {
                claimer,
                recorder,
                maintenance,
                finalizer: None,
                request_tasks,
            }))),
        }
    }

    /// Starts the [`finalizer`], which writes the output and error files of ended OpenAI
    /// batches. Without it such batches stay `finalizing`. Once only; a stopped dispatcher
    /// ignores it.
    pub fn start_finalizer(&self, stores: finalizer::OutputStores) {
        if let Some(tasks) = lock(&self.tasks).as_mut()
            && tasks.finalizer.is_none()
        {
            tasks.finalizer = Some(tokio::spawn(finalizer::run(self.shared.clone(), stores)));
        }
    }

    /// There is new work: claim now rather than at the next poll.
    pub fn notify_created(&self) {
        metrics::counter!("batchd_batches_created_total").increment(1);
        self.shared.work.notify_one();
    }

    /// A batch entered `canceling`: requests of it that are claimed but not yet sent are dropped,
    /// and the batch ends as soon as nothing of it is in flight.
    pub fn notify_canceled(&self, batch_key: i64) {
        lock(&self.shared.canceling).insert(batch_key);
        self.shared.canceled_here.notify_one();
        self.shared.maintenance.notify_one();
    }

    /// Batches were ended outside the dispatcher (a test clock's advance settled them): count
    /// and log them as its own ends, and have the finalizer write the files of OpenAI ones now.
    pub fn notify_ended(&self, ended: batchd_store::Ended) {
        report_ended(&self.shared, ended);
    }

    /// Requests currently at the backend.
    /// Notified whenever batches end through this dispatcher (or [`Dispatcher::notify_ended`]):
    /// what wakes the webhook worker at once rather than at its next poll.
    pub fn ended_signal(&self) -> Arc<Notify> {
        self.shared.ended.clone()
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Rows are waiting to be reclaimed (a batch deleted, or a create aborted): wake the purge.
    pub fn notify_reclaimable(&self) {
        self.shared.maintenance.notify_one();
    }

    /// Stops claiming, lets in-flight requests finish for up to `grace`, records every answer
    /// that came back, then stops. Requests still in flight after `grace` are abandoned: they have
    /// no result, so they are claimed again after a restart.
    pub async fn shutdown(&self, grace: Duration) {
        let Some(tasks) = lock(&self.tasks).take() else {
            return;
        };
        self.shared.stop.cancel();
        let _ = tasks.claimer.await;
        tasks.request_tasks.close();
        if tokio::time::timeout(grace, tasks.request_tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                abandoned = tasks.request_tasks.len(),
                "shutdown grace period over; unfinished requests will run again after restart"
            );
            // They stop at their next await, dropping their answer senders.
            self.shared.abandon.cancel();
            tasks.request_tasks.wait().await;
        }
        // Every sender is gone: the recorder writes the answers that came back, then ends. A
        // store that keeps failing (disk full) must not hold the shutdown forever.
        let mut recorder = tasks.recorder;
        if tokio::time::timeout(Duration::from_secs(5), &mut recorder)
            .await
            .is_err()
        {
            tracing::warn!("could not record the last answers; they will run again after restart");
            recorder.abort();
            let _ = recorder.await;
        }
        // Awaited so that no task of ours still holds the store when this returns. A batch whose
        // files were being written stays unfinalized and is finalized after a restart.
        tasks.maintenance.abort();
        let _ = tasks.maintenance.await;
        if let Some(finalizer) = tasks.finalizer {
            finalizer.abort();
            let _ = finalizer.await;
        }
    }
}

/// Awaits a store call, recording its latency under `op`.
async fn timed<T>(op: &'static str, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = call.await;
    metrics::histogram!("batchd_store_operation_duration_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
    out
}

/// Counts and logs batches that just ended, and wakes the finalizer for those of the OpenAI
/// surface.
fn report_ended(shared: &Shared, ended: batchd_store::Ended) {
    if ended
        .batches
        .iter()
        .any(|(id, _)| id.surface() == Surface::OpenAi)
    {
        shared.finalize.notify_one();
    }
    if !ended.batches.is_empty() {
        shared.ended.notify_one();
    }
    for (id, reason) in ended.batches {
        metrics::counter!("batchd_batches_ended_total", "reason" => format!("{reason:?}").to_lowercase()).increment(1);
        tracing::info!(batch = %id, ?reason, "batch ended");
    }
}

/// Locks a mutex that is never held across an await and never poisoned by our code paths; a
/// poisoned lock still holds consistent data here (plain sets), so recover it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
