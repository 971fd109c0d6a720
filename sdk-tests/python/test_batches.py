"""batchd against the official Anthropic Python SDK: Message Batches.

Every test runs through the SDK exactly as a user would (`client.messages.batches.*` and
`client.beta.messages.batches.*`); a few also look at the raw HTTP exchange where the API's documented wire details matter to
the SDK.

Workspaces are shared by all tests (and by the node suite that runs afterwards), so list tests
only reason about the batches they created themselves, which are always the newest ones in
workspace A on the FAST server because tests run one after another.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List

import urllib.request

import anthropic
import pytest

from conftest import API_VERSION, MODEL, Namespace

BATCH_KEYS = {
    "id",
    "type",
    "processing_status",
    "request_counts",
    "ended_at",
    "created_at",
    "expires_at",
    "archived_at",
    "cancel_initiated_at",
    "results_url",
}
COUNT_KEYS = ("processing", "succeeded", "errored", "canceled", "expired")
IN_PROGRESS_DELETE = "In progress batches cannot be deleted. Consider canceling the batch instead."


# ---------------------------------------------------------------------------------------------
# helpers


def requests_for(n: int, prefix: str = "req") -> List[Dict[str, Any]]:
    return [
        {
            "custom_id": f"{prefix}-{i}",
            "params": {
                "model": MODEL,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": f"hello number {i}"}],
            },
        }
        for i in range(n)
    ]


def unknown_batch_id() -> str:
    return "msgbatch_01" + uuid.uuid4().hex[:22]


def wait_ended(resource: Any, batch_id: str, timeout: float = 30.0) -> Any:
    """Polls `retrieve` until the batch has ended; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        batch = resource.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        if time.monotonic() > deadline:
            pytest.fail(
                f"batch {batch_id} still {batch.processing_status!r} after {timeout}s "
                f"(counts {batch.request_counts.to_dict()})"
            )
        time.sleep(0.1)


