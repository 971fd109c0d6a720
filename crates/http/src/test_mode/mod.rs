//! Test mode's routes, `/v1/batchd/test/...`, mounted only on a server started with
//! `--test-mode` (elsewhere those paths are unknown routes, 404 `not_found_error`). They are
//! authenticated like every API route and act on the caller's workspace only, so parallel tests
//! that each use their own key never see each other. The handlers live with their concern:
//! virtual clocks and reset in [`clock`], the mock's scripted outcomes in [`scripts`].

pub mod clock;
pub mod scripts;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use batchd_domain::Timestamp;
use batchd_domain::script::Scripts;
use batchd_store::{ClockStore, StoreError, clock::virtual_now};

use crate::AppState;
pub(crate) use clock::test_mode;

/// What the test routes need beside the API's state; present exactly when test mode is on.
pub struct TestMode {
    /// The store's clocks and resets.
    pub clocks: Arc<dyn ClockStore>,
    /// How long results are kept (the dispatcher's setting), for the retention an advance
    /// settles at once.
    pub results_retention: Duration,
    /// The mock's scripted outcomes, shared with the dispatcher.
    pub scripts: Arc<Scripts>,
}

/// The test routes, to be merged into the authenticated API.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/batchd/test/clock", get(clock::get_clock))
        .route("/v1/batchd/test/clock/advance", post(clock::advance))
        .route("/v1/batchd/test/reset", post(clock::reset))
        .route(
            "/v1/batchd/test/mock/rules",
            get(scripts::get_rules).put(scripts::put_rules),
        )
        .route(
            "/v1/batchd/test/mock/fixtures",
            post(scripts::post_fixtures).layer(DefaultBodyLimit::max(scripts::MAX_FIXTURES_BYTES)),
        )
}

impl AppState {
    /// Turns test mode on: the test routes are mounted, and the times the API stamps (a batch's
    /// `created_at`, `expires_at`, `cancel_initiated_at`) are taken on the caller's workspace's
    /// clock. Called while building the state, before it is shared.
    pub fn with_test_mode(mut self, test: TestMode) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.test = Some(test),
            None => tracing::error!("test mode was set after the state was shared; it stays off"),
        }
        self
    }

    /// Whether the server runs in test mode.
    pub fn test_mode(&self) -> bool {
        self.inner.test.is_some()
    }

    /// Now on `workspace`'s clock: real time unless test mode moved it (outside test mode this
    /// reads nothing).
    pub(crate) async fn now_in(&self, workspace: &str) -> Result<Timestamp, StoreError> {
        let now = Timestamp::now();
        match &self.inner.test {
            None => Ok(now),
            Some(test) => Ok(virtual_now(now, test.clocks.clock_offset(workspace).await?)),
        }
    }
}
