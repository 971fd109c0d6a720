"""The README's "Use it" snippets, its pytest example of test mode and its webhook receiver, run
as written against a real batchd.

Each fenced block after a `<!-- readme-test: NAME -->` marker is extracted from README.md and
run with only the quickstart address (`http://127.0.0.1:8080`) replaced by the test server's.
The server has the quickstart key `sk-batchd-local-quickstart` (see run.sh), so a snippet that stops
working verbatim against the quickstart server fails here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
QUICKSTART = "http://127.0.0.1:8080"
MARKER = re.compile(r"<!-- readme-test: (\w+) -->\s*```(\w+)\n(.*?)```", re.S)


def snippets() -> dict[str, tuple[str, str]]:
    found = {name: (lang, body) for name, lang, body in MARKER.findall(README.read_text())}
    assert set(found) == {"curl", "python", "node", "cli", "pytest", "rerun", "webhooks"}, f"README snippets: {sorted(found)}"
    return found


def run(cmd: list[str], cwd: Path, stdin: str | None = None) -> str:
    env = dict(os.environ)
    batchd_bin = os.environ.get("BATCHD_BIN")
    if batchd_bin:
        env["PATH"] = f"{Path(batchd_bin).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(cmd, cwd=cwd, input=stdin, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def source(name: str) -> str:
    base = os.environ["BATCHD_README_URL"]
    lang, body = snippets()[name]
    assert QUICKSTART in body, f"snippet {name} does not talk to the quickstart server"
    return body.replace(QUICKSTART, base)


def test_curl_snippet(tmp_path: Path) -> None:
    out = run(["bash", "-euo", "pipefail", "-c", source("curl")], tmp_path)
    assert out.count('"type":"succeeded"') == 2, out
    assert '"type":"message_batch_deleted"' in out, out
    assert '"has_more":' in out, out


def test_python_snippet(tmp_path: Path) -> None:
    out = run([sys.executable, "-"], tmp_path, stdin=source("python"))
    lines = out.strip().splitlines()
    assert len(lines) == 3, out
    assert all(" succeeded You said: What is " in line for line in lines), out


def test_node_snippet() -> None:
    node_dir = REPO / "sdk-tests" / "node"
    # Written next to node_modules so `import "@anthropic-ai/sdk"` resolves as in a user's project.
    script = node_dir / "readme-snippet.tmp.mjs"
    script.write_text(source("node"))
    try:
        out = run(["node", script.name], node_dir)
    finally:
        script.unlink()
    assert sorted(out.split()) == sorted(
        ["color-red", "succeeded", "color-green", "succeeded", "color-blue", "succeeded"]
    ), out


@pytest.mark.skipif(not os.environ.get("BATCHD_BIN"), reason="needs BATCHD_BIN (set by run.sh)")
def test_cli_snippet(tmp_path: Path) -> None:
    out = run(["bash", "-euo", "pipefail", "-c", source("cli")], tmp_path)
    assert "ended" in out and "deleted" in out, out
    results = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(results) == 2, results
    assert all('"type":"succeeded"' in line for line in results)


def test_rerun_snippet(tmp_path: Path) -> None:
    out = run(["bash", "-euo", "pipefail", "-c", source("rerun")], tmp_path)
    [http] = [line for line in out.splitlines() if '"rerun_of"' in line]
    rerun = json.loads(http)
    assert rerun["type"] == "message_batch" and rerun["rerun_of"].startswith("msgbatch_"), out
    # Only the errored request is re-run, over HTTP and from the CLI alike.
    assert sum(rerun["request_counts"].values()) == 1, out
    assert re.search(r"^requests\s+1 \(", out, re.M), out


@pytest.mark.skipif(not os.environ.get("BATCHD_BIN"), reason="needs BATCHD_BIN (set by run.sh)")
def test_webhooks_snippet(tmp_path: Path) -> None:
    # The server must allow http:// and loopback receivers (run.sh starts FAST so).
    out = run([sys.executable, "-"], tmp_path, stdin=source("webhooks"))
    [line] = out.strip().splitlines()
    event_type, batch_id, counts = line.split(" ", 2)
    assert event_type == "message_batch.ended", out
    assert batch_id.startswith("msgbatch_"), out
    assert "'succeeded': 1" in counts, out


def in_test_mode(base: str) -> bool:
    """Whether the README's server answers the test-mode routes (it runs with --test-mode)."""
    request = urllib.request.Request(
        f"{base}/v1/batchd/test/clock",
        headers={"x-api-key": "sk-batchd-local-quickstart", "anthropic-version": "2023-06-01"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise


def test_pytest_example(tmp_path: Path) -> None:
    base = os.environ["BATCHD_README_URL"]
    if not in_test_mode(base):
        pytest.skip("the README's server was not started with --test-mode (sdk-tests/run.sh starts FAST so)")
    (tmp_path / "test_readme_example.py").write_text(source("pytest"))
    started = time.monotonic()
    out = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_readme_example.py"], tmp_path)
    elapsed = time.monotonic() - started
    assert "3 passed" in out, out
    # The three scenarios take a day and 29 more against the real API; here, a few seconds.
    print(f"README pytest example: 3 scenarios in {elapsed:.2f}s")
    assert elapsed < 30, f"the example took {elapsed:.1f}s"
