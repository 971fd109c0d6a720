//! `--config FILE`: the serve options as a TOML file, for deployments that prefer a file to
//! flags. Precedence, highest first: command-line flag, `BATCHD_*` environment variable, the
//! file, the built-in default. Unknown keys are refused, and every error names the file, the
//! line and the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Deserialize;

/// The file's keys: the long names of the `serve` flags, with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// `KEY@WORKSPACE` entries. Prefer `BATCHD_API_KEYS` or `batchd keys` for real secrets.
    pub api_keys: Option<Vec<String>>,
    pub mock_latency: Option<String>,
    pub mock_concurrency: Option<usize>,
    pub concurrency: Option<usize>,
    pub batch_expiry: Option<String>,
    pub results_retention: Option<String>,
    pub public_url: Option<String>,
    pub shutdown_grace: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).map_err(|err| {
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
        })
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
