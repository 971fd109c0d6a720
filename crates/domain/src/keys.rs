//! API keys: generation, hashing for storage, constant-time comparison, and the
//! `KEY@WORKSPACE` syntax of `--api-key`.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of a key; the only form in which keys are stored or compared.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hashes of keys are still secrets worth keeping out of logs.
        f.write_str("KeyHash(..)")
    }
}

impl KeyHash {
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Constant-time equality, so response timing says nothing about how close a guess was.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_chars(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A fresh random key, `sk-batchd-` plus 40 characters (about 238 bits).
pub fn generate_key() -> String {
    format!("sk-batchd-{}", random_chars(40))
}

/// A fresh key id, `key_` plus 24 random characters: ids are shown and typed by operators
/// (`keys revoke ID`) and must not be guessable from one another.
pub fn generate_key_id() -> String {
    format!("key_{}", random_chars(24))
}

/// The first characters of a key, safe to show in `keys list`.
pub fn display_prefix(key: &str) -> String {
    let shown: String = key.chars().take(14).collect();
    format!("{shown}…")
}

/// Workspace names: what `KEY@WORKSPACE` and `--workspace` accept.
pub fn valid_workspace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// A key given on the command line or in `BATCHD_API_KEYS`.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKey {
    pub hash: KeyHash,
    pub workspace: String,
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKey")
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

/// The fewest characters a key given at start-up may have: a short key can be guessed, and
/// nothing a client sees tells it how long the keys are. Generated keys have 50.
pub const MIN_KEY_CHARS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaticKeyError {
    #[error("expected KEY@WORKSPACE")]
    MissingWorkspace,
    #[error("the key part is empty")]
    EmptyKey,
    #[error("the key is shorter than {MIN_KEY_CHARS} characters; `batchd keys create` makes one")]
    TooShort,
    #[error("workspace names are 1-64 characters of [A-Za-z0-9_.-]")]
    BadWorkspace,
}

impl StaticKey {
    /// Parses `KEY@WORKSPACE`; the last `@` separates, so keys may contain `@`.
    pub fn parse(spec: &str) -> Result<Self, StaticKeyError> {
        let (key, workspace) = spec
            .rsplit_once('@')
            .ok_or(StaticKeyError::MissingWorkspace)?;
        let key = key.trim();
        if key.is_empty() {
            return Err(StaticKeyError::EmptyKey);
        }
        if key.chars().count() < MIN_KEY_CHARS {
            return Err(StaticKeyError::TooShort);
        }
        if !valid_workspace(workspace.trim()) {
            return Err(StaticKeyError::BadWorkspace);
        }
        Ok(Self {
            hash: KeyHash::of(key),
            workspace: workspace.trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_at_workspace() {
        let k = StaticKey::parse("sk-a@b-0123456789abcdef@team-1").unwrap();
        assert_eq!(k.workspace, "team-1");
        assert!(k.hash.ct_eq(&KeyHash::of("sk-a@b-0123456789abcdef")));
        assert_eq!(
            StaticKey::parse("nokey"),
            Err(StaticKeyError::MissingWorkspace)
        );
        assert_eq!(StaticKey::parse("@w"), Err(StaticKeyError::EmptyKey));
        assert_eq!(
            StaticKey::parse("sk-0123456789abcdefghij@bad ws"),
            Err(StaticKeyError::BadWorkspace)
        );
    }

    #[test]
    fn short_keys_are_refused() {
        let short = "x".repeat(MIN_KEY_CHARS - 1);
        assert_eq!(
            StaticKey::parse(&format!("{short}@w")),
            Err(StaticKeyError::TooShort)
        );
        // Padding does not count.
        assert_eq!(
            StaticKey::parse(&format!("  {short}  @w")),
            Err(StaticKeyError::TooShort)
        );
        assert!(StaticKey::parse(&format!("{short}x@w")).is_ok());
        assert!(!StaticKeyError::TooShort.to_string().contains(&short));
    }

    #[test]
    fn generated_keys_differ_and_never_debug_print() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert!(a.starts_with("sk-batchd-"));
        let k = StaticKey::parse(&format!("{a}@w")).unwrap();
        assert!(!format!("{k:?}").contains(&a));
    }
}
