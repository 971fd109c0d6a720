//! The benchmark run: starts batchd (and fake upstreams) as children, measures each row
//! together with the machine limit it is held against, and reports the table.
//!
//! Phases, each on a fresh batchd and data dir so rows do not disturb each other:
//! 1. fake upstream at 0 ms: footprint, ingest, dispatch at 0 ms, results, delete;
//! 2. fake upstream at `--latency` (50 ms): dispatch;
//! 3. fake upstream at `--api-latency` (slow, so the batch keeps processing): API under load;
//! 4. built-in mock at 0 ms: dispatch;
//! 5. the OpenAI surface, fake upstream at 0 ms in its OpenAI dialect: upload + create, dispatch
//!    at 0 ms, output-file download;
//! 6. the OpenAI surface at `--latency` (50 ms): dispatch;
//! 7. fake upstream at 0 ms: peak RSS while a batch of [`RSS_BATCH`] is created and dispatched.
//! 8. PostgreSQL: 1, 2 and 3 batchd processes on one cluster at 0 ms and `--pg-latency`
//!    (200 ms), see [`crate::postgres`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http::Method;

use crate::client::{
    Api, Conn, LoadResult, Until, closed_loop, count_body, multipart_upload, request, request_as,
};
use crate::process::{Batchd, Guarded, RssSampler, cpu_seconds, start_batchd, start_fake, tail};
use crate::staticfile::StaticServer;
use crate::table::{Row, Verdict};
use crate::workload::{Surface, Workload};
use crate::{machine, table};

const KEY: &str = "sk-bench-local-benchmark";
/// Every row, in the order of `--rows`' default.
pub const ALL_ROWS: &[&str] = &[
    "upstream",
    "footprint",
    "ingest",
    "dispatch",
    "results",
    "delete",
    "api",
    "mock",
    "openai-upload",
    "openai-dispatch",
    "openai-download",
    "dispatch-rss",
    "postgres",
];
/// A `--rows` name standing for every `openai-*` row.
const OPENAI_ROWS: &str = "openai";
const MB: f64 = 1_000_000.0;
/// Target ratio of dispatch against the direct load generator with a 0 ms upstream, on both
/// surfaces.
const FAST_DISPATCH_TARGET: f64 = 0.9;
/// The same with the slow upstream, where the CPU is not the limit.
const SLOW_DISPATCH_TARGET: f64 = 0.98;
/// Runs of a limit that is taken at its best: the fake upstream's capacity, the direct load
/// generator at 0 ms and the write+fsync of an intake's bytes. A limit is what the machine
/// allows, and the other users of these cores and this disk only ever push a run down: one run
/// of the generator moved between 48,500 and 106,500 req/s within a day, one write+fsync of the
/// upload's 200 MB between 0.13 and 0.39 s.
const LIMIT_RUNS: usize = 3;
/// Runs of the direct load generator at the slow rows' latency (`--latency`, 50 ms unless told
/// otherwise): it waits on the fake's latency there, and one run (20 s at 100,000 requests) is
/// steady, 4,942-4,966 req/s over a day's runs.
const SLOW_DIRECT_RUNS: usize = 1;
const _: () = assert!(LIMIT_RUNS > 0 && SLOW_DIRECT_RUNS > 0);
/// Requests in the batch whose dispatch the RSS row watches (fewer under `--smoke`).
pub const RSS_BATCH: usize = 10_000;
/// The server's stated memory limit while dispatching that batch, in bytes.
const DISPATCH_RSS_LIMIT: u64 = 50_000_000;
/// How often the bench polls a batch it waits for (the resolution of the dispatch rows).
const POLL: Duration = Duration::from_millis(50);
/// Longest wait for a batch.
const BATCH_DEADLINE: Duration = Duration::from_secs(1200);
/// Downloads of each kind per download row (see `Run::download_row`).
const DOWNLOADS: usize = 3;

/// Benchmarks batchd against this machine's limits and writes BENCHMARKS.md.
#[derive(Debug, Clone, Parser)]
#[command(name = "batchd-bench")]
pub struct Args {
    /// Rows to run, comma-separated: upstream, footprint, ingest, dispatch, results, delete,
    /// api, mock, openai-upload, openai-dispatch, openai-download, dispatch-rss, postgres;
    /// `openai` stands for the three OpenAI-surface rows.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "upstream,footprint,ingest,dispatch,results,delete,api,mock,openai-upload,openai-dispatch,openai-download,dispatch-rss,postgres"
    )]
    pub rows: Vec<String>,
    /// Requests per large batch.
    #[arg(long, default_value_t = 100_000)]
    pub requests: usize,
    /// Bytes of `params` per request (2,560 × 100,000 ≈ 256 MB).
    #[arg(long, default_value_t = 2560)]
    pub param_bytes: usize,
    /// Lines of the OpenAI upload row's input file (the hosted API's most per batch).
    #[arg(long, default_value_t = 50_000)]
    pub upload_lines: usize,
    /// Bytes per line of that file (50,000 × 4,000 = 200 MB, about the hosted API's largest
    /// batch input file).
    #[arg(long, default_value_t = 4_000)]
    pub upload_line_bytes: usize,
    /// Words in each fake-upstream answer (≈ 330 makes results as large as the requests).
    #[arg(long, default_value_t = 330)]
    pub answer_words: usize,
    /// Concurrency of batchd's dispatch and of the direct load generator.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Upstream latency of the slow dispatch row.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Upstream latency while the API is loaded (keeps the batch processing).
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    pub api_latency: Duration,
    /// Upstream latency of the slow PostgreSQL rows (model-like: each process is then bounded
    /// by its concurrency, and processes add throughput instead of competing for CPU).
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pub pg_latency: Duration,
    /// Seconds of load per API measurement.
    #[arg(long, default_value_t = 5.0)]
    pub api_seconds: f64,
    /// DELETE samples per batch size.
    #[arg(long, default_value_t = 5)]
    pub delete_samples: usize,
    /// A quick smoke run: 2,000 requests (the RSS row's batch too), a 2,000-line upload, 1 s
    /// API loads, 3 delete samples, no BENCHMARKS.md.
    #[arg(long)]
    pub smoke: bool,
    /// Where to write the Markdown report (default BENCHMARKS.md; none in --smoke mode).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Directory holding `batchd` and `fake-upstream` (default: next to this binary).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Parent of the run's temp dir (data dirs and the disk-limit files); it should be on the
    /// disk batchd would use.
    #[arg(long, default_value = "target/bench-work")]
    pub work_dir: PathBuf,
}

impl Args {
    /// Whether `row` is selected.
    pub fn wants(&self, row: &str) -> bool {
        self.rows
            .iter()
            .any(|r| r == row || (r == OPENAI_ROWS && row.starts_with("openai-")))
    }

    /// Whether every row is selected (the report then shows the plain command).
    pub fn all_rows(&self) -> bool {
        ALL_ROWS.iter().all(|r| self.wants(r))
    }

