//! Per-backend admission: how many requests may be at an upstream at once, and how fast they may
//! be sent.
//!
//! * [`Concurrency`] is a semaphore whose size adapts (AIMD, as TCP does): every throttling answer
//!   (429, 529) halves the limit, at most once per `cooldown` so that one burst of refusals from
//!   requests sent together counts once; every success adds `1/limit`, so the limit climbs back by
//!   about one per round of successful requests, never above the configured maximum.
//! * [`RateLimit`] paces requests per minute and estimated input tokens per minute with a
//!   reservation clock: each caller reserves its cost at once and sleeps until its turn, so
//!   waiters are served in arrival order and nothing spins. There is no burst allowance: sends
//!   are spaced evenly, so the limit holds over every window, not just per calendar minute.
//!
//! * [`Breaker`] stops sending to an upstream that keeps failing (refused connections, resets,
//!   timeouts, 5xx, 529): after a few failures in a row it opens, requests wait without spending
//!   their attempt budget, and one probe at a time tests whether the upstream is back. So an
//!   outage of minutes costs no request; a request that fails while others succeed still uses up
//!   its attempts and ends `errored`.
//!
//! All are in-process: several batchd processes sharing one database each apply them on their
//! own (documented in the README).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// An adaptive concurrency limit.
#[derive(Debug)]
pub struct Concurrency {
    max: usize,
    state: Mutex<State>,
    freed: Notify,
    cooldown: Duration,
}

#[derive(Debug)]
struct State {
    /// Fractional, so that additive increase can grow it by `1/limit` per success.
    limit: f64,
    in_use: usize,
    /// Callers waiting in [`Concurrency::acquire`].
    waiting: usize,
    last_decrease: Option<Instant>,
}

/// A slot at the upstream; frees itself when dropped.
#[derive(Debug)]
pub struct Permit<'a> {
    owner: &'a Concurrency,
}

impl Concurrency {
    pub fn new(max: usize, cooldown: Duration) -> Self {
        let max = max.max(1);
        Self {
            max,
            state: Mutex::new(State {
                limit: max as f64,
                in_use: 0,
                waiting: 0,
                last_decrease: None,
            }),
            freed: Notify::new(),
            cooldown,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain numbers only; a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot under the current limit, waiting for one only while fewer callers than the
    /// limit are waiting already; `None` when that queue is full. Each waiter holds a dispatch
    /// slot, so an unbounded queue would let one slow backend take every slot from the others,
    /// while a queue as long as the limit keeps the upstream busy as its slots free.
    pub async fn acquire(&self) -> Option<Permit<'_>> {
        let mut queued: Option<Queued<'_>> = None;
        loop {
            // Registered before checking, so a slot freed between the check and the wait wakes us.
            let freed = self.freed.notified();
            {
                let mut s = self.state();
                if s.in_use < s.limit as usize {
                    s.in_use += 1;
                    drop(s);
                    drop(queued);
                    return Some(Permit { owner: self });
                }
                if queued.is_none() {
                    if s.waiting >= s.limit as usize {
                        return None;
                    }
                    s.waiting += 1;
                    queued = Some(Queued { owner: self });
                }
            }
            freed.await;
        }
    }

    /// Whether [`Concurrency::acquire`] would turn a caller away now.
    pub fn queue_full(&self) -> bool {
        let s = self.state();
        s.in_use >= s.limit as usize && s.waiting >= s.limit as usize
    }

    /// Whether the queue has room for a real group of new requests: a slot is free or the queue
    /// is under half the limit. Callers that stopped bringing requests on a full queue start
    /// again at this, not at the first free place, which would bring a group to fill one place
    /// and turn the rest away.
    pub fn has_room(&self) -> bool {
        let s = self.state();
        s.in_use < s.limit as usize || s.waiting < (s.limit as usize).div_ceil(2)
    }

    /// The current limit (whole requests).
    pub fn limit(&self) -> usize {
        self.state().limit as usize
    }

    pub fn in_use(&self) -> usize {
        self.state().in_use
    }

    /// The upstream answered: grow the limit by `1/limit`. Returns whether it was below its
    /// maximum (so that a gauge of it needs updating).
    pub fn succeeded(&self) -> bool {
        let mut s = self.state();
        if s.limit < self.max as f64 {
            let grown = s.limit + 1.0 / s.limit.max(1.0);
            s.limit = grown.min(self.max as f64);
            drop(s);
            self.freed.notify_one();
            return true;
        }
        false
    }

    /// The upstream said it is overloaded or rate limited: halve the limit (not below 1), once
    /// per cooldown.
    pub fn throttled(&self) {
        let now = Instant::now();
        let mut s = self.state();
        if s.last_decrease.is_some_and(|at| now - at < self.cooldown) {
            return;
        }
        s.last_decrease = Some(now);
        s.limit = (s.limit / 2.0).max(1.0);
    }
}

/// A place in [`Concurrency::acquire`]'s queue; left when dropped, also by a caller that gives
/// up waiting.
struct Queued<'a> {
    owner: &'a Concurrency,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.owner.state().waiting -= 1;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.owner.state().in_use -= 1;
        self.owner.freed.notify_one();
    }
}

