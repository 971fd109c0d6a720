//! The storage seam: everything batchd keeps durably goes through [`Store`], the sum of
//! [`BatchStore`] (what the API needs), [`DispatchStore`] (what the dispatcher needs),
//! [`KeyStore`] (API keys), [`FileStore`] (the OpenAI surface's files) and [`ClockStore`] (test
//! mode's virtual clocks and workspace resets). Engine-neutral logic
//! that every engine runs after its own SQL lives here too, one module per concern, so that it
//! is written once: row decoding (`rows`), paging a list (`paging`), cancel (`cancel`), ending a
//! batch (`ending`), failed batches (`failed`), listing and checking files (`files`), reclaiming
//! rows (`purge`), re-running a batch's unfinished requests (`rerun`), moving a clock (`clock`) and folding health figures ([`Stats::fold`]).
//!
//! Each database engine has its own crate implementing these traits (`store-sqlite`,
//! `store-postgres`); `conformance` (feature `testkit`) runs this contract against each of
//! them. The contract, which every implementation must honour:
//!
//! * **Create is staged.** [`BatchStore::begin_batch`] reserves an invisible batch,
//!   [`BatchStore::append_requests`] adds requests in chunks (each chunk its own short
//!   transaction, so a 256 MB create never blocks result writes for long), and
//!   [`BatchStore::commit_batch`] makes the batch visible atomically and durably. A draft that
//!   is aborted or whose process dies before commit is never visible and its rows are reclaimed.
//! * **Claims are leases.** [`DispatchStore::claim`] hands out requests to the dispatcher in
//!   groups, fairly across workspaces and, within a workspace, across batches; a claimed request
//!   is not handed out again until it is released, deferred, answered, or its lease is lost
//!   (process death). Claims are not transactions held open.
//! * **Retries are stored.** [`DispatchStore::defer`] gives a claim back with its attempt count
//!   and the time before which it must not be handed out again; both survive a restart.
//! * **Results are group-committed.** [`DispatchStore::record`] writes many results in one
//!   transaction, at most one per request (duplicates are ignored), updates the batch tallies in
//!   the same transaction, and ends a batch in that transaction when its last request is
//!   answered, so the summary can never disagree with the rows. Results for a batch that already
//!   ended are dropped.
//! * **Cancel and expiry are O(1).** Ending a batch early records only the [`EndReason`];
//!   requests without a result count as `canceled`/`expired` (see `batchd_domain::batch`).
//! * **An OpenAI batch's bodies stay in its input file.** Its requests carry a
//!   [`BodySource`] instead of a copy; a claim fills `params` from the file's pieces
//!   ([`files::fill_bodies`]). The batch records its input file's key when its requests are
//!   appended, and the purge keeps a deleted or expired file's pieces while a batch that is not
//!   finalized points into it.
//! * **Delete is O(1).** The batch disappears at once; [`DispatchStore::purge_deleted`] reclaims
//!   its rows in the background, as it does for batches archived by
//!   [`DispatchStore::archive_due`].
//! * **A workspace may run on virtual time.** Its clock ([`ClockStore`]) is an offset ahead of
//!   real time, and every time the store compares or writes for that workspace's batches
//!   (expiry, `ended_at`, retention, `archived_at`) is taken on it; callers keep passing real
//!   time. A workspace without a clock has offset 0.
//! * **Both surfaces share every batch table.** A batch's [`Endpoint`] says which surface it
//!   belongs to ([`Endpoint::Messages`] for every Anthropic batch); a list shows one surface.
//!   An OpenAI batch that ended is *finalized* once its output and error files are written:
//!   [`DispatchStore::unfinalized`] finds the batches waiting for that,
//!   [`DispatchStore::claim_finalize`] gives one to a single process, and
//!   [`DispatchStore::finalize`] records it, and makes its files visible, at most once.
//! * **Files are staged like creates** and deleted like batches: pieces of at most
//!   [`FILE_CHUNK_BYTES`], each its own transaction, visible at commit; a delete or expiry is
//!   O(1) and the purge reclaims the chunks.

pub mod cancel;
pub mod clock;
#[cfg(feature = "testkit")]
pub mod conformance;
pub mod ending;
pub mod failed;
pub mod files;
pub mod paging;
pub mod purge;
pub mod rerun;
pub mod rows;
pub mod webhooks;

use async_trait::async_trait;
use batchd_domain::keys::KeyHash;
use batchd_domain::openai::{Endpoint, FileId, OpenAiBatchMeta, Surface};
use batchd_domain::rerun::RerunSet;
use batchd_domain::{ApiVersion, Batch, BatchId, CustomId, EndReason, Outcome, Timestamp};