    fn apply_smoke(&mut self) {
        if self.smoke {
            self.requests = self.requests.min(2_000);
            self.upload_lines = self.upload_lines.min(2_000);
            self.api_seconds = self.api_seconds.min(1.0);
            self.delete_samples = self.delete_samples.min(3);
        }
    }
}

/// Everything one run accumulates.
struct Run {
    args: Args,
    batchd_bin: PathBuf,
    fake_bin: PathBuf,
    work: PathBuf,
    rows: Vec<Row>,
    notes: Vec<String>,
    servers: usize,
}

fn fmt_n(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(per_second: f64) -> String {
    fmt_n(per_second.round() as usize)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The most bytes and lines among OpenAI input files, for the server's upload limits.
fn file_limits(files: &[&[u8]]) -> (usize, usize) {
    files.iter().fold((0, 0), |(bytes, lines), f| {
        let n = f.iter().filter(|b| **b == b'\n').count();
        (bytes.max(f.len()), lines.max(n))
    })
}

/// Whether an OpenAI batch's `status` is one it stays in.
fn openai_terminal(batch: &serde_json::Value) -> bool {
    ["completed", "failed", "expired", "cancelled"]
        .iter()
        .any(|s| batch["status"] == *s)
}

/// Writes `bytes` to a new file in `work` and fsyncs it, [`LIMIT_RUNS`] times: the fastest is
/// the disk's limit for taking in `bytes`. Measured before batchd takes them in, not after:
/// after, it ran while batchd dispatched the batch just created (the 0 ms row's clock had
/// started) and while batchd's WAL checkpoint wrote the same bytes back.
fn write_fsync(work: &Path, bytes: &[u8]) -> anyhow::Result<Duration> {
    use std::io::Write;
    let path = work.join("intake-limit.bin");
    let mut best = Duration::MAX;
    for _ in 0..LIMIT_RUNS {
        let start = Instant::now();
        let mut f = std::fs::File::create(&path)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        best = best.min(start.elapsed());
        drop(f);
        std::fs::remove_file(&path)?;
    }
    Ok(best)
}

/// The best of `runs` closed loops that `run` makes (see [`LIMIT_RUNS`]), with what `run` said
/// beside that loop's result; a failed request fails it, as `what`.
async fn best_run<F, Fut, T>(runs: usize, what: &str, mut run: F) -> anyhow::Result<(LoadResult, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(LoadResult, T)>>,
{
    let mut best: Option<(LoadResult, T)> = None;
    for _ in 0..runs {
        let (r, beside) = run().await?;
        if r.failed > 0 {
            bail!("{what}: {} requests failed", r.failed);
        }
        if best.as_ref().is_none_or(|(b, _)| r.rate() > b.rate()) {
            best = Some((r, beside));
        }
    }
    best.with_context(|| format!("{what}: no run"))
}

/// The direct load generator's rate, how many runs it is the best of, and the CPU per request
/// of that best run.
#[derive(Debug, Clone, Copy)]
struct Direct {
    rate: f64,
    runs: usize,
    cpu: Cpu,
}

/// CPU seconds (user + system) per request over one run: the process that sends the requests
/// (batchd, or the bench's own load generator) and the fake upstream that answers them. On a
/// machine whose cores all three share, the fake upstream's share is the same work in both runs;
/// the sender's is what the 0 ms ratio compares.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    sender: Option<f64>,
    upstream: Option<f64>,
}

/// The CPU time of a run's sender and fake upstream at the start of a span, which
/// [`CpuSince::per_request`] ends.
struct CpuSince {
    pids: [u32; 2],
    before: [Option<f64>; 2],
}

impl CpuSince {
    fn start(sender: u32, upstream: &Guarded) -> Self {
        let upstream = upstream.pid();
        Self {
            pids: [sender, upstream],
            before: [cpu_seconds(sender), cpu_seconds(upstream)],
        }
    }

    fn per_request(&self, requests: usize) -> Cpu {
        let [sender, upstream] =
            [0, 1].map(|i| cpu_used(self.pids[i], self.before[i]).map(|s| s / requests as f64));
        Cpu { sender, upstream }
    }
}

impl Run {
    fn progress(&self, what: &str) {
        eprintln!("[bench] {what}");
    }

    fn data_dir(&mut self) -> PathBuf {
        self.servers += 1;
        self.work.join(format!("batchd-{}", self.servers))
    }

    /// Starts batchd pointed at a fake upstream through `[[backends]]` of the kind that serves
    /// `surface`, taking OpenAI input files up to `files` (bytes, lines) when given. If this
    /// batchd does not know that config yet, falls back to the built-in mock with `mock_flags`
    /// and says so.
    async fn start_with_upstream(
        &mut self,
        upstream: std::net::SocketAddr,
        surface: Surface,
        files: Option<(usize, usize)>,
        mock_flags: &[String],
    ) -> anyhow::Result<(Batchd, bool)> {
        let dir = self.data_dir();
        let config = dir.with_extension("toml");
        let c = self.args.concurrency;
        let kind = surface.backend_kind();
        // The dispatch rows' files go past the hosted API's limits (100,000 lines, over
        // 200 MB), which batchd enforces by default; they are not what is measured.
        let files = files.map_or(String::new(), |(bytes, lines)| {
            format!("openai_max_file_bytes = {bytes}\nopenai_max_file_lines = {lines}\n")
        });
        std::fs::write(
            &config,
            format!(
                "concurrency = {c}\n{files}\n[[backends]]\nname = \"fake\"\nkind = \"{kind}\"\n\
                 base_url = \"http://{upstream}\"\nmodels = [\"*\"]\nmax_concurrency = {c}\n"
            ),
        )?;
        let flags = vec!["--config".to_owned(), config.to_string_lossy().into_owned()];
        match start_batchd(&self.batchd_bin, &dir, KEY, &flags).await {
            Ok(server) => Ok((server, true)),
            Err(err) if err.to_string().contains("backends") => {
                let note = "this batchd does not accept a `[[backends]]` config yet, so rows that need a \
                            real upstream are not run and their batches ran on the built-in mock";
                if !self.notes.iter().any(|n| n == note) {
                    self.notes.push(note.into());
                }
                let mut flags = mock_flags.to_vec();
                flags.extend(["--concurrency".into(), c.to_string()]);
                let dir = self.data_dir();
                let server = start_batchd(&self.batchd_bin, &dir, KEY, &flags).await?;
                Ok((server, false))
            }
            Err(err) => Err(err),
        }
    }

    /// The direct load generator: `n` requests with the workload's params straight at the
    /// fake upstream's route for its surface over `concurrency` keep-alive connections, the best
    /// of `runs` runs ([`LIMIT_RUNS`] at 0 ms, [`SLOW_DIRECT_RUNS`] at 50 ms), with the CPU that
    /// run cost this process and the fake upstream `fake`.
    async fn direct(
        &self,
        fake: &Guarded,
        upstream: std::net::SocketAddr,
        workload: &Workload,
        runs: usize,
    ) -> anyhow::Result<Direct> {
        let (best, cpu) = best_run(runs, "direct load generator", || {
            let params = workload.params.clone();
            let surface = workload.surface;
            let since = CpuSince::start(std::process::id(), fake);
            let run = closed_loop(
                upstream,
                self.args.concurrency,
                Until::Requests(self.args.requests),
                false,
                move |i| {
                    request_as(
                        surface,
                        Method::POST,
                        upstream,
                        surface.upstream_path(),
                        "sk-upstream",
                        "application/json",
                        params[i % params.len()].clone(),
                    )
                },
            );
            async move {
                let result = run.await?;
                let cpu = since.per_request(self.args.requests);
                Ok((result, cpu))
            }
        })
        .await?;
        Ok(Direct {
            rate: best.rate(),
            runs,
            cpu,
        })
    }

    /// Waits for a batch to end, checking every request succeeded; returns the end instant.
    async fn ended(&mut self, api: &Api, id: &str, what: &str) -> anyhow::Result<Instant> {
        let (at, batch) = api.wait_ended(id, POLL, BATCH_DEADLINE).await?;
        let counts = &batch["request_counts"];
        if counts["succeeded"].as_u64() != Some(self.args.requests as u64) {
            self.notes
                .push(format!("{what}: not every request succeeded: {counts}"));
        }
        Ok(at)
    }

    /// Hands the workload's batch to batchd as its surface's clients do (one create, or an
    /// upload and a batch on it); returns the batch id and the instant the create answered.
    async fn submit(&self, api: &Api, workload: &Workload) -> anyhow::Result<(String, Instant)> {
        let id = match workload.surface {
            Surface::Anthropic => api.create(workload.body.clone()).await?,
            Surface::OpenAi => {
                let (content_type, body) = multipart_upload(&workload.body, "bench.jsonl");
                let file = api.upload(&content_type, body).await?;
                api.create_openai(&file).await?
            }
        };
        Ok((id, Instant::now()))
    }

    /// Waits until every request of the batch is answered, checking each succeeded; returns
    /// when that was first seen. On the OpenAI surface that is the moment Message Batches
    /// would show `ended`: the counts are complete, the output file is still to be written.
    async fn answered(
        &mut self,
        api: &Api,
        surface: Surface,
        id: &str,
        what: &str,
    ) -> anyhow::Result<Instant> {
        if surface == Surface::Anthropic {
            return self.ended(api, id, what).await;
        }
        let (at, batch) = api
            .wait_for(&format!("/v1/batches/{id}"), POLL, BATCH_DEADLINE, |b| {
                let c = &b["request_counts"];
                let n = |k: &str| c[k].as_u64().unwrap_or(0);
                openai_terminal(b) || (n("total") > 0 && n("completed") + n("failed") >= n("total"))
            })
            .await?;
        if batch["status"] == "failed" {
            bail!("{what}: the batch failed validation: {}", batch["errors"]);
        }
        let counts = &batch["request_counts"];
        if counts["completed"].as_u64() != Some(self.args.requests as u64) {
            self.notes
                .push(format!("{what}: not every request succeeded: {counts}"));
        }
        Ok(at)
    }

    /// Waits for an OpenAI batch to reach a status it stays in (its files written).
    async fn openai_settled(&self, api: &Api, id: &str) -> anyhow::Result<serde_json::Value> {
        let (_, batch) = api
            .wait_for(
                &format!("/v1/batches/{id}"),
                POLL,
                BATCH_DEADLINE,
                openai_terminal,
            )
            .await?;
        Ok(batch)
    }

    /// The two rows of taking in `bytes` in `took`: its rate against `disk`, their write+fsync
    /// ([`write_fsync`]), and the server's peak RSS growth (from `rss0` to `peak`) against
    /// their size.
    #[allow(clippy::too_many_arguments)]
    fn intake_rows(
        &mut self,
        prefix: &str,
        headline: &str,
        subject: &str,
        bytes: &[u8],
        took: Duration,
        disk: Duration,
        rss0: u64,
        peak: u64,
    ) {
        let size = bytes.len() as f64 / MB;
        let (rate, disk_rate) = (size / took.as_secs_f64(), size / disk.as_secs_f64());
        let ratio = rate / disk_rate;
        self.rows.push(Row::new(
            &format!("{prefix}: {headline}"),
            format!("{:.2} s = {rate:.0} MB/s", took.as_secs_f64()),
            format!(
                "disk write+fsync {disk_rate:.0} MB/s ({:.2} s, best of {LIMIT_RUNS})",
                disk.as_secs_f64()
            ),
            Some(ratio),
            "≥ 0.5",
            Verdict::check(ratio >= 0.5),
        ));
        let growth = peak.saturating_sub(rss0) as f64 / MB;
        let ratio = growth / size;
        self.rows.push(Row::new(
            &format!("{prefix}: peak RSS growth"),
            format!("{growth:.0} MB (peak {:.0} MB)", peak as f64 / MB),
            format!("{subject} {size:.0} MB"),
            Some(ratio),
            "≤ 0.5",
            Verdict::check(ratio <= 0.5),
        ));
    }

    /// A download row: `GET path` from batchd against the static file server's download of as
    /// many bytes, alternated [`DOWNLOADS`] times and the medians compared. One download of
    /// either is a tenth of a second, which moved by a third from run to run: alone, it made
    /// the row pass or miss at random.
    async fn download_row(
        &mut self,
        what: &str,
        api: &Api,
        path: &str,
        filler: &[u8],
    ) -> anyhow::Result<()> {
        // The first download tells the size the static file is written at.
        let (bytes, first) = download(api, path).await?;
        let baseline = StaticFile::write(&self.work, bytes, filler).await?;
        let (mut ours, mut theirs) = (vec![first], vec![baseline.download().await?]);
        for _ in 1..DOWNLOADS {
            let (again, took) = download(api, path).await?;
            if again != bytes {
                bail!("{what}: {again} bytes, then {bytes}");
            }
            ours.push(took);
            theirs.push(baseline.download().await?);
        }
        baseline.remove()?;
        let (took, base) = (median(ours), median(theirs));
        let size = bytes as f64 / MB;
        let (rate, base_rate) = (size / took.as_secs_f64(), size / base.as_secs_f64());
        self.rows.push(Row::new(
            &format!("{what} {size:.0} MB ({} lines)", fmt_n(self.args.requests)),
            format!(
                "{rate:.0} MB/s (median of {DOWNLOADS}: {:.2} s)",
                took.as_secs_f64()
            ),
            format!("static file server {base_rate:.0} MB/s (median of {DOWNLOADS})"),
            Some(rate / base_rate),
            "≥ 0.5",
            Verdict::check(rate / base_rate >= 0.5),
        ));
        Ok(())
    }

    async fn phase_fast_upstream(&mut self, workload: &Workload) -> anyhow::Result<()> {
        let a = &self.args;
        let n = a.requests;
        let (fake, fake_addr) = start_fake(&self.fake_bin, Duration::ZERO, a.answer_words)?;
        let (server, upstream) = self
            .start_with_upstream(
                fake_addr,
                Surface::Anthropic,
                None,
                &[
                    "--mock-latency".into(),
                    "0ms".into(),
                    "--mock-concurrency".into(),
                    self.args.concurrency.to_string(),
                ],
            )
            .await?;
        let api = Api::new(server.addr, KEY);

        if self.args.wants("footprint") {
            self.progress("footprint");
            tokio::time::sleep(Duration::from_secs(1)).await;
            let idle = server.rss() as f64 / MB;
            self.rows.push(Row::new(
                "Footprint: start to first answered request",
                ms(server.startup),
                "—".into(),
                None,
                "—",
                Verdict::Info,
            ));
            self.rows.push(Row::new(
                "Footprint: idle RSS",
                format!("{idle:.1} MB"),
                "—".into(),
                None,
                "—",
                Verdict::Info,
            ));
        }
        let needs_batch = ["ingest", "dispatch", "results", "delete"]
            .iter()
            .any(|r| self.args.wants(r));
        if !needs_batch {
            return Ok(());
        }

        self.progress(&format!(
            "ingest: creating a {}-request batch of {:.0} MB",
            fmt_n(n),
            workload.body.len() as f64 / MB
        ));
        let disk = if self.args.wants("ingest") {
            Some(write_fsync(&self.work, &workload.body)?)
        } else {
            None
        };
        let rss0 = server.rss();
        let sampler = RssSampler::start(server.pid());
        let t0 = Instant::now();
        let id = api.create(workload.body.clone()).await?;
        let created = Instant::now();
        let cpu = CpuSince::start(server.pid(), &fake);
        let peak = sampler.stop();
        let ingest = created - t0;
        if let Some(disk) = disk {
            let size = workload.body.len() as f64 / MB;
            let headline = format!("create {} requests, {size:.0} MB → 200", fmt_n(n));
            self.intake_rows(
                "Ingest",
                &headline,
                "body",
                &workload.body,
                ingest,
                disk,
                rss0,
                peak,
            );
        }

        self.progress("dispatch at 0 ms: waiting for the batch to end");
        let ended = self.ended(&api, &id, "dispatch 0 ms").await?;
        let cpu = cpu.per_request(n);
        let batchd_rate = n as f64 / (ended - created).as_secs_f64();
        if self.args.wants("dispatch") {
            self.progress("dispatch at 0 ms: direct load generator");
            let direct = self.direct(&fake, fake_addr, workload, LIMIT_RUNS).await?;
            self.dispatch_row(
                Surface::Anthropic,
                "0 ms",
                batchd_rate,
                direct,
                upstream,
                FAST_DISPATCH_TARGET,
                cpu,
                true,
            );
        }

        if self.args.wants("results") {
            self.progress("results: streaming from batchd, then a static file");
            let rss0 = server.rss();
            let sampler = RssSampler::start(server.pid());
            let path = format!("/v1/messages/batches/{id}/results");
            self.download_row("Results: stream", &api, &path, &workload.body)
                .await?;
            let peak = sampler.stop();
            let growth = peak.saturating_sub(rss0) as f64 / MB;
            self.rows.push(Row::new(
                "Results: RSS growth while streaming",
                format!("{growth:.0} MB"),
                "—".into(),
                None,
                "< 100 MB",
                Verdict::check(growth < 100.0),
            ));
        }

        if self.args.wants("delete") {
            let samples = self.args.delete_samples.max(1);
            self.progress(&format!(
                "delete: preparing {samples} large and {samples} small batches"
            ));
            let mut large = vec![id.clone()];
            let compact = Workload::compact(n);
            for _ in 1..samples {
                large.push(api.create(compact.clone()).await?);
            }
            let mut small = Vec::new();
            for _ in 0..samples {
                small.push(api.create(Workload::compact(10)).await?);
            }
            for id in large.iter().chain(&small) {
                api.wait_ended(id, Duration::from_millis(100), Duration::from_secs(1200))
                    .await?;
            }
            let (mut large_t, mut small_t) = (Vec::new(), Vec::new());
            // Interleaved, so drift in machine load hits both sizes alike.
            for (l, s) in large.iter().zip(&small) {
                small_t.push(api.delete(s).await?);
                large_t.push(api.delete(l).await?);
            }
            let (l, s) = (median(large_t), median(small_t));
            let ratio = l.as_secs_f64() / s.as_secs_f64();
            self.rows.push(Row::new(
                &format!(
                    "Delete: median of {samples}, {}-req vs 10-req batch",
                    fmt_n(n)
                ),
                ms(l),
                format!("10-req batch {}", ms(s)),
                Some(ratio),
                "≤ 2",
                Verdict::check(ratio <= 2.0),
            ));
        }
        drop(server);
        drop(fake);
        Ok(())
    }

    /// Dispatch against the slow upstream, on the workload's surface.
    async fn phase_slow_dispatch(&mut self, workload: &Workload) -> anyhow::Result<()> {
        let n = self.args.requests;
        let surface = workload.surface;
        let files = (surface == Surface::OpenAi).then(|| file_limits(&[&workload.body]));
        let (fake, fake_addr, server, upstream, lat) =
            self.start_slow(self.args.latency, surface, files).await?;
        let api = Api::on(surface, server.addr, KEY);
        self.progress(&format!("dispatch at {lat} ({}): batchd", surface.name()));
        let (id, created) = self.submit(&api, workload).await?;
        let cpu = CpuSince::start(server.pid(), &fake);
        let what = format!("dispatch {lat} ({})", surface.name());
        let ended = self.answered(&api, surface, &id, &what).await?;
        let cpu = cpu.per_request(n);
        let batchd_rate = n as f64 / (ended - created).as_secs_f64();
        drop(server);
        self.progress(&format!(
            "dispatch at {lat} ({}): direct load generator",
            surface.name()
        ));
        let direct = self
            .direct(&fake, fake_addr, workload, SLOW_DIRECT_RUNS)
            .await?;
        drop(fake);
        self.dispatch_row(
            surface,
            &lat,
            batchd_rate,
            direct,
            upstream,
            SLOW_DISPATCH_TARGET,
            cpu,
            false,
        );
        Ok(())
    }

    /// A fake upstream answering after `latency`, and batchd pointed at it for `surface` (its
    /// mock given the same latency, in case the config is refused). Returns the latency as text
    /// too, for labels.
    async fn start_slow(
        &mut self,
        latency: Duration,
        surface: Surface,
        files: Option<(usize, usize)>,
    ) -> anyhow::Result<(Guarded, std::net::SocketAddr, Batchd, bool, String)> {
        let (fake, fake_addr) = start_fake(&self.fake_bin, latency, self.args.answer_words)?;
        let lat = format!("{}ms", latency.as_millis());
        let (server, upstream) = self
            .start_with_upstream(
                fake_addr,
                surface,
                files,
                &[
                    "--mock-latency".into(),
                    lat.clone(),
                    "--mock-concurrency".into(),
                    self.args.concurrency.to_string(),
                ],
            )
            .await?;
        Ok((fake, fake_addr, server, upstream, lat))
    }

    /// A dispatch row: batchd's completed/s against the direct load generator's, at `latency`,
    /// each with its CPU per request and the fake upstream's. A row whose runs saturate the cores
    /// (`cpu_bound`, the 0 ms rows) also gets a note: the CPU per request batchd could spend and
    /// still reach `target`.
    #[allow(clippy::too_many_arguments)]
    fn dispatch_row(
        &mut self,
        surface: Surface,
        latency: &str,
        batchd: f64,
        direct: Direct,
        upstream: bool,
        target: f64,
        cpu: Cpu,
        cpu_bound: bool,
    ) {
        let (n, c) = (fmt_n(self.args.requests), self.args.concurrency);
        let name = match surface {
            Surface::Anthropic => {
                format!("Dispatch: {n} req, {latency} upstream, concurrency {c}")
            }
            Surface::OpenAi => format!(
                "Dispatch (OpenAI): {n} chat completions, {latency} upstream, concurrency {c}"
            ),
        };
        let limit = match direct.runs {
            1 => format!("direct {} req/s", rate(direct.rate)),
            runs => format!("direct {} req/s (best of {runs})", rate(direct.rate)),
        };
        let limit = format!("{limit}{}", cpu_text(direct.cpu));
        let target_text = format!("≥ {target}");
        if !upstream {
            let mut row =
                Row::not_run(&name, &target_text, "batchd has no [[backends]] config yet");
            row.limit = limit;
            self.rows.push(row);
            return;
        }
        let ratio = batchd / direct.rate;
        // The sender's CPU (user + system) over the run, per request: what a faster upstream or
        // a smaller machine would run out of first.
        let figure = format!("{} req/s{}", rate(batchd), cpu_text(cpu));
        if let (true, Some(budget)) = (cpu_bound, budget(cpu, direct.cpu, target)) {
            let us = |s: Option<f64>| s.map_or("?".into(), |s| format!("{:.1}", s * 1e6));
            self.notes.push(format!(
                "{name}: at {target} of the direct rate, on cores as busy as in its runs, batchd \
                 could spend {:.1} µs of CPU a request: (generator {} + fake upstream {} µs) ÷ \
                 {target}, less the fake upstream's {} µs while batchd sent; it spent {} µs",
                budget * 1e6,
                us(direct.cpu.sender),
                us(direct.cpu.upstream),
                us(cpu.upstream),
                us(cpu.sender),
            ));
        }
        self.rows.push(Row::new(
            &name,
            figure,
            limit,
            Some(ratio),
            &target_text,
            Verdict::check(ratio >= target),
        ));
    }

    /// The PostgreSQL rows; skipped, saying why, on a machine without PostgreSQL.
    async fn phase_postgres(&mut self) -> anyhow::Result<()> {
        let requests = fmt_n(self.args.requests);
        let latencies = [Duration::ZERO, self.args.pg_latency];
        let name = |p: usize, lat: Duration| {
            format!(
                "PostgreSQL: {p} process(es), {requests} req, {}ms upstream",
                lat.as_millis()
            )
        };
        if let Some(why) = crate::postgres::missing() {
            for lat in latencies {
                for p in crate::postgres::PROCESS_COUNTS {
                    self.rows.push(Row::not_run(&name(p, lat), "info", &why));
                }
            }
            return Ok(());
        }
        self.progress("PostgreSQL: starting the cluster");
        let cluster = crate::postgres::Cluster::start()?;
        self.notes.push(format!(
            "PostgreSQL rows: {}; CPU from /proc (batchd: its processes; PostgreSQL: the \
             postmaster and all its children)",
            cluster.describe()
        ));
        let body = Workload::compact(self.args.requests);
        let setup = crate::postgres::Setup {
            batchd_bin: &self.batchd_bin,
            fake_bin: &self.fake_bin,
            work: &self.work,
            key: KEY,
            requests: self.args.requests,
            concurrency: self.args.concurrency,
            answer_words: self.args.answer_words,
        };
        let mut rows = Vec::new();
        let mut notes = Vec::new();
        for lat in latencies {
            let lat_text = format!("{}ms", lat.as_millis());
            let mut single = None;
            for p in crate::postgres::PROCESS_COUNTS {
                eprintln!("[bench] PostgreSQL: {p} process(es), {lat_text} upstream");
                let label = format!("{p}_{}", lat.as_millis());
                match crate::postgres::measure(&setup, &cluster, body.clone(), p, lat, &label).await
                {
                    Ok(m) => {
                        if m.succeeded != self.args.requests as u64 {
                            notes.push(format!(
                                "{}: {} of {} requests succeeded",
                                name(p, lat),
                                m.succeeded,
                                self.args.requests
                            ));
                        }
                        if p == 1 {
                            single = Some(m.rate);
                        }
                        rows.push(crate::postgres::row(p, &requests, &lat_text, &m, single));
                    }
                    Err(err) => {
                        notes.push(format!("{}: {err:#}", name(p, lat)));
                        rows.push(Row::not_run(&name(p, lat), "info", "failed, see notes"));
                    }
                }
            }
        }
        self.rows.extend(rows);
        self.notes.extend(notes);
        Ok(())
    }

    async fn phase_api(&mut self) -> anyhow::Result<()> {
        let n = self.args.requests;
        let (fake, _, server, _, lat) = self
            .start_slow(self.args.api_latency, Surface::Anthropic, None)
            .await?;
        let api = Api::new(server.addr, KEY);
        // Some finished batches too, so list has pages to read.
        for _ in 0..20 {
            api.create(Workload::compact(10)).await?;
        }
        let id = api.create(Workload::compact(n)).await?;
        let addr = server.addr;
        let c = self.args.concurrency;
        let time = Until::Time(Duration::from_secs_f64(self.args.api_seconds));
        self.progress(&format!("API under load: /healthz, retrieve, list at {c} connections while {} requests process at {lat}", fmt_n(n)));
        let health = closed_loop(addr, c, time, true, move |_| {
            request(Method::GET, addr, "/healthz", KEY, Bytes::new())
        })
        .await?;
        let path = format!("/v1/messages/batches/{id}");
        let retrieve = closed_loop(addr, c, time, true, move |_| {
            request(Method::GET, addr, &path, KEY, Bytes::new())
        })
        .await?;
        let list = closed_loop(addr, c, time, true, move |_| {
            request(
                Method::GET,
                addr,
                "/v1/messages/batches?limit=20",
                KEY,
                Bytes::new(),
            )
        })
        .await?;
        let batch = api.retrieve(&id).await?;
        if batch["processing_status"] != "in_progress" {
            self.notes.push(format!(
                "API under load: the batch was {} by the end of the load, not in_progress",
                batch["processing_status"]
            ));
        }
        let progress: serde_json::Value = api
            .call(
                Method::GET,
                &format!("/v1/messages/batches/{id}/progress"),
                Bytes::new(),
            )
            .await
            .unwrap_or_default();
        let _ = api
            .call(
                Method::POST,
                &format!("/v1/messages/batches/{id}/cancel"),
                Bytes::new(),
            )
            .await;
        for (what, r) in [("retrieve", &retrieve), ("list (limit=20)", &list)] {
            if r.failed > 0 {
                self.notes.push(format!(
                    "API under load: {what}: {} requests failed",
                    r.failed
                ));
            }
            self.rows.push(Row::new(
                &format!("API under load: {what}, {c} connections"),
                format!(
                    "{} req/s, p50 {}, p99 {}",
                    rate(r.rate()),
                    ms(r.quantile(0.5)),
                    ms(r.quantile(0.99))
                ),
                format!(
                    "/healthz {} req/s, p99 {}",
                    rate(health.rate()),
                    ms(health.quantile(0.99))
                ),
                Some(r.rate() / health.rate()),
                "—",
                Verdict::Info,
            ));
        }
        if let Some(done) = progress["request_counts"]["succeeded"].as_u64() {
            self.notes.push(format!(
                "API under load: the batch kept processing during the load ({} of {} requests done when it ended, {:.0} req/s)",
                fmt_n(done as usize),
                fmt_n(n),
                progress["requests_per_second"].as_f64().unwrap_or(0.0)
            ));
        }
        drop(server);
        drop(fake);
        Ok(())
    }

    /// The fake upstream's own capacity with small bodies: it must be far above anything
    /// batchd reaches, or the dispatch rows would measure the fake instead of batchd.
    async fn phase_upstream(&mut self) -> anyhow::Result<()> {
        let n = self.args.requests;
        let (fake, addr) = start_fake(&self.fake_bin, Duration::ZERO, 8)?;
        self.progress("fake upstream capacity: small bodies, direct load generator");
        let body = Bytes::from(crate::workload::compact_params(7));
        let (r, ()) = best_run(LIMIT_RUNS, "fake upstream", || {
            let body = body.clone();
            let run = closed_loop(
                addr,
                self.args.concurrency,
                Until::Requests(n),
                false,
                move |_| {
                    request(
                        Method::POST,
                        addr,
                        "/v1/messages",
                        "sk-upstream",
                        body.clone(),
                    )
                },
            );
            async move { Ok((run.await?, ())) }
        })
        .await?;
        drop(fake);
        self.rows.push(Row::new(
            &format!(
                "Fake upstream: {} small requests, 0 ms, concurrency {}",
                fmt_n(n),
                self.args.concurrency
            ),
            format!(
                "{} req/s (best of {LIMIT_RUNS}; load generator on the same cores)",
                rate(r.rate())
            ),
            "—".into(),
            None,
            "> 50,000 req/s",
            Verdict::check(r.rate() > 50_000.0),
        ));
        Ok(())
    }

    /// The server's peak RSS from just before the create of a [`RSS_BATCH`]-request batch
    /// (the dispatch rows' params, 0 ms fake upstream, `--concurrency`) until the batch ends,
    /// against the stated limit; idle RSS beside it, taken on the same server before the create.
    async fn phase_dispatch_rss(&mut self) -> anyhow::Result<()> {
        let n = if self.args.smoke {
            RSS_BATCH.min(self.args.requests)
        } else {
            RSS_BATCH
        };
        let c = self.args.concurrency;
        self.progress(&format!(
            "dispatch RSS: generating {} requests of ~{} B params",
            fmt_n(n),
            self.args.param_bytes
        ));
        let workload = Workload::realistic(n, self.args.param_bytes);
        let (fake, fake_addr) = start_fake(&self.fake_bin, Duration::ZERO, self.args.answer_words)?;
        let mock = ["--mock-latency", "0ms", "--mock-concurrency"].map(String::from);
        let mock = [&mock[..], &[c.to_string()]].concat();
        let (server, upstream) = self
            .start_with_upstream(fake_addr, Surface::Anthropic, None, &mock)
            .await?;
        let api = Api::new(server.addr, KEY);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = server.rss();
        self.progress("dispatch RSS: creating the batch and waiting for it to end");
        // The create's own peak (the body parsed and written) is shown beside the dispatch's,
        // which is the row's figure: the requests in flight, their answers and the writes of
        // the results, from the create's answer to the batch's end.
        let sampler = RssSampler::start(server.pid());
        let id = api.create(workload.body.clone()).await?;
        let create_peak = sampler.stop();
        let sampler = RssSampler::start(server.pid());
        let waited = api.wait_ended(&id, POLL, BATCH_DEADLINE).await;
        let peak = sampler.stop();
        let (_, batch) = waited?;
        drop(fake);
        let counts = &batch["request_counts"];
        if counts["succeeded"].as_u64() != Some(n as u64) {
            self.notes.push(format!(
                "dispatch RSS: not every request succeeded: {counts}"
            ));
        }
        let name = format!(
            "Peak RSS while dispatching {} requests at concurrency {c}",
            fmt_n(n)
        );
        if !upstream {
            let mut row = Row::not_run(&name, "≤ 1", "batchd has no [[backends]] config yet");
            row.limit = "50 MB".into();
            self.rows.push(row);
            return Ok(());
        }
        let ratio = peak as f64 / DISPATCH_RSS_LIMIT as f64;
        self.rows.push(Row::new(
            &name,
            format!(
                "{:.1} MB (idle {:.1} MB, create {:.1} MB)",
                peak as f64 / MB,
                idle as f64 / MB,
                create_peak as f64 / MB
            ),
            format!("stated limit {:.0} MB", DISPATCH_RSS_LIMIT as f64 / MB),
            Some(ratio),
            "≤ 1",
            Verdict::check(peak <= DISPATCH_RSS_LIMIT),
        ));
        Ok(())
    }

    async fn phase_mock(&mut self, workload: &Workload) -> anyhow::Result<()> {
        let n = self.args.requests;
        let c = self.args.concurrency.to_string();
        let dir = self.data_dir();
        let flags: Vec<String> = [
            "--mock-latency",
            "0ms",
            "--mock-concurrency",
            &c,
            "--concurrency",
            &c,
        ]
        .map(String::from)
        .to_vec();
        let server = start_batchd(&self.batchd_bin, &dir, KEY, &flags).await?;
        let api = Api::new(server.addr, KEY);
        self.progress("dispatch on the built-in mock at 0 ms");
        let id = api.create(workload.body.clone()).await?;
        let created = Instant::now();
        let ended = self.ended(&api, &id, "mock 0 ms").await?;
        let per_second = n as f64 / (ended - created).as_secs_f64();
        self.rows.push(Row::new(
            &format!("Dispatch: {} req, built-in mock, 0 ms", fmt_n(n)),
            format!("{} req/s", rate(per_second)),
            "—".into(),
            None,
            "≥ 50,000 req/s",
            Verdict::check(per_second >= 50_000.0),
        ));
        Ok(())
    }

    /// The OpenAI surface against the fake upstream at 0 ms: upload + create of a file at the
    /// hosted API's limits, dispatch of `chat`, and the download of its output file.
    async fn phase_openai(&mut self, chat: &Workload) -> anyhow::Result<()> {
        let a = &self.args;
        let n = a.requests;
        let upload = a
            .wants("openai-upload")
            .then(|| Workload::chat_file(a.upload_lines, a.upload_line_bytes));
        let batch = a.wants("openai-dispatch") || a.wants("openai-download");
        let files = file_limits(&[
            upload.as_deref().unwrap_or_default(),
            if batch { &chat.body } else { &[] },
        ]);
        let (fake, fake_addr) = start_fake(&self.fake_bin, Duration::ZERO, a.answer_words)?;
        let (server, upstream) = self
            .start_with_upstream(
                fake_addr,
                Surface::OpenAi,
                Some(files),
                &[
                    "--mock-latency".into(),
                    "0ms".into(),
                    "--mock-concurrency".into(),
                    self.args.concurrency.to_string(),
                ],
            )
            .await?;
        let api = Api::on(Surface::OpenAi, server.addr, KEY);

        if let Some(file) = upload {
            let lines = self.args.upload_lines;
            let size = file.len() as f64 / MB;
            self.progress(&format!(
                "openai upload: {} lines, {size:.0} MB, then a batch on it",
                fmt_n(lines)
            ));
            let (content_type, body) = multipart_upload(&file, "upload.jsonl");
            let disk = write_fsync(&self.work, &file)?;
            let rss0 = server.rss();
            let sampler = RssSampler::start(server.pid());
            let t0 = Instant::now();
            let file_id = api.upload(&content_type, body).await?;
            let id = api.create_openai(&file_id).await?;
            let took = t0.elapsed();
            let peak = sampler.stop();
            let headline = format!("{} lines, {size:.0} MB → batch", fmt_n(lines));
            let prefix = "Upload + create (OpenAI)";
            self.intake_rows(prefix, &headline, "file", &file, took, disk, rss0, peak);
            // Its requests are not a figure of this row: cancelled and settled, so they do not
            // share the CPU with the dispatch row's batch.
            let _ = api
                .call(
                    Method::POST,
                    &format!("/v1/batches/{id}/cancel"),
                    Bytes::new(),
                )
                .await;
            self.openai_settled(&api, &id).await?;
        }
        if !batch {
            return Ok(());
        }

        self.progress(&format!(
            "openai dispatch at 0 ms: uploading {} chat completions and waiting for them",
            fmt_n(n)
        ));
        let (id, created) = self.submit(&api, chat).await?;
        let cpu = CpuSince::start(server.pid(), &fake);
        let answered = self
            .answered(&api, Surface::OpenAi, &id, "dispatch 0 ms (OpenAI)")
            .await?;
        let cpu = cpu.per_request(n);
        let batchd_rate = n as f64 / (answered - created).as_secs_f64();
        // The output file is written before anything else runs, so that the direct load
        // generator does not share the CPU with it.
        let done = self.openai_settled(&api, &id).await?;
        let finalized = answered.elapsed();
        let output = done["output_file_id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the dispatch batch ended without an output file: {done}"))?;
        self.rows.push(Row::new(
            "Finalize (OpenAI): last answer seen → output file written",
            format!("{} (polled every {})", ms(finalized), ms(POLL)),
            "—".into(),
            None,
            "—",
            Verdict::Info,
        ));
        if self.args.wants("openai-dispatch") {
            self.progress("openai dispatch at 0 ms: direct load generator");
            let direct = self.direct(&fake, fake_addr, chat, LIMIT_RUNS).await?;
            self.dispatch_row(
                Surface::OpenAi,
                "0 ms",
                batchd_rate,
                direct,
                upstream,
                FAST_DISPATCH_TARGET,
                cpu,
                true,
            );
        }

        if self.args.wants("openai-download") {
            self.progress("openai download: the output file from batchd, then a static file");
            let path = format!("/v1/files/{output}/content");
            self.download_row("Download (OpenAI): output file", &api, &path, &chat.body)
                .await?;
        }
        drop(server);
        drop(fake);
        Ok(())
    }
}

/// What a run produced: the table and the notes (phase failures among them).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// Runs the selected rows, prints the table and writes the report.
pub async fn run(mut args: Args) -> anyhow::Result<Outcome> {
    args.apply_smoke();
    for r in &args.rows {
        if !ALL_ROWS.contains(&r.as_str()) && r != OPENAI_ROWS {
            bail!(
                "unknown row {r:?}; rows are {} (and {OPENAI_ROWS} for every openai-* row)",
                ALL_ROWS.join(", ")
            );
        }
    }
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary has no directory")?
            .to_owned(),
    };
    let (batchd_bin, fake_bin) = (bin_dir.join("batchd"), bin_dir.join("fake-upstream"));
    for bin in [&batchd_bin, &fake_bin] {
        if !bin.exists() {
            bail!("{} not found (build it, or pass --bin-dir)", bin.display());
        }
    }
    std::fs::create_dir_all(&args.work_dir)?;
    let temp = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&args.work_dir)?;
    let started = Instant::now();
    let machine = machine::describe(temp.path());
    let mut run = Run {
        args: args.clone(),
        batchd_bin,
        fake_bin,
        work: temp.path().to_owned(),
        rows: Vec::new(),
        notes: Vec::new(),
        servers: 0,
    };
    let needs_workload = ["ingest", "dispatch", "results", "delete", "mock"]
        .iter()
        .any(|r| args.wants(r));
    let workload = if needs_workload {
        run.progress(&format!(
            "generating {} requests of ~{} B params",
            fmt_n(args.requests),
            args.param_bytes
        ));
        Workload::realistic(args.requests, args.param_bytes)
    } else {
        Workload::empty(Surface::Anthropic)
    };
    let chat = if args.wants("openai-dispatch") || args.wants("openai-download") {
        run.progress(&format!(
            "generating {} chat completions of ~{} B",
            fmt_n(args.requests),
            args.param_bytes
        ));
        Workload::chat(args.requests, args.param_bytes)
    } else {
        Workload::empty(Surface::OpenAi)
    };
    let phases: [(&[&str], u8); 9] = [
        (&["upstream"], 4),
        (&["footprint", "ingest", "dispatch", "results", "delete"], 0),
        (&["dispatch"], 1),
        (&["api"], 2),
        (&["mock"], 3),
        (&["openai-upload", "openai-dispatch", "openai-download"], 5),
        (&["openai-dispatch"], 6),
        (&["dispatch-rss"], 7),
        (&["postgres"], 8),
    ];
    for (rows, phase) in phases {
        if !rows.iter().any(|r| args.wants(r)) {
            continue;
        }
        let outcome = match phase {
            0 => run.phase_fast_upstream(&workload).await,
            1 => run.phase_slow_dispatch(&workload).await,
            2 => run.phase_api().await,
            3 => run.phase_mock(&workload).await,
            4 => run.phase_upstream().await,
            5 => run.phase_openai(&chat).await,
            6 => run.phase_slow_dispatch(&chat).await,
            7 => run.phase_dispatch_rss().await,
            _ => run.phase_postgres().await,
        };
        if let Err(err) = outcome {
            // One broken phase should not lose the others' figures.
            let logs: Vec<String> = (1..=run.servers)
                .map(|i| tail(&run.work.join(format!("batchd-{i}.log")), 5))
                .filter(|t| !t.is_empty())
                .collect();
            run.notes.push(format!("phase {rows:?} failed: {err:#}"));
            eprintln!(
                "[bench] phase {rows:?} failed: {err:#}\n{}",
                logs.join("\n")
            );
        }
    }

    let elapsed = started.elapsed();
    let table_text = table::text(&run.rows);
    println!("\n{table_text}");
    for note in &run.notes {
        println!("note: {note}");
    }
    println!("whole run: {:.0} s", elapsed.as_secs_f64());
    let out = args
        .out
        .clone()
        .or_else(|| (!args.smoke).then(|| PathBuf::from("BENCHMARKS.md")));
    if let Some(out) = out {
        let previous = std::fs::read_to_string(&out).unwrap_or_default();
        let report =
            crate::report::markdown(&args, &machine, &run.rows, &run.notes, elapsed, &previous);
        std::fs::write(&out, report).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(Outcome {
        rows: run.rows,
        notes: run.notes,
    })
}

