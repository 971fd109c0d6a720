//! `batchd batches …`: a command-line client for the Message Batches API, built on
//! `batchd-client`. It works against batchd and against api.anthropic.com. It also drives the
//! OpenAI Batch API batchd serves: `create --surface openai` uploads the file and creates the
//! batch on `/v1/batches`, `list --surface openai` lists those batches, and `get`, `watch`,
//! `results` and `cancel` take either kind of id (`batch_…` is an OpenAI batch). `batchd test …`
//! ([`test`]) drives a batchd server's test mode, and `batchd webhooks …` ([`webhooks`]) its
//! webhook endpoints, with the same connection options.
//!
//! Output is human-readable by default (aligned fields, tables); `--json` prints the API's JSON
//! objects, one per line. Results are always JSONL, exactly as downloaded. API errors print
//! `error: <type>: <message> (request-id …)` on stderr and exit 1; usage errors exit 2.

mod follow;
mod input;
mod openai_surface;
mod output;
pub mod test;
pub mod webhooks;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use batchd_client::{
    Client, CreateBatch, ListParams, MessageBatch, OpenAiListParams, ProcessingStatus,
};
use clap::{Args, Subcommand, ValueEnum};
use futures_util::StreamExt;

/// Where the API is and how to call it: shared by `batches`, `test` and `webhooks`.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// API base URL (batchd, or https://api.anthropic.com).
    #[arg(
        long,
        global = true,
        env = "ANTHROPIC_BASE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    base_url: String,
    /// API key (required).
    #[arg(long, global = true, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Retries of failed calls that the API marks retryable (as the SDKs do).
    #[arg(long, global = true, default_value_t = 2)]
    max_retries: u32,
    /// Print the API's JSON objects instead of human-readable output.
    #[arg(long, global = true)]
    json: bool,
}

impl ApiArgs {
    /// The API key, or the usage error (exit 2) when none was given.
    fn key_or_exit(&self) -> String {
        let Some(api_key) = self.api_key.clone().filter(|k| !k.trim().is_empty()) else {
            clap::Error::raw(
                clap::error::ErrorKind::MissingRequiredArgument,
                "an API key is required: pass --api-key or set ANTHROPIC_API_KEY\n",
            )
            .exit();
        };
        api_key
    }

    fn client(&self, api_key: String) -> batchd_client::ClientBuilder {
        Client::builder(self.base_url.clone(), api_key).max_retries(self.max_retries)
    }
}

/// The exit code of a command's outcome: 0, or 1 with the error on stderr (a closed stdout is
/// not an error).
fn exit_code(outcome: Result<()>) -> i32 {
    match outcome {
        Ok(()) => 0,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            1
        }
    }
}

/// Options shared by every `batches` command.
#[derive(Debug, Args)]
pub struct BatchesArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Use the beta namespace: `?beta=true` and `anthropic-beta: message-batches-2024-09-24`.
    #[arg(long, global = true)]
    beta: bool,
    #[command(subcommand)]
    command: BatchesCommand,
}

#[derive(Debug, Subcommand)]
enum BatchesCommand {
    /// Create a batch from a JSONL file: one {"custom_id","params"} per line, or OpenAI batch
    /// lines for /v1/chat/completions (converted to Messages params).
    Create {
        /// The JSONL file (`-` for stdin).
        #[arg(long, short)]
        file: PathBuf,
        /// `openai`: upload the file as it is (purpose `batch`) and create the batch on
        /// `/v1/batches`, for the endpoint its first line names.
        #[arg(long, value_enum, default_value_t = Surface::Anthropic)]
        surface: Surface,
    },
    /// List batches, newest first.
    List {
        /// Page size (1-1000; the server's default is 20).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
        /// Follow the pages to the end (with --json: one batch per line).
        #[arg(long)]
        all: bool,
        /// Start after this batch (older batches).
        #[arg(long, conflicts_with = "before_id")]
        after_id: Option<String>,
        /// Start before this batch (newer batches; Anthropic surface only).
        #[arg(long)]
        before_id: Option<String>,
        /// Which surface's batches to list.
        #[arg(long, value_enum, default_value_t = Surface::Anthropic)]
        surface: Surface,
    },
    /// Show one batch.
    Get { id: String },
    /// Cancel a batch.
    Cancel { id: String },
    /// Re-run an ended batch's unfinished requests as a new batch (batchd's extension).
    Rerun {
        id: String,
        /// Only requests whose result had one of these types (comma-separated; default:
        /// errored, expired and canceled).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<ResultKind>,
    },
    /// Delete an ended batch.
    Delete { id: String },
    /// Download the results (JSONL) of an ended batch.
    Results {
        id: String,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Only results of this type.
        #[arg(long, value_enum)]
        only: Option<ResultKind>,
    },
    /// Poll a batch until it has ended, showing progress; then print its counts.
    Watch {
        id: String,
        /// Time between polls.
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: Duration,
    },
}

