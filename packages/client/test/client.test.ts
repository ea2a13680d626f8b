// @tessera/client in Node, with fake timers and an in-memory Tessera (test/fake-tessera.ts).
// Several clients on one storage stand for the tabs of a browser: Node has navigator.locks and
// BroadcastChannel, so the cross-tab code paths run here too (the Chromium test covers a browser).

import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createTesseraClient, type TesseraClient, type TesseraClientOptions, type TesseraStorage } from '../src/index.ts';
import { FakeTessera } from './fake-tessera.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const REFRESH = '/api/v1/auth/token/refresh';

const urlOf = (input: RequestInfo | URL) => (input instanceof Request ? input.url : input instanceof URL ? input.href : input);

function memory(): TesseraStorage & { map: Map<string, string> } {
  const map = new Map<string, string>();
  return { map, get: (k) => map.get(k) ?? null, set: (k, v) => void map.set(k, v), remove: (k) => void map.delete(k) };
}

let clients: TesseraClient[] = [];
let storageKey = '';

function client(server: FakeTessera, o: Partial<TesseraClientOptions> = {}): TesseraClient {
  const c = createTesseraClient({ baseUrl: 'https://auth.test', tenantId: 'acme', fetch: server.fetch, storageKey, ...o });
  clients.push(c);
  return c;
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  vi.setSystemTime(Date.UTC(2026, 11, 6, 9, 0, 0));
  storageKey = `tessera-test:${randomUUID()}`; // one lock and channel namespace per test
});

afterEach(() => {
  for (const c of clients) c.close();
  clients = [];
  vi.useRealTimers();
});

describe('proactive refresh', () => {
  it('refreshes refreshThreshold seconds before expiry, not earlier', async () => {
    const server = new FakeTessera({ lifetime: 600 });
    const c = client(server, { refreshThreshold: 120, storage: memory() });
    await c.login({ email: 'a@example.com', password: 'pw' });
    await vi.advanceTimersByTimeAsync(479_000);
    expect(server.count(REFRESH)).toBe(0);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(server.count(REFRESH)).toBe(1);
    // The next one is scheduled from the new pair: 480 s later.
    await vi.advanceTimersByTimeAsync(479_000);
    expect(server.count(REFRESH)).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(server.count(REFRESH)).toBe(2);
  });

  it('clamps a threshold above half the lifetime to half', async () => {
    const server = new FakeTessera({ lifetime: 600 });
    const c = client(server, { refreshThreshold: 500, storage: memory() });
    await c.login({ email: 'a@example.com', password: 'pw' });
    await vi.advanceTimersByTimeAsync(299_000);
    expect(server.count(REFRESH)).toBe(0); // 500 s would have refreshed at 100 s
    await vi.advanceTimersByTimeAsync(1_000);
    expect(server.count(REFRESH)).toBe(1);
  });

  it('uses 300 s by default', async () => {
    const server = new FakeTessera({ lifetime: 3600 });
    const c = client(server, { storage: memory() });
    await c.login({ email: 'a@example.com', password: 'pw' });
    await vi.advanceTimersByTimeAsync(3299_000);
    expect(server.count(REFRESH)).toBe(0);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(server.count(REFRESH)).toBe(1);
  });
});

describe('single flight', () => {
  it('concurrent refresh() calls of one client and of three clients on one storage make one request', async () => {
    const server = new FakeTessera({ lifetime: 600, grace: 0 });
    const storage = memory();
    const a = client(server, { storage });
    await a.login({ email: 'a@example.com', password: 'pw' });
    const b = client(server, { storage });
    const c = client(server, { storage });
    await Promise.all([b.ready, c.ready]);
    expect(b.getSession()?.sessionId).toBe(a.getSession()?.sessionId);

    const results = await Promise.all([a.refresh(), a.refresh(), b.refresh(), c.refresh(), c.refresh()]);
    expect(server.count(REFRESH)).toBe(1);
    expect(new Set(results.map((s) => s?.sessionId)).size).toBe(1);
    expect(new Set([a, b, c].map((x) => x.getAccessToken())).size).toBe(1);
    expect([...server.families.values()].some((f) => f.ended)).toBe(false);

    // A later refresh() refreshes again (it is "now", not "if due").
    await a.refresh();
    expect(server.count(REFRESH)).toBe(2);
  });

  it('at expiry, three clients on one storage refresh once', async () => {
    const server = new FakeTessera({ lifetime: 600, grace: 0 });
    const storage = memory();
    const a = client(server, { storage });
    await a.login({ email: 'a@example.com', password: 'pw' });
    const b = client(server, { storage });
    const c = client(server, { storage });
    await Promise.all([b.ready, c.ready]);
    for (let round = 1; round <= 3; round += 1) {
      await vi.advanceTimersByTimeAsync(300_000);
      expect(server.count(REFRESH)).toBe(round);
      expect(new Set([a, b, c].map((x) => x.getAccessToken())).size).toBe(1);
    }
    expect([...server.families.values()].some((f) => f.ended)).toBe(false);
  });
});

