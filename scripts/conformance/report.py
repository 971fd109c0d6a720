"""Writes CONFORMANCE.md from the test runs' JUnit XML; exits 1 on a failure nobody explained.

Inputs (see scripts/conformance.sh):
  --official DIR     anthropic-V.xml (pytest's JUnit XML of the SDK's own batch tests at release V)
                     and anthropic-V.version (the `anthropic-version` that release sends)
  --suites DIR       the project's own SDK suites: python-anthropic-V.xml and node.xml
                     (sdk-tests/run.sh); a missing directory is reported as not run
  --explained FILE   one explained failure per line: `VERSION TEST-ID REASON…`; VERSION is a
                     release or `*`, TEST-ID a pytest node id, or a prefix of one ending in `*`
  --differences FILE the deliberate differences from the hosted API (Markdown, copied verbatim)
  --typescript FILE  the record of a by-hand run of the TypeScript SDK's own tests (Markdown,
                     copied verbatim)
  --out FILE         the report

The report holds no dates, timings or commit ids, so a clean run regenerates it unchanged.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

FILES = {
    "tests/api_resources/messages/test_batches.py": "`messages/test_batches.py`",
    "tests/api_resources/beta/messages/test_batches.py": "`beta/messages/test_batches.py`",
}


@dataclass
class Counts:
    run: int = 0
    passed: int = 0
    failed: List[str] = field(default_factory=list)
    skipped: int = 0


def outcome(case: ET.Element) -> str:
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    if case.find("skipped") is not None:
        return "skipped"
    return "passed"


def node_id(case: ET.Element) -> Tuple[str, str]:
    """(file, pytest node id) of a pytest JUnit test case."""
    parts = case.get("classname", "").split(".")
    for i, part in enumerate(parts):
        if part.startswith("test_"):
            path = "/".join(parts[: i + 1]) + ".py"
            return path, "::".join([path, *parts[i + 1 :], case.get("name", "")])
    return "", case.get("name", "")


def count(cases: List[ET.Element], ids: List[str]) -> Counts:
    c = Counts()
    for case, test_id in zip(cases, ids):
        result = outcome(case)
        if result == "skipped":
            c.skipped += 1
            continue
        c.run += 1
        if result == "passed":
            c.passed += 1
        else:
            c.failed.append(test_id)
    return c


def version_key(v: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))


def load_explained(path: str) -> List[Tuple[str, str, str]]:
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            version, test_id, reason = line.split(None, 2)
            entries.append((version, test_id, reason))
    return entries


def explanation(entries: List[Tuple[str, str, str]], version: str, test_id: str) -> Optional[str]:
    for v, pattern, reason in entries:
        if v not in ("*", version):
            continue
        if pattern == test_id or (pattern.endswith("*") and test_id.startswith(pattern[:-1])):
            return reason
    return None


def table(header: List[str], rows: List[List[str]]) -> List[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def official_section(directory: str, entries: List[Tuple[str, str, str]]) -> Tuple[List[str], List[str]]:
    """The section's lines, and the failures nobody explained."""
    versions = sorted(
        (name[len("anthropic-") : -len(".xml")] for name in os.listdir(directory) if name.endswith(".xml")),
        key=version_key,
    )
    rows: List[List[str]] = []
    failures: List[List[str]] = []
    unexplained: List[str] = []
    for v in versions:
        sends = open(os.path.join(directory, f"anthropic-{v}.version"), encoding="utf-8").read().strip()
        cases = list(ET.parse(os.path.join(directory, f"anthropic-{v}.xml")).getroot().iter("testcase"))
        located = [node_id(c) for c in cases]
        if not cases:
            unexplained.append(f"anthropic {v}: no test ran")
        for path, label in FILES.items():
            mine = [(c, i) for c, (p, i) in zip(cases, located) if p == path]
            c = count([m[0] for m in mine], [m[1] for m in mine])
            explained = 0
            for test_id in c.failed:
                reason = explanation(entries, v, test_id)
                if reason is None:
                    unexplained.append(f"anthropic {v}: {test_id}")
                    reason = "**not explained**"
                else:
                    explained += 1
                failures.append([f"`anthropic` {v}", f"`{test_id.replace('tests/api_resources/', '')}`", reason])
            rows.append(
                [f"`anthropic` {v}", f"`{sends}`", label, str(c.run), str(c.passed), str(len(c.failed)),
                 str(explained), str(c.skipped)]
            )
    lines = table(["SDK", "sends", "file", "run", "passed", "failed", "explained", "skipped"], rows)
    lines += ["", "Failures and why:", ""]
    lines += table(["SDK", "test", "why"], failures) if failures else ["None."]
    return lines, unexplained


