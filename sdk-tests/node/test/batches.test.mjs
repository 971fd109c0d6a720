// batchd against the official Anthropic TypeScript SDK: Message Batches, once per SDK generation
// (0.x sends `anthropic-version: 2023-06-01`, 1.x `2026-10-21` and its key as a Bearer token).
//
// Started by sdk-tests/run.sh, which provides BATCHD_FAST_URL, BATCHD_SLOW_URL, BATCHD_KEY_A and
// BATCHD_KEY_B. Tests run one after another (node:test's default inside a file), so the batches a
// list test creates are the newest ones in workspace A on the FAST server.

import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Anthropic0 from '@anthropic-ai/sdk';
import Anthropic1 from 'anthropic-sdk-1';

const sdkVersion = (dir) =>
  JSON.parse(readFileSync(new URL(`../node_modules/${dir}/package.json`, import.meta.url))).version;
// Each generation with the `anthropic-version` it sends, which decides the rules its batches get.
const SDKS = [
  { Anthropic: Anthropic0, version: sdkVersion('@anthropic-ai/sdk'), apiVersion: '2023-06-01', bearer: false },
  { Anthropic: Anthropic1, version: sdkVersion('anthropic-sdk-1'), apiVersion: '2026-10-21', bearer: true },
];

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suite through sdk-tests/run.sh`);
  return value.replace(/\/+$/, '');
}

const FAST_URL = env('BATCHD_FAST_URL');
const SLOW_URL = env('BATCHD_SLOW_URL');
const KEY_A = env('BATCHD_KEY_A');
const KEY_B = env('BATCHD_KEY_B');
const MODEL = 'claude-haiku-4-5';
const DAY_MS = 24 * 60 * 60 * 1000;
const BATCH_KEYS = [
  'archived_at',
  'cancel_initiated_at',
  'created_at',
  'ended_at',
  'expires_at',
  'id',
  'processing_status',
  'request_counts',
  'results_url',
  'type',
];
const COUNT_KEYS = ['canceled', 'errored', 'expired', 'processing', 'succeeded'];
const IN_PROGRESS_DELETE = 'In progress batches cannot be deleted. Consider canceling the batch instead.';

const slowA = new Anthropic0({ baseURL: SLOW_URL, apiKey: KEY_A, maxRetries: 0, timeout: 30_000 });

const NAMESPACES = [
  { name: 'messages', beta: false, of: (c) => c.messages.batches },
  { name: 'beta', beta: true, of: (c) => c.beta.messages.batches },
];

// Every batch created on SLOW, canceled at the end if still running (SLOW works on one request at
// a time: leftovers would slow down whatever runs next).
const slowCreated = [];
after(async () => {
  for (const id of slowCreated) {
    try {
      const b = await slowA.messages.batches.retrieve(id);
      if (b.processing_status === 'in_progress') await slowA.messages.batches.cancel(id);
    } catch {
      // best effort
    }
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function requestsFor(n, prefix = 'req') {
  return Array.from({ length: n }, (_, i) => ({
    custom_id: `${prefix}-${i}`,
    params: { model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: `hello number ${i}` }] },
  }));
}

const unknownBatchId = () => 'msgbatch_01' + randomUUID().replace(/-/g, '').slice(0, 22);

async function waitEnded(res, id, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const b = await res.retrieve(id);
    if (b.processing_status === 'ended') return b;
    if (Date.now() > deadline) {
      assert.fail(`batch ${id} still ${b.processing_status} after ${timeoutMs} ms: ${JSON.stringify(b.request_counts)}`);
    }
    await sleep(100);
  }
}

function assertBatchShape(b) {
  assert.deepEqual(Object.keys(b).sort(), BATCH_KEYS, `batch keys: ${JSON.stringify(b)}`);
  assert.equal(b.type, 'message_batch');
  assert.equal(typeof b.id, 'string');
  assert.match(b.id, /^msgbatch_.+/);
  assert.ok(['in_progress', 'canceling', 'ended'].includes(b.processing_status), b.processing_status);
  assert.deepEqual(Object.keys(b.request_counts).sort(), COUNT_KEYS);
  for (const k of COUNT_KEYS) assert.ok(Number.isInteger(b.request_counts[k]) && b.request_counts[k] >= 0, k);
  for (const k of ['created_at', 'expires_at']) {
    assert.equal(typeof b[k], 'string', k);
    assert.ok(!Number.isNaN(Date.parse(b[k])), `${k}=${b[k]}`);
  }
  for (const k of ['ended_at', 'archived_at', 'cancel_initiated_at']) {
    assert.ok(b[k] === null || (typeof b[k] === 'string' && !Number.isNaN(Date.parse(b[k]))), `${k}=${b[k]}`);
  }
  // exactly 24 h; compare the fractional digits too (Date only keeps milliseconds)
  assert.equal(Date.parse(b.expires_at) - Date.parse(b.created_at), DAY_MS, `${b.created_at} -> ${b.expires_at}`);
  const frac = (s) => (s.match(/\.(\d+)/) || [, ''])[1];
  assert.equal(frac(b.expires_at), frac(b.created_at));
  assert.ok(b.results_url === null || typeof b.results_url === 'string');
}

const counts = (b) => ({ ...b.request_counts });
const zeroCounts = (over) => ({ processing: 0, succeeded: 0, errored: 0, canceled: 0, expired: 0, ...over });

// Awaits `promise`, expects it to reject with `cls`, and checks the error envelope.
async function expectApiError(promise, cls, status, type, message) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected ${cls.name}, but the call succeeded`);
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${err?.constructor?.name}: ${err?.message}`);
  assert.equal(err.status, status);
  assert.equal(typeof err.requestID, 'string');
  assert.match(err.requestID, /^req_/);
  assert.equal(err.error?.type, 'error', JSON.stringify(err.error));
  assert.equal(err.error?.error?.type, type, JSON.stringify(err.error));
  assert.equal(err.error?.error?.message, message, JSON.stringify(err.error));
  assert.equal(err.error?.request_id, err.requestID, JSON.stringify(err.error));
  return err;
}

async function allIds(res, query = {}) {
  const ids = [];
  for await (const b of res.list({ limit: 100, ...query })) {
    ids.push(b.id);
    assert.ok(ids.length <= 5000, 'auto-pagination does not terminate');
  }
  return ids;
}

// The guard allows for every batch the suites before (each SDK generation in turn) left in workspace A.
async function collectPages(firstPage, maxPages = 1000) {
  const pages = [];
  for await (const page of firstPage.iterPages()) {
    pages.push(page);
    assert.ok(pages.length <= maxPages, 'auto-pagination does not terminate');
  }
  return pages;
}

async function createN(res, n, prefix) {
  const ids = [];
  for (let i = 0; i < n; i++) {
    ids.push((await res.create({ requests: requestsFor(1, `${prefix}${i}`) })).id);
    await sleep(2);
  }
  return ids;
}

// GET /v1/messages/batches/{id}/results directly, as the Go SDK does, through the SDK's HTTP layer.
function rawResults(c, ns, id) {
  return c.get(`/v1/messages/batches/${id}/results`, {
    query: ns.beta ? { beta: 'true' } : undefined,
    headers: ns.beta ? { 'anthropic-beta': 'message-batches-2024-09-24' } : undefined,
    __binaryResponse: true,
  });
}

for (const { Anthropic, version, apiVersion, bearer } of SDKS) {
  describe(`@anthropic-ai/sdk ${version}`, () => {
    const client = (baseURL, apiKey, options = {}) =>
      new Anthropic({ baseURL, apiKey, maxRetries: 0, timeout: 30_000, ...options });
    const fastA = client(FAST_URL, KEY_A);
    const fastB = client(FAST_URL, KEY_B);
    const slowA = client(SLOW_URL, KEY_A);

    test('a re-run (batchd extension) reads as a batch', async () => {
      const res = fastA.messages.batches;
      const requests = requestsFor(2, 'rr');
      requests.push({ custom_id: 'rr-bad', params: { model: MODEL, max_tokens: 64 } });
      const batch = await res.create({ requests });
      await waitEnded(res, batch.id);
      const rerun = await fastA.post(`/v1/messages/batches/${batch.id}/rerun`, { body: { only: ['errored'] } });
      assert.equal(rerun.rerun_of, batch.id);
      const { rerun_of, ...asBatch } = rerun;
      assertBatchShape(asBatch);
      assert.deepEqual(counts(rerun), zeroCounts({ processing: 1 }));
      const ended = await waitEnded(res, rerun.id);
      assertBatchShape(ended);
      assert.deepEqual(counts(ended), zeroCounts({ errored: 1 }));
      const ids = [];
      for await (const row of await res.results(rerun.id)) ids.push(row.custom_id);
      assert.deepEqual(ids, ['rr-bad']);
    });

    for (const ns of NAMESPACES) {
      describe(`client.${ns.beta ? 'beta.' : ''}messages.batches`, () => {
        test('create and retrieve', async () => {
          const res = ns.of(fastA);
          const before = Date.now();
          const { data: batch, response } = await res.create({ requests: requestsFor(3, 'cr') }).withResponse();
          assert.equal(response.status, 200);
          assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
          assert.match(response.headers.get('request-id') ?? '', /^req_/);
          assertBatchShape(batch);
          assert.equal(batch.processing_status, 'in_progress');
          assert.deepEqual(counts(batch), zeroCounts({ processing: 3 }));
          assert.equal(batch.ended_at, null);
          assert.equal(batch.archived_at, null);
          assert.equal(batch.cancel_initiated_at, null);
          assert.equal(batch.results_url, null);
          assert.ok(Math.abs(Date.parse(batch.created_at) - before) < 60_000, batch.created_at);

          const again = await res.retrieve(batch.id);
          assertBatchShape(again);
          assert.equal(again.id, batch.id);
          assert.equal(again.created_at, batch.created_at);
          assert.equal(again.expires_at, batch.expires_at);

          const ended = await waitEnded(res, batch.id);
          assertBatchShape(ended);
          assert.deepEqual(counts(ended), zeroCounts({ succeeded: 3 }));
          assert.ok(ended.ended_at !== null && Date.parse(ended.ended_at) >= Date.parse(ended.created_at));
          assert.ok(
            ended.results_url?.startsWith(`${FAST_URL}/v1/messages/batches/${batch.id}/results`),
            `results_url=${ended.results_url}`,
          );
        });

        test('create validation errors are synchronous 400s', async () => {
          const res = ns.of(fastA);
          const ok = requestsFor(1, 'v')[0];
          await expectApiError(
            res.create({ requests: [{ ...ok, custom_id: 'dup' }, { ...ok, custom_id: 'dup' }] }),
            Anthropic.BadRequestError,
            400,
            'invalid_request_error',
            "requests: custom_id's must be unique within a batch. Duplicate custom_id found: dup",
          );
          await expectApiError(
            res.create({ requests: [] }),
            Anthropic.BadRequestError,
            400,
            'invalid_request_error',
            'requests: List should have at least 1 item after validation, not 0',
          );
        });

        test('list: forward auto-pagination is newest-first and terminates', async () => {
          const res = ns.of(fastA);
          const mine = await createN(res, 5, 'lf');
          const newestFirst = [...mine].reverse();

          const first = await res.list({ limit: 2 });
          assert.deepEqual(
            first.data.map((b) => b.id),
            newestFirst.slice(0, 2),
          );
          assert.equal(first.has_more, true);
          assert.equal(first.first_id, newestFirst[0]);
          assert.equal(first.last_id, newestFirst[1]);
          assert.equal(first.body.has_more, true, 'has_more must be on the wire');

          const pages = await collectPages(first);
          assert.ok(pages.length >= 3, `pages: ${pages.length}`);
          pages.forEach((p, i) => {
            assert.ok(p.data.length >= 1 && p.data.length <= 2, `page ${i} size ${p.data.length}`);
            assert.equal(p.first_id, p.data[0].id);
            assert.equal(p.last_id, p.data.at(-1).id);
            assert.equal(p.body.has_more, i < pages.length - 1, `page ${i} has_more`);
          });

          const ids = [];
          for await (const b of res.list({ limit: 2 })) {
            ids.push(b.id);
            assert.ok(ids.length <= 5000, 'auto-pagination does not terminate');
          }
          assert.deepEqual(
            ids,
            pages.flatMap((p) => p.data.map((b) => b.id)),
          );
          assert.deepEqual(ids.slice(0, 5), newestFirst);
          assert.equal(new Set(ids).size, ids.length, 'a batch was listed twice');
          const created = pages.flatMap((p) => p.data.map((b) => Date.parse(b.created_at)));
          assert.deepEqual(
            created,
            [...created].sort((a, b) => b - a),
            'list is not ordered newest created_at first',
          );
        });

        test('list: backward auto-pagination with before_id', async () => {
          const res = ns.of(fastA);
          const m = await createN(res, 5, 'lb');

          const first = await res.list({ before_id: m[0], limit: 2 });
          assert.deepEqual(
            first.data.map((b) => b.id),
            [m[2], m[1]],
          );
          assert.equal(first.has_more, true);
          assert.equal(first.first_id, m[2]);
          assert.equal(first.last_id, m[1]);

          const pages = await collectPages(first);
          assert.deepEqual(
            pages.map((p) => p.data.map((b) => b.id)),
            [
              [m[2], m[1]],
              [m[4], m[3]],
            ],
          );
          assert.deepEqual(
            pages.map((p) => p.body.has_more),
            [true, false],
          );

          const ids = [];
          for await (const b of res.list({ before_id: m[0], limit: 2 })) {
            ids.push(b.id);
            assert.ok(ids.length <= 50, 'backward auto-pagination does not terminate');
          }
          assert.deepEqual(ids, [m[2], m[1], m[4], m[3]]);

          const empty = await res.list({ before_id: m[4], limit: 2 });
          assert.deepEqual(empty.data, []);
          assert.equal(empty.body.has_more, false);
          assert.equal(empty.body.first_id, null);
          assert.equal(empty.body.last_id, null);

          const afterPage = await res.list({ after_id: m[4], limit: 2 });
          assert.deepEqual(
            afterPage.data.map((b) => b.id),
            [m[3], m[2]],
          );
        });

        test('results: streaming typed rows, succeeded and errored', async () => {
          const res = ns.of(fastA);
          const requests = requestsFor(3, 'ok');
          requests.push({ custom_id: 'no-messages', params: { model: MODEL, max_tokens: 64 } });
          const batch = await res.create({ requests });
          assert.equal(batch.processing_status, 'in_progress');
          assert.equal(batch.request_counts.processing, 4);

          const ended = await waitEnded(res, batch.id);
          assert.deepEqual(counts(ended), zeroCounts({ succeeded: 3, errored: 1 }));

          const rows = [];
          for await (const r of await res.results(batch.id)) rows.push(r);
          assert.deepEqual(rows.map((r) => r.custom_id).sort(), ['no-messages', 'ok-0', 'ok-1', 'ok-2']);
          const byId = Object.fromEntries(rows.map((r) => [r.custom_id, r]));
          const msgIds = new Set();
          for (let i = 0; i < 3; i++) {
            const row = byId[`ok-${i}`];
            assert.deepEqual(Object.keys(row).sort(), ['custom_id', 'result']);
            assert.equal(row.result.type, 'succeeded');
            const msg = row.result.message;
            assert.equal(msg.type, 'message');
            assert.equal(msg.role, 'assistant');
            assert.match(msg.id, /^msg_/);
            msgIds.add(msg.id);
            assert.equal(msg.content[0].type, 'text');
            assert.ok(msg.content[0].text.includes(`hello number ${i}`), msg.content[0].text);
            assert.ok(['end_turn', 'max_tokens', 'stop_sequence'].includes(msg.stop_reason), msg.stop_reason);
            assert.equal(msg.usage.service_tier, 'batch');
            assert.ok(Number.isInteger(msg.usage.input_tokens) && msg.usage.input_tokens > 0);
            assert.ok(Number.isInteger(msg.usage.output_tokens) && msg.usage.output_tokens > 0);
          }
          assert.equal(msgIds.size, 3, 'message ids are not unique');
          const bad = byId['no-messages'].result;
          assert.equal(bad.type, 'errored');
          assert.equal(bad.error.type, 'error');
          assert.equal(bad.error.error.type, 'invalid_request_error');
          assert.equal(bad.error.error.message, 'messages: Field required');
        });

        test('results: a large stream decodes every line', async () => {
          const res = ns.of(fastA);
          const n = 300;
          const batch = await res.create({ requests: requestsFor(n, 'big') });
          const ended = await waitEnded(res, batch.id, 60_000);
          assert.deepEqual(counts(ended), zeroCounts({ succeeded: n }));
          const rows = [];
          for await (const r of await res.results(batch.id)) rows.push(r);
          assert.equal(rows.length, n);
          assert.equal(new Set(rows.map((r) => r.custom_id)).size, n);
          assert.ok(rows.every((r) => r.result.type === 'succeeded'));
          assert.equal(new Set(rows.map((r) => r.result.message.id)).size, n);
        });

        test('delete an ended batch', async () => {
          const res = ns.of(fastA);
          const batch = await res.create({ requests: requestsFor(1, 'del') });
          await waitEnded(res, batch.id);
          const deleted = await res.delete(batch.id);
          assert.deepEqual(deleted, { id: batch.id, type: 'message_batch_deleted' });
          const notFound = `Message Batch ${batch.id} not found.`;
          await expectApiError(res.retrieve(batch.id), Anthropic.NotFoundError, 404, 'not_found_error', notFound);
          await expectApiError(res.delete(batch.id), Anthropic.NotFoundError, 404, 'not_found_error', notFound);
          await expectApiError(res.results(batch.id), Anthropic.NotFoundError, 404, 'not_found_error', notFound);
          assert.ok(!(await allIds(res)).includes(batch.id));
        });

        test('SLOW: in-progress retrieve, results and delete', async () => {
          const res = ns.of(slowA);
          const batch = await res.create({ requests: requestsFor(3, 'ip') });
          slowCreated.push(batch.id);
          try {
            const { data: polled, response } = await res.retrieve(batch.id).withResponse();
            assert.equal(polled.processing_status, 'in_progress');
            assert.equal(polled.request_counts.processing, 3);
            assert.equal(polled.results_url, null);
            assert.equal(response.headers.get('retry-after'), '10');

            // The SDK refuses client-side while results_url is null …
            await assert.rejects(res.results(batch.id), (e) => {
              assert.ok(!(e instanceof Anthropic.APIError), `unexpected ${e.constructor.name}: ${e.message}`);
              assert.ok(e instanceof Anthropic.AnthropicError);
              assert.match(e.message, /No batch `results_url`; Has it finished processing\? in_progress/);
              return true;
            });
            // … and the endpoint itself answers 404 "has no available results.".
            const err = await expectApiError(
              rawResults(slowA, ns, batch.id),
              Anthropic.NotFoundError,
              404,
              'not_found_error',
              `Message Batch ${batch.id} has no available results.`,
            );
            assert.equal(err.headers.get('x-should-retry'), 'false');

            await expectApiError(
              res.delete(batch.id),
              Anthropic.BadRequestError,
              400,
              'invalid_request_error',
              IN_PROGRESS_DELETE,
            );
            assert.equal((await res.retrieve(batch.id)).processing_status, 'in_progress');
          } finally {
            await res.cancel(batch.id);
          }
        });

        test('SLOW: cancel, then ended with canceled rows', async () => {
          const res = ns.of(slowA);
          const batch = await res.create({ requests: requestsFor(20, 'cx') });
          slowCreated.push(batch.id);
          assert.equal(batch.processing_status, 'in_progress');

          const canceling = await res.cancel(batch.id);
          assertBatchShape(canceling);
          assert.equal(canceling.id, batch.id);
          assert.equal(canceling.processing_status, 'canceling');
          assert.ok(canceling.cancel_initiated_at !== null);
          assert.ok(Date.parse(canceling.cancel_initiated_at) >= Date.parse(batch.created_at));
          assert.equal(canceling.ended_at, null);
          assert.equal(canceling.results_url, null);
          assert.deepEqual(counts(canceling), zeroCounts({ processing: 20 }));

          const ended = await waitEnded(res, batch.id, 45_000);
          const c = counts(ended);
          assert.equal(c.processing, 0);
          assert.ok(c.canceled > 0, JSON.stringify(c));
          assert.equal(c.errored + c.expired, 0, JSON.stringify(c));
          assert.equal(c.succeeded + c.canceled, 20, JSON.stringify(c));
          assert.equal(ended.cancel_initiated_at, canceling.cancel_initiated_at);
          assert.ok(Date.parse(ended.ended_at) >= Date.parse(ended.cancel_initiated_at));

          const rows = [];
          for await (const r of await res.results(batch.id)) rows.push(r);
          assert.deepEqual(
            rows.map((r) => r.custom_id).sort(),
            Array.from({ length: 20 }, (_, i) => `cx-${i}`).sort(),
          );
          const canceled = rows.filter((r) => r.result.type === 'canceled');
          assert.equal(canceled.length, c.canceled);
          assert.equal(rows.filter((r) => r.result.type === 'succeeded').length, c.succeeded);
          for (const r of canceled) assert.deepEqual(r.result, { type: 'canceled' });

          const deleted = await res.delete(batch.id);
          assert.equal(deleted.type, 'message_batch_deleted');
        });

        test('NotFoundError for an unknown id', async () => {
          const res = ns.of(fastA);
          const id = unknownBatchId();
          const msg = `Message Batch ${id} not found.`;
          for (const call of [() => res.retrieve(id), () => res.cancel(id), () => res.delete(id), () => res.results(id)]) {
            const err = await expectApiError(call(), Anthropic.NotFoundError, 404, 'not_found_error', msg);
            assert.equal(err.headers.get('x-should-retry'), 'false');
          }
          await expectApiError(rawResults(fastA, ns, id), Anthropic.NotFoundError, 404, 'not_found_error', msg);
        });

        test('AuthenticationError for a wrong key', async () => {
          const res = ns.of(client(FAST_URL, 'sk-sdk-wrong'));
          for (const call of [
            () => res.retrieve(unknownBatchId()),
            () => res.list({ limit: 2 }),
            () => res.create({ requests: requestsFor(1, 'auth') }),
          ]) {
            const err = await expectApiError(
              call(),
              Anthropic.AuthenticationError,
              401,
              'authentication_error',
              'invalid x-api-key',
            );
            assert.equal(err.headers.get('x-should-retry'), 'false');
          }
        });

        test('anthropic-workspace-id is surfaced on responses after auth', async () => {
          const resA = ns.of(fastA);
          const batch = await resA.create({ requests: requestsFor(1, 'wsid') });
          assert.match(batch._request_id ?? '', /^req_/);
          assert.equal(typeof batch._workspace_id, 'string', `batch._workspace_id = ${batch._workspace_id}`);
          assert.ok(batch._workspace_id.length > 0);
          assert.equal((await resA.retrieve(batch.id))._workspace_id, batch._workspace_id);
          const errB = await expectApiError(
            ns.of(fastB).retrieve(batch.id),
            Anthropic.NotFoundError,
            404,
            'not_found_error',
            `Message Batch ${batch.id} not found.`,
          );
          assert.equal(typeof errB.workspaceID, 'string', `err.workspaceID = ${errB.workspaceID}`);
          assert.notEqual(errB.workspaceID, batch._workspace_id);
          const err401 = await expectApiError(
            ns.of(client(FAST_URL, 'sk-sdk-wrong')).retrieve(batch.id),
            Anthropic.AuthenticationError,
            401,
            'authentication_error',
            'invalid x-api-key',
          );
          assert.equal(err401.workspaceID ?? null, null);
        });

        test("workspace isolation: key B cannot see A's batch", async () => {
          const resA = ns.of(fastA);
          const resB = ns.of(fastB);
          const batch = await resA.create({ requests: requestsFor(1, 'iso') });
          await waitEnded(resA, batch.id);
          const msg = `Message Batch ${batch.id} not found.`;
          for (const call of [
            () => resB.retrieve(batch.id),
            () => resB.cancel(batch.id),
            () => resB.delete(batch.id),
            () => resB.results(batch.id),
            () => rawResults(fastB, ns, batch.id),
          ]) {
            await expectApiError(call(), Anthropic.NotFoundError, 404, 'not_found_error', msg);
          }
          assert.ok(!(await allIds(resB)).includes(batch.id));
          assert.ok((await allIds(resA)).includes(batch.id));
          assert.equal((await resA.retrieve(batch.id)).processing_status, 'ended');
        });
      });
    }

    describe('anthropic-beta header values', () => {
      test('extra betas ride along; an unknown beta is a 400', async () => {
        const res = fastA.beta.messages.batches;
        const batch = await res.create({ requests: requestsFor(1, 'bh'), betas: ['output-300k-2026-03-24'] });
        assert.equal(batch.processing_status, 'in_progress');
        assert.equal((await res.retrieve(batch.id, { betas: ['output-300k-2026-03-24'] })).id, batch.id);
        await expectApiError(
          res.create({ requests: requestsFor(1, 'bh'), betas: ['invalid-beta-name'] }),
          Anthropic.BadRequestError,
          400,
          'invalid_request_error',
          'Unexpected value(s) `invalid-beta-name` for the `anthropic-beta` header. Please consult our ' +
            'documentation at docs.claude.com or try again without the header.',
        );
      });
    });

    describe(`anthropic-version ${apiVersion}`, () => {
      test('the SDK sends it and its batches get its rules', async () => {
        const sent = [];
        const keys = [];
        const watched = client(FAST_URL, KEY_A, {
          fetch: (url, init) => {
            const headers = new Headers(init?.headers);
            sent.push(headers.get('anthropic-version'));
            keys.push(bearer ? headers.get('authorization') : headers.get('x-api-key'));
            return fetch(url, init);
          },
        });
        const res = watched.messages.batches;
        const params = requestsFor(1)[0].params;
        const batch = await res.create({
          requests: [
            { custom_id: 'plain', params },
            { custom_id: 'temperature', params: { ...params, temperature: 1.0 } },
            { custom_id: 'top-k', params: { ...params, top_k: 5 } },
          ],
        });
        assert.deepEqual([...new Set(sent)], [apiVersion]);
        // The key travels as this generation sends it, and batchd took it that way.
        assert.deepEqual([...new Set(keys)], [bearer ? `Bearer ${KEY_A}` : KEY_A]);
        await waitEnded(res, batch.id);
        const rows = {};
        for await (const r of await res.results(batch.id)) rows[r.custom_id] = r.result;
        assert.equal(rows.plain.type, 'succeeded');
        for (const [id, field] of [
          ['temperature', 'temperature'],
          ['top-k', 'top_k'],
        ]) {
          if (apiVersion === '2026-10-21') {
            // This version removes the sampling parameters: at any value they are an errored row.
            assert.equal(rows[id].type, 'errored', JSON.stringify(rows[id]));
            assert.equal(rows[id].error.error.type, 'invalid_request_error');
            assert.equal(rows[id].error.error.message, `${field}: Extra inputs are not permitted`);
          } else {
            assert.equal(rows[id].type, 'succeeded', JSON.stringify(rows[id]));
          }
        }
      });
    });
  });
}
