//! How a stored batch reads on the OpenAI surface: its `status`, timestamps and counts from
//! the shared lifecycle (`in_progress → canceling → ended`) plus what the OpenAI surface stores
//! beside it (validation errors, when its files were written, the tokens its answers used).
//! `validating` is never stored: the create checks the file before answering, and only its
//! answer says `validating`.

use batchd_domain::Batch;
use batchd_domain::openai::OpenAiBatchMeta;
use batchd_wire::openai::{
    BatchError, BatchErrors, OpenAiBatch, OpenAiBatchStatus, OpenAiRequestCounts,
};
use serde_json::value::RawValue;

// Both live beside the batch they read, so the webhook worker names the same status.
pub use batchd_domain::openai::{status, unix};

/// The Batch object of a stored batch, as retrieve, list and cancel show it.
pub fn to_wire(batch: &Batch) -> OpenAiBatch {
    let status = status(batch);
    let meta = batch.openai.as_ref();
    let ended = batch.ended_at.map(unix);
    let finalized = batch.finalized_at.map(unix);
    let failed = status == OpenAiBatchStatus::Failed;
    let mut wire = skeleton(batch, meta, status);
    wire.model = meta.and_then(|m| m.model.clone());
    wire.errors = meta.filter(|m| !m.errors.is_empty()).map(errors);
    wire.output_file_id = meta
        .and_then(|m| m.output_file_id.as_ref())
        .map(ToString::to_string);
    wire.error_file_id = meta
        .and_then(|m| m.error_file_id.as_ref())
        .map(ToString::to_string);
    if failed {
        wire.failed_at = ended;
        return wire;
    }
    // Requests are stored and claimable from the moment the create answers.
    wire.in_progress_at = Some(unix(batch.created_at));
    wire.cancelling_at = batch.cancel_initiated_at.map(unix);
    // Set on every path once the batch has ended (the spec's recommendation where the hosted
    // API's behaviour is unknown), as that is when its files start being written.
    wire.finalizing_at = ended;
    match status {
        OpenAiBatchStatus::Completed => wire.completed_at = finalized,
        OpenAiBatchStatus::Expired => wire.expired_at = finalized,
        OpenAiBatchStatus::Cancelled => wire.cancelled_at = finalized,
        _ => {}
    }
    // Live, unlike the Anthropic surface: the OpenAI API shows progress as requests finish.
    wire.request_counts = OpenAiRequestCounts {
        total: batch.total,
        completed: batch.succeeded,
        failed: batch.errored,
    };
    wire
}

/// The create's answer: `validating`, zero counts, every time but `created_at` and
/// `expires_at` unset, whatever the check of the file already decided.
pub fn validating(batch: &Batch) -> OpenAiBatch {
    skeleton(batch, batch.openai.as_ref(), OpenAiBatchStatus::Validating)
}

fn skeleton(
    batch: &Batch,
    meta: Option<&OpenAiBatchMeta>,
    status: OpenAiBatchStatus,
) -> OpenAiBatch {
    OpenAiBatch {
        id: batch.id.to_string(),
        object: "batch".to_owned(),
        endpoint: batch.endpoint.path().to_owned(),
        model: None,
        errors: None,
        input_file_id: meta.map(|m| m.input_file_id.clone()).unwrap_or_default(),
        completion_window: meta
            .map(|m| m.completion_window.clone())
            .unwrap_or_default(),
        status,
        output_file_id: None,
        error_file_id: None,
        created_at: unix(batch.created_at),
        in_progress_at: None,
        expires_at: Some(unix(batch.expires_at)),
        finalizing_at: None,
        completed_at: None,
        failed_at: None,
        expired_at: None,
        cancelling_at: None,
        cancelled_at: None,
        request_counts: OpenAiRequestCounts::default(),
        // Added up when the batch's files are written; until then an object of zeros rather
        // than `null`, as the spec recommends (§10), so clients reading its fields never meet
        // `None`.
        usage: Some(meta.and_then(|m| m.usage).unwrap_or_default()),
        metadata: meta
            .and_then(|m| m.metadata.clone())
            .and_then(|text| RawValue::from_string(text).ok()),
    }
}

