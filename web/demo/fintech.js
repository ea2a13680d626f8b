/* global document, location, history, sessionStorage, localStorage, crypto, fetch, URLSearchParams, setInterval */
// Tessera Money, the demo fintech page. Every tab of the browser shares the one session cookie
// (`__Host-sid`, which this script never sees: HttpOnly). A bank redirect is started with
// POST /api/v1/consents or /api/v1/payments and leaves that cookie alone; the return from the
// bank lands back here. If the session lapsed meanwhile, the return renewed it, and this page
// picks up the new session handle and XSRF token from GET /api/v1/session.

const BANK = 'demo-bank';
const activityId = uuid();
const correlationId = uuid();

let config = null;
/** GET /api/v1/session: { sessionId, customerId, tenantId, expiresAt, xsrfToken, ... } */
let session = null;
let tenantId = localStorage.getItem('tessera-demo.tenantId');

const $ = (selector) => document.querySelector(selector);

/** A UUID v4 from getRandomValues (crypto.randomUUID needs a secure context; this does not). */
function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Builds an element; children are nodes or text (never parsed as HTML). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c === null || c === undefined ? '' : c);
  return node;
}

/**
 * One API call with the request headers (docs/api.md §Request headers). A 403 `csrf` or
 * `session_mismatch` means another tab's bank return renewed the session: fetch the new handle and
 * token, then try once more.
 */
async function api(method, path, body, opts = {}) {
  const headers = { 'x-request-id': uuid(), 'x-correlation-id': correlationId, 'x-activity-id': activityId };
  if (tenantId) headers['x-tenant-id'] = tenantId;
  if (session && !opts.withoutSessionId) headers['x-session-id'] = session.sessionId;
  if (method !== 'GET' && session) headers['x-xsrf-token'] = session.xsrfToken;
  if (opts.headers) Object.assign(headers, opts.headers);
  let payload;
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (opts.retry !== false && res.status === 403 && data && (data.code === 'csrf' || data.code === 'session_mismatch')) {
    if (await loadSession()) return api(method, path, body, { ...opts, retry: false });
  }
  if (res.status === 401 && !opts.allow401) {
    session = null;
    showLogin('Your session has ended. Sign in again.');
  }
  return { status: res.status, data };
}

/** Reads the current session (and its XSRF token). False when there is none. */
async function loadSession() {
  const r = await api('GET', '/api/v1/session', undefined, { withoutSessionId: true, retry: false, allow401: true });
  if (r.status !== 200) {
    session = null;
    return false;
  }
  session = r.data;
  tenantId = session.tenantId;
  localStorage.setItem('tessera-demo.tenantId', tenantId);
  renderSession();
  return true;
}

// ---- rendering --------------------------------------------------------------------------------

function notice(kind, title, text) {
  const icon = { ok: '✓', bad: '✗', info: 'ℹ' }[kind];
  $('#notices').append(el('div', { class: `notice ${kind}`, role: 'status' }, el('span', { class: 'icon' }, icon), el('div', {}, el('strong', {}, title), text)));
}

function showLogin(message) {
  $('#app').hidden = true;
  $('#session-box').hidden = true;
  $('#login-card').hidden = false;
  const err = $('#login-error');
  err.hidden = !message;
  err.textContent = message ?? '';
}

function showApp() {
  $('#login-card').hidden = true;
  $('#app').hidden = false;
  $('#session-box').hidden = false;
}

function renderSession() {
  $('#session-handle').textContent = shortHandle(session.sessionId);
  $('#session-handle').title = session.sessionId;
  $('#session-user').textContent = session.customerId ? `customer ${session.customerId.slice(0, 8)}` : '';
  tick();
}

/** The idle countdown: when it runs out while you are at the bank, the return renews the session. */
function tick() {
  if (!session) return;
  const left = Math.round((Date.parse(session.expiresAt) - Date.now()) / 1000);
  const lapsed = left <= 0;
  $('#session-dot').classList.toggle('lapsed', lapsed);
  $('#session-expiry').textContent = lapsed ? 'idle timeout reached' : `idle timeout in ${left} s`;
}

function shortHandle(handle) {
  const [tag, rest] = handle.split('.');
  return `${tag.slice(0, 4)}…${(rest ?? '').slice(-6)}`;
}

const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }) : '—');
const money = (amount, currency) => new Intl.NumberFormat('en-GB', { style: 'currency', currency }).format(Number(amount));
const ibanGroups = (iban) => iban.replace(/(.{4})/g, '$1 ').trim();

function describe(c) {
  if (c.type === 'ais') return 'Account access · Demo Bank';
  return `${money(c.payment.amount, c.payment.currency)} to ${c.payment.creditorName}`;
}

async function loadAccounts() {
  const box = $('#accounts');
  const r = await api('GET', `/api/v1/accounts?bankId=${BANK}`);
  box.replaceChildren();
  if (r.status === 200) {
    $('#connect-bank').textContent = 'Renew Demo Bank consent';
    box.append(
      el(
        'table',
        {},
        el('thead', {}, el('tr', {}, el('th', {}, 'Account'), el('th', {}, 'IBAN'), el('th', { class: 'num' }, 'Balance'))),
        el(
          'tbody',
          {},
          ...r.data.accounts.map((a) =>
            el('tr', {}, el('td', { class: 'account-name' }, a.name), el('td', {}, el('code', {}, ibanGroups(a.iban))), el('td', { class: 'num' }, money(a.balance, a.currency))),
          ),
        ),
      ),
    );
  } else if (r.status === 403 && r.data?.code === 'consent_required') {
    $('#connect-bank').textContent = 'Connect Demo Bank';
    box.append(el('div', { class: 'empty' }, 'No valid account-information consent for Demo Bank yet. Connect it to see your accounts.'));
  } else if (r.data) {
    box.append(el('div', { class: 'empty' }, r.data.detail ?? 'Could not load the accounts.'));
  }
}

