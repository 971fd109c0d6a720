//! Tenant quotas and failed-authentication throttling, all answered with 429
//! `rate_limit_error` and a `retry-after` the SDKs' built-in retries honour:
//!
//! * the **queue cap**: requests a workspace may have waiting to be processed; checked by the
//!   store inside a create's commit (see `BatchStore::commit_batch_within`), and before the
//!   body is read against a count outside the commit, so a full queue costs no upload;
//! * the **rate limit** on batch API calls, per workspace, in requests per minute: a GCRA
//!   ([`RateLimiter`]) whose state is one instant per busy workspace, in this process only;
//! * the **failed-authentication throttle**, per client address ([`AuthThrottle`]), so that
//!   guessing keys is slow.
//!
//! The texts of the three refusals live here, once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use batchd_domain::{ErrorType, Timestamp};
use serde::Deserialize;

use crate::ApiError;

/// The `retry-after` of a create refused by the queue cap. A queue drains as the backends work
/// through it, which takes minutes, so retrying sooner only adds load; and 60 s is the longest
/// wait the Python SDK honours (longer ones it replaces with its own short back-off).
pub const QUEUE_FULL_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Limits of one workspace that differ from the server's defaults (`[workspaces.NAME]` in the
/// config file); a limit left out keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceLimits {
    /// Requests the workspace may have waiting to be processed.
    pub queue_cap: Option<u64>,
    /// Batch API calls per minute; 0 turns the limit off.
    pub rate_limit: Option<u32>,
}

/// The quota settings of the HTTP layer: server-wide defaults and per-workspace overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Requests a workspace may have waiting to be processed, by default.
    pub queue_cap: u64,
    /// Batch API calls per workspace per minute, by default; 0 means no limit.
    pub rate_limit: u32,
    /// Overrides by workspace name.
    pub workspaces: BTreeMap<String, WorkspaceLimits>,
    /// Failed authentications from one client address after which it is refused for the rest
    /// of the window; 0 turns the throttle off.
    pub auth_failure_limit: u32,
    /// The window those failures are counted in.
    pub auth_failure_window: Duration,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            // The largest queue the hosted API documents for any tier.
            queue_cap: 500_000,
            // Off: a server on a laptop or in CI must not throttle its one user (or the
            // benchmark, which calls the API as fast as it can).
            rate_limit: 0,
            workspaces: BTreeMap::new(),
            auth_failure_limit: 20,
            auth_failure_window: Duration::from_secs(60),
        }
    }
}

impl QuotaConfig {
    pub fn queue_cap(&self, workspace: &str) -> u64 {
        self.workspaces
            .get(workspace)
            .and_then(|w| w.queue_cap)
            .unwrap_or(self.queue_cap)
    }

    pub fn rate_limit(&self, workspace: &str) -> u32 {
        self.workspaces
            .get(workspace)
            .and_then(|w| w.rate_limit)
            .unwrap_or(self.rate_limit)
    }
}

/// The 429 of a create that would take its workspace over its queue cap.
pub fn queue_full(cap: u64, waiting: u64) -> ApiError {
    ApiError::new(
        ErrorType::RateLimit,
        format!(
            "This request would exceed your workspace's batch queue limit of {cap} requests ({waiting} are waiting to be processed)."
        ),
    )
    .with_retry_after(QUEUE_FULL_RETRY_AFTER)
}

/// The 429 of a batch larger than its workspace's queue cap: it can never fit, so the client is
/// told not to retry it.
pub fn batch_over_cap(cap: u64, total: u64) -> ApiError {
    ApiError::new(
        ErrorType::RateLimit,
        format!(
            "This batch of {total} requests is larger than your workspace's batch queue limit of {cap} requests; it can never be accepted. Split it into smaller batches."
        ),
    )
    .never_retry()
}

/// The 429 of a batch API call over its workspace's rate limit.
pub fn rate_limited(per_minute: u32, wait: Duration) -> ApiError {
    ApiError::new(
        ErrorType::RateLimit,
        format!(
            "This request would exceed your workspace's rate limit of {per_minute} Message Batches API requests per minute."
        ),
    )
    .with_retry_after(wait)
}

/// The 429 of any request from an address that failed to authenticate too often.
pub fn auth_throttled(wait: Duration) -> ApiError {
    ApiError::new(
        ErrorType::RateLimit,
        "Too many requests with a missing or invalid API key from this address; try again later.",
    )
    .with_retry_after(wait)
}

/// What the rate limiter decided for one call, with the figures of the
/// `anthropic-ratelimit-requests-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub limit: u32,
    /// Calls that could be made now, this one counted.
    pub remaining: u32,
    /// How long until the bucket is full again.
    pub reset: Duration,
    /// `Some(wait)` when the call is refused: one call is allowed again after `wait`.
    pub refused: Option<Duration>,
}

