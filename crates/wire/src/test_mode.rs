//! The objects of test mode's routes (`/v1/batchd/test/...`), which only a server started with
//! `--test-mode` answers: a workspace's virtual clock and what a reset leaves.

use serde::{Deserialize, Serialize};

/// The constant `"test_clock"` type tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestClockType {
    #[default]
    #[serde(rename = "test_clock")]
    TestClock,
}

/// A workspace's virtual clock: `GET /v1/batchd/test/clock`, and the answer of an advance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestClock {
    #[serde(rename = "type")]
    pub kind: TestClockType,
    /// The workspace's time now, RFC 3339.
    pub now: String,
    /// How far the clock runs ahead of real time, in whole seconds.
    pub offset_seconds: i64,
}

/// Body of `POST /v1/batchd/test/clock/advance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvanceClock {
    /// How far to move the clock forward, in seconds.
    pub seconds: u64,
}

/// The constant `"test_reset"` type tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestResetType {
    #[default]
    #[serde(rename = "test_reset")]
    TestReset,
}

/// What `POST /v1/batchd/test/reset` leaves: the clock back on real time, and no rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestReset {
    #[serde(rename = "type")]
    pub kind: TestResetType,
    pub clock: TestClock,
    /// The workspace's mock rules: none after a reset.
    pub rules: Vec<serde_json::Value>,
}