async def await_ended(resource: Any, batch_id: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = await resource.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        if time.monotonic() > deadline:
            pytest.fail(f"batch {batch_id} still {batch.processing_status!r} after {timeout}s")
        await asyncio.sleep(0.1)


def counts(batch: Any) -> Dict[str, int]:
    return {k: getattr(batch.request_counts, k) for k in COUNT_KEYS}


def assert_batch_shape(ns: Namespace, batch: Any) -> None:
    """Spec 3.1: all ten keys present (nulls as null), right types, 24 h expiry."""
    assert isinstance(batch, ns.Batch), type(batch)
    assert set(batch.to_dict().keys()) == BATCH_KEYS, batch.to_dict()
    assert batch.type == "message_batch"
    assert isinstance(batch.id, str) and batch.id.startswith("msgbatch_") and len(batch.id) > len("msgbatch_")
    assert batch.processing_status in ("in_progress", "canceling", "ended")
    assert isinstance(batch.request_counts, ns.RequestCounts)
    assert set(batch.request_counts.to_dict().keys()) == set(COUNT_KEYS), batch.request_counts.to_dict()
    for key in COUNT_KEYS:
        value = getattr(batch.request_counts, key)
        assert type(value) is int and value >= 0, (key, value)
    assert isinstance(batch.created_at, datetime) and batch.created_at.tzinfo is not None, batch.created_at
    assert isinstance(batch.expires_at, datetime) and batch.expires_at.tzinfo is not None, batch.expires_at
    assert batch.expires_at - batch.created_at == timedelta(hours=24)
    for key in ("ended_at", "archived_at", "cancel_initiated_at"):
        value = getattr(batch, key)
        assert value is None or (isinstance(value, datetime) and value.tzinfo is not None), (key, value)
    assert batch.results_url is None or isinstance(batch.results_url, str)


def assert_error_envelope(err: anthropic.APIStatusError, status: int, error_type: str, message: str) -> None:
    """Spec 2.3: {"type":"error","error":{"type","message"},"request_id"} and a request-id header."""
    assert err.status_code == status, (err.status_code, err.body)
    assert isinstance(err.body, dict), err.body
    assert err.body.get("type") == "error", err.body
    assert err.body["error"]["type"] == error_type, err.body
    assert err.body["error"]["message"] == message, err.body
    assert isinstance(err.request_id, str) and err.request_id.startswith("req_"), err.request_id
    assert err.body.get("request_id") == err.request_id, (err.body, err.request_id)


def all_ids(resource: Any, limit: int = 100, **params: Any) -> List[str]:
    """Every id the SDK's auto-pagination yields, failing (instead of hanging) if it never stops."""
    ids: List[str] = []
    for batch in resource.list(limit=limit, **params):
        ids.append(batch.id)
        assert len(ids) <= 5000, "auto-pagination does not terminate"
    return ids


def collect_pages(first_page: Any, max_pages: int = 1000) -> List[Any]:
    # The guard allows for every batch the suites before (each SDK generation in turn) left in
    # workspace A.
    pages = []
    for page in first_page.iter_pages():
        pages.append(page)
        assert len(pages) <= max_pages, "auto-pagination does not terminate"
    return pages


def create_n(resource: Any, n: int, prefix: str) -> List[str]:
    """Creates n one-request batches, oldest first, and returns their ids in creation order."""
    ids = []
    for i in range(n):
        ids.append(resource.create(requests=requests_for(1, f"{prefix}{i}")).id)
        time.sleep(0.002)  # distinct created_at even with a coarse clock
    return ids


def raw_results(client: anthropic.Anthropic, ns: Namespace, batch_id: str) -> Any:
    """GET /v1/messages/batches/{id}/results directly (as the Go SDK does), through the SDK's HTTP layer."""
    return client.get(
        f"/v1/messages/batches/{batch_id}/results",
        cast_to=str,
        options=ns.raw_options(),
    )


# ---------------------------------------------------------------------------------------------
# create / retrieve


def test_create_and_retrieve(fast_a: anthropic.Anthropic, fast_url: str, ns: Namespace) -> None:
    res = ns.of(fast_a)
    before = datetime.now(timezone.utc)
    raw = res.with_raw_response.create(requests=requests_for(3, "cr"))
    assert raw.status_code == 200  # the API answers 200, not 201
    assert raw.headers.get("content-type", "").startswith("application/json"), raw.headers
    assert raw.headers.get("request-id", "").startswith("req_"), raw.headers
    batch = raw.parse()

    assert_batch_shape(ns, batch)
    assert batch.processing_status == "in_progress"
    assert counts(batch) == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    assert batch.ended_at is None
    assert batch.archived_at is None
    assert batch.cancel_initiated_at is None
    assert batch.results_url is None
    assert abs((batch.created_at - before).total_seconds()) < 60, (batch.created_at, before)

    again = res.retrieve(batch.id)
    assert_batch_shape(ns, again)
    assert again.id == batch.id
    assert again.created_at == batch.created_at
    assert again.expires_at == batch.expires_at

    ended = wait_ended(res, batch.id)
    assert_batch_shape(ns, ended)
    assert counts(ended) == {"processing": 0, "succeeded": 3, "errored": 0, "canceled": 0, "expired": 0}
    assert ended.ended_at is not None and ended.ended_at >= ended.created_at
    assert ended.cancel_initiated_at is None
    # results_url is absolute and points at this server, not at api.anthropic.com.
    assert ended.results_url is not None
    assert ended.results_url.startswith(f"{fast_url}/v1/messages/batches/{batch.id}/results"), ended.results_url


def test_create_validation_errors(fast_a: anthropic.Anthropic, ns: Namespace) -> None:
    """Spec 4.1: the envelope is validated synchronously with Pydantic-style texts; nothing is created."""
    res = ns.of(fast_a)
    newest_before = res.list(limit=1).data[0].id if res.list(limit=1).data else None
    ok = requests_for(1, "v")[0]
    cases = [
        (
            [dict(ok, custom_id="dup"), dict(ok, custom_id="dup")],
            "requests: custom_id's must be unique within a batch. Duplicate custom_id found: dup",
        ),
        ([], "requests: List should have at least 1 item after validation, not 0"),
        (
            [dict(ok, custom_id="has space")],
            "requests.0.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'",
        ),
        ([dict(ok, custom_id="x" * 65)], "requests.0.custom_id: String should have at most 64 characters"),
    ]
    for requests, message in cases:
        with pytest.raises(anthropic.BadRequestError) as info:
            res.create(requests=requests)
        assert_error_envelope(info.value, 400, "invalid_request_error", message)
    newest_after = res.list(limit=1).data[0].id if res.list(limit=1).data else None
    assert newest_after == newest_before, "a rejected create left a batch behind"


# ---------------------------------------------------------------------------------------------
# list + auto-pagination


def test_list_forward_auto_pagination(fast_a: anthropic.Anthropic, ns: Namespace) -> None:
    res = ns.of(fast_a)
    mine = create_n(res, 5, "lf")
    newest_first = list(reversed(mine))

    first = res.list(limit=2)
    assert [b.id for b in first.data] == newest_first[:2]
    assert first.has_more is True
    assert first.first_id == newest_first[0]
    assert first.last_id == newest_first[1]

    pages = collect_pages(first)
    assert len(pages) >= 3  # at least our 5 batches, two per page
    for i, page in enumerate(pages):
        assert 1 <= len(page.data) <= 2, [b.id for b in page.data]
        assert page.first_id == page.data[0].id
        assert page.last_id == page.data[-1].id
        assert page.has_more is (i < len(pages) - 1), (i, len(pages), page.has_more)
        for b in page.data:
            assert isinstance(b, ns.Batch)

    # The SDK's item iterator walks the same pages: newest first, no repeats, ours on top.
    ids = all_ids(res, limit=2)
    assert ids == [b.id for p in pages for b in p.data]
    assert ids[:5] == newest_first
    assert len(set(ids)) == len(ids), "a batch was listed twice"
    created = [b.created_at for p in pages for b in p.data]
    assert created == sorted(created, reverse=True), "list is not ordered newest created_at first"


def test_list_backward_auto_pagination(fast_a: anthropic.Anthropic, ns: Namespace) -> None:
    """`before_id` pages towards newer batches; the SDK follows `first_id` and must stop."""
    res = ns.of(fast_a)
    m = create_n(res, 5, "lb")  # m[0] oldest … m[4] newest, and nothing in the workspace is newer

    first = res.list(before_id=m[0], limit=2)
    assert [b.id for b in first.data] == [m[2], m[1]]  # the two closest to m[0], still newest-first
    assert first.has_more is True
    assert first.first_id == m[2] and first.last_id == m[1]

    pages = collect_pages(first)
    assert [[b.id for b in p.data] for p in pages] == [[m[2], m[1]], [m[4], m[3]]]
    assert [p.has_more for p in pages] == [True, False]

    # Plain iteration (what users write) yields the same and terminates.
    assert all_ids(res, limit=2, before_id=m[0]) == [m[2], m[1], m[4], m[3]]


def test_list_cursors_edges(fast_a: anthropic.Anthropic, ns: Namespace) -> None:
    res = ns.of(fast_a)
    m = create_n(res, 3, "le")

    after = res.list(after_id=m[2], limit=2)
    assert [b.id for b in after.data] == [m[1], m[0]]
    assert after.first_id == m[1] and after.last_id == m[0]

    empty = res.list(before_id=m[2], limit=2)  # nothing is newer than the newest batch
    assert empty.data == []
    assert empty.has_more is False
    assert empty.first_id is None and empty.last_id is None
    assert all_ids(res, limit=2, before_id=m[2]) == []

    one = res.list(limit=1)
    assert [b.id for b in one.data] == [m[2]]
    assert one.has_more is True


# ---------------------------------------------------------------------------------------------
# results


def test_results_stream_succeeded_and_errored(fast_a: anthropic.Anthropic, ns: Namespace) -> None:
    res = ns.of(fast_a)
    requests = requests_for(3, "ok")
    requests.append({"custom_id": "no-messages", "params": {"model": MODEL, "max_tokens": 64}})
    batch = res.create(requests=requests)
    assert batch.processing_status == "in_progress"  # params are validated late, at processing
    assert batch.request_counts.processing == 4

    ended = wait_ended(res, batch.id)
    assert counts(ended) == {"processing": 0, "succeeded": 3, "errored": 1, "canceled": 0, "expired": 0}

    rows = list(res.results(batch.id))
    assert sorted(r.custom_id for r in rows) == sorted(r["custom_id"] for r in requests)
    by_id = {r.custom_id: r for r in rows}
    message_ids = set()
    for i in range(3):
        row = by_id[f"ok-{i}"]
        assert isinstance(row, ns.Individual), type(row)
        assert isinstance(row.result, ns.Succeeded), type(row.result)
        assert row.result.type == "succeeded"
        msg = row.result.message
        assert msg.type == "message"
        assert msg.role == "assistant"
        assert isinstance(msg.id, str) and msg.id.startswith("msg_"), msg.id
        message_ids.add(msg.id)
        assert isinstance(msg.model, str) and msg.model
        assert msg.stop_reason in ("end_turn", "max_tokens", "stop_sequence"), msg.stop_reason
        assert len(msg.content) >= 1 and msg.content[0].type == "text"
        assert f"hello number {i}" in msg.content[0].text, msg.content[0].text
        assert msg.usage.service_tier == "batch"
        assert type(msg.usage.input_tokens) is int and msg.usage.input_tokens > 0
        assert type(msg.usage.output_tokens) is int and msg.usage.output_tokens > 0
    assert len(message_ids) == 3, "message ids are not unique"

    bad = by_id["no-messages"]
    assert isinstance(bad.result, ns.Errored), type(bad.result)
    assert bad.result.type == "errored"
    assert bad.result.error.type == "error"
    assert bad.result.error.error.type == "invalid_request_error"
    assert bad.result.error.error.message == "messages: Field required"


DEFERRED_ERRORS = {
    # custom_id: (params patch, errored message) -- params are validated when processed
    "zero-max-tokens": ({"max_tokens": 0}, "max_tokens: must be greater than or equal to 1"),
    "stream-true": ({"stream": True}, '"stream=True" is not supported in the Message Batches API'),
    "no-max-tokens": ({"max_tokens": None}, "max_tokens: Field required"),
    "extra-key": ({"not_a_param": 1}, "not_a_param: Extra inputs are not permitted"),
}


def test_results_deferred_validation_errors(fast_a: anthropic.Anthropic) -> None:
    """Spec 4.1/8.6/8.7: invalid params are accepted at create time and come back as errored rows
    (batches are stricter than sync Messages), with `request_id: null` for pre-execution failures."""
    res = fast_a.messages.batches
    requests = []
    for custom_id, (patch, _) in DEFERRED_ERRORS.items():
        params = dict(requests_for(1)[0]["params"], **patch)
        params = {k: v for k, v in params.items() if v is not None}
        requests.append({"custom_id": custom_id, "params": params})
    batch = res.create(requests=requests)
    assert batch.processing_status == "in_progress"
    n = len(requests)
    ended = wait_ended(res, batch.id)
    assert counts(ended) == {"processing": 0, "succeeded": 0, "errored": n, "canceled": 0, "expired": 0}
    rows = {r.custom_id: r for r in res.results(batch.id)}
    assert sorted(rows) == sorted(DEFERRED_ERRORS)
    for custom_id, (_, message) in DEFERRED_ERRORS.items():
        result = rows[custom_id].result
        assert result.type == "errored", (custom_id, result)
        assert result.error.type == "error"
        assert result.error.error.type == "invalid_request_error", (custom_id, result.error)
        assert result.error.error.message == message, (custom_id, result.error.error.message)
        assert result.error.request_id is None, (custom_id, result.error.request_id)
        assert "usage" not in result.to_dict()


# Params whose fate depends on the batch's `anthropic-version`: 2026-10-21 removes the sampling
# parameters (at any value) and refuses a document block in an assistant turn.
VERSIONED_PARAMS = {
    "temperature": ({"temperature": 1.0}, "temperature: Extra inputs are not permitted"),
    "top-p": ({"top_p": 0.5}, "top_p: Extra inputs are not permitted"),
    "top-k": ({"top_k": 5}, "top_k: Extra inputs are not permitted"),
    "assistant-document": (
        {
            "messages": [
                {"role": "user", "content": "hello"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
                    ],
                },
                {"role": "user", "content": "go on"},
            ]
        },
        "messages.1.content.0: document blocks are not allowed in assistant messages",
    ),
}


