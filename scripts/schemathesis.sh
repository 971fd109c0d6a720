#!/usr/bin/env bash
# schemathesis, pinned in scripts/schemathesis/requirements.txt, against a real batchd's
# /openapi.json: every check, a fixed seed and a bounded number of examples
# (scripts/schemathesis/schemathesis.toml, which says why anything is left out). Fails on any
# finding: the OpenAPI document and the server must agree.
#
# Installs into scripts/schemathesis/.venv (gitignored); builds the server unless BATCHD_BIN
# points at one; starts it on a free loopback port with a fresh data dir; always stops it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/scripts/schemathesis"
LOG_TAG=schemathesis
KEY="sk-schemathesis-0123456789abcdef"
# shellcheck source=lib/servers.sh
source "$ROOT/scripts/lib/servers.sh"

VENV="$HERE/.venv"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
log "pip install -r scripts/schemathesis/requirements.txt"
"$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$HERE/requirements.txt"

ensure_batchd_bin
# Schemathesis sends invalid credentials on purpose, many per operation: the failed-key throttle
# (tested by its own API tests) would otherwise turn its later cases into 429s.
start_server api --api-key "$KEY@schemathesis" --auth-failure-limit 100000

log "schemathesis run $URL_API/openapi.json"
# Its scratch files stay out of the repository.
cd "$SERVERS_WORK"
# hooks.py lets through the one refusal the document cannot state (see there).
SCHEMATHESIS_HOOKS="$HERE/hooks.py" "$VENV/bin/schemathesis" --config-file "$HERE/schemathesis.toml" --no-color run \
  "$URL_API/openapi.json" \
  --header "x-api-key: $KEY" \
  --header "anthropic-version: 2023-06-01"
