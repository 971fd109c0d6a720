"""Real objects on a running batchd for the official SDK test files' placeholders.

The SDK's batch tests are written against a mock server that answers any id: they retrieve,
cancel and delete `"message_batch_id"`, page with `after_id="after_id"`, and send
`betas=["string"]`. scripts/conformance/placeholders.py rewrites those literals into calls of this
module, so each test gets an object in the state it needs: any batch for retrieve, a batch still
in progress for cancel, an ended one for delete, two existing batches as list cursors, and a beta
that exists. Nothing a test asserts is changed.

The server is TEST_API_BASE_URL (what the SDK's conftest reads), with the SDK conftest's key. It
runs with a mock latency (scripts/conformance.sh), so a fresh batch stays in progress long enough
to be canceled; ended batches come from a pool created at once, so the run waits that latency
once rather than once per delete test.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any, Dict, List, Optional

BASE_URL = os.environ.get("TEST_API_BASE_URL", "http://127.0.0.1:4010").rstrip("/")
# The key of the SDK's tests/conftest.py.
API_KEY = "my-anthropic-api-key"
# A published beta that batches accept; the SDK tests' "string" is no beta name.
BETA = "message-batches-2024-09-24"
# Ended batches made at a time; about as many as one test file's delete tests.
POOL_SIZE = 24
ENDED_TIMEOUT_S = 60.0


def _call(method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{BASE_URL}{path}",
        data=data,
        method=method,
        headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _create() -> str:
    params = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    batch = _call("POST", "/v1/messages/batches", {"requests": [{"custom_id": "placeholder", "params": params}]})
    return str(batch["id"])


def _status(batch_id: str) -> str:
    return str(_call("GET", f"/v1/messages/batches/{batch_id}")["processing_status"])


_pool: List[str] = []
_any: List[str] = []
_cursors: List[str] = []


def batch() -> str:
    """A batch in any state (retrieve needs only that it exists)."""
    if not _any:
        _any.append(_create())
    return _any[0]


def in_progress_batch() -> str:
    """A fresh batch, still in progress for the server's mock latency (cancel needs one)."""
    batch_id = _create()
    status = _status(batch_id)
    if status != "in_progress":
        raise RuntimeError(f"{batch_id} is already {status}: the server's mock latency is too short")
    return batch_id


def ended_batch() -> str:
    """An ended batch of its own (delete needs one, and removes it)."""
    if not _pool:
        _pool.extend(_create() for _ in range(POOL_SIZE))
    batch_id = _pool.pop(0)
    deadline = time.monotonic() + ENDED_TIMEOUT_S
    while _status(batch_id) != "ended":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{batch_id} did not end within {ENDED_TIMEOUT_S}s")
        time.sleep(0.1)
    return batch_id


def _ensure_cursors() -> None:
    if not _cursors:
        # Oldest first; the list with both cursors then has one batch between them.
        for _ in range(3):
            _cursors.append(_create())
            time.sleep(0.002)


def after_id() -> str:
    """The newer of two existing batches: the list reads towards older ones from it."""
    _ensure_cursors()
    return _cursors[-1]


def before_id() -> str:
    """The older of two existing batches."""
    _ensure_cursors()
    return _cursors[0]
