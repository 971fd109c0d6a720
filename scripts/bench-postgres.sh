#!/usr/bin/env bash
# Throughput of 1, 2 and 3 batchd processes on one PostgreSQL: for each count, a fresh database,
# that many release batchd processes on loopback, one N-request batch created on the first
# process, timed from the create's 200 to `ended`.
#   scripts/bench-postgres.sh [N] [PROCESS COUNTS…]      (defaults: 100000 1 2 3)
# Upstream: UPSTREAM=fake (default) runs target/release/fake-upstream (a separate process, 0 ms)
# behind a `[[backends]] kind = "anthropic"` config; UPSTREAM=mock uses the built-in mock model.
# LATENCY=200ms gives either a model-like latency (then each process is bounded by its
# --concurrency of 256 in flight, and processes add throughput instead of competing for CPU).
# STATS=1 also prints the statements and transactions PostgreSQL ran per 1,000 requests (from
# pg_stat_database and, when the server preloads it, pg_stat_statements).
# Uses BATCHD_BENCH_DATABASE_URL (an admin URL) if set, else starts a throwaway PostgreSQL with
# its default (durable) settings via scripts/pg-test-cluster.sh. BATCHD_BIN overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"
shift || true
COUNTS=("${@:-1 2 3}")
# shellcheck disable=SC2206
COUNTS=(${COUNTS[*]})
UPSTREAM="${UPSTREAM:-fake}"
LATENCY="${LATENCY:-${MOCK_LATENCY:-0ms}}"
if [ -z "${BATCHD_BIN:-}" ]; then
  cargo build --release -p batchd -p batchd-fake-upstream --locked >/dev/null 2>&1
fi
BIN="${BATCHD_BIN:-target/release/batchd}"
ADMIN="${BATCHD_BENCH_DATABASE_URL:-}"
PIDS=()
UPID=""
LOGS="$(mktemp -d)"
cleanup() {
  for pid in "${PIDS[@]}" $UPID; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  [ -n "${PGTEST_DIR:-}" ] && scripts/pg-test-cluster.sh stop "$PGTEST_DIR"
  rm -rf "$LOGS"
}
trap cleanup EXIT
if [ -z "$ADMIN" ]; then
  eval "$(scripts/pg-test-cluster.sh start)"
  ADMIN="$BATCHD_TEST_DATABASE_URL"
fi
echo "PostgreSQL: $(psql "$ADMIN" -tAc 'show server_version') (fsync $(psql "$ADMIN" -tAc 'show fsync'), synchronous_commit $(psql "$ADMIN" -tAc 'show synchronous_commit')); $(nproc) CPUs"
CONFIG=()
if [ "$UPSTREAM" = fake ]; then
  "${FAKE_UPSTREAM_BIN:-target/release/fake-upstream}" --listen 127.0.0.1:0 --latency "$LATENCY" >"$LOGS/upstream.out" 2>&1 &
  UPID=$!
  for _ in $(seq 1 100); do grep -q listening "$LOGS/upstream.out" && break; sleep 0.1; done
  UP=$(sed -n 's/^fake-upstream listening on http:\/\///p' "$LOGS/upstream.out")
  printf 'concurrency = 256\n\n[[backends]]\nname = "fake"\nkind = "anthropic"\nbase_url = "http://%s"\nmodels = ["*"]\nmax_concurrency = 256\n' \
    "$UP" >"$LOGS/config.toml"
  CONFIG=(--config "$LOGS/config.toml")
fi
for P in "${COUNTS[@]}"; do
  DB="batchd_bench_$$_$P"
  psql "$ADMIN" -qc "CREATE DATABASE $DB"
  URL="${ADMIN%/*}/$DB"
  "$BIN" migrate --database-url "$URL" 2>/dev/null
  PIDS=()
  for i in $(seq 0 $((P - 1))); do
    "$BIN" --database-url "$URL" serve "${CONFIG[@]}" --listen "127.0.0.1:$((18180 + i))" \
      --data-dir "$LOGS/d$i" --api-key sk-bench-local-benchmark@default \
      --mock-latency "$LATENCY" --mock-concurrency 256 --concurrency 256 >"$LOGS/p$P-$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in $(seq 0 $((P - 1))); do
    for _ in $(seq 1 100); do
      python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1])' \
        "http://127.0.0.1:$((18180 + i))/readyz" 2>/dev/null && break
      sleep 0.1
    done
  done
  echo "== $P process(es), $N requests, $UPSTREAM upstream, latency $LATENCY =="
  python3 - "http://127.0.0.1:18180" "$N" "$ADMIN" "$DB" "${STATS:-0}" "${PIDS[*]}" <<'EOF'
import json, os, subprocess, sys, time, urllib.request
base, n, url, db, stats = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "1"
batchd_pids = [int(p) for p in sys.argv[6].split()]
def cpu(pids):
    """CPU seconds (user + system) used so far by these processes."""
    total = 0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")
def pg_pids():
    """The server's backends (their CPU, as seen from this machine; 0 if the server is remote)."""
    out = subprocess.run(["psql", url, "-tAc", "SELECT pid FROM pg_stat_activity"],
                         capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]
H = {"x-api-key": "sk-bench-local-benchmark", "anthropic-version": "2023-06-01", "content-type": "application/json"}
def psql(q):
    return subprocess.run(["psql", url, "-tAc", q], capture_output=True, text=True).stdout.strip()
def counters():
    xact = psql("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '%s'" % db)
    calls = psql("SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                 "WHERE d.datname = '%s'" % db)
    return int(xact or 0), int(calls or 0) if calls.lstrip("-").isdigit() else None
reqs = [{"custom_id": f"req-{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 16,
         "messages": [{"role": "user", "content": f"Question number {i}?"}]}} for i in range(n)]
body = json.dumps({"requests": reqs}).encode()
r = urllib.request.urlopen(urllib.request.Request(base + "/v1/messages/batches", data=body, headers=H))
b = json.loads(r.read()); t1 = time.time()
before = counters() if stats else None
pgs = pg_pids(); cpu0 = (cpu(batchd_pids), cpu(pgs))
while True:
    r = urllib.request.urlopen(urllib.request.Request(base + "/v1/messages/batches/" + b["id"], headers=H))
    s = json.loads(r.read())
    if s["processing_status"] == "ended": break
    time.sleep(0.05)
t2 = time.time()
cpu1 = (cpu(batchd_pids), cpu(pgs))
print(f"processing after create: {t2-t1:.2f}s = {n/(t2-t1):.0f} req/s; counts {s['request_counts']}")
print(f"CPU per 1,000 requests: batchd {1000*(cpu1[0]-cpu0[0])/n*1000:.0f} ms, "
      f"PostgreSQL backends {1000*(cpu1[1]-cpu0[1])/n*1000:.0f} ms")
if stats:
    time.sleep(1.5)  # backends flush their statistics about once a second
    after = counters()
    print(f"per 1,000 requests: {1000*(after[0]-before[0])/n:.1f} transactions"
          + (f", {1000*(after[1]-before[1])/n:.1f} statements (pg_stat_statements)" if after[1] is not None else ""))
EOF
  for pid in "${PIDS[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
  PIDS=()
  psql "$ADMIN" -qc "DROP DATABASE $DB WITH (FORCE)"
done
