//! Leases, kept in memory.
//!
//! The server holds the data-dir lock exclusively (see [`crate::lock`]), so it is the only
//! process that can ever hand out a request: a lease needs no row, no expiry time and no write.
//! A process death drops every lease at once, which is exactly the contract ("a claimed request is
//! not handed out again until it is released, answered, or its lease is lost"). After a restart
//! every cursor starts at 0 and the claim query skips requests that already have a result.
//!
//! Per batch this module tracks a cursor (the next index never handed out), the indices given
//! back by `release`, and the indices currently claimed. The state lives behind a
//! `std::sync::Mutex` that is only ever held for in-memory work, never across an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use batchd_domain::openai::Endpoint;
use batchd_domain::{ApiVersion, BatchId, Timestamp};
use batchd_store::{Retry, Slot, WorkItem};

/// What a claim needs to know about a batch to build work items.
#[derive(Debug)]
pub(crate) struct BatchInfo {
    pub id: BatchId,
    pub workspace: String,
    pub betas: Vec<String>,
    pub api_version: ApiVersion,
    pub user_profile_id: Option<String>,
    pub endpoint: Endpoint,
    pub expires_at: Timestamp,
    pub total: u32,
}

/// An unended batch as read from the database when the in-memory list is rebuilt.
#[derive(Debug)]
pub(crate) struct Unended {
    pub key: i64,
    pub canceling: bool,
    pub info: BatchInfo,
}

#[derive(Debug)]
struct Entry {
    info: Arc<BatchInfo>,
    /// In progress: its requests are handed out. False once canceling; the entry then stays only
    /// to count the claims still out.
    serving: bool,
    next: u32,
    released: BTreeSet<u32>,
    /// Deferred requests (see [`batchd_store::DispatchStore::defer`]) and when each may go again.
    /// Ordered by time, so the due ones are taken from the front without scanning the rest (a
    /// paused backend can leave a whole batch waiting here).
    waiting: BTreeSet<(Timestamp, u32)>,
    claimed: HashSet<u32>,
}

impl Entry {
    fn new(info: Arc<BatchInfo>) -> Self {
        Self {
            info,
            serving: true,
            next: 0,
            released: BTreeSet::new(),
            waiting: BTreeSet::new(),
            claimed: HashSet::new(),
        }
    }

    fn has_work(&self, now: Timestamp) -> bool {
        self.serving
            && (!self.released.is_empty()
                || self.next < self.info.total
                || self.waiting.first().is_some_and(|&(at, _)| at <= now))
    }

    /// Stops serving: what was given back is now simply unanswered and ends with the batch.
    fn stop_serving(&mut self) {
        self.serving = false;
        self.released.clear();
        self.waiting.clear();
    }
}

/// Requests reserved for one batch in one claim step, before the database says which of them
/// are still unanswered.
#[derive(Debug)]
pub(crate) struct Take {
    pub info: Arc<BatchInfo>,
    /// Released indices to hand out again (some may have been answered meanwhile).
    pub released: Vec<u32>,
    /// Where the cursor stands: the next fresh index is at or after it.
    pub next: u32,
}

#[derive(Debug)]
pub(crate) struct Claims {
    entries: BTreeMap<i64, Entry>,
    /// The last batch served: the next claim starts its round after it, so that when more
    /// batches are active than a claim has room for, every batch gets its turn.
    turn: Option<i64>,
    /// The list may disagree with the database (at startup, or after a write whose outcome is
    /// unknown): the next claim rebuilds it.
    dirty: bool,
    /// Bumped by every direct change, so a rebuild read before a change is not applied after it.
    generation: u64,
}

impl Claims {
    pub fn new() -> Self {
        Self {
            entries: BTreeMap::new(),
            turn: None,
            dirty: true,
            generation: 0,
        }
    }

