//! The WAL checkpointer: copies committed WAL frames into the database file from a connection
//! of its own, in the background, so a commit never pays for it.
//!
//! SQLite's automatic checkpoint runs inside the committing connection, after the commit. Here
//! that connection is the one writer, so every write queued behind it waited while 16 MB of
//! frames were copied and fsynced: profiling an OpenAI-surface create of 50,000 lines (200 MB)
//! put 39 % of the server's CPU samples in that checkpoint, all of it on the create's path.
//! The writer now checkpoints by itself only as a backstop, and this task checkpoints every
//! [`INTERVAL`] (unless nothing was written since a pass that copied everything: [`WalStamp`])
//! in two steps:
//!
//! 1. A `PASSIVE` checkpoint on its own connection, concurrently with writes: the bulk of the
//!    copying and the fsyncs, on another thread.
//! 2. When the WAL has grown past [`RESTART_FRAMES`], a `PASSIVE` checkpoint on the writer
//!    connection, taken from its pool like any write, when step 1 left frames behind. While it
//!    holds the writer nothing can append, so it copies the rest (only the frames written
//!    during step 1, unless a reader still needs older ones), and the next write transaction
//!    can restart the WAL from its beginning. Without this step a steady stream of writes could
//!    keep the WAL from ever restarting.
//!
//! Measured on that upload and create (release builds, alternate runs on a busy 2-core machine,
//! `curl` against `serve`): the upload took 0.46–0.71 s instead of 0.81–0.92 s and the create
//! 1.02–1.51 s instead of 1.24–1.65 s; the process's CPU time stayed about the same (1.5–1.8 s
//! against 1.4–1.6 s), since the copying still happens, on another thread. The WAL peaked at
//! 108 MB over that upload, create and the batch's dispatch.
//!
//! The writer keeps an automatic checkpoint at [`BACKSTOP_PAGES`], far above what this task
//! lets the WAL reach, so the WAL stays bounded even if the task stopped running (a store kept
//! past the runtime that opened it). As before, a reader holding a snapshot taken before the
//! WAL was fully copied keeps it from restarting; steady reads and writes together can make it
//! grow until they pause, as they could with SQLite's own automatic checkpoint.
//!
//! Durability is unchanged: a commit is as durable as its `synchronous` level made it, and a
//! checkpoint syncs the WAL before it copies (see the crate docs). A reader holding an old
//! snapshot (a long results download) still keeps the WAL from restarting, as it did before.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sqlx::SqlitePool;
use tokio::sync::oneshot;

/// How often the WAL is checkpointed. At the fastest ingest measured (about 250 MB/s of request
/// rows) that is about 12 MB of frames a pass, close to SQLite's default automatic checkpoint
/// (1,000 pages, 16 MB at our page size).
pub(crate) const INTERVAL: Duration = Duration::from_millis(50);

/// WAL size, in frames, past which a pass also takes step 2 so the WAL restarts: 64 MiB at our
/// page size, the `journal_size_limit` the WAL is truncated to when it restarts. Taking the
/// writer on every pass instead cost the built-in mock row about 15 % of its rate (70,500–82,600
/// req/s against 81,900–100,200 without it, three alternate runs of `batchd-bench --rows mock`).
const RESTART_FRAMES: i64 = 4_096;

/// The writer's own automatic checkpoint threshold, in pages (256 MiB at 16 KiB pages): a
/// backstop only; [`RESTART_FRAMES`] is what the WAL normally stays near.
pub(crate) const BACKSTOP_PAGES: u32 = 16_384;

/// Stops the checkpointer when dropped or told to.
pub(crate) struct Checkpointer {
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    /// Passes begun and passes done, skipped ones not counted.
    #[cfg(test)]
    passes: Arc<[AtomicU64; 2]>,
}

impl Checkpointer {
    /// Starts checkpointing the database of `writer` from `own`, a connection pool of one.
    pub fn start(own: SqlitePool, writer: SqlitePool, wal: PathBuf) -> Self {
        let (stop, stopped) = oneshot::channel();
        let passes = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let done = tokio::spawn(run(own, writer, wal, passes.clone(), stopped));
        Self {
            stop: Some(stop),
            done: Some(done),
            #[cfg(test)]
            passes,
        }
    }

