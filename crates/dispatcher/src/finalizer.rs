//! The finalizer: turns an ended OpenAI batch's stored results into its output and error files
//! and records them with the batch, which the API then shows as `completed`, `expired` or
//! `cancelled` (until then, `finalizing`).
//!
//! Every stored result of an OpenAI batch is already its whole line (`openai_line`), so a file
//! is the rows in index order: succeeded rows make the output file; every other stored row, and
//! a `batch_expired` or `batch_cancelled` line for each request without a result, make the
//! error file. Each file is written only when it has a line. Results are read a page at a time
//! (bounded in rows and in bytes) and bytes go to the store in pieces of at most
//! [`FILE_CHUNK_BYTES`], so memory stays bounded whatever the batch's size.
//!
//! It is woken when a batch of the OpenAI surface ends (a last answer recorded, expiry, the end
//! of a cancel) and also looks on every maintenance interval, so a batch whose process died
//! between ending it and finalizing it is finalized by the next one to look. A process first
//! claims the batch (`claim_finalize`), so of several sharing the storage only one writes its
//! files; they are written as drafts, invisible, and become visible in the transaction that
//! records them (`finalize`), so a crash in between leaves only drafts, which the purge
//! reclaims. The batch's `usage`, the tokens of its output file's answers, is added up as that
//! file is written and recorded with it. The same pass deletes expired files.

use std::sync::Arc;
use std::time::Duration;

use batchd_domain::openai::FileId;
use batchd_domain::{Batch, EndReason, Outcome, Timestamp};
use batchd_store::clock::virtual_now;
use batchd_store::{BatchStore, ClockStore, FILE_CHUNK_BYTES, FileDraft, FileStore, NewFile};

use batchd_wire::openai::BatchUsage;

use crate::openai_line::{LineOf, add_usage};
use crate::{Shared, timed};

/// How long output and error files are kept when the batch did not say
/// (`output_expires_after`).
pub use batchd_domain::openai::DEFAULT_FILE_EXPIRY as DEFAULT_OUTPUT_EXPIRY;
use batchd_domain::openai::OUTPUT_PURPOSE;
/// Result rows read per store call, and the bytes at which a page is cut short: a thousand
/// embeddings answers of megabytes each must not make a page of gigabytes.
const PAGE: u32 = 1_000;
const PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Batches taken per look at the store.
const GROUP: u32 = 16;
/// Expired files deleted per store call.
const EXPIRE_STEP: u32 = 1_000;

/// What the finalizer reads and writes beside the dispatcher's store: the results (read as the
/// API's downloads read them), the files, and the workspaces' clocks (a file's times are on its
/// workspace's clock, as an upload's are).
#[derive(Clone)]
pub struct OutputStores {
    pub results: Arc<dyn BatchStore>,
    pub files: Arc<dyn FileStore>,
    pub clocks: Arc<dyn ClockStore>,
}

