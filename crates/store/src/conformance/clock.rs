//! The contract's test-mode cases: a clock per workspace that only moves forward, and expiry,
//! ends, retention and the next wake-up on that clock; settling; resetting a workspace.

use std::time::Duration;

use batchd_domain::openai::FileId;

use super::*;
use crate::clock::Reset;
use crate::{ClockStore, FileStore, NewFile};

const HOUR: i64 = 3_600_000_000;
/// The results retention the cases settle with, as the server's default.
const RETENTION: Duration = Duration::from_secs(29 * 86_400);

/// A clock is per workspace, starts at 0, only moves forward, and is kept across a restart.
pub async fn clocks_are_per_workspace_and_only_move_forward<H: Harness>(h: &H) {
    let store = h.open().await;
    assert_eq!(store.clock_offset("a").await.unwrap(), 0);
    assert_eq!(store.advance_clock("a", HOUR).await.unwrap(), HOUR);
    assert_eq!(store.advance_clock("a", 0).await.unwrap(), HOUR);
    assert_eq!(store.advance_clock("a", 2 * HOUR).await.unwrap(), 3 * HOUR);
    assert!(store.advance_clock("a", -1).await.is_err(), "never back");
    assert!(
        store.advance_clock("a", i64::MAX).await.is_err(),
        "never past the limit"
    );
    assert_eq!(store.clock_offset("a").await.unwrap(), 3 * HOUR);
    assert_eq!(store.clock_offset("b").await.unwrap(), 0, "b untouched");
    h.close(store).await;
    let store = h.open().await;
    assert_eq!(store.clock_offset("a").await.unwrap(), 3 * HOUR, "durable");
}

/// Expiry, the end it writes and the next wake-up follow each batch's workspace's clock.
pub async fn batches_expire_on_their_workspace_clock<H: Harness>(h: &H) {
    let store = h.open().await;
    let a = create_in(&store, "a", at(0), 3).await;
    let b = create_in(&store, "b", at(0), 3).await;
    assert_eq!(store.next_expiry().await.unwrap(), Some(at(DAY)));
    store.advance_clock("a", DAY / 2).await.unwrap();
    assert_eq!(
        store.next_expiry().await.unwrap(),
        Some(at(DAY / 2)),
        "a's batch expires half a day earlier in real time"
    );
    assert!(store.finish_due(at(1)).await.unwrap().batches.is_empty());
    store.advance_clock("a", DAY / 2).await.unwrap();
    let ended = store.finish_due(at(1)).await.unwrap();
    assert_eq!(ended.batches, vec![(a.id.clone(), EndReason::Expired)]);
    let a = get(&store, &a).await;
    assert_eq!(a.end_reason, Some(EndReason::Expired));
    assert_eq!(a.ended_at, Some(at(1 + DAY)), "ended on a's clock");
    assert!(!get(&store, &b).await.is_ended(), "b is on real time");
    assert_eq!(store.next_expiry().await.unwrap(), Some(at(DAY)));
    // b's requests are still claimed; none of a's are.
    let items = claim(&store, 100, at(2)).await;
    assert!(!items.is_empty() && items.iter().all(|w| w.batch_key == b.key));
}

/// A record group ends a batch at its workspace's time, and drops answers that come after the
/// batch's deadline on that clock.
pub async fn record_ends_batches_on_their_workspace_clock<H: Harness>(h: &H) {
    let store = h.open().await;
    let done = create_in(&store, "a", at(0), 1).await;
    let late = create_in(&store, "a", at(0), 2).await;
    let items = claim(&store, 100, at(1)).await;
    assert_eq!(items.len(), 3);
    store.advance_clock("a", HOUR).await.unwrap();
    let (first, rest): (Vec<WorkItem>, Vec<WorkItem>) =
        items.into_iter().partition(|w| w.batch_key == done.key);
    store
        .record(&answers(&first, Outcome::Succeeded), at(2))
        .await
        .unwrap();
    let done = get(&store, &done).await;
    assert_eq!(done.ended_at, Some(at(2 + HOUR)), "completed on a's clock");

    store.advance_clock("a", DAY).await.unwrap();
    let ended = store
        .record(&answers(&rest, Outcome::Succeeded), at(3))
        .await
        .unwrap();
    assert_eq!(ended.batches, vec![(late.id.clone(), EndReason::Expired)]);
    let late = get(&store, &late).await;
    assert_eq!(
        (late.succeeded, late.end_reason),
        (0, Some(EndReason::Expired))
    );
    assert_eq!(late.ended_at, Some(at(3 + HOUR + DAY)));
}