def test_results_follow_the_sdks_api_version(fast_a: anthropic.Anthropic, ns: Namespace) -> None:
    res = ns.of(fast_a)
    raw = res.with_raw_response.create(
        requests=[{"custom_id": "plain", "params": requests_for(1)[0]["params"]}]
        + [
            {"custom_id": custom_id, "params": dict(requests_for(1)[0]["params"], **patch)}
            for custom_id, (patch, _) in VERSIONED_PARAMS.items()
        ]
    )
    assert raw.http_request.headers.get("anthropic-version") == API_VERSION
    # The key travels as this generation sends it (Bearer from 2.0), and batchd took it that way.
    if int(anthropic.__version__.split(".")[0]) >= 2:
        assert raw.http_request.headers.get("authorization") == f"Bearer {fast_a.api_key}"
    else:
        assert raw.http_request.headers.get("x-api-key") == fast_a.api_key
    ended = wait_ended(res, raw.parse().id)
    rows = {r.custom_id: r.result for r in res.results(ended.id)}
    assert rows.pop("plain").type == "succeeded"
    for custom_id, (_, message) in VERSIONED_PARAMS.items():
        result = rows[custom_id]
        if API_VERSION == "2026-10-21":
            assert result.type == "errored", (custom_id, result)
            assert result.error.error.type == "invalid_request_error", (custom_id, result.error)
            assert result.error.error.message == message, (custom_id, result.error.error.message)
        else:
            assert API_VERSION == "2023-06-01", API_VERSION
            assert result.type == "succeeded", (custom_id, result)


