//! The contract's OpenAI-surface cases: batches that carry an endpoint and extras, a list per
//! surface, failed batches, finalizing, and files (staged, read by chunk, listed, deleted,
//! expired and reclaimed).

use batchd_domain::openai::{Endpoint, FileId, LineError, OpenAiBatchMeta, Surface};

use super::*;
use crate::{BodySource, FILE_CHUNK_BYTES, FileDraft, FileStore, NewFile, ResultRow, StoredFile};

/// An OpenAI batch's extras, for the cases of other modules too.
pub(super) fn openai_meta() -> OpenAiBatchMeta {
    meta()
}

pub(super) fn meta() -> OpenAiBatchMeta {
    OpenAiBatchMeta {
        input_file_id: "file-input".into(),
        completion_window: "24h".into(),
        metadata: Some(r#"{"b":"2","a":"1"}"#.into()),
        output_expires_after: Some(3_600),
        model: Some("gpt-4o-mini".into()),
        errors: Vec::new(),
        output_file_id: None,
        error_file_id: None,
        usage: None,
    }
}

fn openai_batch(workspace: &str, created_at: Timestamp) -> NewBatch {
    NewBatch {
        id: BatchId::generate_openai(created_at),
        endpoint: Endpoint::ChatCompletions,
        openai: Some(meta()),
        ..new_batch(workspace, created_at)
    }
}

pub(super) fn failed_batch(workspace: &str, created_at: Timestamp) -> NewBatch {
    let mut nb = openai_batch(workspace, created_at);
    nb.endpoint = Endpoint::Embeddings;
    nb.openai.as_mut().expect("set above").errors = vec![
        LineError {
            code: "invalid_json_line".into(),
            message: "This line is not parseable as valid JSON.".into(),
            param: None,
            line: Some(2),
        },
        LineError {
            code: "missing_required_parameter".into(),
            message: "Missing required parameter: 'custom_id'.".into(),
            param: Some("custom_id".into()),
            line: Some(5),
        },
    ];
    nb
}

pub(super) async fn create_openai(store: &impl Store, created_at: Timestamp, n: u32) -> Batch {
    let d = draft(store, openai_batch(WS, created_at), n).await;
    store.commit_batch(d, u64::from(n)).await.unwrap()
}

fn new_file(workspace: &str, purpose: &str, created_at: Timestamp) -> NewFile {
    NewFile {
        id: FileId::generate(),
        workspace: workspace.to_owned(),
        purpose: purpose.to_owned(),
        filename: "input.jsonl".into(),
        created_at,
        expires_at: None,
    }
}

/// Writes a file of `pieces` small pieces and commits it.
async fn write_file(store: &impl Store, file: NewFile, pieces: u32) -> StoredFile {
    let draft = store.begin_file(file).await.unwrap();
    let mut bytes = 0;
    for seq in 0..pieces {
        let piece = format!("{{\"piece\":{seq}}}\n").into_bytes();
        bytes += piece.len() as u64;
        store.append_file(&draft, seq, piece).await.unwrap();
    }
    store.commit_file(draft, bytes).await.unwrap()
}

/// The same draft again, for a call that consumes it after one that was refused.
fn again(draft: &FileDraft) -> FileDraft {
    FileDraft {
        key: draft.key,
        file: draft.file.clone(),
    }
}

fn file_ids(files: &[StoredFile]) -> Vec<FileId> {
    files.iter().map(|f| f.id.clone()).collect()
}

async fn purge_all(store: &impl Store) {
    while store.purge_deleted(1_000).await.unwrap() > 0 {}
}

/// An OpenAI batch keeps its endpoint and extras, and its requests are claimed with its
/// endpoint, also after a restart (when claims are rebuilt from storage).
pub async fn openai_batches_keep_their_endpoint_and_extras<H: Harness>(h: &H) {
    let store = h.open().await;
    let b = create_openai(&store, at(1), 3).await;
    assert!(b.id.as_str().starts_with("batch_"), "{}", b.id);
    assert_eq!(b.endpoint, Endpoint::ChatCompletions);
    assert_eq!(b.openai, Some(meta()));
    assert_eq!(b.finalized_at, None);
    assert_eq!(get(&store, &b).await, b);
    let anthropic = create(&store, 2).await;
    assert_eq!(
        (anthropic.endpoint, anthropic.openai),
        (Endpoint::Messages, None)
    );

    let check = |items: &[WorkItem]| {
        assert_eq!(items.len(), 5);
        for w in items {
            let expected = if w.batch_key == b.key {
                Endpoint::ChatCompletions
            } else {
                Endpoint::Messages
            };
            assert_eq!(
                w.endpoint, expected,
                "request {} of {}",
                w.index, w.batch_id
            );
        }
    };
    check(&claim(&store, 10, at(2)).await);
    h.close(store).await;
    let store = h.open().await;
    check(&claim(&store, 10, at(3)).await);
}

/// A list shows one surface: each surface's batches, newest first, paged within the surface;
/// a cursor naming a batch of the other surface is unknown.
pub async fn lists_show_one_surface<H: Harness>(h: &H) {
    let store = h.open().await;
    let mut anthropic = Vec::new();
    let mut openai = Vec::new();
    for i in 0..4 {
        anthropic.push(create_in(&store, WS, at(i * 10), 1).await.id);
        openai.push(create_openai(&store, at(i * 10 + 5), 1).await.id);
    }
    let failed = store
        .insert_failed_batch(failed_batch(WS, at(100)), at(100))
        .await
        .unwrap();
    openai.push(failed.id);
    openai.push(create_openai(&store, at(200), 1).await.id);
    let other = store
        .commit_batch(draft(&store, openai_batch("other", at(300)), 1).await, 1)
        .await
        .unwrap();
    anthropic.reverse();
    openai.reverse();

    let page = store
        .list_batches(WS, Surface::Anthropic, Cursor::Start, 10)
        .await
        .unwrap();
    assert_eq!(ids(&page.batches), anthropic);
    assert!(!page.has_more);
    let page = store
        .list_batches(WS, Surface::OpenAi, Cursor::Start, 10)
        .await
        .unwrap();
    assert_eq!(ids(&page.batches), openai);
    assert!(!page.has_more);
    assert!(!openai.contains(&other.id));

    let p1 = store
        .list_batches(WS, Surface::OpenAi, Cursor::Start, 2)
        .await
        .unwrap();
    assert_eq!(
        (ids(&p1.batches), p1.has_more),
        (openai[..2].to_vec(), true)
    );
    let p2 = store
        .list_batches(WS, Surface::OpenAi, Cursor::After(openai[1].clone()), 2)
        .await
        .unwrap();
    assert_eq!(
        (ids(&p2.batches), p2.has_more),
        (openai[2..4].to_vec(), true)
    );
    let p3 = store
        .list_batches(WS, Surface::OpenAi, Cursor::After(openai[3].clone()), 10)
        .await
        .unwrap();
    assert_eq!(
        (ids(&p3.batches), p3.has_more),
        (openai[4..].to_vec(), false)
    );
    let newer = store
        .list_batches(
            WS,
            Surface::Anthropic,
            Cursor::Before(anthropic[3].clone()),
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        (ids(&newer.batches), newer.has_more),
        (anthropic[1..3].to_vec(), true)
    );

    assert!(matches!(
        store.list_batches(WS, Surface::Anthropic, Cursor::After(openai[0].clone()), 10).await,
        Err(ListError::UnknownCursor(id)) if id == openai[0]
    ));
    assert!(matches!(
        store.list_batches(WS, Surface::OpenAi, Cursor::Before(anthropic[0].clone()), 10).await,
        Err(ListError::UnknownCursor(id)) if id == anthropic[0]
    ));
}

/// A batch that failed validation is stored visible, ended and with its errors, with no
/// requests and nothing to finalize; only an OpenAI batch with errors can be stored so.
pub async fn failed_batches_are_stored_ended_with_their_errors<H: Harness>(h: &H) {
    let store = h.open().await;
    let nb = failed_batch(WS, at(5));
    let b = store.insert_failed_batch(nb.clone(), at(7)).await.unwrap();
    assert_eq!(b.id, nb.id);
    assert_eq!(b.status, ProcessingStatus::Ended);
    assert_eq!(b.end_reason, Some(EndReason::Completed));
    assert_eq!((b.total, b.succeeded, b.errored), (0, 0, 0));
    assert_eq!((b.created_at, b.expires_at), (nb.created_at, nb.expires_at));
    assert_eq!((b.ended_at, b.finalized_at), (Some(at(7)), Some(at(7))));
    assert_eq!((b.endpoint, &b.openai), (Endpoint::Embeddings, &nb.openai));
    assert_eq!(get(&store, &b).await, b);
    assert!(store.unfinalized(10).await.unwrap().is_empty());
    assert!(claim(&store, 10, at(8)).await.is_empty());
    assert!(
        store
            .results_page(b.key, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.stats().await.unwrap(), crate::Stats::default());

    let mut no_errors = failed_batch(WS, at(6));
    no_errors.openai.as_mut().expect("set").errors.clear();
    assert!(store.insert_failed_batch(no_errors, at(7)).await.is_err());
    assert!(
        store
            .insert_failed_batch(new_batch(WS, at(6)), at(7))
            .await
            .is_err()
    );
    assert_eq!(
        store.delete_batch(WS, &b.id).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(store.get_batch(WS, &b.id).await.unwrap(), None);
}

/// Ended OpenAI batches wait to be finalized, oldest ended first (Anthropic, unended, deleted
/// and archived batches never do); their result pages carry each row's outcome; a batch is
/// finalized once, by whichever call comes first.
pub async fn ended_openai_batches_are_finalized_once<H: Harness>(h: &H) {
    let store = h.open().await;
    let first = create_openai(&store, at(1), 3).await;
    let second = create_openai(&store, at(2), 2).await;
    let anthropic = create(&store, 1).await;
    assert!(store.unfinalized(10).await.unwrap().is_empty());

    let items = claim(&store, 10, at(3)).await;
    let of = |key: i64| -> Vec<WorkItem> {
        items
            .iter()
            .filter(|w| w.batch_key == key)
            .cloned()
            .collect()
    };
    let mut done = answers(&of(first.key)[..2], Outcome::Succeeded);
    done.extend(answers(&of(first.key)[2..], Outcome::Errored));
    done.extend(answers(&of(anthropic.key), Outcome::Succeeded));
    store.record(&done, at(4)).await.unwrap();
    // The second ends canceled with both requests unanswered, after the first.
    store.cancel_batch(WS, &second.id, at(5)).await.unwrap();
    let back: Vec<Slot> = of(second.key).iter().map(WorkItem::slot).collect();
    store.release(&back).await.unwrap();
    store.finish_due(at(6)).await.unwrap();
    assert!(get(&store, &second).await.is_ended());

    let waiting = store.unfinalized(10).await.unwrap();
    let keys: Vec<i64> = waiting.iter().map(|b| b.key).collect();
    assert_eq!(keys, vec![first.key, second.key]);
    assert_eq!(waiting[0], get(&store, &first).await);
    let oldest = store.unfinalized(1).await.unwrap();
    assert_eq!(
        oldest.iter().map(|b| b.key).collect::<Vec<_>>(),
        vec![first.key]
    );

    let rows = store.results_page(first.key, None, 10).await.unwrap();
    let outcomes: Vec<Option<Outcome>> = rows.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Some(Outcome::Succeeded),
            Some(Outcome::Succeeded),
            Some(Outcome::Errored)
        ]
    );
    let rows = store.results_page(second.key, None, 10).await.unwrap();
    assert!(rows.iter().all(|r| r.outcome.is_none() && r.body.is_none()));

    let mut written = meta();
    written.output_file_id = Some(FileId::generate());
    written.error_file_id = Some(FileId::generate());
    assert!(
        store
            .finalize(first.key, &written, &[], at(10))
            .await
            .unwrap()
    );
    assert!(
        !store
            .finalize(first.key, &meta(), &[], at(11))
            .await
            .unwrap()
    );
    let f = get(&store, &first).await;
    assert_eq!(
        (f.finalized_at, f.openai),
        (Some(at(10)), Some(written.clone()))
    );
    let keys: Vec<i64> = store
        .unfinalized(10)
        .await
        .unwrap()
        .iter()
        .map(|b| b.key)
        .collect();
    assert_eq!(keys, vec![second.key]);

    // Only ended OpenAI batches that are still there can be finalized.
    assert!(
        !store
            .finalize(anthropic.key, &written, &[], at(12))
            .await
            .unwrap()
    );
    let running = create_openai(&store, at(20), 1).await;
    assert!(
        !store
            .finalize(running.key, &written, &[], at(12))
            .await
            .unwrap()
    );
    assert_eq!(
        store.delete_batch(WS, &second.id).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(store.unfinalized(10).await.unwrap().is_empty());
    assert!(
        !store
            .finalize(second.key, &written, &[], at(12))
            .await
            .unwrap()
    );

    // Retention waits for the files: archiving first would hide the batch from the finalizer
    // and purge the results its files are made from.
    store.cancel_batch(WS, &running.id, at(21)).await.unwrap();
    store.finish_due(at(22)).await.unwrap();
    assert_eq!(store.unfinalized(10).await.unwrap().len(), 1);
    store.archive_due(at(20), at(23)).await.unwrap();
    let waiting = get(&store, &running).await;
    assert_eq!(waiting.archived_at, None, "archived before its files");
    assert_eq!(store.unfinalized(10).await.unwrap().len(), 1);
    // `finalized_at` is never before the end, whatever clock the caller read.
    assert!(
        store
            .finalize(running.key, &written, &[], at(1))
            .await
            .unwrap()
    );
    assert_eq!(get(&store, &running).await.finalized_at, waiting.ended_at);
    store.archive_due(at(20), at(24)).await.unwrap();
    assert!(get(&store, &running).await.archived_at.is_some());
    assert!(store.unfinalized(10).await.unwrap().is_empty());
}

/// A file is invisible until committed, then read back piece by piece; pieces must be at most
/// [`FILE_CHUNK_BYTES`], and a commit must name every piece and byte.
pub async fn files_are_staged_then_read_back_by_chunk<H: Harness>(h: &H) {
    let store = h.open().await;
    let nf = NewFile {
        expires_at: Some(at(DAY)),
        ..new_file(WS, "batch", at(1))
    };
    let d = store.begin_file(nf.clone()).await.unwrap();
    assert_eq!(store.get_file(WS, &nf.id).await.unwrap(), None);
    let listed = store.list_files(WS, None, None, 10, true).await.unwrap();
    assert!(listed.files.is_empty());
    let pieces = [
        vec![b'a'; FILE_CHUNK_BYTES],
        b"{\"x\":1}\n".to_vec(),
        vec![0, 255, 10],
    ];
    for (seq, piece) in pieces.iter().enumerate() {
        store
            .append_file(&d, seq as u32, piece.clone())
            .await
            .unwrap();
    }
    let total: u64 = pieces.iter().map(|p| p.len() as u64).sum();
    let f = store.commit_file(d, total).await.unwrap();
    assert_eq!(
        (&f.id, f.workspace.as_str(), f.purpose.as_str()),
        (&nf.id, WS, "batch")
    );
    assert_eq!((f.filename.as_str(), f.bytes), ("input.jsonl", total));
    assert_eq!((f.created_at, f.expires_at), (at(1), Some(at(DAY))));
    assert_eq!(store.get_file(WS, &nf.id).await.unwrap(), Some(f.clone()));
    assert_eq!(store.get_file("other", &nf.id).await.unwrap(), None);
    for (seq, piece) in pieces.iter().enumerate() {
        let read = store.file_chunk(f.key, seq as u32).await.unwrap();
        assert_eq!(read.as_ref(), Some(piece), "piece {seq}");
    }
    assert_eq!(store.file_chunk(f.key, 3).await.unwrap(), None);

    let d = store
        .begin_file(new_file(WS, "batch", at(2)))
        .await
        .unwrap();
    assert!(
        store
            .append_file(&d, 0, vec![0; FILE_CHUNK_BYTES + 1])
            .await
            .is_err()
    );
    store.append_file(&d, 0, b"ab".to_vec()).await.unwrap();
    store.append_file(&d, 2, b"cd".to_vec()).await.unwrap();
    assert!(
        store.commit_file(again(&d), 4).await.is_err(),
        "piece 1 is missing"
    );
    store.append_file(&d, 1, b"xy".to_vec()).await.unwrap();
    assert!(
        store.commit_file(again(&d), 5).await.is_err(),
        "6 bytes, not 5"
    );
    // A draft is committed with the purpose and expiry it holds then, not those it began with.
    let mut learned = again(&d);
    learned.file.purpose = "user_data".into();
    learned.file.expires_at = Some(at(DAY));
    let g = store.commit_file(learned, 6).await.unwrap();
    assert_eq!(
        (g.bytes, g.purpose.as_str(), g.expires_at),
        (6, "user_data", Some(at(DAY)))
    );
    assert_eq!(store.get_file(WS, &g.id).await.unwrap(), Some(g.clone()));
    assert!(store.append_file(&d, 3, b"z".to_vec()).await.is_err());
    assert!(store.commit_file(d, 6).await.is_err());

    let empty = store
        .begin_file(new_file(WS, "batch", at(3)))
        .await
        .unwrap();
    let e = store.commit_file(empty, 0).await.unwrap();
    assert_eq!(e.bytes, 0);
    assert_eq!(store.file_chunk(e.key, 0).await.unwrap(), None);
}

/// Files list newest first by default or oldest first, by workspace, optionally by purpose,
/// after a cursor that excludes itself; a cursor naming no file of the workspace gives nothing.
pub async fn files_list_in_either_order_by_purpose_after_a_cursor<H: Harness>(h: &H) {
    let store = h.open().await;
    let purposes = ["batch", "batch_output", "batch", "batch_output", "batch"];
    let mut f = Vec::new();
    for (i, purpose) in purposes.iter().enumerate() {
        f.push(
            write_file(&store, new_file(WS, purpose, at(i as i64 + 1)), 1)
                .await
                .id,
        );
    }
    let other = write_file(&store, new_file("other", "batch", at(3)), 1).await;
    let _draft = store
        .begin_file(new_file(WS, "batch", at(9)))
        .await
        .unwrap();
    let list = |purpose: Option<&'static str>, after: Option<FileId>, limit, desc| {
        let store = &store;
        async move {
            let page = store
                .list_files(WS, purpose, after.as_ref(), limit, desc)
                .await
                .unwrap();
            (file_ids(&page.files), page.has_more)
        }
    };
    let newest_first: Vec<FileId> = f.iter().rev().cloned().collect();
    assert_eq!(
        list(None, None, 10, true).await,
        (newest_first.clone(), false)
    );
    assert_eq!(
        list(None, None, 5, true).await,
        (newest_first.clone(), false)
    );
    assert_eq!(
        list(None, None, 2, true).await,
        (vec![f[4].clone(), f[3].clone()], true)
    );
    assert_eq!(
        list(None, Some(f[3].clone()), 2, true).await,
        (vec![f[2].clone(), f[1].clone()], true)
    );
    assert_eq!(
        list(None, Some(f[1].clone()), 2, true).await,
        (vec![f[0].clone()], false)
    );
    assert_eq!(list(None, None, 10, false).await, (f.clone(), false));
    assert_eq!(
        list(None, Some(f[2].clone()), 10, false).await,
        (vec![f[3].clone(), f[4].clone()], false)
    );
    assert_eq!(
        list(Some("batch"), None, 10, true).await,
        (vec![f[4].clone(), f[2].clone(), f[0].clone()], false)
    );
    assert_eq!(
        list(Some("batch"), Some(f[4].clone()), 1, true).await,
        (vec![f[2].clone()], true)
    );
    assert_eq!(
        list(Some("batch_output"), None, 10, false).await,
        (vec![f[1].clone(), f[3].clone()], false)
    );
    assert_eq!(
        list(None, Some(FileId::generate()), 10, true).await,
        (vec![], false)
    );
    assert_eq!(
        list(None, Some(other.id.clone()), 10, true).await,
        (vec![], false)
    );
    let theirs = store
        .list_files("other", None, None, 10, true)
        .await
        .unwrap();
    assert_eq!(file_ids(&theirs.files), vec![other.id]);
}

/// Deleting is immediate and once; aborted drafts and expired files go too; the purge reclaims
/// the chunks of all three within its limit, and keeps every other file's.
pub async fn deleted_aborted_and_expired_files_are_reclaimed<H: Harness>(h: &H) {
    let store = h.open().await;
    let keep = write_file(&store, new_file(WS, "batch", at(1)), 3).await;
    let deleted = write_file(&store, new_file(WS, "batch", at(2)), 2).await;
    let expiring = NewFile {
        expires_at: Some(at(100)),
        ..new_file(WS, "batch_output", at(3))
    };
    let expiring = write_file(&store, expiring, 2).await;
    let later = NewFile {
        expires_at: Some(at(300)),
        ..new_file(WS, "batch_output", at(4))
    };
    let later = write_file(&store, later, 1).await;
    let aborted = store
        .begin_file(new_file(WS, "batch", at(5)))
        .await
        .unwrap();
    store.append_file(&aborted, 0, b"a".to_vec()).await.unwrap();
    store.append_file(&aborted, 1, b"b".to_vec()).await.unwrap();
    store.abort_file(aborted).await.unwrap();
    assert_eq!(h.rows(&store, "file_chunks").await, 10);

    assert!(!store.delete_file("other", &deleted.id).await.unwrap());
    assert!(store.delete_file(WS, &deleted.id).await.unwrap());
    assert!(!store.delete_file(WS, &deleted.id).await.unwrap());
    assert_eq!(store.get_file(WS, &deleted.id).await.unwrap(), None);

    assert_eq!(store.expire_files(at(99), 10).await.unwrap(), 0);
    assert_eq!(store.expire_files(at(100), 10).await.unwrap(), 1);
    assert_eq!(store.expire_files(at(100), 10).await.unwrap(), 0);
    assert_eq!(store.get_file(WS, &expiring.id).await.unwrap(), None);
    assert_eq!(
        store.get_file(WS, &later.id).await.unwrap(),
        Some(later.clone())
    );
    let listed = store.list_files(WS, None, None, 10, true).await.unwrap();
    assert_eq!(
        file_ids(&listed.files),
        vec![later.id.clone(), keep.id.clone()]
    );

    assert!(store.purge_deleted(3).await.unwrap() <= 3);
    purge_all(&store).await;
    assert_eq!(h.rows(&store, "file_chunks").await, 4);
    assert_eq!(h.rows(&store, "files").await, 2);
    assert!(store.file_chunk(keep.key, 2).await.unwrap().is_some());
    assert!(store.file_chunk(later.key, 0).await.unwrap().is_some());

    // The expiry pass takes at most its limit.
    for i in 0..3 {
        let soon = NewFile {
            expires_at: Some(at(200 + i)),
            ..new_file(WS, "batch_output", at(6))
        };
        write_file(&store, soon, 1).await;
    }
    assert_eq!(store.expire_files(at(400), 2).await.unwrap(), 2);
    assert_eq!(store.expire_files(at(400), 10).await.unwrap(), 2);
    assert_eq!(
        store.get_file(WS, &keep.id).await.unwrap(),
        Some(keep.clone())
    );
}

/// File drafts of a process that stopped are never visible and their chunks are reclaimed.
pub async fn file_drafts_of_a_stopped_process_are_reclaimed<H: Harness>(h: &H) {
    let store = h.open().await;
    let nf = new_file(WS, "batch", at(1));
    let d = store.begin_file(nf.clone()).await.unwrap();
    store.append_file(&d, 0, b"left".to_vec()).await.unwrap();
    store.append_file(&d, 1, b"behind".to_vec()).await.unwrap();
    h.close(store).await;
    let store = h.open().await;
    assert_eq!(store.get_file(WS, &nf.id).await.unwrap(), None);
    purge_all(&store).await;
    assert_eq!(h.rows(&store, "file_chunks").await, 0);
    assert_eq!(h.rows(&store, "files").await, 0);
}

/// An ended OpenAI batch's file drafts become visible in the transaction that finalizes it, and
/// only then: a refused commit records nothing, a finalize that loses leaves them drafts (which
/// the purge reclaims once their process is gone), and a claim is for unfinalized batches only.
pub async fn finalize_commits_the_batch_files_with_it<H: Harness>(h: &H) {
    let store = h.open().await;
    let b = create_openai(&store, at(1), 1).await;
    assert!(!store.claim_finalize(b.key).await.unwrap(), "not ended yet");
    let items = claim(&store, 10, at(2)).await;
    store.cancel_batch(WS, &b.id, at(3)).await.unwrap();
    let back: Vec<Slot> = items.iter().map(WorkItem::slot).collect();
    store.release(&back).await.unwrap();
    store.finish_due(at(4)).await.unwrap();
    assert!(get(&store, &b).await.is_ended());
    assert!(store.claim_finalize(b.key).await.unwrap());
    assert!(
        store.claim_finalize(b.key).await.unwrap(),
        "held by this process"
    );

    let output = new_file(WS, "batch_output", at(5));
    let errors = new_file(WS, "batch_output", at(5));
    let out = store.begin_file(output.clone()).await.unwrap();
    store.append_file(&out, 0, b"out\n".to_vec()).await.unwrap();
    let err = store.begin_file(errors.clone()).await.unwrap();
    store.append_file(&err, 0, b"err\n".to_vec()).await.unwrap();
    let mut written = meta();
    written.output_file_id = Some(output.id.clone());
    written.error_file_id = Some(errors.id.clone());
    // A draft whose bytes do not add up refuses the whole finalize.
    assert!(
        store
            .finalize(b.key, &written, &[(&out, 4), (&err, 5)], at(6))
            .await
            .is_err()
    );
    assert_eq!(get(&store, &b).await.finalized_at, None);
    assert_eq!(store.get_file(WS, &output.id).await.unwrap(), None);
    assert!(
        store
            .finalize(b.key, &written, &[(&out, 4), (&err, 4)], at(6))
            .await
            .unwrap()
    );
    let f = get(&store, &b).await;
    assert!(f.finalized_at.is_some());
    assert_eq!(f.openai, Some(written.clone()));
    for (id, bytes) in [(&output.id, 4), (&errors.id, 4)] {
        let file = store.get_file(WS, id).await.unwrap().expect("visible");
        assert_eq!(file.bytes, bytes);
    }
    assert!(!store.claim_finalize(b.key).await.unwrap(), "finalized");

    // A finalize that loses commits nothing: its draft stays invisible and is reclaimed.
    let late = new_file(WS, "batch_output", at(7));
    let d = store.begin_file(late.clone()).await.unwrap();
    store.append_file(&d, 0, b"late\n".to_vec()).await.unwrap();
    let mut other = meta();
    other.output_file_id = Some(late.id.clone());
    assert!(
        !store
            .finalize(b.key, &other, &[(&d, 5)], at(8))
            .await
            .unwrap()
    );
    assert_eq!(store.get_file(WS, &late.id).await.unwrap(), None);
    assert_eq!(get(&store, &b).await.openai, Some(written));
    h.close(store).await;
    let store = h.open().await;
    purge_all(&store).await;
    assert_eq!(store.get_file(WS, &late.id).await.unwrap(), None);
    assert_eq!(h.rows(&store, "files").await, 2);
    assert_eq!(h.rows(&store, "file_chunks").await, 2);
}

/// A page of results is cut at the row that reaches its byte budget (at least one row, and a
/// short page is not the end), so the finalizer's pages stay bounded whatever the results weigh.
pub async fn result_pages_are_cut_by_bytes<H: Harness>(h: &H) {
    let store = h.open().await;
    let b = create_openai(&store, at(1), 5).await;
    let items = claim(&store, 10, at(2)).await;
    store
        .record(&answers(&items, Outcome::Succeeded), at(3))
        .await
        .unwrap();
    let all = store.results_page(b.key, None, 10).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.iter().all(|r| r.body.is_some()));
    let indices = |rows: Vec<ResultRow>| rows.iter().map(|r| r.index).collect::<Vec<_>>();
    let two = all[0].bytes() + all[1].bytes();
    let page = |after, max| store.results_page_within(b.key, after, 10, max);
    assert_eq!(indices(page(None, two).await.unwrap()), [0, 1]);
    assert_eq!(indices(page(None, two + 1).await.unwrap()), [0, 1, 2]);
    assert_eq!(indices(page(Some(2), 1).await.unwrap()), [3]);
    assert_eq!(indices(page(Some(3), usize::MAX).await.unwrap()), [4]);
    assert!(page(Some(4), 1).await.unwrap().is_empty());
}