describe('401 handling', () => {
  it('a 401 that a refresh cures: refresh and retry once', async () => {
    const server = new FakeTessera({ lifetime: 600 });
    const c = client(server, { storage: memory() });
    await c.login({ email: 'a@example.com', password: 'pw' });
    server.tokens.clear(); // the server no longer accepts the token (e.g. its key was dropped)
    const res = await c.fetch('https://auth.test/api/orders');
    expect(res.status).toBe(200);
    expect(server.count('/api/orders')).toBe(2);
    expect(server.count(REFRESH)).toBe(1);
  });

  it('retries once only: a second 401 is returned to the caller', async () => {
    const server = new FakeTessera({ lifetime: 600 });
    const c = client(server, { storage: memory() });
    await c.login({ email: 'a@example.com', password: 'pw' });
    const realFetch = server.fetch;
    const f = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
      const res = await realFetch(input, init);
      if (urlOf(input).endsWith('/api/orders')) return new Response(JSON.stringify({ code: 'invalid_token' }), { status: 401 });
      return res;
    });
    const c2 = client(server, { storage: memory(), fetch: f });
    await c2.login({ email: 'a@example.com', password: 'pw' });
    const res = await c2.fetch('https://auth.test/api/orders');
    expect(res.status).toBe(401);
    expect(server.count('/api/orders')).toBe(2);
    expect(server.count(REFRESH)).toBe(1);
  });

  it('a 401 no refresh can cure (reauth_required) is not retried', async () => {
    const server = new FakeTessera({ lifetime: 600 });
    const storage = memory();
    const f = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) =>
      urlOf(input).endsWith('/api/orders') ? new Response(JSON.stringify({ code: 'reauth_required' }), { status: 401 }) : server.fetch(input, init),
    );
    const c = client(server, { storage, fetch: f });
    await c.login({ email: 'a@example.com', password: 'pw' });
    expect((await c.fetch('https://auth.test/api/orders')).status).toBe(401);
    expect(f.mock.calls.filter(([u]) => urlOf(u).endsWith('/api/orders'))).toHaveLength(1);
    expect(server.count(REFRESH)).toBe(0);
    expect(c.getSession()).not.toBeNull();
  });

  it('a tab woken past expiry refreshes before its request', async () => {
    const server = new FakeTessera({ lifetime: 600 });
    const c = client(server, { storage: memory() });
    await c.login({ email: 'a@example.com', password: 'pw' });
    vi.setSystemTime(Date.now() + 3600_000); // slept an hour; no timer ran
    const res = await c.fetch('https://auth.test/api/orders');
    expect(res.status).toBe(200);
    expect(server.count(REFRESH)).toBe(1);
    expect(server.count('/api/orders')).toBe(1);
  });

  it('`expired` fires once, and refresh_token_reused never causes a second refresh', async () => {
    const server = new FakeTessera({ lifetime: 600, grace: 0 });
    const storage = memory();
    const c = client(server, { storage });
    const expired = vi.fn();
    c.on('expired', expired);
    await c.login({ email: 'a@example.com', password: 'pw' });
    // Someone else used the refresh token (a stolen copy): the client's next use is a reuse.
    const stored = JSON.parse(storage.map.get(storageKey)!) as { refreshToken: string };
    await server.fetch('https://auth.test' + REFRESH, { method: 'POST', body: JSON.stringify({ refreshToken: stored.refreshToken }) });
    const before = server.count(REFRESH);
    vi.setSystemTime(Date.now() + 601_000);
    const answers = await Promise.all([1, 2, 3].map(() => c.fetch('https://auth.test/api/orders')));
    expect(answers.map((r) => r.status)).toEqual([401, 401, 401]);
    await c.refresh();
    await vi.advanceTimersByTimeAsync(3600_000);
    expect(server.count(REFRESH) - before).toBe(1);
    expect(expired).toHaveBeenCalledTimes(1);
    expect(c.getSession()).toBeNull();
    expect(storage.map.has(storageKey)).toBe(false);
  });
});

