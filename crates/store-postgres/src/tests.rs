//! Tests of the PostgreSQL store: the engine-agnostic contract suite (`batchd_store::conformance`)
//! on a fresh database per test, then what is particular to this engine: several processes on
//! one database, reaping dead ones, exact request bytes, and query plans. Every test is skipped
//! (saying so) unless `BATCHD_TEST_DATABASE_URL` names a server.

use std::collections::HashSet;

use async_trait::async_trait;
use batchd_domain::keys::KeyHash;
use batchd_domain::openai::{Endpoint, Surface};
use batchd_domain::{Batch, BatchId, CustomId, EndReason, Outcome, Timestamp};
use batchd_store::conformance::Harness;
use batchd_store::{
    Answer, BatchStore, Cursor, DispatchStore, Draft, KeyStore, NewBatch, NewRequest, WorkItem,
};

use crate::PostgresStore;
use crate::testkit::fresh_database;

/// One fresh database per test.
struct Postgres(String);

impl Postgres {
    async fn new(test: &str) -> Option<Self> {
        fresh_database(test).await.map(Self)
    }
}

#[async_trait]
impl Harness for Postgres {
    type Store = PostgresStore;

    async fn open(&self) -> PostgresStore {
        PostgresStore::open(&self.0).await.expect("open store")
    }

    async fn close(&self, store: PostgresStore) {
        store.close().await;
    }

    async fn rows(&self, store: &PostgresStore, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }
}

batchd_store::conformance_tests!(Postgres::new("the PostgreSQL conformance suite"));

/// How long re-running the whole of a 100,000-request batch takes in this engine (see
/// `batchd_store::conformance::rerun_timing`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release"]
async fn rerun_time() {
    if let Some(h) = Postgres::new("rerun_time").await {
        batchd_store::conformance::rerun_timing(&h).await;
    }
}

const WS: &str = "default";
const T0: i64 = 1_700_000_000_000_000;
const DAY: i64 = 86_400_000_000;

fn at(offset: i64) -> Timestamp {
    Timestamp::from_micros(T0 + offset)
}

fn new_batch() -> NewBatch {
    NewBatch {
        id: BatchId::generate(),
        workspace: WS.into(),
        created_at: at(0),
        expires_at: at(DAY),
        betas: vec![],
        api_version: batchd_domain::ApiVersion::default(),
        user_profile_id: None,
        endpoint: batchd_domain::openai::Endpoint::Messages,
        openai: None,
    }
}

/// A draft of `n` requests, the params of each `params(index)`.
async fn draft(store: &PostgresStore, params: impl Fn(u32) -> String, n: u32) -> Draft {
    let draft = store.begin_batch(new_batch()).await.unwrap();
    let requests = (0..n)
        .map(|index| NewRequest {
            index,
            custom_id: CustomId::parse(&format!("req-{index}")).unwrap(),
            params: params(index),
            source: None,
        })
        .collect();
    store.append_requests(&draft, requests).await.unwrap();
    draft
}

async fn create(store: &PostgresStore, params: impl Fn(u32) -> String, n: u32) -> Batch {
    let draft = draft(store, params, n).await;
    store.commit_batch(draft, u64::from(n)).await.unwrap()
}

