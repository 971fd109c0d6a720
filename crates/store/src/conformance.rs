//! The storage contract as executable tests, for every engine (`testkit` feature).
//!
//! Each engine's test module instantiates the whole suite with [`conformance_tests!`] and a
//! [`Harness`] that opens its store on fresh storage. The tests speak only the [`Store`] trait,
//! plus a row count of the tables every engine has (`batches`, `requests`, `results`, `files`,
//! `file_chunks`), where the contract promises something about storage (purges, drafts,
//! duplicates). The OpenAI surface's cases are in `openai`, test mode's in `clock`, re-runs' in
//! `rerun`, the webhook outbox's in `outbox`, the webhook backlog's in `backlog`. Engine-specific behaviour (locks,
//! query plans, multi-process claims) is tested in the engine's own crate.

mod backlog;
mod clock;
mod openai;
mod outbox;
mod rerun;

pub use backlog::*;
pub use clock::*;
pub use openai::*;
pub use outbox::*;
pub use rerun::*;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use batchd_domain::keys::KeyHash;
use batchd_domain::openai::Surface;
use batchd_domain::{ApiVersion, Batch, BatchId, CustomId, EndReason, Outcome, Timestamp};
use batchd_wire::ProcessingStatus;

use crate::{
    Answer, BatchStore, CancelOutcome, Cursor, DeleteOutcome, DispatchStore, Draft, KeyStore,
    ListError, NewBatch, NewRequest, ResultLines, Retry, Slot, Store, StoreError, WorkItem,
    render_result_lines,
};

/// Opens an engine's store on storage that belongs to one test.
#[async_trait]
pub trait Harness: Send + Sync {
    type Store: Store;
    /// Opens (or, after [`Harness::close`], reopens) the store on this test's storage, as a
    /// server starting would.
    async fn open(&self) -> Self::Store;
    /// Stops using a store as a server shutting down would (its claims and drafts go with it).
    async fn close(&self, store: Self::Store);
    /// Rows in `batches`, `requests`, `results`, `files` or `file_chunks`.
    async fn rows(&self, store: &Self::Store, table: &str) -> i64;
}

/// Instantiates every conformance test as a `#[tokio::test]`. `$harness` is an expression
/// (evaluated per test) giving a future of `Option<impl Harness>`; `None` skips the test (the
/// harness says why, for example an engine whose server is not configured).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@each $harness;
            create_then_read_back,
            commit_refuses_a_total_that_was_not_appended,
            drafts_are_invisible_and_reclaimed_after_restart,
            workspaces_are_isolated,
            list_is_newest_first_with_cursors_both_ways,
            list_between_two_cursors_pages_from_the_older_one,
            cancel_moves_through_canceling_to_ended,
            a_batch_never_ends_before_its_cancel,
            delete_needs_an_ended_batch_and_purge_removes_its_rows,
            claim_record_complete,
            results_lines_render_the_result_rows,
            duplicate_answers_are_ignored,
            answers_after_expiry_are_dropped,
            canceling_batch_ends_when_its_last_claim_is_recorded,
            canceling_batch_ends_when_its_last_claim_is_released,
            released_requests_are_claimed_again,
            deferred_requests_wait_and_keep_their_attempts,
            a_small_batch_is_not_starved_by_a_big_one_nor_a_skipped_batch_served,
            restart_resumes_and_skips_answered_requests,
            keys_create_list_revoke_lookup,
            archival_keeps_the_batch_and_reclaims_its_rows,
            stats_count_unended_work,
            queue_cap_counts_requests_waiting_in_the_workspace,
            openai_batches_keep_their_endpoint_and_extras,
            lists_show_one_surface,
            failed_batches_are_stored_ended_with_their_errors,
            ended_openai_batches_are_finalized_once,
            finalize_commits_the_batch_files_with_it,
            result_pages_are_cut_by_bytes,
            files_are_staged_then_read_back_by_chunk,
            files_list_in_either_order_by_purpose_after_a_cursor,
            files_list_after_a_deleted_or_expired_file,
            requests_read_their_bodies_from_the_input_file,
            a_reset_reclaims_the_input_file_of_its_batches,
            deleted_aborted_and_expired_files_are_reclaimed,
            file_drafts_of_a_stopped_process_are_reclaimed,
            clocks_are_per_workspace_and_only_move_forward,
            batches_expire_on_their_workspace_clock,
            record_ends_batches_on_their_workspace_clock,
            retention_and_settle_follow_the_workspace_clock,
            reset_removes_a_workspace_but_its_keys,
            a_reset_abandons_creates_and_uploads_in_flight,
            files_expire_on_their_workspace_clock,
            batches_are_finalized_on_their_workspace_clock,
            rerun_copies_exactly_the_chosen_unfinished_requests,
            rerun_batches_run_and_refusals_say_why,
            every_end_writes_one_outbox_row,
            webhook_endpoints_are_stored_per_workspace,
            deliveries_fan_out_claim_and_settle,
            webhook_backlog_reports_the_oldest_event_and_the_next_due_delivery,
            openai_ends_are_events_once_their_files_are_written,
        );
    };
    (@each $harness:expr; $($name:ident,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some(harness) = $harness.await else {
                    return;
                };
                $crate::conformance::$name(&harness).await;
            }
        )*
    };
}

const WS: &str = "default";
/// A fixed clock: tests pass times explicitly.
const T0: i64 = 1_700_000_000_000_000;
const DAY: i64 = 86_400_000_000;

fn at(offset: i64) -> Timestamp {
    Timestamp::from_micros(T0 + offset)
}

fn new_batch(workspace: &str, created_at: Timestamp) -> NewBatch {
    NewBatch {
        id: BatchId::generate(),
        workspace: workspace.to_owned(),
        created_at,
        expires_at: created_at.plus(Duration::from_micros(DAY as u64)),
        betas: vec!["beta-one".into(), "beta-two".into()],
        // Not the default, so that an engine that drops them is caught.
        api_version: ApiVersion::V2026_10_21,
        user_profile_id: Some("uprof_one".into()),
        endpoint: batchd_domain::openai::Endpoint::Messages,
        openai: None,
    }
}

