// batchd dashboard: plain JavaScript, no dependencies, no build step.
//
// It talks only to the server that serves it, through the ordinary Message Batches API:
// every call carries the key from sessionStorage as `x-api-key` and `anthropic-version`.
// The list also shows the workspace's newest OpenAI Batch API batches (`/v1/batches`, which
// takes the same key), read-only. Routes live in the URL hash: `#/` is the list,
// `#/batches/{id}` one batch, `#/webhooks` the workspace's webhook endpoints and their recent
// failing deliveries (batchd's `/v1/batchd/webhooks` routes, read-only). While anything
// shown is unended the view polls once a second; it stops when everything has ended or the tab
// is hidden, and starts again when the tab comes back. The webhooks view polls every few seconds
// while shown.
'use strict';

(() => {
  const VERSION = '2023-06-01';
  const KEY_STORE = 'batchd.apiKey';
  const PAGE = 20;
  const POLL_MS = 1000;
  // Deliveries move on a retry schedule of seconds to hours: no need to ask every second.
  const WEBHOOKS_POLL_MS = 5000;
  // How many failing deliveries the webhooks view lists, newest attempt first.
  const FAILING_SHOWN = 50;
  // The page is `<base>/ui`; the API is `<base>/v1/…` (base is empty unless behind a prefix).
  const API_BASE = location.pathname.replace(/\/ui\/?$/, '');
  const OUTCOMES = ['succeeded', 'errored', 'canceled', 'expired'];
  // The statuses after which an OpenAI batch changes no more.
  const OPENAI_FINAL = ['completed', 'failed', 'expired', 'cancelled'];
  const FIELDS = [
    'id', 'type', 'processing_status', 'request_counts', 'created_at', 'expires_at',
    'ended_at', 'cancel_initiated_at', 'archived_at', 'results_url',
  ];

  const $ = (id) => document.getElementById(id);

  /** Creates an element: h('td', {className: 'num', dataset: {testid: 'x'}}, 'text', child). */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k in el && typeof v !== 'string') el[k] = v;
      else el.setAttribute(k === 'className' ? 'class' : k, v);
    }
    for (const c of children) el.append(c);
    return el;
  }

  // --- the API --------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, type, message, requestId) {
      super(message);
      this.status = status;
      this.type = type;
      this.requestId = requestId || null;
    }
  }

  const storedKey = () => sessionStorage.getItem(KEY_STORE) || '';

  /** Sends one authenticated request; resolves to the Response, rejects with an ApiError. */
  async function request(method, url) {
    let resp;
    try {
      resp = await fetch(url, {
        method,
        headers: { 'x-api-key': storedKey(), 'anthropic-version': VERSION },
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (e) {
      throw new ApiError(0, 'network_error', `Could not reach the server (${e.message}).`);
    }
    const workspace = resp.headers.get('anthropic-workspace-id');
    if (workspace) showWorkspace(workspace);
    if (resp.ok) return resp;
    let body = null;
    try {
      body = await resp.json();
    } catch {
      // not the API's envelope
    }
    const err = body && body.error;
    throw new ApiError(
      resp.status,
      (err && err.type) || 'http_error',
      (err && err.message) || `HTTP ${resp.status} ${resp.statusText}`.trim(),
      (body && body.request_id) || resp.headers.get('request-id'),
    );
  }

  async function api(method, path) {
    const resp = await request(method, API_BASE + path);
    return resp.json();
  }

  const batchPath = (id) => `/v1/messages/batches/${encodeURIComponent(id)}`;
  const webhookPath = (id) => `/v1/batchd/webhooks/${encodeURIComponent(id)}`;

  // --- state ------------------------------------------------------------------------------------

  const state = {
    gen: 0, // bumped on every navigation or restart; stale responses and timers check it
    timer: null,
    errorSource: null, // 'poll' errors clear themselves on the next good poll; 'action' ones stay
    pendingNotice: null,
    list: { batches: [], progress: new Map(), hasMore: false, loaded: false, openai: [] },
    rows: new Map(), // batch id -> <tr>
    batch: { id: null, data: null, progress: null },
    webhooks: { endpoints: [], failing: [], loaded: false },
  };

  function route() {
    if (location.hash === '#/webhooks') return { view: 'webhooks' };
    const m = /^#\/batches\/([^/?#]+)$/.exec(location.hash);
    return m ? { view: 'batch', id: decodeURIComponent(m[1]) } : { view: 'list' };
  }

  // --- messages -------------------------------------------------------------------------------

  function showError(e, source) {
    const box = $('error');
    $('error-type').textContent = e instanceof ApiError ? `${e.type}${e.status ? ` (${e.status})` : ''}:` : 'error:';
    $('error-message').textContent = e.message;
    $('error-request').textContent = e.requestId ? `request-id ${e.requestId}` : '';
    box.hidden = false;
    state.errorSource = source;
  }

  function clearError(source) {
    if (source && state.errorSource !== source) return;
    $('error').hidden = true;
    state.errorSource = null;
  }

  function showNotice(text) {
    $('notice').textContent = text || '';
    $('notice').hidden = !text;
  }

  function showWorkspace(ws) {
    $('key-status').textContent = `workspace ${ws}`;
  }

  // --- formatting -----------------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, '0');

  function timeEl(iso) {
    if (!iso) return h('span', { className: 'muted' }, '—');
    const d = new Date(iso);
    const text = Number.isNaN(d.getTime())
      ? iso
      : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
        `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return h('time', { datetime: iso, title: iso }, text);
  }

  function fmtEta(s) {
    if (s === null || s === undefined) return '—';
    if (s < 1) return '< 1 s';
    if (s < 90) return `${Math.round(s)} s`;
    if (s < 5400) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  }

  const num = (n) => Number(n || 0).toLocaleString('en-US');
  const sum = (c) => OUTCOMES.reduce((a, k) => a + (c[k] || 0), 0);

  /** The counts to show: live ones from /progress while running, the batch's own once ended. */
  function liveCounts(batch, progress) {
    if (batch.processing_status !== 'ended' && progress) return progress.request_counts;
    return batch.request_counts;
  }

  function totalOf(batch) {
    return (batch.request_counts.processing || 0) + sum(batch.request_counts);
  }

  /** Fills a role=progressbar element with four outcome segments. */
  function setProgress(el, counts, total) {
    const done = sum(counts);
    el.setAttribute('aria-valuemin', '0');
    el.setAttribute('aria-valuemax', String(total));
    el.setAttribute('aria-valuenow', String(done));
    const pct = total ? Math.round((done / total) * 100) : 0;
    el.setAttribute('aria-valuetext', `${num(done)} of ${num(total)} requests answered (${pct}%)`);
    el.title = `${num(done)} / ${num(total)}`;
    const segs = el.querySelectorAll('.seg');
    OUTCOMES.forEach((k, i) => {
      // CSSOM, not a style attribute: allowed by the page's content-security-policy.
      segs[i].style.width = total ? `${((counts[k] || 0) / total) * 100}%` : '0%';
    });
  }

  function setBadge(el, status) {
    el.textContent = status.replace('_', ' ');
    el.className = `badge ${status}`;
  }

  function setLive(el, on) {
    el.textContent = on ? 'live' : '';
    el.classList.toggle('on', on);
  }

  // --- polling --------------------------------------------------------------------------------

  function stopPolling() {
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
  }

  function schedule(gen, fn, ms = POLL_MS) {
    stopPolling();
    if (gen !== state.gen || document.hidden) return;
    state.timer = setTimeout(() => {
      state.timer = null;
      if (gen === state.gen && !document.hidden) fn(gen);
    }, ms);
  }

  /** Drops whatever is in flight and loads the current view afresh. */
  function restart(extra) {
    state.gen += 1;
    stopPolling();
    const gen = state.gen;
    const r = route();
    if (!storedKey()) return;
    if (r.view === 'batch') refreshBatch(gen);
    else if (r.view === 'webhooks') refreshWebhooks(gen);
    else refreshList(gen, extra);
  }

  // --- list view ------------------------------------------------------------------------------

  async function refreshList(gen, opts) {
    const L = state.list;
    const append = Boolean(opts && opts.append) && L.batches.length > 0;
    try {
      if (append) {
        const after = L.batches[L.batches.length - 1].id;
        const page = await api('GET', `/v1/messages/batches?limit=${PAGE}&after_id=${encodeURIComponent(after)}`);
        if (gen !== state.gen) return;
        const seen = new Set(L.batches.map((b) => b.id));
        L.batches = L.batches.concat(page.data.filter((b) => !seen.has(b.id)));
        L.hasMore = page.has_more;
      } else {
        // Re-read everything shown so far in one page: new batches appear, deleted ones go.
        const limit = Math.min(1000, Math.max(PAGE, L.batches.length));
        const page = await api('GET', `/v1/messages/batches?limit=${limit}`);
        if (gen !== state.gen) return;
        L.batches = page.data;
        L.hasMore = page.has_more;
        L.loaded = true;
      }
      const openai = await api('GET', `/v1/batches?limit=${PAGE}`);
      if (gen !== state.gen) return;
      L.openai = openai.data;
      const running = L.batches.filter((b) => b.processing_status !== 'ended');
      const live = await Promise.all(
        running.map((b) => api('GET', `${batchPath(b.id)}/progress`).catch(() => null)),
      );
      if (gen !== state.gen) return;
      const progress = new Map();
      running.forEach((b, i) => {
        const p = live[i] || L.progress.get(b.id);
        if (p) progress.set(b.id, p);
      });
      L.progress = progress;
      renderList();
      clearError('poll');
      if (running.length || openAiRunning()) schedule(gen, refreshList);
      else setLive($('list-live'), false);
    } catch (e) {
      if (gen !== state.gen) return;
      showError(e, 'poll');
      if (e.status === 401) forgetKey(false);
      else if (L.batches.some((b) => b.processing_status !== 'ended') || openAiRunning() || e.status === 0) {
        schedule(gen, refreshList);
      }
    }
  }

  function newRow(id) {
    const link = h('a', { href: `#/batches/${encodeURIComponent(id)}`, className: 'mono', dataset: { testid: 'batch-link' } }, id);
    const bar = h('div', { className: 'progress', role: 'progressbar', dataset: { testid: 'progress' }, 'aria-label': `Progress of ${id}` },
      ...OUTCOMES.map((k) => h('span', { className: `seg ${k}` })));
    const tr = h('tr', { dataset: { testid: 'batch-row', batchId: id } },
      h('th', { scope: 'row' }, link),
      h('td', {}, h('span', { className: 'badge', dataset: { testid: 'status' } })),
      h('td', {}, h('div', { className: 'progress-cell' }, bar, h('span', { className: 'ptext', dataset: { testid: 'progress-text' } }))),
      ...OUTCOMES.map((k) => h('td', { className: 'num', dataset: { testid: `count-${k}` } })),
      h('td', { dataset: { testid: 'created' } }),
      h('td', { dataset: { testid: 'ended' } }),
    );
    // The whole row opens the batch; the id is also a real link for keyboards and new tabs.
    tr.addEventListener('click', (ev) => {
      if (ev.target.closest('a') || window.getSelection().toString()) return;
      location.hash = `#/batches/${encodeURIComponent(id)}`;
    });
    return tr;
  }

  function updateRow(tr, batch, progress) {
    const counts = liveCounts(batch, progress);
    const total = totalOf(batch);
    setBadge(tr.querySelector('[data-testid=status]'), batch.processing_status);
    setProgress(tr.querySelector('[role=progressbar]'), counts, total);
    tr.querySelector('[data-testid=progress-text]').textContent = `${num(sum(counts))} / ${num(total)}`;
    for (const k of OUTCOMES) tr.querySelector(`[data-testid=count-${k}]`).textContent = num(counts[k]);
    const created = tr.querySelector('[data-testid=created]');
    if (created.dataset.value !== batch.created_at) {
      created.dataset.value = batch.created_at;
      created.replaceChildren(timeEl(batch.created_at));
    }
    const ended = tr.querySelector('[data-testid=ended]');
    if (ended.dataset.value !== String(batch.ended_at)) {
      ended.dataset.value = String(batch.ended_at);
      ended.replaceChildren(timeEl(batch.ended_at));
    }
  }

  function renderList() {
    const L = state.list;
    const tbody = $('batch-rows');
    const keep = new Set(L.batches.map((b) => b.id));
    for (const [id, tr] of state.rows) {
      if (!keep.has(id)) {
        tr.remove();
        state.rows.delete(id);
      }
    }
    L.batches.forEach((b, i) => {
      let tr = state.rows.get(b.id);
      if (!tr) {
        tr = newRow(b.id);
        state.rows.set(b.id, tr);
      }
      updateRow(tr, b, L.progress.get(b.id));
      // Move rows only when the order changed, so focus and hover survive updates.
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    $('list-empty').hidden = !L.loaded || L.batches.length > 0 || L.openai.length > 0;
    $('batch-table').hidden = L.batches.length === 0;
    $('load-more').hidden = !L.hasMore;
    renderOpenAi();
    setLive($('list-live'), (L.batches.some((b) => b.processing_status !== 'ended') || openAiRunning()) && !document.hidden);
  }

  const openAiRunning = () => state.list.openai.some((b) => !OPENAI_FINAL.includes(b.status));

  /** The OpenAI batches: one row each, rebuilt on every poll (the table is small and read-only). */
  function renderOpenAi() {
    const rows = state.list.openai.map((b) => {
      const c = b.request_counts;
      const badge = h('span', { dataset: { testid: 'openai-status' } });
      setBadge(badge, b.status);
      return h('tr', { dataset: { testid: 'openai-row', batchId: b.id } },
        h('th', { scope: 'row', className: 'mono' }, b.id),
        h('td', {}, badge),
        h('td', { className: 'mono' }, b.endpoint),
        h('td', { className: 'num', dataset: { testid: 'openai-done' } }, `${num(c.completed + c.failed)} / ${num(c.total)}`),
        h('td', { className: 'num', dataset: { testid: 'openai-completed' } }, num(c.completed)),
        h('td', { className: 'num', dataset: { testid: 'openai-failed' } }, num(c.failed)),
        h('td', {}, timeEl(new Date(b.created_at * 1000).toISOString())),
      );
    });
    $('openai-rows').replaceChildren(...rows);
    $('openai-section').hidden = rows.length === 0;
  }

  // --- batch view -----------------------------------------------------------------------------

  async function refreshBatch(gen) {
    const B = state.batch;
    const id = route().id;
    if (B.id !== id) {
      B.id = id;
      B.data = null;
      B.progress = null;
      $('batch-title').textContent = id;
      $('batch-fields').replaceChildren();
    }
    try {
      const [batch, progress] = await Promise.all([
        api('GET', batchPath(id)),
        api('GET', `${batchPath(id)}/progress`),
      ]);
      if (gen !== state.gen) return;
      B.data = batch;
      B.progress = progress;
      renderBatch();
      clearError('poll');
      if (batch.processing_status !== 'ended') schedule(gen, refreshBatch);
    } catch (e) {
      if (gen !== state.gen) return;
      showError(e, e.status === 404 ? 'action' : 'poll');
      if (e.status === 401) forgetKey(false);
      else if (e.status !== 404 && (!B.data || B.data.processing_status !== 'ended')) {
        schedule(gen, refreshBatch);
      }
      if (e.status === 404) {
        B.data = null;
        renderBatch();
      }
    }
  }

  function fieldValue(name, batch) {
    const v = batch[name];
    if (name === 'request_counts') {
      return h('span', { className: 'counts' },
        ...['processing', ...OUTCOMES].map((k) => h('span', { className: 'count' },
          h('span', { className: 'muted' }, `${k} `),
          h('strong', { dataset: { testid: `field-count-${k}` } }, num(v[k])))));
    }
    if (name.endsWith('_at')) return timeEl(v);
    if (v === null) return h('span', { className: 'muted' }, 'null');
    return h('code', {}, String(v));
  }

  function renderBatch() {
    const B = state.batch;
    const b = B.data;
    const view = $('batch-view');
    view.classList.toggle('gone', !b);
    if (!b) {
      for (const id of ['cancel', 'download', 'delete']) $(id).hidden = true;
      setLive($('batch-live'), false);
      return;
    }
    setBadge($('batch-status'), b.processing_status);
    const ended = b.processing_status === 'ended';
    setLive($('batch-live'), !ended && !document.hidden);

    const p = B.progress;
    const counts = liveCounts(b, p);
    const total = totalOf(b);
    setProgress($('batch-progress'), counts, total);
    $('p-answered').textContent = `${num(sum(counts))} / ${num(total)}`;
    $('p-processing').textContent = num(counts.processing);
    for (const k of OUTCOMES) $(`p-${k}`).textContent = num(counts[k]);
    $('p-rate').textContent = p ? `${p.requests_per_second.toFixed(2)} req/s` : '—';
    $('p-eta').textContent = ended ? 'done' : fmtEta(p && p.eta_seconds);

    $('cancel').hidden = b.processing_status !== 'in_progress';
    $('delete').hidden = !ended;
    $('download').hidden = !ended || Boolean(b.archived_at) || !b.results_url;

    $('batch-fields').replaceChildren(...FIELDS.flatMap((name) => [
      h('dt', {}, name),
      h('dd', { dataset: { testid: `field-${name}` } }, fieldValue(name, b)),
    ]));
  }

  async function cancelBatch() {
    const b = state.batch.data;
    if (!b) return;
    clearError();
    $('cancel').disabled = true;
    try {
      const updated = await api('POST', `${batchPath(b.id)}/cancel`);
      showNotice(`Cancellation of ${b.id} started.`);
      if (state.batch.id === updated.id) {
        state.batch.data = updated;
        renderBatch();
      }
      restart();
    } catch (e) {
      showError(e, 'action');
    } finally {
      $('cancel').disabled = false;
    }
  }

  function askDelete() {
    const b = state.batch.data;
    if (!b) return;
    $('confirm-id').textContent = b.id;
    $('confirm-delete').dataset.batchId = b.id;
    $('confirm-delete').showModal();
  }

  async function confirmDelete() {
    const dialog = $('confirm-delete');
    const id = dialog.dataset.batchId;
    dialog.close('delete');
    clearError();
    $('delete').disabled = true;
    try {
      await api('DELETE', batchPath(id));
      state.pendingNotice = `Deleted ${id}.`;
      state.list.batches = state.list.batches.filter((b) => b.id !== id);
      location.hash = '#/';
    } catch (e) {
      showError(e, 'action');
    } finally {
      $('delete').disabled = false;
    }
  }

  /** Where to fetch results: `results_url` when it is this origin, else this server's route. */
  function resultsUrl(b) {
    try {
      const u = new URL(b.results_url, location.href);
      if (u.origin === location.origin) return u.href;
    } catch {
      // fall through
    }
    return `${API_BASE}${batchPath(b.id)}/results`;
  }

  async function downloadResults() {
    const b = state.batch.data;
    if (!b) return;
    clearError();
    const button = $('download');
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try {
      const resp = await request('GET', resultsUrl(b));
      const blob = new Blob([await resp.blob()], { type: 'application/x-jsonl' });
      const href = URL.createObjectURL(blob);
      const a = h('a', { href, download: `${b.id}_results.jsonl`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 60_000);
      showNotice(`Saved ${b.id}_results.jsonl (${num(blob.size)} bytes).`);
    } catch (e) {
      showError(e, 'action');
    } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }

  // --- webhooks view -------------------------------------------------------------------------

  /** A delivery whose last attempt failed: given up on, or pending another try. */
  const isFailing = (d) => d.state === 'failed' || (d.state === 'pending' && d.attempts > 0);

  async function refreshWebhooks(gen) {
    try {
      const page = await api('GET', '/v1/batchd/webhooks');
      if (gen !== state.gen) return;
      const endpoints = page.data;
      const lists = await Promise.all(
        endpoints.map((e) => api('GET', `${webhookPath(e.id)}/deliveries`).catch(() => ({ data: [] }))),
      );
      if (gen !== state.gen) return;
      const failing = endpoints.flatMap((endpoint, i) =>
        lists[i].data.filter(isFailing).map((delivery) => ({ endpoint, delivery })));
      failing.sort((a, b) => String(b.delivery.last_attempt_at).localeCompare(String(a.delivery.last_attempt_at)));
      state.webhooks = { endpoints, failing: failing.slice(0, FAILING_SHOWN), loaded: true };
      renderWebhooks();
      clearError('poll');
      schedule(gen, refreshWebhooks, WEBHOOKS_POLL_MS);
    } catch (e) {
      if (gen !== state.gen) return;
      showError(e, 'poll');
      if (e.status === 401) forgetKey(false);
      else if (e.status !== 404) schedule(gen, refreshWebhooks, WEBHOOKS_POLL_MS);
    }
  }

  function renderWebhooks() {
    const W = state.webhooks;
    const endpoints = W.endpoints.map((e) => {
      const badge = h('span', { dataset: { testid: 'endpoint-state' } });
      setBadge(badge, e.disabled_at ? 'disabled' : 'active');
      if (e.disabled_at) badge.title = `disabled at ${e.disabled_at}`;
      return h('tr', { dataset: { testid: 'endpoint-row', endpointId: e.id } },
        h('th', { scope: 'row', className: 'mono' }, e.id),
        h('td', { className: 'mono wrap', dataset: { testid: 'endpoint-url' } }, e.url),
        h('td', { className: 'mono', dataset: { testid: 'endpoint-events' } }, e.events.join(', ')),
        h('td', {}, badge),
        h('td', {}, timeEl(e.created_at)),
      );
    });
    $('endpoint-rows').replaceChildren(...endpoints);
    const failing = W.failing.map(({ endpoint, delivery: d }) => {
      const badge = h('span', { dataset: { testid: 'delivery-state' } });
      setBadge(badge, d.state);
      const outcome = d.last_status !== null ? `HTTP ${d.last_status}` : d.last_error || '—';
      return h('tr', { dataset: { testid: 'delivery-row', eventId: d.event_id } },
        h('th', { scope: 'row', className: 'mono' }, d.event_id),
        h('td', { className: 'mono' }, endpoint.id),
        h('td', { className: 'mono' }, d.batch_id || h('span', { className: 'muted' }, 'deleted')),
        h('td', {}, badge),
        h('td', { className: 'num', dataset: { testid: 'delivery-attempts' } }, num(d.attempts)),
        h('td', {}, timeEl(d.last_attempt_at)),
        h('td', { className: 'wrap', dataset: { testid: 'delivery-outcome' } }, outcome),
        h('td', { dataset: { testid: 'delivery-next' } }, timeEl(d.next_attempt_at)),
      );
    });
    $('failing-rows').replaceChildren(...failing);
    $('webhooks-empty').hidden = !W.loaded || W.endpoints.length > 0;
    $('endpoint-table').hidden = W.endpoints.length === 0;
    $('failing-empty').hidden = !W.loaded || failing.length > 0;
    $('failing-table').hidden = failing.length === 0;
  }

  // --- key ------------------------------------------------------------------------------------

  function forgetKey(clearField) {
    sessionStorage.removeItem(KEY_STORE);
    if (clearField) $('api-key').value = '';
    $('key-status').textContent = '';
    $('key-forget').hidden = true;
    stopPolling();
    state.gen += 1;
    // Another key may belong to another workspace: show nothing of this one meanwhile.
    state.list = { batches: [], progress: new Map(), hasMore: false, loaded: false, openai: [] };
    state.batch = { id: null, data: null, progress: null };
    state.webhooks = { endpoints: [], failing: [], loaded: false };
    renderList();
    renderWebhooks();
    render();
  }

  // --- navigation -----------------------------------------------------------------------------

  function render() {
    const r = route();
    const hasKey = Boolean(storedKey());
    $('need-key').hidden = hasKey;
    $('key-forget').hidden = !hasKey;
    $('list-view').hidden = !hasKey || r.view !== 'list';
    $('batch-view').hidden = !hasKey || r.view !== 'batch';
    $('webhooks-view').hidden = !hasKey || r.view !== 'webhooks';
    for (const [id, view] of [['nav-batches', 'list'], ['nav-webhooks', 'webhooks']]) {
      if (r.view === view) $(id).setAttribute('aria-current', 'page');
      else $(id).removeAttribute('aria-current');
    }
    document.title = r.view === 'batch' ? `${r.id} · batchd`
      : r.view === 'webhooks' ? 'Webhooks · batchd' : 'batchd · Message Batches';
  }

  function onRoute() {
    clearError();
    showNotice(state.pendingNotice);
    state.pendingNotice = null;
    if (route().view === 'list') renderList();
    if (route().view === 'webhooks') renderWebhooks();
    render();
    restart();
  }

  function init() {
    $('key-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const key = $('api-key').value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORE, key);
      $('key-status').textContent = '';
      state.list = { batches: [], progress: new Map(), hasMore: false, loaded: false, openai: [] };
      onRoute();
    });
    $('key-forget').addEventListener('click', () => {
      clearError();
      showNotice('');
      forgetKey(true);
    });
    $('refresh').addEventListener('click', () => {
      clearError();
      restart();
    });
    $('load-more').addEventListener('click', () => restart({ append: true }));
    $('webhooks-refresh').addEventListener('click', () => {
      clearError();
      restart();
    });
    $('cancel').addEventListener('click', cancelBatch);
    $('delete').addEventListener('click', askDelete);
    $('download').addEventListener('click', downloadResults);
    $('confirm-yes').addEventListener('click', confirmDelete);
    $('confirm-no').addEventListener('click', () => $('confirm-delete').close('cancel'));
    window.addEventListener('hashchange', onRoute);
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) {
        stopPolling();
        setLive($('list-live'), false);
        setLive($('batch-live'), false);
      } else {
        restart();
      }
    });
    $('api-key').value = storedKey();
    onRoute();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