def test_results_jsonl_wire_format(fast_a: anthropic.Anthropic, key_a: str, ns: Namespace) -> None:
    """Spec 4.6/7.4: application/x-jsonl, one compact object per line, no blank lines."""
    res = ns.of(fast_a)
    batch = res.create(requests=requests_for(4, "wire"))
    ended = wait_ended(res, batch.id)
    headers = {"x-api-key": key_a, "anthropic-version": "2023-06-01", "accept": "application/binary"}
    if ns.beta:
        headers["anthropic-beta"] = "message-batches-2024-09-24"
    with urllib.request.urlopen(urllib.request.Request(ended.results_url, headers=headers), timeout=30) as resp:
        assert resp.status == 200
        assert resp.headers.get("content-type", "").startswith("application/x-jsonl"), dict(resp.headers)
        assert resp.headers.get("request-id", "").startswith("req_"), dict(resp.headers)
        body = resp.read().decode("utf-8")
    lines = body[:-1].split("\n") if body.endswith("\n") else body.split("\n")
    assert len(lines) == 4, repr(body)
    for line in lines:
        assert line.strip() == line and line, repr(line)
        row = json.loads(line)
        assert set(row) == {"custom_id", "result"}
        assert row["result"]["type"] == "succeeded"
    assert sorted(json.loads(l)["custom_id"] for l in lines) == [f"wire-{i}" for i in range(4)]


