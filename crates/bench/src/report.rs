//! BENCHMARKS.md: the machine, the command, the table, how each row is measured, and this run's
//! notes. Everything above the hand-written analysis marker is regenerated on every run; the
//! analysis below it is kept, so explanations of misses survive re-runs.

use std::fmt::Write;
use std::time::Duration;

use crate::run::Args;
use crate::table::{self, Row, Verdict};

/// Text after this line in an existing report is preserved verbatim.
pub const KEEP_MARKER: &str =
    "<!-- Hand-written analysis below: kept by the bench when it rewrites this file. -->";

const METHOD: &str = "\
- **Ingest**: one `POST /v1/messages/batches` with the whole body over loopback; time from the
  first byte sent to the 200. Limit: the same bytes written to a new file in the run's temp dir
  (same filesystem as batchd's data dir) and `fsync`ed, three times just before the create, the
  fastest taken (one write+fsync moved by up to 3× between runs; a limit is a maximum). RSS:
  batchd's `VmRSS` sampled every 5 ms from `/proc/PID/status`, peak minus the value before the
  request.
- **Dispatch**: batchd runs with `[[backends]] kind = \"anthropic\"` pointed at the
  `fake-upstream` binary (a separate process) with `concurrency` and `max_concurrency` set to the
  row's concurrency; completed/s = requests ÷ (create's 200 → first retrieve that shows
  `ended`, polled every 50 ms). Limit: the bench's own load generator (hyper, one keep-alive
  connection per worker, same concurrency) sending the same `params` bodies straight to the
  same fake upstream; at 0 ms the best of three runs (CPU-bound there, one run moved by 2×
  within a day), at 50 ms one. The fake answers ~330 words per request so results are
  realistically sized. The built-in mock row has an absolute target. Beside each rate, CPU per
  request from `/proc/PID/stat` (utime + stime) over the same span: the sender's (batchd, or the
  bench process while it generates) and the fake upstream's. At 0 ms all three share the cores
  and every run saturates them, so a note turns those figures into the CPU a request batchd
  could spend and still reach the target: (generator + fake upstream in the direct run) ÷
  target, less the fake upstream's share while batchd sent.
