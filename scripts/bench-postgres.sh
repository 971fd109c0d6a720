#!/usr/bin/env bash
# Throughput of 1, 2 and 3 batchd processes on one PostgreSQL: for each count, a fresh database,
# that many release batchd processes on loopback (built-in mock model, 0 ms latency), one
# 100,000-request batch created on the first process, timed from the create's 200 to `ended`.
#   scripts/bench-postgres.sh [N] [PROCESS COUNTS…]      (defaults: 100000 1 2 3)
# MOCK_LATENCY=200ms gives the mock a model-like latency (then each process is bounded by its
# --concurrency of 256 in flight, and processes add throughput instead of competing for CPU).
# Uses BATCHD_BENCH_DATABASE_URL (an admin URL) if set, else starts a throwaway PostgreSQL with
# its default (durable) settings via scripts/pg-test-cluster.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"
shift || true
COUNTS=("${@:-1 2 3}")
# shellcheck disable=SC2206
COUNTS=(${COUNTS[*]})
cargo build --release -p batchd --locked >/dev/null 2>&1
ADMIN="${BATCHD_BENCH_DATABASE_URL:-}"
PIDS=()
LOGS="$(mktemp -d)"
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  [ -n "${PGTEST_DIR:-}" ] && scripts/pg-test-cluster.sh stop "$PGTEST_DIR"
  rm -rf "$LOGS"
}
trap cleanup EXIT
if [ -z "$ADMIN" ]; then
  eval "$(scripts/pg-test-cluster.sh start)"
  ADMIN="$BATCHD_TEST_DATABASE_URL"
fi
echo "PostgreSQL: $(psql "$ADMIN" -tAc 'show server_version') (fsync $(psql "$ADMIN" -tAc 'show fsync'), synchronous_commit $(psql "$ADMIN" -tAc 'show synchronous_commit')); $(nproc) CPUs"
for P in "${COUNTS[@]}"; do
  DB="batchd_bench_$$_$P"
  psql "$ADMIN" -qc "CREATE DATABASE $DB"
  URL="${ADMIN%/*}/$DB"
  target/release/batchd migrate --database-url "$URL" 2>/dev/null
  PIDS=()
  for i in $(seq 0 $((P - 1))); do
    target/release/batchd --database-url "$URL" serve --listen "127.0.0.1:$((18180 + i))" \
      --data-dir "$LOGS/d$i" --api-key sk-bench@default \
      --mock-latency "${MOCK_LATENCY:-0ms}" --mock-concurrency 256 --concurrency 256 >"$LOGS/p$P-$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in $(seq 0 $((P - 1))); do
    for _ in $(seq 1 100); do
      python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1])' \
        "http://127.0.0.1:$((18180 + i))/readyz" 2>/dev/null && break
      sleep 0.1
    done
  done
  echo "== $P process(es), $N requests, mock latency ${MOCK_LATENCY:-0ms} =="
  python3 scripts/bench_mock_batch.py "http://127.0.0.1:18180" "$N" 0
  for pid in "${PIDS[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
  PIDS=()
  psql "$ADMIN" -qc "DROP DATABASE $DB WITH (FORCE)"
done
