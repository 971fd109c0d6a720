//! Completion webhooks: what a delivery is made of, independent of storage and of the HTTP
//! client that sends it. The signing secret of an endpoint ([`secret`]), the Standard Webhooks
//! signature over `id.timestamp.body` ([`sign`]), the event body ([`event`]), which URLs and
//! addresses an endpoint may point at, at create time and again after DNS resolution at send
//! time ([`policy`]), and when a failed delivery is tried again and an endpoint disabled
//! ([`schedule`]); and one attempt at sending a signed event to a checked, pinned address
//! ([`send`]).
//!
//! The delivery [`worker`] runs them: fan-out of the outbox, claim, build, sign, send, settle;
//! see <https://www.standardwebhooks.com/> for the wire format.

pub mod event;
pub mod policy;
pub mod schedule;
pub mod secret;
pub mod send;
pub mod sign;
pub mod worker;

pub use secret::Secret;