fn errors(meta: &OpenAiBatchMeta) -> BatchErrors {
    BatchErrors {
        object: "list".to_owned(),
        data: meta
            .errors
            .iter()
            .map(|e| BatchError {
                code: e.code.clone(),
                message: e.message.clone(),
                param: e.param.clone(),
                line: e.line,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use batchd_domain::openai::{Endpoint, FileId, LineError};
    use batchd_domain::{ApiVersion, BatchId, EndReason, Timestamp};
    use batchd_wire::ProcessingStatus;

    use super::*;

    const S: i64 = 1_000_000;

    fn batch() -> Batch {
        Batch {
            key: 1,
            id: BatchId::parse("msgbatch_01abc").unwrap(),
            workspace: "w".into(),
            status: ProcessingStatus::InProgress,
            total: 10,
            succeeded: 3,
            errored: 2,
            end_reason: None,
            created_at: Timestamp::from_micros(100 * S + 5),
            expires_at: Timestamp::from_micros(86_500 * S),
            ended_at: None,
            cancel_initiated_at: None,
            archived_at: None,
            betas: vec![],
            api_version: ApiVersion::default(),
            user_profile_id: None,
            endpoint: Endpoint::Embeddings,
            openai: Some(OpenAiBatchMeta {
                input_file_id: "file-in".into(),
                completion_window: "24h".into(),
                metadata: Some(r#"{"k":"v"}"#.into()),
                output_expires_after: None,
                model: Some("m".into()),
                errors: vec![],
                output_file_id: None,
                error_file_id: None,
                usage: None,
            }),
            finalized_at: None,
        }
    }

    fn ended(reason: EndReason, finalized: bool) -> Batch {
        let mut b = batch();
        b.status = ProcessingStatus::Ended;
        b.end_reason = Some(reason);
        b.ended_at = Some(Timestamp::from_micros(200 * S));
        b.finalized_at = finalized.then(|| Timestamp::from_micros(201 * S));
        b
    }

    #[test]
    fn a_running_batch_shows_live_counts() {
        let w = to_wire(&batch());
        assert_eq!(w.status, OpenAiBatchStatus::InProgress);
        assert_eq!(
            (w.created_at, w.in_progress_at, w.expires_at),
            (100, Some(100), Some(86_500))
        );
        assert_eq!(
            w.request_counts,
            OpenAiRequestCounts {
                total: 10,
                completed: 3,
                failed: 2
            }
        );
        assert_eq!(w.endpoint, "/v1/embeddings");
        assert_eq!(w.model.as_deref(), Some("m"));
        assert_eq!(w.metadata.unwrap().get(), r#"{"k":"v"}"#);
        assert_eq!(w.finalizing_at, None);
    }

    #[test]
    fn cancelling_shows_when_it_started_until_the_files_are_written() {
        let mut b = batch();
        b.status = ProcessingStatus::Canceling;
        b.cancel_initiated_at = Some(Timestamp::from_micros(150 * S));
        let w = to_wire(&b);
        assert_eq!(
            (w.status, w.cancelling_at),
            (OpenAiBatchStatus::Cancelling, Some(150))
        );
        let mut b = ended(EndReason::Canceled, false);
        b.cancel_initiated_at = Some(Timestamp::from_micros(150 * S));
        assert_eq!(status(&b), OpenAiBatchStatus::Cancelling);
        b.finalized_at = Some(Timestamp::from_micros(201 * S));
        let w = to_wire(&b);
        assert_eq!(
            (w.status, w.cancelling_at, w.finalizing_at, w.cancelled_at),
            (
                OpenAiBatchStatus::Cancelled,
                Some(150),
                Some(200),
                Some(201)
            )
        );
    }

    #[test]
    fn an_ended_batch_is_finalizing_until_its_files_are_written() {
        let w = to_wire(&ended(EndReason::Completed, false));
        assert_eq!(
            (w.status, w.finalizing_at, w.completed_at),
            (OpenAiBatchStatus::Finalizing, Some(200), None)
        );
        let w = to_wire(&ended(EndReason::Expired, false));
        assert_eq!(w.status, OpenAiBatchStatus::Finalizing);
        let mut b = ended(EndReason::Completed, true);
        if let Some(m) = &mut b.openai {
            m.output_file_id = Some(FileId::parse("file-out").unwrap());
        }
        let w = to_wire(&b);
        assert_eq!(
            (
                w.status,
                w.completed_at,
                w.output_file_id.as_deref(),
                w.error_file_id
            ),
            (
                OpenAiBatchStatus::Completed,
                Some(201),
                Some("file-out"),
                None
            )
        );
        let w = to_wire(&ended(EndReason::Expired, true));
        assert_eq!(
            (w.status, w.expired_at, w.completed_at),
            (OpenAiBatchStatus::Expired, Some(201), None)
        );
    }

    #[test]
    fn a_batch_that_failed_validation_shows_its_errors_and_nothing_else() {
        let mut b = ended(EndReason::Completed, false);
        b.total = 0;
        b.succeeded = 0;
        b.errored = 0;
        if let Some(m) = &mut b.openai {
            m.errors = vec![LineError {
                code: "invalid_json_line".into(),
                message: "This line is not parseable as valid JSON.".into(),
                param: None,
                line: Some(2),
            }];
        }
        let w = to_wire(&b);
        assert_eq!(w.status, OpenAiBatchStatus::Failed);
        assert_eq!(
            (w.failed_at, w.in_progress_at, w.finalizing_at),
            (Some(200), None, None)
        );
        assert_eq!(w.request_counts, OpenAiRequestCounts::default());
        let errors = w.errors.unwrap();
        assert_eq!(errors.object, "list");
        assert_eq!(errors.data[0].line, Some(2));
    }

    #[test]
    fn the_create_answer_is_validating_with_nothing_but_its_times() {
        let w = validating(&batch());
        assert_eq!(w.status, OpenAiBatchStatus::Validating);
        assert_eq!(w.request_counts, OpenAiRequestCounts::default());
        assert_eq!(
            (w.created_at, w.expires_at, w.in_progress_at, w.model),
            (100, Some(86_500), None, None)
        );
        assert_eq!(w.input_file_id, "file-in");
        assert_eq!(w.completion_window, "24h");
    }
}