fn succeeded(items: &[WorkItem]) -> Vec<Answer> {
    items
        .iter()
        .map(|w| {
            w.answer(
                Outcome::Succeeded,
                format!(r#"{{"type":"succeeded","i":{}}}"#, w.index),
            )
        })
        .collect()
}

/// Makes `store`'s process look dead to the others (as after SIGKILL: no heartbeat any more).
async fn kill(store: PostgresStore) -> i64 {
    let me = store.worker.unwrap();
    if let Some(heartbeat) = &store.heartbeat {
        heartbeat.abort();
    }
    sqlx::query("UPDATE workers SET heartbeat = now() - interval '1 hour' WHERE id = $1")
        .bind(me)
        .execute(&store.pool)
        .await
        .unwrap();
    // Dropped without `close`: its claims stay in the database until someone reaps them.
    drop(store);
    me
}

#[tokio::test]
async fn processes_claim_disjoint_requests_and_complete_a_batch_together() {
    let Some(db) = Postgres::new("processes_claim_disjoint_requests…").await else {
        return;
    };
    let stores = [db.open().await, db.open().await, db.open().await];
    let b = create(&stores[0], |_| "{}".into(), 3_000).await;
    let mut seen = HashSet::new();
    let mut ended = Vec::new();
    loop {
        let (a, b, c) = tokio::join!(
            stores[0].claim(97, at(1), &[]),
            stores[1].claim(97, at(1), &[]),
            stores[2].claim(97, at(1), &[]),
        );
        let claims = [a, b, c];
        let mut any = false;
        for (store, items) in stores.iter().zip(claims) {
            let items = items.unwrap();
            any |= !items.is_empty();
            for w in &items {
                assert!(seen.insert(w.index), "request {} claimed twice", w.index);
            }
            ended.extend(
                store
                    .record(&succeeded(&items), at(2))
                    .await
                    .unwrap()
                    .batches,
            );
        }
        if !any {
            break;
        }
    }
    assert_eq!(seen.len(), 3_000);
    assert_eq!(ended, vec![(b.id.clone(), EndReason::Completed)]);
    let e = stores[1].get_batch(WS, &b.id).await.unwrap().unwrap();
    assert_eq!((e.succeeded, e.errored), (3_000, 0));
    assert_eq!(db.rows(&stores[2], "results").await, 3_000);
    assert_eq!(db.rows(&stores[2], "pending").await, 0);
}

/// Record groups of one batch from several processes at once queue on the batch row. With the
/// lock taken inside the record statement, a group that waited read the row from the statement's
/// older snapshot, and its tally update then needed the lock a third waiter held on that older
/// version: PostgreSQL found a deadlock after `deadlock_timeout` (1 s by default) and aborted a
/// group, which the recorder retried. Three processes at 0 ms upstream latency ran at half the
/// rate of one because of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_record_groups_of_one_batch_never_deadlock() {
    let Some(db) = Postgres::new("concurrent_record_groups…").await else {
        return;
    };
    // A deadlock would otherwise take a second to be found, each time (a superuser's setting:
    // where the test's role may not change it, the test is only slower).
    let quick = async {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.0).await?;
        let name: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut conn)
            .await?;
        let sql = format!("ALTER DATABASE \"{name}\" SET deadlock_timeout = '20ms'");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
    };
    if let Err(e) = quick.await {
        eprintln!("deadlock_timeout stays at its default: {e}");
    }
    let stores: Vec<_> = [db.open().await, db.open().await, db.open().await]
        .into_iter()
        .map(std::sync::Arc::new)
        .collect();
    let n = 2_400;
    let b = create(&stores[0], |_| "{}".into(), n).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, store) in stores.iter().cycle().take(6).enumerate() {
        let store = store.clone();
        tasks.spawn(async move {
            let mut recorded = 0;
            loop {
                let items = store.claim(8 + i, at(1), &[]).await.unwrap();
                if items.is_empty() {
                    return recorded;
                }
                store.record(&succeeded(&items), at(2)).await.unwrap();
                recorded += items.len();
            }
        });
    }
    let mut recorded = 0;
    while let Some(done) = tasks.join_next().await {
        recorded += done.expect("no record group failed");
    }
    assert_eq!(recorded, n as usize);
    let e = stores[1].get_batch(WS, &b.id).await.unwrap().unwrap();
    assert_eq!((e.succeeded, e.errored), (u64::from(n), 0));
}

