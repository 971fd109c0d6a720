#!/usr/bin/env bash
# Quick end-to-end figure on the mock model: one 100,000-request batch through a release
# batchd on loopback. Prints time to the create's 200, processing rate, results download rate,
# and the server's idle and peak RSS.
#   scripts/bench-mock.sh [PAD]   PAD = extra characters per prompt (0: ~16 MB body; 2400: ~256 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
PAD="${1:-0}"
PORT="${BATCHD_BENCH_PORT:-18080}"
cargo build --release -p batchd --locked >/dev/null 2>&1
DATA="$(mktemp -d)"
target/release/batchd serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" --api-key sk-bench@default \
  >"$DATA.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA" "$DATA.log"' EXIT
for _ in $(seq 1 50); do
  python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1])' "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break
  sleep 0.1
done
echo "idle RSS $(awk '/VmRSS/{print $2}' /proc/$PID/status) kB"
python3 scripts/bench_mock_batch.py "http://127.0.0.1:$PORT" 100000 "$PAD" &
PY=$!
peak=0
while kill -0 $PY 2>/dev/null; do
  r=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
  [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.05
done
wait $PY
echo "peak RSS ${peak} kB"
