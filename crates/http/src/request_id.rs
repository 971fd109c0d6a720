//! Request ids and access logs: every response carries a fresh `request-id` header, the same
//! value appears as `request_id` in error bodies, and each request is logged once with it.
//!
//! Each request is also counted and timed in metrics. Every label value comes from a closed set
//! (the standard methods or `other`, the matched route template or `unmatched`, the status code the server
//! chose), because each distinct value is a series kept for the life of the process: a label
//! copied from the request would let any client, without a key, grow memory and `/metrics`
//! without limit.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The `method` label: the standard methods by name, every other method string `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Outermost middleware: assigns the id, makes it visible to [`current`], logs the outcome.
pub async fn layer(request: Request, next: Next) -> Response {
    let id = batchd_domain::ids::request_id();
    let started = Instant::now();
    let method = request.method().clone();
    let method_label = method_label(&method);
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    let elapsed = started.elapsed();
    metrics::counter!(
        "batchd_http_requests_total",
        "method" => method_label,
        "route" => route.clone(),
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    metrics::histogram!("batchd_http_request_duration_seconds", "method" => method_label, "route" => route)
        .record(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("request-id", value);
    }
    tracing::info!(
        request_id = %id,
        %method,
        %path,
        status = response.status().as_u16(),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::{Method, method_label};

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"X1").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other");
    }
}
