//! The OpenAI Batch surface's domain: which endpoint a batch targets (and so which surface it
//! belongs to), the ids in OpenAI's shapes (`batch_…`, `file-…`, `batch_req_…`), and what a
//! batch of that surface stores beyond what every batch has ([`OpenAiBatchMeta`]), and the
//! `status` a stored batch shows there ([`status`]), which its retrieve and its webhook event
//! both follow.
//!
//! Both surfaces share one store and one dispatcher. A batch's [`Endpoint`] is the one fact that
//! tells them apart everywhere: the Anthropic surface's batches all target `/v1/messages`, an
//! OpenAI batch targets the `endpoint` it was created with. Each surface only ever sees its own
//! batches (an id of the other surface is a 404, a list shows one surface).
//!
//! The behavioural reference is `shared/spec/openai-batches.md` in the project's shared folder.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use batchd_wire::ProcessingStatus;
use batchd_wire::openai::{BatchUsage, OpenAiBatchStatus};

use crate::ids::{ALPHABET, FNV_OFFSET, fnv1a};
use crate::{Batch, EndReason, Timestamp};

/// Largest line of a batch input file: one request. `shared/spec/openai-batches.md` gives no
/// per-request limit for the hosted Batch API, so this is the size limit documented for one
/// request of the Messages API, batchd's other surface (32 MB,
/// <https://docs.anthropic.com/en/api/overview>).
pub const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;

/// The `purpose` of a batch's input file.
pub const BATCH_PURPOSE: &str = "batch";
/// The `purpose` of the output and error files a batch writes.
pub const OUTPUT_PURPOSE: &str = "batch_output";
/// How long a file is kept when nobody said: the hosted API's 30 days, for batch input files
/// and for output files alike, and the longest `expires_after` it accepts.
pub const DEFAULT_FILE_EXPIRY: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Which API a batch belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Surface {
    Anthropic,
    OpenAi,
}

/// What every request of a batch is sent to. Stored as [`Endpoint::code`] with the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Anthropic's Messages: every batch of the Anthropic surface.
    Messages,
    ChatCompletions,
    Embeddings,
    Completions,
    Responses,
    Moderations,
}