fn request(index: u32) -> NewRequest {
    NewRequest {
        index,
        custom_id: CustomId::parse(&format!("req-{index}")).unwrap(),
        params: format!(r#"{{"model":"m","max_tokens":1,"messages":[],"n":{index}}}"#),
        source: None,
    }
}

async fn draft(store: &impl Store, nb: NewBatch, n: u32) -> Draft {
    let draft = store.begin_batch(nb).await.unwrap();
    let mut start = 0;
    while start < n {
        let end = (start + 1000).min(n);
        store
            .append_requests(&draft, (start..end).map(request).collect())
            .await
            .unwrap();
        start = end;
    }
    draft
}

async fn create_in(store: &impl Store, workspace: &str, created_at: Timestamp, n: u32) -> Batch {
    let d = draft(store, new_batch(workspace, created_at), n).await;
    store.commit_batch(d, u64::from(n)).await.unwrap()
}

async fn create(store: &impl Store, n: u32) -> Batch {
    create_in(store, WS, at(0), n).await
}

fn answer(slot: Slot, outcome: Outcome) -> Answer {
    Answer {
        slot,
        custom_id: format!("req-{}", slot.index),
        outcome,
        body: format!(r#"{{"type":"{}","i":{}}}"#, outcome.as_str(), slot.index),
    }
}

fn answers(items: &[WorkItem], outcome: Outcome) -> Vec<Answer> {
    items.iter().map(|w| answer(w.slot(), outcome)).collect()
}

async fn get(store: &impl Store, b: &Batch) -> Batch {
    store
        .get_batch(&b.workspace, &b.id)
        .await
        .unwrap()
        .expect("batch visible")
}

async fn claim(store: &impl Store, limit: usize, now: Timestamp) -> Vec<WorkItem> {
    store.claim(limit, now, &[]).await.unwrap()
}

fn ids(page: &[Batch]) -> Vec<BatchId> {
    page.iter().map(|b| b.id.clone()).collect()
}

pub async fn create_then_read_back<H: Harness>(h: &H) {
    let store = h.open().await;
    let nb = new_batch(WS, at(5));
    let id = nb.id.clone();
    let d = draft(&store, nb, 2_500).await;
    let b = store.commit_batch(d, 2_500).await.unwrap();
    assert_eq!(b.id, id);
    assert_eq!(b.status, ProcessingStatus::InProgress);
    assert_eq!((b.total, b.succeeded, b.errored), (2_500, 0, 0));
    assert_eq!(b.created_at, at(5));
    assert_eq!(b.expires_at, at(5 + DAY));
    assert_eq!(b.betas, vec!["beta-one", "beta-two"]);
    assert_eq!(b.api_version, ApiVersion::V2026_10_21);
    assert_eq!(b.user_profile_id.as_deref(), Some("uprof_one"));
    assert_eq!(b.end_reason, None);
    assert_eq!(get(&store, &b).await, b);

    let first = store.results_page(b.key, None, 1_000).await.unwrap();
    assert_eq!(first.len(), 1_000);
    assert_eq!(first[0].index, 0);
    assert_eq!(first[0].custom_id, "req-0");
    assert!(first.iter().all(|r| r.body.is_none()));
    let next = store.results_page(b.key, Some(999), 1_000).await.unwrap();
    assert_eq!(next[0].index, 1_000);
    let last = store.results_page(b.key, Some(1_999), 1_000).await.unwrap();
    assert_eq!(last.len(), 500);
    assert_eq!(last.last().unwrap().index, 2_499);
    assert!(
        store
            .results_page(b.key, Some(2_499), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.rows(&store, "requests").await, 2_500);

    // The defaults round-trip too: no user profile, and another version.
    let plain = NewBatch {
        api_version: ApiVersion::V2023_01_01,
        user_profile_id: None,
        ..new_batch(WS, at(6))
    };
    let d = draft(&store, plain, 1).await;
    let plain = store.commit_batch(d, 1).await.unwrap();
    assert_eq!(plain.api_version, ApiVersion::V2023_01_01);
    assert_eq!(plain.user_profile_id, None);
    assert_eq!(get(&store, &plain).await, plain);
}

pub async fn commit_refuses_a_total_that_was_not_appended<H: Harness>(h: &H) {
    let store = h.open().await;
    let d = draft(&store, new_batch(WS, at(0)), 10).await;
    let err = store.commit_batch(d, 11).await.unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err}");
}

pub async fn drafts_are_invisible_and_reclaimed_after_restart<H: Harness>(h: &H) {
    let store = h.open().await;
    let visible = create(&store, 3).await;
    let nb = new_batch(WS, at(10));
    let id = nb.id.clone();
    let _draft = draft(&store, nb, 50).await;
    let aborted = draft(&store, new_batch(WS, at(11)), 20).await;
    store.abort_batch(aborted).await.unwrap();

    assert!(store.get_batch(WS, &id).await.unwrap().is_none());
    let page = store
        .list_batches(WS, Surface::Anthropic, Cursor::Start, 10)
        .await
        .unwrap();
    assert_eq!(ids(&page.batches), vec![visible.id.clone()]);
    assert!(matches!(
        store.cancel_batch(WS, &id, at(20)).await.unwrap(),
        CancelOutcome::NotFound
    ));
    assert_eq!(
        store.delete_batch(WS, &id).await.unwrap(),
        DeleteOutcome::NotFound
    );
    assert!(matches!(
        store
            .list_batches(WS, Surface::Anthropic, Cursor::After(id.clone()), 10)
            .await,
        Err(ListError::UnknownCursor(_))
    ));
    let claimed = claim(&store, 100, at(1)).await;
    assert!(claimed.iter().all(|w| w.batch_key == visible.key));
    assert_eq!(claimed.len(), 3);

    // The aborted draft is reclaimable now; the open one only once its process is gone.
    assert!(store.purge_deleted(1_000).await.unwrap() > 0);
    assert_eq!(h.rows(&store, "requests").await, 3 + 50);
    h.close(store).await;

    let store = h.open().await;
    assert!(store.get_batch(WS, &id).await.unwrap().is_none());
    loop {
        let n = store.purge_deleted(7).await.unwrap();
        assert!(n <= 7);
        if n == 0 {
            break;
        }
    }
    // The draft's 50 request rows and its batch row are gone.
    assert_eq!(h.rows(&store, "requests").await, 3);
    assert_eq!(h.rows(&store, "batches").await, 1);
    assert_eq!(get(&store, &visible).await.total, 3);
}

pub async fn workspaces_are_isolated<H: Harness>(h: &H) {
    let store = h.open().await;
    let a = create_in(&store, "team-a", at(0), 2).await;
    let b = create_in(&store, "team-b", at(1), 2).await;
    assert!(store.get_batch("team-b", &a.id).await.unwrap().is_none());
    assert_eq!(
        ids(&store
            .list_batches("team-a", Surface::Anthropic, Cursor::Start, 10)
            .await
            .unwrap()
            .batches),
        vec![a.id.clone()]
    );
    assert!(matches!(
        store.list_batches("team-b", Surface::Anthropic, Cursor::After(a.id.clone()), 10).await,
        Err(ListError::UnknownCursor(id)) if id == a.id
    ));
    assert!(matches!(
        store.cancel_batch("team-b", &a.id, at(2)).await.unwrap(),
        CancelOutcome::NotFound
    ));
    assert_eq!(
        store.delete_batch("team-b", &a.id).await.unwrap(),
        DeleteOutcome::NotFound
    );
    assert_eq!(get(&store, &a).await.status, ProcessingStatus::InProgress);
    assert_eq!(get(&store, &b).await.workspace, "team-b");

    // Claims carry their batch's workspace, fresh and released ones alike (the dispatcher
    // scripts answers per workspace in test mode).
    let owner = |w: &WorkItem| {
        if w.batch_key == a.key {
            "team-a"
        } else {
            "team-b"
        }
    };
    let items = claim(&store, 10, at(2)).await;
    assert_eq!(items.len(), 4);
    assert!(items.iter().all(|w| w.workspace == owner(w)), "{items:?}");
    store
        .release(&[items[0].slot(), items[3].slot()])
        .await
        .unwrap();
    let again = claim(&store, 10, at(3)).await;
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|w| w.workspace == owner(w)), "{again:?}");
}

