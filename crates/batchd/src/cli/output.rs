//! Human-readable rendering of batches: an aligned field list for one batch, a table for many,
//! and one-line progress summaries for `watch`.

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
    let rows: Vec<[String; 9]> = batches
        .iter()
        .map(|b| {
            let c = &b.request_counts;
            [
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
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Text columns left-aligned, counts right-aligned; no trailing blanks.
            let last = i + 1 == cells.len();
            let numeric = (2..=7).contains(&i);
            if i > 0 {
                text.push_str("  ");
            }
            if numeric {
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
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
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
