// batchd's OpenAI Batch and Files surface against the official `openai` TypeScript SDK: the Node
// counterpart of sdk-tests/python/test_openai.py.
//
// Started by sdk-tests/run.sh (the same servers and keys as batches.test.mjs): FAST for batches
// that should finish at once, SLOW (one request a second) for cancel. Clients never retry, so every
// SDK exception class shows up on the first answer.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import OpenAI, { toFile } from 'openai';

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suite through sdk-tests/run.sh`);
  return value.replace(/\/+$/, '');
}

const FAST_URL = env('BATCHD_FAST_URL');
const SLOW_URL = env('BATCHD_SLOW_URL');
const KEY_A = env('BATCHD_KEY_A');
const KEY_B = env('BATCHD_KEY_B');
const MODEL = 'gpt-4o-mini';
const ENDPOINT = '/v1/chat/completions';
const FINAL = ['completed', 'failed', 'expired', 'cancelled'];
const SDK_VERSION = JSON.parse(
  readFileSync(new URL('../node_modules/openai/package.json', import.meta.url)),
).version;

const make = (url, key) => new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0, timeout: 30_000 });
const fast = make(FAST_URL, KEY_A);
const slow = make(SLOW_URL, KEY_A);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every batch created on SLOW, cancelled at the end if still running (SLOW works on one request at
// a time: leftovers would slow down whatever runs next).
const slowCreated = [];
after(async () => {
  for (const id of slowCreated) {
    try {
      const b = await slow.batches.retrieve(id);
      if (!FINAL.includes(b.status) && b.status !== 'cancelling') await slow.batches.cancel(id);
    } catch {
      // best effort
    }
  }
});

function line(customId, text, extra = {}) {
  return {
    custom_id: customId,
    method: 'POST',
    url: ENDPOINT,
    body: { model: MODEL, messages: [{ role: 'user', content: text }], ...extra },
  };
}

const jsonl = (lines) => Buffer.from(lines.map((l) => JSON.stringify(l) + '\n').join(''));

async function upload(client, lines, name = 'input.jsonl') {
  return client.files.create({ file: await toFile(jsonl(lines), name), purpose: 'batch' });
}

async function create(client, lines, extra = {}) {
  const file = await upload(client, lines);
  return client.batches.create({ input_file_id: file.id, endpoint: ENDPOINT, completion_window: '24h', ...extra });
}

async function waitFinal(client, id, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const batch = await client.batches.retrieve(id);
    if (FINAL.includes(batch.status)) return batch;
    assert.ok(Date.now() < deadline, `batch did not finish: ${JSON.stringify(batch)}`);
    await sleep(100);
  }
}

async function readLines(client, fileId) {
  const text = await (await client.files.content(fileId)).text();
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l));
}

// Awaits `promise`, which must reject with an instance of `cls`, and returns the error.
async function rejectsWith(promise, cls) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err?.constructor?.name}: ${err}`);
    return err;
  }
  assert.fail(`expected ${cls.name}, the call succeeded`);
}

test(`openai ${SDK_VERSION}: files create, retrieve, list, content and delete`, async () => {
  const content = jsonl([line('a', 'hi'), line('b', 'there')]);
  const { data: file, request_id } = await fast.files
    .create({ file: await toFile(content, 'roundtrip.jsonl'), purpose: 'batch' })
    .withResponse();
  assert.match(file.id, /^file-/);
  assert.deepEqual(
    [file.object, file.purpose, file.filename, file.bytes, file.status],
    ['file', 'batch', 'roundtrip.jsonl', content.length, 'processed'],
  );
  assert.equal(file.expires_at, file.created_at + 30 * 24 * 3600);
  assert.match(request_id, /^req_/);

  assert.deepEqual(await fast.files.retrieve(file.id), file);
  const listed = [];
  for await (const f of fast.files.list({ purpose: 'batch' })) listed.push(f.id);
  assert.ok(listed.includes(file.id));
  const downloaded = Buffer.from(await (await fast.files.content(file.id)).arrayBuffer());
  assert.deepEqual(downloaded, content);
  // A stored file is already processed: the wait returns at once.
  assert.equal((await fast.files.waitForProcessing(file.id, { pollInterval: 100 })).status, 'processed');

  const deleted = await fast.files.delete(file.id);
  assert.deepEqual([deleted.id, deleted.deleted, deleted.object], [file.id, true, 'file']);
  const err = await rejectsWith(fast.files.retrieve(file.id), OpenAI.NotFoundError);
  assert.equal(err.status, 404);
  assert.equal(err.param, 'id');
  assert.equal(err.error.message, `No such File object: ${file.id}`);

  // This SDK writes the form in the order of the caller's object, so here the file comes
  // before `purpose` and `expires_after`: the file is stored with both all the same.
  const notes = await fast.files.create({
    file: await toFile(Buffer.from('plain notes'), 'notes.txt'),
    purpose: 'user_data',
    expires_after: { anchor: 'created_at', seconds: 3600 },
  });
  assert.deepEqual([notes.purpose, notes.filename], ['user_data', 'notes.txt']);
  assert.equal(notes.expires_at, notes.created_at + 3600);
});

