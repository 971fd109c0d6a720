#!/usr/bin/env bash
# batchd official-SDK conformance suite: the single entry point (run from anywhere, CI runs it
# from the repo root as `bash sdk-tests/run.sh`).
#
# 1. installs the pinned Python SDKs + pytest into sdk-tests/python/.venv (requirements.txt, the
#    0.x generation) and sdk-tests/python/.venv-2x (requirements-2x.txt, the newest generation),
#    and both pinned TypeScript SDK generations plus the pinned `openai` SDK into
#    sdk-tests/node/node_modules (npm ci);
# 2. builds the server unless BATCHD_BIN points at one;
# 3. starts four servers on free loopback ports with fresh data dirs:
#      FAST     no mock latency, --test-mode (the README's pytest example drives its test routes),
#               --webhook-allow-http --webhook-allow-private (webhooks to loopback receivers)
#      SLOW     --mock-latency 1s --mock-concurrency 1 --concurrency 1
#      TLS      FAST's settings over https, with the test certificates and CA
#      LIMITED  --rate-limit 60 (a call a second once the burst is spent)
#    all with keys sk-sdk-tests-workspace-a@ws-a and sk-sdk-tests-workspace-b@ws-b;
# 4. runs pytest once per Python venv, then node --test (the Anthropic tests once per TypeScript
#    SDK generation, then the `openai` SDK's); exits non-zero if any fails. Servers are always
#    stopped. Each run's JUnit XML goes to SDK_REPORTS (default .conformance/sdk-suites), where
#    scripts/conformance.sh reads the counts.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
KEY_A="sk-sdk-tests-workspace-a"
KEY_B="sk-sdk-tests-workspace-b"
LOG_TAG=sdk-tests
# shellcheck source=../scripts/lib/servers.sh
source "$ROOT/scripts/lib/servers.sh"

SECONDS=0

SDK_REPORTS="${SDK_REPORTS:-$ROOT/.conformance/sdk-suites}"
rm -rf "$SDK_REPORTS"
mkdir -p "$SDK_REPORTS"

# --- (a) Python: one venv per SDK generation, each from its pinned requirements ----------------
# "venv directory:requirements file"; the SDK version is the file's anthropic pin.
PY_SUITES=(".venv:requirements.txt" ".venv-2x:requirements-2x.txt")
for suite in "${PY_SUITES[@]}"; do
  venv="$HERE/python/${suite%%:*}" requirements="$HERE/python/${suite#*:}"
  if [[ ! -x "$venv/bin/python" ]]; then
    log "creating $venv"
    "${PYTHON:-python3}" -m venv "$venv"
  fi
  log "pip install -r sdk-tests/python/${suite#*:}"
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
done

# --- (b) Node: npm ci --------------------------------------------------------------------------
log "npm ci (sdk-tests/node)"
(cd "$HERE/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

# --- (c) server binary -------------------------------------------------------------------------
ensure_batchd_bin

# --- (d) servers -------------------------------------------------------------------------------
KEYS=(--api-key "$KEY_A@ws-a" --api-key "$KEY_B@ws-b" --api-key "sk-batchd-local-quickstart@readme")
# Every suite, each SDK generation in turn, checks wrong keys from this address: more failed
# authentications than the default throttle allows in its window.
# Webhooks (test_webhooks.py, test_openai.py's unwrap test, the README's webhooks snippet) go to plain-http receivers on
# loopback, which only these two flags allow.
start_server fast "${KEYS[@]}" --auth-failure-limit 1000 --test-mode \
  --webhook-allow-http --webhook-allow-private
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
set +e
PY_RC=0
for suite in "${PY_SUITES[@]}"; do
  T0=$SECONDS
  requirements="$HERE/python/${suite#*:}"
  version="$(sed -n 's/^anthropic==//p' "$requirements")"
  (cd "$HERE/python" && "$HERE/python/${suite%%:*}/bin/python" -m pytest -p no:cacheprovider -rfE -q \
    --junitxml "$SDK_REPORTS/python-anthropic-$version.xml" .)
  rc=$?
  log "pytest with anthropic $version: exit code $rc ($((SECONDS - T0))s)"
  [[ $rc -eq 0 ]] || PY_RC=$rc
done

T1=$SECONDS
(cd "$HERE/node" && node --test \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=junit --test-reporter-destination="$SDK_REPORTS/node.xml" \
  test/batches.test.mjs test/openai.test.mjs)
NODE_RC=$?
log "node --test exit code $NODE_RC ($((SECONDS - T1))s)"
set -e

log "total ${SECONDS}s"
if [[ $PY_RC -ne 0 || $NODE_RC -ne 0 ]]; then
  log "FAILED (pytest=$PY_RC, node=$NODE_RC)"
  exit 1
fi
log "all SDK suites passed"
