//! The `batchd` command: `serve` runs the server; `keys` manages durable API keys; `batches` is
//! a client for the Message Batches API.

mod cli;
mod config;

/// glibc's allocator showed up at a tenth of the dispatch profile (many small, short-lived
/// buffers per upstream request, freed on another thread); mimalloc's per-thread free lists fit
/// that pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use batchd::ServeOptions;
use batchd::storage::{Location, Storage};
use batchd_domain::Timestamp;
use batchd_domain::keys::{self, KeyHash, StaticKey};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// A self-hostable, Anthropic-compatible Message Batches API server.
#[derive(Debug, Parser)]
#[command(name = "batchd", version, about)]
struct Cli {
    /// Where the embedded database lives.
    #[arg(
        long,
        global = true,
        env = "BATCHD_DATA_DIR",
        default_value = "./batchd-data"
    )]
    data_dir: PathBuf,
    /// A PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE): keep the data there
    /// instead of the data dir, shared by any number of batchd processes.
    #[arg(
        long,
        global = true,
        env = "BATCHD_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, global = true, env = "BATCHD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server.
    Serve(ServeArgs),
    /// Manage API keys stored in the data dir or database (works while a server runs).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Apply the storage schema's migrations and exit (`serve` also applies them on start).
    Migrate,
    /// Use a Message Batches API (batchd or api.anthropic.com) as a client.
    Batches(cli::BatchesArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// A TOML file with any of these options (keys as the long flags, `_` for `-`); flags and
    /// environment variables take precedence over it.
    #[arg(long, env = "BATCHD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "BATCHD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// An API key and the workspace it belongs to, as KEY@WORKSPACE. Repeatable; the
    /// environment variable takes a comma-separated list.
    #[arg(
        long = "api-key",
        env = "BATCHD_API_KEYS",
        value_delimiter = ',',
        value_name = "KEY@WORKSPACE",
        hide_env_values = true
    )]
    api_keys: Vec<String>,
    /// Simulated model latency per request: 0ms, 250ms, 3s…
    #[arg(long, env = "BATCHD_MOCK_LATENCY", default_value = "0ms", value_parser = parse_duration)]
    mock_latency: Duration,
    /// Requests the mock model works on at once.
    #[arg(long, env = "BATCHD_MOCK_CONCURRENCY", default_value_t = 64)]
    mock_concurrency: usize,
    /// Requests in flight at once across all batches.
    #[arg(long, env = "BATCHD_CONCURRENCY", default_value_t = 256)]
    concurrency: usize,
    /// How long after creation a batch expires.
    #[arg(long, env = "BATCHD_BATCH_EXPIRY", default_value = "24h", value_parser = parse_duration)]
    batch_expiry: Duration,
    /// How long after creation results are kept.
    #[arg(long, env = "BATCHD_RESULTS_RETENTION", default_value = "29d", value_parser = parse_duration)]
    results_retention: Duration,
    /// Public base URL for `results_url` (default: derived from each request's Host header).
    #[arg(long, env = "BATCHD_PUBLIC_URL")]
    public_url: Option<String>,
    /// How long shutdown waits for in-flight requests and open downloads.
    #[arg(long, env = "BATCHD_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// From the config file only.
    #[arg(skip)]
    retry_base_delay: Option<Duration>,
    #[arg(skip)]
    retry_max_delay: Option<Duration>,
    #[arg(skip)]
    backends: Vec<batchd_backends::BackendSpec>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key for a workspace; the key is printed once and stored only as a hash.
    Create {
        #[arg(long)]
        workspace: String,
    },
    /// List keys (ids, workspaces, prefixes; never the keys).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e} (examples: 0ms, 250ms, 3s, 24h, 29d)"))
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal, never into files or CI logs.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve(mut args) => {
            let mut data_dir = cli.data_dir;
            let mut database_url = cli.database_url;
            if let Some(path) = args.config.clone() {
                let serve_matches = matches.subcommand_matches("serve").unwrap_or(&matches);
                apply_config_file(&path, serve_matches, &mut data_dir, &mut args)?;
                apply_database_url(&path, serve_matches, &mut database_url)?;
            }
            serve(data_dir, database_url, args).await
        }
        Command::Keys(cmd) => keys_command(&cli.data_dir, cli.database_url.as_deref(), cmd).await,
        Command::Migrate => migrate(&cli.data_dir, cli.database_url.as_deref()).await,
        Command::Batches(args) => std::process::exit(cli::run(args).await),
    }
}