/// The download rows' limit: a file of the download's size, freshly written (so in the page
/// cache, like batchd's database) and served by [`StaticServer`].
struct StaticFile {
    path: PathBuf,
    bytes: u64,
    server: StaticServer,
}

impl StaticFile {
    /// Writes `bytes` of `filler`, repeated, and starts serving them.
    async fn write(dir: &Path, bytes: u64, filler: &[u8]) -> anyhow::Result<Self> {
        let path = dir.join("download-limit.bin");
        {
            use std::io::Write;
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
            let mut left = bytes as usize;
            while left > 0 {
                let chunk = &filler[..left.min(filler.len())];
                f.write_all(chunk)?;
                left -= chunk.len();
            }
            f.flush()?;
        }
        let server = StaticServer::start(path.clone()).await?;
        Ok(Self {
            path,
            bytes,
            server,
        })
    }

    /// One download over a new connection, as batchd's: how long it took from the request.
    async fn download(&self) -> anyhow::Result<Duration> {
        let addr = self.server.addr;
        let mut conn = Conn::connect(addr).await?;
        let t = Instant::now();
        let got = count_body(
            conn.send(request(Method::GET, addr, "/file", KEY, Bytes::new()))
                .await?,
        )
        .await?;
        let took = t.elapsed();
        if got != self.bytes {
            bail!("static server sent {got} bytes, expected {}", self.bytes);
        }
        Ok(took)
    }

