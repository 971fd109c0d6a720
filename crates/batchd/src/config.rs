//! The options of `batchd serve`: one struct that clap reads from flags and `BATCHD_*` variables
//! and serde reads from the `--config` TOML file, one [`Default`], and the merge of the three
//! ([`ServeOptions::resolve`]). Precedence, highest first: command-line flag, environment
//! variable, the file, the default. The file's keys are the long names of the flags, with `_`
//! for `-`; unknown keys are refused, and every error names the file, the line and the field.
//! The file is checked whole: a malformed value stops start-up even where a flag overrides it.
//!
//! The file is also the only place for `[[backends]]`: the model servers requests go to, by
//! model name (see `batchd_backends::config` for the keys). Without any, every model goes to the
//! built-in mock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use batchd_backends::{BackendConfig, BackendSpec};
use batchd_domain::keys::{self, StaticKey};
use batchd_http::HttpConfig;
use batchd_http::quota::QuotaConfig;
pub use batchd_http::quota::WorkspaceLimits;
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
use serde::{Deserialize, Deserializer};

/// Everything `batchd serve` can be told. Each option's default is in [`Default`]; the crates
/// that use a setting (the dispatcher, the HTTP layer) own its value there.
#[derive(Clone, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeOptions {
    /// Where the embedded SQLite database lives, unless `database_url` is set. A global flag
    /// (`keys` and `migrate` read it too), declared on the command and merged by `resolve`.
    #[arg(skip)]
    pub data_dir: PathBuf,
    /// A PostgreSQL URL: the data lives there, shared with other batchd processes. Global like
    /// `data_dir`.
    #[arg(skip)]
    pub database_url: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "BATCHD_LISTEN", default_value_t = ServeOptions::default().listen)]
    pub listen: String,
    /// A PEM file with the server's certificate chain, leaf first: with `--tls-key`, serve
    /// HTTPS. Both files are read again on SIGHUP.
    #[arg(long, env = "BATCHD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// A PEM file with the private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "BATCHD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// An API key and the workspace it belongs to, as KEY@WORKSPACE. Repeatable; the
    /// environment variable takes a comma-separated list.
    // Kept as given and parsed on start, so that an empty entry is skipped and an error never
    // echoes the key. Prefer `BATCHD_API_KEYS` or `batchd keys` to the file for real secrets.
    #[arg(
        long = "api-key",
        env = "BATCHD_API_KEYS",
        value_delimiter = ',',
        value_name = "KEY@WORKSPACE",
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Simulated model latency per request: 0ms, 250ms, 3s…
    #[arg(
        long,
        env = "BATCHD_MOCK_LATENCY",
        default_value = shown(ServeOptions::default().mock_latency),
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "duration")]
    pub mock_latency: Duration,
    /// Requests the mock model works on at once.
    #[arg(long, env = "BATCHD_MOCK_CONCURRENCY", default_value_t = ServeOptions::default().mock_concurrency)]
    pub mock_concurrency: usize,
    /// Have the built-in mock answer a model the API does not list with `not_found_error`, as
    /// the API does; off, it answers any model name.
    #[arg(long, env = "BATCHD_MOCK_STRICT_MODELS")]
    pub mock_strict_models: bool,
    /// Test mode: answer the `/v1/batchd/test/...` routes (a virtual clock per workspace, its
    /// reset), for testing code that uses batches. Never on a server real clients use: any key
    /// may then end its workspace's batches early or delete them all.
    // Boolish, so that `BATCHD_TEST_MODE=1` (and `yes`, `on`) turns it on as well as `true`.
    #[arg(long, env = "BATCHD_TEST_MODE", value_parser = clap::builder::BoolishValueParser::new())]
    pub test_mode: bool,
    /// Let webhook endpoints use `http://` (for local receivers and tests).
    #[arg(long, env = "BATCHD_WEBHOOK_ALLOW_HTTP")]
    pub webhook_allow_http: bool,
    /// Let webhook endpoints point at loopback, private, link-local or metadata addresses
    /// (for local receivers and tests): off, such destinations are refused at create and at send.
    #[arg(long, env = "BATCHD_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Requests in flight at once across all batches.
    #[arg(long, env = "BATCHD_CONCURRENCY", default_value_t = ServeOptions::default().concurrency)]
    pub concurrency: usize,
    /// How long after creation a batch expires.
    #[arg(
        long,
        env = "BATCHD_BATCH_EXPIRY",
        default_value = shown(ServeOptions::default().batch_expiry),
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "duration")]
    pub batch_expiry: Duration,
    /// How long after creation results are kept.
    #[arg(
        long,
        env = "BATCHD_RESULTS_RETENTION",
        default_value = shown(ServeOptions::default().results_retention),
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "duration")]
    pub results_retention: Duration,
    /// Public base URL for `results_url` (default: derived from each request's Host header).
    #[arg(long, env = "BATCHD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How long shutdown waits for in-flight requests and open downloads.
    #[arg(
        long,
        env = "BATCHD_SHUTDOWN_GRACE",
        default_value = shown(ServeOptions::default().shutdown_grace),
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Connections open at once; beyond it new connections wait in the kernel's backlog until
    /// one closes.
    #[arg(long, env = "BATCHD_MAX_CONNECTIONS", default_value_t = ServeOptions::default().max_connections)]
    pub max_connections: usize,
    /// How long a client may take to send a request's headers; also how long a keep-alive
    /// connection may stay idle between requests. The connection is closed after it.
    #[arg(
        long,
        env = "BATCHD_HEADER_TIMEOUT",
        default_value = shown(ServeOptions::default().header_timeout),
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "duration")]
    pub header_timeout: Duration,
    /// How long a create body may wait for the client before it must arrive at the minimum
    /// rate (64 KiB/s on average); a slower body is refused with 400 (`request_body_timeout`) and
    /// nothing is created.
    #[arg(
        long,
        env = "BATCHD_BODY_TIMEOUT",
        default_value = shown(ServeOptions::default().body_timeout),
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
    /// Creates processed at once; each holds a blocking thread and up to ~16 MB while its body
    /// streams in. Beyond it a create waits up to `create_queue_timeout` for a slot, then gets
    /// 529 `overloaded_error` with `retry-after`.
    #[arg(long, env = "BATCHD_MAX_CONCURRENT_CREATES", default_value_t = ServeOptions::default().max_concurrent_creates)]
    pub max_concurrent_creates: usize,
    /// How long a create beyond `max_concurrent_creates` waits for a slot before the 529.
    #[arg(
        long,
        env = "BATCHD_CREATE_QUEUE_TIMEOUT",
        default_value = shown(ServeOptions::default().create_queue_timeout),
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "duration")]
    pub create_queue_timeout: Duration,
    /// Requests a workspace may have waiting to be processed; a create that would go over it
    /// is refused with 429. `[workspaces.NAME]` in the file sets it per workspace.
    #[arg(long, env = "BATCHD_QUEUE_CAP", default_value_t = ServeOptions::default().queue_cap)]
    pub queue_cap: u64,
    /// Batch API calls a workspace may make per minute, in this process; 0 means no limit.
    /// `[workspaces.NAME]` in the file sets it per workspace.
    #[arg(long, env = "BATCHD_RATE_LIMIT", default_value_t = ServeOptions::default().rate_limit)]
    pub rate_limit: u32,
    /// Failed authentications from one client address after which it is refused (429) for the
    /// rest of the window; 0 turns this off.
    #[arg(long, env = "BATCHD_AUTH_FAILURE_LIMIT", default_value_t = ServeOptions::default().auth_failure_limit)]
    pub auth_failure_limit: u32,
    /// The window in which failed authentications from one address are counted.
    #[arg(
        long,
        env = "BATCHD_AUTH_FAILURE_WINDOW",
        default_value = shown(ServeOptions::default().auth_failure_window),
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "duration")]
    pub auth_failure_window: Duration,
    /// An `anthropic-beta` name to accept beyond the published ones, so that a new beta needs no
    /// release: forwarded upstream, unlocking no field. Repeatable; the environment variable
    /// takes a comma-separated list.
    #[arg(
        long = "extra-beta",
        env = "BATCHD_EXTRA_BETAS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub extra_betas: Vec<String>,
    /// Largest file `POST /v1/files` accepts, in bytes (the OpenAI API's limit for batch
    /// input files by default).
    #[arg(long, env = "BATCHD_OPENAI_MAX_FILE_BYTES", default_value_t = ServeOptions::default().openai_max_file_bytes)]
    pub openai_max_file_bytes: u64,
    /// Most requests (lines) in one OpenAI batch input file.
    #[arg(long, env = "BATCHD_OPENAI_MAX_FILE_LINES", default_value_t = ServeOptions::default().openai_max_file_lines)]
    pub openai_max_file_lines: u64,
    /// Require every line of an OpenAI batch to name the model of its first line, as the
    /// hosted API does (`model_mismatch`); off, a batch may mix models.
    #[arg(long, env = "BATCHD_SINGLE_MODEL_BATCHES")]
    pub single_model_batches: bool,
    /// Limits of single workspaces, over `queue_cap` and `rate_limit`: the file's
    /// `[workspaces.NAME]` tables. From the file only.
    #[arg(skip)]
    pub workspaces: BTreeMap<String, WorkspaceLimits>,
    /// Back-off before the second upstream attempt; doubles per attempt up to the maximum. From
    /// the file only.
    #[arg(skip)]
    #[serde(deserialize_with = "duration")]
    pub retry_base_delay: Duration,
    /// Longest back-off between two upstream attempts. From the file only.
    #[arg(skip)]
    #[serde(deserialize_with = "duration")]
    pub retry_max_delay: Duration,
    /// Nominal delay before a failed webhook delivery's first retry; later ones double from it.
    /// From the file only (tests shorten it).
    #[arg(skip)]
    #[serde(deserialize_with = "duration")]
    pub webhook_first_retry: Duration,
    /// Connect and answer timeout of one webhook delivery attempt. From the file only (tests
    /// shorten it).
    #[arg(skip)]
    #[serde(deserialize_with = "duration")]
    pub webhook_send_timeout: Duration,
    /// Largest accepted create body. Not an option of the command; tests lower it.
    #[arg(skip)]
    #[serde(skip)]
    pub max_create_bytes: u64,
    /// Model servers by model name; empty means every model goes to the built-in mock. Read
    /// from the file's `[[backends]]`, once their keys are read.
    #[arg(skip)]
    #[serde(skip)]
    pub backends: Vec<BackendSpec>,
    /// The `[[backends]]` entries as written, until [`ServeOptions::load`] resolves them into
    /// `backends` (with the line of each entry at hand for errors).
    #[arg(skip)]
    #[serde(rename = "backends")]
    backend_entries: Vec<BackendConfig>,
}