/// Fills in every option that was given neither as a flag nor in the environment from the file.
fn apply_config_file(
    path: &std::path::Path,
    matches: &ArgMatches,
    data_dir: &mut PathBuf,
    args: &mut ServeArgs,
) -> anyhow::Result<()> {
    let file = config::FileConfig::load(path)?;
    args.backends = file.backend_specs(path)?;
    let unset = |id: &str| {
        !matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let duration = |field: &str, value: &str| config::duration(path, field, value);
    if let Some(v) = file.data_dir.filter(|_| unset("data_dir")) {
        *data_dir = v;
    }
    if let Some(v) = file.listen.filter(|_| unset("listen")) {
        args.listen = v;
    }
    if let Some(v) = file.api_keys.filter(|_| unset("api_keys")) {
        args.api_keys = v;
    }
    if let Some(v) = file.mock_latency.filter(|_| unset("mock_latency")) {
        args.mock_latency = duration("mock_latency", &v)?;
    }
    if let Some(v) = file.mock_concurrency.filter(|_| unset("mock_concurrency")) {
        args.mock_concurrency = v;
    }
    if let Some(v) = file.concurrency.filter(|_| unset("concurrency")) {
        args.concurrency = v;
    }
    if let Some(v) = file.batch_expiry.filter(|_| unset("batch_expiry")) {
        args.batch_expiry = duration("batch_expiry", &v)?;
    }
    if let Some(v) = file
        .results_retention
        .filter(|_| unset("results_retention"))
    {
        args.results_retention = duration("results_retention", &v)?;
    }
    if let Some(v) = file.public_url.filter(|_| unset("public_url")) {
        args.public_url = Some(v);
    }
    if let Some(v) = file.shutdown_grace.filter(|_| unset("shutdown_grace")) {
        args.shutdown_grace = duration("shutdown_grace", &v)?;
    }
    if let Some(v) = &file.retry_base_delay {
        args.retry_base_delay = Some(duration("retry_base_delay", v)?);
    }
    if let Some(v) = &file.retry_max_delay {
        args.retry_max_delay = Some(duration("retry_max_delay", v)?);
    }
    Ok(())
}

/// `database_url` from the config file, unless given as a flag or in the environment.
fn apply_database_url(
    path: &std::path::Path,
    matches: &ArgMatches,
    database_url: &mut Option<String>,
) -> anyhow::Result<()> {
    let given = matches!(
        matches.value_source("database_url"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    if !given && let Some(url) = config::FileConfig::load(path)?.database_url {
        *database_url = Some(url);
    }
    Ok(())
}

async fn serve(
    data_dir: PathBuf,
    database_url: Option<String>,
    args: ServeArgs,
) -> anyhow::Result<()> {
    let mut options = ServeOptions::new(data_dir);
    options.database_url = database_url;
    for spec in args
        .api_keys
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        // Never echo the spec: it contains the key.
        let key = StaticKey::parse(spec)
            .map_err(|e| anyhow::anyhow!("--api-key / BATCHD_API_KEYS: {e}"))?;
        options.api_keys.push(key);
    }
    options.mock_latency = args.mock_latency;
    options.mock_concurrency = args.mock_concurrency;
    options.dispatch_concurrency = args.concurrency;
    options.batch_expiry = args.batch_expiry;
    options.results_retention = args.results_retention;
    options.public_url = args.public_url;
    options.shutdown_grace = args.shutdown_grace;
    options.backends = args.backends;
    if let Some(d) = args.retry_base_delay {
        options.retry_base_delay = d;
    }
    if let Some(d) = args.retry_max_delay {
        options.retry_max_delay = d;
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    batchd::serve(options, listener, shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn location<'a>(data_dir: &'a std::path::Path, database_url: Option<&'a str>) -> Location<'a> {
    Location {
        data_dir,
        database_url,
    }
}

async fn migrate(data_dir: &std::path::Path, database_url: Option<&str>) -> anyhow::Result<()> {
    let at = location(data_dir, database_url);
    // Opening applies the migrations, as `serve` does on start.
    Storage::open_for_admin(at).await?.close().await;
    eprintln!("The {} is migrated and ready.", at.describe());
    Ok(())
}

async fn keys_command(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    cmd: KeysCommand,
) -> anyhow::Result<()> {
    let storage = Storage::open_for_admin(location(data_dir, database_url)).await?;
    let store = storage.store();
    match cmd {
        KeysCommand::Create { workspace } => {
            if !keys::valid_workspace(&workspace) {
                bail!("workspace names are 1-64 characters of [A-Za-z0-9_.-]");
            }
            let key = keys::generate_key();
            let info = store
                .create_key(
                    &workspace,
                    KeyHash::of(&key),
                    &keys::display_prefix(&key),
                    Timestamp::now(),
                )
                .await?;
            eprintln!(
                "Created key {} for workspace {workspace}. It is shown only this once:",
                info.id
            );
            println!("{key}");
        }
        KeysCommand::List => {
            println!(
                "{:<28} {:<20} {:<18} {:<34} REVOKED",
                "ID", "WORKSPACE", "PREFIX", "CREATED"
            );
            for k in store.list_keys().await? {
                println!(
                    "{:<28} {:<20} {:<18} {:<34} {}",
                    k.id,
                    k.workspace,
                    k.prefix,
                    k.created_at,
                    k.revoked_at
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        KeysCommand::Revoke { id } => {
            if !store.revoke_key(&id, Timestamp::now()).await? {
                bail!("no active key with id {id}");
            }
            eprintln!("Revoked key {id}.");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(argv: &[&str], file: &str) -> anyhow::Result<(PathBuf, ServeArgs)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batchd.toml");
        std::fs::write(&path, file).unwrap();
        let mut full = vec!["batchd", "serve", "--config"];
        let p = path.to_str().unwrap().to_owned();
        full.push(&p);
        full.extend_from_slice(argv);
        let matches = Cli::command().try_get_matches_from(full)?;
        let cli = Cli::from_arg_matches(&matches)?;
        let Command::Serve(mut args) = cli.command else {
            unreachable!()
        };
        let mut data_dir = cli.data_dir;
        apply_config_file(
            &path,
            matches.subcommand_matches("serve").unwrap(),
            &mut data_dir,
            &mut args,
        )?;
        Ok((data_dir, args))
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let (data_dir, args) = serve_args(
            &["--mock-concurrency", "3"],
            "data_dir = \"/srv/batchd\"\nmock_concurrency = 9\nmock_latency = \"250ms\"\nbatch_expiry = \"2h\"\n",
        )
        .unwrap();
        assert_eq!(data_dir, PathBuf::from("/srv/batchd"));
        assert_eq!(args.mock_concurrency, 3, "the flag wins");
        assert_eq!(args.mock_latency, Duration::from_millis(250));
        assert_eq!(args.batch_expiry, Duration::from_secs(7200));
        assert_eq!(args.listen, "127.0.0.1:8080", "untouched default");
    }

    #[test]
    fn database_url_comes_from_the_file_unless_given() {
        let url = |argv: &[&str]| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("batchd.toml");
            std::fs::write(&path, "database_url = \"postgres://file/db\"\n").unwrap();
            let p = path.to_str().unwrap().to_owned();
            let mut full = vec!["batchd"];
            full.extend_from_slice(argv);
            full.extend(["serve", "--config", &p]);
            let matches = Cli::command().try_get_matches_from(full).unwrap();
            let cli = Cli::from_arg_matches(&matches).unwrap();
            let mut database_url = cli.database_url;
            apply_database_url(
                &path,
                matches.subcommand_matches("serve").unwrap(),
                &mut database_url,
            )
            .unwrap();
            database_url
        };
        assert_eq!(url(&[]).as_deref(), Some("postgres://file/db"));
        assert_eq!(
            url(&["--database-url", "postgres://flag/db"]).as_deref(),
            Some("postgres://flag/db"),
            "the flag wins"
        );
    }

    #[test]
    fn bad_files_stop_start_up_with_file_line_and_field() {
        let err = serve_args(&[], "listen = \"x\"\nbackend = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batchd.toml:2") && err.contains("backend"),
            "{err}"
        );
        let err = serve_args(&[], "batch_expiry = \"tomorrow\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `batch_expiry`"), "{err}");
    }
}
