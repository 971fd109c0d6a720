//! Opaque identifiers in the shapes the real API uses: `msgbatch_01…`, `req_01…`, `msg_01…`,
//! and the `anthropic-organization-id` UUID of a workspace.
//!
//! Every real id seen is a prefix, `01`, then 22 characters of the Bitcoin base58 alphabet (no
//! `0 O I l`). Ids are random, not time-sortable (the real ones are not either); list order
//! comes from creation time plus a storage sequence number, so the id is only a label and its
//! alphabet could change. Earlier versions drew from all 62 alphanumerics: [`BatchId::parse`]
//! still accepts those, so batches stored before keep their ids.

use std::fmt::{self, Write as _};

use rand::Rng;

use sha2::{Digest, Sha256};

/// Bitcoin's base58: the alphanumerics without `0`, `O`, `I` and `l`.
pub(crate) const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// Every real id observed has 24 characters after the prefix, the first two being `01`.
const BODY_LEN: usize = 24;

fn random_body() -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(BODY_LEN);
    s.push_str("01");
    for _ in 2..BODY_LEN {
        s.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    s
}

/// Seed of [`fnv1a`].
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a continued from `hash`: stable across runs, platforms and Rust versions, unlike `std`'s
/// hasher, which is what deterministic ids need.
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

/// Body derived from a 64-bit seed, for ids that must be deterministic (mock messages).
pub fn deterministic_body(mut seed: u64) -> String {
    let mut s = String::with_capacity(BODY_LEN);
    s.push_str("01");
    for _ in 2..BODY_LEN {
        // splitmix64 step: cheap, well mixed, stable across platforms.
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        s.push(ALPHABET[(z % ALPHABET.len() as u64) as usize] as char);
    }
    s
}

/// A Message Batch id, `msgbatch_` followed by the opaque body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(String);

impl BatchId {
    pub const PREFIX: &'static str = "msgbatch_";

    pub fn generate() -> Self {
        Self(format!("{}{}", Self::PREFIX, random_body()))
    }

    /// Accepts any id of our shape, including the alphanumeric bodies of earlier versions.
    /// Anything else can never name a batch, which callers turn into the same 404 a missing batch
    /// gets.
    pub fn parse(s: &str) -> Option<Self> {
        let body = s.strip_prefix(Self::PREFIX)?;
        (!body.is_empty() && body.len() <= 64 && body.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Self(s.to_owned()))
    }

    /// A new OpenAI batch id (see [`crate::openai::openai_batch_id`]).
    pub fn generate_openai(created_at: crate::Timestamp) -> Self {
        Self(crate::openai::openai_batch_id(created_at))
    }

    /// An OpenAI batch id, `batch_` and 32 hex digits; anything else names no OpenAI batch.
    pub fn parse_openai(s: &str) -> Option<Self> {
        crate::openai::is_openai_batch_id(s).then(|| Self(s.to_owned()))
    }

    /// The surface whose batches have ids of this shape.
    pub fn surface(&self) -> crate::openai::Surface {
        if self.0.starts_with(Self::PREFIX) {
            crate::openai::Surface::Anthropic
        } else {
            crate::openai::Surface::OpenAi
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fresh `request-id` value: `req_` plus 24 characters.
pub fn request_id() -> String {
    format!("req_{}", random_body())
}

/// The `anthropic-organization-id` of a workspace: a UUID derived from its name, so it is the
/// same in every process and across restarts without being stored. Version 8 (RFC 9562's
/// custom layout) over SHA-256 of a fixed namespace and the name: it is not any real
/// organization's id, only stable and distinct per workspace.
pub fn organization_id(workspace: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"batchd organization\xff")
        .chain_update(workspace.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0F) | 0x80;
    b[8] = (b[8] & 0x3F) | 0x80;
    let hex: String = b.iter().fold(String::with_capacity(32), |mut hex, x| {
        let _ = write!(hex, "{x:02x}");
        hex
    });
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `prefix` + `01` + 22 base58 characters.
    fn api_shaped(id: &str, prefix: &str) -> bool {
        id.strip_prefix(prefix)
            .and_then(|body| body.strip_prefix("01"))
            .is_some_and(|rest| rest.len() == 22 && rest.bytes().all(|b| ALPHABET.contains(&b)))
    }

    #[test]
    fn generated_ids_parse_and_look_real() {
        for _ in 0..200 {
            let id = BatchId::generate();
            assert!(api_shaped(id.as_str(), "msgbatch_"), "{id}");
            assert_eq!(BatchId::parse(id.as_str()), Some(id));
            let req = request_id();
            assert!(api_shaped(&req, "req_"), "{req}");
        }
        for seed in 0..200 {
            let body = deterministic_body(seed);
            assert!(api_shaped(&body, ""), "{body}");
        }
    }

    #[test]
    fn the_alphabet_is_base58() {
        assert_eq!(ALPHABET.len(), 58);
        for b in b"0OIl" {
            assert!(!ALPHABET.contains(b));
        }
    }

    #[test]
    fn ids_of_earlier_versions_still_parse() {
        let old = "msgbatch_01Ol0Iabcdefghijklmnopqr";
        assert_eq!(BatchId::parse(old).unwrap().as_str(), old);
    }

    #[test]
    fn organization_ids_are_stable_uuids_per_workspace() {
        let a = organization_id("ws-a");
        assert_eq!(a, organization_id("ws-a"));
        assert_ne!(a, organization_id("ws-b"));
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(
            a.bytes()
                .all(|b| b == b'-' || b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(&a[14..15], "8", "version 8");
        assert!(
            matches!(&a[19..20], "8" | "9" | "a" | "b"),
            "RFC 9562 variant"
        );
    }

    #[test]
    fn rejects_foreign_shapes() {
        for bad in [
            "",
            "msgbatch_",
            "batch_01abc",
            "msgbatch_01ab/../x",
            "msgbatch_ab cd",
        ] {
            assert!(BatchId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn deterministic_bodies_are_stable() {
        assert_eq!(deterministic_body(42), deterministic_body(42));
        assert_ne!(deterministic_body(42), deterministic_body(43));
        assert_eq!(deterministic_body(7).len(), 24);
    }
}