/// The API a batch lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Surface {
    /// The Message Batches API (`/v1/messages/batches`).
    Anthropic,
    /// The OpenAI Batch API (`/v1/files`, `/v1/batches`).
    Openai,
}

impl Surface {
    /// The surface of a batch id: OpenAI batch ids start with `batch_`.
    fn of(id: &str) -> Self {
        if id.starts_with("batch_") {
            Self::Openai
        } else {
            Self::Anthropic
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ResultKind {
    Succeeded,
    Errored,
    Canceled,
    Expired,
}

impl ResultKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Errored => "errored",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
        }
    }
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (e.g. 500ms, 1s, 1m)"))?;
    if d.is_zero() {
        return Err("the interval must be positive".into());
    }
    Ok(d)
}

/// Runs a `batches` command; returns the process exit code (usage errors exit from here).
pub async fn run(args: BatchesArgs) -> i32 {
    let api_key = args.api.key_or_exit();
    exit_code(execute(args, api_key).await)
}

async fn execute(args: BatchesArgs, api_key: String) -> Result<()> {
    let client = args.api.client(api_key).beta_namespace(args.beta).build()?;
    let json = args.api.json;
    match args.command {
        BatchesCommand::Create {
            file,
            surface: Surface::Anthropic,
        } => create(&client, &file, json).await,
        BatchesCommand::Create {
            file,
            surface: Surface::Openai,
        } => openai_surface::create(&client, &file, json).await,
        BatchesCommand::List {
            limit,
            all,
            after_id,
            before_id,
            surface: Surface::Openai,
        } => {
            if before_id.is_some() {
                anyhow::bail!("--before-id is not available with --surface openai");
            }
            let params = OpenAiListParams {
                limit,
                after: after_id,
            };
            openai_surface::list(&client, params, all, json).await
        }
        BatchesCommand::List {
            limit,
            all,
            after_id,
            before_id,
            surface: Surface::Anthropic,
        } => {
            let params = ListParams {
                limit,
                before_id,
                after_id,
            };
            list(&client, params, all, json).await
        }
        BatchesCommand::Get { id } if Surface::of(&id) == Surface::Openai => {
            openai_surface::print_batch(&client.retrieve_openai_batch(&id).await?, json)
        }
        BatchesCommand::Get { id } => print_batch(&client.retrieve(&id).await?, json),
        BatchesCommand::Cancel { id } if Surface::of(&id) == Surface::Openai => {
            openai_surface::print_batch(&client.cancel_openai_batch(&id).await?, json)
        }
        BatchesCommand::Cancel { id } => print_batch(&client.cancel(&id).await?, json),
        BatchesCommand::Delete { id } if Surface::of(&id) == Surface::Openai => {
            anyhow::bail!("{id} is an OpenAI batch: the OpenAI Batch API has no delete")
        }
        BatchesCommand::Rerun { id, only } => {
            let only: Vec<&str> = only.iter().map(|k| k.as_str()).collect();
            print_batch(&client.rerun(&id, &only).await?, json)
        }
        BatchesCommand::Delete { id } => {
            let deleted = client.delete(&id).await?;
            if json {
                println_out(&serde_json::to_string(&deleted)?)
            } else {
                println_out(&format!("deleted {}", deleted.id))
            }
        }
        BatchesCommand::Results { id, output, only } if Surface::of(&id) == Surface::Openai => {
            openai_surface::results(&client, &id, output.as_deref(), only).await
        }
        BatchesCommand::Results { id, output, only } => {
            results(&client, &id, output.as_deref(), only).await
        }
        BatchesCommand::Watch { id, interval } if Surface::of(&id) == Surface::Openai => {
            openai_surface::watch(&client, &id, interval, json).await
        }
        BatchesCommand::Watch { id, interval } => watch(&client, &id, interval, json).await,
    }
}

