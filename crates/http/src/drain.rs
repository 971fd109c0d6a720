//! The drain of refused request bodies: reading, in the background, the body of a request
//! answered before its body was read, so the client reads the answer rather than a reset.
//!
//! A client may still be sending its body when the answer goes out (Python's `http.client`, so
//! the SDK, sends a create whole before it reads); closing the connection on unread bytes
//! resets it, the client sees a broken pipe rather than the status, and retries it as a network
//! error, ignoring `retry-after`. Every drain is bounded like a create body, by the size limit
//! and the minimum pace ([`crate::create::MIN_BODY_RATE`]); nothing is kept.
//!
//! Refusals of authenticated callers drain always: the connection cap and their quotas bound
//! them. Refusals of callers that did not authenticate drain only while fewer than
//! [`MAX_UNAUTHENTICATED_DRAINS`] are under way, so that a stranger cannot make the server read
//! any number of bodies for nothing; past it the connection is just closed.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{HeaderMap, header};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::create::paced;

/// Bodies of unauthenticated requests drained at once; a few suffice for the clients that
/// mistyped a key, and at the minimum pace they cost little.
pub const MAX_UNAUTHENTICATED_DRAINS: usize = 8;

/// The drains of one server: the bounds of every drain, and the slots of the unauthenticated
/// ones.
pub(crate) struct Drains {
    /// Bytes read at most, as for a create body.
    max: u64,
    /// How long a body may keep the drain waiting before it must keep up the minimum pace.
    grace: Duration,
    unauthenticated: Arc<Semaphore>,
}

impl Drains {
    pub fn new(config: &crate::HttpConfig) -> Self {
        Self {
            max: config.max_create_bytes,
            grace: config.body_timeout,
            unauthenticated: Arc::new(Semaphore::new(MAX_UNAUTHENTICATED_DRAINS)),
        }
    }

    /// Drains the body of a refused request from an authenticated caller.
    pub fn discard(&self, body: Body, headers: &HeaderMap) {
        self.drain(body, headers, None);
    }

    /// Drains the body of a refused request from a caller that did not authenticate, if a slot
    /// is free; otherwise drops it, which closes the connection.
    pub fn discard_unauthenticated(&self, body: Body, headers: &HeaderMap) {
        if body.is_end_stream() {
            return;
        }
        if let Ok(slot) = self.unauthenticated.clone().try_acquire_owned() {
            self.drain(body, headers, Some(slot));
        }
    }

    /// Reads and drops `body` in a task of its own. A client that waits for `100 Continue` has
    /// sent nothing and is spared the upload.
    fn drain(&self, body: Body, headers: &HeaderMap, slot: Option<OwnedSemaphorePermit>) {
        let expects_continue = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects_continue || body.is_end_stream() {
            return;
        }
        let (max, grace) = (self.max, self.grace);
        tokio::spawn(async move {
            let mut body = pin!(paced(
                body.into_data_stream(),
                grace,
                Arc::new(AtomicBool::new(false))
            ));
            let mut seen: u64 = 0;
            while let Some(Ok(chunk)) = body.next().await {
                seen += chunk.len() as u64;
                if seen > max {
                    break;
                }
            }
            drop(slot);
        });
    }
}
