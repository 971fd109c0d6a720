"""Shared fixtures for the batchd official-SDK conformance suite (Python).

The servers are started by sdk-tests/run.sh and handed over through environment variables:

    BATCHD_FAST_URL   server with no mock latency (batches end almost at once)
    BATCHD_SLOW_URL   server with --mock-latency 1s --mock-concurrency 1 --concurrency 1
    BATCHD_LIMITED_URL  server with --rate-limit 60 (used only by test_quotas.py)
    BATCHD_KEY_A      key of workspace A (on both servers)
    BATCHD_KEY_B      key of workspace B (on both servers)
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, List, Tuple

import anthropic
import pytest

MODEL = "claude-haiku-4-5"
# The `anthropic-version` this SDK sends (2023-06-01 up to 1.x, 2026-10-21 from 2.0); a batch gets
# the rules of the version it was created with, so some expectations depend on it.
API_VERSION: str = anthropic.Anthropic(api_key="unused", base_url="http://127.0.0.1:9").default_headers[
    "anthropic-version"
]


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the suite through sdk-tests/run.sh", returncode=2)
    return value


@pytest.fixture(scope="session")
def fast_url() -> str:
    return _env("BATCHD_FAST_URL").rstrip("/")


@pytest.fixture(scope="session")
def slow_url() -> str:
    return _env("BATCHD_SLOW_URL").rstrip("/")


@pytest.fixture(scope="session")
def key_a() -> str:
    return _env("BATCHD_KEY_A")


@pytest.fixture(scope="session")
def key_b() -> str:
    return _env("BATCHD_KEY_B")


def make_client(base_url: str, api_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=30.0)


@pytest.fixture(scope="session")
def fast_a(fast_url: str, key_a: str) -> Iterator[anthropic.Anthropic]:
    with make_client(fast_url, key_a) as client:
        yield client


@pytest.fixture(scope="session")
def fast_b(fast_url: str, key_b: str) -> Iterator[anthropic.Anthropic]:
    with make_client(fast_url, key_b) as client:
        yield client


@pytest.fixture(scope="session")
def slow_created() -> List[Tuple[Any, str]]:
    """(resource, batch id) of every batch created on the SLOW server, for cleanup."""
    return []


@pytest.fixture(scope="session")
def slow_a(slow_url: str, key_a: str, slow_created: List[Tuple[Any, str]]) -> Iterator[anthropic.Anthropic]:
    with make_client(slow_url, key_a) as client:
        yield client
        # The SLOW server works on one request at a time: leave nothing queued behind us, or
        # later suites (node) would wait for our leftovers.
        for _resource, batch_id in slow_created:
            try:
                if client.messages.batches.retrieve(batch_id).processing_status == "in_progress":
                    client.messages.batches.cancel(batch_id)
            except anthropic.APIError:
                pass


class Namespace:
    """`client.messages.batches` or `client.beta.messages.batches`, plus the model types it returns."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.beta = name == "beta"
        if self.beta:
            from anthropic.types.beta.messages import (
                BetaDeletedMessageBatch,
                BetaMessageBatch,
                BetaMessageBatchCanceledResult,
                BetaMessageBatchErroredResult,
                BetaMessageBatchIndividualResponse,
                BetaMessageBatchRequestCounts,
                BetaMessageBatchSucceededResult,
            )

            self.Batch = BetaMessageBatch
            self.Deleted = BetaDeletedMessageBatch
            self.RequestCounts = BetaMessageBatchRequestCounts
            self.Individual = BetaMessageBatchIndividualResponse
            self.Succeeded = BetaMessageBatchSucceededResult
            self.Errored = BetaMessageBatchErroredResult
            self.Canceled = BetaMessageBatchCanceledResult
        else:
            from anthropic.types.messages import (
                DeletedMessageBatch,
                MessageBatch,
                MessageBatchCanceledResult,
                MessageBatchErroredResult,
                MessageBatchIndividualResponse,
                MessageBatchRequestCounts,
                MessageBatchSucceededResult,
            )

            self.Batch = MessageBatch
            self.Deleted = DeletedMessageBatch
            self.RequestCounts = MessageBatchRequestCounts
            self.Individual = MessageBatchIndividualResponse
            self.Succeeded = MessageBatchSucceededResult
            self.Errored = MessageBatchErroredResult
            self.Canceled = MessageBatchCanceledResult

    def of(self, client: Any) -> Any:
        return client.beta.messages.batches if self.beta else client.messages.batches

    def raw_options(self) -> dict:
        """Request options that make a hand-made request look like the SDK's own for this namespace."""
        if self.beta:
            return {"params": {"beta": "true"}, "headers": {"anthropic-beta": "message-batches-2024-09-24"}}
        return {}

    def __repr__(self) -> str:
        return self.name


@pytest.fixture(params=["messages", "beta"], ids=["messages", "beta"])
def ns(request: pytest.FixtureRequest) -> Namespace:
    return Namespace(request.param)


@pytest.fixture
def track_slow(slow_created: List[Tuple[Any, str]]) -> Callable[[Any, str], str]:
    def track(resource: Any, batch_id: str) -> str:
        slow_created.append((resource, batch_id))
        return batch_id

    return track