/// Storage failures. Anything but `Unavailable` and `DraftGone` is a bug or corruption and
/// shows as `api_error`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The draft (of a batch or a file) being written was removed before its commit: its
    /// workspace was reset meanwhile, or its process was declared dead. Nothing was created.
    #[error("draft removed before its commit: {0}")]
    DraftGone(String),
    /// The database refused for a reason that may clear (locked, disk full, connection lost).
    #[error("storage temporarily unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("storage error: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A row that the store itself wrote could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// A database error: `Unavailable` when the engine says it may clear.
    pub fn database(e: impl std::error::Error + Send + Sync + 'static, transient: bool) -> Self {
        if transient {
            Self::Unavailable(Box::new(e))
        } else {
            Self::Other(Box::new(e))
        }
    }
}

pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Other(Box::new(e))
}

/// A misuse of the store by its caller (a broken invariant, not a database failure).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Misuse(pub String);

/// The draft `what` is no longer open (see [`StoreError::DraftGone`]).
pub fn draft_gone(what: impl Into<String>) -> StoreError {
    StoreError::DraftGone(what.into())
}

pub fn misuse(msg: impl Into<String>) -> StoreError {
    StoreError::Other(Box::new(Misuse(msg.into())))
}

/// A batch about to be created.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub id: BatchId,
    pub workspace: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub betas: Vec<String>,
    pub api_version: ApiVersion,
    pub user_profile_id: Option<String>,
    /// What every request is sent to: [`Endpoint::Messages`] for the Anthropic surface.
    pub endpoint: Endpoint,
    /// An OpenAI batch's extras; `None` for an Anthropic batch.
    pub openai: Option<OpenAiBatchMeta>,
}

/// One request of a batch being created. `index` is its position in the create body, starting at 0.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub index: u32,
    pub custom_id: CustomId,
    /// The `params` object exactly as the client sent it; empty when `source` says where it is.
    pub params: String,
    /// Where the body lies in a stored file (an OpenAI batch's input file), instead of a copy
    /// in `params`: the claim reads it back from the file's pieces ([`files::fill_bodies`]).
    /// Every request of a batch with a source points into the same file.
    pub source: Option<BodySource>,
}

/// Where a request's body lies in a stored file: `len` bytes from byte `at` of file
/// `file_key`. The file's pieces stay until the batch is finalized (the purge skips them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodySource {
    pub file_key: i64,
    pub at: u64,
    pub len: u32,
}

/// Handle to a batch that has been begun but not committed.
#[derive(Debug)]
pub struct Draft {
    pub key: i64,
    pub batch: NewBatch,
}

/// A commit refused because the workspace's queue would grow past its cap. The draft is still
/// a draft, for the caller to abort.
#[derive(Debug)]
pub struct QueueFull {
    pub draft: Draft,
    /// Requests of the workspace waiting to be processed when the commit was refused.
    pub waiting: u64,
}

/// Which slice of the list to read. Order is always newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// The newest batches.
    Start,
    /// Batches older than this one.
    After(BatchId),
    /// Batches newer than this one (the `limit` closest to it).
    Before(BatchId),
    /// Batches older than `after` and newer than `before`, from `after` on (the `limit` closest
    /// to `after`); more means more of them older than the page.
    Between { after: BatchId, before: BatchId },
}

/// One page of batches, newest first, and whether more exist in the requested direction.
#[derive(Debug, Clone)]
pub struct BatchPage {
    pub batches: Vec<Batch>,
    pub has_more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The cursor names no batch of this workspace.
    #[error("unknown cursor {0}")]
    UnknownCursor(BatchId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a cancel call found and did.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    NotFound,
    /// Already ended: nothing to cancel.
    AlreadyEnded(Batch),
    /// Now canceling (or was already): the current state.
    Canceling(Batch),
}

/// What a delete call found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    NotFound,
    NotEnded,
    Deleted,
}

/// A request handed to the dispatcher.
#[derive(Debug, Clone)]
pub struct WorkItem {
    pub batch_key: i64,
    pub batch_id: BatchId,
    /// The batch's workspace (test mode's scripted outcomes are per workspace).
    pub workspace: String,
    pub index: u32,
    pub custom_id: String,
    pub params: String,
    pub betas: Vec<String>,
    /// The batch's `anthropic-version` and `anthropic-user-profile-id`, which apply to this
    /// request as its betas do.
    pub api_version: ApiVersion,
    pub user_profile_id: Option<String>,
    /// The batch's endpoint: [`Endpoint::Messages`] takes the Anthropic path, anything else the
    /// OpenAI one (`params` then holds the line's `body`).
    pub endpoint: Endpoint,
    pub expires_at: Timestamp,
    /// Upstream attempts already made for this request (stored, so a restart does not reset
    /// the retry budget).
    pub attempts: u32,
    /// When a deferred request may be sent again; `None` when it may be sent now. A claim may
    /// return a request before this time only after a restart; the dispatcher defers it again.
    pub not_before: Option<Timestamp>,
}

