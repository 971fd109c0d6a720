//! Crash safety of the real binary: "kill -9 at any moment loses nothing".
//!
//! `kill_9_at_random_moments_loses_nothing` runs `batchd` on one data dir for many cycles. In each
//! cycle several clients create batches (1–3,000 requests, some rows with invalid params, a few
//! bodies that must be refused), cancel running batches, check and delete ended ones, and poll;
//! the server is SIGKILLed at a random moment (50 ms–1.5 s after it listens; every other cycle
//! then waits for a create, a cancel or a delete to be in flight) and restarted. A ledger keeps
//! what every call was told. At the end one more server must show every acknowledged batch ended
//! with exactly one result per request, every acknowledged delete gone, nothing half-created in
//! the list, and no panic or error in any server's log.
//!
//! `BATCHD_CRASH_CYCLES` sets the number of cycles (default 30), `BATCHD_CRASH_SEED` replays a
//! seed (printed at the start; timing still varies from run to run).
//!
//! `sigterm_exits_within_the_grace_despite_open_downloads_and_slow_requests` checks the binary's
//! graceful path: SIGTERM with an unread download and requests on a slow model.
//!
//! `kill_9_around_test_clock_advances_keeps_offsets_and_ends_batches_once` kills a server in test
//! mode around advances of its virtual clock.
//!
//! `recovery_figure` (ignored; run by hand in release) measures how fast a server killed during a
//! 100,000-request batch answers again and resumes processing.

#[path = "crash/ledger.rs"]
mod ledger;
#[path = "crash/server.rs"]
mod server;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ledger::{Attempt, Call, CreateState, Ledger, Tracked, check_ended};
use crate::server::{Log, Rng, client, counts};

/// The server flags of every crash cycle.
const SERVE_FLAGS: &[&str] = &[
    "--mock-latency",
    "20ms",
    "--mock-concurrency",
    "8",
    "--concurrency",
    "8",
];
/// Creates wait while the clients know of more unprocessed requests than this, so the backlog
/// the final server has to work off stays bounded (8 slots × 20 ms ≈ 400 requests/s).
const BACKLOG: usize = 4_000;
const CREATORS: usize = 3;

/// What the clients of one cycle share.
struct Shared {
    base: String,
    client: reqwest::Client,
    cycle: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: AtomicBool,
    /// Calls in flight by kind: creates, cancels, deletes (sampled at the kill).
    creating: AtomicUsize,
    canceling: AtomicUsize,
    deleting: AtomicUsize,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/messages/batches{path}", self.base)
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap()
    }
}

/// Counts a call in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn pause(ms_lo: u64, ms_hi: u64, rng: &mut Rng) {
    tokio::time::sleep(Duration::from_millis(rng.range(ms_lo, ms_hi))).await;
}

async fn creator(shared: Arc<Shared>, task: usize, mut rng: Rng) {
    let mut k = 0;
    while !shared.stopped() {
        if shared.ledger().outstanding() > BACKLOG {
            tokio::time::sleep(Duration::from_millis(25)).await;
            continue;
        }
        let tag = format!("c{}t{task}n{k}", shared.cycle);
        k += 1;
        let attempt = Attempt::new(tag, &mut rng);
        let body = attempt.body();
        let (n, must_refuse) = (attempt.n, attempt.must_refuse);
        let index = shared.ledger().add_attempt(attempt);
        let state = {
            let _busy = InFlight::new(&shared.creating);
            let sent = shared
                .client
                .post(shared.url(""))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            match sent {
                Err(_) => CreateState::Lost,
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.bytes().await {
                        Err(_) => CreateState::Lost,
                        Ok(bytes) if status == 200 => {
                            match serde_json::from_slice::<Value>(&bytes) {
                                Ok(b) => {
                                    let ok = b["processing_status"] == "in_progress"
                                        && counts(&b) == Some([n as u64, 0, 0, 0, 0]);
                                    if !ok {
                                        shared
                                            .ledger()
                                            .violation(format!("create answered 200 with {b}"));
                                    }
                                    match b["id"].as_str() {
                                        Some(id) => CreateState::Acked(id.to_owned()),
                                        None => CreateState::Lost,
                                    }
                                }
                                Err(e) => {
                                    shared.ledger().violation(format!(
                                        "create answered 200 with a body that is not JSON: {e}"
                                    ));
                                    CreateState::Lost
                                }
                            }
                        }
                        Ok(bytes) => {
                            if !(must_refuse && status == 400) {
                                shared.ledger().violation(format!(
                                    "create of {n} requests answered {status}: {}",
                                    String::from_utf8_lossy(&bytes)
                                ));
                            }
                            CreateState::Refused(status)
                        }
                    }
                }
            }
        };
        {
            let mut ledger = shared.ledger();
            if let CreateState::Acked(id) = &state {
                if must_refuse {
                    ledger.violation(format!(
                        "a body with a duplicate custom_id was accepted as {id}"
                    ));
                }
                ledger.batches.insert(
                    id.clone(),
                    Tracked {
                        attempt: index,
                        n,
                        cancel: Call::None,
                        delete: Call::None,
                        ended_seen: false,
                        checked: false,
                    },
                );
                ledger.ids.push(id.clone());
            }
            ledger.attempts[index].state = state;
        }
        pause(0, 60, &mut rng).await;
    }
}

