"""One 100,000-request batch against a running batchd: create, wait for the end, download results.

Usage: bench_mock_batch.py BASE_URL [N] [PAD]; the key is sk-bench (see bench-mock.sh)."""
import json, time, sys, urllib.request
base = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
H = {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01", "content-type": "application/json"}
reqs = [{"custom_id": f"req-{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 16,
         "messages": [{"role": "user", "content": f"Question number {i}? " + "x" * int(sys.argv[3] if len(sys.argv) > 3 else 0)}]}} for i in range(n)]
body = json.dumps({"requests": reqs}).encode()
print(f"body {len(body)/1e6:.1f} MB")
t0 = time.time()
r = urllib.request.urlopen(urllib.request.Request(base + "/v1/messages/batches", data=body, headers=H))
b = json.loads(r.read()); t1 = time.time()
print(f"create: {t1-t0:.2f}s")
while True:
    r = urllib.request.urlopen(urllib.request.Request(base + "/v1/messages/batches/" + b["id"], headers=H))
    s = json.loads(r.read())
    if s["processing_status"] == "ended": break
    time.sleep(0.05)
t2 = time.time()
print(f"processing after create: {t2-t1:.2f}s = {n/(t2-t1):.0f} req/s; counts {s['request_counts']}")
r = urllib.request.urlopen(urllib.request.Request(base + "/v1/messages/batches/" + b["id"] + "/results", headers=H))
total = 0
while True:
    c = r.read(1 << 20)
    if not c: break
    total += len(c)
t3 = time.time()
print(f"results: {total/1e6:.1f} MB in {t3-t2:.2f}s = {total/1e6/(t3-t2):.0f} MB/s")