pub async fn list_is_newest_first_with_cursors_both_ways<H: Harness>(h: &H) {
    let store = h.open().await;
    // Three batches share a creation time: the storage key breaks the tie.
    let mut created = Vec::new();
    for t in [100, 200, 200, 200, 300, 400, 400] {
        created.push(create_in(&store, WS, at(t), 1).await);
    }
    let _other = create_in(&store, "elsewhere", at(1_000), 1).await;
    let newest_first: Vec<BatchId> = created.iter().rev().map(|b| b.id.clone()).collect();

    let p1 = store
        .list_batches(WS, Surface::Anthropic, Cursor::Start, 3)
        .await
        .unwrap();
    assert_eq!(ids(&p1.batches), newest_first[0..3]);
    assert!(p1.has_more);
    let p2 = store
        .list_batches(
            WS,
            Surface::Anthropic,
            Cursor::After(newest_first[2].clone()),
            3,
        )
        .await
        .unwrap();
    assert_eq!(ids(&p2.batches), newest_first[3..6]);
    assert!(p2.has_more);
    let p3 = store
        .list_batches(
            WS,
            Surface::Anthropic,
            Cursor::After(newest_first[5].clone()),
            3,
        )
        .await
        .unwrap();
    assert_eq!(ids(&p3.batches), newest_first[6..7]);
    assert!(!p3.has_more);

    // Backwards from the oldest: the three closest newer ones, still newest first.
    let back = store
        .list_batches(
            WS,
            Surface::Anthropic,
            Cursor::Before(newest_first[6].clone()),
            3,
        )
        .await
        .unwrap();
    assert_eq!(ids(&back.batches), newest_first[3..6]);
    assert!(back.has_more);
    let back = store
        .list_batches(
            WS,
            Surface::Anthropic,
            Cursor::Before(newest_first[3].clone()),
            3,
        )
        .await
        .unwrap();
    assert_eq!(ids(&back.batches), newest_first[0..3]);
    assert!(!back.has_more);
    let back = store
        .list_batches(
            WS,
            Surface::Anthropic,
            Cursor::Before(newest_first[0].clone()),
            3,
        )
        .await
        .unwrap();
    assert!(back.batches.is_empty());
    assert!(!back.has_more);

    let all = store
        .list_batches(WS, Surface::Anthropic, Cursor::Start, 100)
        .await
        .unwrap();
    assert_eq!(ids(&all.batches), newest_first);
    assert!(!all.has_more);
    let exact = store
        .list_batches(WS, Surface::Anthropic, Cursor::Start, 7)
        .await
        .unwrap();
    assert!(!exact.has_more);

    let unknown = BatchId::generate();
    assert!(matches!(
        store
            .list_batches(WS, Surface::Anthropic, Cursor::Before(unknown), 3)
            .await,
        Err(ListError::UnknownCursor(_))
    ));
}