def test_results_large_stream(fast_a: anthropic.Anthropic, ns: Namespace) -> None:
    """Many rows: the SDK's JSONL decoder must see every line whole across network chunks."""
    res = ns.of(fast_a)
    n = 300
    batch = res.create(requests=requests_for(n, "big"))
    ended = wait_ended(res, batch.id, timeout=60)
    assert counts(ended) == {"processing": 0, "succeeded": n, "errored": 0, "canceled": 0, "expired": 0}
    rows = list(res.results(batch.id))
    assert len(rows) == n
    assert sorted(r.custom_id for r in rows) == sorted(f"big-{i}" for i in range(n))
    assert all(r.result.type == "succeeded" for r in rows)
    assert len({r.result.message.id for r in rows}) == n


# ---------------------------------------------------------------------------------------------
# delete


def test_delete_ended_batch(fast_a: anthropic.Anthropic, ns: Namespace) -> None:
    res = ns.of(fast_a)
    batch = res.create(requests=requests_for(1, "del"))
    wait_ended(res, batch.id)

    deleted = res.delete(batch.id)
    assert isinstance(deleted, ns.Deleted), type(deleted)
    assert deleted.type == "message_batch_deleted"
    assert deleted.id == batch.id
    assert deleted.to_dict() == {"id": batch.id, "type": "message_batch_deleted"}

    with pytest.raises(anthropic.NotFoundError) as info:
        res.retrieve(batch.id)
    assert_error_envelope(info.value, 404, "not_found_error", f"Message Batch {batch.id} not found.")
    with pytest.raises(anthropic.NotFoundError) as info:
        res.delete(batch.id)
    assert_error_envelope(info.value, 404, "not_found_error", f"Message Batch {batch.id} not found.")
    with pytest.raises(anthropic.NotFoundError):
        list(res.results(batch.id))
    assert batch.id not in all_ids(res)


