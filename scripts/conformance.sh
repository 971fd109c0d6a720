#!/usr/bin/env bash
# The conformance report: runs the official Python SDK's own Message Batches test files, taken from
# its source distribution on PyPI at each pinned release, against a real batchd, then writes
# CONFORMANCE.md from their results, the project's own SDK suites' results (JUnit XML left by
# sdk-tests/run.sh in .conformance/sdk-suites) and the deliberate differences from the hosted API.
#
# Per release V (one scripts/conformance/requirements-V.txt each):
#   1. `pip download --no-deps --no-binary :all: anthropic==V` (the sdist holds the tests);
#   2. extracts tests/api_resources/messages/test_batches.py, its beta twin and what they import
#      (tests/conftest.py, tests/utils.py, the package __init__ files, tests/_alias_httpx.py where
#      the release has one) and the pytest settings (pyproject.toml) into .conformance/anthropic-V;
#   3. replaces the test files' placeholders by real objects (scripts/conformance/placeholders.py;
#      nothing a test asserts is changed);
#   4. installs the pinned test dependencies into .conformance/venv-V;
#   5. starts a batchd whose key is the SDK conftest's and whose workspace is the id the tests send
#      in `anthropic-workspace-id`, with a mock latency that keeps a fresh batch in progress long
#      enough to be canceled, and runs pytest on the two files (JUnit XML into .conformance).
# Then scripts/conformance/report.py writes CONFORMANCE.md and fails the run if a test failed
# without an explanation in scripts/conformance-explained.txt.
#
# Needs python3 with venv/pip and network access to PyPI; BATCHD_BIN skips the build.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LOG_TAG=conformance
# shellcheck source=lib/servers.sh
source "$ROOT/scripts/lib/servers.sh"

WORK="$ROOT/.conformance"
REPORTS="$WORK/official"
# The SDK conftest's API key.
KEY="my-anthropic-api-key"
# Long enough that a batch created just before a cancel test is still in progress when canceled.
MOCK_LATENCY=3s
PYTHON="${PYTHON:-python3}"

mkdir -p "$WORK/sdists"
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
ensure_batchd_bin
unset ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN ANTHROPIC_BASE_URL ANTHROPIC_CUSTOM_HEADERS ANTHROPIC_PROFILE || true

VERSIONS=()
for requirements in "$HERE"/conformance/requirements-*.txt; do
  v="${requirements##*/requirements-}"
  VERSIONS+=("${v%.txt}")
done

for v in "${VERSIONS[@]}"; do
  sdist="$WORK/sdists/anthropic-$v.tar.gz"
  if [[ ! -f "$sdist" ]]; then
    log "pip download anthropic==$v (sdist)"
    "$PYTHON" -m pip download --disable-pip-version-check --quiet --no-deps --no-binary :all: \
      "anthropic==$v" -d "$WORK/sdists"
  fi
  tree="$WORK/anthropic-$v"
  rm -rf "$tree"
  mkdir -p "$tree"
  "$PYTHON" - "$sdist" "$tree" <<'EOF'
import os, sys, tarfile
sdist, tree = sys.argv[1:]
wanted = {
    "pyproject.toml",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/utils.py",
    "tests/_alias_httpx.py",
    "tests/api_resources/__init__.py",
    "tests/api_resources/messages/__init__.py",
    "tests/api_resources/messages/test_batches.py",
    "tests/api_resources/beta/__init__.py",
    "tests/api_resources/beta/messages/__init__.py",
    "tests/api_resources/beta/messages/test_batches.py",
}
with tarfile.open(sdist) as tar:
    for m in tar.getmembers():
        name = m.name.split("/", 1)[1] if "/" in m.name else ""
        # Only the listed paths are written, so no member can land outside the tree.
        if name in wanted and m.isfile():
            path = os.path.join(tree, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as out:
                out.write(tar.extractfile(m).read())
EOF
  cp "$HERE/conformance/batchd_objects.py" "$tree/"
  "$PYTHON" "$HERE/conformance/placeholders.py" \
    "$tree/tests/api_resources/messages/test_batches.py" \
    "$tree/tests/api_resources/beta/messages/test_batches.py" >&2

  venv="$WORK/venv-$v"
  [[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv"
  log "pip install -r scripts/conformance/requirements-$v.txt"
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$HERE/conformance/requirements-$v.txt"
  # The `anthropic-version` this release sends, for the report.
  "$venv/bin/python" -c 'import anthropic
print(anthropic.Anthropic(api_key="unused", base_url="http://127.0.0.1:9").default_headers["anthropic-version"])' \
    >"$REPORTS/anthropic-$v.version"
done

set +e
for v in "${VERSIONS[@]}"; do
  tree="$WORK/anthropic-$v"
  # The workspace the tests name in `anthropic-workspace-id`: the key's own, so the header is
  # honoured rather than refused.
  workspace="$(grep -ho 'wrkspc_[A-Za-z0-9]*' "$tree"/tests/api_resources/messages/test_batches.py | head -n1)"
  name="v${v//./_}"
  start_server "$name" --api-key "$KEY@${workspace:-default}" --mock-latency "$MOCK_LATENCY" \
    --mock-concurrency 256 --concurrency 256 || exit 1
  url_var="URL_${name^^}"
  T0=$SECONDS
  (cd "$tree" && TEST_API_BASE_URL="${!url_var}" PYTHONPATH="$tree" "$WORK/venv-$v/bin/python" -m pytest \
    -p no:cacheprovider -n 0 -q -rfE --junitxml "$REPORTS/anthropic-$v.xml" \
    tests/api_resources/messages/test_batches.py tests/api_resources/beta/messages/test_batches.py)
  log "anthropic $v: pytest exit code $? ($((SECONDS - T0))s)"
done
set -e

"$PYTHON" "$HERE/conformance/report.py" \
  --official "$REPORTS" \
  --suites "${SDK_REPORTS:-$WORK/sdk-suites}" \
  --explained "$HERE/conformance-explained.txt" \
  --differences "$HERE/conformance/differences.md" \
  --typescript "$HERE/conformance/typescript-manual.md" \
  --out "$ROOT/CONFORMANCE.md"
if command -v git >/dev/null 2>&1 && ! git -C "$ROOT" diff --quiet -- CONFORMANCE.md 2>/dev/null; then
  log "CONFORMANCE.md changed with this run: commit the regenerated report"
fi
log "CONFORMANCE.md written"
