//! Cheap checks of the harness itself, with no timed assertions: the load generator against an
//! in-process fake upstream, and — when debug binaries of batchd and the fake upstream are
//! already built — a few tiny rows end to end.

use std::path::PathBuf;
use std::time::Duration;

use batchd_bench::client::{Until, closed_loop, request};
use batchd_bench::run::{Args, run};
use batchd_bench::table::Verdict;
use batchd_fake_upstream::{Endpoint, FakeConfig, FakeUpstream};
use bytes::Bytes;
use clap::Parser;
use http::Method;

#[tokio::test]
async fn load_generator_completes_every_request() {
    let fake = FakeUpstream::start(FakeConfig::fast()).await.unwrap();
    let addr = fake.addr();
    let body = Bytes::from(batchd_bench::workload::params(1, 600));
    let r = closed_loop(addr, 16, Until::Requests(500), true, move |_| {
        request(Method::POST, addr, "/v1/messages", "k", body.clone())
    })
    .await
    .unwrap();
    assert_eq!((r.completed, r.failed), (500, 0));
    assert_eq!(r.latencies_us.len(), 500);
    assert!(r.quantile(0.5) <= r.quantile(0.99));
    assert_eq!(fake.stats().requests(Endpoint::Messages), 500);
    assert!(fake.stats().max_in_flight() <= 16);

    let timed = closed_loop(
        addr,
        4,
        Until::Time(Duration::from_millis(100)),
        false,
        move |_| request(Method::GET, addr, "/nowhere", "k", Bytes::new()),
    )
    .await
    .unwrap();
    assert_eq!(timed.completed, 0, "404s do not count as completed");
    assert!(timed.failed > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_rows_against_debug_binaries_when_built() {
    let bin_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug");
    if !bin_dir.join("batchd").exists() || !bin_dir.join("fake-upstream").exists() {
        eprintln!("skipped: build debug batchd and fake-upstream to run this check");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let args = Args::parse_from([
        "batchd-bench",
        "--smoke",
        "--rows",
        "footprint,ingest,delete",
        "--requests",
        "50",
        "--param-bytes",
        "300",
        "--delete-samples",
        "1",
        "--bin-dir",
        bin_dir.to_str().unwrap(),
        "--work-dir",
        work.path().to_str().unwrap(),
    ]);
    let outcome = run(args).await.unwrap();
    assert!(
        outcome.notes.iter().all(|n| !n.contains("failed")),
        "{:?}",
        outcome.notes
    );
    let names: Vec<&str> = outcome.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(outcome.rows.len(), 5, "{names:?}");
    assert!(
        outcome
            .rows
            .iter()
            .all(|r| !matches!(r.verdict, Verdict::NotRun(_)))
    );
}
