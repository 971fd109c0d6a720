//! The `[[backends]]` entries of the config file: what each upstream is, which models it serves,
//! and its limits. Parsed with serde so that a malformed entry is reported by the config loader
//! with the file, line and field; checks serde cannot express (a glob that is empty, a key given
//! in two ways, an environment variable that is not set) are made by [`BackendConfig::resolve`],
//! which also reads the upstream key.
//!
//! Secrets never live in the file: an upstream key comes from the environment variable named by
//! `api_key_env`, or from the file named by `api_key_file` (a secrets mount). [`Secret`] keeps it
//! out of `Debug` output, logs and error messages.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Which protocol the upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `POST /v1/messages`: params are forwarded as given.
    Anthropic,
    /// `POST /v1/chat/completions`: params are translated both ways.
    Openai,
    /// The built-in deterministic model.
    Mock,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::Openai => "openai",
            Self::Mock => "mock",
        }
    }
}

/// One `[[backends]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub name: String,
    pub kind: Kind,
    /// Required for `anthropic` and `openai`; ignored by `mock`.
    pub base_url: Option<String>,
    /// Name of the environment variable holding the upstream key.
    pub api_key_env: Option<String>,
    /// Path of a file holding the upstream key (surrounding whitespace is ignored).
    pub api_key_file: Option<PathBuf>,
    /// Model-name globs (`*` any run, `?` one character); the first backend with a match wins.
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    /// Most requests at this upstream at once (across all batches of this process).
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// 0 means unlimited.
    #[serde(default)]
    pub requests_per_minute: u64,
    /// 0 means unlimited. Input tokens are estimated before sending (see `limits`).
    #[serde(default)]
    pub input_tokens_per_minute: u64,
    /// Longest wait for one upstream answer.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Upstream attempts per request, the first included.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// `openai` only: send `top_k` (vLLM, SGLang and llama.cpp accept it; OpenAI itself does
    /// not, and a request with `top_k` is then refused rather than answered without it).
    #[serde(default)]
    pub top_k: Option<bool>,
    /// `mock` only: simulated time on the model.
    #[serde(default, deserialize_with = "optional_duration")]
    pub latency: Option<Duration>,
    /// `mock` only: answer a model the API does not list with `not_found_error`, as the API
    /// does (off: any model name is answered).
    #[serde(default)]
    pub strict_models: bool,
    /// `anthropic` only: the `anthropic-version` header sent upstream for every request,
    /// whatever its batch's version (for an upstream that knows only an older one). Unset, each
    /// request goes with its batch's version.
    pub anthropic_version: Option<String>,
}

fn all_models() -> Vec<String> {
    vec!["*".to_owned()]
}

fn default_concurrency() -> usize {
    64
}

fn default_timeout() -> Duration {
    Duration::from_secs(600)
}

fn default_attempts() -> u32 {
    5
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("{e} (examples: 0ms, 250ms, 30s, 10m)")))
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A backend entry after every check, with its key read.
#[derive(Debug, Clone)]
pub struct BackendSpec {
    pub name: String,
    pub kind: Kind,
    /// Without a trailing slash.
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub models: Vec<String>,
    pub max_concurrency: usize,
    pub requests_per_minute: u64,
    pub input_tokens_per_minute: u64,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub top_k: bool,
    pub latency: Duration,
    pub strict_models: bool,
    /// `anthropic` only: a fixed `anthropic-version` for every request instead of its batch's.
    pub anthropic_version: Option<String>,
}

