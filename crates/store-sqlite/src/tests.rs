//! Tests of the SQLite store: the engine-agnostic contract suite (`batchd_store::conformance`)
//! on a temporary data dir per test, then what is particular to this engine (the data-dir lock,
//! query plans, throughput).

use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use batchd_domain::keys::KeyHash;
use batchd_domain::openai::{Endpoint, Surface};
use batchd_domain::{BatchId, CustomId, EndReason, Outcome, Timestamp};
use batchd_store::conformance::Harness;
use batchd_store::{
    Answer, BatchStore, Cursor, DispatchStore, Draft, KeyStore, NewBatch, NewRequest, StoreError,
    WorkItem,
};
use tempfile::TempDir;

use crate::SqliteStore;

/// One temporary data dir per test.
struct Sqlite(TempDir);

#[async_trait]
impl Harness for Sqlite {
    type Store = SqliteStore;

    async fn open(&self) -> SqliteStore {
        open(self.0.path()).await
    }

    async fn close(&self, store: SqliteStore) {
        store.close().await;
    }

    async fn rows(&self, store: &SqliteStore, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&store.pools.reader)
            .await
            .unwrap()
    }
}

batchd_store::conformance_tests!(async { Some(Sqlite(TempDir::new().unwrap())) });

const WS: &str = "default";
/// A fixed clock: tests pass times explicitly.
const T0: i64 = 1_700_000_000_000_000;
const DAY: i64 = 86_400_000_000;

fn at(offset: i64) -> Timestamp {
    Timestamp::from_micros(T0 + offset)
}

async fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir).await.expect("open store")
}

fn new_batch(workspace: &str, created_at: Timestamp) -> NewBatch {
    NewBatch {
        id: BatchId::generate(),
        workspace: workspace.to_owned(),
        created_at,
        expires_at: created_at.plus(Duration::from_micros(DAY as u64)),
        betas: vec![],
        api_version: batchd_domain::ApiVersion::default(),
        user_profile_id: None,
        endpoint: batchd_domain::openai::Endpoint::Messages,
        openai: None,
    }
}

async fn draft(store: &SqliteStore, nb: NewBatch, n: u32) -> Draft {
    let draft = store.begin_batch(nb).await.unwrap();
    let requests = (0..n)
        .map(|index| NewRequest {
            index,
            custom_id: CustomId::parse(&format!("req-{index}")).unwrap(),
            params: "{}".into(),
            source: None,
        })
        .collect();
    store.append_requests(&draft, requests).await.unwrap();
    draft
}

async fn claim(store: &SqliteStore, limit: usize, now: Timestamp) -> Vec<WorkItem> {
    store.claim(limit, now, &[]).await.unwrap()
}