/// Requests-per-minute and tokens-per-minute pacing; a limit of 0 is no limit.
#[derive(Debug)]
pub struct RateLimit {
    requests: Option<Clock>,
    tokens: Option<Clock>,
}

/// A reservation clock: `next` is when the budget spent so far is paid off; the next caller
/// goes then (or now, if that has passed) and pushes `next` on by its own cost.
#[derive(Debug)]
struct Clock {
    /// Time one unit costs.
    per_unit: Duration,
    next: Mutex<Option<Instant>>,
}

impl Clock {
    fn per_minute(limit: u64) -> Option<Self> {
        (limit > 0).then(|| Self {
            per_unit: Duration::from_secs(60).div_f64(limit as f64),
            next: Mutex::new(None),
        })
    }

    /// Reserves `units` and returns when the caller may go.
    /// Reserves `units` and returns when the caller may go; reserves nothing and returns how
    /// far off its turn is when that is more than `horizon` away.
    fn reserve(&self, units: u64, now: Instant, horizon: Duration) -> Result<Instant, Duration> {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let start = next.map_or(now, |n| n.max(now));
        if start - now > horizon {
            return Err(start - now);
        }
        let cost = self
            .per_unit
            .saturating_mul(units.min(u64::from(u32::MAX)) as u32);
        *next = Some(start + cost);
        Ok(start)
    }
}

impl RateLimit {
    pub fn new(requests_per_minute: u64, tokens_per_minute: u64) -> Self {
        Self {
            requests: Clock::per_minute(requests_per_minute),
            tokens: Clock::per_minute(tokens_per_minute),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Waits until one request of `tokens` estimated input tokens may be sent, and returns how
    /// long it waited; or, when its turn is more than `horizon` away, waits for nothing and
    /// returns `Err` with how far off it is, so the caller can put the request aside instead of
    /// holding a dispatch slot meanwhile.
    pub async fn admit(&self, tokens: u64, horizon: Duration) -> Result<Duration, Duration> {
        if self.is_unlimited() {
            return Ok(Duration::ZERO);
        }
        let now = Instant::now();
        let mut at = now;
        if let Some(clock) = &self.requests {
            at = at.max(clock.reserve(1, now, horizon)?);
        }
        if let Some(clock) = &self.tokens {
            at = at.max(clock.reserve(tokens, now, horizon)?);
        }
        if at > now {
            tokio::time::sleep_until(at).await;
        }
        Ok(at - now)
    }
}

/// Consecutive failures that open the breaker.
const BREAKER_THRESHOLD: u32 = 3;

/// A circuit breaker over one upstream.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    /// Failures since the last success.
    failures: u32,
    /// How many times it opened since the last success (for the growing wait).
    opened: u32,
    /// Open until then; `None` when closed.
    open_until: Option<Instant>,
    /// A probe is out: everybody else waits for its answer.
    probing: bool,
    /// How long the breaker stayed open last time: while a probe is out, the others wait this
    /// long again rather than asking in a tight loop (a probe may take a whole timeout).
    interval: Duration,
}

/// What [`Breaker::admit`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send as usual.
    Closed,
    /// Send: this request tests whether the upstream is back. Its failure spends no attempt.
    Probe,
    /// Do not send; ask again after this long.
    Open(Duration),
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn admit(&self) -> Admission {
        let now = Instant::now();
        let mut s = self.state();
        match s.open_until {
            None => Admission::Closed,
            Some(until) if now < until => Admission::Open(until - now),
            Some(_) if s.probing => Admission::Open(s.interval.max(Duration::from_millis(10))),
            Some(_) => {
                s.probing = true;
                Admission::Probe
            }
        }
    }

    /// How long to wait if the breaker is open with no probe to take; `None` when a request
    /// may go on towards sending. Takes nothing: call [`Breaker::admit`] right before sending,
    /// so that a probe, once granted, is always sent.
    pub fn wait(&self) -> Option<Duration> {
        let now = Instant::now();
        let s = self.state();
        match s.open_until {
            Some(until) if now < until => Some(until - now),
            Some(_) if s.probing => Some(s.interval.max(Duration::from_millis(10))),
            _ => None,
        }
    }

    /// The upstream answered (whatever the answer): close.
    pub fn succeeded(&self) {
        *self.state() = BreakerState::default();
    }

    /// The upstream failed in a way that says it is unwell. `open_for` gives how long to stay
    /// open after the `n`-th opening. Returns whether this failure opened (or re-opened) it.
    pub fn failed(&self, open_for: impl FnOnce(u32) -> Duration) -> bool {
        let mut s = self.state();
        s.failures += 1;
        let reopen = s.probing || (s.open_until.is_none() && s.failures >= BREAKER_THRESHOLD);
        if reopen {
            s.probing = false;
            s.opened += 1;
            s.interval = open_for(s.opened);
            s.open_until = Some(Instant::now() + s.interval);
        }
        reopen
    }

