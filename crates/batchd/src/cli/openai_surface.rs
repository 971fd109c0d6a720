//! The `batches` commands on the OpenAI Batch API: create (upload, then `/v1/batches`), list,
//! get, cancel, watch and results of `batch_…` ids. Results are the output file's lines, then
//! the error file's, exactly as downloaded.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use batchd_client::wire::openai::{CreateOpenAiBatch, OpenAiBatch, OpenAiBatchStatus};
use batchd_client::{Client, OpenAiListParams};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

use super::{ResultKind, output, print_out, println_out};

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
        let mut batches = client.list_all_openai_batches(params);
        let mut collected = Vec::new();
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            if json {
                println_out(&serde_json::to_string(&batch)?)?;
            } else {
                collected.push(batch);
            }
        }
        if !json {
            print_out(&output::openai_batch_table(&collected))?;
        }
        return Ok(());
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
    let sink: Box<dyn AsyncWrite + Unpin + Send> = match path {
        Some(p) => Box::new(
            tokio::fs::File::create(p)
                .await
                .with_context(|| format!("creating {}", p.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let mut out = BufWriter::with_capacity(256 * 1024, sink);
    let (mut total, mut written) = (0u64, 0u64);
    let files = [
        (batch.output_file_id.as_deref(), true),
        (batch.error_file_id.as_deref(), false),
    ];
    for (file, succeeded) in files {
        let Some(file) = file else { continue };
        let mut lines = client.file_lines(file).await?;
        while let Some(line) = lines.next().await {
            let line = line?;
            total += 1;
            let kind = if succeeded {
                ResultKind::Succeeded
            } else {
                kind_of(&line.bytes)
            };
            if only.is_none_or(|k| k == kind) {
                out.write_all(&line.bytes).await?;
                out.write_all(b"\n").await?;
                written += 1;
            }
        }
    }
    out.flush().await?;
    out.into_inner().shutdown().await?;
    if let Some(p) = path {
        match only {
            Some(k) => eprintln!(
                "wrote {written} {} of {total} results to {}",
                k.as_str(),
                p.display()
            ),
            None => eprintln!("wrote {written} results to {}", p.display()),
        }
    }
    Ok(())
}

/// Polls until the batch reaches a final status, showing progress; then prints its counts.
pub async fn watch(client: &Client, id: &str, interval: Duration, json: bool) -> Result<()> {
    let tty = std::io::stdout().is_terminal();
    let bar = (tty && !json).then(|| {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} [{elapsed_precise}] [{bar:40}] {pos}/{len} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(id.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut last_line = String::new();
    let batch = loop {
        let batch = match client.retrieve_openai_batch(id).await {
            Ok(b) => b,
            Err(e) => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                return Err(e.into());
            }
        };
        let c = &batch.request_counts;
        match &bar {
            Some(bar) => {
                bar.set_length(c.total);
                bar.set_position(c.completed + c.failed);
                bar.set_message(batch.status.as_str());
            }
            None => {
                let line = output::openai_progress_line(&batch);
                if line != last_line {
                    if json {
                        eprintln!("{line}");
                    } else {
                        println_out(&line)?;
                    }
                    last_line = line;
                }
            }
        }
        if is_final(batch.status) {
            break batch;
        }
        tokio::time::sleep(interval).await;
    };
    if let Some(bar) = bar {
        bar.finish();
    }
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
