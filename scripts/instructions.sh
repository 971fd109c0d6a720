#!/usr/bin/env bash
# The instructions batchd executes in user space over some bench rows, counted by valgrind's
# callgrind. Unlike the bench's CPU seconds, the count hardly moves with the machine's load
# (three runs of the dispatch rows at 10,000 requests spread by about 1 %, where the CPU per
# request spreads by ±15 %), so it shows changes of a few hundred instructions a request that
# no alternation of timed runs can. It leaves out the kernel (socket I/O, WAL writes), and
# batchd runs ~50x slower under callgrind, so it says nothing of throughput or of the limits.
#   scripts/instructions.sh [ROWS] [REQUESTS] [BIN_DIR] [BENCH_FLAGS...]
#     ROWS         bench rows (default dispatch: the 0 ms and 50 ms rows, one batchd each)
#     REQUESTS     --requests for the bench (default 10000)
#     BIN_DIR      where batchd, batchd-bench and fake-upstream are (default, or "": a release
#                  build)
#     BENCH_FLAGS  more flags for the bench, e.g. --upload-lines 10000
# Prints each batchd process's count and that count per request; the files callgrind wrote
# (for callgrind_annotate) stay in the directory it names.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-dispatch}
requests=${2:-10000}
bins=${3:-}
shift $(($# < 3 ? $# : 3))
command -v valgrind > /dev/null || { echo "valgrind is not installed (Debian: valgrind)" >&2; exit 1; }
if [ -z "$bins" ]; then
  cargo build --release -p batchd -p batchd-bench -p batchd-fake-upstream --locked
  bins="${CARGO_TARGET_DIR:-target}/release"
fi
bins=$(cd "$bins" && pwd)
out=$(mktemp -d "${TMPDIR:-/tmp}/batchd-instructions.XXXXXX")
mkdir "$out/bin"
ln -s "$bins/batchd-bench" "$bins/fake-upstream" "$out/bin/"
# The bench ends each batchd with SIGKILL, after which callgrind would write nothing: the
# wrapper it kills leaves valgrind running, and this script stops each with SIGTERM (batchd
# shuts down cleanly on it) once the bench is done.
cat > "$out/bin/batchd" << EOF
#!/bin/sh
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.%p" "$bins/batchd" "\$@" &
echo \$! >> "$out/pids"
wait
EOF
chmod +x "$out/bin/batchd"
status=0
"$out/bin/batchd-bench" --rows "$rows" --requests "$requests" --bin-dir "$out/bin" \
  --work-dir "$out/work" --out "$out/bench.md" "$@" > "$out/bench.log" 2>&1 || status=$?
for pid in $(cat "$out/pids" 2> /dev/null); do
  kill -TERM "$pid" 2> /dev/null || true
  while kill -0 "$pid" 2> /dev/null; do sleep 0.2; done
done
if [ "$status" != 0 ]; then
  echo "the bench failed ($status); its log: $out/bench.log" >&2
  exit "$status"
fi
for f in "$out"/callgrind.*; do
  total=$(sed -n 's/^totals: //p' "$f")
  echo "$(basename "$f"): $total instructions, $((total / requests)) per request"
done
echo "callgrind's files: $out"