    /// `Some(generation)` when the list must be rebuilt from the database.
    pub fn needs_rebuild(&self) -> Option<u64> {
        self.dirty.then_some(self.generation)
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Replaces the list with what the database says, keeping the cursors and claims of batches
    /// that are still unended. Refused (returns false) if anything changed since `generation`.
    pub fn rebuild(&mut self, generation: u64, unended: Vec<Unended>) -> bool {
        if generation != self.generation {
            return false;
        }
        let mut old = std::mem::take(&mut self.entries);
        for batch in unended {
            let info = Arc::new(batch.info);
            let entry = match old.remove(&batch.key) {
                Some(mut entry) => {
                    entry.info = info;
                    entry
                }
                // A canceling batch nobody holds claims on needs no entry.
                None if batch.canceling => continue,
                None => Entry::new(info),
            };
            let mut entry = entry;
            if batch.canceling {
                entry.stop_serving();
            } else {
                entry.serving = true;
            }
            self.entries.insert(batch.key, entry);
        }
        self.dirty = false;
        true
    }

    /// A batch was committed: serve it.
    pub fn started(&mut self, key: i64, info: BatchInfo) {
        self.generation += 1;
        self.entries.insert(key, Entry::new(Arc::new(info)));
    }

    /// A batch is now canceling: stop serving it, keep counting its claims.
    pub fn canceling(&mut self, key: i64) {
        self.generation += 1;
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.stop_serving();
        }
    }

    /// Batches ended: forget them (answers still in flight for them are dropped on record).
    pub fn ended(&mut self, keys: impl IntoIterator<Item = i64>) {
        self.generation += 1;
        for key in keys {
            self.entries.remove(&key);
        }
    }

    /// Batches to serve in this round, grouped by workspace: the workspaces in the order their
    /// first batch comes in the round, each with its batches in round-robin order after the last
    /// one served. A claim shares first between workspaces, then between a workspace's batches,
    /// so a workspace with many batches does not crowd out one with a single batch. Batches in
    /// `skip` are left out.
    pub fn candidates(&self, now: Timestamp, skip: &[i64]) -> Vec<Vec<i64>> {
        let mut groups: Vec<(&str, Vec<i64>)> = Vec::new();
        for key in self.round(now).into_iter().filter(|k| !skip.contains(k)) {
            let workspace = self.entries[&key].info.workspace.as_str();
            match groups.iter_mut().find(|(w, _)| *w == workspace) {
                Some((_, keys)) => keys.push(key),
                None => groups.push((workspace, vec![key])),
            }
        }
        groups.into_iter().map(|(_, keys)| keys).collect()
    }

    /// Batches with work, in round-robin order after the last one served.
    fn round(&self, now: Timestamp) -> Vec<i64> {
        let start = match self.turn {
            Some(turn) => Bound::Excluded(turn),
            None => Bound::Unbounded,
        };
        let end = match self.turn {
            Some(turn) => Bound::Included(turn),
            None => Bound::Excluded(i64::MIN),
        };
        self.entries
            .range((start, Bound::Unbounded))
            .chain(self.entries.range((Bound::Unbounded, end)))
            .filter(|(_, e)| e.has_work(now) && e.info.expires_at > now)
            .map(|(&key, _)| key)
            .collect()
    }

    /// Reserves up to `share` released indices of a batch and reports its cursor. `None` when
    /// the batch has nothing to hand out (any more).
    pub fn take(&mut self, key: i64, share: usize, now: Timestamp) -> Option<Take> {
        let entry = self.entries.get_mut(&key)?;
        if !entry.has_work(now) {
            return None;
        }
        while let Some(&(at, index)) = entry.waiting.first()
            && at <= now
        {
            entry.waiting.pop_first();
            entry.released.insert(index);
        }
        self.turn = Some(key);
        let mut released = Vec::new();
        while released.len() < share {
            let Some(index) = entry.released.pop_first() else {
                break;
            };
            released.push(index);
        }
        Some(Take {
            info: entry.info.clone(),
            released,
            next: entry.next,
        })
    }