impl Decision {
    /// The three headers the API documents on batch routes.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("anthropic-ratelimit-requests-limit", self.limit.to_string()),
            (
                "anthropic-ratelimit-requests-remaining",
                self.remaining.to_string(),
            ),
            (
                "anthropic-ratelimit-requests-reset",
                Timestamp::now().plus(self.reset).to_rfc3339(),
            ),
        ]
    }
}

/// A generic cell rate algorithm per workspace: a workspace limited to `r` calls a minute may
/// make `r` at once, then one every `60 s / r`. Its state is the time at which its bucket is
/// full again; a workspace whose bucket is full has no entry, so the map holds only the
/// workspaces that called within the last minute (idle ones are swept out once a minute).
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    full_at: HashMap<String, Instant>,
    swept: Instant,
}

const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            state: Mutex::new(Buckets {
                full_at: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }
}

impl RateLimiter {
    /// Counts one call of `workspace`, limited to `per_minute` (which must not be 0), at `now`.
    pub fn check(&self, workspace: &str, per_minute: u32, now: Instant) -> Decision {
        let per_minute = per_minute.max(1);
        let interval = Duration::from_secs(60) / per_minute;
        let burst = interval * per_minute;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(state.swept) >= SWEEP_EVERY {
            state.full_at.retain(|_, full_at| *full_at > now);
            state.swept = now;
        }
        let full_at = state
            .full_at
            .get(workspace)
            .copied()
            .filter(|t| *t > now)
            .unwrap_or(now);
        let backlog = full_at + interval - now;
        if backlog > burst {
            return Decision {
                limit: per_minute,
                remaining: 0,
                reset: full_at - now,
                refused: Some(backlog - burst),
            };
        }
        match state.full_at.get_mut(workspace) {
            Some(t) => *t = now + backlog,
            None => {
                state.full_at.insert(workspace.to_owned(), now + backlog);
            }
        }
        let remaining = (burst - backlog).as_nanos() / interval.as_nanos().max(1);
        Decision {
            limit: per_minute,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset: backlog,
            refused: None,
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state.lock().unwrap().full_at.len()
    }
}

/// Most client addresses whose failures are counted at once; beyond it the oldest window is
/// forgotten. 65,536 windows take a few MB.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// Failed authentications per client address in fixed windows: once an address has failed
/// `limit` times within `window` of its first failure, every request from it is refused until
/// that window ends. IPv6 clients are counted per /64, the block one host usually holds. The
/// windows are kept in the order they started, so expired ones are dropped from the front and,
/// when too many addresses are tracked, the oldest is evicted, each in O(1).
#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    max_tracked: usize,
    state: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    by_addr: HashMap<IpAddr, Window>,
    /// `(start, address)` of every window in `by_addr`, oldest first.
    order: VecDeque<(Instant, IpAddr)>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// What [`AuthThrottle::failed`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Counted,
    /// This failure reached the limit: the address is refused from now on (log it once).
    ThrottleStarts,
    /// The limit was reached while this attempt's key was looked up: answer it as refused, with
    /// the rest of the window, so that guesses sent in parallel learn no more than the limit.
    Refused(Duration),
}

impl AuthThrottle {
    pub fn new(limit: u32, window: Duration, max_tracked: usize) -> Self {
        Self {
            limit,
            window,
            max_tracked: max_tracked.max(1),
            state: Mutex::new(Failures::default()),
        }
    }

    /// `Some(rest of the window)` when `addr` is refused at `now`.
    pub fn blocked(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.expire(&mut state, now);
        let window = state.by_addr.get(&block_of(addr))?;
        (window.failures >= self.limit).then(|| rest(window.start, self.window, now))
    }

    /// Counts a failed authentication from `addr` at `now`.
    pub fn failed(&self, addr: IpAddr, now: Instant) -> Failure {
        if self.limit == 0 {
            return Failure::Counted;
        }
        let addr = block_of(addr);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.expire(&mut state, now);
        if let Some(window) = state.by_addr.get_mut(&addr) {
            if window.failures >= self.limit {
                return Failure::Refused(rest(window.start, self.window, now));
            }
            window.failures += 1;
            return if window.failures == self.limit {
                Failure::ThrottleStarts
            } else {
                Failure::Counted
            };
        }
        while state.by_addr.len() >= self.max_tracked {
            let Some((start, oldest)) = state.order.pop_front() else {
                break;
            };
            if state.by_addr.get(&oldest).is_some_and(|w| w.start == start) {
                state.by_addr.remove(&oldest);
            }
        }
        state.by_addr.insert(
            addr,
            Window {
                start: now,
                failures: 1,
            },
        );
        state.order.push_back((now, addr));
        if self.limit == 1 {
            Failure::ThrottleStarts
        } else {
            Failure::Counted
        }
    }

