#!/usr/bin/env bash
# The plans of the claim, record and download statements at 10,000,000 stored requests: runs the
# ignored test crates/store-postgres/src/explain.rs, which fills a fresh database straight in SQL
# and prints `EXPLAIN (ANALYZE, BUFFERS)` of each statement as the code issues it.
#   scripts/pg-explain.sh
# Uses BATCHD_TEST_DATABASE_URL (an admin URL) if set, else a throwaway cluster (fsync off: the
# plans do not depend on it, the fill gets faster). The fill takes a few minutes and ~3 GB.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BATCHD_TEST_DATABASE_URL:-}" ]; then
  eval "$(PGTEST_FAST=1 scripts/pg-test-cluster.sh start)"
  trap 'scripts/pg-test-cluster.sh stop "$PGTEST_DIR"' EXIT
fi
cargo test --locked -p batchd-store-postgres --lib explain_at_ten_million_requests \
  -- --ignored --nocapture