/// Both cursors at once: the batches strictly between them, paged from `after` towards
/// `before`, newest first; `has_more` says more of the window is older than the page.
pub async fn list_between_two_cursors_pages_from_the_older_one<H: Harness>(h: &H) {
    let store = h.open().await;
    // Three batches share a creation time: the storage key breaks the tie.
    let mut created = Vec::new();
    for t in [100, 200, 200, 200, 300, 400, 400] {
        created.push(create_in(&store, WS, at(t), 1).await);
    }
    let other = create_in(&store, "elsewhere", at(250), 1).await;
    let newest_first: Vec<BatchId> = created.iter().rev().map(|b| b.id.clone()).collect();
    let between = |after: usize, before: usize| Cursor::Between {
        after: newest_first[after].clone(),
        before: newest_first[before].clone(),
    };

    let p1 = store
        .list_batches(WS, Surface::Anthropic, between(6, 0), 2)
        .await
        .unwrap();
    assert_eq!(
        ids(&p1.batches),
        Vec::<BatchId>::new(),
        "after is the oldest"
    );
    let p1 = store
        .list_batches(WS, Surface::Anthropic, between(0, 6), 2)
        .await
        .unwrap();
    assert_eq!(ids(&p1.batches), newest_first[1..3]);
    assert!(p1.has_more);
    let p2 = store
        .list_batches(WS, Surface::Anthropic, between(2, 6), 2)
        .await
        .unwrap();
    assert_eq!(ids(&p2.batches), newest_first[3..5]);
    assert!(p2.has_more);
    let p3 = store
        .list_batches(WS, Surface::Anthropic, between(4, 6), 2)
        .await
        .unwrap();
    assert_eq!(ids(&p3.batches), newest_first[5..6]);
    assert!(!p3.has_more, "the window ends before `before`");
    let exact = store
        .list_batches(WS, Surface::Anthropic, between(1, 5), 3)
        .await
        .unwrap();
    assert_eq!(ids(&exact.batches), newest_first[2..5]);
    assert!(!exact.has_more);
    // Neighbours and a reversed pair leave nothing between them.
    for (after, before) in [(3, 2), (2, 3), (4, 4)] {
        let page = store
            .list_batches(WS, Surface::Anthropic, between(after, before), 10)
            .await
            .unwrap();
        assert!(page.batches.is_empty(), "{after} {before}");
        assert!(!page.has_more);
    }

    for cursor in [
        Cursor::Between {
            after: newest_first[0].clone(),
            before: BatchId::generate(),
        },
        Cursor::Between {
            after: other.id.clone(),
            before: newest_first[6].clone(),
        },
    ] {
        assert!(matches!(
            store.list_batches(WS, Surface::Anthropic, cursor, 3).await,
            Err(ListError::UnknownCursor(_))
        ));
    }
}

pub async fn cancel_moves_through_canceling_to_ended<H: Harness>(h: &H) {
    let store = h.open().await;
    let b = create(&store, 4).await;
    let CancelOutcome::Canceling(c) = store.cancel_batch(WS, &b.id, at(10)).await.unwrap() else {
        panic!("expected canceling");
    };
    assert_eq!(c.status, ProcessingStatus::Canceling);
    assert_eq!(c.cancel_initiated_at, Some(at(10)));
    // Canceling batches are not served.
    assert!(claim(&store, 10, at(11)).await.is_empty());
    let CancelOutcome::Canceling(again) = store.cancel_batch(WS, &b.id, at(20)).await.unwrap()
    else {
        panic!("expected canceling");
    };
    assert_eq!(again.cancel_initiated_at, Some(at(10)));

    let ended = store.finish_due(at(30)).await.unwrap();
    assert_eq!(ended.batches, vec![(b.id.clone(), EndReason::Canceled)]);
    let e = get(&store, &b).await;
    assert_eq!(e.status, ProcessingStatus::Ended);
    assert_eq!(e.end_reason, Some(EndReason::Canceled));
    assert_eq!(e.ended_at, Some(at(30)));
    assert_eq!(e.request_counts().canceled, 4);
    assert!(matches!(
        store.cancel_batch(WS, &b.id, at(40)).await.unwrap(),
        CancelOutcome::AlreadyEnded(x) if x == e
    ));
    assert!(matches!(
        store
            .cancel_batch(WS, &BatchId::generate(), at(40))
            .await
            .unwrap(),
        CancelOutcome::NotFound
    ));
    assert!(store.finish_due(at(50)).await.unwrap().batches.is_empty());
}

