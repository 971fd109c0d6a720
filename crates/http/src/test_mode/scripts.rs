//! The mock's scripted outcomes for the caller's workspace: `PUT`/`GET
//! /v1/batchd/test/mock/rules` (rules and chaos, replaced whole) and `POST
//! /v1/batchd/test/mock/fixtures` (lines of a results file to replay). Parsing and matching
//! live in `batchd_domain::script`; the registry is shared with the dispatcher, which asks it
//! for every request a mock serves.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use batchd_domain::script::{RuleSet, parse_fixtures};
use batchd_wire::test_mode::{TestFixtures, TestFixturesType, TestMockRules, TestMockRulesType};
use bytes::Bytes;

use super::test_mode;
use crate::auth::Caller;
use crate::batches::json;
use crate::{ApiError, AppState};

/// The largest fixtures body: a results file downloaded from the API (more than the default
/// 2 MiB a body may have), held in memory while it is checked.
pub const MAX_FIXTURES_BYTES: usize = 64 * 1024 * 1024;

/// The rules object of a rule set.
pub(crate) fn rules_object(rules: &RuleSet) -> TestMockRules {
    TestMockRules {
        kind: TestMockRulesType::TestMockRules,
        rules: rules.rules_json().to_vec(),
        chaos: rules.chaos_json().clone(),
    }
}

pub async fn put_rules(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let test = test_mode(&state)?;
    let rules = RuleSet::parse(&body).map_err(ApiError::invalid)?;
    let answer = rules_object(&rules);
    test.scripts.put_rules(&caller.workspace, rules);
    json(&answer)
}

pub async fn get_rules(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let test = test_mode(&state)?;
    json(&rules_object(&test.scripts.rules(&caller.workspace)))
}

pub async fn post_fixtures(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let test = test_mode(&state)?;
    // All or nothing: nothing is loaded unless every line is good.
    let fixtures = parse_fixtures(&body).map_err(ApiError::invalid)?;
    let loaded = test.scripts.load_fixtures(&caller.workspace, fixtures);
    json(&TestFixtures {
        kind: TestFixturesType::TestFixtures,
        loaded: loaded as u64,
    })
}