def suites_section(directory: str) -> List[str]:
    if not os.path.isdir(directory):
        return ["Not run with this report (run `sdk-tests/run.sh` first; `scripts/test.sh` does)."]
    rows: List[List[str]] = []
    names = sorted(os.listdir(directory))
    for name in names:
        m = re.fullmatch(r"python-anthropic-(.+)\.xml", name)
        if m:
            cases = list(ET.parse(os.path.join(directory, name)).getroot().iter("testcase"))
            c = count(cases, [node_id(x)[1] for x in cases])
            rows.append(["`anthropic` (Python) " + m.group(1), "`sdk-tests/python`", str(c.run), str(c.passed),
                         str(len(c.failed)), str(c.skipped)])
    if "node.xml" in names:
        # One top-level suite per TypeScript SDK generation, named `@anthropic-ai/sdk V`.
        for suite in ET.parse(os.path.join(directory, "node.xml")).getroot().findall("testsuite"):
            cases = list(suite.iter("testcase"))
            c = count(cases, [x.get("name", "") for x in cases])
            rows.append([f"`{suite.get('name')}` (TypeScript)", "`sdk-tests/node`", str(c.run), str(c.passed),
                         str(len(c.failed)), str(c.skipped)])
    return table(["SDK", "suite", "run", "passed", "failed", "skipped"], rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    for name in ("official", "suites", "explained", "differences", "typescript", "out"):
        ap.add_argument(f"--{name}", required=True)
    args = ap.parse_args()

    entries = load_explained(args.explained)
    official, unexplained = official_section(args.official, entries)
    with open(args.differences, encoding="utf-8") as f:
        differences = f.read().rstrip("\n")
    with open(args.typescript, encoding="utf-8") as f:
        typescript = f.read().rstrip("\n")

    lines = [
        "# Conformance report",
        "",
        "Written by `scripts/conformance.sh`, which CI runs after the SDK suites (`scripts/test.sh`);",
        "regenerate it rather than editing it. Failure explanations live in",
        "`scripts/conformance-explained.txt`, the differences below in `scripts/conformance/differences.md`.",
        "",
        "## The official Python SDK's own batch tests",
        "",
        "`tests/api_resources/messages/test_batches.py` and `tests/api_resources/beta/messages/test_batches.py`",
        "from the `anthropic` source distribution on PyPI at each pinned release, run with the SDK's own",
        "`tests/conftest.py` and pytest settings against a real batchd. The tests were written for a mock",
        "server that answers any id, so their placeholders are replaced by real objects",
        "(`scripts/conformance/placeholders.py`): `\"message_batch_id\"` by a batch in the state the test",
        "needs (in progress for cancel, ended for delete, any for retrieve), `after_id`/`before_id` by two",
        "existing batches, the beta `\"string\"` by `message-batches-2024-09-24`. The user-profile id is kept",
        "(batchd does not check its shape); the workspace id the tests send is the test key's workspace.",
        "The results tests mock the network (respx) and run unchanged. Nothing a test asserts is changed.",
        "A test runs once per client flavour the SDK parametrizes (`loose`, `strict`, and `aiohttp` for",
        "the async client), so each is counted that many times.",
        "",
        *official,
        "",
        "## The project's own SDK suites",
        "",
        "`sdk-tests/` (see its README): every test under each SDK generation, with expectations that",
        "depend on the `anthropic-version` asserted per version.",
        "",
        *suites_section(args.suites),
        "",
        "## The TypeScript SDK's own tests",
        "",
        "The `@anthropic-ai/sdk` npm package ships no tests; they live only in the SDK's GitHub",
        "repository, which CI does not fetch, so they are not part of this run.",
        "",
        typescript,
        "",
        differences,
        "",
    ]
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))

    for entry in unexplained:
        print(f"unexplained failure: {entry}", file=sys.stderr)
    if unexplained:
        print(
            "conformance: failing tests without an explanation in scripts/conformance-explained.txt",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