test(`openai ${SDK_VERSION}: a batch completes and its output file is read`, async () => {
  const batch = await create(
    fast,
    Array.from({ length: 5 }, (_, i) => line(`q${i}`, `question ${i}`)),
    { metadata: { run: 'sdk' } },
  );
  assert.equal(batch.status, 'validating');
  assert.match(batch.id, /^batch_/);
  assert.equal(batch.request_counts.total, 0);
  assert.deepEqual(batch.metadata, { run: 'sdk' });

  const done = await waitFinal(fast, batch.id);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  const counts = done.request_counts;
  assert.deepEqual([counts.total, counts.completed, counts.failed], [5, 5, 0]);
  assert.ok(done.completed_at !== null && done.finalizing_at !== null);
  assert.equal(done.error_file_id, null);
  assert.ok(done.output_file_id);
  assert.equal(done.model, MODEL);

  assert.equal((await fast.files.retrieve(done.output_file_id)).purpose, 'batch_output');
  const lines = await readLines(fast, done.output_file_id);
  assert.deepEqual(
    lines.map((l) => l.custom_id),
    Array.from({ length: 5 }, (_, i) => `q${i}`),
  );
  lines.forEach((item, i) => {
    assert.match(item.id, /^batch_req_/);
    assert.equal(item.error, null);
    assert.equal(item.response.status_code, 200);
    assert.equal(item.response.body.object, 'chat.completion');
    assert.equal(item.response.body.choices[0].message.content, `You said: question ${i}`);
  });
  // The batch's usage adds up its answers' tokens.
  const sum = (key) => lines.reduce((n, item) => n + item.response.body.usage[key], 0);
  assert.deepEqual(
    [done.usage.input_tokens, done.usage.output_tokens, done.usage.total_tokens],
    [sum('prompt_tokens'), sum('completion_tokens'), sum('total_tokens')],
  );
  assert.ok(done.usage.input_tokens > 0 && done.usage.output_tokens > 0);
});

test(`openai ${SDK_VERSION}: lines the backend refuses go to the error file`, async () => {
  const batch = await create(fast, [line('good', 'hello'), line('refused', 'hello', { n: 0 })]);
  const done = await waitFinal(fast, batch.id);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.deepEqual([done.request_counts.completed, done.request_counts.failed], [1, 1]);
  const [good, ...moreGood] = await readLines(fast, done.output_file_id);
  assert.equal(moreGood.length, 0);
  assert.equal(good.custom_id, 'good');
  const [refused, ...moreRefused] = await readLines(fast, done.error_file_id);
  assert.equal(moreRefused.length, 0);
  assert.equal(refused.custom_id, 'refused');
  assert.equal(refused.error, null);
  assert.equal(refused.response.status_code, 400);
  assert.equal(refused.response.body.error.type, 'invalid_request_error');
});

test(`openai ${SDK_VERSION}: a file with bad lines fails the batch with every error`, async () => {
  const bytes = Buffer.concat([jsonl([line('a', 'x')]), Buffer.from('not json\n')]);
  const file = await fast.files.create({ file: await toFile(bytes, 'bad.jsonl'), purpose: 'batch' });
  const batch = await fast.batches.create({ input_file_id: file.id, endpoint: ENDPOINT, completion_window: '24h' });
  const failed = await waitFinal(fast, batch.id);
  assert.equal(failed.status, 'failed');
  assert.notEqual(failed.failed_at, null);
  assert.equal(failed.errors.data.length, 1);
  const [error] = failed.errors.data;
  assert.deepEqual([error.code, error.line, error.param], ['invalid_json_line', 2, null]);
  assert.equal(error.message, 'This line is not parseable as valid JSON.');
});

