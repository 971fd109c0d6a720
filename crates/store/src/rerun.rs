//! Re-running the unfinished part of an ended batch, written once over the engines' one copy
//! step ([`BatchStore::copy_requests`]): the new batch is staged like a create (a draft, the
//! requests copied inside the store a range at a time, each range its own short transaction,
//! then the commit under the workspace's queue cap), so it is visible only when complete and a
//! re-run of 100,000 requests never holds the writer for long.

use std::time::Duration;

use batchd_domain::rerun::RerunSet;
use batchd_domain::{Batch, BatchId, Outcome, Timestamp};

use crate::{BatchStore, NewBatch, Result};

/// Source indices one copy transaction covers.
pub const COPY_RANGE: u32 = 16_384;

/// What a re-run found and did.
#[derive(Debug, Clone)]
pub enum RerunOutcome {
    NotFound,
    NotEnded,
    /// Archived: its requests are gone or going.
    Archived,
    /// No request of the batch has a result in the chosen set.
    Nothing,
    /// The workspace's queue cannot take the new batch; `waiting` requests wait already.
    QueueFull {
        waiting: u64,
        requests: u64,
    },
    /// The new batch, committed.
    Created(Box<Batch>),
}

/// What the caller decides about the new batch.
#[derive(Debug, Clone)]
pub struct RerunTerms {
    pub id: BatchId,
    pub now: Timestamp,
    pub expiry: Duration,
    pub queue_cap: u64,
}

/// The outcome a request of `batch` without a stored result has.
pub fn unanswered_outcome(batch: &Batch) -> Outcome {
    batch
        .end_reason
        .unwrap_or(batchd_domain::EndReason::Completed)
        .unanswered_outcome()
}

/// Whether `batch` can hold anything in `only` at all, from its tallies alone: a batch whose
/// every request succeeded has nothing to re-run, and needs no copy to say so.
pub fn may_hold(batch: &Batch, only: RerunSet) -> bool {
    (batch.errored > 0 && only.contains(Outcome::Errored))
        || (batch.unanswered() > 0 && only.contains(unanswered_outcome(batch)))
}

/// [`BatchStore::rerun_batch`] for every engine.
pub async fn run<S: BatchStore + ?Sized>(
    store: &S,
    workspace: &str,
    id: &BatchId,
    only: RerunSet,
    terms: RerunTerms,
) -> Result<RerunOutcome> {
    let Some(source) = store.get_batch(workspace, id).await? else {
        return Ok(RerunOutcome::NotFound);
    };
    // Anthropic batches only: an OpenAI batch's requests hold no bodies of their own (they
    // point into its input file, `NewRequest::source`), which a copy would not carry.
    if source.endpoint != batchd_domain::openai::Endpoint::Messages {
        return Ok(RerunOutcome::NotFound);
    }
    if !source.is_ended() {
        return Ok(RerunOutcome::NotEnded);
    }
    if source.archived_at.is_some() {
        return Ok(RerunOutcome::Archived);
    }
    if !may_hold(&source, only) {
        return Ok(RerunOutcome::Nothing);
    }
    let draft = store
        .begin_batch(NewBatch {
            id: terms.id,
            workspace: workspace.to_owned(),
            created_at: terms.now,
            expires_at: terms.now.plus(terms.expiry),
            betas: source.betas.clone(),
            api_version: source.api_version,
            user_profile_id: source.user_profile_id.clone(),
            endpoint: source.endpoint,
            openai: None,
        })
        .await?;
    let unanswered = unanswered_outcome(&source);
    let total = u32::try_from(source.total).unwrap_or(u32::MAX);
    let mut copied: u64 = 0;
    let mut from = 0u32;
    while from < total {
        let to = from.saturating_add(COPY_RANGE).min(total);
        // Below u32::MAX: at most `total` rows are copied.
        let step = store
            .copy_requests(
                &draft,
                source.key,
                from,
                to,
                only,
                unanswered,
                copied as u32,
            )
            .await;
        match step {
            Ok(n) => copied += n,
            Err(err) => {
                let _ = store.abort_batch(draft).await;
                return Err(err);
            }
        }
        from = to;
    }
    if copied == 0 {
        store.abort_batch(draft).await?;
        return Ok(RerunOutcome::Nothing);
    }
    match store
        .commit_batch_within(draft, copied, terms.queue_cap)
        .await?
    {
        Ok(batch) => Ok(RerunOutcome::Created(Box::new(batch))),
        Err(full) => {
            store.abort_batch(full.draft).await?;
            Ok(RerunOutcome::QueueFull {
                waiting: full.waiting,
                requests: copied,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use batchd_domain::EndReason;
    use batchd_wire::ProcessingStatus;

    use super::*;
    use crate::tests::batch;

    #[test]
    fn tallies_rule_out_a_batch_that_fully_succeeded() {
        let mut b = batch(1, ProcessingStatus::Ended);
        b.total = 3;
        b.succeeded = 3;
        assert!(!may_hold(&b, RerunSet::default()));
        b.succeeded = 2;
        b.end_reason = Some(EndReason::Expired);
        assert!(may_hold(&b, RerunSet::default()));
        assert!(!may_hold(&b, RerunSet::from_csv("canceled").unwrap()));
        assert!(may_hold(&b, RerunSet::from_csv("expired").unwrap()));
    }
}
