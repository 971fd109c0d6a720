"""batchd's rate limit against the official Python SDK's built-in retries.

The LIMITED server allows 60 batch API calls a minute per workspace: a burst of 60, then one a
second, so a refused call carries `retry-after: 1`, which the SDK waits out before retrying.
Only this module uses that server.
"""

from __future__ import annotations

import os
import time
from typing import List

import anthropic
import pytest


def _limited_url() -> str:
    url = os.environ.get("BATCHD_LIMITED_URL")
    if not url:
        pytest.exit("BATCHD_LIMITED_URL is not set: run the suite through sdk-tests/run.sh", returncode=2)
    return url.rstrip("/")


def _spend_the_burst(client: anthropic.Anthropic) -> anthropic.RateLimitError:
    """Calls until the server refuses one, and returns that refusal."""
    for _ in range(200):
        try:
            client.messages.batches.list(limit=1)
        except anthropic.RateLimitError as err:
            return err
    raise AssertionError("200 calls and no 429 from a server limited to 60 a minute")


def test_sdk_retries_get_through_a_rate_limit(key_a: str) -> None:
    url = _limited_url()
    statuses: List[int] = []
    # The SDK's own HTTP client class: httpx in 0.x and 1.x, httpx2 from 2.0.
    http = anthropic.DefaultHttpxClient(event_hooks={"response": [lambda r: statuses.append(r.status_code)]})
    with anthropic.Anthropic(base_url=url, api_key=key_a, max_retries=0, timeout=30) as raw, anthropic.Anthropic(
        base_url=url, api_key=key_a, max_retries=2, timeout=30, http_client=http
    ) as sdk:
        # A machine that stalls for a second between the refusal and the next call lets that
        # call through without a retry; try again then, so the retry is seen.
        for _ in range(3):
            refused = _spend_the_burst(raw)
            headers = refused.response.headers
            assert refused.status_code == 429
            assert refused.body["error"]["type"] == "rate_limit_error"
            assert headers["retry-after"] == "1"
            assert headers["x-should-retry"] == "true"
            assert headers["anthropic-ratelimit-requests-limit"] == "60"
            assert headers["anthropic-ratelimit-requests-remaining"] == "0"

            statuses.clear()
            started = time.monotonic()
            page = sdk.messages.batches.list(limit=1)
            elapsed = time.monotonic() - started
            assert page.data is not None
            assert statuses[-1] == 200
            assert elapsed < 5, elapsed
            if statuses[0] == 429:
                assert 0.5 <= elapsed, f"the SDK retried after {elapsed:.2f}s, before retry-after"
                return
    raise AssertionError(f"the SDK never met a 429 to retry: {statuses}")