test(`openai ${SDK_VERSION}: list auto-paginates newest first`, async () => {
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await create(fast, [line('x', 'hi')])).id);
  const seen = [];
  for await (const b of fast.batches.list({ limit: 1 })) seen.push(b.id);
  assert.equal(new Set(seen).size, seen.length, 'auto-pagination repeated a batch');
  assert.deepEqual(
    seen.filter((id) => ids.includes(id)),
    [...ids].reverse(),
  );
  const page = await fast.batches.list({ limit: 2 });
  assert.equal(page.data.length, 2);
  assert.equal(page.has_more, true);
  assert.equal(page.hasNextPage(), true);
});

test(`openai ${SDK_VERSION}: cancel ends cancelled with batch_cancelled lines`, async () => {
  const batch = await create(slow, Array.from({ length: 4 }, (_, i) => line(`c${i}`, 'slow')));
  slowCreated.push(batch.id);
  const cancelling = await slow.batches.cancel(batch.id);
  assert.equal(cancelling.status, 'cancelling');
  assert.notEqual(cancelling.cancelling_at, null);
  const done = await waitFinal(slow, batch.id, 30_000);
  assert.equal(done.status, 'cancelled', JSON.stringify(done));
  assert.notEqual(done.cancelled_at, null);
  const unsent = await readLines(slow, done.error_file_id);
  assert.equal(unsent.length, 4 - done.request_counts.completed);
  for (const item of unsent) {
    assert.equal(item.response, null);
    assert.equal(item.error.code, 'batch_cancelled');
  }
  // Cancelling again is allowed and changes nothing.
  assert.equal((await slow.batches.cancel(batch.id)).status, 'cancelled');
});

test(`openai ${SDK_VERSION}: errors map to the SDK exception classes`, async () => {
  const unknown = 'batch_00000000000081900000000000000000';
  const notFound = await rejectsWith(fast.batches.retrieve(unknown), OpenAI.NotFoundError);
  assert.equal(notFound.error.message, `No batch found with id '${unknown}'.`);
  assert.match(notFound.requestID, /^req_/);

  const bad = await rejectsWith(
    fast.batches.create({ input_file_id: 'file-x', endpoint: '/v1/invalid/endpoint', completion_window: '24h' }),
    OpenAI.BadRequestError,
  );
  assert.deepEqual([bad.status, bad.code, bad.param], [400, 'invalid_value', 'endpoint']);

  const window = await rejectsWith(
    fast.batches.create({ input_file_id: 'file-x', endpoint: ENDPOINT, completion_window: '1h' }),
    OpenAI.BadRequestError,
  );
  assert.equal(window.error.message, "Invalid value: '1h'. Supported values are: '24h'.");

  const notJsonl = await rejectsWith(
    fast.files.create({ file: await toFile(Buffer.from('a,b\n'), 'input.csv'), purpose: 'batch' }),
    OpenAI.BadRequestError,
  );
  assert.equal(notJsonl.error.message, 'Invalid file format for Batch API. Must be .jsonl');

  const stranger = make(FAST_URL, 'sk-not-a-key-at-all');
  const auth = await rejectsWith(stranger.batches.list(), OpenAI.AuthenticationError);
  assert.deepEqual([auth.status, auth.code], [401, 'invalid_api_key']);

  const done = await waitFinal(fast, (await create(fast, [line('x', 'hi')])).id);
  const conflict = await rejectsWith(fast.batches.cancel(done.id), OpenAI.ConflictError);
  assert.equal(conflict.status, 409);
  assert.equal(conflict.error.message, "Cannot cancel a batch with status 'completed'.");
});

test(`openai ${SDK_VERSION}: the workspaces of the keys stay apart`, async () => {
  const file = await upload(fast, [line('a', 'hi')]);
  const batch = await fast.batches.create({ input_file_id: file.id, endpoint: ENDPOINT, completion_window: '24h' });
  const other = make(FAST_URL, KEY_B);
  await rejectsWith(other.files.retrieve(file.id), OpenAI.NotFoundError);
  await rejectsWith(other.batches.retrieve(batch.id), OpenAI.NotFoundError);
});
