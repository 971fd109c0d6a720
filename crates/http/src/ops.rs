//! Operator endpoints outside `/v1`, unauthenticated: `/healthz` (the process answers),
//! `/readyz` (storage answers) and `/metrics` (Prometheus text format).
//!
//! Metrics go through the `metrics` facade, so the dispatcher and the store record without
//! knowing about Prometheus; one process-wide recorder renders them here. Gauges describing
//! stored state (batches by state, unanswered requests) are refreshed from the store at scrape
//! time rather than tracked incrementally, so they cannot drift; so is the webhook backlog (the
//! outbox's oldest age, the most overdue delivery), each read through an index.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use batchd_domain::Timestamp;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::AppState;

/// Latency buckets in seconds: sub-millisecond API calls up to multi-minute model calls.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls reuse it). Returns `None`
/// when another recorder was installed first, in which case `/metrics` says so.
pub fn install_metrics() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "batchd_http_requests_total",
        "HTTP requests by route (the route template, or unmatched), method (the standard \
         methods, or other) and status."
    );
    describe_histogram!(
        "batchd_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency to the response head, by route (the route template, or \
         unmatched) and method (the standard methods, or other)."
    );
    describe_gauge!("batchd_batches", "Unended batches by processing_status.");
    describe_gauge!(
        "batchd_requests_unanswered",
        "Requests of unended batches without a result (queued or in flight)."
    );
    describe_gauge!(
        "batchd_requests_queued",
        "Requests waiting to be sent to a model."
    );
    describe_gauge!(
        "batchd_requests_in_flight",
        "Requests sent to a model and not yet answered."
    );
    describe_counter!(
        "batchd_requests_finished_total",
        "Requests answered, by outcome."
    );
    describe_counter!("batchd_batches_created_total", "Batches created.");
    describe_counter!("batchd_batches_ended_total", "Batches ended, by reason.");
    describe_counter!(
        "batchd_upstream_requests_total",
        "Model calls by backend (as configured), result and attempt (first or retry)."
    );
    describe_histogram!(
        "batchd_upstream_request_duration_seconds",
        Unit::Seconds,
        "Model call latency by backend (as configured)."
    );
    describe_histogram!(
        "batchd_store_operation_duration_seconds",
        Unit::Seconds,
        "Storage call latency by operation."
    );
    describe_histogram!(
        "batchd_record_group_size",
        "Answers written per group commit."
    );
    describe_counter!(
        "batchd_webhook_deliveries_total",
        "Webhook delivery attempts by outcome."
    );
    describe_gauge!(
        "batchd_webhook_outbox_oldest_age_seconds",
        Unit::Seconds,
        "How long the oldest ended batch has waited to be turned into webhook deliveries \
         (0 when none waits)."
    );
    describe_gauge!(
        "batchd_webhook_delivery_lag_seconds",
        Unit::Seconds,
        "How long the most overdue pending webhook delivery has been due, an attempt in \
         progress included (0 when none is due)."
    );
}

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "Operations",
    summary = "Liveness",
    description = "Answers as long as the process serves HTTP; does not touch storage.",
    responses(
        (status = 200, description = "The process is up.", body = crate::openapi::OpsStatus, example = json!({"status": "ok"})),
    ),
)]
pub async fn healthz() -> Response {
    json_status(StatusCode::OK, r#"{"status":"ok"}"#)
}

#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "Operations",
    summary = "Readiness",
    description = "Answers 200 when storage answers, 503 otherwise.",
    responses(
        (status = 200, description = "Storage answers.", body = crate::openapi::OpsStatus, example = json!({"status": "ready"})),
        (status = 503, description = "Storage does not answer.", body = crate::openapi::OpsStatus, example = json!({"status": "unavailable", "reason": "storage"})),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.inner.store.ping().await {
        Ok(()) => json_status(StatusCode::OK, r#"{"status":"ready"}"#),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            json_status(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"unavailable","reason":"storage"}"#,
            )
        }
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "Operations",
    summary = "Prometheus metrics",
    description = "Metrics in the Prometheus text format (version 0.0.4): HTTP requests, batches and requests by state, model calls, storage latency, webhook deliveries and backlog.",
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 404, description = "No metrics recorder could be installed in this process (another one was installed first).", content_type = "text/plain; charset=utf-8", body = String),
    ),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = install_metrics() else {
        return (StatusCode::NOT_FOUND, "metrics recorder unavailable\n").into_response();
    };
    match state.inner.store.stats().await {
        Ok(stats) => {
            metrics::gauge!("batchd_batches", "processing_status" => "in_progress")
                .set(stats.in_progress as f64);
            metrics::gauge!("batchd_batches", "processing_status" => "canceling")
                .set(stats.canceling as f64);
            metrics::gauge!("batchd_requests_unanswered").set(stats.unanswered as f64);
            let in_flight = state.inner.work.in_flight() as u64;
            metrics::gauge!("batchd_requests_queued")
                .set(stats.unanswered.saturating_sub(in_flight) as f64);
        }
        Err(err) => tracing::warn!(error = %err, "metrics: reading storage stats failed"),
    }
    if let Some(webhooks) = &state.inner.webhooks {
        match webhooks.backlog().await {
            Ok(backlog) => {
                let now = Timestamp::now();
                metrics::gauge!("batchd_webhook_outbox_oldest_age_seconds")
                    .set(backlog.outbox_age(now).as_secs_f64());
                metrics::gauge!("batchd_webhook_delivery_lag_seconds")
                    .set(backlog.delivery_lag(now).as_secs_f64());
            }
            Err(err) => tracing::warn!(error = %err, "metrics: reading the webhook backlog failed"),
        }
    }
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn json_status(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
