#!/usr/bin/env bash
# batchd official-SDK conformance suite: the single entry point (run from anywhere, CI runs it
# from the repo root as `bash sdk-tests/run.sh`).
#
# 1. installs the pinned Python SDK + pytest into sdk-tests/python/.venv and the pinned TypeScript
#    SDK into sdk-tests/node/node_modules (npm ci);
# 2. builds the server unless BATCHD_BIN points at one;
# 3. starts four servers on free loopback ports with fresh data dirs:
#      FAST     no mock latency
#      SLOW     --mock-latency 1s --mock-concurrency 1 --concurrency 1
#      TLS      FAST's settings over https, with the test certificates and CA
#      LIMITED  --rate-limit 60 (a call a second once the burst is spent)
#    all with keys sk-sdk-tests-workspace-a@ws-a and sk-sdk-tests-workspace-b@ws-b;
# 4. runs pytest, then node --test; exits non-zero if either fails. Servers are always stopped.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
KEY_A="sk-sdk-tests-workspace-a"
KEY_B="sk-sdk-tests-workspace-b"
LOG_TAG=sdk-tests
# shellcheck source=../scripts/lib/servers.sh
source "$ROOT/scripts/lib/servers.sh"

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
ensure_batchd_bin

# --- (d) servers -------------------------------------------------------------------------------
KEYS=(--api-key "$KEY_A@ws-a" --api-key "$KEY_B@ws-b" --api-key "sk-batchd-local-quickstart@readme")
start_server fast "${KEYS[@]}"
start_server slow "${KEYS[@]}" --mock-latency 1s --mock-concurrency 1 --concurrency 1
# TLS: the FAST server's settings over https, with the test certificates and CA.
TLS_FIXTURES="$ROOT/crates/batchd/tests/fixtures/tls"
SERVER_CA="$TLS_FIXTURES/ca.pem" start_server tls "${KEYS[@]}" \
  --tls-cert "$TLS_FIXTURES/server-a.pem" --tls-key "$TLS_FIXTURES/server-a.key"
start_server limited "${KEYS[@]}" --rate-limit 60

export BATCHD_FAST_URL="$URL_FAST"
# The README's snippets use the quickstart key, which lives in its own workspace here.
export BATCHD_README_URL="$URL_FAST"
export BATCHD_BIN
export BATCHD_SLOW_URL="$URL_SLOW"
export BATCHD_TLS_URL="$URL_TLS"
export BATCHD_TLS_CA="$TLS_FIXTURES/ca.pem"
export BATCHD_LIMITED_URL="$URL_LIMITED"
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
