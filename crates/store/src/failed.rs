//! Batches that failed validation before they had requests (an OpenAI batch whose input file
//! has bad lines): what [`BatchStore::insert_failed_batch`](crate::BatchStore::insert_failed_batch)
//! accepts. Such a batch is stored already ended and already finalized: it has no results, so
//! there are no output or error files to write.

use crate::{NewBatch, Result, misuse};

/// Refuses a batch that is not an OpenAI batch carrying the errors it failed with.
pub fn check(batch: &NewBatch) -> Result<()> {
    let has_errors = batch.openai.as_ref().is_some_and(|m| !m.errors.is_empty());
    if batch.endpoint.surface() != batchd_domain::openai::Surface::OpenAi || !has_errors {
        return Err(misuse(format!(
            "batch {} is stored as failed without an OpenAI endpoint and its errors",
            batch.id
        )));
    }
    Ok(())
}