#[tokio::test]
async fn a_dead_process_loses_its_claims_and_its_drafts() {
    let Some(db) = Postgres::new("a_dead_process_loses_its_claims…").await else {
        return;
    };
    let survivor = db.open().await;
    let doomed = db.open().await;
    let b = create(&doomed, |_| "{}".into(), 10).await;
    let draft = doomed.begin_batch(new_batch()).await.unwrap();
    let held = doomed.claim(4, at(1), &[]).await.unwrap();
    assert_eq!(held.len(), 4);
    // A late answer from the doomed process still counts once.
    doomed.record(&succeeded(&held[..1]), at(2)).await.unwrap();
    let rest = survivor.claim(100, at(3), &[]).await.unwrap();
    assert_eq!(rest.len(), 6, "live claims are not taken over");
    let doomed_id = kill(doomed).await;

    assert_eq!(
        crate::liveness::beat(&survivor.pool, survivor.worker.unwrap())
            .await
            .unwrap(),
        1
    );
    let taken_over = survivor.claim(100, at(4), &[]).await.unwrap();
    let indices: HashSet<u32> = taken_over.iter().map(|w| w.index).collect();
    let expected: HashSet<u32> = held[1..].iter().map(|w| w.index).collect();
    assert_eq!(indices, expected);
    let mut all = rest;
    all.extend(taken_over);
    let ended = survivor.record(&succeeded(&all), at(5)).await.unwrap();
    assert_eq!(ended.batches, vec![(b.id.clone(), EndReason::Completed)]);
    assert_eq!(db.rows(&survivor, "results").await, 10);

    // Its draft is abandoned and reclaimed; its worker row is gone.
    let draft_state: (bool,) = sqlx::query_as("SELECT deleted FROM batches WHERE key = $1")
        .bind(draft.key)
        .fetch_one(&survivor.pool)
        .await
        .unwrap();
    assert!(draft_state.0);
    let workers: Vec<i64> = sqlx::query_scalar("SELECT id FROM workers")
        .fetch_all(&survivor.pool)
        .await
        .unwrap();
    assert!(!workers.contains(&doomed_id));
}

#[tokio::test]
async fn a_cancel_on_one_process_is_seen_by_the_others() {
    let Some(db) = Postgres::new("a_cancel_on_one_process…").await else {
        return;
    };
    let a = db.open().await;
    let b = db.open().await;
    let batch = create(&a, |_| "{}".into(), 50).await;
    let held = b.claim(5, at(1), &[]).await.unwrap();
    assert_eq!(held.len(), 5);
    a.cancel_batch(WS, &batch.id, at(2)).await.unwrap();
    assert_eq!(b.canceling().await.unwrap(), vec![batch.key]);
    assert!(b.claim(10, at(3), &[]).await.unwrap().is_empty());
    // B still holds claims: no process may end it yet.
    assert!(a.finish_due(at(4)).await.unwrap().batches.is_empty());
    b.record(&succeeded(&held[..2]), at(5)).await.unwrap();
    let slots: Vec<_> = held[2..].iter().map(WorkItem::slot).collect();
    b.release(&slots).await.unwrap();
    let e = a.get_batch(WS, &batch.id).await.unwrap().unwrap();
    assert_eq!(e.end_reason, Some(EndReason::Canceled));
    assert_eq!(
        (e.request_counts().succeeded, e.request_counts().canceled),
        (2, 48)
    );
    assert!(a.canceling().await.unwrap().is_empty());
}

#[tokio::test]
async fn params_come_back_byte_for_byte() {
    let Some(db) = Postgres::new("params_come_back_byte_for_byte").await else {
        return;
    };
    let store = db.open().await;
    // Key order, spacing, number spelling and escapes that jsonb would normalise.
    let params = |i: u32| format!("{{\"z\":1.50,  \"a\":[1e3, {i}],\"s\":\"\\u00e9\"}}");
    create(&store, params, 3).await;
    let items = store.claim(10, at(1), &[]).await.unwrap();
    for w in &items {
        assert_eq!(w.params, params(w.index));
    }
}

