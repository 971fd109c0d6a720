# Shared by the test scripts that drive a real batchd (sdk-tests/run.sh, ui-tests/run.sh,
# scripts/schemathesis.sh):
# finding or building the binary, starting servers on free loopback ports with fresh data dirs,
# waiting until they answer, and always stopping them (printing their logs when the run failed).
#
# Source it after setting LOG_TAG (the prefix of log lines) and ROOT (the repository root).
# It installs an EXIT trap; callers that need their own cleanup add it to CLEANUP_EXTRA.

START_TIMEOUT="${BATCHD_START_TIMEOUT:-30}"
SERVERS_WORK="$(mktemp -d "${TMPDIR:-/tmp}/batchd-$LOG_TAG.XXXXXX")"
SERVER_PIDS=()
SERVER_NAMES=()

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }

# Sets BATCHD_BIN: the given binary, or a freshly built debug one.
ensure_batchd_bin() {
  if [[ -z "${BATCHD_BIN:-}" ]]; then
    log "cargo build -p batchd"
    (cd "$ROOT" && cargo build -p batchd)
    BATCHD_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/batchd"
  fi
  if [[ ! -x "$BATCHD_BIN" ]]; then
    log "server binary not found or not executable: $BATCHD_BIN"
    exit 1
  fi
  export BATCHD_BIN
}

stop_servers() {
  local rc=$? pid name
  for pid in "${SERVER_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${SERVER_PIDS[@]:-}"; do
    [[ -n "$pid" ]] || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $rc -ne 0 ]]; then
    for name in "${SERVER_NAMES[@]:-}"; do
      if [[ -n "$name" && -s "$SERVERS_WORK/$name.log" ]]; then
        log "last lines of the $name server log:"
        tail -n 40 "$SERVERS_WORK/$name.log" >&2 || true
      fi
    done
  fi
  rm -rf "$SERVERS_WORK"
  exit "$rc"
}
trap stop_servers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_healthy URL PID NAME [CA]: until GET /healthz answers 200, the process dies, or the
# timeout. CA (PEM) is the certificate authority to trust for an https URL.
wait_healthy() {
  local url="$1" pid="$2" name="$3" ca="${4:-}"
  local deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name server exited during startup"
      return 1
    fi
    if python3 -c 'import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2]) if sys.argv[2] else None
urllib.request.urlopen(sys.argv[1], timeout=1, context=ctx)' "$url/healthz" "$ca" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  log "$name server did not become healthy within ${START_TIMEOUT}s"
  return 1
}

# start_server NAME [serve args…]: sets URL_<NAME>. Retries if the picked port was taken meanwhile.
# With --tls-cert among the args the server speaks https; SERVER_CA names the CA to trust then.
start_server() {
  local name="$1" attempt port pid arg scheme=http
  shift
  for arg in "$@"; do
    [[ "$arg" == --tls-cert* ]] && scheme=https
  done
  SERVER_NAMES+=("$name")
  for attempt in 1 2 3; do
    port="$(free_port)"
    rm -rf "$SERVERS_WORK/$name-data"
    mkdir -p "$SERVERS_WORK/$name-data"
    NO_COLOR=1 "$BATCHD_BIN" serve \
      --listen "127.0.0.1:$port" \
      --data-dir "$SERVERS_WORK/$name-data" \
      "$@" >"$SERVERS_WORK/$name.log" 2>&1 &
    pid=$!
    SERVER_PIDS+=("$pid")
    if wait_healthy "$scheme://127.0.0.1:$port" "$pid" "$name" "${SERVER_CA:-}"; then
      printf -v "URL_${name^^}" '%s' "$scheme://127.0.0.1:$port"
      log "$name server: $scheme://127.0.0.1:$port (pid $pid)"
      return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset 'SERVER_PIDS[-1]'
    log "$name server start attempt $attempt failed; log:"
    tail -n 20 "$SERVERS_WORK/$name.log" >&2 || true
  done
  return 1
}