pub async fn delete_needs_an_ended_batch_and_purge_removes_its_rows<H: Harness>(h: &H) {
    let store = h.open().await;
    let keep = create(&store, 5).await;
    let b = create(&store, 300).await;
    assert_eq!(
        store.delete_batch(WS, &b.id).await.unwrap(),
        DeleteOutcome::NotEnded
    );
    // Answer part of it so it has result rows too, then end it by cancel.
    let items = claim(&store, 400, at(1)).await;
    let mine: Vec<_> = items
        .iter()
        .filter(|w| w.batch_key == b.key)
        .take(120)
        .cloned()
        .collect();
    store
        .record(&answers(&mine, Outcome::Succeeded), at(2))
        .await
        .unwrap();
    let theirs: Vec<_> = items
        .iter()
        .filter(|w| w.batch_key == keep.key)
        .cloned()
        .collect();
    store
        .record(&answers(&theirs, Outcome::Succeeded), at(2))
        .await
        .unwrap();
    store.cancel_batch(WS, &b.id, at(3)).await.unwrap();
    let rest: Vec<Slot> = items
        .iter()
        .filter(|w| w.batch_key == b.key)
        .skip(120)
        .map(WorkItem::slot)
        .collect();
    store.release(&rest).await.unwrap();
    assert!(get(&store, &b).await.is_ended());
    assert_eq!(
        store.delete_batch(WS, &keep.id).await.unwrap(),
        DeleteOutcome::Deleted,
        "the kept batch completed"
    );

    assert_eq!(
        store.delete_batch(WS, &b.id).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(store.get_batch(WS, &b.id).await.unwrap().is_none());
    assert_eq!(
        store.delete_batch(WS, &b.id).await.unwrap(),
        DeleteOutcome::NotFound
    );
    assert!(
        store
            .list_batches(WS, Surface::Anthropic, Cursor::Start, 10)
            .await
            .unwrap()
            .batches
            .is_empty()
    );
    // Deletion itself left every row in place.
    assert_eq!(h.rows(&store, "requests").await, 305);
    assert_eq!(h.rows(&store, "results").await, 125);

    let mut total = 0;
    let mut calls = 0;
    loop {
        let n = store.purge_deleted(100).await.unwrap();
        assert!(n <= 100);
        if n == 0 {
            break;
        }
        total += n;
        calls += 1;
    }
    assert!(calls >= 5, "purged in limited steps");
    // Engines may keep more rows per request (a work queue), never fewer.
    assert!(total >= 305 + 125 + 2, "{total}");
    assert_eq!(h.rows(&store, "requests").await, 0);
    assert_eq!(h.rows(&store, "results").await, 0);
    assert_eq!(h.rows(&store, "batches").await, 0);
}

pub async fn claim_record_complete<H: Harness>(h: &H) {
    let store = h.open().await;
    let b = create(&store, 10).await;
    let items = claim(&store, 100, at(1)).await;
    assert_eq!(items.len(), 10);
    let indices: Vec<u32> = items.iter().map(|w| w.index).collect();
    assert_eq!(indices, (0..10).collect::<Vec<_>>());
    let w = &items[3];
    assert_eq!((w.batch_key, &w.batch_id), (b.key, &b.id));
    assert_eq!(w.custom_id, "req-3");
    assert_eq!(w.params, request(3).params);
    assert_eq!(w.betas, b.betas);
    assert_eq!(w.api_version, b.api_version);
    assert_eq!(w.user_profile_id, b.user_profile_id);
    assert_eq!(w.expires_at, b.expires_at);
    assert!(
        claim(&store, 100, at(1)).await.is_empty(),
        "claimed once only"
    );

    let mut group = answers(&items[..6], Outcome::Succeeded);
    group.extend(answers(&items[6..9], Outcome::Errored));
    assert!(
        store
            .record(&group, at(2))
            .await
            .unwrap()
            .batches
            .is_empty()
    );
    let mid = get(&store, &b).await;
    assert_eq!((mid.succeeded, mid.errored), (6, 3));
    assert_eq!(mid.status, ProcessingStatus::InProgress);

    let ended = store
        .record(&answers(&items[9..], Outcome::Errored), at(3))
        .await
        .unwrap();
    assert_eq!(ended.batches, vec![(b.id.clone(), EndReason::Completed)]);
    let e = get(&store, &b).await;
    assert_eq!(e.status, ProcessingStatus::Ended);
    assert_eq!((e.succeeded, e.errored), (6, 4));
    assert_eq!(e.end_reason, Some(EndReason::Completed));
    assert_eq!(e.ended_at, Some(at(3)));
    let page = store.results_page(b.key, None, 100).await.unwrap();
    assert_eq!(page.len(), 10);
    assert_eq!(
        page[0].body.as_deref(),
        Some(r#"{"type":"succeeded","i":0}"#)
    );
    assert_eq!(page[9].body.as_deref(), Some(r#"{"type":"errored","i":9}"#));
    assert_eq!(store.next_expiry().await.unwrap(), None);
}

/// Engines may assemble the download's lines themselves; they must match the reference rendering
/// of [`BatchStore::results_page`] byte for byte, in every page, with rows that have no result, and
/// once every request has one, when told so.
pub async fn results_lines_render_the_result_rows<H: Harness>(h: &H) {
    let store = h.open().await;
    let b = create(&store, 25).await;
    let items = claim(&store, 100, at(1)).await;
    // Every other request answered, with bodies that a careless concatenation could mangle.
    let body =
        |i: u32| format!(r#"{{"type":"succeeded","text":"é 日本 \"q\" \\ \n\u0000","i":{i}}}"#);
    let (even, odd): (Vec<&WorkItem>, Vec<&WorkItem>) =
        items.iter().partition(|w| w.index % 2 == 0);
    let answer = |w: &&WorkItem| w.answer(Outcome::Succeeded, body(w.index));
    let group: Vec<Answer> = even.iter().map(answer).collect();
    store.record(&group, at(2)).await.unwrap();
    let line =
        |i: u32, result: &str| format!("{{\"custom_id\":\"req-{i}\",\"result\":{result}}}\n");
    let unanswered = r#"{"type":"canceled"}"#;
    let text = assert_pages_match(&store, &b, Some(unanswered)).await;
    assert!(text.starts_with(&line(0, &body(0))));
    assert!(text.ends_with(&line(24, &body(24))));
    assert!(text.contains(&line(1, unanswered)));

    let group: Vec<Answer> = odd.iter().map(answer).collect();
    store.record(&group, at(3)).await.unwrap();
    let text = assert_pages_match(&store, &b, None).await;
    assert!(text.contains(&line(1, &body(1))));
    assert_eq!(text, assert_pages_match(&store, &b, Some(unanswered)).await);
}

/// Pages `b`'s results with several page sizes through both [`BatchStore::results_page`] and
/// [`BatchStore::results_lines`], asserts they render alike, and returns the whole download.
async fn assert_pages_match(store: &impl Store, b: &Batch, unanswered: Option<&str>) -> String {
    let mut text = String::new();
    for limit in [1, 7, 25, 100] {
        let mut after = None;
        let mut all = Vec::new();
        loop {
            let rows = store.results_page(b.key, after, limit).await.unwrap();
            let lines = store
                .results_lines(b.key, after, limit, unanswered)
                .await
                .unwrap();
            let Some(last) = rows.last() else {
                assert_eq!(lines, None);
                break;
            };
            let expected = ResultLines {
                last_index: last.index,
                rows: rows.len() as u32,
                lines: render_result_lines(&rows, unanswered.unwrap_or_default()),
            };
            assert_eq!(
                lines.as_ref(),
                Some(&expected),
                "limit {limit}, after {after:?}"
            );
            all.extend(expected.lines);
            after = Some(last.index);
        }
        text = String::from_utf8(all).unwrap();
        assert_eq!(text.lines().count(), 25);
    }
    let past_the_end = store.results_lines(b.key, Some(u32::MAX - 1), 10, unanswered);
    assert_eq!(past_the_end.await.unwrap(), None);
    text
}

pub async fn duplicate_answers_are_ignored<H: Harness>(h: &H) {
    let store = h.open().await;
    let b = create(&store, 3).await;
    let items = claim(&store, 10, at(1)).await;
    let s0 = items[0].slot();
    // Twice in one group, once more in the next, even with another outcome.
    store
        .record(
            &[
                answer(s0, Outcome::Succeeded),
                answer(s0, Outcome::Succeeded),
            ],
            at(2),
        )
        .await
        .unwrap();
    let ended = store
        .record(
            &[
                answer(s0, Outcome::Errored),
                answer(items[1].slot(), Outcome::Succeeded),
            ],
            at(3),
        )
        .await
        .unwrap();
    assert!(ended.batches.is_empty());
    let mid = get(&store, &b).await;
    assert_eq!((mid.succeeded, mid.errored), (2, 0));
    assert_eq!(h.rows(&store, "results").await, 2);
    let ended = store
        .record(&answers(&items[2..], Outcome::Succeeded), at(4))
        .await
        .unwrap();
    assert_eq!(ended.batches.len(), 1);
    // After the end, even a new answer for a known slot changes nothing.
    store
        .record(&[answer(s0, Outcome::Errored)], at(5))
        .await
        .unwrap();
    let e = get(&store, &b).await;
    assert_eq!((e.succeeded, e.errored), (3, 0));
    assert_eq!(h.rows(&store, "results").await, 3);
}

pub async fn answers_after_expiry_are_dropped<H: Harness>(h: &H) {
    let store = h.open().await;
    // Expired before maintenance ran: record itself ends it.
    let a = create(&store, 4).await;
    let items = claim(&store, 10, at(1)).await;
    assert_eq!(items.len(), 4);
    assert_eq!(store.next_expiry().await.unwrap(), Some(a.expires_at));
    store
        .record(&answers(&items[..1], Outcome::Succeeded), at(2))
        .await
        .unwrap();
    let late = at(DAY);
    assert!(
        claim(&store, 10, late).await.is_empty(),
        "expired batches are not served"
    );
    let ended = store
        .record(&answers(&items[1..], Outcome::Succeeded), late)
        .await
        .unwrap();
    assert_eq!(ended.batches, vec![(a.id.clone(), EndReason::Expired)]);
    let e = get(&store, &a).await;
    assert_eq!((e.succeeded, e.end_reason), (1, Some(EndReason::Expired)));
    assert_eq!(e.request_counts().expired, 3);
    assert_eq!(h.rows(&store, "results").await, 1);

    // Expired by maintenance first.
    let b = create_in(&store, WS, at(10), 2).await;
    let items = claim(&store, 10, at(11)).await;
    let ended = store.finish_due(at(10 + DAY)).await.unwrap();
    assert_eq!(ended.batches, vec![(b.id.clone(), EndReason::Expired)]);
    assert!(
        store
            .record(&answers(&items, Outcome::Succeeded), at(11 + DAY))
            .await
            .unwrap()
            .batches
            .is_empty()
    );
    assert_eq!(get(&store, &b).await.succeeded, 0);
    assert_eq!(h.rows(&store, "results").await, 1);
    assert_eq!(store.next_expiry().await.unwrap(), None);
}

/// A cancel may land between the moment a caller took `now` and the statement that ends the
/// batch with it: `ended_at` is then the cancel's time, never earlier.
pub async fn a_batch_never_ends_before_its_cancel<H: Harness>(h: &H) {
    let store = h.open().await;
    let idle = create(&store, 2).await;
    store.cancel_batch(WS, &idle.id, at(10)).await.unwrap();
    let ended = store.finish_due(at(5)).await.unwrap();
    assert_eq!(ended.batches, vec![(idle.id.clone(), EndReason::Canceled)]);
    assert_eq!(get(&store, &idle).await.ended_at, Some(at(10)));

    let busy = create(&store, 1).await;
    let items = claim(&store, 1, at(11)).await;
    store.cancel_batch(WS, &busy.id, at(20)).await.unwrap();
    let ended = store
        .record(&answers(&items, Outcome::Succeeded), at(15))
        .await
        .unwrap();
    // Every request answered: it ends completed, still not before the cancel.
    assert_eq!(ended.batches, vec![(busy.id.clone(), EndReason::Completed)]);
    assert_eq!(get(&store, &busy).await.ended_at, Some(at(20)));
}

pub async fn canceling_batch_ends_when_its_last_claim_is_recorded<H: Harness>(h: &H) {
    let store = h.open().await;
    let b = create(&store, 5).await;
    let items = claim(&store, 3, at(1)).await;
    assert_eq!(items.len(), 3);
    store.cancel_batch(WS, &b.id, at(2)).await.unwrap();
    assert!(
        store.finish_due(at(3)).await.unwrap().batches.is_empty(),
        "claims are out"
    );
    assert!(
        store
            .record(&answers(&items[..1], Outcome::Succeeded), at(4))
            .await
            .unwrap()
            .batches
            .is_empty()
    );
    store.release(&[items[1].slot()]).await.unwrap();
    assert_eq!(get(&store, &b).await.status, ProcessingStatus::Canceling);
    let ended = store
        .record(&answers(&items[2..], Outcome::Succeeded), at(5))
        .await
        .unwrap();
    assert_eq!(ended.batches, vec![(b.id.clone(), EndReason::Canceled)]);
    let e = get(&store, &b).await;
    assert_eq!(e.ended_at, Some(at(5)));
    let counts = e.request_counts();
    assert_eq!((counts.succeeded, counts.canceled), (2, 3));
}

pub async fn canceling_batch_ends_when_its_last_claim_is_released<H: Harness>(h: &H) {
    let store = h.open().await;
    let b = create(&store, 5).await;
    let items = claim(&store, 2, at(1)).await;
    store.cancel_batch(WS, &b.id, at(2)).await.unwrap();
    store.release(&[items[0].slot()]).await.unwrap();
    assert_eq!(get(&store, &b).await.status, ProcessingStatus::Canceling);
    store.release(&[items[1].slot()]).await.unwrap();
    let e = get(&store, &b).await;
    assert_eq!(e.status, ProcessingStatus::Ended);
    assert_eq!(e.end_reason, Some(EndReason::Canceled));
    assert_eq!(e.request_counts().canceled, 5);
}

pub async fn released_requests_are_claimed_again<H: Harness>(h: &H) {
    let store = h.open().await;
    create(&store, 5).await;
    let items = claim(&store, 3, at(1)).await;
    store.release(&[items[1].slot()]).await.unwrap();
    let again = claim(&store, 10, at(2)).await;
    let indices: BTreeSet<u32> = again.iter().map(|w| w.index).collect();
    assert_eq!(indices, BTreeSet::from([1, 3, 4]));
    assert!(claim(&store, 10, at(2)).await.is_empty());
}

pub async fn deferred_requests_wait_and_keep_their_attempts<H: Harness>(h: &H) {
    let store = h.open().await;
    let b = create(&store, 3).await;
    let items = claim(&store, 10, at(1)).await;
    assert_eq!(items.len(), 3);
    assert!(
        items
            .iter()
            .all(|w| w.attempts == 0 && w.not_before.is_none())
    );
    store
        .defer(
            &[Retry {
                slot: items[1].slot(),
                attempts: 2,
                not_before: at(100),
            }],
            at(2),
        )
        .await
        .unwrap();
    assert!(
        claim(&store, 10, at(50)).await.is_empty(),
        "not before its time"
    );
    let again = claim(&store, 10, at(100)).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].index, again[0].attempts), (1, 2));
    assert_eq!(again[0].not_before, Some(at(100)));

    // The attempt count survives a restart; the request is still unanswered.
    store.release(&[again[0].slot()]).await.unwrap();
    h.close(store).await;
    let store = h.open().await;
    let resumed = claim(&store, 10, at(200)).await;
    let mine: Vec<&WorkItem> = resumed.iter().filter(|w| w.index == 1).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].attempts, 2);

    // A canceling batch shows in `canceling` until it ends; a deferred claim of it counts as
    // given back, so the batch can end.
    store.cancel_batch(WS, &b.id, at(201)).await.unwrap();
    assert_eq!(store.canceling().await.unwrap(), vec![b.key]);
    let retries: Vec<Retry> = resumed
        .iter()
        .map(|w| Retry {
            slot: w.slot(),
            attempts: 1,
            not_before: at(300),
        })
        .collect();
    store.defer(&retries, at(202)).await.unwrap();
    store.finish_due(at(203)).await.unwrap();
    let e = get(&store, &b).await;
    assert_eq!(e.end_reason, Some(EndReason::Canceled));
    assert!(store.canceling().await.unwrap().is_empty());
}