/// Opaque, as `api_keys` holds keys.
impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions").finish_non_exhaustive()
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        let dispatch = batchd_dispatcher::Config::default();
        let http = HttpConfig::default();
        let listen = crate::listen::Limits::default();
        let quotas = http.quotas.clone();
        Self {
            data_dir: PathBuf::from("./batchd-data"),
            database_url: None,
            listen: "127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
            api_keys: Vec::new(),
            mock_latency: Duration::ZERO,
            mock_concurrency: 64,
            mock_strict_models: false,
            // Off unless asked for: it gives every key powers over its workspace that no client
            // of the real API has.
            test_mode: false,
            webhook_allow_http: http.webhooks.allow_http,
            webhook_allow_private: http.webhooks.allow_private,
            concurrency: dispatch.concurrency,
            batch_expiry: http.batch_expiry,
            results_retention: dispatch.results_retention,
            public_url: http.public_url,
            shutdown_grace: Duration::from_secs(30),
            max_connections: listen.max_connections,
            header_timeout: listen.header_timeout,
            body_timeout: http.body_timeout,
            max_concurrent_creates: http.max_concurrent_creates,
            create_queue_timeout: http.create_queue_timeout,
            openai_max_file_bytes: http.openai.max_file_bytes,
            openai_max_file_lines: http.openai.max_file_lines,
            single_model_batches: http.openai.single_model_batches,
            queue_cap: quotas.queue_cap,
            rate_limit: quotas.rate_limit,
            auth_failure_limit: quotas.auth_failure_limit,
            auth_failure_window: quotas.auth_failure_window,
            workspaces: quotas.workspaces,
            extra_betas: http.extra_betas,
            retry_base_delay: dispatch.retry_base_delay,
            retry_max_delay: dispatch.retry_max_delay,
            webhook_first_retry: batchd_webhooks::worker::Config::default().first_retry,
            webhook_send_timeout: batchd_webhooks::worker::Config::default().send_timeout,
            max_create_bytes: http.max_create_bytes,
            backends: Vec::new(),
            backend_entries: Vec::new(),
        }
    }
}