/// Retention is counted on each workspace's clock, and so is `archived_at`; settling runs
/// expiry and retention at once.
pub async fn retention_and_settle_follow_the_workspace_clock<H: Harness>(h: &H) {
    let store = h.open().await;
    let a = create_in(&store, "a", at(0), 1).await;
    let b = create_in(&store, "b", at(0), 1).await;
    let pending = create_in(&store, "a", at(0), 1).await;
    let items: Vec<WorkItem> = claim(&store, 100, at(1))
        .await
        .into_iter()
        .filter(|w| w.batch_key != pending.key)
        .collect();
    store
        .record(&answers(&items, Outcome::Succeeded), at(2))
        .await
        .unwrap();
    store.advance_clock("a", 30 * DAY).await.unwrap();
    let settled = store.settle(at(3), RETENTION).await.unwrap();
    assert_eq!(
        settled.ended.batches,
        vec![(pending.id.clone(), EndReason::Expired)]
    );
    assert_eq!(settled.archived, 2, "a's batches, the one just expired too");
    let a = get(&store, &a).await;
    assert_eq!(
        a.archived_at,
        Some(at(3 + 30 * DAY)),
        "archived on a's clock"
    );
    assert_eq!(get(&store, &b).await.archived_at, None, "b is on real time");
    assert_eq!(get(&store, &pending).await.ended_at, Some(at(3 + 30 * DAY)));
    assert_eq!(
        store
            .archive_due(at(3).minus(RETENTION), at(3))
            .await
            .unwrap(),
        0,
        "b waits for real time"
    );
    assert_eq!(
        store
            .archive_due(at(30 * DAY).minus(RETENTION), at(30 * DAY))
            .await
            .unwrap(),
        1,
        "and maintenance, on real time, archives it when that comes"
    );
}

/// A reset removes every batch (any state, either surface) and visible file of the workspace
/// at once, puts its clock back to real time, keeps its keys, and leaves other workspaces be;
/// late answers for its batches are dropped and the purge reclaims its rows.
pub async fn reset_removes_a_workspace_but_its_keys<H: Harness>(h: &H) {
    let store = h.open().await;
    store
        .create_key("a", KeyHash::of("sk-a"), "sk-a…", at(0))
        .await
        .unwrap();
    let running = create_in(&store, "a", at(0), 3).await;
    let finished = create_in(&store, "a", at(0), 1).await;
    let openai = {
        let mut nb = new_batch("a", at(0));
        nb.id = BatchId::generate_openai(at(0));
        nb.endpoint = batchd_domain::openai::Endpoint::ChatCompletions;
        nb.openai = Some(super::openai_meta());
        let d = draft(&store, nb, 2).await;
        store.commit_batch(d, 2).await.unwrap()
    };
    let other = create_in(&store, "b", at(0), 2).await;
    let file = {
        let draft = store.begin_file(input_file("a", None)).await.unwrap();
        store
            .append_file(&draft, 0, b"{}\n".to_vec())
            .await
            .unwrap();
        store.commit_file(draft, 3).await.unwrap()
    };
    let items = claim(&store, 100, at(1)).await;
    let (fin, held): (Vec<WorkItem>, Vec<WorkItem>) =
        items.into_iter().partition(|w| w.batch_key == finished.key);
    store
        .record(&answers(&fin, Outcome::Succeeded), at(2))
        .await
        .unwrap();
    store.advance_clock("a", DAY).await.unwrap();

    let mut reset = store.reset_workspace("a", at(3)).await.unwrap();
    reset.batch_keys.sort_unstable();
    let mut batch_keys = vec![running.key, finished.key, openai.key];
    batch_keys.sort_unstable();
    assert_eq!(
        reset,
        Reset {
            batch_keys,
            files: 1
        }
    );
    for b in [&running, &finished, &openai] {
        assert!(store.get_batch("a", &b.id).await.unwrap().is_none());
    }
    for surface in [Surface::Anthropic, Surface::OpenAi] {
        let page = store
            .list_batches("a", surface, Cursor::Start, 10)
            .await
            .unwrap();
        assert!(page.batches.is_empty());
    }
    assert!(store.get_file("a", &file.id).await.unwrap().is_none());
    assert_eq!(
        store.clock_offset("a").await.unwrap(),
        0,
        "back on real time"
    );
    assert_eq!(
        store
            .workspace_for_key(&KeyHash::of("sk-a"))
            .await
            .unwrap()
            .as_deref(),
        Some("a"),
        "keys stay"
    );

    // Answers still in flight are dropped; nothing of a is claimed again.
    let ended = store
        .record(&answers(&held, Outcome::Succeeded), at(4))
        .await
        .unwrap();
    assert!(ended.batches.iter().all(|(id, _)| *id == other.id));
    assert!(store.finish_due(at(5)).await.unwrap().batches.is_empty());
    let again = claim(&store, 100, at(6)).await;
    assert!(again.iter().all(|w| w.batch_key == other.key));
    assert!(store.unfinalized(10).await.unwrap().is_empty());

    while store.purge_deleted(1_000).await.unwrap() > 0 {}
    assert_eq!(h.rows(&store, "batches").await, 1, "only b's batch is left");
    assert_eq!(h.rows(&store, "requests").await, 2);
    assert_eq!(
        h.rows(&store, "files").await + h.rows(&store, "file_chunks").await,
        0
    );
    assert!(get(&store, &other).await.total == 2);
    assert_eq!(
        store.reset_workspace("a", at(7)).await.unwrap(),
        Reset::default(),
        "nothing left"
    );
}