pub async fn a_small_batch_is_not_starved_by_a_big_one_nor_a_skipped_batch_served<H: Harness>(
    h: &H,
) {
    let store = h.open().await;
    let big = create_in(&store, WS, at(0), 5_000).await;
    // The big one is already being worked on when the small one arrives.
    let first = claim(&store, 64, at(1)).await;
    assert_eq!(first.len(), 64);
    assert!(first.iter().all(|w| w.batch_key == big.key));
    let small = create_in(&store, WS, at(2), 10).await;
    let mut seen: HashSet<Slot> = first.iter().map(WorkItem::slot).collect();
    let mut small_claimed = 0;
    for _ in 0..2 {
        let items = claim(&store, 64, at(3)).await;
        assert_eq!(items.len(), 64, "spare room goes to the big batch");
        for w in items {
            assert!(seen.insert(w.slot()), "claimed twice: {:?}", w.slot());
            small_claimed += usize::from(w.batch_key == small.key);
        }
    }
    assert_eq!(small_claimed, 10);

    // Two big batches split a claim evenly.
    let other = create_in(&store, WS, at(4), 5_000).await;
    let items = claim(&store, 64, at(5)).await;
    let of_other = items.iter().filter(|w| w.batch_key == other.key).count();
    assert_eq!((items.len(), of_other), (64, 32));

    // A skipped batch (its backend is full) leaves the whole claim to the others.
    let items = store.claim(64, at(6), &[big.key]).await.unwrap();
    assert_eq!(items.len(), 64);
    assert!(items.iter().all(|w| w.batch_key == other.key));
    let both = [big.key, other.key];
    assert!(store.claim(64, at(7), &both).await.unwrap().is_empty());
}

