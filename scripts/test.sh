#!/usr/bin/env bash
# The whole test suite, as the README gives it: the Rust workspace (unit and integration tests
# against a real server on port 0), then the official Python and TypeScript SDKs against a
# real batchd, then the conformance report (the Python SDK's own batch tests, CONFORMANCE.md),
# then schemathesis (pinned, from PyPI) checking the OpenAPI document against a
# real batchd, then the dashboard in headless Chromium (skipped, saying so, without Debian's
# chromium). Needs cargo, python3 and node/npm; packages come from PyPI and npm. With
# BATCHD_TEST_DATABASE_URL (a PostgreSQL admin URL) the Rust suites also run on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (workspace) =="
# With BATCHD_TEST_DATABASE_URL set this includes the PostgreSQL store's conformance suite and
# the multi-process test (three batchd processes on one database); without it they say they were
# skipped.
cargo test --workspace --locked

echo "== API, engine and crash suites on PostgreSQL =="
if [ -n "${BATCHD_TEST_DATABASE_URL:-}" ]; then
  # Every suite that starts servers through the engine switch, so each runs on both engines.
  BATCHD_TEST_STORE=postgres cargo test -p batchd --locked --test api --test crash \
    --test openai_engine --test openai_crash --test openai_memory --test webhook_crash
else
  echo "skipped: BATCHD_TEST_DATABASE_URL is not set. The PostgreSQL conformance, API, crash and"
  echo "multi-process suites need a server: eval \"\$(scripts/pg-test-cluster.sh start)\" starts one"
  echo "(README: Running with PostgreSQL); .ci/run does that."
fi

echo "== official SDK conformance =="
cargo build -p batchd --locked
BATCHD_BIN="$PWD/target/debug/batchd" bash sdk-tests/run.sh

echo "== conformance report: the official Python SDK's own batch tests =="
BATCHD_BIN="$PWD/target/debug/batchd" bash scripts/conformance.sh

echo "== schemathesis: the OpenAPI document against the server =="
BATCHD_BIN="$PWD/target/debug/batchd" bash scripts/schemathesis.sh

echo "== dashboard in headless Chromium =="
BATCHD_BIN="$PWD/target/debug/batchd" bash ui-tests/run.sh
