//! The plans of the dispatcher's hot statements at 10,000,000 stored requests: an ignored test
//! that fills a fresh database straight in SQL (100 batches of 100,000 requests, half of them
//! ended with every result stored, half in progress with every request queued), then runs
//! `EXPLAIN (ANALYZE, BUFFERS)` on the claim, the record group and a download page as the code
//! issues them (the same constants, with bound parameters) and prints the plans.
//!
//! `BATCHD_TEST_DATABASE_URL=… cargo test --release -p batchd-store-postgres explain -- --ignored --nocapture`
//! (or `scripts/pg-explain.sh`, which starts a throwaway cluster). The plans' key lines are kept
//! in BENCHMARKS.md's PostgreSQL section.

use std::time::Instant;

use batchd_domain::{EndReason, Outcome};
use sqlx::PgConnection;

use crate::rows::{CANCELING, ENDED, IN_PROGRESS, end_reason_code};
use crate::testkit::fresh_database;

const BATCHES: i64 = 100;
const PER_BATCH: i64 = 100_000;
/// Requests a claim takes and a record group answers (the dispatcher's concurrency).
const GROUP: i64 = 256;

async fn run(conn: &mut PgConnection, what: &str, sql: &str) {
    let t = Instant::now();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    println!("{what}: {:.1} s", t.elapsed().as_secs_f64());
}

fn print_plan(what: &str, plan: Vec<String>) {
    println!("\n=== {what} ===\n{}", plan.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fills 10,000,000 requests; run by hand"]
async fn explain_at_ten_million_requests() {
    let Some(url) = fresh_database("explain_at_ten_million_requests").await else {
        return;
    };
    let store = crate::PostgresStore::open(&url).await.unwrap();
    let mut conn = store.pool.acquire().await.unwrap();
    let half = BATCHES / 2;
    let completed = end_reason_code(EndReason::Completed);
    run(
        &mut conn,
        "batches",
        &format!(
            "INSERT INTO batches (id, workspace, state, total, succeeded, end_reason, \
             created_at, expires_at, ended_at) \
             SELECT 'msgbatch_fill' || lpad(g::text, 15, '0'), 'w', \
                 CASE WHEN g <= {half} THEN {ENDED} ELSE {IN_PROGRESS} END, {PER_BATCH}, \
                 CASE WHEN g <= {half} THEN {PER_BATCH} ELSE 0 END, \
                 CASE WHEN g <= {half} THEN {completed} END, g, 9000000000000000, \
                 CASE WHEN g <= {half} THEN g END \
             FROM generate_series(1, {BATCHES}) g"
        ),
    )
    .await;
    run(
        &mut conn,
        "10,000,000 requests",
        &format!(
            "INSERT INTO requests (batch_key, idx, custom_id, params) \
             SELECT b.key, i, 'req-' || i, \
                 '{{\"model\":\"claude-haiku-4-5\",\"max_tokens\":16,\"messages\":\
                 [{{\"role\":\"user\",\"content\":\"Question ' || i || '?\"}}]}}' \
             FROM batches b, generate_series(0, {PER_BATCH} - 1) i"
        ),
    )
    .await;
    run(
        &mut conn,
        "results of the ended half",
        &format!(
            "INSERT INTO results (batch_key, idx, outcome, body) \
             SELECT b.key, i, {}, '{{\"type\":\"succeeded\",\"message\":{{}}}}' \
             FROM batches b, generate_series(0, {PER_BATCH} - 1) i WHERE b.state = {ENDED}",
            Outcome::Succeeded.code()
        ),
    )
    .await;
    run(
        &mut conn,
        "queue of the in-progress half",
        &format!(
            "INSERT INTO pending (batch_key, idx) \
             SELECT b.key, i FROM batches b, generate_series(0, {PER_BATCH} - 1) i \
             WHERE b.state = {IN_PROGRESS}"
        ),
    )
    .await;
    run(&mut conn, "VACUUM ANALYZE", "VACUUM ANALYZE").await;

    let me: i64 = 1;
    let explain = |sql: &str| format!("EXPLAIN (ANALYZE, BUFFERS) {sql}");
    // The claim as a claim pass plans it: in a transaction begun as `db::begin_claim` begins one.
    let mut tx = crate::db::begin_claim(&mut conn).await.unwrap();
    run(
        &mut tx,
        "PREPARE claim",
        &format!("PREPARE claim AS {}", crate::claim::CLAIM_ALL),
    )
    .await;
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(explain(&format!(
        "EXECUTE claim(1, {GROUP}, {me}, '{{}}')"
    ))))
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    print_plan("claim (CLAIM_ALL, generic plan), 256 requests", plan);
    // EXPLAIN ANALYZE ran the claim: what it claimed is the record group's below.
    tx.commit().await.unwrap();

    // The group answers what the claim took: the first 256 requests of the batches it served.
    let claimed: Vec<(i64, i32)> =
        sqlx::query_as("SELECT batch_key, idx FROM pending WHERE worker = $1 ORDER BY 1, 2")
            .bind(me)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(claimed.len(), GROUP as usize);
    let (keys, indices): (Vec<i64>, Vec<i32>) = claimed.into_iter().unzip();
    let mut batch_keys = keys.clone();
    batch_keys.dedup();
    let outcomes = vec![Outcome::Succeeded.code() as i16; keys.len()];
    let bodies = vec![r#"{"type":"succeeded","message":{}}"#; keys.len()];
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(explain(crate::record::RECORD)))
        .bind(2_i64)
        .bind(&batch_keys)
        .bind(&keys)
        .bind(&indices)
        .bind(outcomes)
        .bind(bodies)
        .bind(Vec::<i64>::new())
        .bind(Vec::<i32>::new())
        .bind(me)
        .bind(Outcome::Succeeded.code() as i16)
        .bind(Outcome::Errored.code() as i16)
        .bind(IN_PROGRESS)
        .bind(CANCELING)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    print_plan("record group (RECORD), 256 answers", plan);

    let ended: i64 = sqlx::query_scalar("SELECT MIN(key) FROM batches WHERE state = $1")
        .bind(ENDED)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    for (what, sql) in [
        (
            "download page (ANSWERED_PAGE)",
            crate::batches::ANSWERED_PAGE,
        ),
        ("download page (RESULTS_PAGE)", crate::batches::RESULTS_PAGE),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(explain(sql)))
            .bind(ended)
            .bind(50_000_i32)
            .bind(1_000_i64)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        print_plan(&format!("{what}, 1,000 lines from the middle"), plan);
    }
    drop(conn);
    store.close().await;
}
