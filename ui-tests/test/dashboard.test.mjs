// Browser test of the batchd dashboard (`/ui`): Debian's Chromium driven by playwright-core
// against a real server started by ui-tests/run.sh (BATCHD_URL, BATCHD_KEY; the server runs the
// mock model with 300 ms latency and 2 requests in flight, so progress is slow enough to watch).
//
// The steps run in order on one page, as a person would use it: a wrong key, the right key, two
// batches appearing with progress bars that advance, one batch followed to its end, its results
// downloaded and the batch deleted through the page's confirmation step, the other canceled;
// then a long list, an OpenAI Batch API batch listed beside them, and the webhooks view with an
// endpoint whose delivery fails.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE = (process.env.BATCHD_URL || '').replace(/\/$/, '');
const KEY = process.env.BATCHD_KEY || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = process.env.UI_ARTIFACTS || path.join(HERE, '..', 'artifacts');
const A_SIZE = 20;
const B_SIZE = 200;

if (!BASE || !KEY) throw new Error('BATCHD_URL and BATCHD_KEY must be set (ui-tests/run.sh does)');

// --- helpers ----------------------------------------------------------------------------------

/** The API from node, as any client would call it. */
async function api(method, p, body) {
  const headers = { 'x-api-key': KEY, 'anthropic-version': '2023-06-01' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const resp = await fetch(BASE + p, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

async function createBatch(n, prefix) {
  const requests = Array.from({ length: n }, (_, i) => ({
    custom_id: `${prefix}${i}`,
    params: {
      model: 'claude-sonnet-4-5',
      max_tokens: 32,
      messages: [{ role: 'user', content: `Question ${i} from the dashboard test` }],
    },
  }));
  const resp = await api('POST', '/v1/messages/batches', { requests });
  assert.equal(resp.status, 200, JSON.stringify(resp.body));
  return resp.body.id;
}

/** Polls `fn` until it returns a truthy value; fails with `what` after `timeout` ms. */
async function waitFor(what, fn, timeout = 10_000, interval = 100) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

const tid = (id) => `[data-testid="${id}"]`;

// --- the run ----------------------------------------------------------------------------------

describe('batchd dashboard', { timeout: 60_000 }, () => {
  let context;
  let page;
  let profile;
  let batchA;
  let batchB;
  const cspViolations = [];
  const pageErrors = [];
  const foreignRequests = [];
  let apiCalls = 0; // requests the page made to /v1

  /** How many API calls the page makes during `ms`. */
  async function callsDuring(ms) {
    const start = apiCalls;
    await page.waitForTimeout(ms);
    return apiCalls - start;
  }

  /** Makes the page believe its tab was hidden or shown again. */
  async function setHidden(hidden) {
    await page.evaluate((h) => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
  }

  const row = (id) => page.locator(`${tid('batch-row')}[data-batch-id="${id}"]`);
  const text = async (sel) => (await page.locator(sel).textContent()).trim();
  const valueNow = async (locator) => Number(await locator.getAttribute('aria-valuenow'));
  const shot = (name) => page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true, animations: 'disabled' });

  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    profile = await mkdtemp(path.join(tmpdir(), 'batchd-ui-chromium-'));
    // A persistent context on a fresh temp dir = Chromium's own --user-data-dir, removed after.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-proxy-server',
      ],
      acceptDownloads: true,
      viewport: { width: 1280, height: 860 },
      colorScheme: 'light',
      timezoneId: 'UTC',
      locale: 'en-US',
    });
    page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(10_000);
    page.on('console', (msg) => {
      if (/Content.Security.Policy/i.test(msg.text())) cspViolations.push(msg.text());
    });
    page.on('pageerror', (err) => pageErrors.push(String(err)));
    page.on('request', (req) => {
      const u = new URL(req.url());
      if (!['blob:', 'data:'].includes(u.protocol) && u.origin !== BASE) foreignRequests.push(req.url());
      if (u.origin === BASE && u.pathname.startsWith('/v1/')) apiCalls += 1;
    });
  });

  after(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  test('the page loads from batchd alone and asks for a key', async () => {
    const resp = await page.goto(`${BASE}/ui`);
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()['content-security-policy'], /default-src 'self'/);
    await page.locator(tid('need-key')).waitFor();
    assert.equal(await page.locator(tid('list-view')).isHidden(), true);
    assert.equal(await page.title(), 'batchd · Message Batches');
  });

  test("a wrong key shows the API's error", async () => {
    await page.fill(tid('api-key'), 'sk-definitely-wrong');
    await page.click(tid('key-submit'));
    await page.locator(tid('error')).waitFor();
    assert.equal(await text(tid('error-type')), 'authentication_error (401):');
    assert.equal(await text(tid('error-message')), 'invalid x-api-key');
    // A refused key is not kept.
    assert.equal(await page.evaluate(() => sessionStorage.getItem('batchd.apiKey')), null);
    await shot('wrong-key.png');
  });

  test('batches appear in the list with progress bars that advance', async () => {
    await page.fill(tid('api-key'), KEY);
    await page.click(tid('key-submit'));
    await page.locator(tid('list-view')).waitFor();
    await waitFor('the workspace name', async () => (await text(tid('key-status'))) === 'workspace ui');
    assert.equal(await page.locator(tid('error')).isHidden(), true);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('batchd.apiKey')), KEY);

    // Created while the page is open; a click on Refresh brings them in.
    batchA = await createBatch(A_SIZE, 'a');
    batchB = await createBatch(B_SIZE, 'b');
    await page.click(tid('refresh'));
    await row(batchA).waitFor();
    await row(batchB).waitFor();
    // Newest first.
    const order = await page.locator(tid('batch-row')).evaluateAll((rows) => rows.map((r) => r.dataset.batchId));
    assert.deepEqual(order.slice(0, 2), [batchB, batchA]);

    const bar = row(batchA).locator('[role=progressbar]');
    assert.equal(await bar.getAttribute('aria-valuemax'), String(A_SIZE));
    assert.equal(await text(`${tid('batch-row')}[data-batch-id="${batchA}"] ${tid('status')}`), 'in progress');
    const samples = [await valueNow(bar)];
    assert.ok(samples[0] < A_SIZE, `batch already done when first seen: ${samples[0]}`);
    // The page polls by itself: the bar must move without any further click.
    await waitFor('the progress bar to advance twice', async () => {
      samples.push(await valueNow(bar));
      return new Set(samples).size >= 3;
    }, 15_000, 150);
    for (let i = 1; i < samples.length; i++) assert.ok(samples[i] >= samples[i - 1], `went back: ${samples}`);
    assert.equal(await text(tid('list-live')), 'live');
    await shot('list-running.png');
  });

  test('the batch view follows a batch to its end', async () => {
    // A click anywhere on the row opens it, under a linkable hash.
    await row(batchA).locator(tid('status')).click();
    await page.waitForURL(`${BASE}/ui#/batches/${batchA}`);
    await page.locator(tid('batch-view')).waitFor();
    assert.equal(await text(tid('batch-id')), batchA);
    assert.equal(await text(tid('field-type')), 'message_batch');
    assert.equal(await page.locator(tid('cancel')).isVisible(), true);
    assert.equal(await page.locator(tid('delete')).isVisible(), false);
    assert.equal(await page.locator(tid('download')).isVisible(), false);
    await waitFor('a rate', async () => / req\/s$/.test(await text(tid('rate'))));

    await waitFor('the batch to end', async () => (await text(tid('batch-status'))) === 'ended', 30_000);
    const bar = page.locator(tid('batch-progress'));
    assert.equal(await valueNow(bar), A_SIZE);
    assert.equal(await text(tid('progress-succeeded')), String(A_SIZE));
    assert.equal(await text(tid('field-count-succeeded')), String(A_SIZE));
    assert.equal(await text(tid('field-count-processing')), '0');
    assert.equal(await text(tid('eta')), 'done');
    assert.match(await text(tid('field-results_url')), new RegExp(`/v1/messages/batches/${batchA}/results$`));
    assert.equal(await page.locator(tid('cancel')).isVisible(), false);
    assert.equal(await page.locator(tid('delete')).isVisible(), true);
    assert.equal(await page.locator(tid('download')).isVisible(), true);
    await shot('batch-ended.png');
  });

  test('results download as {id}_results.jsonl', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click(tid('download')),
    ]);
    assert.equal(download.suggestedFilename(), `${batchA}_results.jsonl`);
    const body = await readFile(await download.path(), 'utf8');
    assert.ok(body.endsWith('\n'));
    const lines = body.slice(0, -1).split('\n');
    assert.equal(lines.length, A_SIZE);
    const ids = lines.map((l) => JSON.parse(l)).map((r) => {
      assert.equal(r.result.type, 'succeeded');
      return r.custom_id;
    });
    assert.deepEqual(ids.sort(), Array.from({ length: A_SIZE }, (_, i) => `a${i}`).sort());
    await waitFor('the saved notice', async () => (await text(tid('notice'))).startsWith(`Saved ${batchA}_results.jsonl`));
  });

  test('delete goes through the confirmation step', async () => {
    const dialog = page.locator(tid('confirm-delete'));
    // First change our mind: nothing happens.
    await page.click(tid('delete'));
    await dialog.waitFor();
    assert.equal(await text('#confirm-id'), batchA);
    await page.click(tid('confirm-delete-no'));
    await dialog.waitFor({ state: 'hidden' });
    assert.equal((await api('GET', `/v1/messages/batches/${batchA}`)).status, 200);

    // Then for real.
    await page.click(tid('delete'));
    await dialog.waitFor();
    await shot('confirm-delete.png');
    await page.click(tid('confirm-delete-yes'));
    await page.waitForURL(`${BASE}/ui#/`);
    await page.locator(tid('list-view')).waitFor();
    assert.equal(await text(tid('notice')), `Deleted ${batchA}.`);
    await row(batchB).waitFor();
    assert.equal(await row(batchA).count(), 0);
    const gone = await api('GET', `/v1/messages/batches/${batchA}`);
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error.type, 'not_found_error');
    // It stays gone over further polls.
    await page.waitForTimeout(1_200);
    assert.equal(await row(batchA).count(), 0);
  });

  test('a batch canceled from the page ends with canceled counts', async () => {
    await row(batchB).locator(tid('batch-link')).click();
    await page.waitForURL(`${BASE}/ui#/batches/${batchB}`);
    await page.locator(tid('cancel')).waitFor();
    assert.equal(await text(tid('batch-status')), 'in progress');
    assert.equal(await text(tid('batch-live')), 'live');

    // A hidden tab stops polling; coming back starts it again at once.
    const bar = page.locator(tid('batch-progress'));
    await setHidden(true);
    await page.waitForTimeout(300); // a request already in flight may still land
    assert.equal(await callsDuring(1_200), 0, 'polled while hidden');
    assert.equal(await text(tid('batch-live')), '');
    const frozen = await valueNow(bar);
    await setHidden(false);
    assert.ok((await callsDuring(1_200)) >= 2, 'did not resume polling');
    await waitFor('the bar to move again', async () => (await valueNow(bar)) > frozen);

    await page.click(tid('cancel'));
    await waitFor('the batch to end', async () => (await text(tid('batch-status'))) === 'ended', 15_000);
    const canceled = Number(await text(tid('field-count-canceled')));
    assert.ok(canceled > 0, `canceled count ${canceled}`);
    assert.equal(await text(tid('progress-canceled')), String(canceled));
    assert.notEqual(await text(tid('field-cancel_initiated_at')), '—');

    const batch = (await api('GET', `/v1/messages/batches/${batchB}`)).body;
    assert.equal(batch.processing_status, 'ended');
    assert.equal(batch.request_counts.canceled, canceled);
    const c = batch.request_counts;
    assert.equal(c.processing + c.succeeded + c.errored + c.canceled + c.expired, B_SIZE);
    assert.ok(batch.cancel_initiated_at);
    assert.equal(await page.locator(tid('download')).isVisible(), true);
    await shot('batch-canceled.png');
  });

  test('the list shows ended batches at rest, in light and dark', async () => {
    await page.click(tid('back'));
    await row(batchB).waitFor();
    await waitFor('polling to stop', async () => (await text(tid('list-live'))) === '');
    await page.waitForTimeout(300);
    assert.equal(await callsDuring(1_500), 0, 'polled with every batch ended');
    const bar = row(batchB).locator('[role=progressbar]');
    assert.equal(await valueNow(bar), B_SIZE);
    await shot('list-ended.png');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot('list-ended-dark.png');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  test('"Load more" pages through a long list', async () => {
    // 21 more batches (22 in all): the first page shows 20, "Load more" brings the rest.
    const more = await Promise.all(Array.from({ length: 21 }, (_, i) => createBatch(1, `m${i}-`)));
    await page.click(tid('refresh'));
    await row(more[20]).waitFor();
    await waitFor('a full first page', async () => (await page.locator(tid('batch-row')).count()) === 20);
    assert.equal(await row(batchB).count(), 0);
    await page.locator(tid('load-more')).waitFor();
    await page.click(tid('load-more'));
    await row(batchB).waitFor();
    assert.equal(await row(more[0]).count(), 1);
    assert.equal(await page.locator(tid('batch-row')).count(), 22);
    await page.locator(tid('load-more')).waitFor({ state: 'hidden' });
    // Live polling keeps every loaded row, not just the first page.
    await page.waitForTimeout(1_500);
    assert.equal(await page.locator(tid('batch-row')).count(), 22);
  });

  test('OpenAI batches are listed beside the Message Batches', async () => {
    // Upload a file and create a batch on the OpenAI surface, with the same key.
    const lines = Array.from({ length: 3 }, (_, i) => JSON.stringify({
      custom_id: `oa${i}`,
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `OpenAI question ${i}` }] },
    }) + '\n').join('');
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([lines], { type: 'application/jsonl' }), 'dashboard.jsonl');
    const auth = { authorization: `Bearer ${KEY}` };
    const file = await fetch(`${BASE}/v1/files`, { method: 'POST', headers: auth, body: form });
    assert.equal(file.status, 200, await file.clone().text());
    const created = await fetch(`${BASE}/v1/batches`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ input_file_id: (await file.json()).id, endpoint: '/v1/chat/completions', completion_window: '24h' }),
    });
    assert.equal(created.status, 200);
    const id = (await created.json()).id;

    await page.click(tid('refresh'));
    const oaRow = page.locator(`${tid('openai-row')}[data-batch-id="${id}"]`);
    await oaRow.waitFor();
    assert.equal(await page.locator(tid('openai-section')).isVisible(), true);
    // The page polls it to its end like the other batches.
    await waitFor('the OpenAI batch to complete', async () => (await oaRow.locator(tid('openai-status')).textContent()) === 'completed', 20_000);
    assert.equal((await oaRow.locator(tid('openai-done')).textContent()).trim(), '3 / 3');
    assert.equal((await oaRow.locator(tid('openai-completed')).textContent()).trim(), '3');
    // OpenAI batches are not Message Batches rows (those stay as they were).
    assert.equal(await row(id).count(), 0);
    await shot('list-openai.png');
  });

  test('the webhooks view lists endpoints and failing deliveries', async () => {
    // A loopback port nobody listens on: every delivery attempt fails to connect.
    const closed = net.createServer();
    await new Promise((r) => closed.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${closed.address().port}/hook`;
    await new Promise((r) => closed.close(r));
    const created = await api('POST', '/v1/batchd/webhooks', { url, description: 'dashboard test' });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const endpointId = created.body.id;

    await page.click(tid('nav-webhooks'));
    // The click returns before the app has switched views: wait for the switch, then check it.
    await page.locator(`${tid('nav-webhooks')}[aria-current="page"]`).waitFor();
    assert.equal(await page.locator(tid('nav-webhooks')).getAttribute('aria-current'), 'page');
    const endpointRow = page.locator(`${tid('endpoint-row')}[data-endpoint-id="${endpointId}"]`);
    await endpointRow.waitFor();
    assert.equal(await text(`${tid('endpoint-row')}[data-endpoint-id="${endpointId}"] ${tid('endpoint-url')}`), url);
    assert.equal(await endpointRow.locator(tid('endpoint-events')).textContent(), 'message_batch.ended');
    assert.equal(await endpointRow.locator(tid('endpoint-state')).textContent(), 'active');
    // The secret is never shown again.
    assert.equal((await page.locator(tid('webhooks-view')).textContent()).includes('whsec_'), false);

    // A batch ends; its delivery fails and waits for its next retry (the view polls).
    const batch = await createBatch(1, 'hook');
    const delivery = page.locator(tid('delivery-row')).first();
    await delivery.waitFor({ timeout: 20_000 });
    assert.equal(await delivery.locator(tid('delivery-state')).textContent(), 'pending');
    assert.ok(Number(await delivery.locator(tid('delivery-attempts')).textContent()) >= 1);
    assert.notEqual((await delivery.locator(tid('delivery-outcome')).textContent()).trim(), '—');
    assert.equal(await delivery.locator(`${tid('delivery-next')} time`).count(), 1);
    assert.ok((await delivery.textContent()).includes(batch));
    await shot('webhooks.png');

    const deleted = await api('DELETE', `/v1/batchd/webhooks/${endpointId}`);
    assert.equal(deleted.status, 200);
    await page.click(tid('webhooks-refresh'));
    await endpointRow.waitFor({ state: 'detached' });
    assert.equal(await page.locator(tid('webhooks-empty')).isVisible(), true);
    await page.click(tid('nav-batches'));
    await page.locator(tid('list-view')).waitFor();
  });

  test('nothing broke the policy or left the machine', () => {
    assert.deepEqual(cspViolations, []);
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(foreignRequests, []);
  });
});