async fn canceler(shared: Arc<Shared>, mut rng: Rng) {
    while !shared.stopped() {
        pause(20, 150, &mut rng).await;
        let target = {
            let ledger = shared.ledger();
            let candidates: Vec<&String> = ledger
                .ids
                .iter()
                .filter(|id| {
                    let b = &ledger.batches[*id];
                    !b.ended_seen && b.cancel != Call::Acked && b.delete == Call::None
                })
                .collect();
            if ledger.outstanding() > BACKLOG * 3 / 4 {
                // The backlog holds creates back: cancel the biggest running batch, so creates
                // keep flowing (and a kill often lands in one).
                candidates
                    .iter()
                    .max_by_key(|id| ledger.batches[**id].n)
                    .map(|s| (*s).clone())
            } else if rng.chance(0.3) {
                rng.pick(&candidates).map(|s| (*s).clone())
            } else {
                None
            }
        };
        let Some(id) = target else { continue };
        // Marked before sending: a poll may see the cancel before its answer comes back.
        {
            let mut ledger = shared.ledger();
            let tracked = ledger.batches.get_mut(&id).unwrap();
            tracked.cancel = tracked.cancel.max(Call::Attempted);
        }
        let sent = {
            let _busy = InFlight::new(&shared.canceling);
            match shared
                .client
                .post(shared.url(&format!("/{id}/cancel")))
                .send()
                .await
            {
                Err(e) => Err(e),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    resp.text().await.map(|text| (status, text))
                }
            }
        };
        let mut ledger = shared.ledger();
        let tracked = ledger.batches.get_mut(&id).unwrap();
        match sent {
            Err(_) => {}
            Ok((200, text)) => {
                tracked.cancel = Call::Acked;
                let b: Value = serde_json::from_str(&text).unwrap_or_default();
                let ok = matches!(b["processing_status"].as_str(), Some("canceling" | "ended"))
                    && b["cancel_initiated_at"].is_string();
                ledger.cancels_acked += 1;
                if !ok {
                    ledger.violation(format!("cancel of {id} answered 200 with {text}"));
                }
            }
            Ok((400, text)) if text.contains("already ended") => {
                tracked.ended_seen = true;
            }
            Ok((status, text)) => {
                ledger.violation(format!("cancel of {id} answered {status}: {text}"));
            }
        }
    }
}

/// Downloads and checks the results of ended batches, then deletes some of them.
async fn deleter(shared: Arc<Shared>, mut rng: Rng) {
    while !shared.stopped() {
        pause(40, 200, &mut rng).await;
        let target = {
            let ledger = shared.ledger();
            let candidates: Vec<&String> = ledger
                .ids
                .iter()
                .filter(|id| {
                    let b = &ledger.batches[*id];
                    b.ended_seen && b.delete != Call::Acked
                })
                .collect();
            rng.pick(&candidates).map(|s| (*s).clone())
        };
        let Some(id) = target else { continue };
        let (attempt, cancel, delete, checked) = {
            let ledger = shared.ledger();
            let t = &ledger.batches[&id];
            (
                ledger.attempts[t.attempt].clone(),
                t.cancel,
                t.delete,
                t.checked,
            )
        };
        let _busy = InFlight::new(&shared.deleting);
        if !checked {
            // Check before deleting: the final verification cannot see a deleted batch.
            let Some((status, batch)) =
                get_json(&shared.client, &shared.url(&format!("/{id}"))).await
            else {
                continue;
            };
            if status == 404 && delete == Call::Attempted {
                shared.ledger().batches.get_mut(&id).unwrap().delete = Call::Acked;
                continue;
            }
            if status != 200 {
                shared
                    .ledger()
                    .violation(format!("ended batch {id} answered {status}: {batch}"));
                continue;
            }
            let Some((status, text)) =
                get_text(&shared.client, &shared.url(&format!("/{id}/results"))).await
            else {
                continue;
            };
            if status != 200 {
                shared.ledger().violation(format!(
                    "results of ended batch {id} answered {status}: {text}"
                ));
                continue;
            }
            let mut ledger = shared.ledger();
            match check_ended(&batch, &text, &attempt, cancel) {
                Ok(lines) => {
                    ledger.requests_checked += lines;
                    ledger.batches_checked += 1;
                    ledger.batches.get_mut(&id).unwrap().checked = true;
                }
                Err(msg) => ledger.violation(msg),
            }
            drop(ledger);
        }
        // Delete about half of the ended batches.
        if !rng.chance(0.5) {
            continue;
        }
        shared.ledger().batches.get_mut(&id).unwrap().delete = delete.max(Call::Attempted);
        let sent = match shared
            .client
            .delete(shared.url(&format!("/{id}")))
            .send()
            .await
        {
            Err(_) => None,
            Ok(resp) => {
                let status = resp.status().as_u16();
                resp.text().await.ok().map(|t| (status, t))
            }
        };
        let mut ledger = shared.ledger();
        match sent {
            None => {}
            Some((200, text)) => {
                let b: Value = serde_json::from_str(&text).unwrap_or_default();
                if b["id"] != id.as_str() || b["type"] != "message_batch_deleted" {
                    ledger.violation(format!("delete of {id} answered 200 with {text}"));
                }
                ledger.batches.get_mut(&id).unwrap().delete = Call::Acked;
                ledger.deletes_acked += 1;
            }
            // Deleted by an earlier call whose answer was lost.
            Some((404, _)) if delete == Call::Attempted => {
                ledger.batches.get_mut(&id).unwrap().delete = Call::Acked;
            }
            Some((status, text)) => {
                ledger.violation(format!(
                    "delete of ended batch {id} answered {status}: {text}"
                ));
            }
        }
    }
}