# ---------------------------------------------------------------------------------------------
# SLOW server: in-progress behaviour and cancel


def test_in_progress_retrieve_and_results(slow_a: anthropic.Anthropic, track_slow: Any, ns: Namespace) -> None:
    res = ns.of(slow_a)
    t0 = time.monotonic()
    batch = res.create(requests=requests_for(3, "ip"))
    track_slow(res, batch.id)
    try:
        # 1.3 s in, the first request has been answered (1 s mock latency), but the counts only
        # move when the whole batch ends (the documented behaviour).
        time.sleep(max(0.0, 1.3 - (time.monotonic() - t0)))
        raw = res.with_raw_response.retrieve(batch.id)
        polled = raw.parse()
        assert polled.processing_status == "in_progress"
        assert counts(polled) == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        assert polled.results_url is None and polled.ended_at is None
        assert raw.headers.get("retry-after") == "10", dict(raw.headers)

        # The SDK refuses client-side while results_url is null …
        with pytest.raises(anthropic.AnthropicError) as info:
            list(res.results(batch.id))
        assert not isinstance(info.value, anthropic.APIStatusError)
        assert "No `results_url`" in str(info.value) and "in_progress" in str(info.value)

        # … and the endpoint itself answers 404 "has no available results.".
        with pytest.raises(anthropic.NotFoundError) as info:
            raw_results(slow_a, ns, batch.id)
        assert_error_envelope(
            info.value, 404, "not_found_error", f"Message Batch {batch.id} has no available results."
        )
        assert info.value.response.headers.get("x-should-retry") == "false", dict(info.value.response.headers)
    finally:
        res.cancel(batch.id)


def test_delete_in_progress_is_400(slow_a: anthropic.Anthropic, track_slow: Any, ns: Namespace) -> None:
    res = ns.of(slow_a)
    batch = res.create(requests=requests_for(3, "dip"))
    track_slow(res, batch.id)
    try:
        with pytest.raises(anthropic.BadRequestError) as info:
            res.delete(batch.id)
        assert_error_envelope(info.value, 400, "invalid_request_error", IN_PROGRESS_DELETE)
        still = res.retrieve(batch.id)  # not deleted
        assert still.id == batch.id and still.processing_status == "in_progress"
    finally:
        res.cancel(batch.id)


def test_cancel_then_ended_with_canceled_rows(slow_a: anthropic.Anthropic, track_slow: Any, ns: Namespace) -> None:
    res = ns.of(slow_a)
    batch = res.create(requests=requests_for(20, "cx"))
    track_slow(res, batch.id)
    assert batch.processing_status == "in_progress"

    canceling = res.cancel(batch.id)
    assert_batch_shape(ns, canceling)
    assert canceling.id == batch.id
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None and canceling.cancel_initiated_at >= batch.created_at
    assert canceling.ended_at is None
    assert canceling.results_url is None
    assert counts(canceling) == {"processing": 20, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}

    ended = wait_ended(res, batch.id, timeout=45)
    assert_batch_shape(ns, ended)
    c = counts(ended)
    assert c["processing"] == 0
    assert c["canceled"] > 0, c
    assert c["expired"] == 0 and c["errored"] == 0, c
    assert sum(c.values()) == 20, c
    assert ended.cancel_initiated_at == canceling.cancel_initiated_at
    assert ended.ended_at is not None and ended.ended_at >= ended.cancel_initiated_at
    assert ended.results_url is not None

    rows = list(res.results(batch.id))
    assert sorted(r.custom_id for r in rows) == sorted(f"cx-{i}" for i in range(20))
    canceled = [r for r in rows if r.result.type == "canceled"]
    succeeded = [r for r in rows if r.result.type == "succeeded"]
    assert len(canceled) == c["canceled"]
    assert len(succeeded) == c["succeeded"]
    for row in canceled:
        assert isinstance(row.result, ns.Canceled), type(row.result)
        assert row.result.to_dict() == {"type": "canceled"}

    deleted = res.delete(batch.id)  # ended via cancel: deletable
    assert deleted.type == "message_batch_deleted"


# ---------------------------------------------------------------------------------------------
# errors


