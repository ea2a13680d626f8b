// @tessera/client in five tabs of one Chromium, against Tessera as a real process.
//
// The page loads the built bundle packages/client/dist/index.js as is (an ES module), from an
// origin that also forwards /api/* to Tessera (http://127.0.0.1 is a secure context, so the tabs
// have Web Locks and BroadcastChannel). Refresh requests are counted at the server: its
// /metrics request histogram (every POST /api/v1/auth/token/refresh, whatever the answer) and its
// session counters (rotations, and sessions revoked by refresh-token reuse). The tenants have
// refreshGrace 0, so a second refresh with a rotated token would end the session at once.
//
// Skipped without /usr/bin/chromium (or TESSERA_CHROMIUM) unless TESSERA_REQUIRE_BROWSER=1.

import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, skipWithoutBrowser } from '../support/chromium.ts';
import { listenLoopback } from '../support/ports.ts';
import { PROJECT_ROOT, startTessera, type TesseraProcess } from '../support/tessera-process.ts';

const skip = skipWithoutBrowser();
const ADMIN_TOKEN = 'client-tabs-admin-' + 'a'.repeat(32);
const COOKIE_SECRET = 'client-tabs-cookie-' + 'c'.repeat(32);
const PASSWORD = 'correct horse battery';
const BUNDLE = join(PROJECT_ROOT, 'packages', 'client', 'dist', 'index.js');
/** Token lifetime of the short tenant (s); the client refreshes at half of it. */
const SHORT_TOKEN_S = 6;
const TABS = 5;
const BURST_ROUNDS = 30;

const PAGE = `<!doctype html><meta charset="utf-8"><title>tab</title>
<script type="module">
import { createTesseraClient } from '/client/index.js';
const q = new URLSearchParams(location.search);
// ?nobc=1: a browser without BroadcastChannel (the storage event carries changes between tabs)
if (q.get('nobc') === '1') delete globalThis.BroadcastChannel;
const t = createTesseraClient({ baseUrl: location.origin, tenantId: q.get('tenant'), mode: q.get('mode') || 'token' });
const state = { problems: [], expired: 0, refreshed: 0, requests: 0 };
t.on('expired', () => state.expired++);
t.on('refreshed', () => state.refreshed++);
window.t = t;
window.state = state;
if (q.get('work') === '1') {
  // The tab keeps working: an authenticated call every 200 ms.
  setInterval(async () => {
    if (!t.getSession()) return;
    try {
      const r = await t.fetch('/api/v1/session');
      state.requests++;
      if (r.status !== 200) state.problems.push(r.status + ' ' + (await r.text()));
    } catch (e) { state.problems.push(String(e)); }
  }, 200);
}
document.body.textContent = 'ready';
</script><body></body>`;

/** What a tab's page exposes (the functions below run inside the pages). */
interface TabState {
  problems: string[];
  expired: number;
  refreshed: number;
  requests: number;
}
interface Tab {
  t: {
    login(c: { email: string; password: string }): Promise<unknown>;
    fetch(url: string, init?: RequestInit): Promise<Response>;
    refresh(): Promise<{ sessionId: string } | null>;
    getSession(): unknown;
    getAccessToken(): string | null;
  };
  state: TabState;
  document: { body: { textContent: string | null } };
}

