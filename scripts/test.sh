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
  # `--workspace`, not `-p batchd`: with `-p` the features differ (batchd-store's `testkit` is
  # on only when the other store crates' tests are built too), so most of the tree would be
  # compiled a second time, in CI's time and on its disk.
  BATCHD_TEST_STORE=postgres cargo test --workspace --locked --test api --test crash \
    --test openai_engine --test openai_crash --test openai_memory --test webhook_crash
else
  echo "skipped: BATCHD_TEST_DATABASE_URL is not set. The PostgreSQL conformance, API, crash and"
  echo "multi-process suites need a server: eval \"\$(scripts/pg-test-cluster.sh start)\" starts one"
  echo "(README: Running with PostgreSQL); .ci/run does that."
fi

echo "== official SDK conformance =="
# The binary the Rust suites above ran, which cargo leaves at target/debug/batchd (a no-op build
# that makes sure of it). `cargo build -p batchd` would build a second tree without the tests'
# features.
cargo test --workspace --locked --no-run --quiet
BATCHD_BIN="$PWD/target/debug/batchd" bash sdk-tests/run.sh

echo "== conformance report: the official Python SDK's own batch tests =="
BATCHD_BIN="$PWD/target/debug/batchd" bash scripts/conformance.sh

echo "== schemathesis: the OpenAPI document against the server =="
BATCHD_BIN="$PWD/target/debug/batchd" bash scripts/schemathesis.sh

echo "== dashboard in headless Chromium =="
BATCHD_BIN="$PWD/target/debug/batchd" bash ui-tests/run.sh