impl WorkItem {
    pub fn slot(&self) -> Slot {
        Slot {
            batch_key: self.batch_key,
            index: self.index,
        }
    }

    /// Its answer: `body` is the line's `result` object.
    pub fn answer(&self, outcome: Outcome, body: String) -> Answer {
        Answer {
            slot: self.slot(),
            custom_id: self.custom_id.clone(),
            outcome,
            body,
        }
    }
}

/// Identifies one request inside storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    pub batch_key: i64,
    pub index: u32,
}

/// A finished request to record. `body` is the JSON of the line's `result` object, for example
/// `{"type":"succeeded","message":{…}}`.
#[derive(Debug, Clone)]
pub struct Answer {
    pub slot: Slot,
    /// The request's `custom_id` (the one its [`WorkItem`] carried; [`WorkItem::answer`] copies
    /// it), so an engine can keep it beside the result and serve a download without reading the
    /// requests.
    pub custom_id: String,
    pub outcome: Outcome,
    pub body: String,
}

/// A claimed request that failed in a way that may clear: it is to be sent again, not before
/// `not_before`, with `attempts` upstream attempts already spent.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub slot: Slot,
    pub attempts: u32,
    pub not_before: Timestamp,
}

/// One row of a results download.
#[derive(Debug, Clone)]
pub struct ResultRow {
    pub index: u32,
    pub custom_id: String,
    /// `None` when the request has no stored result: its outcome follows the batch's end reason.
    pub body: Option<String>,
    /// The stored result's outcome; `None` exactly when `body` is.
    pub outcome: Option<Outcome>,
}

impl ResultRow {
    /// What the row weighs in a page: its `custom_id` and body.
    pub fn bytes(&self) -> usize {
        self.custom_id.len() + self.body.as_ref().map_or(0, String::len)
    }
}

/// One page of a results download, already rendered: what [`BatchStore::results_lines`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultLines {
    /// Index of the page's last row: the `after` of the next page.
    pub last_index: u32,
    /// Lines in the page, so that a caller can tell a page with a line missing.
    pub rows: u32,
    /// The page's JSONL, as [`render_result_lines`] writes it.
    pub lines: Vec<u8>,
}

/// The results download's JSONL for `rows`: one compact `{"custom_id":…,"result":…}` object per
/// row, each `\n`-terminated, with `unanswered` as the `result` of rows that have none. This is
/// the reference for engines that assemble the lines in the database instead.
pub fn render_result_lines(rows: &[ResultRow], unanswered: &str) -> Vec<u8> {
    let size: usize = rows
        .iter()
        .map(|r| r.custom_id.len() + r.body.as_ref().map_or(unanswered.len(), String::len) + 32)
        .sum();
    let mut out = Vec::with_capacity(size);
    for row in rows {
        push_result_line(
            &mut out,
            &row.custom_id,
            row.body.as_deref().unwrap_or(unanswered).as_bytes(),
        );
    }
    out
}

/// Appends one line of [`render_result_lines`]: for engines that render rows as they read them,
/// straight from the database's buffers. `result` is taken as the bytes stored, which batchd
/// wrote from a `String`: an engine need not check them as UTF-8 again on the way out (a row
/// some other writer damaged goes out as it is stored).
pub fn push_result_line(out: &mut Vec<u8>, custom_id: &str, result: &[u8]) {
    out.extend_from_slice(b"{\"custom_id\":");
    // custom_ids are [A-Za-z0-9_-] by construction, but escaping keeps this correct regardless.
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, custom_id);
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(result);
    out.extend_from_slice(b"}\n");
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub id: String,
    pub workspace: String,
    pub prefix: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A snapshot of the unended work, for metrics and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub in_progress: u64,
    pub canceling: u64,
    /// Requests of unended batches that have no result yet (queued or in flight).
    pub unanswered: u64,
}

impl Stats {
    /// Folds `(state, batches, unanswered)` rows, one per unended state (the `batches.state`
    /// codes of [`rows`]), as engines count them in one grouped query. A count that does not fit
    /// (never: they are `COUNT`s and sums of non-negative tallies) reads as 0.
    pub fn fold(rows: impl IntoIterator<Item = (i64, i64, i64)>) -> Self {
        let mut stats = Stats::default();
        for (state, batches, unanswered) in rows {
            let batches = u64::try_from(batches).unwrap_or(0);
            if state == rows::CANCELING {
                stats.canceling = batches;
            } else {
                stats.in_progress = batches;
            }
            stats.unanswered += u64::try_from(unanswered).unwrap_or(0);
        }
        stats
    }
}