    fn remove(self) -> anyhow::Result<()> {
        drop(self.server);
        std::fs::remove_file(&self.path)?;
        Ok(())
    }
}

/// GETs `path` from batchd and counts the body as it arrives: its size, and how long it took
/// from sending the request.
async fn download(api: &Api, path: &str) -> anyhow::Result<(u64, Duration)> {
    let t = Instant::now();
    let response = api.send(Method::GET, path, Bytes::new()).await?;
    if !response.status().is_success() {
        bail!("{path} answered {}", response.status());
    }
    let bytes = count_body(response).await?;
    Ok((bytes, t.elapsed()))
}

/// The CPU time `pid` used since `before` (from [`cpu_seconds`]), if both readings worked.
fn cpu_used(pid: u32, before: Option<f64>) -> Option<f64> {
    Some(cpu_seconds(pid)? - before?)
}

/// A run's CPU per request as a row shows it: ", 22 µs CPU/req (fake upstream 19 µs)".
fn cpu_text(cpu: Cpu) -> String {
    let us = |s: f64| s * 1e6;
    match (cpu.sender, cpu.upstream) {
        (Some(s), Some(u)) => format!(", {:.0} µs CPU/req (fake upstream {:.0} µs)", us(s), us(u)),
        (Some(s), None) => format!(", {:.0} µs CPU/req", us(s)),
        _ => String::new(),
    }
}

