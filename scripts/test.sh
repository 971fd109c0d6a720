#!/usr/bin/env bash
# The whole test suite, as the README gives it: the Rust workspace (unit and integration tests
# against a real server on port 0), then the official Python and TypeScript SDKs against a
# real batchd, then the dashboard in headless Chromium (skipped, saying so, without Debian's
# chromium). Needs cargo, python3 and node/npm; packages come from PyPI and npm.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (workspace) =="
cargo test --workspace --locked

echo "== official SDK conformance =="
cargo build -p batchd --locked
BATCHD_BIN="$PWD/target/debug/batchd" bash sdk-tests/run.sh

echo "== dashboard in headless Chromium =="
BATCHD_BIN="$PWD/target/debug/batchd" bash ui-tests/run.sh