/// Batches whose state changed in a maintenance pass or a record call.
#[derive(Debug, Clone, Default)]
pub struct Ended {
    pub batches: Vec<(BatchId, EndReason)>,
}

/// Everything batchd stores, as one object: the sum of what the API needs ([`BatchStore`]),
/// what the dispatcher needs ([`DispatchStore`]), API keys ([`KeyStore`]), the OpenAI
/// surface's files ([`FileStore`]), test mode's clocks ([`ClockStore`]) and webhook endpoints
/// ([`WebhookStore`]). See the crate
/// documentation for the contract. Implemented for every type that implements the five.
pub trait Store:
    BatchStore + DispatchStore + KeyStore + FileStore + ClockStore + WebhookStore
{
}

impl<T: BatchStore + DispatchStore + KeyStore + FileStore + ClockStore + WebhookStore> Store for T {}

/// Batches as the API sees them: the staged create, reads, cancel, delete, result downloads,
/// and the health figures the API reports.
#[async_trait]
pub trait BatchStore: Send + Sync + 'static {
    async fn begin_batch(&self, batch: NewBatch) -> Result<Draft>;
    /// Appends requests to a draft. Chunks arrive in index order.
    async fn append_requests(&self, draft: &Draft, requests: Vec<NewRequest>) -> Result<()>;
    /// Makes the draft visible with `total` requests; durable when this returns.
    async fn commit_batch(&self, draft: Draft, total: u64) -> Result<Batch> {
        match self.commit_batch_within(draft, total, u64::MAX).await? {
            Ok(batch) => Ok(batch),
            Err(full) => Err(misuse(format!(
                "no queue cap was set, yet the queue of {} requests is full",
                full.waiting
            ))),
        }
    }
    /// [`BatchStore::commit_batch`], unless the draft's workspace would then have more than
    /// `queue_cap` requests waiting (requests of its `in_progress` batches without a result).
    /// The count and the commit are one transaction, and commits of one workspace are
    /// serialized, so concurrent creates cannot together overshoot the cap. The count reads
    /// only the workspace's `in_progress` batch rows (an index), never its requests.
    async fn commit_batch_within(
        &self,
        draft: Draft,
        total: u64,
        queue_cap: u64,
    ) -> Result<Result<Batch, QueueFull>>;
    /// Requests of `workspace` waiting to be processed, counted as
    /// [`BatchStore::commit_batch_within`] counts them but outside any transaction: a hint that
    /// lets a create over a full queue be refused before its body is read, never the check.
    async fn waiting_requests(&self, workspace: &str) -> Result<u64>;
    /// Gives up on a draft; its rows are reclaimed in the background.
    async fn abort_batch(&self, draft: Draft) -> Result<()>;

    async fn get_batch(&self, workspace: &str, id: &BatchId) -> Result<Option<Batch>>;
    /// A page of `workspace`'s batches of one `surface` (a list never mixes the two); a cursor
    /// naming a batch of the other surface is unknown.
    async fn list_batches(
        &self,
        workspace: &str,
        surface: Surface,
        cursor: Cursor,
        limit: u32,
    ) -> Result<BatchPage, ListError>;
    /// Stores a visible batch that failed validation before it had requests (an OpenAI batch
    /// whose `openai.errors` is non-empty): already ended (`end_reason = Completed`,
    /// `ended_at = now`), with a total of 0, and already finalized (`finalized_at = now`: it
    /// has no results, so no files to write). Durable when it returns. Anything but an OpenAI
    /// batch with errors is refused (see `failed`).
    async fn insert_failed_batch(&self, batch: NewBatch, now: Timestamp) -> Result<Batch>;
    async fn cancel_batch(
        &self,
        workspace: &str,
        id: &BatchId,
        now: Timestamp,
    ) -> Result<CancelOutcome>;
    async fn delete_batch(&self, workspace: &str, id: &BatchId) -> Result<DeleteOutcome>;
    /// Up to `limit` result rows of an ended batch with index greater than `after` (all rows when
    /// `after` is `None`), in index order. Each call is its own short read.
    async fn results_page(
        &self,
        batch_key: i64,
        after: Option<u32>,
        limit: u32,
    ) -> Result<Vec<ResultRow>> {
        self.results_page_within(batch_key, after, limit, usize::MAX)
            .await
    }
    /// [`BatchStore::results_page`], also cut after the row that brings the page to
    /// `max_bytes` of `custom_id`s and bodies (always at least one row, so paging moves on): the
    /// rows beyond are never read into memory, so a page of huge results stays bounded. An
    /// empty page is the end; a shorter one may not be.
    async fn results_page_within(
        &self,
        batch_key: i64,
        after: Option<u32>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<ResultRow>>;
    /// The page [`BatchStore::results_page`] would return, rendered by [`render_result_lines`]
    /// (`None` past the last row), with `unanswered` as the `result` of rows that have none.
    /// This is what downloads stream; engines override it to render pages with fewer per-row
    /// values, allocations and copies, which dominate a large download.
    /// `unanswered` is `None` when every request of the batch has a result, which lets an engine
    /// read only the results. Were one missing, its line would be missing too, so callers check
    /// that each page ends where it should.
    async fn results_lines(
        &self,
        batch_key: i64,
        after: Option<u32>,
        limit: u32,
        unanswered: Option<&str>,
    ) -> Result<Option<ResultLines>> {
        let mut rows = self.results_page(batch_key, after, limit).await?;
        if unanswered.is_none() {
            rows.retain(|r| r.body.is_some());
        }
        Ok(rows.last().map(|last| ResultLines {
            last_index: last.index,
            rows: rows.len() as u32,
            lines: render_result_lines(&rows, unanswered.unwrap_or_default()),
        }))
    }

    /// Copies into `draft`, in index order and under new indices from `next` on, the requests
    /// of the ended batch `source_key` with an index in `[from, to)` whose result type is in
    /// `only` (a request without a stored result has the type `unanswered`), with their
    /// `custom_id` and `params`; one transaction, and the rows never leave the database.
    /// Returns how many were copied.
    #[allow(clippy::too_many_arguments)]
    async fn copy_requests(
        &self,
        draft: &Draft,
        source_key: i64,
        from: u32,
        to: u32,
        only: RerunSet,
        unanswered: Outcome,
        next: u32,
    ) -> Result<u64>;
    /// A new batch of the requests of the ended batch `id` whose result type is in `only`, with
    /// the same betas, version and user profile, committed under `terms.queue_cap` as a create
    /// is. The original is untouched. See `rerun`.
    async fn rerun_batch(
        &self,
        workspace: &str,
        id: &BatchId,
        only: RerunSet,
        terms: rerun::RerunTerms,
    ) -> Result<rerun::RerunOutcome> {
        rerun::run(self, workspace, id, only, terms).await
    }

    /// Succeeds when storage answers queries (migrations are applied when the store opens).
    async fn ping(&self) -> Result<()>;
    /// Counts of unended batches and their unanswered requests; cheap (reads only unended rows).
    async fn stats(&self) -> Result<Stats>;
}

