//! The contract's re-run cases: a new batch of exactly the requests whose result type was
//! chosen, copied inside the store, for every choice of types and both ways a batch ends early.

use std::collections::BTreeMap;

use batchd_domain::rerun::RerunSet;

use super::*;
use crate::rerun::{RerunOutcome, RerunTerms};

fn terms(now: Timestamp) -> RerunTerms {
    RerunTerms {
        id: BatchId::generate(),
        now,
        expiry: Duration::from_micros(DAY as u64),
        queue_cap: u64::MAX,
    }
}

/// The `custom_id` and `params` of every request of a batch, by index.
async fn requests_of(store: &impl Store, key: i64) -> Vec<String> {
    let rows = store.results_page(key, None, 100_000).await.unwrap();
    rows.into_iter().map(|r| r.custom_id).collect()
}

/// Ends a batch of `n` with requests 0..s succeeded, s..s+e errored and the rest unanswered,
/// by `end` (canceled or expired). Returns it, ended.
async fn ended_batch(store: &impl Store, n: u32, s: u32, e: u32, end: EndReason) -> Batch {
    let b = create(store, n).await;
    let items = claim(store, n as usize, at(1)).await;
    let items: BTreeMap<u32, WorkItem> = items
        .into_iter()
        .filter(|w| w.batch_key == b.key)
        .map(|w| (w.index, w))
        .collect();
    let mut done = Vec::new();
    for (i, w) in &items {
        if *i < s {
            done.push(answer(w.slot(), Outcome::Succeeded));
        } else if *i < s + e {
            done.push(answer(w.slot(), Outcome::Errored));
        }
    }
    store.record(&done, at(2)).await.unwrap();
    let rest: Vec<Slot> = items
        .values()
        .filter(|w| w.index >= s + e)
        .map(WorkItem::slot)
        .collect();
    store.release(&rest).await.unwrap();
    match end {
        EndReason::Canceled => {
            store.cancel_batch(WS, &b.id, at(3)).await.unwrap();
            store.finish_due(at(4)).await.unwrap();
        }
        _ => {
            store.finish_due(at(DAY)).await.unwrap();
        }
    }
    let b = get(store, &b).await;
    assert_eq!(b.end_reason, Some(end));
    assert_eq!((b.succeeded, b.errored), (u64::from(s), u64::from(e)));
    b
}

/// For every `only`, on a canceled and on an expired batch, the new batch holds exactly the
/// requests of the original whose result type was chosen, in order, with their `custom_id` and
/// `params`, and the betas, version and user profile of the original; the original is
/// untouched; refusals say why.
pub async fn rerun_copies_exactly_the_chosen_unfinished_requests<H: Harness>(h: &H) {
    let store = h.open().await;
    // Spans more than one copy range, so ranges join up without gaps or repeats.
    let n = crate::rerun::COPY_RANGE + 500;
    for end in [EndReason::Canceled, EndReason::Expired] {
        let original = ended_batch(&store, n, 3, 10_000, end).await;
        let before = requests_of(&store, original.key).await;
        for only in RerunSet::all_combinations() {
            let expected: Vec<String> = (0..n)
                .filter(|&i| {
                    let outcome = if i < 3 {
                        Outcome::Succeeded
                    } else if i < 10_003 {
                        Outcome::Errored
                    } else {
                        end.unanswered_outcome()
                    };
                    only.contains(outcome)
                })
                .map(|i| format!("req-{i}"))
                .collect();
            let outcome = store
                .rerun_batch(WS, &original.id, only, terms(at(10)))
                .await
                .unwrap();
            if expected.is_empty() {
                assert!(
                    matches!(outcome, RerunOutcome::Nothing),
                    "{only:?}: {outcome:?}"
                );
                continue;
            }
            let RerunOutcome::Created(new) = outcome else {
                panic!("{only:?}: {outcome:?}");
            };
            assert_eq!(new.total, expected.len() as u64, "{only:?}");
            assert_eq!(new.status, ProcessingStatus::InProgress);
            assert_eq!(new.betas, original.betas);
            assert_eq!(new.api_version, original.api_version);
            assert_eq!(new.user_profile_id, original.user_profile_id);
            assert_eq!((new.created_at, new.expires_at), (at(10), at(10 + DAY)));
            assert_eq!(requests_of(&store, new.key).await, expected, "{only:?}");
            assert_eq!(get(&store, &new).await, *new);
            // Out of the way of the next original's claims.
            store.cancel_batch(WS, &new.id, at(11)).await.unwrap();
            store.finish_due(at(11)).await.unwrap();
        }
        assert_eq!(
            get(&store, &original).await,
            original,
            "the original is untouched"
        );
        assert_eq!(requests_of(&store, original.key).await, before);
    }
}