- **Results**: `GET …/results` of the ended batch, counting bytes as they arrive. Limit: the
  same client downloading a file of exactly the same size, freshly written (so in the page
  cache, like batchd's database) and served by the bench's own static server (tokio fs +
  hyper, 256 KiB frames). That is faster than `python3 -m http.server`, so it is the harder,
  honest baseline. Three downloads of each, alternated, medians compared: one download of
  either takes about a tenth of a second and moved by a third from run to run. RSS as for
  ingest, over the three.
- **Delete**: DELETE of ended batches, alternating a 100,000-request batch and a 10-request
  batch; the first large batch is the ingest batch (~256 MB of params and results), the others
  carry small params. Medians compared.
- **API under load**: closed loops of 256 keep-alive connections for a few seconds each on
  `/healthz` (the limit: the same HTTP stack without storage), retrieve of the processing
  batch, and list (`limit=20`), while a 100,000-request batch processes against a slow fake
  upstream.
- **Fake upstream**: the direct load generator against the fake upstream with ~150 B bodies:
  its own ceiling on this machine, so the dispatch rows are known to measure batchd.
- **Footprint**: from spawning `batchd serve` to its first 200 on `/healthz` (polled every
  2 ms), and `VmRSS` after one idle second.
- **Peak RSS while dispatching** (`--rows dispatch-rss`): a fresh batchd set up as for
  dispatch (fake upstream at 0 ms, the row's concurrency) gets a 10,000-request batch of the
  same `params` (2,000 under `--smoke`); its `VmRSS`, sampled as for ingest from the create's
  answer until the batch has ended, peaks below the stated limit of 50 MB. Beside it: idle RSS
  (the same server after one idle second, before the create) and the create's own peak
  (sampled from just before the create to its answer), which the dispatch starts from.
- **OpenAI surface** (`--rows openai`): batchd with `[[backends]] kind = \"openai\"` pointed at
  the same fake upstream, which answers `/v1/chat/completions` in OpenAI's dialect, and
  `openai_max_file_bytes` / `openai_max_file_lines` set to fit the bench's files.
  *Upload + create*: a 50,000-line, ~200 MB JSONL file (the hosted API's limits) sent as the
  SDKs send it (multipart `POST /v1/files`, `purpose` then the file), then `POST /v1/batches`
  on it; time from the upload's first byte to the create's 200, against write+fsync of the same
  bytes as for ingest; RSS as for ingest, over upload and create; that batch is then cancelled.
  *Dispatch*: the same conversations and concurrency as the Message Batches rows, as 100,000
  chat-completion lines; completed/s = requests ÷ (create's 200 → first retrieve whose
  `request_counts` are complete, polled every 50 ms), the moment Message Batches shows `ended`;
  the output file is written after it (the *Finalize* row, to within the polling interval)
  and before the direct load generator sends the same bodies to the fake's
  `/v1/chat/completions`. *Download*: `GET /v1/files/{output_file_id}/content` of that batch
  against the static file server, as for results.
- **PostgreSQL** (`--rows postgres`): 1, 2 and 3 `batchd serve` processes on one PostgreSQL
  database (fresh for each count), all pointed at one fake upstream (0 ms, then
  `--pg-latency`, 200 ms); one batch of compact requests created on the first process,
  completed/s = requests ÷ (create's 200 → `ended`). Beside it, CPU per 1,000 requests from
  `/proc/PID/stat` (utime + stime) over the same span: batchd's summed over its processes,
  PostgreSQL's over the whole cluster (the postmaster, its running children, and in its
  cutime/cstime the children that exited). The cluster is `BATCHD_BENCH_DATABASE_URL` if set,
  else a throwaway durable one from `scripts/pg-test-cluster.sh`; without PostgreSQL on the
  machine the rows say so and are not run. No target: the figure to compare between runs is
  the CPU per 1,000 requests, the rate on a shared two-core machine is noisy.";

/// The whole report.
pub fn markdown(
    args: &Args,
    machine: &[(&str, String)],
    rows: &[Row],
    notes: &[String],
    elapsed: Duration,
    previous: &str,
) -> String {
    let mut out = String::from(
        "# Benchmarks\n\nGenerated by `scripts/bench.sh` (the `batchd-bench` crate, `crates/bench`). Each row \
         holds batchd's figure against a limit of this machine measured in the same run; targets \
         are the project's. Re-run whenever a change touches a hot path, and compare only runs on \
         similar machines.\n\n## Machine\n\n| | |\n|---|---|\n",
    );
    for (k, v) in machine {
        let _ = writeln!(out, "| {k} | {} |", v.replace('|', "\\|"));
    }
    let selected = if args.all_rows() {
        String::new()
    } else {
        format!(" --rows {}", args.rows.join(","))
    };
    let upload = if args.wants("openai-upload") {
        format!(
            ", OpenAI upload {} lines of {} B",
            args.upload_lines, args.upload_line_bytes
        )
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "\n## Results\n\nCommand: `scripts/bench.sh{selected}` ({} requests per batch, {} B params, \
         concurrency {}, slow upstream {} ms{upload}; whole run {:.0} s).\n\n",
        args.requests,
        args.param_bytes,
        args.concurrency,
        args.latency.as_millis(),
        elapsed.as_secs_f64()
    );
    out.push_str(&table::markdown(rows));
    let misses: Vec<&Row> = rows.iter().filter(|r| r.verdict == Verdict::Miss).collect();
    if !misses.is_empty() {
        out.push_str("\nMissed targets in this run:\n\n");
        for r in misses {
            let _ = writeln!(
                out,
                "- {}: {} (ratio {}, target {})",
                r.name, r.batchd, r.ratio, r.target
            );
        }
    }
    if !notes.is_empty() {
        out.push_str("\nNotes from this run:\n\n");
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    let _ = write!(
        out,
        "\n## How each row is measured\n\n{METHOD}\n\n{KEEP_MARKER}\n"
    );
    match previous.split_once(KEEP_MARKER) {
        Some((_, kept)) => out.push_str(kept.trim_start_matches('\n')),
        None => out.push_str("\n## Analysis\n\n(Explain misses here: the number, the cause, what would close the gap.)\n"),
    }
    out
}