pub(crate) async fn run(shared: Arc<Shared>, stores: OutputStores) {
    loop {
        expire_files(&stores).await;
        let mut full = false;
        match timed("unfinalized", shared.store.unfinalized(GROUP)).await {
            Ok(batches) => {
                full = batches.len() == GROUP as usize;
                for batch in batches {
                    if shared.stop.is_cancelled() {
                        return;
                    }
                    if let Err(err) = finalize(&shared, &stores, &batch).await {
                        full = false;
                        tracing::warn!(batch = %batch.id, error = %err, "writing the batch's output files failed; will retry");
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading unfinalized batches failed; will retry")
            }
        }
        if full {
            // More are waiting: no sleep.
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = shared.finalize.notified() => {}
            () = tokio::time::sleep(shared.config.maintenance_interval) => {}
            () = shared.stop.cancelled() => return,
        }
    }
}

async fn expire_files(stores: &OutputStores) {
    loop {
        match timed(
            "expire_files",
            stores.files.expire_files(Timestamp::now(), EXPIRE_STEP),
        )
        .await
        {
            Ok(n) if n == u64::from(EXPIRE_STEP) => tokio::task::yield_now().await,
            Ok(0) => return,
            Ok(n) => {
                tracing::info!(files = n, "deleted expired files");
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "deleting expired files failed; will retry");
                return;
            }
        }
    }
}

/// Writes one batch's files as drafts and records them, which makes them visible in the same
/// transaction. A batch another live process is finalizing is left to it. On any failure the
/// drafts are given up (their rows are reclaimed by the purge; so are those of a process that
/// dies meanwhile) and the batch stays unfinalized, to be tried again.
async fn finalize(
    shared: &Shared,
    stores: &OutputStores,
    batch: &Batch,
) -> batchd_store::Result<()> {
    let Some(meta) = &batch.openai else {
        // Not an OpenAI batch: nothing to write (the store never hands one out).
        return Ok(());
    };
    if !timed("claim_finalize", shared.store.claim_finalize(batch.key)).await? {
        return Ok(());
    }
    let now = Timestamp::now();
    // The files' times on the workspace's clock, as an upload's; `finalize` itself takes real
    // time, as every store call does.
    let offset = timed("clock_offset", stores.clocks.clock_offset(&batch.workspace)).await?;
    let file_now = virtual_now(now, offset);
    let expiry = meta
        .output_expires_after
        .map_or(DEFAULT_OUTPUT_EXPIRY, Duration::from_secs);
    let file = |kind: &str| NewFile {
        id: FileId::generate(),
        workspace: batch.workspace.clone(),
        purpose: OUTPUT_PURPOSE.to_owned(),
        filename: format!("batch_{}_{kind}.jsonl", batch.id),
        created_at: file_now,
        expires_at: Some(file_now.plus(expiry)),
    };
    let mut output = Writer::new(stores.files.as_ref(), file("output"));
    let mut errors = Writer::new(stores.files.as_ref(), file("error"));
    let mut usage = BatchUsage::default();
    let mut written = write_lines(stores, batch, &mut output, &mut errors, &mut usage).await;
    if written.is_ok() {
        written = output.flush().await;
    }
    if written.is_ok() {
        written = errors.flush().await;
    }
    if let Err(err) = written {
        output.abort().await;
        errors.abort().await;
        return Err(err);
    }
    let mut meta = meta.clone();
    meta.output_file_id = output.id();
    meta.error_file_id = errors.id();
    meta.usage = Some(usage);
    let drafts: Vec<(&FileDraft, u64)> = [output.draft(), errors.draft()]
        .into_iter()
        .flatten()
        .collect();
    let recorded = timed(
        "finalize",
        shared.store.finalize(batch.key, &meta, &drafts, now),
    )
    .await;
    if !matches!(recorded, Ok(true)) {
        // Finalized by another process first, deleted, or failed: the drafts are not part of
        // the batch (a commit is all or nothing, and giving up a committed file is a no-op).
        output.abort().await;
        errors.abort().await;
        return recorded.map(|_| ());
    }
    // The batch now shows its terminal status: its webhook event is in the outbox.
    shared.ended.notify_one();
    metrics::counter!("batchd_openai_batches_finalized_total").increment(1);
    tracing::info!(batch = %batch.id, output = ?meta.output_file_id, errors = ?meta.error_file_id, "batch finalized");
    Ok(())
}

/// Every result row of the batch, in index order, into the file it belongs to; the tokens of
/// the output file's answers into `usage`.
async fn write_lines(
    stores: &OutputStores,
    batch: &Batch,
    output: &mut Writer<'_>,
    errors: &mut Writer<'_>,
    usage: &mut BatchUsage,
) -> batchd_store::Result<()> {
    let reason = batch.end_reason.unwrap_or(EndReason::Completed);
    let mut after = None;
    loop {
        let rows = timed(
            "results_page",
            stores
                .results
                .results_page_within(batch.key, after, PAGE, PAGE_BYTES),
        )
        .await?;
        for row in &rows {
            match (row.outcome, &row.body) {
                (Some(Outcome::Succeeded), Some(line)) => {
                    add_usage(usage, line);
                    output.line(line).await?
                }
                (Some(_), Some(line)) => errors.line(line).await?,
                _ => {
                    let line = LineOf {
                        batch_id: batch.id.as_str(),
                        index: row.index,
                        custom_id: &row.custom_id,
                    };
                    if let Some(line) = line.unanswered(reason) {
                        errors.line(&line).await?;
                    }
                }
            }
        }
        // A page cut by bytes is short but not the last: only an empty page ends the rows.
        match rows.last() {
            Some(last) => after = Some(last.index),
            None => return Ok(()),
        }
    }
}

/// One file being written: begun at its first line, fed in pieces of at most
/// [`FILE_CHUNK_BYTES`].
struct Writer<'s> {
    files: &'s dyn FileStore,
    file: Option<NewFile>,
    draft: Option<FileDraft>,
    buf: Vec<u8>,
    seq: u32,
    bytes: u64,
}

impl<'s> Writer<'s> {
    fn new(files: &'s dyn FileStore, file: NewFile) -> Self {
        Self {
            files,
            file: Some(file),
            draft: None,
            buf: Vec::new(),
            seq: 0,
            bytes: 0,
        }
    }

    /// Adds `line` and its newline.
    async fn line(&mut self, line: &str) -> batchd_store::Result<()> {
        if self.draft.is_none()
            && let Some(file) = self.file.take()
        {
            self.draft = Some(timed("begin_file", self.files.begin_file(file)).await?);
            self.buf.reserve(FILE_CHUNK_BYTES);
        }
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        self.bytes += line.len() as u64 + 1;
        while self.buf.len() >= FILE_CHUNK_BYTES {
            let rest = self.buf.split_off(FILE_CHUNK_BYTES);
            let piece = std::mem::replace(&mut self.buf, rest);
            self.append(piece).await?;
        }
        Ok(())
    }

    async fn append(&mut self, piece: Vec<u8>) -> batchd_store::Result<()> {
        let draft = self.draft.as_ref().expect("begun before its first piece");
        timed(
            "append_file",
            self.files.append_file(draft, self.seq, piece),
        )
        .await?;
        self.seq += 1;
        Ok(())
    }

    /// Writes what is buffered; the draft then holds every line.
    async fn flush(&mut self) -> batchd_store::Result<()> {
        if self.draft.is_some() && !self.buf.is_empty() {
            let piece = std::mem::take(&mut self.buf);
            self.append(piece).await?;
        }
        Ok(())
    }

    /// The file's id; `None` when it never had a line (and is not written).
    fn id(&self) -> Option<FileId> {
        self.draft.as_ref().map(|d| d.file.id.clone())
    }

    /// The draft and its bytes, to commit with the batch; `None` when it never had a line.
    fn draft(&self) -> Option<(&FileDraft, u64)> {
        self.draft.as_ref().map(|d| (d, self.bytes))
    }

    async fn abort(&mut self) {
        if let Some(draft) = self.draft.take()
            && let Err(err) = self.files.abort_file(draft).await
        {
            tracing::warn!(error = %err, "giving up an output file failed; its rows are reclaimed later");
        }
    }
}