/// Most passes of one [`DispatchStore::claim`] call, in every engine. A pass gives every batch
/// with work a share; a later pass only matters when some batches had less than their share,
/// leaving room for the others.
pub const CLAIM_PASSES: usize = 3;

/// The dispatcher's side: claiming work, giving it back, recording answers, and the
/// maintenance that ends, archives and reclaims batches.
#[async_trait]
pub trait DispatchStore: Send + Sync + 'static {
    /// Claims up to `limit` unanswered requests of `in_progress` batches, fairly across batches,
    /// leaving out the batches in `skip` (whose backend cannot take more now). A claim lasts as
    /// long as the process that holds it.
    async fn claim(&self, limit: usize, now: Timestamp, skip: &[i64]) -> Result<Vec<WorkItem>>;
    /// Returns claimed requests that were never sent, so they can be claimed again (or, in a
    /// canceling batch, count as canceled).
    async fn release(&self, slots: &[Slot]) -> Result<()>;
    /// Stores the attempt counts of requests to try again (group commit) and gives their claims
    /// back: none of them is claimed again before its `not_before`. A retry of a request that
    /// has a result, or whose batch is no longer in progress, is ignored (a canceling batch may
    /// end once nothing of it is claimed).
    async fn defer(&self, retries: &[Retry], now: Timestamp) -> Result<()>;
    /// Records answers (group commit) and ends the batches they complete.
    async fn record(&self, answers: &[Answer], now: Timestamp) -> Result<Ended>;
    /// Ends batches past `expires_at`, and canceling batches with no request still claimed.
    async fn finish_due(&self, now: Timestamp) -> Result<Ended>;
    /// Keys of the batches now `canceling`, so every process sharing the storage stops sending
    /// their requests within a maintenance interval of the cancel, wherever it was called.
    async fn canceling(&self) -> Result<Vec<i64>>;
    /// When the next batch expires, so maintenance can sleep until then.
    async fn next_expiry(&self) -> Result<Option<Timestamp>>;
    /// Archives ended batches created at or before `cutoff` (retention): `archived_at = now`,
    /// the batch stays visible, its results become unavailable and its rows reclaimable.
    /// Returns how many batches were archived. Durable when it returns.
    async fn archive_due(&self, cutoff: Timestamp, now: Timestamp) -> Result<u64>;
    /// Reclaims the rows of deleted, aborted and archived batches, and the chunks of deleted,
    /// aborted and expired files, at most `limit` rows per call. Returns how many rows were
    /// removed (0 when nothing is left).
    async fn purge_deleted(&self, limit: u32) -> Result<u64>;
    /// Up to `limit` ended OpenAI batches (endpoint other than [`Endpoint::Messages`]), neither
    /// deleted nor archived, whose output and error files are not written yet
    /// (`finalized_at` unset), oldest ended first.
    async fn unfinalized(&self, limit: u32) -> Result<Vec<Batch>>;
    /// Takes an unfinalized batch (as [`DispatchStore::unfinalized`] lists them) for this
    /// process to write its files: true when it is this process's to finalize, false when it is
    /// finalized, gone, or held by another live process. A holder keeps it until it finalizes
    /// it or dies (then the next process to ask gets it), so processes sharing the storage do
    /// not each write the same batch's files. Asking again for a batch already held is true.
    async fn claim_finalize(&self, batch_key: i64) -> Result<bool>;
    /// Stores `meta` (now naming the output and error files) and `finalized_at = now`, and
    /// commits the file drafts `files` (each with the bytes written to it, checked as
    /// [`FileStore::commit_file`] checks them), all in one transaction that only applies to an
    /// ended, undeleted OpenAI batch not finalized yet: the files become visible exactly when
    /// the batch names them. False when another process finalized it first or it was deleted
    /// meanwhile; the drafts then stay drafts, for the caller to abort (or the purge to reclaim
    /// once their process is gone). Durable when it returns.
    async fn finalize(
        &self,
        batch_key: i64,
        meta: &OpenAiBatchMeta,
        files: &[(&FileDraft, u64)],
        now: Timestamp,
    ) -> Result<bool>;
}