impl ServeOptions {
    /// Defaults for everything but the data directory.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            ..Self::default()
        }
    }

    /// Merges the options of a `serve` command line: its flags and environment variables over
    /// the file (when `file` is given) over the defaults. `matches` are the `serve`
    /// subcommand's, which also carry the global `--data-dir` and `--database-url`.
    pub fn resolve(file: Option<&Path>, matches: &ArgMatches) -> anyhow::Result<Self> {
        let mut options = match file {
            Some(path) => Self::load(path)?,
            None => Self::default(),
        };
        // clap fills in every flag that was not given with its default, which must not hide the
        // file's value: keep only what came from the command line or the environment.
        let mut given = matches.clone();
        let defaulted: Vec<String> = given
            .ids()
            .filter(|id| {
                !matches!(
                    given.value_source(id.as_str()),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            })
            .map(|id| id.as_str().to_owned())
            .collect();
        for id in defaulted {
            given.try_clear_id(&id)?;
        }
        options.update_from_arg_matches(&given)?;
        if let Some(dir) = given.get_one::<PathBuf>("data_dir") {
            options.data_dir = dir.clone();
        }
        if let Some(url) = given.get_one::<String>("database_url") {
            options.database_url = Some(url.clone());
        }
        Ok(options)
    }

    /// The `--api-key` entries, parsed; empty entries (a trailing comma) are skipped. Errors
    /// never echo an entry: it holds the key.
    pub fn static_keys(&self) -> anyhow::Result<Vec<StaticKey>> {
        self.api_keys
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|spec| {
                StaticKey::parse(spec)
                    .map_err(|e| anyhow!("--api-key / BATCHD_API_KEYS / api_keys: {e}"))
            })
            .collect()
    }

    /// Reads a config file over the defaults, and checks and resolves its `[[backends]]`.
    fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let mut options: Self = toml::from_str(&text).map_err(|err| located(path, &text, err))?;
        options.backends =
            resolve_backends(path, &text, std::mem::take(&mut options.backend_entries))?;
        if let Some(name) = options
            .workspaces
            .keys()
            .find(|n| !keys::valid_workspace(n))
        {
            return Err(anyhow!(
                "{}: [workspaces.{name}]: workspace names are 1-64 characters of [A-Za-z0-9_.-]",
                path.display()
            ));
        }
        Ok(options)
    }

    /// The quota settings the HTTP layer takes.
    pub fn quotas(&self) -> QuotaConfig {
        QuotaConfig {
            queue_cap: self.queue_cap,
            rate_limit: self.rate_limit,
            workspaces: self.workspaces.clone(),
            auth_failure_limit: self.auth_failure_limit,
            auth_failure_window: self.auth_failure_window,
        }
    }
}

