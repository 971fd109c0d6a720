"""batchd serving https itself (`--tls-cert` / `--tls-key`), through the official Python SDK.

run.sh starts the TLS server with the test certificates of crates/batchd/tests/fixtures/tls and
hands over its address and the test CA:

    BATCHD_TLS_URL  https://127.0.0.1:PORT
    BATCHD_TLS_CA   the CA certificate (PEM) that signed the server's certificate
"""

from __future__ import annotations

import ssl

import anthropic

from conftest import MODEL, _env
from test_batches import wait_ended


def test_create_retrieve_and_results_over_https(key_a: str) -> None:
    url = _env("BATCHD_TLS_URL").rstrip("/")
    assert url.startswith("https://"), url
    trust = ssl.create_default_context(cafile=_env("BATCHD_TLS_CA"))
    http_client = anthropic.DefaultHttpxClient(verify=trust)
    with anthropic.Anthropic(
        base_url=url, api_key=key_a, max_retries=0, timeout=30.0, http_client=http_client
    ) as client:
        requests = [
            {
                "custom_id": f"tls-{i}",
                "params": {
                    "model": MODEL,
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"over TLS {i}"}],
                },
            }
            for i in range(3)
        ]
        created = client.messages.batches.create(requests=requests)
        batch = wait_ended(client.messages.batches, created.id)
        assert batch.id == created.id
        assert batch.request_counts.succeeded == 3
        # Derived from the Host header, the URL keeps the scheme the client used.
        assert batch.results_url == f"{url}/v1/messages/batches/{batch.id}/results"
        results = list(client.messages.batches.results(batch.id))
        assert sorted(r.custom_id for r in results) == ["tls-0", "tls-1", "tls-2"]
        assert all(r.result.type == "succeeded" for r in results)
