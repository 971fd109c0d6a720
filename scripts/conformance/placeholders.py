"""Replaces the placeholder literals of an official SDK batch test file with real objects.

Usage: placeholders.py FILE... (rewritten in place; a summary line per file on stdout).

Only argument literals change, each into a call of batchd_objects (see there):

- `"message_batch_id"` (positional or `message_batch_id=`): an in-progress batch in a test whose
  name says cancel, an ended one where it says delete, any batch elsewhere;
- `after_id="after_id"`, `before_id="before_id"`: two existing batches;
- `"string"` inside `betas=[...]`: a published beta.

Tests that mock the network (a `respx_mock` parameter) are left as they are: their placeholders
name the mocked routes. Assertions are never touched: nothing inside an `assert` statement is
rewritten, and only the keywords above are (never `match=` or a decorator's arguments). A file in
which nothing was replaced fails the run, so a new SDK release that renames its placeholders is
noticed rather than run against nothing.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from typing import List, Tuple

IMPORT = "import batchd_objects  # placeholders replaced by scripts/conformance/placeholders.py\n"


def batch_call(test_name: str) -> str:
    if "cancel" in test_name:
        return "batchd_objects.in_progress_batch()"
    if "delete" in test_name:
        return "batchd_objects.ended_batch()"
    return "batchd_objects.batch()"


def replacements(tree: ast.Module) -> List[Tuple[ast.Constant, str]]:
    found: List[Tuple[ast.Constant, str]] = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or not fn.name.startswith("test_"):
            continue
        if any(a.arg == "respx_mock" for a in fn.args.args):
            continue
        asserted = {id(n) for a in ast.walk(fn) if isinstance(a, ast.Assert) for n in ast.walk(a)}
        for call in ast.walk(fn):
            if not isinstance(call, ast.Call) or id(call) in asserted:
                continue
            for arg in call.args:
                if isinstance(arg, ast.Constant) and arg.value == "message_batch_id":
                    found.append((arg, batch_call(fn.name)))
            for kw in call.keywords:
                value = kw.value
                if kw.arg == "message_batch_id" and isinstance(value, ast.Constant) and value.value == "message_batch_id":
                    found.append((value, batch_call(fn.name)))
                elif kw.arg in ("after_id", "before_id") and isinstance(value, ast.Constant) and value.value == kw.arg:
                    found.append((value, f"batchd_objects.{kw.arg}()"))
                elif kw.arg == "betas" and isinstance(value, ast.List):
                    for item in value.elts:
                        if isinstance(item, ast.Constant) and item.value == "string":
                            found.append((item, "batchd_objects.BETA"))
    return found


def rewrite(path: str) -> Counter:
    with open(path, encoding="utf-8") as f:
        source = f.read()
    lines = source.splitlines(keepends=True)
    found = replacements(ast.parse(source))
    # From the end, so earlier offsets stay valid; each literal sits on one line.
    for node, expression in sorted(found, key=lambda p: (p[0].lineno, p[0].col_offset), reverse=True):
        assert node.lineno == node.end_lineno, (path, node.lineno)
        raw = lines[node.lineno - 1].encode("utf-8")
        raw = raw[: node.col_offset] + expression.encode("utf-8") + raw[node.end_col_offset :]
        lines[node.lineno - 1] = raw.decode("utf-8")
    rewritten = "".join(lines)
    # After `from __future__` imports, which must come first.
    tree = ast.parse(rewritten)
    after = 0
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            after = stmt.end_lineno or after
    out = rewritten.splitlines(keepends=True)
    out.insert(after, IMPORT)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(out))
    return Counter(expression for _, expression in found)


def main(paths: List[str]) -> int:
    status = 0
    for path in paths:
        counts = rewrite(path)
        summary = ", ".join(f"{n} x {e}" for e, n in sorted(counts.items()))
        print(f"{path}: {summary or 'nothing replaced'}")
        if not counts:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