/// A file's parse error as FILE:LINE: field `KEY`: message.
fn located(path: &Path, text: &str, err: toml::de::Error) -> anyhow::Error {
    let line = err
        .span()
        .map(|span| {
            format!(
                ":{}",
                text[..span.start.min(text.len())].matches('\n').count() + 1
            )
        })
        .unwrap_or_default();
    // Without the input to quote, toml ends its message with the path of the key instead.
    let mut bare = err.clone();
    bare.set_input(None);
    let field = bare
        .to_string()
        .lines()
        .last()
        .and_then(|l| Some(format!("field {}: ", l.strip_prefix("in ")?)))
        .unwrap_or_default();
    anyhow!("{}{line}: {field}{}", path.display(), err.message())
}

/// Checks every `[[backends]]` entry and reads its key. Errors name the file, the line of the
/// entry's `[[backends]]` header, the backend and the field.
fn resolve_backends(
    path: &Path,
    text: &str,
    entries: Vec<BackendConfig>,
) -> anyhow::Result<Vec<BackendSpec>> {
    let headers: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.trim_start().starts_with("[[backends]]"))
        .map(|(i, _)| i + 1)
        .collect();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let name = entry.name.clone();
            entry.resolve().map_err(|e| {
                let line = headers.get(i).map(|l| format!(":{l}")).unwrap_or_default();
                anyhow!("{}{line}: backend `{name}`: {e}", path.display())
            })
        })
        .collect()
}

