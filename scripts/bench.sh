#!/usr/bin/env bash
# batchd's benchmarks: builds release binaries, then runs crates/bench, which starts
# batchd and the fake upstream itself, prints the table and writes BENCHMARKS.md.
#   scripts/bench.sh                      the full run (~5-10 min on 2 cores)
#   scripts/bench.sh --smoke              a quick scaled-down run; writes no report
#   scripts/bench.sh --rows ingest,delete only some rows (see --help)
#   scripts/bench.sh --rows openai        only the OpenAI-surface rows
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p batchd -p batchd-bench -p batchd-fake-upstream --locked
exec "${CARGO_TARGET_DIR:-target}/release/batchd-bench" "$@"