/// Paging with `after` a file deleted or expired since goes on from where it stood, also once
/// the purge has reclaimed it; another workspace's deleted file names no position.
pub async fn files_list_after_a_deleted_or_expired_file<H: Harness>(h: &H) {
    let store = h.open().await;
    let mut f = Vec::new();
    for i in 0..4 {
        let mut nf = new_file(WS, "batch", at(i + 1));
        if i == 1 {
            nf.expires_at = Some(at(10));
        }
        f.push(write_file(&store, nf, 1).await.id);
    }
    let list = |after: FileId, desc| {
        let store = &store;
        async move {
            let page = store
                .list_files(WS, None, Some(&after), 10, desc)
                .await
                .unwrap();
            file_ids(&page.files)
        }
    };
    assert!(store.delete_file(WS, &f[0]).await.unwrap());
    assert_eq!(store.expire_files(at(10), 10).await.unwrap(), 1);
    for _ in 0..2 {
        assert_eq!(
            list(f[0].clone(), false).await,
            [f[2].clone(), f[3].clone()]
        );
        assert_eq!(
            list(f[1].clone(), false).await,
            [f[2].clone(), f[3].clone()]
        );
        assert_eq!(list(f[1].clone(), true).await, Vec::<FileId>::new());
        assert_eq!(list(f[3].clone(), true).await, [f[2].clone()]);
        // Deleting again changes nothing; then the same once the rows are reclaimed.
        assert!(!store.delete_file(WS, &f[0]).await.unwrap());
        purge_all(&store).await;
    }
    let page = store
        .list_files("other", None, Some(&f[0]), 10, false)
        .await
        .unwrap();
    assert!(page.files.is_empty());
}