    /// Records what a [`Claims::take`] turned into. `fresh` are the unanswered indices read
    /// from the cursor when `asked` were asked for; fewer means the batch's range is exhausted.
    /// Returns false when the batch stopped being served meanwhile: the caller must then hand
    /// out nothing from this step.
    pub fn claimed(&mut self, key: i64, released: &[u32], fresh: &[u32], asked: usize) -> bool {
        let Some(entry) = self.entries.get_mut(&key) else {
            return false;
        };
        if !entry.serving {
            return false;
        }
        if asked > 0 {
            entry.next = match fresh.last() {
                Some(&last) if fresh.len() >= asked => entry.next.max(last + 1),
                _ => entry.info.total,
            };
        }
        entry.claimed.extend(released.iter().chain(fresh).copied());
        true
    }

    /// Puts back released indices a failed claim step had reserved.
    pub fn unreserve(&mut self, key: i64, released: &[u32]) {
        if let Some(entry) = self.entries.get_mut(&key).filter(|e| e.serving) {
            entry.released.extend(released);
        }
    }

    /// Gives claims back. Returns the canceling batches whose last claim this was.
    pub fn release(&mut self, slots: &[Slot]) -> Vec<i64> {
        self.give_back(slots.iter().map(|&slot| (slot, None)))
    }

    /// Gives claims back to be handed out again only from the given time on. Returns the
    /// canceling batches whose last claim this was.
    pub fn defer(&mut self, retries: &[Retry]) -> Vec<i64> {
        self.give_back(retries.iter().map(|r| (r.slot, Some(r.not_before))))
    }

    fn give_back(&mut self, slots: impl Iterator<Item = (Slot, Option<Timestamp>)>) -> Vec<i64> {
        let mut drained = Vec::new();
        for (slot, not_before) in slots {
            let Some(entry) = self.entries.get_mut(&slot.batch_key) else {
                continue;
            };
            if !entry.claimed.remove(&slot.index) {
                continue;
            }
            if entry.serving {
                match not_before {
                    Some(at) => {
                        entry.waiting.insert((at, slot.index));
                    }
                    None => {
                        entry.released.insert(slot.index);
                    }
                }
            } else if entry.claimed.is_empty() && !drained.contains(&slot.batch_key) {
                drained.push(slot.batch_key);
            }
        }
        drained
    }

    /// Drops claims of answered requests.
    pub fn answered(&mut self, slots: impl IntoIterator<Item = Slot>) {
        for slot in slots {
            if let Some(entry) = self.entries.get_mut(&slot.batch_key) {
                entry.claimed.remove(&slot.index);
            }
        }
    }

    /// Whether the batch would have no claim out once `answering` (indices of it) are answered.
    pub fn idle_after(&self, key: i64, answering: &HashSet<u32>) -> bool {
        self.entries
            .get(&key)
            .is_none_or(|e| e.claimed.iter().all(|i| answering.contains(i)))
    }

    pub fn has_claims(&self, key: i64) -> bool {
        self.entries
            .get(&key)
            .is_some_and(|e| !e.claimed.is_empty())
    }
}

pub(crate) fn lock(claims: &Mutex<Claims>) -> MutexGuard<'_, Claims> {
    // Every change is a single step on plain collections; a panic elsewhere while the lock was
    // held cannot leave them in a state worse than a lost lease.
    claims.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks the bookkeeping stale unless [`StaleUnlessDone::done`] is called: a call that stops
/// half-way (an error, or its future dropped) may have committed a change memory never heard of,
/// and the next claim then rebuilds the list from the database.
pub(crate) struct StaleUnlessDone<'a> {
    claims: &'a Mutex<Claims>,
    done: bool,
}

impl<'a> StaleUnlessDone<'a> {
    pub fn new(claims: &'a Mutex<Claims>) -> Self {
        Self {
            claims,
            done: false,
        }
    }

    pub fn done(mut self) {
        self.done = true;
    }
}

impl Drop for StaleUnlessDone<'_> {
    fn drop(&mut self) {
        if !self.done {
            lock(self.claims).mark_dirty();
        }
    }
}

