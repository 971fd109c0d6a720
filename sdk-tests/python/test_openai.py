"""The official `openai` Python SDK against batchd's OpenAI Batch and Files surface.

Uses the servers run.sh starts (the same keys as the Anthropic suites): FAST for batches that
should finish at once, SLOW (one request a second) for cancel. Clients never retry, so every
SDK exception class shows up on the first answer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, List

import openai
import pytest
from openai import OpenAI

MODEL = "gpt-4o-mini"
REPO = Path(__file__).resolve().parents[2]
QUICKSTART = "http://127.0.0.1:8080"
FINAL = ("completed", "failed", "expired", "cancelled")


def make(url: str, key: str) -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30.0)


@pytest.fixture(scope="module")
def oa_fast(fast_url: str, key_a: str) -> Iterator[OpenAI]:
    with make(fast_url, key_a) as client:
        yield client


@pytest.fixture(scope="module")
def oa_slow(slow_url: str, key_a: str) -> Iterator[OpenAI]:
    with make(slow_url, key_a) as client:
        yield client


def line(custom_id: str, text: str, **extra: Any) -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def jsonl(lines: List[dict]) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in lines).encode()


def upload(client: OpenAI, lines: List[dict], name: str = "input.jsonl") -> Any:
    return client.files.create(file=(name, jsonl(lines)), purpose="batch")


def create(client: OpenAI, lines: List[dict], **extra: Any) -> Any:
    file = upload(client, lines)
    return client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h", **extra
    )


def wait_final(client: OpenAI, batch_id: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in FINAL:
            return batch
        assert time.monotonic() < deadline, f"batch did not finish: {batch}"
        time.sleep(0.1)


def read_lines(client: OpenAI, file_id: str) -> List[dict]:
    return [json.loads(text) for text in client.files.content(file_id).text.splitlines()]


def test_files_create_retrieve_list_content_delete(oa_fast: OpenAI) -> None:
    content = jsonl([line("a", "hi"), line("b", "there")])
    file = oa_fast.files.create(file=("roundtrip.jsonl", content), purpose="batch")
    assert file.id.startswith("file-")
    assert (file.object, file.purpose, file.filename, file.bytes) == ("file", "batch", "roundtrip.jsonl", len(content))
    assert file.status == "processed"
    assert file.expires_at == file.created_at + 30 * 24 * 3600
    assert file._request_id and file._request_id.startswith("req_")

    assert oa_fast.files.retrieve(file.id) == file
    listed = [f.id for f in oa_fast.files.list(purpose="batch")]
    assert file.id in listed
    assert oa_fast.files.content(file.id).content == content
    # `wait_for_processing` returns at once: a stored file is already processed.
    assert oa_fast.files.wait_for_processing(file.id, poll_interval=0.1).status == "processed"

    deleted = oa_fast.files.delete(file.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (file.id, True, "file")
    with pytest.raises(openai.NotFoundError) as err:
        oa_fast.files.retrieve(file.id)
    assert err.value.status_code == 404
    assert err.value.param == "id"
    assert err.value.body["message"] == f"No such File object: {file.id}"
    assert err.value.message.endswith(f"No such File object: {file.id}")


def test_a_batch_completes_and_its_output_file_is_read(oa_fast: OpenAI) -> None:
    batch = create(oa_fast, [line(f"q{i}", f"question {i}") for i in range(5)], metadata={"run": "sdk"})
    assert batch.status == "validating"
    assert batch.id.startswith("batch_")
    assert batch.request_counts is not None and batch.request_counts.total == 0
    assert batch.metadata == {"run": "sdk"}

    done = wait_final(oa_fast, batch.id)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (5, 5, 0)
    assert done.completed_at is not None and done.finalizing_at is not None
    assert done.error_file_id is None and done.output_file_id
    assert done.model == MODEL

    output = oa_fast.files.retrieve(done.output_file_id)
    assert output.purpose == "batch_output"
    lines = read_lines(oa_fast, done.output_file_id)
    assert [item["custom_id"] for item in lines] == [f"q{i}" for i in range(5)]
    for i, item in enumerate(lines):
        assert item["id"].startswith("batch_req_")
        assert item["error"] is None
        assert item["response"]["status_code"] == 200
        body = item["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == f"You said: question {i}"
    # The batch's usage adds up its answers' tokens.
    assert done.usage is not None
    assert done.usage.input_tokens == sum(item["response"]["body"]["usage"]["prompt_tokens"] for item in lines) > 0
    assert done.usage.output_tokens == sum(item["response"]["body"]["usage"]["completion_tokens"] for item in lines) > 0
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens


def test_lines_the_backend_refuses_go_to_the_error_file(oa_fast: OpenAI) -> None:
    batch = create(oa_fast, [line("good", "hello"), line("refused", "hello", n=0)])
    done = wait_final(oa_fast, batch.id)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    (good,) = read_lines(oa_fast, done.output_file_id)
    assert good["custom_id"] == "good"
    (refused,) = read_lines(oa_fast, done.error_file_id)
    assert refused["custom_id"] == "refused"
    assert refused["error"] is None
    assert refused["response"]["status_code"] == 400
    assert refused["response"]["body"]["error"]["type"] == "invalid_request_error"


def test_a_file_with_bad_lines_fails_the_batch_with_every_error(oa_fast: OpenAI) -> None:
    file = oa_fast.files.create(file=("bad.jsonl", jsonl([line("a", "x")]) + b"not json\n"), purpose="batch")
    batch = oa_fast.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    failed = wait_final(oa_fast, batch.id)
    assert failed.status == "failed"
    assert failed.failed_at is not None
    assert failed.errors is not None and failed.errors.data is not None
    (error,) = failed.errors.data
    assert (error.code, error.line, error.param) == ("invalid_json_line", 2, None)
    assert error.message == "This line is not parseable as valid JSON."


def test_list_auto_paginates_newest_first(oa_fast: OpenAI) -> None:
    ids = [create(oa_fast, [line("x", "hi")]).id for _ in range(3)]
    seen = [b.id for b in oa_fast.batches.list(limit=1)]
    assert len(seen) == len(set(seen)), "auto-pagination repeated a batch"
    mine = [i for i in seen if i in ids]
    assert mine == list(reversed(ids))
    page = oa_fast.batches.list(limit=2)
    assert len(page.data) == 2 and page.has_more is True


def test_cancel_ends_cancelled_with_batch_cancelled_lines(oa_slow: OpenAI) -> None:
    batch = create(oa_slow, [line(f"c{i}", "slow") for i in range(4)])
    cancelling = oa_slow.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at is not None
    done = wait_final(oa_slow, batch.id, timeout=30)
    assert done.status == "cancelled", done
    assert done.cancelled_at is not None
    assert done.request_counts is not None
    unsent = read_lines(oa_slow, done.error_file_id)
    assert len(unsent) == 4 - done.request_counts.completed
    for item in unsent:
        assert item["response"] is None
        assert item["error"]["code"] == "batch_cancelled"
    # Cancelling again is allowed and changes nothing.
    assert oa_slow.batches.cancel(batch.id).status == "cancelled"


def test_errors_map_to_the_sdk_exception_classes(oa_fast: OpenAI, fast_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        oa_fast.batches.retrieve("batch_00000000000081900000000000000000")
    assert not_found.value.body["message"] == "No batch found with id 'batch_00000000000081900000000000000000'."
    assert not_found.value.request_id and not_found.value.request_id.startswith("req_")

    with pytest.raises(openai.BadRequestError) as bad:
        oa_fast.batches.create(input_file_id="file-x", endpoint="/v1/invalid/endpoint", completion_window="24h")  # type: ignore[arg-type]
    assert (bad.value.code, bad.value.param) == ("invalid_value", "endpoint")

    with pytest.raises(openai.BadRequestError) as window:
        oa_fast.batches.create(input_file_id="file-x", endpoint="/v1/chat/completions", completion_window="1h")  # type: ignore[arg-type]
    assert window.value.body["message"] == "Invalid value: '1h'. Supported values are: '24h'."

    with pytest.raises(openai.BadRequestError) as not_jsonl:
        oa_fast.files.create(file=("input.csv", b"a,b\n"), purpose="batch")
    assert not_jsonl.value.body["message"] == "Invalid file format for Batch API. Must be .jsonl"

    with make(fast_url, "sk-not-a-key-at-all") as stranger:
        with pytest.raises(openai.AuthenticationError) as auth:
            stranger.batches.list()
    assert auth.value.code == "invalid_api_key"

    done = wait_final(oa_fast, create(oa_fast, [line("x", "hi")]).id)
    with pytest.raises(openai.ConflictError) as conflict:
        oa_fast.batches.cancel(done.id)
    assert conflict.value.body["message"] == "Cannot cancel a batch with status 'completed'."


def test_the_workspaces_of_the_keys_stay_apart(oa_fast: OpenAI, fast_url: str, key_b: str) -> None:
    file = upload(oa_fast, [line("a", "hi")])
    batch = oa_fast.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    with make(fast_url, key_b) as other:
        with pytest.raises(openai.NotFoundError):
            other.files.retrieve(file.id)
        with pytest.raises(openai.NotFoundError):
            other.batches.retrieve(batch.id)


MARKER = re.compile(r"<!-- openai-readme-test: python -->\s*```python\n(.*?)```", re.S)


def test_readme_snippet_runs_as_written(tmp_path: Path) -> None:
    (body,) = MARKER.findall((REPO / "README.md").read_text())
    assert QUICKSTART in body
    source = body.replace(QUICKSTART, os.environ["BATCHD_README_URL"])
    proc = subprocess.run(
        [sys.executable, "-"], cwd=tmp_path, input=source, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3, proc.stdout
    assert all(" You said: What is " in text for text in lines), proc.stdout


def test_a_webhook_event_verifies_with_the_sdk_unwrap(oa_fast: OpenAI, fast_url: str, key_a: str) -> None:
    """batchd's signed `batch.completed` delivery is what `client.webhooks.unwrap()` accepts.

    Needs the FAST server's `--webhook-allow-http --webhook-allow-private`: the receiver is a
    plain-HTTP server on loopback, started here."""
    import http.server
    import threading
    import urllib.request

    received: List[tuple] = []
    arrived = threading.Condition()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with arrived:
                received.append((dict(self.headers.items()), body))
                arrived.notify_all()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"

    def native(method: str, path: str, body: Any = None) -> dict:
        request = urllib.request.Request(
            f"{fast_url}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"x-api-key": key_a, "anthropic-version": "2023-06-01", "content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"{}")

    endpoint = native("POST", "/v1/batchd/webhooks", {"url": url, "events": ["batch.completed"]})
    try:
        batch = create(oa_fast, [line("a", "hi")])
        assert wait_final(oa_fast, batch.id).status == "completed"
        deadline = time.monotonic() + 30
        event = None
        with arrived:
            while event is None:
                for headers, body in received:
                    unwrapped = oa_fast.webhooks.unwrap(body, headers, secret=endpoint["secret"])
                    if unwrapped.data.id == batch.id:
                        event = unwrapped
                if event is None:
                    assert time.monotonic() < deadline, f"no event for {batch.id}: {received}"
                    arrived.wait(timeout=1)
        assert event.type == "batch.completed"
        assert event.data.id == batch.id
        assert event.object == "event"
        # A wrong secret is refused by the SDK.
        headers, body = received[0]
        with pytest.raises(openai.InvalidWebhookSignatureError):
            oa_fast.webhooks.unwrap(body, headers, secret="whsec_" + "A" * 32)
    finally:
        native("DELETE", f"/v1/batchd/webhooks/{endpoint['id']}")
        server.shutdown()