/// An OpenAI batch's requests may point into its input file instead of holding their bodies: a
/// claim reads each body back (one spanning two pieces too, and a released one again), also
/// after the file was deleted; the purge keeps the file's pieces until the batch is finalized,
/// then reclaims them.
pub async fn requests_read_their_bodies_from_the_input_file<H: Harness>(h: &H) {
    let store = h.open().await;
    // Two whole pieces and a short last one, as an upload cuts them.
    let size = FILE_CHUNK_BYTES;
    let mut bytes = vec![b' '; 2 * size + 100];
    let bodies = [
        (0, r#"{"n":0}"#),
        (size - 4, r#"{"n":"across two pieces"}"#),
        (2 * size + 10, r#"{"n":2}"#),
    ];
    for (at, body) in bodies {
        bytes[at..at + body.len()].copy_from_slice(body.as_bytes());
    }
    let file = store
        .begin_file(new_file(WS, "batch", at(1)))
        .await
        .unwrap();
    for (seq, piece) in bytes.chunks(size).enumerate() {
        store
            .append_file(&file, seq as u32, piece.to_vec())
            .await
            .unwrap();
    }
    let file = store.commit_file(file, bytes.len() as u64).await.unwrap();
    let d = store.begin_batch(openai_batch(WS, at(2))).await.unwrap();
    let requests = bodies
        .iter()
        .enumerate()
        .map(|(i, (at, body))| NewRequest {
            index: i as u32,
            custom_id: CustomId::parse(&format!("req-{i}")).unwrap(),
            params: String::new(),
            source: Some(BodySource {
                file_key: file.key,
                at: *at as u64,
                len: body.len() as u32,
            }),
        })
        .collect();
    store.append_requests(&d, requests).await.unwrap();
    let batch = store.commit_batch(d, 3).await.unwrap();

    // Deleted mid-batch: gone from the API at once, its pieces kept for the batch.
    assert!(store.delete_file(WS, &file.id).await.unwrap());
    assert_eq!(store.get_file(WS, &file.id).await.unwrap(), None);
    purge_all(&store).await;
    assert_eq!(h.rows(&store, "file_chunks").await, 3);

    let expected: Vec<(u32, String)> = bodies
        .iter()
        .enumerate()
        .map(|(i, (_, body))| (i as u32, (*body).to_owned()))
        .collect();
    let bodies_of = |items: &[WorkItem]| {
        let mut got: Vec<(u32, String)> =
            items.iter().map(|w| (w.index, w.params.clone())).collect();
        got.sort();
        got
    };
    let items = claim(&store, 10, at(3)).await;
    assert_eq!(bodies_of(&items), expected);
    let across = items.iter().find(|w| w.index == 1).unwrap().slot();
    store.release(&[across]).await.unwrap();
    let again = claim(&store, 10, at(4)).await;
    assert_eq!(bodies_of(&again), expected[1..2].to_vec());

    store
        .record(&answers(&items, Outcome::Succeeded), at(5))
        .await
        .unwrap();
    assert!(get(&store, &batch).await.is_ended());
    // Ended is not enough: the finalizer may still read the batch.
    purge_all(&store).await;
    assert_eq!(h.rows(&store, "file_chunks").await, 3);
    assert!(
        store
            .finalize(batch.key, &meta(), &[], at(6))
            .await
            .unwrap()
    );
    purge_all(&store).await;
    assert_eq!(h.rows(&store, "file_chunks").await, 0);
    assert_eq!(store.file_chunk(file.key, 0).await.unwrap(), None);
}

/// A workspace's reset removes its batches whose requests point into a file as it removes any
/// other: the file's pieces are reclaimed with them, finalized or not.
pub async fn a_reset_reclaims_the_input_file_of_its_batches<H: Harness>(h: &H) {
    let store = h.open().await;
    let file = write_file(&store, new_file(WS, "batch", at(1)), 1).await;
    let d = store.begin_batch(openai_batch(WS, at(2))).await.unwrap();
    let request = NewRequest {
        index: 0,
        custom_id: CustomId::parse("req-0").unwrap(),
        params: String::new(),
        source: Some(BodySource {
            file_key: file.key,
            at: 0,
            len: u32::try_from(file.bytes).unwrap() - 1,
        }),
    };
    store.append_requests(&d, vec![request]).await.unwrap();
    store.commit_batch(d, 1).await.unwrap();
    let items = claim(&store, 10, at(3)).await;
    assert_eq!(items[0].params, r#"{"piece":0}"#);
    store.release(&[items[0].slot()]).await.unwrap();

    crate::ClockStore::reset_workspace(&store, WS, at(4))
        .await
        .unwrap();
    purge_all(&store).await;
    assert_eq!(h.rows(&store, "requests").await, 0);
    assert_eq!(h.rows(&store, "file_chunks").await, 0);
    assert_eq!(h.rows(&store, "files").await, 0);
}