/// A file about to be uploaded or written.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub id: FileId,
    pub workspace: String,
    pub purpose: String,
    pub filename: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// A visible file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Storage key: what [`FileStore::file_chunk`] reads by.
    pub key: i64,
    pub id: FileId,
    pub workspace: String,
    pub purpose: String,
    pub filename: String,
    pub bytes: u64,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// Handle to a file that has been begun but not committed.
#[derive(Debug)]
pub struct FileDraft {
    pub key: i64,
    pub file: NewFile,
}

/// One page of files, in the order asked for, and whether more follow it.
#[derive(Debug, Clone)]
pub struct FilePage {
    pub files: Vec<StoredFile>,
    pub has_more: bool,
}

/// Largest piece `append_file` takes; uploads and writers cut their bytes into pieces of at most
/// this. An upload's pieces are all exactly this long but the last, so that a byte offset of the
/// file maps to its piece by arithmetic ([`files::fill_bodies`] checks it).
pub const FILE_CHUNK_BYTES: usize = 1 << 20;

/// The OpenAI surface's files: uploads, and the output and error files written from a batch's
/// results. Staged like a batch create: [`FileStore::begin_file`] reserves an invisible file,
/// [`FileStore::append_file`] adds its bytes piece by piece (each piece its own short
/// transaction), [`FileStore::commit_file`] makes it visible. Deleting is O(1); the pieces are
/// reclaimed by [`DispatchStore::purge_deleted`].
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Reserves an invisible file.
    async fn begin_file(&self, file: NewFile) -> Result<FileDraft>;
    /// Stores piece `seq` (0, 1, 2, …, at most [`FILE_CHUNK_BYTES`]) of a draft, in its own
    /// short transaction.
    async fn append_file(&self, draft: &FileDraft, seq: u32, bytes: Vec<u8>) -> Result<()>;
    /// Makes the draft visible with a size of `bytes`, and with the purpose and expiry its
    /// `file` holds now (an upload learns them from form fields that may follow the file);
    /// visible and durable when it returns.
    async fn commit_file(&self, draft: FileDraft, bytes: u64) -> Result<StoredFile>;
    /// Gives up on a draft; its pieces are reclaimed by [`DispatchStore::purge_deleted`].
    async fn abort_file(&self, draft: FileDraft) -> Result<()>;
    async fn get_file(&self, workspace: &str, id: &FileId) -> Result<Option<StoredFile>>;
    /// `order_desc`: newest first (the API's default). `after` excludes itself; an `after` that
    /// names no file of the workspace → empty page, has_more false.
    async fn list_files(
        &self,
        workspace: &str,
        purpose: Option<&str>,
        after: Option<&FileId>,
        limit: u32,
        order_desc: bool,
    ) -> Result<FilePage>;
    /// Piece `seq` of a file; `None` past the end. The pieces of a file deleted during a
    /// download stay readable until the purge reaches them.
    async fn file_chunk(&self, file_key: i64, seq: u32) -> Result<Option<Vec<u8>>>;
    /// O(1): the file is invisible at once, its pieces are reclaimed later. False when the
    /// workspace has no such visible file.
    async fn delete_file(&self, workspace: &str, id: &FileId) -> Result<bool>;
    /// Deletes up to `limit` visible files with `expires_at <= now`; returns how many.
    async fn expire_files(&self, now: Timestamp, limit: u32) -> Result<u64>;
}