#[tokio::test]
async fn a_second_server_on_the_same_dir_is_refused() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    // A create in flight on the server…
    let live = draft(&store, new_batch(WS, at(0)), 3).await;
    let err = SqliteStore::open(dir.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)));
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "data dir {} is in use by another batchd process",
            dir.path().display()
        )),
        "{msg}"
    );
    // Key commands still work beside the server, and the server sees their keys.
    let admin = SqliteStore::open_for_admin(dir.path()).await.unwrap();
    admin
        .create_key("ops", KeyHash::of("sk-admin"), "sk-admin…", at(0))
        .await
        .unwrap();
    assert_eq!(
        store
            .workspace_for_key(&KeyHash::of("sk-admin"))
            .await
            .unwrap()
            .as_deref(),
        Some("ops")
    );
    admin.close().await;
    // …survives both the refused server and the key command.
    store.commit_batch(live, 3).await.unwrap();
    store.close().await;
    drop(store);
    let again = open(dir.path()).await;
    assert_eq!(again.list_keys().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput measurement; run in release"]
async fn throughput() {
    const N: u32 = 100_000;
    const CHUNK: u32 = 1_000;
    const GROUP: usize = 512;
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let params = format!(
        r#"{{"model":"m","max_tokens":1024,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2_430)
    );
    assert!((2_400..2_600).contains(&params.len()));

    let started = Instant::now();
    let d = store.begin_batch(new_batch(WS, at(0))).await.unwrap();
    let mut start = 0;
    while start < N {
        let end = (start + CHUNK).min(N);
        let chunk = (start..end)
            .map(|i| NewRequest {
                index: i,
                custom_id: CustomId::parse(&format!("req-{i}")).unwrap(),
                params: params.clone(),
                source: None,
            })
            .collect();
        store.append_requests(&d, chunk).await.unwrap();
        start = end;
    }
    let b = store.commit_batch(d, u64::from(N)).await.unwrap();
    let append = started.elapsed();
    println!(
        "append: {N} requests of {} B in {:.3} s = {:.0} rows/s",
        params.len(),
        append.as_secs_f64(),
        f64::from(N) / append.as_secs_f64()
    );

    let started = Instant::now();
    let mut claimed = Vec::with_capacity(N as usize);
    loop {
        let items = claim(&store, 512, at(1)).await;
        if items.is_empty() {
            break;
        }
        claimed.extend(items);
    }
    let claim_time = started.elapsed();
    assert_eq!(claimed.len(), N as usize);
    println!(
        "claim: {N} in {:.3} s = {:.0} rows/s",
        claim_time.as_secs_f64(),
        f64::from(N) / claim_time.as_secs_f64()
    );

    let body = format!(
        r#"{{"type":"succeeded","message":{{"content":"{}"}}}}"#,
        "y".repeat(360)
    );
    let started = Instant::now();
    let mut ended = Vec::new();
    // The last group stays unanswered for the restart measurement below.
    let (claimed, last) = claimed.split_at(claimed.len() - GROUP);
    for group in claimed.chunks(GROUP) {
        let answers: Vec<Answer> = group
            .iter()
            .map(|w| w.answer(Outcome::Succeeded, body.clone()))
            .collect();
        ended.extend(store.record(&answers, at(2)).await.unwrap().batches);
    }
    let record = started.elapsed();
    let recorded = claimed.len() as f64;
    println!(
        "record: {recorded} answers of {} B in groups of {GROUP} in {:.3} s = {:.0} rows/s",
        body.len(),
        record.as_secs_f64(),
        recorded / record.as_secs_f64()
    );
    assert!(ended.is_empty());

    // After a restart every cursor is back at 0: the claim must get past the answered requests.
    store.close().await;
    drop(store);
    let store = open(dir.path()).await;
    let started = Instant::now();
    let resumed = claim(&store, GROUP, at(1)).await;
    println!(
        "first claim after a restart, behind {recorded} answered requests: {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let expected: Vec<u32> = last.iter().map(|w| w.index).collect();
    assert_eq!(
        resumed.iter().map(|w| w.index).collect::<Vec<_>>(),
        expected
    );
    let answers: Vec<Answer> = resumed
        .iter()
        .map(|w| w.answer(Outcome::Succeeded, body.clone()))
        .collect();
    let ended = store.record(&answers, at(2)).await.unwrap().batches;
    assert_eq!(ended, vec![(b.id.clone(), EndReason::Completed)]);

    let started = Instant::now();
    let mut after = None;
    let mut read = 0;
    loop {
        let page = store.results_page(b.key, after, 1_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.index);
        read += page.len();
    }
    let download = started.elapsed();
    assert_eq!(read, N as usize);
    println!(
        "results download: {N} rows in {:.3} s = {:.0} rows/s",
        download.as_secs_f64(),
        f64::from(N) / download.as_secs_f64()
    );
}

/// How long re-running the whole of a 100,000-request batch takes in this engine (see
/// `batchd_store::conformance::rerun_timing`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release"]
async fn rerun_time() {
    let dir = TempDir::new().unwrap();
    batchd_store::conformance::rerun_timing(&Sqlite(dir)).await;
}

/// Every hot query must be an index or rowid-range search: a full scan of `batches` or
/// `requests`, or a sort, would not show in small tests but would at scale.
#[tokio::test]
async fn hot_queries_use_indexes() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let mut pages = vec![
        format!("{} 128", crate::download::WITH_UNANSWERED),
        format!("{} 128", crate::download::ANSWERED),
        format!("{} 128", crate::batches::RESULTS_PAGE),
        batchd_store::files::cursor_sql(|n| format!("?{n}")),
    ];
    for purpose in [false, true] {
        for after in [false, true] {
            for order_desc in [false, true] {
                let listing = batchd_store::files::Listing {
                    purpose,
                    after,
                    order_desc,
                };
                pages.push(batchd_store::files::list_sql(listing, |n| format!("?{n}")));
            }
        }
    }
    let mut consts = vec![
        crate::batches::GET,
        crate::batches::UNFINALIZED,
        crate::batches::FINALIZE,
        crate::file_store::GET_FILE,
        crate::download::PIECE,
        crate::file_store::EXPIRE_FILES,
        crate::maintenance::OLDEST_DELETED_FILE,
        crate::maintenance::PURGE_CHUNKS,
        crate::claim::CLAIM_FRESH,
        crate::claim::CLAIM_RELEASED,
        crate::claim::UNENDED,
        crate::record::RECORD_BATCH,
        crate::record::RECORD_TALLY,
        crate::maintenance::NEXT_EXPIRY,
        crate::batches::STATS,
        crate::batches::QUEUED,
        crate::maintenance::EXPIRE_DUE,
        crate::maintenance::CANCELING_BATCHES,
        crate::maintenance::OLDEST_DELETED,
        crate::maintenance::OLDEST_ARCHIVED,
        crate::maintenance::ARCHIVE_DUE,
        crate::maintenance::PURGE_REQUESTS,
        crate::maintenance::PURGE_RESULTS,
        crate::keys::WORKSPACE_FOR_KEY,
    ];
    for list in [
        &crate::batches::LIST_ANTHROPIC,
        &crate::batches::LIST_OPENAI,
    ] {
        consts.extend([
            list.start,
            list.older,
            list.newer,
            list.between,
            list.cursor,
        ]);
    }
    // Each surface's list reads its own index, and finalizing finds its batches without
    // walking the ended ones.
    for (sql, index) in [
        (
            crate::batches::LIST_ANTHROPIC.older,
            "batches_list_anthropic",
        ),
        (crate::batches::LIST_OPENAI.older, "batches_list_openai"),
        (crate::batches::UNFINALIZED, "batches_unfinalized"),
    ] {
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&store.pools.reader)
                .await
                .unwrap();
        assert!(
            plan.iter().any(|(.., step)| step.contains(index)),
            "{sql}\n{plan:?}"
        );
    }
    // The queue cap's count reads the workspace's in-progress batches only.
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {}",
        crate::batches::QUEUED
    )))
    .fetch_all(&store.pools.reader)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|(.., step)| step.contains("batches_queue")),
        "{plan:?}"
    );
    for sql in consts.into_iter().chain(pages.iter().map(String::as_str)) {
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&store.pools.reader)
                .await
                .unwrap();
        for (_, _, _, step) in &plan {
            // Walking all of `batches_unfinalized` is reading only the few batches between
            // ending and finalizing.
            // `clocks` holds a row per workspace whose clock test mode moved: a handful.
            let full_scan = step.starts_with("SCAN ")
                && !step.contains("json_each")
                && step != "SCAN clocks"
                && !step.contains("USING INDEX batches_unfinalized");
            assert!(
                !full_scan && !step.contains("TEMP B-TREE"),
                "{sql}\n  uses {step}"
            );
        }
    }
}

