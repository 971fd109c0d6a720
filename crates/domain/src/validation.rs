//! The API's validation texts, one home for each.
//!
//! The real API validates with Pydantic and reports the first failure as `<location>: <message>`
//! in Pydantic's wording. Every layer of batchd that refuses input words it from here: the create
//! envelope (`batchd-http`), each request's `params` ([`crate::params`]), the `custom_id` grammar
//! ([`crate::custom_id`]) and the translation of `params` for OpenAI-compatible backends.

use std::fmt::Display;

pub const REQUIRED: &str = "Field required";
pub const NOT_STRING: &str = "Input should be a valid string";
pub const NOT_LIST: &str = "Input should be a valid list";
pub const NOT_DICT: &str = "Input should be a valid dictionary";
pub const NOT_INT: &str = "Input should be a valid integer";
pub const FRACTIONAL: &str = "Input should be a valid integer, got a number with a fractional part";
pub const NOT_NUMBER: &str = "Input should be a valid number";
pub const NOT_BOOL: &str = "Input should be a valid boolean";
pub const EXTRA: &str = "Extra inputs are not permitted";
/// Not Pydantic's: the real API's own word for a JSON object that repeats a key it reads.
pub const DUPLICATE_KEY: &str = "duplicate key";
pub const ROLE: &str = "Input should be 'user' or 'assistant'";
/// The roles of a version whose messages may also be `system`.
pub const ROLE_OR_SYSTEM: &str = "Input should be 'user', 'assistant' or 'system'";
// The API documents that these two are refused, not with which words: inferred, in its style.
/// A request whose `user_profile_id` is not its batch's `anthropic-user-profile-id`.
pub const USER_PROFILE_CONFLICT: &str = "does not match the anthropic-user-profile-id header";
/// Batches cannot bill a user profile's customer.
pub const BILL_TO_USER_PROFILE: &str =
    "\"user_profile\" is not supported in the Message Batches API";

/// `<loc>: <msg>`: how every validation failure is reported.
pub fn at(loc: impl Display, msg: impl Display) -> String {
    format!("{loc}: {msg}")
}

/// A request body that is not JSON; `detail` says where it broke.
pub fn not_json(detail: impl Display) -> String {
    format!("The request body is not valid JSON: {detail}")
}

/// A number below its minimum.
pub fn at_least(min: impl Display) -> String {
    format!("Input should be greater than or equal to {min}")
}

/// A number above its maximum.
pub fn at_most(max: impl Display) -> String {
    format!("Input should be less than or equal to {max}")
}

/// A list shorter than its minimum (`min` is 1 everywhere the API has one, hence "item").
pub fn too_few_items(min: u64, got: u64) -> String {
    let noun = if min == 1 { "item" } else { "items" };
    format!("List should have at least {min} {noun} after validation, not {got}")
}

/// A list longer than its maximum.
pub fn too_many_items(max: u64, got: u64) -> String {
    format!("List should have at most {max} items after validation, not {got}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_bounds_read_as_pydantic_writes_them() {
        assert_eq!(
            at("requests", too_few_items(1, 0)),
            "requests: List should have at least 1 item after validation, not 0"
        );
        assert_eq!(
            at("requests", too_many_items(100_000, 100_001)),
            "requests: List should have at most 100000 items after validation, not 100001"
        );
    }
}