    #[cfg(test)]
    pub fn passes(&self) -> (u64, u64) {
        let [begun, done] = &*self.passes;
        (begun.load(Ordering::SeqCst), done.load(Ordering::SeqCst))
    }

    /// Stops the task and closes its connection; returns when both are done.
    pub async fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Dropping the sender wakes the task, which closes its pool and ends.
        drop(self.stop.take());
    }
}

async fn run(
    own: SqlitePool,
    writer: SqlitePool,
    wal: PathBuf,
    passes: Arc<[AtomicU64; 2]>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The WAL as it was before the last pass that left nothing to copy.
    let mut copied_all: Option<WalStamp> = None;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tick.tick() => {}
        }
        // Taken before the pass: a write during it changes the WAL after this stamp, so the
        // next pass runs.
        let before = WalStamp::of(&wal);
        if before.is_some() && before == copied_all {
            continue;
        }
        copied_all = None;
        passes[0].fetch_add(1, Ordering::SeqCst);
        match checkpoint(&own).await {
            // A long WAL with frames left: step 2, so that the next write can restart it.
            Ok(pass) if pass.log > RESTART_FRAMES && pass.copied < pass.log => {
                let _ = checkpoint(&writer).await;
            }
            // Nothing left to copy: the next write restarts the WAL without the writer's help,
            // and passes are skipped until a write comes.
            Ok(pass) if pass.copied_all() => copied_all = before,
            // Busy (another connection's checkpoint), or I/O trouble: the next pass tries
            // again, and the writer's own commits report any lasting storage failure to their
            // callers.
            _ => {}
        }
        passes[1].fetch_add(1, Ordering::SeqCst);
    }
    own.close().await;
}

/// What a write to the WAL changes: an append its length, a restart (the first write after a
/// pass that copied everything, when no reader holds an older snapshot) the header's checkpoint
/// sequence and salts, and either its modification time. A pass is skipped while the WAL is as
/// it was before a pass that copied all of it, so an idle server does not checkpoint 20 times
/// a second: each pass is a hop to the connection's thread and a `PRAGMA` prepared again (it
/// expires after one run). An idle `serve` used 110 and 190 ms of CPU over 30 s before, 70 and
/// 60 ms with the skip (release builds, alternated). Only a write that appends within the
/// file's old length (a reader kept the WAL from restarting) in the same tick of the file
/// system's clock as the WAL's previous write goes unseen: its frames stay in the WAL,
/// committed and durable, until the pass after the next write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WalStamp {
    len: u64,
    modified: SystemTime,
    /// The WAL header's first 24 bytes (SQLite's WAL format), of which a restart rewrites
    /// 12..24: checkpoint sequence, salt-1, salt-2. Zero while the WAL is shorter than that.
    header: [u8; 24],
}

impl WalStamp {
    /// `None` when the WAL cannot be read (not there yet, say): then the pass runs.
    fn of(wal: &Path) -> Option<Self> {
        let mut file = std::fs::File::open(wal).ok()?;
        let meta = file.metadata().ok()?;
        let mut header = [0u8; 24];
        if meta.len() >= header.len() as u64 {
            file.read_exact(&mut header).ok()?;
        }
        Some(Self {
            len: meta.len(),
            modified: meta.modified().ok()?,
            header,
        })
    }
}

/// What a `PASSIVE` checkpoint answered.
struct Pass {
    /// Whether another connection's checkpoint held the lock (then the counts are -1).
    busy: bool,
    /// Frames in the WAL (-1 when the database is not in WAL mode).
    log: i64,
    /// Frames of it now in the database file.
    copied: i64,
}

impl Pass {
    fn copied_all(&self) -> bool {
        !self.busy && self.log >= 0 && self.copied == self.log
    }
}

/// A `PASSIVE` checkpoint on a connection of `pool`.
async fn checkpoint(pool: &SqlitePool) -> Result<Pass, sqlx::Error> {
    let (busy, log, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    Ok(Pass {
        busy: busy != 0,
        log,
        copied,
    })
}