/// Test mode's virtual clocks, one per workspace, and the reset of a workspace. A clock is a
/// committed offset (microseconds, never negative, only growing) ahead of real time; the engines
/// apply it in [`DispatchStore::finish_due`], [`DispatchStore::archive_due`],
/// [`DispatchStore::record`] and [`DispatchStore::next_expiry`], so the dispatcher and
/// maintenance keep passing real time and never know.
#[async_trait]
pub trait ClockStore: DispatchStore {
    /// The workspace's offset in microseconds; 0 when it has no clock.
    async fn clock_offset(&self, workspace: &str) -> Result<i64>;
    /// Moves the workspace's clock `by` microseconds forward (`by >= 0`) in one durable
    /// transaction and returns the new offset. An offset that would overflow is refused.
    async fn advance_clock(&self, workspace: &str, by: i64) -> Result<i64>;
    /// Removes everything the workspace owns but its keys, at once, as a delete does: every
    /// committed batch of either surface in any state (unended ones are ended first, so nothing
    /// of them is claimed or recorded again) and every visible file disappear, and its clock
    /// goes back to real time. [`DispatchStore::purge_deleted`] reclaims the rows. Durable when
    /// it returns.
    async fn reset_workspace(&self, workspace: &str, now: Timestamp) -> Result<clock::Reset>;
    /// Runs now what maintenance would run next, so that a client reading right after an
    /// advance sees its effects: ends the batches that are due (on each workspace's clock) and
    /// archives the ended ones past `retention`. Every workspace is settled, not only the one
    /// that moved: for the others it is only what maintenance does anyway.
    async fn settle(
        &self,
        now: Timestamp,
        retention: std::time::Duration,
    ) -> Result<clock::Settled> {
        let ended = self.finish_due(now).await?;
        let archived = self.archive_due(now.minus(retention), now).await?;
        Ok(clock::Settled { ended, archived })
    }
}

/// Webhook endpoints, per workspace (see `webhooks`).
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Durable when it returns.
    async fn create_endpoint(&self, endpoint: webhooks::NewEndpoint) -> Result<webhooks::Endpoint>;
    /// The workspace's endpoints, oldest first.
    async fn list_endpoints(&self, workspace: &str) -> Result<Vec<webhooks::Endpoint>>;
    async fn get_endpoint(&self, workspace: &str, id: &str) -> Result<Option<webhooks::Endpoint>>;
    /// False when the workspace has no such endpoint.
    async fn delete_endpoint(&self, workspace: &str, id: &str) -> Result<bool>;
    /// Makes `secret` the endpoint's secret and keeps the current one valid until
    /// `previous_until`; `None` when the workspace has no such endpoint.
    async fn rotate_secret(
        &self,
        workspace: &str,
        id: &str,
        secret: &str,
        previous_until: Timestamp,
    ) -> Result<Option<webhooks::Endpoint>>;

    /// Turns up to `limit` outbox rows into deliveries, one per endpoint of the batch's
    /// workspace that is enabled, subscribed to the batch's `event_type` and was created no
    /// later than the event, each with its event id fixed now; a deleted batch, or one without
    /// an event type, gets none. Each outbox row is removed in the transaction that fans it
    /// out. Returns the outbox rows consumed.
    async fn fan_out(
        &self,
        event_type: webhooks::EventTypeOf,
        limit: usize,
        now: Timestamp,
    ) -> Result<usize>;
    /// Leases up to `limit` pending deliveries due at `now` to `owner` until `lease_until`; a
    /// delivery leased by another owner whose lease has not run out is never handed out, so no
    /// event is sent by two workers at once. Deliveries of deleted or disabled endpoints are
    /// failed on the way, never handed out.
    async fn claim_deliveries(
        &self,
        owner: &str,
        limit: usize,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<webhooks::ClaimedDelivery>>;
    /// Records an attempt of a delivery `owner` holds (nothing when the lease was lost), and
    /// the endpoint's run of failures: a success ends it; a failure starts it if none was
    /// running, and disables the endpoint when the run began at or before `disable_before`.
    async fn settle_delivery(
        &self,
        key: i64,
        owner: &str,
        settlement: webhooks::Settlement,
        now: Timestamp,
        disable_before: Timestamp,
    ) -> Result<()>;
    /// The endpoint's most recent deliveries, newest first.
    async fn list_deliveries(
        &self,
        workspace: &str,
        endpoint_id: &str,
        limit: usize,
    ) -> Result<Vec<webhooks::DeliveryRecord>>;
    /// The oldest outbox row's event time and the earliest due pending delivery, across every
    /// workspace, each read through an index (`/metrics` calls this on every scrape).
    async fn backlog(&self) -> Result<webhooks::Backlog>;
}