pub async fn restart_resumes_and_skips_answered_requests<H: Harness>(h: &H) {
    let store = h.open().await;
    let b = create(&store, 20).await;
    let items = claim(&store, 20, at(1)).await;
    let answered: Vec<_> = items.iter().filter(|w| w.index % 3 == 0).cloned().collect();
    store
        .record(&answers(&answered, Outcome::Succeeded), at(2))
        .await
        .unwrap();
    h.close(store).await;

    let store = h.open().await;
    let again = claim(&store, 100, at(3)).await;
    let indices: Vec<u32> = again.iter().map(|w| w.index).collect();
    let expected: Vec<u32> = (0..20).filter(|i| i % 3 != 0).collect();
    assert_eq!(indices, expected);
    let ended = store
        .record(&answers(&again, Outcome::Errored), at(4))
        .await
        .unwrap();
    assert_eq!(ended.batches, vec![(b.id.clone(), EndReason::Completed)]);
    let e = get(&store, &b).await;
    assert_eq!((e.succeeded, e.errored), (7, 13));
}

pub async fn keys_create_list_revoke_lookup<H: Harness>(h: &H) {
    let store = h.open().await;
    assert!(store.list_keys().await.unwrap().is_empty());
    let a = store
        .create_first_key("team-a", KeyHash::of("sk-a"), "sk-a…", at(1))
        .await
        .unwrap()
        .expect("the table was empty");
    let second_first = store.create_first_key("team-x", KeyHash::of("sk-x"), "sk-x…", at(1));
    assert!(second_first.await.unwrap().is_none(), "a key exists");
    let b = store
        .create_key("team-b", KeyHash::of("sk-b"), "sk-b…", at(2))
        .await
        .unwrap();
    assert!(a.id.starts_with("key_"));
    assert_ne!(a.id, b.id);
    assert_eq!(
        (a.workspace.as_str(), a.prefix.as_str()),
        ("team-a", "sk-a…")
    );
    assert_eq!((a.created_at, a.revoked_at), (at(1), None));
    let listed = store.list_keys().await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id.clone()).collect::<Vec<_>>(),
        vec![a.id.clone(), b.id.clone()]
    );
    assert_eq!(
        store
            .workspace_for_key(&KeyHash::of("sk-a"))
            .await
            .unwrap()
            .as_deref(),
        Some("team-a")
    );
    assert_eq!(
        store.workspace_for_key(&KeyHash::of("sk-c")).await.unwrap(),
        None
    );

    assert!(store.revoke_key(&a.id, at(3)).await.unwrap());
    assert!(!store.revoke_key(&a.id, at(4)).await.unwrap());
    assert!(!store.revoke_key("key_nope", at(4)).await.unwrap());
    assert_eq!(
        store.workspace_for_key(&KeyHash::of("sk-a")).await.unwrap(),
        None
    );
    let listed = store.list_keys().await.unwrap();
    assert_eq!(listed.len(), 2, "revoked keys are listed too");
    assert_eq!(listed[0].revoked_at, Some(at(3)));
    assert_eq!(listed[1].revoked_at, None);
    // The same key cannot be registered twice.
    assert!(
        store
            .create_key("team-c", KeyHash::of("sk-b"), "sk-b…", at(5))
            .await
            .is_err()
    );
}