    pub fn is_open(&self) -> bool {
        self.state().open_until.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn limit_halves_on_throttling_and_climbs_back() {
        let c = Concurrency::new(8, Duration::from_secs(1));
        assert_eq!(c.limit(), 8);
        c.throttled();
        c.throttled(); // same burst: counted once
        assert_eq!(c.limit(), 4);
        tokio::time::advance(Duration::from_secs(2)).await;
        c.throttled();
        assert_eq!(c.limit(), 2);
        // About one step per round of `limit` successes: 2 → 8 takes some 30.
        for _ in 0..10 {
            c.succeeded();
        }
        assert_eq!(c.limit(), 4);
        for _ in 0..100 {
            c.succeeded();
        }
        assert_eq!(c.limit(), 8, "climbs back, never above the maximum");
        for _ in 0..100 {
            tokio::time::advance(Duration::from_secs(2)).await;
            c.throttled();
        }
        assert_eq!(c.limit(), 1, "never below one");
    }

    #[tokio::test(start_paused = true)]
    async fn permits_never_exceed_the_limit_and_the_queue_is_as_long_as_the_limit() {
        let c = Arc::new(Concurrency::new(3, Duration::from_secs(1)));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (c, peak) = (c.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let Some(_p) = c.acquire().await else {
                    return false;
                };
                peak.fetch_max(c.in_use(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
                true
            }));
        }
        tokio::task::yield_now().await;
        assert!(c.queue_full() && !c.has_room());
        let mut served = 0;
        for t in tasks {
            served += usize::from(t.await.unwrap());
        }
        assert_eq!(
            served, 6,
            "three at the upstream, three queued, the rest turned away"
        );
        assert_eq!(peak.load(Ordering::Relaxed), 3);
        assert_eq!(c.in_use(), 0);
        assert!(!c.queue_full() && c.has_room());
        // A waiter that gives up leaves the queue.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(c.acquire().await.expect("free"));
        }
        let gave_up = tokio::time::timeout(Duration::from_millis(5), c.acquire()).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(c.state().waiting, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_hold_over_any_window() {
        let r = Arc::new(RateLimit::new(600, 0)); // one every 100 ms
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                r.admit(1, Duration::MAX).await.unwrap();
                Instant::now() - start
            }));
        }
        let mut at = Vec::new();
        for t in tasks {
            at.push(t.await.unwrap());
        }
        at.sort();
        assert_eq!(at.iter().filter(|d| d.is_zero()).count(), 1);
        assert_eq!(at[49], Duration::from_millis(4900));
        for w in at.windows(11) {
            assert!(w[10] - w[0] >= Duration::from_millis(999), "{w:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_after_failures_in_a_row_and_probes_one_at_a_time() {
        let b = Breaker::default();
        let open_for = |n: u32| Duration::from_secs(u64::from(n));
        assert!(!b.failed(open_for));
        b.succeeded(); // a success in between resets the count
        assert!(!b.failed(open_for));
        assert!(!b.failed(open_for));
        assert_eq!(b.admit(), Admission::Closed);
        assert!(b.failed(open_for), "third in a row opens it");
        assert_eq!(b.wait(), Some(Duration::from_secs(1)));
        assert_eq!(b.admit(), Admission::Open(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            b.wait(),
            None,
            "a probe is there to take; looking takes nothing"
        );
        assert_eq!(b.wait(), None);
        assert_eq!(b.admit(), Admission::Probe);
        assert_eq!(b.wait(), Some(Duration::from_secs(1)));
        assert_eq!(
            b.admit(),
            Admission::Open(Duration::from_secs(1)),
            "one probe at a time; the others wait an interval, not in a loop"
        );
        assert!(b.failed(open_for), "a failed probe re-opens it, for longer");
        assert_eq!(b.admit(), Admission::Open(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.admit(), Admission::Probe);
        b.succeeded();
        assert_eq!(b.admit(), Admission::Closed);
        assert!(!b.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_minute_pace_large_requests() {
        let r = RateLimit::new(0, 60_000); // 1,000 tokens/s
        let forever = Duration::MAX;
        assert_eq!(r.admit(1_000, forever).await, Ok(Duration::ZERO));
        assert_eq!(r.admit(3_000, forever).await, Ok(Duration::from_secs(1)));
        // Waits for the 3,000 reserved before it, not for its own cost.
        assert_eq!(r.admit(500, forever).await, Ok(Duration::from_secs(3)));
        // Further off than the caller wants to wait: nothing reserved, the distance returned.
        let horizon = Duration::from_millis(100);
        assert_eq!(r.admit(10, horizon).await, Err(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(r.admit(10, horizon).await, Ok(Duration::ZERO));
        assert!(RateLimit::new(0, 0).is_unlimited());
    }
}
