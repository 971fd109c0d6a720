#!/usr/bin/env bash
# Browser test of the dashboard (/ui), run from the repo root as `bash ui-tests/run.sh`.
#
# 1. skips (exit 0) when Debian's Chromium is not installed at /usr/bin/chromium;
# 2. installs the pinned playwright-core into ui-tests/node_modules (npm ci);
# 3. builds the server unless BATCHD_BIN points at one;
# 4. starts it on a free loopback port with a fresh data dir, the mock model slowed down
#    (--mock-latency 300ms --mock-concurrency 2 --concurrency 2) so progress can be watched, and
#    webhooks to loopback allowed (--webhook-allow-http --webhook-allow-private);
# 5. runs node --test ui-tests/test/*.test.mjs; the server is always stopped.
# Screenshots land in ui-tests/artifacts/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CHROMIUM=/usr/bin/chromium
KEY="sk-ui-test-dashboard-key"
LOG_TAG=ui-tests

if [[ ! -x "$CHROMIUM" ]]; then
  echo "SKIP: browser test needs Debian's chromium (apt-get install chromium)"
  exit 0
fi

# shellcheck source=../scripts/lib/servers.sh
source "$ROOT/scripts/lib/servers.sh"
SECONDS=0

log "npm ci (ui-tests)"
(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
ensure_batchd_bin
# The webhook flags let the test register an endpoint on loopback (its deliveries fail there).
start_server ui --api-key "$KEY@ui" --mock-latency 300ms --mock-concurrency 2 --concurrency 2 \
  --webhook-allow-http --webhook-allow-private
URL="$URL_UI"
log "setup took ${SECONDS}s"

export BATCHD_URL="$URL"
export BATCHD_KEY="$KEY"
export CHROMIUM
export UI_ARTIFACTS="$HERE/artifacts"

T0=$SECONDS
(cd "$ROOT" && node --test --test-concurrency=1 ui-tests/test/*.test.mjs)
log "browser test passed in $((SECONDS - T0))s (screenshots in ui-tests/artifacts/)"