/// A reset also abandons what its workspace is still creating or uploading: the draft's next
/// piece or its commit fails as [`StoreError::DraftGone`] and nothing of it ever appears; other
/// workspaces' drafts go on.
pub async fn a_reset_abandons_creates_and_uploads_in_flight<H: Harness>(h: &H) {
    let store = h.open().await;
    let creating = draft(&store, new_batch("a", at(0)), 2).await;
    let committing = draft(&store, new_batch("a", at(0)), 1).await;
    let elsewhere = draft(&store, new_batch("b", at(0)), 1).await;
    let uploading = store.begin_file(input_file("a", None)).await.unwrap();
    store
        .append_file(&uploading, 0, b"{}\n".to_vec())
        .await
        .unwrap();
    let file_id = uploading.file.id.clone();
    let other_upload = store.begin_file(input_file("b", None)).await.unwrap();

    store.reset_workspace("a", at(1)).await.unwrap();

    let more = vec![NewRequest {
        index: 2,
        custom_id: CustomId::parse("late").unwrap(),
        params: "{}".into(),
        source: None,
    }];
    let gone = |r: crate::Result<()>| matches!(r, Err(StoreError::DraftGone(_)));
    assert!(gone(
        store.append_requests(&creating, more).await.map(|_| ())
    ));
    assert!(gone(store.commit_batch(committing, 1).await.map(|_| ())));
    assert!(gone(
        store.append_file(&uploading, 1, b"{}\n".to_vec()).await
    ));
    assert!(gone(store.commit_file(uploading, 3).await.map(|_| ())));
    assert_eq!(store.get_file("a", &file_id).await.unwrap(), None);
    let listed = store
        .list_batches("a", Surface::Anthropic, Cursor::Start, 10)
        .await
        .unwrap();
    assert!(listed.batches.is_empty());
    // Another workspace's creates and uploads are untouched.
    store.commit_batch(elsewhere, 1).await.unwrap();
    store
        .append_file(&other_upload, 0, b"{}\n".to_vec())
        .await
        .unwrap();
    store.commit_file(other_upload, 3).await.unwrap();
}

/// Files expire on their workspace's clock: a workspace a day ahead sees its file expire a day
/// early in real time, another workspace's file with the same expiry stays.
pub async fn files_expire_on_their_workspace_clock<H: Harness>(h: &H) {
    let store = h.open().await;
    let mut ids = Vec::new();
    for workspace in ["a", "b"] {
        let draft = store
            .begin_file(input_file(workspace, Some(at(DAY))))
            .await
            .unwrap();
        store
            .append_file(&draft, 0, b"{}\n".to_vec())
            .await
            .unwrap();
        ids.push(store.commit_file(draft, 3).await.unwrap().id);
    }
    store.advance_clock("a", DAY).await.unwrap();
    assert_eq!(store.expire_files(at(1), 10).await.unwrap(), 1);
    assert_eq!(store.get_file("a", &ids[0]).await.unwrap(), None);
    assert!(store.get_file("b", &ids[1]).await.unwrap().is_some());
    assert_eq!(store.expire_files(at(DAY), 10).await.unwrap(), 1);
    assert_eq!(store.get_file("b", &ids[1]).await.unwrap(), None);
}

/// A batch is finalized on its workspace's clock (never before it ended).
pub async fn batches_are_finalized_on_their_workspace_clock<H: Harness>(h: &H) {
    let store = h.open().await;
    let mut nb = new_batch("a", at(0));
    nb.id = BatchId::generate_openai(at(0));
    nb.endpoint = batchd_domain::openai::Endpoint::ChatCompletions;
    nb.openai = Some(super::openai_meta());
    let d = draft(&store, nb, 1).await;
    let b = store.commit_batch(d, 1).await.unwrap();
    let items = claim(&store, 10, at(1)).await;
    store
        .record(&answers(&items, Outcome::Succeeded), at(2))
        .await
        .unwrap();
    store.advance_clock("a", DAY).await.unwrap();
    let meta = super::openai_meta();
    assert!(store.finalize(b.key, &meta, &[], at(3)).await.unwrap());
    assert_eq!(get(&store, &b).await.finalized_at, Some(at(3 + DAY)));
}

/// A batch input file of `workspace` created at `at(0)`.
fn input_file(workspace: &str, expires_at: Option<Timestamp>) -> NewFile {
    NewFile {
        id: FileId::generate(),
        workspace: workspace.into(),
        purpose: "batch".into(),
        filename: "in.jsonl".into(),
        created_at: at(0),
        expires_at,
    }
}
