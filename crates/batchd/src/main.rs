//! The `batchd` command: `serve` runs the server; `keys` manages durable API keys; `batches` is
//! a client for the Message Batches API; `test` drives test mode; `webhooks` manages completion
//! webhook endpoints.

mod allocator;
mod cli;

use std::path::PathBuf;

use anyhow::{Context, bail};
use batchd::ServeOptions;
use batchd::storage::{Location, Storage};
use batchd_domain::Timestamp;
use batchd_domain::keys::{self, KeyHash};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// A self-hostable, Anthropic-compatible Message Batches API server.
#[derive(Parser)]
#[command(name = "batchd", version, about)]
struct Cli {
    /// Where the embedded database lives.
    #[arg(
        long,
        global = true,
        env = "BATCHD_DATA_DIR",
        default_value_os_t = ServeOptions::default().data_dir
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

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    // Boxed: the serve options are many times the size of the other commands.
    Serve(Box<ServeArgs>),
    /// Manage API keys stored in the data dir or database (works while a server runs).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Apply the storage schema's migrations and exit (`serve` also applies them on start).
    Migrate,
    /// Use a Message Batches API (batchd or api.anthropic.com) as a client.
    Batches(cli::BatchesArgs),
    /// Drive a batchd server started with `--test-mode`: its virtual clock, the mock's rules and
    /// replayed results, and the reset of a workspace.
    Test(cli::test::TestArgs),
    /// Manage the caller's completion webhook endpoints on a batchd server (batchd's
    /// extension).
    Webhooks(cli::webhooks::WebhooksArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A TOML file with any of these options (keys as the long flags, `_` for `-`); flags and
    /// environment variables take precedence over it.
    #[arg(long, env = "BATCHD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only declares the flags: `ServeOptions::resolve` reads them back from the matches, over
    /// the file.
    #[command(flatten)]
    _options: ServeOptions,
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
        Command::Serve(args) => {
            allocator::start();
            let serve_matches = matches.subcommand_matches("serve").unwrap_or(&matches);
            serve(ServeOptions::resolve(
                args.config.as_deref(),
                serve_matches,
            )?)
            .await
        }
        Command::Keys(cmd) => keys_command(&cli.data_dir, cli.database_url.as_deref(), cmd).await,
        Command::Migrate => migrate(&cli.data_dir, cli.database_url.as_deref()).await,
        Command::Batches(args) => std::process::exit(cli::run(args).await),
        Command::Test(args) => std::process::exit(cli::test::run(args).await),
        Command::Webhooks(args) => std::process::exit(cli::webhooks::run(args).await),
    }
}