/// The params travel too, and the new batch runs like any other; a batch that fully succeeded,
/// one that has not ended, an unknown one and one of another workspace are refused, and a
/// re-run counts under the queue cap as a create does.
pub async fn rerun_batches_run_and_refusals_say_why<H: Harness>(h: &H) {
    let store = h.open().await;
    let original = ended_batch(&store, 5, 1, 1, EndReason::Canceled).await;
    let RerunOutcome::Created(new) = store
        .rerun_batch(WS, &original.id, RerunSet::default(), terms(at(10)))
        .await
        .unwrap()
    else {
        panic!("expected a new batch");
    };
    let mut items = claim(&store, 10, at(11)).await;
    items.sort_by_key(|w| w.index);
    let got: Vec<(u32, String, String)> = items
        .iter()
        .map(|w| (w.index, w.custom_id.clone(), w.params.clone()))
        .collect();
    let want: Vec<(u32, String, String)> = (1..5)
        .map(|i| {
            let r = request(i);
            (i - 1, r.custom_id.into_string(), r.params)
        })
        .collect();
    assert_eq!(got, want);
    assert!(items.iter().all(|w| w.batch_key == new.key));
    let ended = store
        .record(&answers(&items, Outcome::Succeeded), at(12))
        .await
        .unwrap();
    assert_eq!(ended.batches, vec![(new.id.clone(), EndReason::Completed)]);

    // Everything succeeded: nothing to re-run.
    let refused = store
        .rerun_batch(WS, &new.id, RerunSet::default(), terms(at(13)))
        .await
        .unwrap();
    assert!(matches!(refused, RerunOutcome::Nothing), "{refused:?}");
    // Only errored, of a batch with none errored: nothing either, and no draft left behind.
    let rows = h.rows(&store, "batches").await;
    let b = ended_batch(&store, 3, 0, 0, EndReason::Expired).await;
    let only_errored = RerunSet::from_csv("errored").unwrap();
    let refused = store
        .rerun_batch(WS, &b.id, only_errored, terms(at(13)))
        .await
        .unwrap();
    assert!(matches!(refused, RerunOutcome::Nothing), "{refused:?}");
    assert_eq!(h.rows(&store, "batches").await, rows + 1);

    let running = create(&store, 2).await;
    for (workspace, id) in [
        (WS, running.id.clone()),
        (WS, BatchId::generate()),
        ("other", original.id.clone()),
    ] {
        let outcome = store
            .rerun_batch(workspace, &id, RerunSet::default(), terms(at(13)))
            .await
            .unwrap();
        let want_not_ended = id == running.id;
        assert!(
            if want_not_ended {
                matches!(outcome, RerunOutcome::NotEnded)
            } else {
                matches!(outcome, RerunOutcome::NotFound)
            },
            "{workspace} {id}: {outcome:?}"
        );
    }

    // The queue holds `running`'s 2; the re-run of 4 would make 6.
    let mut capped = terms(at(14));
    capped.queue_cap = 5;
    let outcome = store
        .rerun_batch(WS, &original.id, RerunSet::default(), capped)
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            RerunOutcome::QueueFull {
                waiting: 2,
                requests: 4
            }
        ),
        "{outcome:?}"
    );
    let mut fits = terms(at(14));
    fits.queue_cap = 6;
    assert!(matches!(
        store
            .rerun_batch(WS, &original.id, RerunSet::default(), fits)
            .await
            .unwrap(),
        RerunOutcome::Created(_)
    ));
}

/// Not a contract case but a measurement each engine runs (`#[ignore]`d, in release): how long
/// re-running the whole of a 100,000-request batch of 2.5 KB params takes in the store, the
/// worst case (a batch canceled before any answer, so every request is copied). Prints the wall
/// time and this process's CPU time (which a busy machine distorts less; for PostgreSQL the
/// server's own CPU is not in it); asserts only the count.
pub async fn rerun_timing<H: Harness>(h: &H) {
    const N: u32 = 100_000;
    let store = h.open().await;
    let params = format!(
        r#"{{"model":"m","max_tokens":1024,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2_430)
    );
    let d = store.begin_batch(new_batch(WS, at(0))).await.unwrap();
    for start in (0..N).step_by(1_000) {
        let chunk = (start..start + 1_000)
            .map(|i| NewRequest {
                index: i,
                custom_id: CustomId::parse(&format!("req-{i}")).unwrap(),
                params: params.clone(),
                source: None,
            })
            .collect();
        store.append_requests(&d, chunk).await.unwrap();
    }
    let b = store.commit_batch(d, u64::from(N)).await.unwrap();
    store.cancel_batch(WS, &b.id, at(1)).await.unwrap();
    store.finish_due(at(2)).await.unwrap();
    // A re-run comes long after its batch was written: let an engine's background work on
    // the setup's writes (SQLite's WAL checkpoint of its 250 MB) finish first, so it is not
    // counted as the re-run's.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (started, cpu_before) = (std::time::Instant::now(), process_cpu_seconds());
    let outcome = store
        .rerun_batch(WS, &b.id, RerunSet::default(), terms(at(3)))
        .await
        .unwrap();
    let (took, cpu) = (started.elapsed(), process_cpu_seconds() - cpu_before);
    let RerunOutcome::Created(new) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(new.total, u64::from(N));
    println!(
        "rerun: {N} requests of {} B copied in {:.3} s ({cpu:.2} s of this process's CPU)",
        params.len(),
        took.as_secs_f64()
    );
    h.close(store).await;
}

/// This process's user + system CPU time so far, from `/proc/self/stat` (clock ticks, 100 per
/// second on Linux); 0 where there is no such file.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}