describe('logout', () => {
  it('clears the storage (and tells the listeners) when the server is down', async () => {
    const server = new FakeTessera();
    const storage = memory();
    const c = client(server, { storage });
    const out = vi.fn();
    c.on('loggedOut', out);
    await c.login({ email: 'a@example.com', password: 'pw' });
    expect(storage.map.has(storageKey)).toBe(true);
    server.down = true;
    await c.logout();
    expect(storage.map.has(storageKey)).toBe(false);
    expect(c.getSession()).toBeNull();
    expect(out).toHaveBeenCalledTimes(1);
    expect(server.calls.at(-1)?.path).toBe('/api/v1/auth/logout');
  });

  it('a logout in one client ends the session in another on the same storage', async () => {
    const server = new FakeTessera();
    const storage = memory();
    const a = client(server, { storage });
    await a.login({ email: 'a@example.com', password: 'pw' });
    const b = client(server, { storage });
    await b.ready;
    const out = vi.fn();
    b.on('loggedOut', out);
    await a.logout();
    await vi.waitFor(() => expect(out).toHaveBeenCalledTimes(1));
    expect(b.getSession()).toBeNull();
  });
});

describe('headers', () => {
  it('X-Request-ID fresh, X-Correlation-ID per client, X-Activity-ID while an activity runs, X-Tenant-ID, X-Session-ID, bearer', async () => {
    const server = new FakeTessera();
    const c = client(server, { storage: memory() });
    const session = await c.login({ email: 'a@example.com', password: 'pw' });
    await c.fetch('/api/orders');
    const act = c.startActivity();
    await c.fetch('/api/orders', { headers: { 'x-extra': '1' } });
    act.end();
    await c.fetch('/api/orders');
    const calls = server.calls.filter((x) => x.path === '/api/orders');
    expect(calls).toHaveLength(3);
    const [h1, h2, h3] = calls.map((x) => x.headers);
    for (const h of [h1!, h2!, h3!]) {
      expect(h.get('x-request-id')).toMatch(UUID);
      expect(h.get('x-tenant-id')).toBe('acme');
      expect(h.get('x-session-id')).toBe(session.sessionId);
      expect(h.get('authorization')).toMatch(/^Bearer at-/);
    }
    expect(new Set([h1, h2, h3].map((h) => h!.get('x-request-id'))).size).toBe(3);
    expect(new Set([h1, h2, h3].map((h) => h!.get('x-correlation-id'))).size).toBe(1);
    expect(h1!.get('x-activity-id')).toBeNull();
    expect(h2!.get('x-activity-id')).toBe(act.id);
    expect(h2!.get('x-extra')).toBe('1');
    expect(h3!.get('x-activity-id')).toBeNull();
  });

  it('cookie mode: credentials include, X-XSRF-TOKEN on state-changing requests only, no bearer', async () => {
    const server = new FakeTessera();
    const c = client(server, { storage: memory(), mode: 'cookie' });
    await c.login({ email: 'a@example.com', password: 'pw' });
    expect(server.calls[0]?.headers.get('x-auth-mode')).toBe('cookie');
    expect(server.calls[0]?.credentials).toBe('include');
    await c.fetch('https://auth.test/api/orders');
    await c.fetch('https://auth.test/api/orders', { method: 'POST', body: '{}' });
    const [get, post] = server.calls.filter((x) => x.path === '/api/orders');
    expect(get?.credentials).toBe('include');
    expect(get?.headers.get('x-xsrf-token')).toBeNull();
    expect(post?.headers.get('x-xsrf-token')).toBe('xsrf-1');
    expect(post?.headers.get('authorization')).toBeNull();
  });
});