impl Endpoint {
    /// The endpoints an OpenAI batch may name, in the order the API's error text lists them.
    pub const OPENAI: [Endpoint; 5] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Moderations,
    ];

    pub fn surface(self) -> Surface {
        match self {
            Endpoint::Messages => Surface::Anthropic,
            _ => Surface::OpenAi,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Messages => "/v1/messages",
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Moderations => "/v1/moderations",
        }
    }

    /// An OpenAI batch's `endpoint` (never `/v1/messages`, which is not an OpenAI endpoint).
    pub fn from_openai_path(path: &str) -> Option<Self> {
        Self::OPENAI.into_iter().find(|e| e.path() == path)
    }

    /// Stable small integer for storage; 0 is the Anthropic surface, the default of rows stored
    /// before the OpenAI surface existed.
    pub fn code(self) -> i64 {
        match self {
            Endpoint::Messages => 0,
            Endpoint::ChatCompletions => 1,
            Endpoint::Embeddings => 2,
            Endpoint::Completions => 3,
            Endpoint::Responses => 4,
            Endpoint::Moderations => 5,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Endpoint::Messages,
            1 => Endpoint::ChatCompletions,
            2 => Endpoint::Embeddings,
            3 => Endpoint::Completions,
            4 => Endpoint::Responses,
            5 => Endpoint::Moderations,
            _ => return None,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

fn random_hex(rng: &mut impl Rng, out: &mut String, digits: usize) {
    const HEX: &[u8] = b"0123456789abcdef";
    for _ in 0..digits {
        out.push(HEX[rng.random_range(0..16)] as char);
    }
}

/// An OpenAI batch id in the API's layout: `batch_`, then 32 lowercase hex digits, the first 8
/// being the creation time in seconds and digits 13–16 `8190` (as every id the API has been
/// seen to give).
pub fn openai_batch_id(created_at: Timestamp) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(38);
    s.push_str("batch_");
    let secs = u32::try_from(created_at.as_micros() / 1_000_000).unwrap_or(u32::MAX);
    s.push_str(&format!("{secs:08x}"));
    random_hex(&mut rng, &mut s, 4);
    s.push_str("8190");
    random_hex(&mut rng, &mut s, 16);
    s
}

/// Whether `s` has the shape of an OpenAI batch id (what [`openai_batch_id`] makes).
pub fn is_openai_batch_id(s: &str) -> bool {
    s.strip_prefix("batch_").is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The `id` of one output or error line: `batch_req_` and 32 hex digits derived from the batch
/// and the line's index, so the same line always gets the same id (a file written again after a
/// crash is byte for byte the same).
pub fn batch_request_id(batch_id: &str, index: u32) -> String {
    let a = fnv1a(FNV_OFFSET, batch_id.as_bytes());
    let b = fnv1a(a, &index.to_le_bytes());
    let c = fnv1a(b ^ 0x5bd1_e995, &index.to_be_bytes());
    format!("batch_req_{b:016x}{c:016x}")
}

/// A file id: `file-` and 22 base58 characters, as the API's ids since 2024.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileId(String);

impl FileId {
    pub const PREFIX: &'static str = "file-";

    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut s = String::with_capacity(27);
        s.push_str(Self::PREFIX);
        for _ in 0..22 {
            s.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
        }
        Self(s)
    }

    /// Any id of our shape; anything else names no file (the caller answers 404).
    pub fn parse(s: &str) -> Option<Self> {
        let body = s.strip_prefix(Self::PREFIX)?;
        (!body.is_empty() && body.len() <= 64 && body.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One entry of a failed batch's `errors.data`: a line of the input file that could not be
/// used, or (with `line: None`) the file itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    /// 1-based line number in the input file.
    pub line: Option<u64>,
}

/// What an OpenAI batch stores beyond what every batch has, kept as one JSON document with the
/// batch (engines store it as text and never look inside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAiBatchMeta {
    pub input_file_id: String,
    pub completion_window: String,
    /// The create's `metadata` object as compact JSON text, exactly as sent (key order kept),
    /// or `None` when not given or `null`.
    #[serde(default)]
    pub metadata: Option<String>,
    /// `output_expires_after.seconds`: the output and error files expire this long after they
    /// are written (30 days when not given).
    #[serde(default)]
    pub output_expires_after: Option<u64>,
    /// The model of the batch's requests, once known (the first line's `body.model`).
    #[serde(default)]
    pub model: Option<String>,
    /// Non-empty when the batch `failed` validation: it then has no requests.
    #[serde(default)]
    pub errors: Vec<LineError>,
    /// Set when the batch is finalized: the files written from its results, each only when it
    /// has at least one line.
    #[serde(default)]
    pub output_file_id: Option<FileId>,
    #[serde(default)]
    pub error_file_id: Option<FileId>,
    /// Set when the batch is finalized: the tokens its output file's answers used, in the
    /// API's shape. `None` before, and for batches finalized before batchd added them up.
    #[serde(default)]
    pub usage: Option<BatchUsage>,
}

/// Unix seconds, as the OpenAI API writes times.
pub fn unix(t: Timestamp) -> u64 {
    u64::try_from(t.as_micros().div_euclid(1_000_000)).unwrap_or(0)
}

/// The batch's `status`.
pub fn status(batch: &Batch) -> OpenAiBatchStatus {
    let failed = batch.openai.as_ref().is_some_and(|m| !m.errors.is_empty());
    if failed {
        return OpenAiBatchStatus::Failed;
    }
    match (batch.status, batch.end_reason, batch.finalized_at) {
        (ProcessingStatus::InProgress, ..) => OpenAiBatchStatus::InProgress,
        (ProcessingStatus::Canceling, ..) => OpenAiBatchStatus::Cancelling,
        // A canceled batch stays `cancelling` until its files are written, as the hosted API
        // goes `cancelling → cancelled` without a `finalizing` in between.
        (ProcessingStatus::Ended, Some(EndReason::Canceled), None) => OpenAiBatchStatus::Cancelling,
        (ProcessingStatus::Ended, _, None) => OpenAiBatchStatus::Finalizing,
        (ProcessingStatus::Ended, Some(EndReason::Canceled), Some(_)) => {
            OpenAiBatchStatus::Cancelled
        }
        (ProcessingStatus::Ended, Some(EndReason::Expired), Some(_)) => OpenAiBatchStatus::Expired,
        (ProcessingStatus::Ended, _, Some(_)) => OpenAiBatchStatus::Completed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_round_trip_through_their_codes_and_paths() {
        for e in Endpoint::OPENAI.into_iter().chain([Endpoint::Messages]) {
            assert_eq!(Endpoint::from_code(e.code()), Some(e));
        }
        for e in Endpoint::OPENAI {
            assert_eq!(Endpoint::from_openai_path(e.path()), Some(e));
            assert_eq!(e.surface(), Surface::OpenAi);
        }
        assert_eq!(Endpoint::from_openai_path("/v1/messages"), None);
        assert_eq!(Endpoint::Messages.surface(), Surface::Anthropic);
    }

    #[test]
    fn batch_ids_have_the_api_layout() {
        let at = Timestamp::from_micros(1_741_967_568 * 1_000_000);
        let id = openai_batch_id(at);
        assert!(is_openai_batch_id(&id), "{id}");
        assert!(id.starts_with("batch_67d450d0"), "{id}");
        assert_eq!(&id[18..22], "8190", "{id}");
        assert!(!is_openai_batch_id("msgbatch_01abc"));
        assert!(!is_openai_batch_id("batch_67D450D0"));
    }

    #[test]
    fn line_ids_are_deterministic_and_distinct() {
        let a = batch_request_id("batch_x", 0);
        assert_eq!(a, batch_request_id("batch_x", 0));
        assert_ne!(a, batch_request_id("batch_x", 1));
        assert_ne!(a, batch_request_id("batch_y", 0));
        assert_eq!(a.len(), "batch_req_".len() + 32);
    }

    #[test]
    fn file_ids_parse_their_own_shape_only() {
        let id = FileId::generate();
        assert_eq!(id.as_str().len(), 27);
        assert_eq!(FileId::parse(id.as_str()), Some(id));
        assert!(FileId::parse("file-").is_none());
        assert!(FileId::parse("file-../x").is_none());
        assert!(FileId::parse("batch_abc").is_none());
    }
}