function say(fact: string): void {
  process.stdout.write(`[client-tabs] ${fact}\n`);
}

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(skip)('@tessera/client: five tabs of one browser (Chromium, dist/index.js)', () => {
  let dir: string;
  let tessera: TesseraProcess;
  let site: Server;
  let origin: string;
  let browser: Browser;
  // Closed after each test even when it fails: tabs left running would add refresh requests
  // (the request counter has no tenant label) to the next test's counts.
  const contexts: BrowserContext[] = [];
  const stamp = Date.now().toString(36);

  async function admin(method: string, path: string, body: unknown): Promise<Record<string, unknown>> {
    const r = await fetch(`${tessera.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    return (await r.json()) as Record<string, unknown>;
  }

  /** Counts at the server, for one tenant. */
  async function counts(tenant: string): Promise<{ refreshRequests: number; rotations: number; reused: number }> {
    const text = await (await fetch(`${tessera.url}/metrics`)).text();
    let refreshRequests = 0;
    let rotations = 0;
    let reused = 0;
    for (const line of text.split('\n')) {
      const m = /^(\w+)\{([^}]*)\} (\S+)$/.exec(line);
      if (!m) continue;
      const [, name, labels, value] = m;
      if (name === 'tessera_http_request_duration_seconds_count' && labels!.includes('route="/api/v1/auth/token/refresh"')) refreshRequests += Number(value);
      if (name === 'tessera_sessions_refreshed_total' && labels!.includes(`tenant="${tenant}"`)) rotations += Number(value);
      if (name === 'tessera_sessions_revoked_total' && labels!.includes(`tenant="${tenant}"`) && labels!.includes('reuse')) reused += Number(value);
    }
    return { refreshRequests, rotations, reused };
  }

  async function tenantWithUser(name: string, token: number): Promise<{ tenant: string; email: string }> {
    const tenant = `${name}-${stamp}`;
    const email = `${name}@example.com`;
    await admin('PUT', `/api/v1/admin/tenants/${tenant}`, { profile: 'integration', lifetimes: { token, refreshGrace: 0 } });
    await admin('POST', '/api/v1/admin/users', { tenantId: tenant, email, password: PASSWORD });
    return { tenant, email };
  }

  /** Tab 1 logs in; the other tabs open afterwards and find the session in localStorage. */
  async function openTabs(tenant: string, email: string, work: boolean, extra = '', count = TABS): Promise<{ context: BrowserContext; tabs: Page[] }> {
    const context = await browser.newContext();
    contexts.push(context);
    const url = `${origin}/tab.html?tenant=${tenant}&work=${work ? 1 : 0}${extra}`;
    const tabs: Page[] = [];
    for (let i = 0; i < count; i += 1) {
      const page = await context.newPage();
      page.on('pageerror', (e) => say(`tab ${i + 1} page error: ${e.message}`));
      await page.goto(url);
      await page.waitForFunction(() => (globalThis as unknown as Tab).document.body.textContent === 'ready');
      if (i === 0) await page.evaluate(({ email, password }) => (globalThis as unknown as Tab).t.login({ email, password }).then(() => undefined), { email, password: PASSWORD });
      tabs.push(page);
    }
    for (const p of tabs) await p.waitForFunction(() => (globalThis as unknown as Tab).t.getSession() !== null);
    return { context, tabs };
  }

  const tokens = (tabs: Page[]) => Promise.all(tabs.map((p) => p.evaluate(() => (globalThis as unknown as Tab).t.getAccessToken() )));
  const states = (tabs: Page[]) =>
    Promise.all(tabs.map((p) => p.evaluate(() => (globalThis as unknown as Tab).state)));

  async function sameTokenEverywhere(tabs: Page[]): Promise<string> {
    return until('every tab to hold the same token', async () => {
      const ts = await tokens(tabs);
      return ts[0] && ts.every((t) => t === ts[0]) ? ts[0] : null;
    });
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-client-tabs-'));
    // The tabs' site is bound first: its origin goes into Tessera's configuration.
    const listening = await listenLoopback();
    site = listening.server;
    origin = listening.url;
    tessera = await startTessera({
      TESSERA_ALLOWED_ORIGINS: origin, // cookie mode: the tabs' origin may log in and change state
      TESSERA_STORE: `sqlite:${join(dir, 'tessera.db')}`,
      COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET,
      TESSERA_ADMIN_TOKEN: ADMIN_TOKEN,
      TESSERA_LOG_LEVEL: 'warn',
    });
    // The tabs' origin: the page, the bundle, and everything else forwarded to Tessera.
    const bundle = readFileSync(BUNDLE);
    const target = new URL(tessera.url);
    site.on('request', (req: IncomingMessage, res: ServerResponse) => {
      if (req.url?.startsWith('/tab.html')) return res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
      if (req.url === '/client/index.js') return res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
      const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.writeHead(502).end());
      req.pipe(up);
    });
    browser = await launchChromium();
  });

  afterEach(async () => {
    for (const c of contexts.splice(0)) await c.close();
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => (site ? site.close(r) : r(null)));
    await tessera?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(
    'one refresh request per expiry across five working tabs, every tab continues, no family revoked; a frozen tab recovers',
    async () => {
      const { tenant, email } = await tenantWithUser('tabs', SHORT_TOKEN_S);
      const start = await counts(tenant);
      const { context, tabs } = await openTabs(tenant, email, true);
      let last = await sameTokenEverywhere(tabs);

      // Several expiries with all five tabs working.
      for (let round = 1; round <= 4; round += 1) {
        last = await until(`rotation ${round}`, async () => {
          const ts = await tokens(tabs);
          return ts[0] !== last && ts.every((t) => t === ts[0]) ? ts[0] : null;
        });
        const c = await counts(tenant);
        say(`expiry ${round}: refresh requests ${c.refreshRequests - start.refreshRequests}, rotations ${c.rotations - start.rotations}`);
      }
      let c = await counts(tenant);
      expect(c.rotations - start.rotations).toBeGreaterThanOrEqual(4);
      // Exactly one request per rotation: no second request (not even a grace-window repeat).
      expect(c.refreshRequests - start.refreshRequests).toBe(c.rotations - start.rotations);
      expect(c.reused).toBe(0);

      // A tab frozen past its token's expiry, then resumed. Frozen = its JavaScript paused in the
      // debugger: no timers, no events, no messages run until it resumes (like a suspended laptop
      // or a tab frozen by the browser).
      const frozen = tabs[TABS - 1]!;
      const cdp: CDPSession = await context.newCDPSession(frozen);
      await cdp.send('Debugger.enable');
      const stale = await frozen.evaluate(() => (globalThis as unknown as Tab).t.getAccessToken());
      const callsBefore = (await states(tabs)).map((s) => s.requests);
      await cdp.send('Debugger.pause');
      const others = tabs.slice(0, TABS - 1);
      let seen = stale;
      for (let i = 0; i < 2; i += 1) {
        seen = await until('the other tabs to rotate while one is frozen', async () => {
          const ts = await tokens(others);
          return ts[0] !== seen && ts.every((t) => t === ts[0]) ? ts[0] : null;
        });
      }
      await cdp.send('Debugger.resume');
      // It really was frozen: its 200 ms loop stood still while the others kept calling.
      const callsAfter = (await states(tabs)).map((s, i) => s.requests - callsBefore[i]!);
      say(`calls while one tab was frozen: ${callsAfter.join(', ')}`);
      // (a call or two can complete right after the resume, before this read)
      expect(Math.min(...callsAfter.slice(0, TABS - 1))).toBeGreaterThan(5);
      expect(callsAfter[TABS - 1]).toBeLessThan(Math.min(...callsAfter.slice(0, TABS - 1)) / 2);
      const status = await frozen.evaluate(async () => (await (globalThis as unknown as Tab).t.fetch('/api/v1/session')).status);
      expect(status).toBe(200);
      expect(await frozen.evaluate(() => (globalThis as unknown as Tab).t.getAccessToken())).not.toBe(stale);

      // Every tab frozen past expiry, then all resumed at once: one refresh between them.
      const cdps = await Promise.all(tabs.map((p) => context.newCDPSession(p)));
      await Promise.all(cdps.map((s) => s.send('Debugger.enable')));
      await sameTokenEverywhere(tabs);
      await Promise.all(cdps.map((s) => s.send('Debugger.pause')));
      const before = await counts(tenant);
      await new Promise((r) => setTimeout(r, (SHORT_TOKEN_S + 1) * 1000)); // the token is now expired
      await Promise.all(cdps.map((s) => s.send('Debugger.resume')));
      const answers = await Promise.all(tabs.map((p) => p.evaluate(async () => (await (globalThis as unknown as Tab).t.fetch('/api/v1/session')).status)));
      expect(answers).toEqual(Array(TABS).fill(200));
      await sameTokenEverywhere(tabs);
      const after = await counts(tenant);
      say(`all frozen past expiry: refresh requests on resume ${after.refreshRequests - before.refreshRequests}`);
      expect(after.refreshRequests - before.refreshRequests).toBe(after.rotations - before.rotations);
      expect(after.rotations - before.rotations).toBeGreaterThanOrEqual(1);

      c = await counts(tenant);
      expect(c.refreshRequests - start.refreshRequests).toBe(c.rotations - start.rotations);
      expect(c.reused).toBe(0);
      const st = await states(tabs);
      for (const s of st) {
        expect(s.problems).toEqual([]);
        expect(s.expired).toBe(0);
      }
      say(`authenticated calls made by the tabs: ${st.map((s) => s.requests).join(', ')}`);
    },
    240_000,
  );

  it(
    `a burst: ${TABS} tabs call refresh() at the same instant, ${BURST_ROUNDS} rounds — one refresh request per round`,
    async () => {
      const { tenant, email } = await tenantWithUser('burst', 3600);
      const { tabs } = await openTabs(tenant, email, false);
      let token = await sameTokenEverywhere(tabs);
      const start = await counts(tenant);
      let expected = 0;
      let simultaneous = 0;
      for (let round = 1; round <= BURST_ROUNDS; round += 1) {
        // Every tab calls refresh() at one wall-clock instant. `before` is the token a tab held
        // when it called: tabs that called with the same token must share ONE refresh request.
        // (Under heavy load a tab's timer can fire after it has already received the new pair;
        // its refresh() then rightly refreshes that pair — a second token, a second request.)
        const at = Date.now() + 150;
        const results = await Promise.all(
          tabs.map((p) =>
            p.evaluate(
              (at) =>
                new Promise<{ before: string | null; after: string | null }>((resolve, reject) =>
                  setTimeout(() => {
                    const t = (globalThis as unknown as Tab).t;
                    const before = t.getAccessToken();
                    t.refresh().then(() => resolve({ before, after: t.getAccessToken() }), reject);
                  }, at - Date.now()),
                ),
              at,
            ),
          ),
        );
        const befores = new Set(results.map((r) => r.before));
        if (befores.size === 1 && befores.has(token)) simultaneous += 1;
        expected += befores.size;
        expect(results.every((r) => r.after !== null && r.after !== r.before)).toBe(true);
        token = await sameTokenEverywhere(tabs);
        const c = await counts(tenant);
        expect({ round, requests: c.refreshRequests - start.refreshRequests, rotations: c.rotations - start.rotations, reused: c.reused }).toEqual({
          round,
          requests: expected,
          rotations: expected,
          reused: 0,
        });
      }
      expect(simultaneous).toBeGreaterThan(0); // the race was exercised at least once
      say(`burst: ${simultaneous} of ${BURST_ROUNDS} rounds had all ${TABS} calls made with the same token; ${expected} refresh requests in all`);
      const st = await states(tabs);
      expect(st.map((s) => s.expired)).toEqual(Array(TABS).fill(0));
    },
    240_000,
  );
  it(
    'without BroadcastChannel (storage events only): still one refresh request per expiry, no family revoked',
    async () => {
      const { tenant, email } = await tenantWithUser('nobc', SHORT_TOKEN_S);
      const start = await counts(tenant);
      const { tabs } = await openTabs(tenant, email, true, '&nobc=1');
      expect(await tabs[0]!.evaluate(() => typeof (globalThis as { BroadcastChannel?: unknown }).BroadcastChannel)).toBe('undefined');
      let last = await sameTokenEverywhere(tabs);
      for (let round = 1; round <= 3; round += 1) {
        last = await until(`rotation ${round}`, async () => {
          const ts = await tokens(tabs);
          return ts[0] !== last && ts.every((t) => t === ts[0]) ? ts[0] : null;
        });
      }
      const c = await counts(tenant);
      say(`without BroadcastChannel: refresh requests ${c.refreshRequests - start.refreshRequests}, rotations ${c.rotations - start.rotations}`);
      expect(c.rotations - start.rotations).toBeGreaterThanOrEqual(3);
      expect(c.refreshRequests - start.refreshRequests).toBe(c.rotations - start.rotations);
      expect(c.reused).toBe(0);
      for (const st of await states(tabs)) expect(st.problems).toEqual([]);
    },
    240_000,
  );

  it(
    "cookie mode: the session cookie with credentials: 'include', X-XSRF-TOKEN on state changes, shared by the tabs",
    async () => {
      const { tenant, email } = await tenantWithUser('cookie', 3600);
      const { tabs } = await openTabs(tenant, email, false, '&mode=cookie', 2);
      const [a, b] = tabs as [Page, Page];
      // No token anywhere: the session is the HttpOnly cookie.
      expect(await a.evaluate(() => (globalThis as unknown as Tab).t.getAccessToken())).toBeNull();
      expect(await a.evaluate(async () => (await (globalThis as unknown as Tab).t.fetch('/api/v1/session')).status)).toBe(200);
      // A state change without the XSRF header is refused by Tessera; through the client it is not.
      const bare = await b.evaluate(async () => {
        const r = await fetch('/api/v1/auth/logout', { method: 'POST', credentials: 'include' });
        return { status: r.status, code: ((await r.json()) as { code: string }).code };
      });
      expect(bare).toEqual({ status: 403, code: 'csrf' });
      expect(await b.evaluate(async () => (await (globalThis as unknown as Tab).t.fetch('/api/v1/auth/logout', { method: 'POST' })).status)).toBe(204);
      expect(await a.evaluate(async () => (await fetch('/api/v1/session', { credentials: 'include' })).status)).toBe(401);
    },
    120_000,
  );
});