pub async fn archival_keeps_the_batch_and_reclaims_its_rows<H: Harness>(h: &H) {
    let store = h.open().await;
    let old = create_in(&store, WS, at(0), 30).await;
    let running = create_in(&store, WS, at(1), 5).await;
    let young = create_in(&store, WS, at(2 * DAY), 4).await;
    let items = claim(&store, 100, at(3)).await;
    let mine: Vec<WorkItem> = items
        .into_iter()
        .filter(|w| w.batch_key != running.key)
        .collect();
    store
        .record(&answers(&mine, Outcome::Succeeded), at(4))
        .await
        .unwrap();
    assert!(get(&store, &old).await.is_ended() && get(&store, &young).await.is_ended());

    // Cutoff between the old and the young batch; the unended one is never archived.
    assert_eq!(store.archive_due(at(DAY), at(3 * DAY)).await.unwrap(), 1);
    assert_eq!(
        store.archive_due(at(DAY), at(3 * DAY)).await.unwrap(),
        0,
        "idempotent"
    );
    let archived = get(&store, &old).await;
    assert_eq!(archived.archived_at, Some(at(3 * DAY)));
    assert_eq!(
        (archived.succeeded, archived.total),
        (30, 30),
        "counts are kept"
    );
    assert_eq!(get(&store, &young).await.archived_at, None);
    assert_eq!(get(&store, &running).await.archived_at, None);

    let before = h.rows(&store, "requests").await + h.rows(&store, "results").await;
    while store.purge_deleted(7).await.unwrap() > 0 {}
    let after = h.rows(&store, "requests").await + h.rows(&store, "results").await;
    assert_eq!(
        before - after,
        60,
        "the archived batch's 30 requests and 30 results are gone"
    );
    assert!(
        store
            .results_page(old.key, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .results_page(young.key, None, 100)
            .await
            .unwrap()
            .len(),
        4
    );
    // Still listed and retrievable.
    let page = store
        .list_batches(WS, Surface::Anthropic, Cursor::Start, 10)
        .await
        .unwrap();
    assert!(ids(&page.batches).contains(&old.id));
    assert_eq!(
        store.delete_batch(WS, &old.id).await.unwrap(),
        DeleteOutcome::Deleted
    );
    while store.purge_deleted(100).await.unwrap() > 0 {}
    assert_eq!(h.rows(&store, "batches").await, 2);
}

pub async fn stats_count_unended_work<H: Harness>(h: &H) {
    let store = h.open().await;
    store.ping().await.unwrap();
    assert_eq!(store.stats().await.unwrap(), crate::Stats::default());
    let a = create(&store, 10).await;
    let _b = create(&store, 5).await;
    let items = claim(&store, 3, at(1)).await;
    store
        .record(&answers(&items, Outcome::Succeeded), at(2))
        .await
        .unwrap();
    store.cancel_batch(WS, &a.id, at(3)).await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.in_progress + stats.canceling, stats.unanswered),
        (2, 12)
    );
    assert_eq!(
        stats.canceling,
        u64::from(get(&store, &a).await.status == ProcessingStatus::Canceling)
    );
}

/// The queue cap counts a workspace's requests without a result in its `in_progress` batches:
/// answered requests, other workspaces and batches that are no longer in progress do not count.
pub async fn queue_cap_counts_requests_waiting_in_the_workspace<H: Harness>(h: &H) {
    let store = h.open().await;
    let within = |d: Draft, n: u64| store.commit_batch_within(d, n, 15);
    let a = create(&store, 10).await;

    let d = draft(&store, new_batch(WS, at(1)), 6).await;
    let full = within(d, 6).await.unwrap().expect_err("10 + 6 > 15");
    assert_eq!(full.waiting, 10);
    let refused = full.draft.batch.id.clone();
    store.abort_batch(full.draft).await.unwrap();
    assert_eq!(store.get_batch(WS, &refused).await.unwrap(), None);

    let d = draft(&store, new_batch("other", at(1)), 15).await;
    within(d, 15)
        .await
        .unwrap()
        .expect("another workspace has its own queue");
    let d = draft(&store, new_batch(WS, at(1)), 5).await;
    let b = within(d, 5).await.unwrap().expect("10 + 5 is the cap");

    // Four answers free four places; a cancel frees the rest of its batch.
    let items: Vec<WorkItem> = claim(&store, 100, at(2))
        .await
        .into_iter()
        .filter(|w| w.batch_key == a.key)
        .take(4)
        .collect();
    assert_eq!(items.len(), 4);
    store
        .record(&answers(&items, Outcome::Succeeded), at(3))
        .await
        .unwrap();
    let d = draft(&store, new_batch(WS, at(4)), 5).await;
    let full = within(d, 5).await.unwrap().expect_err("6 + 5 + 5 > 15");
    assert_eq!(full.waiting, 11);
    assert_eq!(store.waiting_requests(WS).await.unwrap(), 11);
    assert_eq!(store.waiting_requests("other").await.unwrap(), 15);
    assert_eq!(store.waiting_requests("nobody").await.unwrap(), 0);
    store.abort_batch(full.draft).await.unwrap();
    store.cancel_batch(WS, &b.id, at(5)).await.unwrap();
    let d = draft(&store, new_batch(WS, at(6)), 9).await;
    within(d, 9).await.unwrap().expect("6 + 9 is the cap");
}