impl BackendConfig {
    /// Checks what serde cannot and reads the key. Errors name the field; the caller adds the
    /// file and the entry.
    pub fn resolve(self) -> Result<BackendSpec, String> {
        if self.name.trim().is_empty() {
            return Err("field `name`: must not be empty".into());
        }
        if self.models.is_empty() || self.models.iter().any(|m| m.is_empty()) {
            return Err("field `models`: needs at least one non-empty glob".into());
        }
        if self.max_concurrency == 0 {
            return Err("field `max_concurrency`: must be at least 1".into());
        }
        if self.max_attempts == 0 {
            return Err("field `max_attempts`: must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return Err("field `timeout`: must be more than 0".into());
        }
        let base_url = match (self.kind, self.base_url) {
            (Kind::Mock, url) => url.unwrap_or_default(),
            (_, None) => return Err("field `base_url`: required for this kind".into()),
            (_, Some(url)) => {
                let url = url.trim().trim_end_matches('/').to_owned();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "field `base_url`: `{url}` must start with http:// or https://"
                    ));
                }
                url
            }
        };
        let api_key = match (self.api_key_env, self.api_key_file) {
            (Some(_), Some(_)) => {
                return Err("fields `api_key_env` and `api_key_file`: give one, not both".into());
            }
            (Some(var), None) => match std::env::var(&var) {
                Ok(key) if !key.trim().is_empty() => Some(Secret(key.trim().to_owned())),
                _ => {
                    return Err(format!(
                        "field `api_key_env`: environment variable `{var}` is not set"
                    ));
                }
            },
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(key) if !key.trim().is_empty() => Some(Secret(key.trim().to_owned())),
                Ok(_) => {
                    return Err(format!("field `api_key_file`: {} is empty", path.display()));
                }
                Err(e) => {
                    return Err(format!(
                        "field `api_key_file`: cannot read {}: {e}",
                        path.display()
                    ));
                }
            },
            (None, None) => None,
        };
        Ok(BackendSpec {
            name: self.name,
            kind: self.kind,
            base_url,
            api_key,
            models: self.models,
            max_concurrency: self.max_concurrency,
            requests_per_minute: self.requests_per_minute,
            input_tokens_per_minute: self.input_tokens_per_minute,
            timeout: self.timeout,
            max_attempts: self.max_attempts,
            top_k: self.top_k.unwrap_or(false),
            latency: self.latency.unwrap_or_default(),
            strict_models: self.strict_models,
            anthropic_version: self.anthropic_version,
        })
    }
}

/// An upstream key. Shown as `[redacted]` by `Debug` and `Display`, so that no log line or error
/// message built from a config can carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the request header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(extra: &str) -> Result<BackendConfig, toml::de::Error> {
        #[derive(Deserialize)]
        struct File {
            backends: Vec<BackendConfig>,
        }
        toml::from_str::<File>(&format!(
            "[[backends]]\nname = \"b\"\nkind = \"openai\"\n{extra}"
        ))
        .map(|f| f.backends.into_iter().next().unwrap())
    }

    #[test]
    fn defaults_and_checks() {
        let spec = entry("base_url = \"http://h:8000/\"\n")
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(spec.base_url, "http://h:8000");
        assert_eq!(spec.models, vec!["*"]);
        assert_eq!(spec.timeout, Duration::from_secs(600));
        assert_eq!((spec.max_attempts, spec.max_concurrency), (5, 64));

        let err = entry("").unwrap().resolve().unwrap_err();
        assert!(err.contains("base_url"), "{err}");
        let err = entry("base_url = \"h:1\"\n")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(err.contains("http://"), "{err}");
        let err = entry("base_url = \"http://h\"\napi_key_env = \"BATCHD_TEST_UNSET_KEY_VAR\"\n")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(err.contains("BATCHD_TEST_UNSET_KEY_VAR"), "{err}");
        // A key written into the file itself is refused by name.
        let err = entry("api_key = \"sk-secret\"\n").unwrap_err().to_string();
        assert!(err.contains("api_key"), "{err}");
        let err = entry("timeout = \"soon\"\n").unwrap_err().to_string();
        assert!(err.contains("10m"), "{err}");
    }

    #[test]
    fn keys_come_from_files_and_never_show() {
        let dir = std::env::temp_dir().join(format!("batchd-key-{}", std::process::id()));
        std::fs::write(&dir, "  sk-upstream-123\n").unwrap();
        let spec = entry(&format!(
            "base_url = \"http://h\"\napi_key_file = \"{}\"\n",
            dir.display()
        ))
        .unwrap()
        .resolve()
        .unwrap();
        std::fs::remove_file(&dir).unwrap();
        let key = spec.api_key.clone().unwrap();
        assert_eq!(key.expose(), "sk-upstream-123");
        assert!(!format!("{spec:?}").contains("sk-upstream"));
        assert_eq!(key.to_string(), "[redacted]");
    }
}