async fn poller(shared: Arc<Shared>, mut rng: Rng) {
    while !shared.stopped() {
        pause(5, 40, &mut rng).await;
        if rng.chance(0.1) {
            let limit = rng.range(1, 50);
            if let Some((status, page)) =
                get_json(&shared.client, &shared.url(&format!("?limit={limit}"))).await
            {
                let ok = status == 200
                    && page["data"]
                        .as_array()
                        .is_some_and(|d| d.len() as u64 <= limit)
                    && page["has_more"].is_boolean();
                if !ok {
                    shared
                        .ledger()
                        .violation(format!("list answered {status}: {page}"));
                }
            }
            continue;
        }
        let target = {
            let ledger = shared.ledger();
            let candidates: Vec<&String> = ledger
                .ids
                .iter()
                .filter(|id| {
                    let b = &ledger.batches[*id];
                    !b.ended_seen && b.delete != Call::Acked
                })
                .collect();
            rng.pick(&candidates).map(|s| (*s).clone())
        };
        let Some(id) = target else { continue };
        // What was acknowledged before the GET was sent must show in its answer; what was only
        // sent by then, or acknowledged while the GET was out, may or may not.
        let before = shared.ledger().batches[&id].clone();
        let Some((status, batch)) = get_json(&shared.client, &shared.url(&format!("/{id}"))).await
        else {
            continue;
        };
        let mut ledger = shared.ledger();
        ledger.polls += 1;
        let tracked = ledger.batches[&id].clone();
        match status {
            200 => {
                let sum: Option<u64> = counts(&batch).map(|c| c.iter().sum());
                let mut problems = Vec::new();
                if sum != Some(tracked.n as u64) {
                    problems.push(format!("request_counts do not sum to {}", tracked.n));
                }
                if before.cancel == Call::Acked
                    && (batch["processing_status"] == "in_progress"
                        || !batch["cancel_initiated_at"].is_string())
                {
                    problems.push("cancel was acknowledged but the batch shows none".into());
                }
                if tracked.cancel == Call::None && !batch["cancel_initiated_at"].is_null() {
                    problems.push("canceled without a cancel call".into());
                }
                if before.delete == Call::Acked {
                    problems.push("deleted, yet retrievable".into());
                }
                if problems.is_empty() {
                    if batch["processing_status"] == "ended" {
                        ledger.batches.get_mut(&id).unwrap().ended_seen = true;
                    }
                } else {
                    ledger.violation(format!("batch {id}: {}: {batch}", problems.join("; ")));
                }
            }
            404 if tracked.delete != Call::None => {
                ledger.batches.get_mut(&id).unwrap().delete = Call::Acked;
            }
            _ => ledger.violation(format!(
                "acknowledged batch {id} answered {status}: {batch}"
            )),
        }
    }
}