/// Result rows recorded before results kept their `custom_id` (migration 0003) still download
/// with it, through the results-only page.
#[tokio::test]
async fn results_recorded_without_their_custom_id_still_download_with_it() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let d = draft(&store, new_batch(WS, at(0)), 3).await;
    let b = store.commit_batch(d, 3).await.unwrap();
    let items = claim(&store, 3, at(1)).await;
    let answers: Vec<Answer> = items
        .iter()
        .map(|w| w.answer(Outcome::Succeeded, format!("{{\"i\":{}}}", w.index)))
        .collect();
    store.record(&answers, at(2)).await.unwrap();
    let mut writer = store
        .pools
        .writer(crate::db::Durability::Normal)
        .await
        .unwrap();
    let old = sqlx::query("UPDATE results SET custom_id = NULL WHERE rid % 2 = 0")
        .execute(&mut *writer)
        .await
        .unwrap();
    drop(writer);
    assert_eq!(old.rows_affected(), 2);
    let page = store.results_lines(b.key, None, 10, None).await.unwrap();
    let text = String::from_utf8(page.expect("a page").lines).unwrap();
    let expected: String = (0..3)
        .map(|i| format!("{{\"custom_id\":\"req-{i}\",\"result\":{{\"i\":{i}}}}}\n"))
        .collect();
    assert_eq!(text, expected);
}