/// Parses a duration as flags, variables and the file write them.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e} (examples: 0ms, 250ms, 3s, 24h, 29d)"))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// A default duration as `--help` shows it: in the largest unit that gives a whole number
/// above one, as people write them (24h rather than 1d). clap keeps it for the life of the
/// process, and builds the command once.
fn shown(d: Duration) -> &'static str {
    let ms = d.as_millis();
    let units = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ];
    let text = units
        .iter()
        .find(|(_, size)| ms.is_multiple_of(*size) && ms / size > 1)
        .map(|(unit, size)| format!("{}{unit}", ms / size))
        .unwrap_or_else(|| format!("{ms}ms"));
    text.leak()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<ServeOptions> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batchd.toml");
        std::fs::write(&path, text).unwrap();
        ServeOptions::load(&path)
    }

    #[test]
    fn reads_every_serve_option() {
        let c = load(
            "listen = \"0.0.0.0:9000\"\nmock_latency = \"250ms\"\nmock_concurrency = 8\napi_keys = [\"k@w\"]\nretry_base_delay = \"2s\"\nmax_connections = 100\nheader_timeout = \"5s\"\nbody_timeout = \"1m\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nqueue_cap = 1000\nrate_limit = 60\nauth_failure_limit = 3\nauth_failure_window = \"5m\"\nextra_betas = [\"new-beta-2030-01-01\"]\n",
        )
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.mock_latency, Duration::from_millis(250));
        assert_eq!(c.mock_concurrency, 8);
        assert_eq!(c.api_keys, vec!["k@w".to_owned()]);
        assert_eq!(c.extra_betas, vec!["new-beta-2030-01-01".to_owned()]);
        assert_eq!(c.retry_base_delay, Duration::from_secs(2));
        assert_eq!(c.max_connections, 100);
        assert_eq!(c.header_timeout, Duration::from_secs(5));
        assert_eq!(c.body_timeout, Duration::from_secs(60));
        assert_eq!(c.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(c.tls_key, Some(PathBuf::from("k.pem")));
        assert_eq!((c.queue_cap, c.rate_limit), (1000, 60));
        assert_eq!(c.auth_failure_limit, 3);
        assert_eq!(c.auth_failure_window, Duration::from_secs(300));
        assert_eq!(
            c.concurrency,
            ServeOptions::default().concurrency,
            "a key left out keeps its default"
        );
    }

    #[test]
    fn backends_are_read_and_checked() {
        let err = load(
            "concurrency = 8\n\n[[backends]]\nname = \"vllm\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:8000\"\nmodels = [\"qwen*\"]\ntimeout = \"30s\"\n\n[[backends]]\nname = \"claude\"\nkind = \"anthropic\"\nbase_url = \"https://api.anthropic.com\"\napi_key_env = \"BATCHD_TEST_SURELY_UNSET\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("batchd.toml:10: backend `claude`: field `api_key_env`"),
            "{err}"
        );
        let ok = load(
            "[[backends]]\nname = \"vllm\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:8000\"\n",
        )
        .unwrap();
        assert_eq!(ok.backends.len(), 1);
        assert_eq!(ok.backends[0].name, "vllm");
        // A kind that does not exist is caught by the parser, with its line.
        let err = load("[[backends]]\nname = \"x\"\nkind = \"grpc\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batchd.toml:3:") && err.contains("grpc"),
            "{err}"
        );
        let mock = load("[[backends]]\nname = \"strict\"\nkind = \"mock\"\nstrict_models = true\n")
            .unwrap();
        assert!(mock.backends[0].strict_models);
        assert!(!ok.backends[0].strict_models, "off unless asked for");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let err = load("listen = \"x\"\n\nmock_concurency = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("batchd.toml:3:"), "{err}");
        assert!(err.contains("mock_concurency"), "{err}");
        let err = load("mock_concurrency = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("batchd.toml:1:"), "{err}");
        let err = load("listen = \"x\"\nbatch_expiry = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batchd.toml:2: field `batch_expiry`:") && err.contains("examples"),
            "{err}"
        );
        // A file may not name the file.
        let err = load("config = \"other.toml\"\n").unwrap_err().to_string();
        assert!(err.contains("batchd.toml:1:"), "{err}");
    }

    #[test]
    fn workspace_limits_are_read_and_checked() {
        let c = load(
            "queue_cap = 1000\nrate_limit = 60\n\n[workspaces.team-a]\nqueue_cap = 200000\nrate_limit = 1000\n\n[workspaces.team-b]\nrate_limit = 0\n",
        )
        .unwrap();
        let quotas = c.quotas();
        assert_eq!(
            (quotas.queue_cap("team-a"), quotas.rate_limit("team-a")),
            (200_000, 1000)
        );
        assert_eq!(
            (quotas.queue_cap("team-b"), quotas.rate_limit("team-b")),
            (1000, 0)
        );
        assert_eq!(
            (quotas.queue_cap("team-c"), quotas.rate_limit("team-c")),
            (1000, 60)
        );
        let err = load("[workspaces.team-a]\nqueue_cap = 5\nrate_limt = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batchd.toml:3:")
                && err.contains("workspaces")
                && err.contains("rate_limt"),
            "{err}"
        );
        let err = load("[workspaces.team-a]\nqueue_cap = -5\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batchd.toml:2:") && err.contains("queue_cap"),
            "{err}"
        );
        let err = load("[workspaces.\"bad name\"]\nqueue_cap = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[workspaces.bad name]"), "{err}");
    }

    #[test]
    fn help_shows_defaults_as_people_write_them() {
        assert_eq!(shown(Duration::ZERO), "0ms");
        assert_eq!(shown(Duration::from_secs(30)), "30s");
        assert_eq!(shown(Duration::from_secs(24 * 3600)), "24h");
        assert_eq!(shown(Duration::from_secs(29 * 24 * 3600)), "29d");
        assert_eq!(shown(Duration::from_millis(1500)), "1500ms");
    }
}