/// Work items claimed in memory but not yet returned to the caller. If the claim call stops
/// before returning them (its future dropped), they are released on drop rather than leaked as
/// claims nobody holds, which would keep them from ever being served and a canceling batch from
/// ever ending.
pub(crate) struct Handout<'a> {
    claims: &'a Mutex<Claims>,
    pub items: Vec<WorkItem>,
}

impl<'a> Handout<'a> {
    pub fn new(claims: &'a Mutex<Claims>) -> Self {
        Self {
            claims,
            items: Vec::new(),
        }
    }

    pub fn finish(mut self) -> Vec<WorkItem> {
        std::mem::take(&mut self.items)
    }
}

impl Drop for Handout<'_> {
    fn drop(&mut self) {
        if !self.items.is_empty() {
            let slots: Vec<Slot> = self.items.iter().map(WorkItem::slot).collect();
            // A canceling batch drained here is ended by the next maintenance pass.
            lock(self.claims).release(&slots);
        }
    }
}

/// Claims of answers being recorded. Dropped without [`Recording::recorded`] or
/// [`Recording::failed`] (the record call's future was dropped), the answers may or may not be
/// stored; their claims are dropped either way, since nobody is left to retry them.
pub(crate) struct Recording<'a> {
    claims: &'a Mutex<Claims>,
    slots: Option<Vec<Slot>>,
}

impl<'a> Recording<'a> {
    pub fn new(claims: &'a Mutex<Claims>, slots: Vec<Slot>) -> Self {
        Self {
            claims,
            slots: Some(slots),
        }
    }

    /// Committed: the claims go, and the batches that ended are forgotten.
    pub fn recorded(mut self, ended: impl IntoIterator<Item = i64>) {
        let mut claims = lock(self.claims);
        claims.answered(self.slots.take().unwrap_or_default());
        claims.ended(ended);
    }