def test_not_found_unknown_id(fast_a: anthropic.Anthropic, ns: Namespace) -> None:
    res = ns.of(fast_a)
    bid = unknown_batch_id()
    expected = f"Message Batch {bid} not found."
    for call in (res.retrieve, res.cancel, res.delete):
        with pytest.raises(anthropic.NotFoundError) as info:
            call(bid)
        assert_error_envelope(info.value, 404, "not_found_error", expected)
        assert info.value.response.headers.get("x-should-retry") == "false"
    with pytest.raises(anthropic.NotFoundError) as info:
        list(res.results(bid))
    assert_error_envelope(info.value, 404, "not_found_error", expected)
    with pytest.raises(anthropic.NotFoundError) as info:
        raw_results(fast_a, ns, bid)
    assert_error_envelope(info.value, 404, "not_found_error", expected)


def test_authentication_error(fast_url: str, ns: Namespace) -> None:
    with anthropic.Anthropic(base_url=fast_url, api_key="sk-sdk-wrong", max_retries=0, timeout=30) as bad:
        res = ns.of(bad)
        calls = [
            lambda: res.retrieve(unknown_batch_id()),
            lambda: res.list(limit=2),
            lambda: res.create(requests=requests_for(1, "auth")),
        ]
        for call in calls:
            with pytest.raises(anthropic.AuthenticationError) as info:
                call()
            assert_error_envelope(info.value, 401, "authentication_error", "invalid x-api-key")
            assert info.value.response.headers.get("x-should-retry") == "false"


def test_workspace_isolation(fast_a: anthropic.Anthropic, fast_b: anthropic.Anthropic, ns: Namespace) -> None:
    res_a, res_b = ns.of(fast_a), ns.of(fast_b)
    batch = res_a.create(requests=requests_for(1, "iso"))
    wait_ended(res_a, batch.id)
    expected = f"Message Batch {batch.id} not found."

    for call in (res_b.retrieve, res_b.cancel, res_b.delete):
        with pytest.raises(anthropic.NotFoundError) as info:
            call(batch.id)
        assert_error_envelope(info.value, 404, "not_found_error", expected)
    with pytest.raises(anthropic.NotFoundError) as info:
        list(res_b.results(batch.id))
    assert_error_envelope(info.value, 404, "not_found_error", expected)
    with pytest.raises(anthropic.NotFoundError) as info:
        raw_results(fast_b, ns, batch.id)
    assert_error_envelope(info.value, 404, "not_found_error", expected)

    assert batch.id not in all_ids(res_b)
    assert batch.id in all_ids(res_a)
    assert res_a.retrieve(batch.id).processing_status == "ended"  # B's delete did nothing


def test_workspace_id_response_header(
    fast_a: anthropic.Anthropic, fast_b: anthropic.Anthropic, fast_url: str, ns: Namespace
) -> None:
    """Spec 2.2: every response after successful auth carries `anthropic-workspace-id` (the SDKs
    surface it: TS `_workspace_id`/`err.workspaceID`, Python >= 2 `err.workspace_id`); a request
    that fails authentication does not."""
    res_a, res_b = ns.of(fast_a), ns.of(fast_b)
    raw = res_a.with_raw_response.create(requests=requests_for(1, "wsid"))
    ws_a = raw.headers.get("anthropic-workspace-id")
    assert ws_a, f"no anthropic-workspace-id on POST /v1/messages/batches: {dict(raw.headers)}"
    batch = raw.parse()
    assert batch._request_id == raw.headers.get("request-id")
    assert res_a.with_raw_response.retrieve(batch.id).headers.get("anthropic-workspace-id") == ws_a
    ws_b = res_b.with_raw_response.list(limit=1).headers.get("anthropic-workspace-id")
    assert ws_b and ws_b != ws_a, (ws_a, ws_b)
    with pytest.raises(anthropic.NotFoundError) as info:
        res_b.retrieve(batch.id)
    assert info.value.response.headers.get("anthropic-workspace-id") == ws_b
    with anthropic.Anthropic(base_url=fast_url, api_key="sk-sdk-wrong", max_retries=0, timeout=30) as bad:
        with pytest.raises(anthropic.AuthenticationError) as info:
            ns.of(bad).retrieve(batch.id)
        assert info.value.response.headers.get("anthropic-workspace-id") is None