/// Every hot statement must be answerable from an index: with sequential scans priced out, a
/// plan that still has one (or sorts a whole table) would crawl at a million batches.
#[tokio::test]
async fn hot_queries_use_indexes() {
    let Some(db) = Postgres::new("hot_queries_use_indexes").await else {
        return;
    };
    let store = db.open().await;
    let mut conn = store.pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut statements: Vec<(&str, &str)> = vec![
        (crate::batches::GET, "('x', 'w')"),
        (crate::batches::UNFINALIZED, "(10)"),
        (crate::batches::FINALIZE, "('{}', 1, 1)"),
        (crate::file_store::GET_FILE, "('x', 'w')"),
        (crate::file_store::CHUNK, "(1, 0)"),
        (crate::file_store::EXPIRE_FILES, "(1, 10)"),
        (crate::maintenance::OLDEST_DELETED_FILE, ""),
        (crate::maintenance::PURGE_CHUNKS, "(1, 10)"),
        (crate::batches::RESULTS_PAGE, "(1, 0, 1000)"),
        (crate::claim::CLAIM_ALL, "(1, 10, 1, '{}')"),
        (
            crate::record::RECORD,
            "(1, '{1}', '{1}', '{0}', '{0}', '{\"{}\"}', '{1}', '{1}', 1, 0, 1, 1, 2)",
        ),
        (crate::record::END, "(3, 1, '{1}', '{0}')"),
        (crate::batches::ANSWERED_PAGE, "(1, 0, 1000)"),
        (
            crate::maintenance::EXPIRE_DUE,
            "(3::smallint, 3::smallint, 1)",
        ),
        (crate::maintenance::CANCELING_KEYS, ""),
        (crate::maintenance::NEXT_EXPIRY, ""),
        (crate::batches::STATS, ""),
        (crate::batches::QUEUED, "('w')"),
        (crate::maintenance::ARCHIVE_DUE, "(1, 1, 3::smallint)"),
        (crate::maintenance::OLDEST_DELETED, ""),
        (crate::maintenance::OLDEST_ARCHIVED, ""),
    ];
    for list in [
        &crate::batches::LIST_ANTHROPIC,
        &crate::batches::LIST_OPENAI,
    ] {
        statements.extend([
            (list.start, "('w', 10)"),
            (list.older, "('w', 1, 1, 10)"),
            (list.newer, "('w', 1, 1, 10)"),
            (list.between, "('w', 9, 9, 1, 1, 10)"),
            (list.cursor, "('x', 'w')"),
        ]);
    }
    let placeholder = |n: usize| format!("${n}");
    let cursor = batchd_store::files::cursor_sql(placeholder);
    statements.push((&cursor, "('x', 'w')"));
    let mut listings = Vec::new();
    for purpose in [false, true] {
        for after in [false, true] {
            for order_desc in [false, true] {
                let listing = batchd_store::files::Listing {
                    purpose,
                    after,
                    order_desc,
                };
                let args = match (purpose, after) {
                    (false, false) => "('w', 10)",
                    (true, false) => "('w', 'batch', 10)",
                    (false, true) => "('w', 1, 1, 10)",
                    (true, true) => "('w', 'batch', 1, 1, 10)",
                };
                listings.push((batchd_store::files::list_sql(listing, placeholder), args));
            }
        }
    }
    statements.extend(listings.iter().map(|(sql, args)| (sql.as_str(), *args)));
    // Statements the dispatcher runs in transactions begun with settings of their own
    // (`db::begin_claim`, `record::begin`) are checked again in such a transaction.
    let generic = [
        (crate::claim::CLAIM_ALL, crate::db::BEGIN_CLAIM),
        (crate::record::RECORD, crate::db::BEGIN_GENERIC),
    ]
    .map(|(generic, begin)| {
        let statement = statements
            .iter()
            .find(|(sql, _)| *sql == generic)
            .copied()
            .expect("listed above");
        (statement, begin)
    });
    for (i, ((sql, args), begin)) in statements
        .iter()
        .map(|statement| (*statement, None))
        .chain(generic.map(|(statement, begin)| (statement, Some(begin))))
        .enumerate()
    {
        let plan = match begin {
            None => plan_of(&mut conn, i, sql, args).await,
            Some(begin) => {
                let mut tx = sqlx::Connection::begin_with(&mut *conn, begin)
                    .await
                    .unwrap();
                let plan = plan_of(&mut tx, i, sql, args).await;
                tx.rollback().await.unwrap();
                plan
            }
        };
        assert!(
            !plan.contains("Seq Scan on batches")
                && !plan.contains("Seq Scan on requests")
                && !plan.contains("Seq Scan on results")
                && !plan.contains("Seq Scan on pending")
                && !plan.contains("Seq Scan on files")
                && !plan.contains("Seq Scan on file_chunks"),
            "{sql}\n{plan}"
        );
    }
}