/// API keys: created and revoked by the `keys` commands, looked up on every API call.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    async fn create_key(
        &self,
        workspace: &str,
        hash: KeyHash,
        prefix: &str,
        now: Timestamp,
    ) -> Result<KeyInfo>;
    async fn list_keys(&self) -> Result<Vec<KeyInfo>>;
    /// Revokes by id; false when no such unrevoked key exists.
    async fn revoke_key(&self, id: &str, now: Timestamp) -> Result<bool>;
    /// Creates this key only if no key was ever created (revoked ones count), in one atomic
    /// step, so that servers starting together on an empty database make one first key between
    /// them. `None` when a key exists.
    async fn create_first_key(
        &self,
        workspace: &str,
        hash: KeyHash,
        prefix: &str,
        now: Timestamp,
    ) -> Result<Option<KeyInfo>>;
    /// The workspace of an unrevoked key.
    async fn workspace_for_key(&self, hash: &KeyHash) -> Result<Option<String>>;
}

#[cfg(test)]
pub(crate) mod tests {
    use batchd_wire::ProcessingStatus;

    use super::*;

    /// A visible batch with `key` in `status`, for the pure functions' tests.
    pub(crate) fn batch(key: i64, status: ProcessingStatus) -> Batch {
        let ended = status == ProcessingStatus::Ended;
        Batch {
            key,
            id: BatchId::generate(),
            workspace: "w".into(),
            status,
            total: 1,
            succeeded: 0,
            errored: 0,
            end_reason: ended.then_some(EndReason::Canceled),
            created_at: Timestamp::from_micros(key),
            expires_at: Timestamp::from_micros(key + 1),
            ended_at: None,
            cancel_initiated_at: None,
            archived_at: None,
            betas: Vec::new(),
            api_version: ApiVersion::default(),
            user_profile_id: None,
            endpoint: Endpoint::Messages,
            openai: None,
            finalized_at: None,
        }
    }

    /// A claimed request of batch 1, for the pure functions' tests.
    pub(crate) fn work_item(index: u32) -> WorkItem {
        WorkItem {
            batch_key: 1,
            batch_id: BatchId::generate(),
            workspace: "w".into(),
            index,
            custom_id: format!("r{index}"),
            params: "{}".into(),
            betas: Vec::new(),
            api_version: ApiVersion::default(),
            user_profile_id: None,
            endpoint: Endpoint::ChatCompletions,
            expires_at: Timestamp::from_micros(1),
            attempts: 0,
            not_before: None,
        }
    }

    #[test]
    fn stats_fold_one_row_per_state() {
        let stats = Stats::fold([(rows::IN_PROGRESS, 3, 40), (rows::CANCELING, 1, 2)]);
        assert_eq!(
            stats,
            Stats {
                in_progress: 3,
                canceling: 1,
                unanswered: 42
            }
        );
        assert_eq!(Stats::fold([]), Stats::default());
    }

    #[test]
    fn lines_are_compact_and_newline_terminated() {
        let rows = vec![
            ResultRow {
                index: 0,
                custom_id: "a".into(),
                body: Some(r#"{"type":"succeeded","message":{}}"#.into()),
                outcome: Some(Outcome::Succeeded),
            },
            ResultRow {
                index: 1,
                custom_id: "b".into(),
                body: None,
                outcome: None,
            },
        ];
        let out = render_result_lines(&rows, r#"{"type":"canceled"}"#);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "{\"custom_id\":\"a\",\"result\":{\"type\":\"succeeded\",\"message\":{}}}\n{\"custom_id\":\"b\",\"result\":{\"type\":\"canceled\"}}\n"
        );
    }
}