def test_beta_header_values(fast_a: anthropic.Anthropic) -> None:
    """Spec 2.1/4.1: extra betas ride along on batch calls; an unknown beta name is a 400."""
    res = fast_a.beta.messages.batches
    batch = res.create(requests=requests_for(1, "bh"), betas=["output-300k-2026-03-24"])
    assert batch.processing_status == "in_progress"
    assert res.retrieve(batch.id, betas=["output-300k-2026-03-24"]).id == batch.id
    with pytest.raises(anthropic.BadRequestError) as info:
        res.create(requests=requests_for(1, "bh"), betas=["invalid-beta-name"])
    assert_error_envelope(
        info.value,
        400,
        "invalid_request_error",
        "Unexpected value(s) `invalid-beta-name` for the `anthropic-beta` header. Please consult our "
        "documentation at docs.claude.com or try again without the header.",
    )


def test_list_default_page_size(fast_a: anthropic.Anthropic, ns: Namespace) -> None:
    """Spec 4.3: limit defaults to 20."""
    res = ns.of(fast_a)
    total = len(all_ids(res))
    if total <= 20:
        create_n(res, 21 - total, "dflt")
        total = 21
    page = res.list()
    assert len(page.data) == 20
    assert page.has_more is True


# ---------------------------------------------------------------------------------------------
# AsyncAnthropic


def test_async_client_flow(fast_url: str, key_a: str, ns: Namespace) -> None:
    async def flow() -> None:
        async with anthropic.AsyncAnthropic(base_url=fast_url, api_key=key_a, max_retries=0, timeout=30) as client:
            res = ns.of(client)
            created = []
            for i in range(3):
                created.append(await res.create(requests=requests_for(2, f"as{i}")))
            for b in created:
                assert_batch_shape(ns, b)
                assert b.processing_status == "in_progress" and b.request_counts.processing == 2

            ended = await await_ended(res, created[-1].id)
            assert counts(ended) == {"processing": 0, "succeeded": 2, "errored": 0, "canceled": 0, "expired": 0}

            rows = [r async for r in await res.results(ended.id)]
            assert sorted(r.custom_id for r in rows) == ["as2-0", "as2-1"]
            for r in rows:
                assert isinstance(r, ns.Individual)
                assert r.result.type == "succeeded"
                assert r.result.message.usage.service_tier == "batch"

            listed = []
            async for b in res.list(limit=2):
                listed.append(b.id)
                if len(listed) == 3:
                    break
            assert listed == [b.id for b in reversed(created)]

            backwards = []
            async for b in res.list(limit=1, before_id=created[0].id):
                backwards.append(b.id)
                assert len(backwards) <= 10, "async auto-pagination does not terminate"
            assert backwards == [created[1].id, created[2].id]

            for b in created:
                await await_ended(res, b.id)
                deleted = await res.delete(b.id)
                assert isinstance(deleted, ns.Deleted) and deleted.id == b.id

            with pytest.raises(anthropic.NotFoundError) as info:
                await res.retrieve(created[0].id)
            assert_error_envelope(info.value, 404, "not_found_error", f"Message Batch {created[0].id} not found.")

    asyncio.run(flow())


# ---------------------------------------------------------------------------------------------
# re-run (batchd's extension)


def test_rerun_answer_reads_as_a_message_batch(fast_a: anthropic.Anthropic) -> None:
    requests = requests_for(2, "rr")
    requests.append({"custom_id": "rr-bad", "params": {"model": MODEL, "max_tokens": 64}})
    batch = fast_a.messages.batches.create(requests=requests)
    wait_ended(fast_a.messages.batches, batch.id)
    # The SDK's own model, through its generic call: the extra key must not break it.
    rerun = fast_a.post(
        f"/v1/messages/batches/{batch.id}/rerun",
        body={"only": ["errored"]},
        cast_to=anthropic.types.messages.MessageBatch,
    )
    assert isinstance(rerun, anthropic.types.messages.MessageBatch)
    assert rerun.type == "message_batch"
    assert rerun.request_counts.processing == 1
    assert (rerun.model_extra or {}).get("rerun_of") == batch.id
    ended = wait_ended(fast_a.messages.batches, rerun.id)
    assert counts(ended)["errored"] == 1
    rows = list(fast_a.messages.batches.results(rerun.id))
    assert [r.custom_id for r in rows] == ["rr-bad"]
