//! `--config FILE`: the serve options as a TOML file, for deployments that prefer a file to
//! flags. Precedence, highest first: command-line flag, `BATCHD_*` environment variable, the
//! file, the built-in default. Unknown keys are refused, and every error names the file, the
//! line and the field.
//!
//! The file is also the only place for `[[backends]]`: the model servers requests go to, by
//! model name (see `batchd_backends::config` for the keys). Without any, every model goes to the
//! built-in mock.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use batchd_backends::{BackendConfig, BackendSpec};
use serde::Deserialize;

/// The file's keys: the long names of the `serve` flags, with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL URL; see `--database-url`.
    pub database_url: Option<String>,
    /// `KEY@WORKSPACE` entries. Prefer `BATCHD_API_KEYS` or `batchd keys` for real secrets.
    pub api_keys: Option<Vec<String>>,
    pub mock_latency: Option<String>,
    pub mock_concurrency: Option<usize>,
    pub concurrency: Option<usize>,
    pub batch_expiry: Option<String>,
    pub results_retention: Option<String>,
    pub public_url: Option<String>,
    pub shutdown_grace: Option<String>,
    /// Back-off before the second upstream attempt (doubling per attempt).
    pub retry_base_delay: Option<String>,
    /// Longest back-off between two upstream attempts.
    pub retry_max_delay: Option<String>,
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// The file's text, for locating entries in error messages.
    #[serde(skip)]
    source: String,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let mut config: Self = toml::from_str(&text).map_err(|err| {
            let at = err.span().map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!(":{line}")
            });
            anyhow!(
                "{}{}: {}",
                path.display(),
                at.unwrap_or_default(),
                err.message()
            )
        })?;
        config.source = text;
        Ok(config)
    }

    /// Checks every `[[backends]]` entry and reads its key. Errors name the file, the line of
    /// the entry's `[[backends]]` header, the backend and the field.
    pub fn backend_specs(&self, path: &Path) -> anyhow::Result<Vec<BackendSpec>> {
        let headers: Vec<usize> = self
            .source
            .lines()
            .enumerate()
            .filter(|(_, line)| line.trim_start().starts_with("[[backends]]"))
            .map(|(i, _)| i + 1)
            .collect();
        self.backends
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let name = entry.name.clone();
                entry.clone().resolve().map_err(|e| {
                    let line = headers.get(i).map(|l| format!(":{l}")).unwrap_or_default();
                    anyhow!("{}{line}: backend `{name}`: {e}", path.display())
                })
            })
            .collect()
    }
}

/// Parses a duration from the file, naming the field and the file when it is malformed.
pub fn duration(path: &Path, field: &str, value: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        anyhow!(
            "{}: field `{field}`: {e} (examples: 0ms, 250ms, 3s, 24h, 29d)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<FileConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batchd.toml");
        std::fs::write(&path, text).unwrap();
        FileConfig::load(&path)
    }

    #[test]
    fn reads_every_serve_option() {
        let c = load(
            "listen = \"0.0.0.0:9000\"\nmock_latency = \"250ms\"\nmock_concurrency = 8\napi_keys = [\"k@w\"]\n",
        )
        .unwrap();
        assert_eq!(c.listen.as_deref(), Some("0.0.0.0:9000"));
        assert_eq!(c.mock_concurrency, Some(8));
        assert_eq!(c.api_keys.unwrap(), vec!["k@w".to_owned()]);
    }

    #[test]
    fn backends_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batchd.toml");
        std::fs::write(
            &path,
            "concurrency = 8\n\n[[backends]]\nname = \"vllm\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:8000\"\nmodels = [\"qwen*\"]\ntimeout = \"30s\"\n\n[[backends]]\nname = \"claude\"\nkind = \"anthropic\"\nbase_url = \"https://api.anthropic.com\"\napi_key_env = \"BATCHD_TEST_SURELY_UNSET\"\n",
        )
        .unwrap();
        let file = FileConfig::load(&path).unwrap();
        assert_eq!(file.backends.len(), 2);
        let err = file.backend_specs(&path).unwrap_err().to_string();
        assert!(
            err.contains("batchd.toml:10: backend `claude`: field `api_key_env`"),
            "{err}"
        );
        // A kind that does not exist is caught by the parser, with its line.
        let err = load("[[backends]]\nname = \"x\"\nkind = \"grpc\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batchd.toml:3:") && err.contains("grpc"),
            "{err}"
        );
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
        let err = duration(Path::new("f.toml"), "batch_expiry", "soon")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f.toml: field `batch_expiry`:"), "{err}");
    }
}
