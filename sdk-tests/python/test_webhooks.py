"""batchd's completion webhooks as a receiver sees them, verified with the `standardwebhooks`
package (the Standard Webhooks reference library) and nothing of batchd's.

A receiver on a loopback port 0 collects what the FAST server (run with `--webhook-allow-http
--webhook-allow-private`, see run.sh) POSTs to it. One delivery verifies with the secret the
create answer showed; after `rotate_secret`, a delivery made during the overlap carries two
signatures and verifies with the old secret and with the new one alike.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Tuple

import anthropic
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import MODEL

Delivery = Tuple[bytes, Dict[str, str]]


class Receiver:
    """A loopback HTTP server that answers 204 to every POST and keeps (body, headers)."""

    def __init__(self) -> None:
        self.got: List[Delivery] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.changed:
                    receiver.got.append((body, dict(self.headers)))
                    receiver.changed.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivery_of(self, batch_id: str, timeout: float = 30.0) -> Delivery:
        """The first delivery whose event is about `batch_id` (other batches of the workspace may
        end meanwhile)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for body, headers in self.got:
                    if json.loads(body)["data"]["id"] == batch_id:
                        return body, headers
                left = deadline - time.monotonic()
                assert left > 0, f"no delivery for {batch_id} in {timeout}s: {len(self.got)} others"
                self.changed.wait(left)


def call(base: str, key: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{base}/v1/batchd/webhooks{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def endpoint(fast_url: str, key_a: str, receiver: Receiver) -> Iterator[Dict[str, Any]]:
    created = call(fast_url, key_a, "POST", "", {"url": receiver.url, "description": "sdk-tests"})
    yield created
    call(fast_url, key_a, "DELETE", f"/{created['id']}")


def end_a_batch(client: anthropic.Anthropic, custom_id: str) -> str:
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": custom_id,
                "params": {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]},
            }
        ]
    )
    return batch.id


def signatures(headers: Dict[str, str]) -> List[str]:
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered["webhook-signature"].split(" ")


def test_a_delivery_verifies_with_the_endpoint_secret(
    fast_a: anthropic.Anthropic, endpoint: Dict[str, Any], receiver: Receiver
) -> None:
    assert endpoint["secret"].startswith("whsec_")
    batch_id = end_a_batch(fast_a, "hook-1")
    body, headers = receiver.delivery_of(batch_id)

    event = Webhook(endpoint["secret"]).verify(body, headers)
    assert event["type"] == "message_batch.ended"
    assert event["id"].startswith("evt_")
    assert {k.lower(): v for k, v in headers.items()}["webhook-id"] == event["id"]
    # The batch as GET returns it, ended.
    data = event["data"]
    assert (data["type"], data["id"], data["processing_status"]) == ("message_batch", batch_id, "ended")
    assert data["request_counts"]["succeeded"] + data["request_counts"]["errored"] == 1
    assert len(signatures(headers)) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(body, headers)
    tampered = body.replace(b"message_batch.ended", b"message_batch.other")
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(tampered, headers)


def test_during_a_rotation_both_secrets_verify(
    fast_url: str, key_a: str, fast_a: anthropic.Anthropic, endpoint: Dict[str, Any], receiver: Receiver
) -> None:
    old = endpoint["secret"]
    rotated = call(fast_url, key_a, "POST", f"/{endpoint['id']}/rotate_secret")
    new = rotated["secret"]
    assert new.startswith("whsec_") and new != old
    assert "secret" not in call(fast_url, key_a, "GET", f"/{endpoint['id']}")

    batch_id = end_a_batch(fast_a, "hook-2")
    body, headers = receiver.delivery_of(batch_id)
    # Standard Webhooks lets a delivery carry several signatures: one per valid secret.
    assert len(signatures(headers)) == 2, headers
    for secret in (old, new):
        event = Webhook(secret).verify(body, headers)
        assert event["type"] == "message_batch.ended" and event["data"]["id"] == batch_id