async fn create(client: &Client, file: &std::path::Path, json: bool) -> Result<()> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let parsed = input::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if parsed.converted > 0 && !json {
        eprintln!(
            "converted {} OpenAI chat completion request(s) to Messages params",
            parsed.converted
        );
    }
    let batch = client
        .create(&CreateBatch {
            requests: parsed.requests,
        })
        .await?;
    print_batch(&batch, json)
}

async fn list(client: &Client, params: ListParams, all: bool, json: bool) -> Result<()> {
    if all {
        return print_every(client.list_all(params), json, output::batch_table).await;
    }
    let page = client.list(&params).await?;
    if json {
        return println_out(&serde_json::to_string(&page)?);
    }
    print_out(&output::batch_table(&page.data))?;
    if page.has_more {
        let hint = if params.before_id.is_some() {
            format!("--before-id {}", page.first_id.unwrap_or_default())
        } else {
            format!("--after-id {}", page.last_id.unwrap_or_default())
        };
        eprintln!("(more batches: use --all, or {hint})");
    }
    Ok(())
}

async fn results(
    client: &Client,
    id: &str,
    path: Option<&std::path::Path>,
    only: Option<ResultKind>,
) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[allow(dead_code)]
        custom_id: String,
        result: ProbeResult,
    }
    #[derive(serde::Deserialize)]
    struct ProbeResult {
        #[serde(rename = "type")]
        kind: String,
    }

    let mut lines = client.results_lines(id).await?;
    let mut sink = follow::Sink::open(path).await?;
    while let Some(line) = lines.next().await {
        let line = line?;
        let probe: Probe = serde_json::from_slice(&line.bytes)
            .with_context(|| format!("results line {} is not a result object", line.number))?;
        let keep = only.is_none_or(|k| k.as_str() == probe.result.kind);
        sink.offer(&line.bytes, keep).await?;
    }
    sink.finish(path, only).await
}

async fn watch(client: &Client, id: &str, interval: Duration, json: bool) -> Result<()> {
    let fetch = || async { Ok(client.retrieve(id).await?) };
    let batch = follow::until_ended(id, interval, json, fetch, |b: &MessageBatch| {
        let c = &b.request_counts;
        follow::Progress {
            total: c.total(),
            done: c.total() - c.processing,
            status: b.processing_status.as_str(),
            line: output::progress_line(b),
            ended: b.processing_status == ProcessingStatus::Ended,
        }
    })
    .await?;
    if json {
        return println_out(&serde_json::to_string(&batch)?);
    }
    let c = &batch.request_counts;
    println_out(&format!(
        "{} ended: {} requests: succeeded {}, errored {}, canceled {}, expired {}",
        batch.id,
        c.total(),
        c.succeeded,
        c.errored,
        c.canceled,
        c.expired
    ))
}

fn print_batch(batch: &MessageBatch, json: bool) -> Result<()> {
    if json {
        println_out(&serde_json::to_string(batch)?)
    } else {
        print_out(&output::batch_fields(batch))
    }
}

/// Prints every batch a `--all` listing yields: each as one JSON line as it arrives with
/// `json`, else one table at the end. Shared by both surfaces.
async fn print_every<T, E>(
    mut batches: impl futures_util::Stream<Item = std::result::Result<T, E>> + Unpin,
    json: bool,
    table: fn(&[T]) -> String,
) -> Result<()>
where
    T: serde::Serialize,
    E: std::error::Error + Send + Sync + 'static,
{
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
        print_out(&table(&collected))?;
    }
    Ok(())
}

fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn println_out(text: &str) -> Result<()> {
    print_out(&format!("{text}\n"))
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, skipping causes already spelled out by their parent.
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
