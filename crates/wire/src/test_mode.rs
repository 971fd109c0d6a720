//! The objects of test mode's routes (`/v1/batchd/test/...`), which only a server started with
//! `--test-mode` answers: a workspace's virtual clock, what a reset leaves, the mock's rules and
//! the count of replayed results loaded.

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

/// The constant `"test_mock_rules"` type tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestMockRulesType {
    #[default]
    #[serde(rename = "test_mock_rules")]
    TestMockRules,
}

/// A workspace's mock rules and chaos setting, as put: the answer of `GET` and `PUT
/// /v1/batchd/test/mock/rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestMockRules {
    #[serde(rename = "type")]
    pub kind: TestMockRulesType,
    pub rules: Vec<serde_json::Value>,
    /// `{"seed": <int>, "errored_rate": <0..1>}`, or `null`.
    pub chaos: serde_json::Value,
}

/// The constant `"test_fixtures"` type tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestFixturesType {
    #[default]
    #[serde(rename = "test_fixtures")]
    TestFixtures,
}

/// The answer of `POST /v1/batchd/test/mock/fixtures`: how many lines were loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestFixtures {
    #[serde(rename = "type")]
    pub kind: TestFixturesType,
    pub loaded: u64,
}