/// `sql`'s plan for `args`: PREPARE + EXPLAIN EXECUTE plans the statement with its real parameter
/// types.
async fn plan_of(conn: &mut sqlx::PgConnection, i: usize, sql: &str, args: &str) -> String {
    sqlx::query(sqlx::AssertSqlSafe(format!("PREPARE hot{i} AS {sql}")))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let plan: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN EXECUTE hot{i}{args}")))
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    plan.join("\n")
}

/// The dispatcher's hot transactions plan generically (their statements' plans do not depend on
/// their parameters, and planning them anew cost more than running them), and only they do: the
/// setting ends with the transaction.
#[tokio::test]
async fn hot_transactions_plan_generically() {
    let Some(db) = Postgres::new("hot_transactions_plan_generically").await else {
        return;
    };
    let store = db.open().await;
    let mode = "SELECT current_setting('plan_cache_mode')";
    let mut conn = store.pool.acquire().await.unwrap();
    let mut tx = crate::db::begin_claim(&mut conn).await.unwrap();
    let during: String = sqlx::query_scalar(mode).fetch_one(&mut *tx).await.unwrap();
    assert_eq!(during, "force_generic_plan");
    let bitmaps: String = sqlx::query_scalar("SELECT current_setting('enable_bitmapscan')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(bitmaps, "off");
    tx.commit().await.unwrap();
    let after: String = sqlx::query_scalar(mode)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(after, "auto");
    // A record group's transaction too, which also locks its batches as it begins.
    let b = create(&store, |_| "{}".into(), 1).await;
    let mut tx = crate::record::begin(&mut conn, &[b.key, b.key + 1])
        .await
        .unwrap();
    let during: String = sqlx::query_scalar(mode).fetch_one(&mut *tx).await.unwrap();
    assert_eq!(during, "force_generic_plan");
    let other = sqlx::query("SELECT 1 FROM batches WHERE key = $1 FOR NO KEY UPDATE NOWAIT")
        .bind(b.key)
        .execute(&store.pool)
        .await;
    assert!(other.is_err(), "the batch row is locked from the start");
    tx.rollback().await.unwrap();
}

/// Request params, result bodies and file pieces are compressed with lz4 (migration 0014), not
/// pglz: the values a batch writes and reads back are large enough to be compressed.
#[tokio::test]
async fn large_values_are_compressed_with_lz4() {
    let Some(db) = Postgres::new("large_values_are_compressed_with_lz4").await else {
        return;
    };
    let store = db.open().await;
    let params = |i: u32| format!("{{\"i\":{i},\"text\":\"{}\"}}", "hello ".repeat(800));
    create(&store, params, 3).await;
    let items = store.claim(10, at(1), &[]).await.unwrap();
    let answers: Vec<Answer> = items
        .iter()
        .map(|w| {
            w.answer(
                Outcome::Succeeded,
                format!("{{\"text\":\"{}\"}}", "world ".repeat(800)),
            )
        })
        .collect();
    store.record(&answers, at(2)).await.unwrap();
    for (table, column) in [("requests", "params"), ("results", "body")] {
        let methods: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT pg_column_compression({column}) FROM {table}"
        )))
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(methods.len(), 3, "{table}");
        assert!(
            methods.iter().all(|m| m.as_deref() == Some("lz4")),
            "{table}: {methods:?}"
        );
    }
    let chunks: String = sqlx::query_scalar(
        "SELECT attcompression::text FROM pg_attribute \
         WHERE attrelid = 'file_chunks'::regclass AND attname = 'data'",
    )
    .fetch_one(&store.pool)
    .await
    .unwrap();
    assert_eq!(chunks, "l");
}

