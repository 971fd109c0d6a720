//! A workspace's virtual clock (`GET /v1/batchd/test/clock`, `POST .../clock/advance`) and the
//! reset of a workspace (`POST /v1/batchd/test/reset`). An advance settles before it answers:
//! the batches that expired or passed their retention on the new time are already ended or
//! archived when the client reads them next.

use axum::Extension;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use batchd_domain::Timestamp;
use batchd_domain::validation::{self, at};
use batchd_store::clock::{MAX_OFFSET_MICROS, virtual_now};
use batchd_wire::test_mode::{TestClock, TestClockType, TestReset, TestResetType};
use bytes::Bytes;
use serde_json::Value;

use super::TestMode;
use crate::auth::Caller;
use crate::batches::json;
use crate::{ApiError, AppState};

const MICROS_PER_SECOND: i64 = 1_000_000;

pub(crate) fn test_mode(state: &AppState) -> Result<&TestMode, ApiError> {
    // The routes are mounted only with test mode on.
    state
        .inner
        .test
        .as_ref()
        .ok_or_else(|| ApiError::new(batchd_domain::ErrorType::NotFound, "Not found"))
}

/// The clock object for a workspace whose offset is `offset` µs, at real time `now`.
fn clock_object(now: Timestamp, offset: i64) -> TestClock {
    TestClock {
        kind: TestClockType::TestClock,
        now: virtual_now(now, offset).to_rfc3339(),
        offset_seconds: offset.div_euclid(MICROS_PER_SECOND),
    }
}

pub async fn get_clock(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let test = test_mode(&state)?;
    let offset = test.clocks.clock_offset(&caller.workspace).await?;
    json(&clock_object(Timestamp::now(), offset))
}

pub async fn advance(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let test = test_mode(&state)?;
    // In the API's envelope, as every other failure.
    let body = body.map_err(|rejection| {
        ApiError::invalid(rejection.body_text()).with_status(rejection.status())
    })?;
    let current = test.clocks.clock_offset(&caller.workspace).await?;
    let room = (MAX_OFFSET_MICROS - current).max(0) / MICROS_PER_SECOND;
    let seconds = advance_seconds(&body, room).map_err(ApiError::invalid)?;
    let offset = test
        .clocks
        .advance_clock(&caller.workspace, seconds * MICROS_PER_SECOND)
        .await?;
    let now = Timestamp::now();
    let settled = test.clocks.settle(now, test.results_retention).await?;
    if settled.archived > 0 {
        tracing::info!(
            workspace = %caller.workspace,
            archived = settled.archived,
            "archived batches past the results retention after a test clock advance"
        );
        state.inner.work.notify_reclaimable();
    }
    if !settled.ended.batches.is_empty() {
        state.inner.work.notify_ended(settled.ended);
    }
    json(&clock_object(now, offset))
}

pub async fn reset(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let test = test_mode(&state)?;
    let now = Timestamp::now();
    let reset = test.clocks.reset_workspace(&caller.workspace, now).await?;
    test.scripts.clear(&caller.workspace);
    // Requests of those batches that are claimed but not sent must not be sent: the same
    // signal as a cancel. Answers already on their way are dropped when recorded.
    for &key in &reset.batch_keys {
        state.inner.work.notify_canceled(key);
    }
    if !reset.batch_keys.is_empty() || reset.files > 0 {
        state.inner.work.notify_reclaimable();
    }
    tracing::info!(
        workspace = %caller.workspace,
        batches = reset.batch_keys.len(),
        files = reset.files,
        "test workspace reset"
    );
    json(&TestReset {
        kind: TestResetType::TestReset,
        clock: clock_object(now, 0),
        rules: Vec::new(),
    })
}

/// The `seconds` of an advance body, a whole number from 0 to `max`, or the 400's message in
/// the API's `<field>: <message>` form. Whole floats are integers, as Pydantic reads them.
fn advance_seconds(body: &[u8], max: i64) -> Result<i64, String> {
    let value: Value = serde_json::from_slice(body).map_err(validation::not_json)?;
    let Value::Object(fields) = value else {
        return Err(validation::NOT_DICT.to_owned());
    };
    if let Some(extra) = fields.keys().find(|k| k.as_str() != "seconds") {
        return Err(at(extra, validation::EXTRA));
    }
    let Some(seconds) = fields.get("seconds") else {
        return Err(at("seconds", validation::REQUIRED));
    };
    let whole = match seconds {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i,
            (None, _) if n.is_u64() => i64::MAX,
            (None, Some(f)) if f.fract() != 0.0 => {
                return Err(at("seconds", validation::FRACTIONAL));
            }
            (None, Some(f)) if f < i64::MIN as f64 => i64::MIN,
            (None, Some(f)) if f > i64::MAX as f64 => i64::MAX,
            (None, Some(f)) => f as i64,
            (None, None) => return Err(at("seconds", validation::NOT_INT)),
        },
        _ => return Err(at("seconds", validation::NOT_INT)),
    };
    if whole < 0 {
        return Err(at("seconds", validation::at_least(0)));
    }
    if whole > max {
        return Err(at("seconds", validation::at_most(max)));
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(body: &str) -> Result<i64, String> {
        advance_seconds(body.as_bytes(), 1_000)
    }

    #[test]
    fn seconds_is_a_whole_non_negative_number_within_the_room_left() {
        assert_eq!(seconds(r#"{"seconds":90}"#), Ok(90));
        assert_eq!(seconds(r#"{"seconds":0}"#), Ok(0));
        assert_eq!(seconds(r#"{"seconds":90.0}"#), Ok(90));
        assert_eq!(
            seconds(r#"{"seconds":-1}"#).unwrap_err(),
            "seconds: Input should be greater than or equal to 0"
        );
        assert_eq!(
            seconds(r#"{"seconds":1.5}"#).unwrap_err(),
            "seconds: Input should be a valid integer, got a number with a fractional part"
        );
        for body in [
            r#"{"seconds":"90"}"#,
            r#"{"seconds":null}"#,
            r#"{"seconds":true}"#,
        ] {
            assert_eq!(
                seconds(body).unwrap_err(),
                "seconds: Input should be a valid integer",
                "{body}"
            );
        }
        assert_eq!(seconds("{}").unwrap_err(), "seconds: Field required");
        assert_eq!(
            seconds(r#"{"seconds":1,"days":1}"#).unwrap_err(),
            "days: Extra inputs are not permitted"
        );
        assert_eq!(
            seconds(r#"{"seconds":1001}"#).unwrap_err(),
            "seconds: Input should be less than or equal to 1000"
        );
        assert_eq!(
            seconds(r#"{"seconds":1e300}"#).unwrap_err(),
            "seconds: Input should be less than or equal to 1000"
        );
        assert!(seconds("[]").is_err());
        assert!(seconds("not json").is_err());
    }

    #[test]
    fn the_clock_object_counts_whole_seconds() {
        let now = Timestamp::from_micros(1_700_000_000_000_000);
        let clock = clock_object(now, 90_500_000);
        assert_eq!(clock.offset_seconds, 90);
        assert_eq!(
            clock.now,
            Timestamp::from_micros(1_700_000_090_500_000).to_rfc3339()
        );
        assert_eq!(
            serde_json::to_string(&clock_object(now, 0)).unwrap(),
            format!(
                r#"{{"type":"test_clock","now":"{}","offset_seconds":0}}"#,
                now.to_rfc3339()
            )
        );
    }
}
