//! The `custom_id` of a request: 1–64 characters of `[a-zA-Z0-9_-]`, with the real API's
//! Pydantic-style messages for each way it can be wrong.

use std::fmt;

/// A `custom_id` known to match `^[a-zA-Z0-9_-]{1,64}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomId(String);

/// Why a `custom_id` was refused; rendered with the request's index by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CustomIdError {
    #[error("String should have at least 1 character")]
    Empty,
    #[error("String should have at most 64 characters")]
    TooLong,
    #[error("String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")]
    Pattern,
}

impl CustomId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, CustomIdError> {
        if s.is_empty() {
            return Err(CustomIdError::Empty);
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(CustomIdError::TooLong);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(CustomIdError::Pattern);
        }
        Ok(Self(s.to_owned()))
    }

    /// Longest `custom_id` an OpenAI input line may have. The API documents no limit; 512
    /// characters bounds what a line costs to store and echo (an assumption, noted in
    /// CONFORMANCE.md's differences).
    pub const OPENAI_MAX_LEN: usize = 512;

    /// An OpenAI input line's `custom_id`: any non-empty string up to [`Self::OPENAI_MAX_LEN`]
    /// characters (the OpenAI API does not restrict the alphabet).
    pub fn parse_openai(s: &str) -> Result<Self, CustomIdError> {
        if s.is_empty() {
            return Err(CustomIdError::Empty);
        }
        if s.chars().count() > Self::OPENAI_MAX_LEN {
            return Err(CustomIdError::TooLong);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for CustomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(CustomId::parse("my-first_request-01").is_ok());
        assert!(CustomId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn refuses_with_the_real_messages() {
        assert_eq!(CustomId::parse(""), Err(CustomIdError::Empty));
        assert_eq!(
            CustomId::parse(&"a".repeat(65)),
            Err(CustomIdError::TooLong)
        );
        assert_eq!(CustomId::parse("a b"), Err(CustomIdError::Pattern));
        assert_eq!(CustomId::parse("é"), Err(CustomIdError::Pattern));
        assert_eq!(
            CustomIdError::Pattern.to_string(),
            "String should match pattern '^[a-zA-Z0-9_-]{1,64}$'"
        );
    }
}