/// Servers starting together on an empty database make one first key between them.
#[tokio::test]
async fn processes_starting_together_create_one_first_key() {
    let Some(db) = Postgres::new("processes_starting_together_create_one_first_key").await else {
        return;
    };
    let stores = [db.open().await, db.open().await, db.open().await];
    let first = |i: usize| {
        let key = format!("sk-first-{i}");
        let store = &stores[i];
        async move {
            store
                .create_first_key("default", KeyHash::of(&key), "sk-first…", at(1))
                .await
                .unwrap()
        }
    };
    let (a, b, c) = tokio::join!(first(0), first(1), first(2));
    let created = [a, b, c].iter().filter(|k| k.is_some()).count();
    assert_eq!(created, 1, "exactly one process creates the first key");
    assert_eq!(stores[0].list_keys().await.unwrap().len(), 1);
}

/// Creates committing at once in several processes cannot together take a workspace over its
/// queue cap: their counts and commits are serialized per workspace.
#[tokio::test]
async fn concurrent_commits_do_not_overshoot_the_queue_cap() {
    let Some(db) = Postgres::new("concurrent_commits_do_not_overshoot_the_queue_cap").await else {
        return;
    };
    let stores = [db.open().await, db.open().await, db.open().await];
    let mut drafts = Vec::new();
    for i in 0..6 {
        let store = &stores[i % 3];
        drafts.push((store, draft(store, |_| "{}".into(), 3).await));
    }
    let mut commits = drafts
        .into_iter()
        .map(|(store, draft)| store.commit_batch_within(draft, 3, 10));
    let mut next = || commits.next().unwrap();
    let outcomes = tokio::join!(next(), next(), next(), next(), next(), next());
    let outcomes = [
        outcomes.0, outcomes.1, outcomes.2, outcomes.3, outcomes.4, outcomes.5,
    ];
    let committed = outcomes.iter().filter(|o| matches!(o, Ok(Ok(_)))).count();
    assert_eq!(
        committed, 3,
        "3 batches of 3 fit under a cap of 10, a fourth does not"
    );
    assert!(outcomes.iter().all(|o| o.is_ok()));
}

/// Batches an older batchd stored, before the OpenAI surface existed, read back, list and are
/// claimed as Anthropic batches once the schema is migrated.
#[tokio::test]
async fn batches_stored_before_the_openai_surface_are_anthropic() {
    let Some(db) = Postgres::new("batches_stored_before_the_openai_surface_are_anthropic").await
    else {
        return;
    };
    let pool = crate::db::connect(&db.0).await.unwrap();
    crate::db::migrator_through(4).run(&pool).await.unwrap();
    let key: i64 = sqlx::query_scalar(
        "INSERT INTO batches (id, workspace, state, total, created_at, expires_at) \
         VALUES ('msgbatch_01old', $1, 1, 1, $2, $3) RETURNING key",
    )
    .bind(WS)
    .bind(at(0).as_micros())
    .bind(at(DAY).as_micros())
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO requests (batch_key, idx, custom_id, params) VALUES ($1, 0, 'req-0', '{}')",
    )
    .bind(key)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO pending (batch_key, idx) VALUES ($1, 0)")
        .bind(key)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let store = db.open().await;
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
    let items = store.claim(10, at(1), &[]).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].endpoint, Endpoint::Messages);
    assert!(store.unfinalized(10).await.unwrap().is_empty());
}