/// GET returning the status and parsed body; `None` when the server went away.
async fn get_json(client: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let (status, text) = get_text(client, url).await?;
    Some((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

async fn get_text(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let resp = client.get(url).send().await.ok()?;
    let status = resp.status().as_u16();
    let text = resp.text().await.ok()?;
    Some((status, text))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not valid")),
        Err(_) => default,
    }
}

#[derive(Debug, Default)]
struct KillStats {
    during_create: usize,
    during_cancel: usize,
    during_delete: usize,
    during_processing: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_nothing() {
    let cycles: usize = env_or("BATCHD_CRASH_CYCLES", 30);
    let seed: u64 = env_or(
        "BATCHD_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    eprintln!("crash test: {cycles} cycles, seed {seed} (replay with BATCHD_CRASH_SEED={seed})");
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let log = Log::default();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut kills = KillStats::default();

    for cycle in 0..cycles {
        let server = server::start(&data_dir, SERVE_FLAGS, &log, &format!("cycle {cycle}")).await;
        let shared = Arc::new(Shared {
            base: server.base.clone(),
            client: client(),
            cycle,
            ledger: ledger.clone(),
            stop: AtomicBool::new(false),
            creating: AtomicUsize::new(0),
            canceling: AtomicUsize::new(0),
            deleting: AtomicUsize::new(0),
        });
        let mut tasks = Vec::new();
        for task in 0..CREATORS {
            tasks.push(tokio::spawn(creator(
                shared.clone(),
                task,
                Rng::new(rng.next_u64()),
            )));
        }
        tasks.push(tokio::spawn(canceler(
            shared.clone(),
            Rng::new(rng.next_u64()),
        )));
        tasks.push(tokio::spawn(deleter(
            shared.clone(),
            Rng::new(rng.next_u64()),
        )));
        tasks.push(tokio::spawn(poller(
            shared.clone(),
            Rng::new(rng.next_u64()),
        )));

        tokio::time::sleep(Duration::from_millis(rng.range(50, 1_500))).await;
        // Every other cycle aims the kill: after the random delay, it waits (up to a second) for
        // a call of one kind to be in flight, so that kills land in cancels and deletes too,
        // not only where the time goes (processing).
        let aim = match cycle % 6 {
            1 => Some(&shared.creating),
            3 => Some(&shared.canceling),
            5 => Some(&shared.deleting),
            _ => None,
        };
        if let Some(counter) = aim {
            let until = Instant::now() + Duration::from_secs(1);
            while counter.load(Ordering::SeqCst) == 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        kills.during_create += usize::from(shared.creating.load(Ordering::SeqCst) > 0);
        kills.during_cancel += usize::from(shared.canceling.load(Ordering::SeqCst) > 0);
        kills.during_delete += usize::from(shared.deleting.load(Ordering::SeqCst) > 0);
        kills.during_processing += usize::from(ledger.lock().unwrap().outstanding() > 0);
        server.kill().await;
        shared.stop.store(true, Ordering::SeqCst);
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(90), task)
                .await
                .expect("a client task hung after the kill")
                .expect("client task panicked");
        }
    }
    let cycles_done = started.elapsed();

    // The last start: everything acknowledged must come out right.
    let server = server::start(&data_dir, SERVE_FLAGS, &log, "final").await;
    let http = client();
    let url = |path: &str| format!("{}/v1/messages/batches{path}", server.base);
    let mut ledger = ledger.lock().unwrap().clone();

    // Everything listed, every page, newest first.
    let listed = list_all(&http, &url("")).await;
    let listed_ids: HashSet<String> = listed.iter().map(id_of).collect();
    assert_eq!(listed_ids.len(), listed.len(), "a batch is listed twice");
    for pair in listed.windows(2) {
        assert!(
            micros(&pair[0]["created_at"]) >= micros(&pair[1]["created_at"]),
            "list out of order: {} before {}",
            pair[0],
            pair[1]
        );
    }

    // Wait for every live acknowledged batch and every listed one to end.
    let mut pending: Vec<String> = ledger
        .ids
        .iter()
        .filter(|id| ledger.batches[*id].delete != Call::Acked)
        .cloned()
        .chain(listed_ids.iter().cloned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let drain_started = Instant::now();
    let deadline = drain_started + Duration::from_secs(120);
    let mut ended: HashMap<String, Value> = HashMap::new();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let (status, batch) = get_json(&http, &url(&format!("/{id}")))
                .await
                .expect("final server went away");
            match status {
                200 if batch["processing_status"] == "ended" => {
                    ended.insert(id, batch);
                }
                200 => still.push(id),
                404 => {
                    let tracked = ledger.batches.get(&id);
                    match tracked {
                        Some(t) if t.delete == Call::Attempted => {
                            // Its delete went through before the answer was lost.
                            ledger.batches.get_mut(&id).unwrap().delete = Call::Acked;
                        }
                        _ => ledger.violation(format!("batch {id} vanished: {batch}")),
                    }
                }
                _ => ledger.violation(format!("batch {id} answered {status}: {batch}")),
            }
        }
        pending = still;
        if !pending.is_empty() {
            if Instant::now() >= deadline {
                for id in pending.drain(..) {
                    let (_, batch) = get_json(&http, &url(&format!("/{id}"))).await.unwrap();
                    ledger.violation(format!(
                        "batch {id} did not end within {:?} of the last start: {batch}",
                        deadline - drain_started
                    ));
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let drained_in = drain_started.elapsed();

    // Acknowledged batches.
    let mut unacked_found = 0;
    let mut live_acked = 0;
    for id in ledger.ids.clone() {
        let tracked = ledger.batches[&id].clone();
        if tracked.delete == Call::Acked {
            for path in [format!("/{id}"), format!("/{id}/results")] {
                let (status, body) = get_json(&http, &url(&path)).await.unwrap();
                if status != 404 || body["error"]["type"] != "not_found_error" {
                    ledger.violation(format!(
                        "deleted batch {id}: GET {path} answered {status}: {body}"
                    ));
                }
            }
            if listed_ids.contains(&id) {
                ledger.violation(format!("deleted batch {id} is still listed"));
            }
            continue;
        }
        live_acked += 1;
        if !listed_ids.contains(&id) {
            ledger.violation(format!("acknowledged batch {id} is missing from the list"));
        }
        let Some(batch) = ended.get(&id) else {
            continue; // reported above
        };
        let (status, text) = get_text(&http, &url(&format!("/{id}/results")))
            .await
            .unwrap();
        if status != 200 {
            ledger.violation(format!("results of {id} answered {status}: {text}"));
            continue;
        }
        let attempt = ledger.attempts[tracked.attempt].clone();
        match check_ended(batch, &text, &attempt, tracked.cancel) {
            Ok(lines) => {
                ledger.requests_checked += lines;
                ledger.batches_checked += 1;
            }
            Err(msg) => ledger.violation(msg),
        }
    }

    // Listed batches nobody was told about: creates whose 200 was lost in a kill. Each must be
    // whole and trace back to a create that was in flight.
    let mut claimed_attempts = HashSet::new();
    for batch in &listed {
        let id = id_of(batch);
        if ledger.batches.contains_key(&id) {
            continue;
        }
        unacked_found += 1;
        let Some(batch) = ended.get(&id) else {
            continue;
        };
        let (status, text) = get_text(&http, &url(&format!("/{id}/results")))
            .await
            .unwrap();
        if status != 200 {
            ledger.violation(format!("results of unacknowledged {id} answered {status}"));
            continue;
        }
        let first = text.lines().next().unwrap_or("");
        let cid = serde_json::from_str::<Value>(first)
            .ok()
            .and_then(|v| v["custom_id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let tag = cid.rsplit_once('-').map(|(t, _)| t).unwrap_or("");
        let Some(&index) = ledger.by_tag.get(tag) else {
            ledger.violation(format!("listed batch {id} matches no create: {first:.200}"));
            continue;
        };
        let attempt = ledger.attempts[index].clone();
        if attempt.state != CreateState::Lost && attempt.state != CreateState::InFlight {
            ledger.violation(format!(
                "listed batch {id} comes from create {} which was answered {:?}",
                attempt.tag, attempt.state
            ));
            continue;
        }
        if attempt.must_refuse || !claimed_attempts.insert(index) {
            ledger.violation(format!(
                "listed batch {id}: create {} must not exist (or exists twice)",
                attempt.tag
            ));
            continue;
        }
        // Nobody knew its id, so nobody canceled it.
        match check_ended(batch, &text, &attempt, Call::None) {
            Ok(lines) => {
                ledger.requests_checked += lines;
                ledger.batches_checked += 1;
            }
            Err(msg) => ledger.violation(msg),
        }
    }

    server.kill().await;
    let problems = log.problems();
    let attempts = ledger.attempts.len();
    let acked = ledger.ids.len();
    let lost = ledger
        .attempts
        .iter()
        .filter(|a| a.state == CreateState::Lost)
        .count();
    let refused = ledger
        .attempts
        .iter()
        .filter(|a| matches!(a.state, CreateState::Refused(_)))
        .count();
    eprintln!(
        "crash test (seed {seed}): {cycles} cycles in {cycles_done:.1?}; kills during creates {}, \
         cancels {}, deletes {}, processing {}",
        kills.during_create, kills.during_cancel, kills.during_delete, kills.during_processing
    );
    eprintln!(
        "  creates: {attempts} sent, {acked} acknowledged, {refused} refused as they must be, \
         {lost} lost in a kill ({unacked_found} of those were committed and listed)"
    );
    eprintln!(
        "  {} cancels and {} deletes acknowledged; {} polls; {live_acked} live acknowledged batches",
        ledger.cancels_acked, ledger.deletes_acked, ledger.polls
    );
    eprintln!(
        "  final server drained its backlog in {drained_in:.1?}; {} batches and {} requests checked \
         (results lines); {} log lines, {} warnings; total {:.1?}",
        ledger.batches_checked,
        ledger.requests_checked,
        log.len(),
        log.warnings().len(),
        started.elapsed()
    );
    assert!(
        problems.is_empty(),
        "seed {seed}: the server logged panics or errors:\n{}",
        problems.join("\n")
    );
    assert!(
        ledger.violations.is_empty(),
        "seed {seed}: {} violations:\n{}",
        ledger.violations.len(),
        ledger.violations.join("\n")
    );
    assert!(
        acked > 0 && ledger.requests_checked > 0,
        "the test did nothing"
    );
}

fn id_of(batch: &Value) -> String {
    batch["id"].as_str().expect("batch id").to_owned()
}

fn micros(ts: &Value) -> i128 {
    let s = ts.as_str().expect("timestamp");
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
        .unix_timestamp_nanos()
        / 1000
}

/// Every batch of the workspace, following `after_id` until `has_more` is false.
async fn list_all(client: &reqwest::Client, url: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page_url = match &after {
            None => format!("{url}?limit=100"),
            Some(id) => format!("{url}?limit=100&after_id={id}"),
        };
        let (status, page) = get_json(client, &page_url).await.expect("list");
        assert_eq!(status, 200, "list: {page}");
        let data = page["data"].as_array().expect("data").clone();
        let has_more = page["has_more"].as_bool().expect("has_more");
        if let Some(last) = data.last() {
            assert_eq!(page["last_id"], last["id"]);
            after = Some(id_of(last));
        }
        all.extend(data);
        if !has_more {
            return all;
        }
        assert!(after.is_some(), "has_more on an empty page");
    }
}

/// A 100,000-request batch, SIGKILLed while it is processing: how long until the restarted server
/// answers, resumes processing, and ends the batch. Prints the figures.
///
/// `cargo test --release -p batchd --test crash -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand in release"]
async fn recovery_figure() {
    const N: usize = 100_000;
    let flags: &[&str] = &[
        "--mock-latency",
        "5ms",
        "--mock-concurrency",
        "64",
        "--concurrency",
        "64",
    ];
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let log = Log::default();
    let http = client();

    let server = server::start(&data_dir, flags, &log, "before").await;
    let requests: Vec<Value> = (0..N)
        .map(|i| {
            serde_json::json!({"custom_id": format!("req-{i}"), "params": {
                "model": "claude-haiku-4-5", "max_tokens": 16,
                "messages": [{"role": "user", "content": format!("Question number {i}?")}]
            }})
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "requests": requests })).unwrap();
    let t = Instant::now();
    let resp = http
        .post(format!("{}/v1/messages/batches", server.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let created_in = t.elapsed();
    let id = id_of(&resp.json::<Value>().await.unwrap());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (status, batch) = get_json(&http, &format!("{}/v1/messages/batches/{id}", server.base))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        batch["processing_status"], "in_progress",
        "the batch must still be running when it is killed"
    );
    server.kill().await;
    let done_at_kill = recorded(&data_dir, &id).await;
    assert!(
        done_at_kill > 0 && (done_at_kill as usize) < N,
        "{done_at_kill} of {N} were recorded at the kill"
    );

    // Restart: spawn, first answer, first new result, end.
    let server = server::start(&data_dir, flags, &log, "after").await;
    let spawned = server.spawned_at;
    let listening = server.listening_at - spawned;
    let get_url = format!("{}/v1/messages/batches/{id}", server.base);
    loop {
        if let Some((200, _)) = get_json(&http, &get_url).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let first_answer = spawned.elapsed();
    let resumed = loop {
        if recorded(&data_dir, &id).await > done_at_kill {
            break spawned.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let ended = loop {
        let (_, batch) = get_json(&http, &get_url).await.unwrap();
        if batch["processing_status"] == "ended" {
            break (spawned.elapsed(), batch);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (status, text) = get_text(&http, &format!("{get_url}/results"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let lines = server::parse_jsonl(&text).unwrap();
    let ids: HashSet<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!((lines.len(), ids.len()), (N, N), "one result per request");
    assert_eq!(counts(&ended.1), Some([0, N as u64, 0, 0, 0]));
    server.kill().await;
    assert!(log.problems().is_empty(), "{:?}", log.problems());

    eprintln!(
        "recovery figure ({N} requests, 5ms mock latency, 64 slots): created in {created_in:.2?}; \
         killed 1.5 s later with {done_at_kill} results recorded"
    );
    eprintln!(
        "  after restart: listening {listening:.1?}, first answered request {first_answer:.1?}, \
         processing resumed (new results recorded) {resumed:.1?}, batch ended {:.2?} after spawn",
        ended.0
    );
}

/// Results recorded so far for a batch, read beside the running server. The live tallies are
/// not shown by the API before a batch ends, so this opens the storage the way the `keys`
/// commands do (on SQLite without the data-dir lock) and only reads.
async fn recorded(data_dir: &Path, id: &str) -> u64 {
    let url = batchd_store_postgres::testkit::database_of(data_dir);
    let storage = batchd::storage::Storage::open_for_admin(batchd::storage::Location {
        data_dir,
        database_url: url.as_deref(),
    })
    .await
    .expect("open the storage beside the server");
    let id = batchd_domain::BatchId::parse(id).expect("batch id");
    let batch = storage
        .store()
        .get_batch(server::WORKSPACE, &id)
        .await
        .expect("read the batch")
        .expect("batch exists");
    storage.close().await;
    batch.succeeded + batch.errored
}

/// Creates a batch of `n` valid requests `{prefix}-{i}` and returns its id.
async fn create_valid(http: &reqwest::Client, base: &str, prefix: &str, n: usize) -> String {
    let requests: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({"custom_id": format!("{prefix}-{i}"), "params": {
                "model": "claude-haiku-4-5", "max_tokens": 16,
                "messages": [{"role": "user", "content": format!("Question number {i}?")}]
            }})
        })
        .collect();
    let resp = http
        .post(format!("{base}/v1/messages/batches"))
        .json(&serde_json::json!({ "requests": requests }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    id_of(&resp.json::<Value>().await.unwrap())
}

/// Polls until the batch ends and checks one succeeded line per request `{prefix}-{i}`.
async fn assert_completed(http: &reqwest::Client, base: &str, id: &str, prefix: &str, n: usize) {
    let url = format!("{base}/v1/messages/batches/{id}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let batch = loop {
        let (status, batch) = get_json(http, &url).await.unwrap();
        assert_eq!(status, 200, "{batch}");
        if batch["processing_status"] == "ended" {
            break batch;
        }
        assert!(Instant::now() < deadline, "{id} did not end: {batch}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(counts(&batch), Some([0, n as u64, 0, 0, 0]), "{batch}");
    let (status, text) = get_text(http, &format!("{url}/results")).await.unwrap();
    assert_eq!(status, 200);
    let lines = server::parse_jsonl(&text).unwrap();
    let ids: HashSet<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    let expected: HashSet<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    assert_eq!(lines.len(), n, "one line per request");
    assert_eq!(ids, expected.iter().map(String::as_str).collect());
}

/// The binary's own shutdown path (SIGTERM): with requests on a slow model and a large results
/// download that nobody reads, `batchd` exits successfully within `--shutdown-grace` plus a
/// margin, and after a restart nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_despite_open_downloads_and_slow_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let log = Log::default();
    let http = client();

    // A large ended batch to download later (~15 MB of results, more than socket buffers hold).
    let server = server::start(&data_dir, &[], &log, "fill").await;
    let big = create_valid(&http, &server.base, "big", 30_000).await;
    assert_completed(&http, &server.base, &big, "big", 30_000).await;
    server.terminate(Duration::from_secs(30)).await;

    let grace = Duration::from_secs(1);
    let flags = [
        "--mock-latency",
        "30s",
        "--mock-concurrency",
        "8",
        "--concurrency",
        "8",
        "--shutdown-grace",
        "1s",
    ];
    let server = server::start(&data_dir, &flags, &log, "slow").await;
    let slow = create_valid(&http, &server.base, "slow", 12).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // 8 of them on the model
    let mut download = http
        .get(format!("{}/v1/messages/batches/{big}/results", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert!(download.chunk().await.unwrap().is_some());
    // ...and the client stops reading.
    let took = server.terminate(Duration::from_secs(30)).await;
    assert!(
        took < grace + Duration::from_secs(3),
        "SIGTERM took {took:?} to exit with a {grace:?} grace"
    );
    drop(download);

    // Nothing was lost: the abandoned requests run again.
    let server = server::start(&data_dir, &[], &log, "after").await;
    assert_completed(&http, &server.base, &slow, "slow", 12).await;
    assert_completed(&http, &server.base, &big, "big", 30_000).await;
    server.terminate(Duration::from_secs(30)).await;
    assert!(
        log.problems().is_empty(),
        "the server logged panics or errors:\n{}",
        log.problems().join("\n")
    );
    eprintln!("SIGTERM with an unread download and 8 requests on the model: exited in {took:.2?}");
}

/// Test mode's clocks under kill -9: the server is killed at a random moment around an advance
/// of a day and a bit, with batches pending on a slow mock, several times over. Every advance
/// that was answered is kept (offsets are committed rows), an unanswered one is kept whole or
/// not at all, and every batch ends once, expired, with one line per request, its end
/// surviving restarts unchanged. The start-up log says loudly that test mode is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_around_test_clock_advances_keeps_offsets_and_ends_batches_once() {
    const DAY_AND_HOUR: i64 = 25 * 3_600;
    const CYCLES: usize = 5;
    const REQUESTS: usize = 6;
    let flags = [
        "--test-mode",
        "--mock-latency",
        "30s",
        "--mock-concurrency",
        "2",
        "--concurrency",
        "2",
    ];
    // Every other start turns test mode on through the environment instead of the flag.
    let start = |cycle: usize, log: Log, data_dir: std::path::PathBuf, run: String| async move {
        if cycle.is_multiple_of(2) {
            server::start(&data_dir, &flags, &log, &run).await
        } else {
            let env = [("BATCHD_TEST_MODE", "1")];
            server::start_with_env(&data_dir, &flags[1..], &env, &log, &run).await
        }
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("test clock crash test: seed {seed}");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let log = Log::default();
    let http = client();
    let advance_body = serde_json::json!({ "seconds": DAY_AND_HOUR });
    // The offset every answered advance promised, at least.
    let mut acked: i64 = 0;
    let mut batches = Vec::new();

    for cycle in 0..CYCLES {
        let server = start(
            cycle,
            log.clone(),
            data_dir.clone(),
            format!("cycle {cycle}"),
        )
        .await;
        batches.push(create_valid(&http, &server.base, &format!("c{cycle}"), REQUESTS).await);
        let call = {
            let http = http.clone();
            let url = format!("{}/v1/batchd/test/clock/advance", server.base);
            let body = advance_body.clone();
            tokio::spawn(async move {
                let resp = http.post(url).json(&body).send().await.ok()?;
                (resp.status() == 200).then_some(())?;
                resp.json::<Value>().await.ok()
            })
        };
        tokio::time::sleep(Duration::from_micros(rng.range(0, 8_000))).await;
        server.kill().await;
        if let Ok(Some(clock)) = call.await {
            acked = acked.max(clock["offset_seconds"].as_i64().unwrap());
        }
    }

    let server = server::start(&data_dir, &flags, &log, "check").await;
    let clock_url = format!("{}/v1/batchd/test/clock", server.base);
    let (status, clock) = get_json(&http, &clock_url).await.unwrap();
    assert_eq!(status, 200, "{clock}");
    let offset = clock["offset_seconds"].as_i64().unwrap();
    assert!(
        offset >= acked,
        "answered advances are kept: {offset} < {acked}"
    );
    assert_eq!(
        offset % DAY_AND_HOUR,
        0,
        "an advance is kept whole or not at all"
    );
    assert!(offset <= CYCLES as i64 * DAY_AND_HOUR);
    // One more advance expires whatever the lost ones did not.
    let resp = http
        .post(format!("{}/v1/batchd/test/clock/advance", server.base))
        .json(&advance_body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut ends = HashMap::new();
    for id in &batches {
        let url = format!("{}/v1/messages/batches/{id}", server.base);
        let (status, batch) = get_json(&http, &url).await.unwrap();
        assert_eq!(status, 200, "{batch}");
        assert_eq!(batch["processing_status"], "ended", "{batch}");
        let [processing, succeeded, errored, canceled, expired] = counts(&batch).unwrap();
        assert_eq!((processing, errored, canceled), (0, 0, 0), "{batch}");
        assert_eq!(succeeded + expired, REQUESTS as u64, "{batch}");
        assert!(
            micros(&batch["ended_at"]) >= micros(&batch["expires_at"]),
            "{batch}"
        );
        let (status, text) = get_text(&http, &format!("{url}/results")).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(server::parse_jsonl(&text).unwrap().len(), REQUESTS);
        ends.insert(id.clone(), batch["ended_at"].clone());
    }
    server.kill().await;

    // The ends are durable: a restart neither undoes nor repeats them.
    let server = server::start(&data_dir, &flags, &log, "again").await;
    for id in &batches {
        let url = format!("{}/v1/messages/batches/{id}", server.base);
        let (_, batch) = get_json(&http, &url).await.unwrap();
        assert_eq!(batch["ended_at"], ends[id], "{batch}");
        let logged = log
            .containing("batch ended")
            .into_iter()
            .filter(|line| line.contains(id.as_str()))
            .count();
        assert!(logged <= 1, "{id} was ended {logged} times");
    }
    server.terminate(Duration::from_secs(30)).await;
    let starts = log.containing("TEST MODE IS ON");
    assert_eq!(starts.len(), CYCLES + 2, "every start says test mode is on");
    assert!(starts.iter().all(|l| l.contains("\"level\":\"WARN\"")));
    assert!(
        log.problems().is_empty(),
        "the server logged panics or errors:\n{}",
        log.problems().join("\n")
    );
    eprintln!("test clock crash test: offset {offset} s after {CYCLES} kills, {acked} s answered");
}
