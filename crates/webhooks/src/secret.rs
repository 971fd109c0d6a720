//! An endpoint's signing secret: `whsec_` + the standard base64 of 32 random bytes, as Standard
//! Webhooks and the OpenAI SDK's `webhooks.unwrap()` read it. Stored as it is (it must sign, so
//! it cannot be hashed); its `Debug` never shows it, so a log line with one in it shows nothing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;

/// The prefix every secret carries.
pub const PREFIX: &str = "whsec_";
/// Random bytes per secret: Standard Webhooks asks for 24 to 64.
pub const SECRET_BYTES: usize = 32;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a webhook secret is `whsec_` followed by base64")]
pub struct BadSecret;

impl Secret {
    /// A new random secret.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// A stored secret, checked.
    pub fn parse(text: &str) -> Result<Self, BadSecret> {
        let secret = Self(text.to_owned());
        secret.key()?;
        Ok(secret)
    }

    /// The text to store and to show once, in the create and rotate answers.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key: the bytes the base64 after the prefix encodes.
    pub fn key(&self) -> Result<Vec<u8>, BadSecret> {
        let b64 = self.0.strip_prefix(PREFIX).ok_or(BadSecret)?;
        STANDARD.decode(b64).map_err(|_| BadSecret)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_whsec_base64_of_32_bytes_and_differ() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(PREFIX));
        assert_eq!(a.key().unwrap().len(), SECRET_BYTES);
        assert_eq!(Secret::parse(a.expose()).unwrap(), a);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::generate();
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains(&s.expose()[PREFIX.len()..]), "{shown}");
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(BadSecret)
        );
        assert_eq!(Secret::parse("whsec_not base64!"), Err(BadSecret));
    }
}