/// Processes delivering from one database never hold one delivery at once: each claim skips
/// what another holds, so every due delivery is handed to exactly one of them.
#[tokio::test]
async fn processes_claim_disjoint_webhook_deliveries() {
    use batchd_store::WebhookStore;
    let Some(db) = Postgres::new("processes_claim_disjoint_webhook_deliveries").await else {
        return;
    };
    let stores = [db.open().await, db.open().await, db.open().await];
    let endpoint = stores[0]
        .create_endpoint(batchd_store::webhooks::NewEndpoint {
            id: "whep_x".into(),
            workspace: WS.into(),
            url: "https://example.com/x".into(),
            events: vec!["message_batch.ended".into()],
            description: None,
            secret: "whsec_x".into(),
            created_at: at(0),
        })
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO webhook_deliveries (event_id, endpoint_key, batch_key, event_at, created_at, \
         next_attempt_at) SELECT 'evt_' || g, $1, g, 0, 0, 0 FROM generate_series(1, 500) g",
    )
    .bind(endpoint.key)
    .execute(&stores[0].pool)
    .await
    .unwrap();
    let mut seen = HashSet::new();
    loop {
        let (a, b, c) = tokio::join!(
            stores[0].claim_deliveries("p0", 7, at(1), at(DAY)),
            stores[1].claim_deliveries("p1", 7, at(1), at(DAY)),
            stores[2].claim_deliveries("p2", 7, at(1), at(DAY)),
        );
        let mut any = false;
        for claimed in [a, b, c] {
            for d in claimed.unwrap() {
                any = true;
                assert!(seen.insert(d.key), "delivery {} claimed twice", d.key);
            }
        }
        if !any {
            break;
        }
    }
    assert_eq!(seen.len(), 500);
}

/// Of processes sharing the database, only one finalizes a batch: the others' claims are refused
/// while it lives, and the batch passes to the next to ask once it is dead.
#[tokio::test]
async fn one_process_finalizes_a_batch_until_it_dies() {
    let Some(db) = Postgres::new("one_process_finalizes_a_batch_until_it_dies").await else {
        return;
    };
    let first = db.open().await;
    let second = db.open().await;
    let nb = NewBatch {
        id: BatchId::generate_openai(at(0)),
        endpoint: Endpoint::ChatCompletions,
        openai: Some(batchd_domain::openai::OpenAiBatchMeta {
            input_file_id: "file-input".into(),
            completion_window: "24h".into(),
            metadata: None,
            output_expires_after: None,
            model: None,
            errors: Vec::new(),
            output_file_id: None,
            error_file_id: None,
            usage: None,
        }),
        ..new_batch()
    };
    let d = first.begin_batch(nb).await.unwrap();
    let request = NewRequest {
        index: 0,
        custom_id: CustomId::parse("only").unwrap(),
        params: "{}".into(),
        source: None,
    };
    first.append_requests(&d, vec![request]).await.unwrap();
    let b = first.commit_batch(d, 1).await.unwrap();
    let items = first.claim(10, at(1), &[]).await.unwrap();
    first.record(&succeeded(&items), at(2)).await.unwrap();

    assert!(first.claim_finalize(b.key).await.unwrap());
    assert!(
        !second.claim_finalize(b.key).await.unwrap(),
        "held by a live process"
    );
    assert!(first.claim_finalize(b.key).await.unwrap());
    kill(first).await;
    crate::liveness::beat(&second.pool, second.worker.unwrap())
        .await
        .unwrap();
    assert!(
        second.claim_finalize(b.key).await.unwrap(),
        "its holder is dead"
    );
    let meta = b.openai.clone().unwrap();
    assert!(second.finalize(b.key, &meta, &[], at(3)).await.unwrap());
    assert!(!second.claim_finalize(b.key).await.unwrap(), "finalized");
}
