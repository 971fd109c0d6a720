#!/usr/bin/env bash
# batchd official-SDK conformance suite: the single entry point (run from anywhere, CI runs it
# from the repo root as `bash sdk-tests/run.sh`).
#
# 1. installs the pinned Python SDK + pytest into sdk-tests/python/.venv and the pinned TypeScript
#    SDK into sdk-tests/node/node_modules (npm ci);
# 2. builds the server unless BATCHD_BIN points at one;
# 3. starts two servers on free loopback ports with fresh data dirs:
#      FAST  no mock latency
#      SLOW  --mock-latency 1s --mock-concurrency 1 --concurrency 1
#    both with keys sk-sdk-a@ws-a and sk-sdk-b@ws-b;
# 4. runs pytest, then node --test; exits non-zero if either fails. Servers are always stopped.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
KEY_A="sk-sdk-a"
KEY_B="sk-sdk-b"
START_TIMEOUT="${BATCHD_START_TIMEOUT:-30}"

log() { printf '[sdk-tests] %s\n' "$*" >&2; }

SECONDS=0

# --- (a) Python: venv + pinned requirements --------------------------------------------------
VENV="$HERE/python/.venv"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
log "pip install -r sdk-tests/python/requirements.txt"
"$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$HERE/python/requirements.txt"
PY="$VENV/bin/python"

# --- (b) Node: npm ci --------------------------------------------------------------------------
log "npm ci (sdk-tests/node)"
(cd "$HERE/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

# --- (c) server binary -------------------------------------------------------------------------
if [[ -z "${BATCHD_BIN:-}" ]]; then
  log "cargo build -p batchd"
  (cd "$ROOT" && cargo build -p batchd)
  BATCHD_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/batchd"
fi
if [[ ! -x "$BATCHD_BIN" ]]; then
  log "server binary not found or not executable: $BATCHD_BIN"
  exit 1
fi

# --- (d) two servers ---------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/batchd-sdk-tests.XXXXXX")"
PIDS=()

cleanup() {
  local rc=$?
  for pid in "${PIDS[@]:-}"; do
    [[ -n "$pid" ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [[ -n "$pid" ]] || continue
    # give each server a few seconds to stop, then make sure
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $rc -ne 0 ]]; then
    for name in fast slow; do
      if [[ -s "$WORK/$name.log" ]]; then
        log "last lines of the $name server log:"
        tail -n 40 "$WORK/$name.log" >&2 || true
      fi
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until the server answers HTTP at all (any status: / is not a route, and that is fine).
wait_http() {
  local url="$1" pid="$2" name="$3"
  local deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name server exited during startup"
      return 1
    fi
    if "$PY" - "$url" <<'EOF' 2>/dev/null; then
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/v1/messages/batches", timeout=1)
except urllib.error.HTTPError:
    pass  # any HTTP answer (401 without a key) means it is up
sys.exit(0)
EOF
      return 0
    fi
    sleep 0.2
  done
  log "$name server did not answer HTTP within ${START_TIMEOUT}s"
  return 1
}

# start_server NAME [extra args…]; sets URL_<NAME>. Retries if the picked port was taken meanwhile.
start_server() {
  local name="$1"
  shift
  local attempt port pid
  for attempt in 1 2 3; do
    port="$(free_port)"
    rm -rf "$WORK/$name-data"
    mkdir -p "$WORK/$name-data"
    NO_COLOR=1 "$BATCHD_BIN" serve \
      --listen "127.0.0.1:$port" \
      --data-dir "$WORK/$name-data" \
      --api-key "$KEY_A@ws-a" \
      --api-key "$KEY_B@ws-b" \
      --api-key "sk-batchd-local@readme" \
      "$@" >"$WORK/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if wait_http "http://127.0.0.1:$port" "$pid" "$name"; then
      printf -v "URL_${name^^}" '%s' "http://127.0.0.1:$port"
      log "$name server: http://127.0.0.1:$port (pid $pid)"
      return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset 'PIDS[-1]'
    log "$name server start attempt $attempt failed; log:"
    tail -n 20 "$WORK/$name.log" >&2 || true
  done
  return 1
}

start_server fast
start_server slow --mock-latency 1s --mock-concurrency 1 --concurrency 1

export BATCHD_FAST_URL="$URL_FAST"
# The README's snippets use the quickstart key, which lives in its own workspace here.
export BATCHD_README_URL="$URL_FAST"
export BATCHD_BIN
export BATCHD_SLOW_URL="$URL_SLOW"
export BATCHD_KEY_A="$KEY_A"
export BATCHD_KEY_B="$KEY_B"
# The SDKs must talk only to our servers, with our keys.
unset ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN ANTHROPIC_BASE_URL ANTHROPIC_CUSTOM_HEADERS ANTHROPIC_PROFILE || true

log "setup took ${SECONDS}s"

# --- (e) the suites ----------------------------------------------------------------------------
T0=$SECONDS
set +e
(cd "$HERE/python" && "$PY" -m pytest -p no:cacheprovider -rfE -q .)
PY_RC=$?
log "pytest exit code $PY_RC ($((SECONDS - T0))s)"

T1=$SECONDS
(cd "$HERE/node" && node --test test/batches.test.mjs)
NODE_RC=$?
log "node --test exit code $NODE_RC ($((SECONDS - T1))s)"
set -e

log "total ${SECONDS}s"
if [[ $PY_RC -ne 0 || $NODE_RC -ne 0 ]]; then
  log "FAILED (pytest=$PY_RC, node=$NODE_RC)"
  exit 1
fi
log "all SDK suites passed"
