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

/// The debug binaries of batchd and the fake upstream, if both are built.
fn debug_binaries() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let bin_dir = target.join("debug");
    if bin_dir.join("batchd").exists() && bin_dir.join("fake-upstream").exists() {
        Some(bin_dir)
    } else {
        eprintln!("skipped: build debug batchd and fake-upstream to run this check");
        None
    }
}

/// Runs tiny rows with `rows_args` against the debug binaries; checks no phase failed and
/// every row was measured, and returns the rows' names.
async fn tiny_run(bin_dir: PathBuf, rows_args: &[&str]) -> Vec<String> {
    let work = tempfile::tempdir().unwrap();
    let args = Args::parse_from(
        ["batchd-bench", "--smoke", "--param-bytes", "300"]
            .into_iter()
            .chain(rows_args.iter().copied())
            .chain([
                "--bin-dir",
                bin_dir.to_str().unwrap(),
                "--work-dir",
                work.path().to_str().unwrap(),
            ]),
    );
    let outcome = run(args).await.unwrap();
    assert!(
        outcome.notes.iter().all(|n| !n.contains("failed")),
        "{:?}",
        outcome.notes
    );
    assert!(
        outcome
            .rows
            .iter()
            .all(|r| !matches!(r.verdict, Verdict::NotRun(_)))
    );
    outcome.rows.into_iter().map(|r| r.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_rows_against_debug_binaries_when_built() {
    let Some(bin_dir) = debug_binaries() else {
        return;
    };
    let names = tiny_run(
        bin_dir,
        &[
            "--rows",
            "footprint,ingest,delete",
            "--requests",
            "50",
            "--delete-samples",
            "1",
        ],
    )
    .await;
    assert_eq!(names.len(), 5, "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_openai_rows_against_debug_binaries_when_built() {
    let Some(bin_dir) = debug_binaries() else {
        return;
    };
    let names = tiny_run(
        bin_dir,
        &[
            "--rows",
            "openai",
            "--requests",
            "50",
            "--upload-lines",
            "20",
            "--upload-line-bytes",
            "600",
            "--latency",
            "10ms",
        ],
    )
    .await;
    // Upload + create and its RSS, dispatch at 0 ms, finalize, download, dispatch at 10 ms.
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.iter().all(|n| n.contains("(OpenAI)")), "{names:?}");
}
