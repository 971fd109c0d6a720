#!/usr/bin/env bash
# The instructions batchd executes in user space over some bench rows, counted by valgrind's
# callgrind. Unlike the bench's CPU seconds, the count hardly moves with the machine's load
# (three runs of the dispatch rows at 10,000 requests spread by about 1 %, where the CPU per
# request spreads by ±15 %), so it shows changes of a few hundred instructions a request that
# no alternation of timed runs can. It leaves out the kernel (socket I/O, WAL writes), and
# batchd runs ~50x slower under callgrind, so it says nothing of throughput or of the limits.
# valgrind counts a `rep movsb` once per byte: memcpy's count is bytes copied, not its CPU.
#   scripts/instructions.sh [ROWS] [REQUESTS] [BIN_DIR] [BENCH_FLAGS...]
#     ROWS         bench rows (default dispatch: the 0 ms and 50 ms rows, one batchd each)
#     REQUESTS     --requests for the bench (default 10000)
#     BIN_DIR      where batchd, batchd-bench and fake-upstream are (default, or "": a release
#                  build)
#     BENCH_FLAGS  more flags for the bench, e.g. --upload-lines 10000 (not --requests or
#                  --smoke: the figure per request divides by REQUESTS)
# Prints, for each batchd the bench started, in the order it started them, its count and that
# count per request. A count covers the whole process: start-up, the batch's creation, the
# dispatch, the idle time until the bench is done, and the shutdown. Work done on a timer (the
# WAL checkpointer's passes, the maintenance passes) is counted as often as the slowed run
# lasts, not per request: it made most of the 0 ms dispatch row's 661 statement re-prepares,
# 1.6 % of its count at 10,000 requests. The files callgrind and valgrind wrote stay in the
# directory it names.
set -euo pipefail
rows=${1:-dispatch}
requests=${2:-10000}
bins=${3:-}
shift $(($# < 3 ? $# : 3))
for flag in "$@"; do
  case $flag in
  --requests* | --smoke)
    echo "pass the requests as the second argument; --smoke changes them" >&2
    exit 2
    ;;
  esac
done
# Before the cd below, so that a relative BIN_DIR is the caller's.
if [ -n "$bins" ]; then
  bins=$(CDPATH='' cd -- "$bins" && pwd)
fi
cd "$(dirname "$0")/.."
command -v valgrind > /dev/null || { echo "valgrind is not installed (Debian: valgrind)" >&2; exit 1; }
if [ -z "$bins" ]; then
  cargo build --release -p batchd -p batchd-bench -p batchd-fake-upstream --locked
  bins=$(CDPATH='' cd -- "${CARGO_TARGET_DIR:-target}/release" && pwd)
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/batchd-instructions.XXXXXX")
mkdir "$out/bin"
ln -s "$bins/batchd-bench" "$bins/fake-upstream" "$out/bin/"
# The bench ends each batchd with SIGKILL, after which callgrind would write nothing: the
# wrapper it kills leaves valgrind running, and this script stops each with SIGTERM (batchd
# shuts down cleanly on it) once the bench is done. The paths come in through the
# environment, so that no character in them can break the wrapper.
export INSTRUCTIONS_OUT=$out INSTRUCTIONS_BATCHD=$bins/batchd
cat > "$out/bin/batchd" << 'EOF'
#!/bin/sh
valgrind --tool=callgrind --callgrind-out-file="$INSTRUCTIONS_OUT/callgrind.%p" \
  --log-file="$INSTRUCTIONS_OUT/valgrind.%p" "$INSTRUCTIONS_BATCHD" "$@" &
pid=$!
echo "$pid" >> "$INSTRUCTIONS_OUT/pids"
wait "$pid"
EOF
chmod +x "$out/bin/batchd"
stop_all() {
  [ -s "$out/pids" ] || return 0
  local pid waited
  while read -r pid; do
    kill -TERM "$pid" 2> /dev/null || true
  done < "$out/pids"
  while read -r pid; do
    waited=0
    while kill -0 "$pid" 2> /dev/null; do
      if [ "$waited" -ge 600 ]; then
        echo "batchd $pid did not stop within 120 s of SIGTERM; killed, so it has no count" >&2
        kill -KILL "$pid" 2> /dev/null || true
        break
      fi
      sleep 0.2
      waited=$((waited + 1))
    done
  done < "$out/pids"
}
trap stop_all EXIT
status=0
"$out/bin/batchd-bench" --rows "$rows" --requests "$requests" --bin-dir "$out/bin" \
  --work-dir "$out/work" --out "$out/bench.md" "$@" > "$out/bench.log" 2>&1 || status=$?
stop_all
trap - EXIT
# The bench goes on past a failed row (it notes the failure and exits 0): a count over a row
# that did not finish is no figure.
if [ "$status" != 0 ] || grep -q '^\[bench\] phase .* failed' "$out/bench.log"; then
  echo "the bench failed (exit $status); its log: $out/bench.log" >&2
  exit 1
fi
if [ ! -s "$out/pids" ]; then
  echo "these rows started no batchd (ROWS=$rows); the bench's log: $out/bench.log" >&2
  exit 1
fi
while read -r pid; do
  total=$(sed -n 's/^totals: //p' "$out/callgrind.$pid" 2> /dev/null || true)
  if [ -z "$total" ]; then
    echo "batchd $pid: no count (see $out/valgrind.$pid)"
  else
    echo "batchd $pid: $total instructions, $((total / requests)) per request"
  fi
done < "$out/pids"
echo "callgrind's files: $out"