    /// Failed: the caller retries, so the claims stay (a canceling batch must not end before
    /// its answers are in); which batches ended is unknown.
    pub fn failed(mut self) {
        self.slots = None;
        lock(self.claims).mark_dirty();
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            let mut claims = lock(self.claims);
            claims.answered(slots);
            claims.mark_dirty();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(total: u32) -> BatchInfo {
        BatchInfo {
            id: BatchId::generate(),
            workspace: "w".into(),
            betas: vec![],
            api_version: ApiVersion::default(),
            user_profile_id: None,
            endpoint: Endpoint::Messages,
            expires_at: Timestamp::from_micros(1_000),
            total,
        }
    }

    const T0: Timestamp = Timestamp::from_micros(0);

    fn slot(batch_key: i64, index: u32) -> Slot {
        Slot { batch_key, index }
    }

    #[test]
    fn rounds_rotate_after_the_last_batch_served() {
        let mut c = Claims::new();
        for key in [1, 2, 3] {
            c.started(key, info(10));
        }
        let now = Timestamp::from_micros(0);
        assert_eq!(c.candidates(now, &[]), vec![vec![1, 2, 3]]);
        c.take(2, 1, now).unwrap();
        assert_eq!(c.candidates(now, &[]), vec![vec![3, 1, 2]]);
        // Another workspace's batch forms its own group, in round order.
        c.started(
            4,
            BatchInfo {
                workspace: "other".into(),
                ..info(10)
            },
        );
        assert_eq!(c.candidates(now, &[]), vec![vec![3, 1, 2], vec![4]]);
        // Expired batches are not served.
        assert!(c.candidates(Timestamp::from_micros(1_000), &[]).is_empty());
    }

    #[test]
    fn cursor_advances_and_exhausts() {
        let mut c = Claims::new();
        c.started(1, info(10));
        let t = c.take(1, 4, T0).unwrap();
        assert_eq!((t.next, t.released.len()), (0, 0));
        assert!(c.claimed(1, &[], &[0, 1, 2, 3], 4));
        assert_eq!(c.take(1, 4, T0).unwrap().next, 4);
        // Fewer rows than asked: the rest of the range is answered already.
        assert!(c.claimed(1, &[], &[4], 4));
        assert!(c.take(1, 4, T0).is_none());
        // A release makes the index claimable again.
        assert!(c.release(&[slot(1, 2)]).is_empty());
        let t = c.take(1, 4, T0).unwrap();
        assert_eq!(t.released, vec![2]);
    }

    #[test]
    fn deferred_requests_wait_for_their_time() {
        let mut c = Claims::new();
        c.started(1, info(1));
        c.take(1, 1, T0).unwrap();
        assert!(c.claimed(1, &[], &[0], 1));
        let later = Timestamp::from_micros(500);
        let retry = Retry {
            slot: slot(1, 0),
            attempts: 1,
            not_before: later,
        };
        assert!(c.defer(&[retry]).is_empty());
        assert!(c.candidates(T0, &[]).is_empty(), "not before its time");
        assert!(c.take(1, 1, T0).is_none());
        assert_eq!(c.candidates(later, &[]), vec![vec![1]]);
        assert_eq!(c.take(1, 1, later).unwrap().released, vec![0]);
        // A canceling batch drops what waits, and its last deferred claim drains it.
        assert!(c.claimed(1, &[0], &[], 0));
        c.canceling(1);
        assert_eq!(c.defer(&[retry]), vec![1]);
    }

    #[test]
    fn canceling_batches_count_claims_until_the_last_goes() {
        let mut c = Claims::new();
        c.started(1, info(10));
        c.take(1, 3, T0).unwrap();
        assert!(c.claimed(1, &[], &[0, 1, 2], 3));
        c.canceling(1);
        assert!(c.take(1, 3, T0).is_none());
        assert!(
            !c.claimed(1, &[], &[3], 1),
            "a canceled batch hands nothing out"
        );
        assert!(!c.idle_after(1, &HashSet::from([0])));
        assert!(c.idle_after(1, &HashSet::from([0, 1, 2])));
        c.answered([slot(1, 0)]);
        assert!(c.release(&[slot(1, 1)]).is_empty());
        assert_eq!(c.release(&[slot(1, 2)]), vec![1]);
        assert!(!c.has_claims(1));
    }

    #[test]
    fn dropped_handouts_and_records_give_their_claims_back() {
        let claims = Mutex::new(Claims::new());
        lock(&claims).started(1, info(4));
        lock(&claims).take(1, 2, T0).unwrap();
        assert!(lock(&claims).claimed(1, &[], &[0, 1], 2));
        let mut handout = Handout::new(&claims);
        handout.items.push(WorkItem {
            batch_key: 1,
            batch_id: BatchId::generate(),
            workspace: "ws".into(),
            index: 0,
            custom_id: "a".into(),
            params: "{}".into(),
            betas: vec![],
            api_version: ApiVersion::default(),
            user_profile_id: None,
            endpoint: Endpoint::Messages,
            expires_at: Timestamp::from_micros(1_000),
            attempts: 0,
            not_before: None,
        });
        drop(handout);
        assert_eq!(lock(&claims).take(1, 4, T0).unwrap().released, vec![0]);
        lock(&claims).canceling(1);
        assert!(lock(&claims).has_claims(1));
        drop(Recording::new(&claims, vec![slot(1, 1)]));
        assert!(!lock(&claims).has_claims(1));
        assert!(lock(&claims).needs_rebuild().is_some());
    }

    #[test]
    fn rebuild_is_refused_after_a_change() {
        let mut c = Claims::new();
        let generation = c.needs_rebuild().unwrap();
        c.started(5, info(3));
        assert!(!c.rebuild(generation, vec![]));
        assert!(c.needs_rebuild().is_some());
        let generation = c.needs_rebuild().unwrap();
        assert!(c.rebuild(
            generation,
            vec![Unended {
                key: 5,
                canceling: false,
                info: info(3)
            }]
        ));
        assert!(c.needs_rebuild().is_none());
        assert_eq!(c.candidates(Timestamp::from_micros(0), &[]), vec![vec![5]]);
    }
}
