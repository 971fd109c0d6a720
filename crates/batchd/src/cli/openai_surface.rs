//! The `batches` commands on the OpenAI Batch API: create (upload, then `/v1/batches`), list,
//! get, cancel, watch and results of `batch_…` ids. Results are the output file's lines, then
//! the error file's, exactly as downloaded.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use batchd_client::wire::openai::{CreateOpenAiBatch, OpenAiBatch, OpenAiBatchStatus};
use batchd_client::{Client, OpenAiListParams};
use futures_util::StreamExt;

use super::{ResultKind, follow, output, print_out, println_out};

/// The only completion window the API offers.
const COMPLETION_WINDOW: &str = "24h";
/// The endpoint of a file whose first line names none (the server then reports the lines).
const DEFAULT_ENDPOINT: &str = "/v1/chat/completions";
/// The name an upload from stdin gets (the API wants a `.jsonl` name for batch input).
const STDIN_NAME: &str = "input.jsonl";

/// The statuses after which a batch changes no more.
fn is_final(status: OpenAiBatchStatus) -> bool {
    matches!(
        status,
        OpenAiBatchStatus::Completed
            | OpenAiBatchStatus::Failed
            | OpenAiBatchStatus::Expired
            | OpenAiBatchStatus::Cancelled
    )
}

/// Uploads `file` (purpose `batch`) and creates a batch on it for the endpoint its first line
/// names. The file goes as it is: its lines are checked by the server.
pub async fn create(client: &Client, file: &Path, json: bool) -> Result<()> {
    let (name, content) = if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading stdin")?;
        (STDIN_NAME.to_owned(), buf)
    } else {
        let content = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| STDIN_NAME.to_owned());
        (name, content)
    };
    let endpoint = first_endpoint(&content);
    let uploaded = client.upload_file(&name, "batch", content).await?;
    if !json {
        eprintln!(
            "uploaded {} as {} ({} bytes)",
            name, uploaded.id, uploaded.bytes
        );
    }
    let batch = client
        .create_openai_batch(&CreateOpenAiBatch {
            input_file_id: uploaded.id,
            endpoint,
            completion_window: COMPLETION_WINDOW.to_owned(),
            metadata: None,
        })
        .await?;
    print_batch(&batch, json)
}

/// The `url` of the file's first non-blank line, or [`DEFAULT_ENDPOINT`].
fn first_endpoint(content: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Probe {
        url: String,
    }
    content
        .split(|&b| b == b'\n')
        .find(|line| !line.trim_ascii().is_empty())
        .and_then(|line| serde_json::from_slice::<Probe>(line).ok())
        .map_or_else(|| DEFAULT_ENDPOINT.to_owned(), |p| p.url)
}

pub async fn list(client: &Client, params: OpenAiListParams, all: bool, json: bool) -> Result<()> {
    if all {
        let batches = client.list_all_openai_batches(params);
        return super::print_every(batches, json, output::openai_batch_table).await;
    }
    let page = client.list_openai_batches(&params).await?;
    if json {
        return println_out(&serde_json::to_string(&page)?);
    }
    print_out(&output::openai_batch_table(&page.data))?;
    if page.has_more {
        eprintln!(
            "(more batches: use --all, or --after-id {})",
            page.last_id.unwrap_or_default()
        );
    }
    Ok(())
}

pub fn print_batch(batch: &OpenAiBatch, json: bool) -> Result<()> {
    if json {
        println_out(&serde_json::to_string(batch)?)
    } else {
        print_out(&output::openai_batch_fields(batch))
    }
}

/// Writes the output file's lines, then the error file's. `--only succeeded` keeps the output
/// file; `errored`, `canceled` and `expired` keep the error lines of that kind (the requests a
/// cancel or the expiry left unsent carry `batch_cancelled` / `batch_expired`).
pub async fn results(
    client: &Client,
    id: &str,
    path: Option<&Path>,
    only: Option<ResultKind>,
) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Probe {
        error: Option<ProbeError>,
    }
    #[derive(serde::Deserialize)]
    struct ProbeError {
        code: Option<String>,
    }
    /// The `--only` kind of an error-file line.
    fn kind_of(line: &[u8]) -> ResultKind {
        let code = serde_json::from_slice::<Probe>(line)
            .ok()
            .and_then(|p| p.error)
            .and_then(|e| e.code);
        match code.as_deref() {
            Some("batch_cancelled") => ResultKind::Canceled,
            Some("batch_expired") => ResultKind::Expired,
            _ => ResultKind::Errored,
        }
    }

    let batch = client.retrieve_openai_batch(id).await?;
    if !is_final(batch.status) {
        anyhow::bail!(
            "batch {id} has no output files yet; has it finished processing? (status: {})",
            batch.status.as_str()
        );
    }
    let mut sink = follow::Sink::open(path).await?;
    let files = [
        (batch.output_file_id.as_deref(), true),
        (batch.error_file_id.as_deref(), false),
    ];
    for (file, succeeded) in files {
        let Some(file) = file else { continue };
        let mut lines = client.file_lines(file).await?;
        while let Some(line) = lines.next().await {
            let line = line?;
            let kind = if succeeded {
                ResultKind::Succeeded
            } else {
                kind_of(&line.bytes)
            };
            sink.offer(&line.bytes, only.is_none_or(|k| k == kind))
                .await?;
        }
    }
    sink.finish(path, only).await
}

/// Polls until the batch reaches a final status, showing progress; then prints its counts.
pub async fn watch(client: &Client, id: &str, interval: Duration, json: bool) -> Result<()> {
    let fetch = || async { Ok(client.retrieve_openai_batch(id).await?) };
    let batch = follow::until_ended(id, interval, json, fetch, |b: &OpenAiBatch| {
        let c = &b.request_counts;
        follow::Progress {
            total: c.total,
            done: c.completed + c.failed,
            status: b.status.as_str(),
            line: output::openai_progress_line(b),
            ended: is_final(b.status),
        }
    })
    .await?;
    if json {
        return println_out(&serde_json::to_string(&batch)?);
    }
    let c = &batch.request_counts;
    println_out(&format!(
        "{} {}: {} requests: completed {}, failed {}",
        batch.id,
        batch.status.as_str(),
        c.total,
        c.completed,
        c.failed
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_comes_from_the_first_line() {
        let file =
            b"\n{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{}}\n";
        assert_eq!(first_endpoint(file), "/v1/embeddings");
        assert_eq!(first_endpoint(b"not json\n"), DEFAULT_ENDPOINT);
        assert_eq!(first_endpoint(b""), DEFAULT_ENDPOINT);
    }
}
