//! What the fake upstream saw, for tests to assert on: counters and gauges are plain atomics
//! (the fast path takes no lock); arrival times and request copies are kept only when the
//! configuration asks for them, in bounded rings.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method};

/// The routes the fake upstream tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// Anything else (answered 404).
    Other,
}

/// A copy of one request as it arrived, kept when `FakeConfig::record_requests` > 0.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl RecordedRequest {
    /// A header's value as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Live statistics of one fake upstream; read them through `FakeUpstream::stats()`.
#[derive(Debug)]
pub struct Stats {
    messages: AtomicU64,
    chat: AtomicU64,
    other: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    faults: AtomicU64,
    arrivals: Ring<Instant>,
    requests: Ring<RecordedRequest>,
}

/// A bounded ring behind a mutex; capacity 0 disables it, so it costs nothing when off.
#[derive(Debug)]
struct Ring<T> {
    capacity: usize,
    items: Mutex<VecDeque<T>>,
}

impl<T: Clone> Ring<T> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            items: Mutex::new(VecDeque::new()),
        }
    }

    fn enabled(&self) -> bool {
        self.capacity > 0
    }

    fn push(&self, item: T) {
        if self.capacity == 0 {
            return;
        }
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        if items.len() == self.capacity {
            items.pop_front();
        }
        items.push_back(item);
    }

    fn snapshot(&self) -> Vec<T> {
        let items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        items.iter().cloned().collect()
    }

    fn clear(&self) {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Decrements the in-flight gauge when a request ends, however it ends (answered, reset, or
/// dropped because the client went away while it hung).
pub(crate) struct InFlight<'a>(&'a Stats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

impl Stats {
    pub(crate) fn new(record_arrivals: usize, record_requests: usize) -> Self {
        Self {
            messages: AtomicU64::new(0),
            chat: AtomicU64::new(0),
            other: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            faults: AtomicU64::new(0),
            arrivals: Ring::new(record_arrivals),
            requests: Ring::new(record_requests),
        }
    }

    /// Counts a request's arrival and holds the in-flight gauge until the guard drops.
    pub(crate) fn arrive(&self, endpoint: Endpoint, at: Instant) -> InFlight<'_> {
        let counter = match endpoint {
            Endpoint::Messages => &self.messages,
            Endpoint::ChatCompletions => &self.chat,
            Endpoint::Other => &self.other,
        };
        counter.fetch_add(1, Relaxed);
        let now = self.in_flight.fetch_add(1, Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Relaxed);
        self.arrivals.push(at);
        InFlight(self)
    }

    pub(crate) fn records_requests(&self) -> bool {
        self.requests.enabled()
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        self.requests.push(request);
    }

    pub(crate) fn fault_served(&self) {
        self.faults.fetch_add(1, Relaxed);
    }

    /// Requests received on one endpoint (faulted ones included).
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        match endpoint {
            Endpoint::Messages => self.messages.load(Relaxed),
            Endpoint::ChatCompletions => self.chat.load(Relaxed),
            Endpoint::Other => self.other.load(Relaxed),
        }
    }

    /// Requests received on every endpoint.
    pub fn total_requests(&self) -> u64 {
        self.messages.load(Relaxed) + self.chat.load(Relaxed) + self.other.load(Relaxed)
    }

    /// Requests being worked on right now (including hanging ones).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// The most requests ever in flight at once since start or the last reset.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Relaxed)
    }

    /// Starts a new max-in-flight measurement from the current in-flight count.
    pub fn reset_max_in_flight(&self) {
        self.max_in_flight.store(self.in_flight(), Relaxed);
    }

    /// Requests answered with a scripted fault so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Relaxed)
    }

    /// Arrival times of the most recent requests, oldest first (empty unless
    /// `FakeConfig::record_arrivals` > 0).
    pub fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.snapshot()
    }

    /// The most recent requests, oldest first (empty unless `FakeConfig::record_requests` > 0).
    pub fn recent_requests(&self) -> Vec<RecordedRequest> {
        self.requests.snapshot()
    }

    /// The most recent request, if requests are recorded.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.requests.snapshot().pop()
    }

    /// Forgets recorded arrivals and requests (counters keep counting).
    pub fn clear_recorded(&self) {
        self.arrivals.clear();
        self.requests.clear();
    }
}