async function loadConsents() {
  const r = await api('GET', '/api/v1/consents?limit=20');
  const body = $('#consents');
  body.replaceChildren();
  if (r.status !== 200) return;
  if (r.data.items.length === 0) {
    body.append(el('tr', {}, el('td', { colspan: '5' }, el('div', { class: 'empty' }, 'No consents yet.'))));
    return;
  }
  for (const c of r.data.items) {
    body.append(
      el(
        'tr',
        { 'data-consent-id': c.id },
        el('td', {}, el('span', { class: 'badge kind' }, c.type)),
        el('td', {}, describe(c)),
        el('td', {}, el('span', { class: `badge ${c.status}` }, c.status)),
        el('td', {}, time(c.createdAt)),
        el('td', {}, time(c.confirmedAt)),
      ),
    );
  }
}

async function refresh() {
  await Promise.all([loadAccounts(), loadConsents()]);
}

/** Starts a redirect and sends this tab to the bank. */
async function startRedirect(button, errorBox, path, body) {
  button.disabled = true;
  if (errorBox) errorBox.hidden = true;
  try {
    const r = await api('POST', path, body);
    if (r.status === 202) {
      location.assign(r.data.location);
      return;
    }
    if (errorBox && r.data) {
      errorBox.textContent = r.data.detail ?? 'The bank redirect could not be started.';
      errorBox.hidden = false;
    }
  } finally {
    button.disabled = false;
  }
}

/** Coming back from the bank: say what happened to the consent and to the session. */
async function announceReturn(consentId, previousSessionId) {
  const r = await api('GET', `/api/v1/consents/${encodeURIComponent(consentId)}`);
  if (r.status === 200) {
    const c = r.data;
    const what = c.type === 'ais' ? 'Demo Bank account access' : `Payment of ${describe(c)}`;
    if (c.status === 'confirmed') notice('ok', `${what} confirmed`, ' The bank reports it approved.');
    else if (c.status === 'rejected') notice('bad', `${what} rejected`, ' The bank reports it denied.');
    else notice('info', `${what}: ${c.status}`, '');
  }
  if (previousSessionId && previousSessionId !== session.sessionId) {
    notice(
      'info',
      'Your session was renewed',
      ` It expired while you were at the bank; the return gave this browser one new session (${shortHandle(session.sessionId)}) that every tab shares.`,
    );
  }
}

// ---- wiring -------------------------------------------------------------------------------------

async function main() {
  config = await (await fetch('/demo/config.json', { cache: 'no-store' })).json();
  const form = $('#login-form');
  form.tenantId.value = tenantId ?? config.demoAccount.tenantId;
  form.email.value = config.demoAccount.email;
  form.password.value = config.demoAccount.password;

  const params = new URLSearchParams(location.search);
  const returned = params.get('consentId');
  if (returned) history.replaceState(null, '', location.pathname);
  const previous = sessionStorage.getItem('tessera-demo.sessionId');

  if (await loadSession()) {
    showApp();
    if (returned) await announceReturn(returned, previous);
    sessionStorage.setItem('tessera-demo.sessionId', session.sessionId);
    await refresh();
  } else {
    showLogin(returned ? 'You are back from the bank, but this browser has no session any more. Sign in again.' : null);
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    tenantId = form.tenantId.value.trim();
    const r = await api('POST', '/api/v1/auth/login', { email: form.email.value, password: form.password.value }, { headers: { 'x-auth-mode': 'cookie' }, allow401: true, retry: false });
    if (r.status !== 200) {
      showLogin(r.data?.detail ?? 'Sign-in failed.');
      return;
    }
    $('#notices').replaceChildren();
    if (await loadSession()) {
      sessionStorage.setItem('tessera-demo.sessionId', session.sessionId);
      showApp();
      await refresh();
    }
  });

  $('#connect-bank').addEventListener('click', (event) => startRedirect(event.currentTarget, null, '/api/v1/consents', { type: 'ais', bankId: BANK }));
  $('#refresh').addEventListener('click', async () => {
    await loadSession();
    await refresh();
  });
  $('#payment-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const f = event.currentTarget;
    startRedirect(f.querySelector('button'), $('#payment-error'), '/api/v1/payments', {
      bankId: BANK,
      amount: f.amount.value.trim(),
      currency: f.currency.value,
      creditorIban: f.creditorIban.value.replace(/\s+/g, ''),
      creditorName: f.creditorName.value.trim(),
    });
  });
  $('#logout').addEventListener('click', async () => {
    await api('POST', '/api/v1/auth/logout');
    session = null;
    sessionStorage.removeItem('tessera-demo.sessionId');
    $('#notices').replaceChildren();
    showLogin(null);
  });
  setInterval(tick, 1000);
}

main().catch((err) => notice('bad', 'The demo page failed to start', ` ${err}`));