/// A download page asked for after the store closed fails cleanly; the close did not wait for
/// anything (no page was being read).
#[tokio::test]
async fn pages_after_close_are_refused() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let d = draft(&store, new_batch(WS, at(0)), 2).await;
    let b = store.commit_batch(d, 2).await.unwrap();
    let page = store.results_lines(b.key, None, 10, Some("{}")).await;
    assert_eq!(page.unwrap().expect("two unanswered lines").rows, 2);
    store.close().await;
    let err = store.results_lines(b.key, None, 10, Some("{}")).await;
    assert!(matches!(err, Err(StoreError::Unavailable(_))), "{err:?}");
}

/// Batches an older batchd stored, before the OpenAI surface existed, read back, list and are
/// claimed as Anthropic batches once the schema is migrated.
#[tokio::test]
async fn batches_stored_before_the_openai_surface_are_anthropic() {
    let dir = TempDir::new().unwrap();
    let pools = crate::db::Pools::open(dir.path(), false).await.unwrap();
    crate::db::migrator_through(5)
        .run(&pools.writer)
        .await
        .unwrap();
    let key: i64 = sqlx::query_scalar(
        "INSERT INTO batches (id, workspace, state, total, created_at, expires_at) \
         VALUES ('msgbatch_01old', ?1, 1, 1, ?2, ?3) RETURNING key",
    )
    .bind(WS)
    .bind(at(0).as_micros())
    .bind(at(DAY).as_micros())
    .fetch_one(&pools.writer)
    .await
    .unwrap();
    sqlx::query("INSERT INTO requests (rid, custom_id, params) VALUES (?1, 'req-0', '{}')")
        .bind(crate::rows::rid(key, 0))
        .execute(&pools.writer)
        .await
        .unwrap();
    pools.close().await;

    let store = open(dir.path()).await;
    let id = BatchId::parse("msgbatch_01old").unwrap();
    let b = store
        .get_batch(WS, &id)
        .await
        .unwrap()
        .expect("still there");
    assert_eq!(
        (b.endpoint, b.openai, b.finalized_at),
        (Endpoint::Messages, None, None)
    );
    let listed = |surface| store.list_batches(WS, surface, Cursor::Start, 10);
    assert_eq!(listed(Surface::Anthropic).await.unwrap().batches.len(), 1);
    assert!(listed(Surface::OpenAi).await.unwrap().batches.is_empty());
    let items = claim(&store, 10, at(1)).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].endpoint, Endpoint::Messages);
    assert!(store.unfinalized(10).await.unwrap().is_empty());
}

/// A claim asked for after the store closed fails as unavailable, without opening a connection
/// that would outlive the store (the writer, which closes last, checkpoints the WAL).
#[tokio::test]
async fn claims_after_close_are_refused() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let d = draft(&store, new_batch(WS, at(0)), 4).await;
    store.commit_batch(d, 4).await.unwrap();
    assert_eq!(claim(&store, 2, at(1)).await.len(), 2);
    store.close().await;
    let err = store.claim(2, at(1), &[]).await;
    assert!(matches!(err, Err(StoreError::Unavailable(_))), "{err:?}");
}

/// The checkpointer skips its passes while the WAL is as a pass that copied all of it left it
/// (an idle server), and runs them again after the next write, which reaches the database file
/// without waiting for a close (the writer's own checkpoint is only a backstop, far above this
/// write's few pages).
#[tokio::test]
async fn checkpoints_pause_while_idle_and_resume_after_a_write() {
    use crate::checkpoint::INTERVAL;
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let passes = || store.pools.checkpoint_passes().expect("a checkpointer");
    let db = dir.path().join(crate::db::DB_FILE);
    let stamp = || {
        let meta = std::fs::metadata(&db).unwrap();
        (meta.len(), meta.modified().unwrap())
    };
    // Idle: once a pass has copied what the open wrote, passes stop. Paused means none begun
    // over several intervals and none in progress (a slow pass could still write the file).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (before, idle) = (passes(), stamp());
        tokio::time::sleep(INTERVAL * 6).await;
        if before.0 == before.1 && passes() == before {
            assert_eq!(stamp(), idle, "nothing to copy while idle");
            break;
        }
        assert!(Instant::now() < deadline, "passes never paused");
    }
    let (paused, idle) = (passes(), stamp());
    draft(&store, new_batch(WS, at(0)), 50).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while stamp() == idle {
        assert!(
            Instant::now() < deadline,
            "the write never reached the database file"
        );
        tokio::time::sleep(INTERVAL).await;
    }
    assert!(passes().1 > paused.1, "a pass after the write copied it");
    store.close().await;
}
