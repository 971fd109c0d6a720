//! Human-readable rendering of batches of either surface: an aligned field list for one batch, a
//! table for many, and one-line progress summaries for `watch`; and of webhook endpoints and
//! their deliveries.

use batchd_client::wire::openai::OpenAiBatch;
use batchd_client::wire::webhooks::{WebhookDelivery, WebhookEndpoint};
use batchd_client::{MessageBatch, RequestCounts};

/// One batch as aligned `field  value` lines.
pub fn batch_fields(b: &MessageBatch) -> String {
    let c = &b.request_counts;
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let rows = [
        ("id", b.id.clone()),
        ("status", b.processing_status.as_str().to_owned()),
        ("requests", format!("{} ({})", c.total(), counts_summary(c))),
        ("created_at", b.created_at.clone()),
        ("expires_at", b.expires_at.clone()),
        ("ended_at", dash(&b.ended_at)),
        ("cancel_initiated_at", dash(&b.cancel_initiated_at)),
        ("archived_at", dash(&b.archived_at)),
        ("results_url", dash(&b.results_url)),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    out
}

/// `processing 3, succeeded 0, errored 0, canceled 0, expired 0`.
pub fn counts_summary(c: &RequestCounts) -> String {
    format!(
        "processing {}, succeeded {}, errored {}, canceled {}, expired {}",
        c.processing, c.succeeded, c.errored, c.canceled, c.expired
    )
}

/// A table of batches with a header row; columns sized to their contents.
pub fn batch_table(batches: &[MessageBatch]) -> String {
    let header = [
        "ID",
        "STATUS",
        "REQUESTS",
        "PROCESSING",
        "SUCCEEDED",
        "ERRORED",
        "CANCELED",
        "EXPIRED",
        "CREATED",
    ];
    let rows: Vec<Vec<String>> = batches
        .iter()
        .map(|b| {
            let c = &b.request_counts;
            vec![
                b.id.clone(),
                b.processing_status.as_str().to_owned(),
                c.total().to_string(),
                c.processing.to_string(),
                c.succeeded.to_string(),
                c.errored.to_string(),
                c.canceled.to_string(),
                c.expired.to_string(),
                b.created_at.clone(),
            ]
        })
        .collect();
    table(&header, &rows, |i| (2..=7).contains(&i))
}

/// A table of OpenAI batches, as [`batch_table`] with that surface's fields.
pub fn openai_batch_table(batches: &[OpenAiBatch]) -> String {
    let header = [
        "ID",
        "STATUS",
        "ENDPOINT",
        "REQUESTS",
        "COMPLETED",
        "FAILED",
        "CREATED",
    ];
    let rows: Vec<Vec<String>> = batches
        .iter()
        .map(|b| {
            let c = &b.request_counts;
            vec![
                b.id.clone(),
                b.status.as_str().to_owned(),
                b.endpoint.clone(),
                c.total.to_string(),
                c.completed.to_string(),
                c.failed.to_string(),
                unix_time(b.created_at),
            ]
        })
        .collect();
    table(&header, &rows, |i| (3..=5).contains(&i))
}

/// `header` and `rows` aligned: text columns left-aligned, the `numeric` ones right-aligned,
/// no trailing blanks.
fn table(header: &[&str], rows: &[Vec<String>], numeric: impl Fn(usize) -> bool) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, &w)) in cells.iter().zip(&widths).enumerate() {
            let last = i + 1 == cells.len();
            if i > 0 {
                text.push_str("  ");
            }
            if numeric(i) {
                text.push_str(&format!("{cell:>w$}"));
            } else if last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}"));
            }
        }
        out.push_str(&text);
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// One OpenAI batch as aligned `field  value` lines.
pub fn openai_batch_fields(b: &OpenAiBatch) -> String {
    let c = &b.request_counts;
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let time = |t: Option<u64>| t.map_or_else(|| "-".into(), unix_time);
    let mut rows = vec![
        ("id", b.id.clone()),
        ("status", b.status.as_str().to_owned()),
        ("endpoint", b.endpoint.clone()),
        ("model", dash(&b.model)),
        (
            "requests",
            format!(
                "{} (completed {}, failed {})",
                c.total, c.completed, c.failed
            ),
        ),
        ("input_file_id", b.input_file_id.clone()),
        ("output_file_id", dash(&b.output_file_id)),
        ("error_file_id", dash(&b.error_file_id)),
        ("created_at", unix_time(b.created_at)),
        ("expires_at", time(b.expires_at)),
    ];
    for (name, at) in [
        ("in_progress_at", b.in_progress_at),
        ("finalizing_at", b.finalizing_at),
        ("completed_at", b.completed_at),
        ("failed_at", b.failed_at),
        ("expired_at", b.expired_at),
        ("cancelling_at", b.cancelling_at),
        ("cancelled_at", b.cancelled_at),
    ] {
        if at.is_some() {
            rows.push((name, time(at)));
        }
    }
    for e in b.errors.iter().flat_map(|e| &e.data) {
        let at = e.line.map(|l| format!("line {l}: ")).unwrap_or_default();
        rows.push(("error", format!("{at}{}: {}", e.code, e.message)));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    out
}

/// One progress line of an OpenAI batch for `watch` without a terminal.
pub fn openai_progress_line(b: &OpenAiBatch) -> String {
    let c = &b.request_counts;
    format!(
        "{} {}: {}/{} done (completed {}, failed {})",
        b.id,
        b.status.as_str(),
        c.completed + c.failed,
        c.total,
        c.completed,
        c.failed
    )
}

/// Unix seconds as RFC 3339 UTC.
fn unix_time(secs: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// One progress line for `watch` without a terminal.
pub fn progress_line(b: &MessageBatch) -> String {
    let c = &b.request_counts;
    format!(
        "{} {}: {}/{} done ({})",
        b.id,
        b.processing_status.as_str(),
        c.total() - c.processing,
        c.total(),
        counts_summary(c)
    )
}

/// One webhook endpoint as aligned `field  value` lines; the secret only when the answer has
/// it (create and rotate).
pub fn webhook_fields(e: &WebhookEndpoint) -> String {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut rows = vec![
        ("id", e.id.clone()),
        ("url", e.url.clone()),
        ("events", e.events.join(",")),
        ("description", dash(&e.description)),
        ("created_at", e.created_at.clone()),
        ("disabled_at", dash(&e.disabled_at)),
    ];
    if let Some(secret) = &e.secret {
        rows.push(("secret", secret.clone()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    out
}

/// A table of webhook endpoints.
pub fn webhook_table(endpoints: &[WebhookEndpoint]) -> String {
    let header = ["ID", "URL", "EVENTS", "DISABLED", "CREATED"];
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.url.clone(),
                e.events.join(","),
                e.disabled_at.clone().unwrap_or_else(|| "-".into()),
                e.created_at.clone(),
            ]
        })
        .collect();
    table(&header, &rows, |_| false)
}

/// A table of an endpoint's deliveries.
pub fn delivery_table(deliveries: &[WebhookDelivery]) -> String {
    let header = [
        "EVENT",
        "BATCH",
        "STATE",
        "ATTEMPTS",
        "LAST",
        "LAST_ATTEMPT",
        "NEXT_ATTEMPT",
    ];
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = deliveries
        .iter()
        .map(|d| {
            vec![
                d.event_id.clone(),
                dash(&d.batch_id),
                d.state.as_str().to_owned(),
                d.attempts.to_string(),
                super::webhooks::last_outcome(d),
                dash(&d.last_attempt_at),
                dash(&d.next_attempt_at),
            ]
        })
        .collect();
    table(&header, &rows, |i| i == 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchd_client::{ProcessingStatus, wire::MessageBatchType};

    fn batch(id: &str, processing: u64, succeeded: u64) -> MessageBatch {
        MessageBatch {
            id: id.into(),
            kind: MessageBatchType::MessageBatch,
            processing_status: if processing == 0 {
                ProcessingStatus::Ended
            } else {
                ProcessingStatus::InProgress
            },
            request_counts: RequestCounts {
                processing,
                succeeded,
                ..Default::default()
            },
            ended_at: None,
            created_at: "2025-01-29T14:25:40.141141+00:00".into(),
            expires_at: "2025-01-30T14:25:40.141141+00:00".into(),
            archived_at: None,
            cancel_initiated_at: None,
            results_url: None,
        }
    }

    #[test]
    fn table_is_aligned() {
        let t = batch_table(&[batch("msgbatch_a", 0, 12), batch("msgbatch_bb", 3, 0)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID           STATUS       REQUESTS"));
        assert!(lines[1].starts_with("msgbatch_a   ended              12"));
        assert!(lines[2].starts_with("msgbatch_bb  in_progress         3"));
        let col = |l: &str| l.find("2025").unwrap();
        assert_eq!(col(lines[1]), col(lines[2]));
        assert!(lines.iter().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn fields_and_progress() {
        let f = batch_fields(&batch("msgbatch_a", 2, 1));
        assert!(f.contains("id                   msgbatch_a\n"));
        assert!(f.contains("requests             3 (processing 2, succeeded 1,"));
        assert!(f.contains("results_url          -\n"));
        assert_eq!(
            progress_line(&batch("msgbatch_a", 2, 1)),
            "msgbatch_a in_progress: 1/3 done (processing 2, succeeded 1, errored 0, canceled 0, expired 0)"
        );
    }
}