    /// Drops the windows that ended by `now`.
    fn expire(&self, state: &mut Failures, now: Instant) {
        while let Some(&(start, addr)) = state.order.front() {
            if !ended(start, self.window, now) {
                break;
            }
            state.order.pop_front();
            if state.by_addr.get(&addr).is_some_and(|w| w.start == start) {
                state.by_addr.remove(&addr);
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state.lock().unwrap().by_addr.len()
    }
}

/// Whether a window of `length` that started at `start` has ended by `now`. A window too long
/// for an `Instant` never ends within the process.
fn ended(start: Instant, length: Duration, now: Instant) -> bool {
    start.checked_add(length).is_some_and(|end| end <= now)
}

/// What is left at `now` of a window of `length` that started at `start`.
fn rest(start: Instant, length: Duration, now: Instant) -> Duration {
    length.saturating_sub(now.saturating_duration_since(start))
}

/// The address failures are counted under: IPv4 as is (also when mapped into IPv6), IPv6 by
/// its /64.
fn block_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_a_burst_then_one_per_interval() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        for left in (0..60).rev() {
            let d = limiter.check("w", 60, t0);
            assert_eq!((d.refused, d.remaining), (None, left));
        }
        let d = limiter.check("w", 60, t0);
        assert_eq!(d.refused, Some(Duration::from_secs(1)));
        assert_eq!(d.reset, Duration::from_secs(60));
        assert_eq!(limiter.check("other", 60, t0).refused, None);
        let later = t0 + Duration::from_millis(1000);
        assert_eq!(limiter.check("w", 60, later).refused, None);
        assert!(limiter.check("w", 60, later).refused.is_some());
        // A minute of quiet fills the bucket again, and the sweep forgets the workspace.
        let d = limiter.check("w", 60, t0 + Duration::from_secs(62));
        assert_eq!((d.refused, d.remaining), (None, 59));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn auth_throttle_refuses_for_the_rest_of_the_window() {
        let throttle = AuthThrottle::new(3, Duration::from_secs(10), 100);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(throttle.failed(ip, t0), Failure::Counted);
        assert_eq!(throttle.failed(ip, t0), Failure::Counted);
        assert_eq!(throttle.blocked(ip, t0), None);
        assert_eq!(throttle.failed(ip, t0), Failure::ThrottleStarts);
        let t4 = t0 + Duration::from_secs(4);
        assert_eq!(throttle.blocked(ip, t4), Some(Duration::from_secs(6)));
        assert_eq!(throttle.blocked("192.0.2.2".parse().unwrap(), t4), None);
        assert_eq!(throttle.blocked(ip, t0 + Duration::from_secs(10)), None);
        assert_eq!(throttle.tracked(), 0);
    }

    #[test]
    fn failures_past_the_limit_are_refused_not_counted() {
        // Attempts that all passed `blocked` before any failed: the ones past the limit are
        // told to wait, whatever their key turned out to be.
        let throttle = AuthThrottle::new(2, Duration::from_secs(10), 100);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(throttle.failed(ip, t0), Failure::Counted);
        assert_eq!(throttle.failed(ip, t0), Failure::ThrottleStarts);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            throttle.failed(ip, t1),
            Failure::Refused(Duration::from_secs(9))
        );
    }

    #[test]
    fn an_absurd_window_never_ends_and_does_not_panic() {
        let throttle = AuthThrottle::new(1, Duration::MAX, 100);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(throttle.failed(ip, t0), Failure::ThrottleStarts);
        assert!(
            throttle
                .blocked(ip, t0 + Duration::from_secs(3600))
                .is_some()
        );
        assert!(matches!(throttle.failed(ip, t0), Failure::Refused(_)));
    }

    #[test]
    fn auth_throttle_tracks_a_bounded_number_of_addresses() {
        let throttle = AuthThrottle::new(2, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        let first: IpAddr = "10.0.0.0".parse().unwrap();
        throttle.failed(first, t0);
        throttle.failed(first, t0);
        for i in 1..1000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            throttle.failed(ip, t0 + Duration::from_millis(u64::from(i)));
            assert!(throttle.tracked() <= 100);
        }
        // The oldest window went first.
        assert_eq!(throttle.blocked(first, t0 + Duration::from_secs(2)), None);
    }

    #[test]
    fn ipv6_counts_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(block_of(a), block_of(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(block_of(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn per_workspace_limits_override_the_defaults() {
        let mut config = QuotaConfig::default();
        config.workspaces.insert(
            "a".into(),
            WorkspaceLimits {
                queue_cap: Some(10),
                rate_limit: None,
            },
        );
        assert_eq!(config.queue_cap("a"), 10);
        assert_eq!(config.rate_limit("a"), 0);
        assert_eq!(config.queue_cap("b"), 500_000);
    }
}