/// The CPU per request batchd could spend and still send at `target` of the direct rate, when
/// both runs are bound by the same saturated cores: a run's rate is then the cores' time over
/// the CPU its processes spend per request, so batchd's share plus the fake upstream's (as it
/// was while batchd sent) may reach the direct run's sum divided by `target`.
fn budget(batchd: Cpu, direct: Cpu, target: f64) -> Option<f64> {
    Some((direct.sender? + direct.upstream?) / target - batchd.upstream?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        Args::parse_from(std::iter::once("batchd-bench").chain(extra.iter().copied()))
    }

    #[test]
    fn the_budget_is_the_direct_runs_cpu_over_the_target_less_the_upstreams_share() {
        let cpu = |sender, upstream| Cpu {
            sender: Some(sender * 1e-6),
            upstream: Some(upstream * 1e-6),
        };
        // A direct run at 10 + 18 µs a request; at 0.9 of its rate the cores allow 31.1 µs a
        // request, of which the fake upstream took 17 µs while batchd sent.
        let spend = budget(cpu(26.0, 17.0), cpu(10.0, 18.0), 0.9).unwrap();
        assert!((spend * 1e6 - (28.0 / 0.9 - 17.0)).abs() < 1e-9, "{spend}");
        // At a ratio of 1, batchd may spend what the generator spends, the upstream alike.
        let even = budget(cpu(26.0, 18.0), cpu(10.0, 18.0), 1.0).unwrap();
        assert!((even * 1e6 - 10.0).abs() < 1e-9, "{even}");
        let unread = Cpu {
            sender: Some(1e-5),
            upstream: None,
        };
        assert_eq!(budget(cpu(26.0, 17.0), unread, 0.9), None);
        assert_eq!(budget(unread, cpu(10.0, 18.0), 0.9), None);
        assert_eq!(
            cpu_text(cpu(26.0, 17.6)),
            ", 26 µs CPU/req (fake upstream 18 µs)"
        );
        assert_eq!(cpu_text(Cpu::default()), "");
    }

    #[test]
    fn the_default_selects_every_row_and_openai_selects_only_its_own() {
        let all = args(&[]);
        assert_eq!(all.rows, ALL_ROWS, "the default lists every row, in order");
        assert!(all.all_rows());

        let openai = args(&["--rows", "openai"]);
        assert!(!openai.all_rows());
        for row in ALL_ROWS {
            assert_eq!(openai.wants(row), row.starts_with("openai-"), "{row}");
        }
        let one = args(&["--rows", "ingest,openai-download"]);
        assert!(one.wants("openai-download") && one.wants("ingest"));
        assert!(!one.wants("openai-upload") && !one.wants("dispatch"));
    }

    #[test]
    fn smoke_scales_the_upload_down_too() {
        let mut a = args(&["--smoke"]);
        a.apply_smoke();
        assert_eq!((a.requests, a.upload_lines), (2_000, 2_000));
    }

    #[test]
    fn file_limits_are_the_largest_file_and_line_count() {
        assert_eq!(file_limits(&[b"a\nb\n", b"abcdefgh\n", b""]), (9, 2));
    }
}