async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    // A bad key is reported before the port is taken.
    options.static_keys()?;
    let listener = tokio::net::TcpListener::bind(&options.listen)
        .await
        .with_context(|| format!("binding {}", options.listen))?;
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
    use std::time::Duration;

    use super::*;

    /// The options `batchd ARGV...` would serve with, with `file` as its config file (placed
    /// after `serve` unless ARGV already names `serve`).
    fn resolve_with(
        command: clap::Command,
        argv: &[&str],
        file: &str,
    ) -> anyhow::Result<ServeOptions> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batchd.toml");
        std::fs::write(&path, file).unwrap();
        let p = path.to_str().unwrap().to_owned();
        let mut full = vec!["batchd"];
        if !argv.contains(&"serve") {
            full.push("serve");
        }
        full.extend_from_slice(argv);
        full.extend(["--config", &p]);
        let matches = command.try_get_matches_from(full)?;
        let Command::Serve(args) = Cli::from_arg_matches(&matches)?.command else {
            unreachable!()
        };
        ServeOptions::resolve(
            args.config.as_deref(),
            matches.subcommand_matches("serve").unwrap(),
        )
    }

    fn resolve(argv: &[&str], file: &str) -> anyhow::Result<ServeOptions> {
        resolve_with(Cli::command(), argv, file)
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let options = resolve(
            &["--mock-concurrency", "3"],
            "data_dir = \"/srv/batchd\"\nmock_concurrency = 9\nmock_latency = \"250ms\"\nbatch_expiry = \"2h\"\n",
        )
        .unwrap();
        assert_eq!(options.data_dir, PathBuf::from("/srv/batchd"));
        assert_eq!(options.mock_concurrency, 3, "the flag wins");
        assert_eq!(options.mock_latency, Duration::from_millis(250));
        assert_eq!(options.batch_expiry, Duration::from_secs(7200));
        assert_eq!(options.listen, "127.0.0.1:8080", "untouched default");
    }

    #[test]
    fn a_switch_is_read_from_the_flag_or_the_file() {
        let from_file = resolve(&[], "mock_strict_models = true\n").unwrap();
        assert!(
            from_file.mock_strict_models,
            "an absent flag keeps the file's value"
        );
        let from_flag = resolve(&["--mock-strict-models"], "").unwrap();
        assert!(from_flag.mock_strict_models);
        assert!(
            !resolve(&[], "").unwrap().mock_strict_models,
            "off by default"
        );
    }

    #[test]
    fn test_mode_is_off_unless_the_flag_or_the_file_asks() {
        assert!(!resolve(&[], "").unwrap().test_mode);
        assert!(resolve(&["--test-mode"], "").unwrap().test_mode);
        assert!(resolve(&[], "test_mode = true\n").unwrap().test_mode);
    }

    #[test]
    fn the_environment_beats_the_file() {
        // Setting a variable is unsafe in a threaded test run; point `--listen` at one that is
        // surely set instead.
        let Some(path) = std::env::var("PATH").ok().filter(|p| !p.is_empty()) else {
            return;
        };
        let command = Cli::command().mut_subcommand("serve", |serve| {
            serve.mut_arg("listen", |arg| arg.env("PATH"))
        });
        let options = resolve_with(command, &[], "listen = \"0.0.0.0:9000\"\n").unwrap();
        assert_eq!(options.listen, path, "the variable wins");
        let command = Cli::command().mut_subcommand("serve", |serve| {
            serve.mut_arg("listen", |arg| arg.env("PATH"))
        });
        let options = resolve_with(
            command,
            &["--listen", "[::1]:1"],
            "listen = \"0.0.0.0:9000\"\n",
        )
        .unwrap();
        assert_eq!(options.listen, "[::1]:1", "the flag beats the variable");
    }

    #[test]
    fn database_url_comes_from_the_file_unless_given() {
        let file = "database_url = \"postgres://file/db\"\n";
        let url = |argv: &[&str]| resolve(argv, file).unwrap().database_url;
        assert_eq!(url(&[]).as_deref(), Some("postgres://file/db"));
        assert_eq!(
            url(&["--database-url", "postgres://flag/db", "serve"]).as_deref(),
            Some("postgres://flag/db"),
            "the flag wins"
        );
        assert_eq!(
            resolve(&["--data-dir", "/flag"], "data_dir = \"/file\"\n")
                .unwrap()
                .data_dir,
            PathBuf::from("/flag"),
            "the flag wins"
        );
    }

    #[test]
    fn bad_files_stop_start_up_with_file_line_and_field() {
        let err = resolve(&[], "listen = \"x\"\nbackend = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batchd.toml:2") && err.contains("backend"),
            "{err}"
        );
        let err = resolve(&[], "batch_expiry = \"tomorrow\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `batch_expiry`"), "{err}");
    }

    #[test]
    fn without_a_file_the_flags_beat_the_defaults() {
        let matches = Cli::command()
            .try_get_matches_from(["batchd", "serve", "--concurrency", "7"])
            .unwrap();
        let options =
            ServeOptions::resolve(None, matches.subcommand_matches("serve").unwrap()).unwrap();
        assert_eq!(options.concurrency, 7);
        let defaults = ServeOptions::default();
        assert_eq!(options.batch_expiry, defaults.batch_expiry);
        assert_eq!(options.data_dir, defaults.data_dir);
    }
}
