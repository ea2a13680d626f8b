// Issue 11: the defects of the adversarial review, one test (or group) named after each item.
// Each test fails on the code before the fix and passes after; see docs/security.md for the
// threat, the defence and the OWASP ASVS mapping.

import { connect, createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import type { LookupAddress } from 'node:dns';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backupSqlite } from '../../src/store/sqlite/backup.ts';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UNREACHABLE } from '../../src/net/outbound-policy.ts';
import type { TesseraEvent } from '../../src/events/bus.ts';
import { admin, provision, startTestServer, uniqueTenant, type StoreChoice, type TestServer } from '../support/harness.ts';
import { loginAtProvider, MiniBrowser, startSsoWorld, type SsoWorld } from '../support/sso-world.ts';
import * as oidc from 'openid-client';
import { storeChoices } from '../support/store-choices.ts';
import { dumpStore } from '../support/raw-store.ts';
import { freePort } from '../support/tessera-process.ts';
import { startSimulator, type SimulatorProcess } from '../support/bank-simulator.ts';

interface Problem {
  code: string;
  detail: string;
  field?: string;
}

/** A TCP listener on 127.0.0.1 that counts connections and drops each one at once. */
async function countingListener(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server: TcpServer = createTcpServer((socket) => {
    n += 1;
    socket.destroy();
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as { port: number }).port;
  return { port, connections: () => n, close: () => new Promise<void>((res) => server.close(() => res())) };
}

async function tenant(s: TestServer): Promise<string> {
  const id = uniqueTenant();
  const t = await s.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${id}`, headers: admin, payload: { profile: 'integration' } });
  expect(t.statusCode).toBe(200);
  return id;
}

describe('item 1: server-side request forgery by a tenant administrator (outbound URL policy)', () => {
  it('item 1: refuses issuers and back-channel URIs on loopback, private, link-local, IPv4-mapped and ULA addresses at registration', async () => {
    const s = await startTestServer();
    try {
      const tenantId = await tenant(s);
      const targets = [
        'https://127.0.0.1/',
        'https://localhost/',
        'https://10.1.2.3/',
        'https://172.16.0.1/',
        'https://192.168.1.1/',
        'https://169.254.169.254/latest/meta-data/',
        'https://[::ffff:127.0.0.1]/',
        'https://[::ffff:a9fe:a9fe]/',
        'https://[::1]/',
        'https://[fd00::1]/',
        'https://[fe80::1]/',
        'https://0.0.0.0/',
        'https://100.64.0.1/',
      ];
      for (const target of targets) {
        const org = await s.app.inject({
          method: 'PUT',
          url: '/api/v1/admin/orgs/ssrf',
          headers: admin,
          payload: { tenantId, oidc: { issuer: target, clientId: 'x' } },
        });
        expect(org.statusCode, `${target}: ${org.body}`).toBe(400);
        expect(org.json()).toMatchObject({ code: 'outbound_url_refused', field: 'oidc.issuer' });
        const oauth = await s.app.inject({
          method: 'PUT',
          url: '/api/v1/admin/orgs/ssrf2',
          headers: admin,
          payload: {
            tenantId,
            oauth: { provider: 'p', authorizationEndpoint: 'https://idp.example/a', tokenEndpoint: `${target}t`, userinfoEndpoint: 'https://idp.example/u', clientId: 'x' },
          },
        });
        expect(oauth.statusCode, `${target}: ${oauth.body}`).toBe(400);
        expect(oauth.json()).toMatchObject({ code: 'outbound_url_refused', field: 'oauth.tokenEndpoint' });
        const app = await s.app.inject({
          method: 'PUT',
          url: '/api/v1/admin/apps/ssrf-app',
          headers: admin,
          payload: { tenantId, redirectUris: ['https://app.example/cb'], backchannelLogoutUri: `${target}bc` },
        });
        expect(app.statusCode, `${target}: ${app.body}`).toBe(400);
        expect(app.json()).toMatchObject({ code: 'outbound_url_refused', field: 'backchannelLogoutUri' });
      }
      // Nothing was stored.
      expect((await s.app.inject({ method: 'GET', url: '/api/v1/admin/apps/ssrf-app', headers: admin })).statusCode).toBe(404);
      // A public name that does not resolve now is accepted (nothing is connected to).
      const ok = await s.app.inject({
        method: 'PUT',
        url: '/api/v1/admin/apps/ssrf-app',
        headers: admin,
        payload: { tenantId, redirectUris: ['https://app.example/cb'], backchannelLogoutUri: 'https://app.example/bc' },
      });
      expect(ok.statusCode, ok.body).toBe(200);
    } finally {
      await s.close();
    }
  });

  it('item 1: tells the tenant only "could not reach the provider" — a closed port and a listener that hangs up answer alike', async () => {
    const s = await startTestServer({ env: { TESSERA_DEV_ALLOW_HTTP_LOOPBACK: '1' } });
    const listener = await countingListener();
    try {
      const tenantId = await tenant(s);
      const closedPort = await freePort(); // closed: nothing is to listen there
      const details: string[] = [];
      for (const port of [closedPort, listener.port]) {
        const r = await s.app.inject({
          method: 'PUT',
          url: '/api/v1/admin/orgs/scan',
          headers: admin,
          payload: { tenantId, oidc: { issuer: `http://127.0.0.1:${port}`, clientId: 'x' } },
        });
        expect(r.statusCode).toBe(502);
        const p = r.json() as Problem;
        expect(p.code).toBe('oidc_discovery_failed');
        expect(r.body).not.toMatch(/ECONN|socket|fetch failed|TLS|timeout|refused/i);
        details.push(p.detail);
      }
      expect(listener.connections()).toBeGreaterThan(0);
      expect(details[0]).toBe(UNREACHABLE);
      expect(details[1]).toBe(details[0]);
    } finally {
      await listener.close();
      await s.close();
    }
  });

  it('item 1: checks the address again at connect time (DNS rebinding), unless TESSERA_OUTBOUND_ALLOW names the host', async () => {
    const listener = await countingListener();
    // The attacker's name: public when Tessera checks it at registration, loopback afterwards.
    const calls: string[] = [];
    const rebinding = async (hostname: string): Promise<LookupAddress[]> => {
      calls.push(hostname);
      if (hostname !== 'rebind.example') throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      return calls.filter((h) => h === hostname).length === 1 ? [{ address: '93.184.216.34', family: 4 }] : [{ address: '127.0.0.1', family: 4 }];
    };
    const strict = await startTestServer({ lookup: rebinding });
    try {
      const tenantId = await tenant(strict);
      const r = await strict.app.inject({
        method: 'PUT',
        url: '/api/v1/admin/orgs/rebind',
        headers: admin,
        payload: { tenantId, oidc: { issuer: `https://rebind.example:${listener.port}`, clientId: 'x' } },
      });
      expect(r.statusCode, r.body).toBe(502);
      expect((r.json() as Problem).detail).toBe(UNREACHABLE);
      // Resolved at registration (public) and again for the connection (loopback: refused).
      expect(calls.filter((h) => h === 'rebind.example').length).toBeGreaterThanOrEqual(2);
      expect(listener.connections()).toBe(0);
    } finally {
      await strict.close();
    }
    // The control: with the host allowed by the operator, the same resolution does connect.
    calls.length = 0;
    const allowed = await startTestServer({ lookup: rebinding, env: { TESSERA_OUTBOUND_ALLOW: 'rebind.example' } });
    try {
      const tenantId = await tenant(allowed);
      const r = await allowed.app.inject({
        method: 'PUT',
        url: '/api/v1/admin/orgs/rebind',
        headers: admin,
        payload: { tenantId, oidc: { issuer: `https://rebind.example:${listener.port}`, clientId: 'x' } },
      });
      expect(r.statusCode, r.body).toBe(502);
      expect((r.json() as Problem).detail).toBe(UNREACHABLE);
      expect(listener.connections()).toBeGreaterThan(0);
    } finally {
      await allowed.close();
      await listener.close();
    }
  });

  it('item 1: TESSERA_OUTBOUND_ALLOW admits listed addresses and CIDR ranges, and refuses anything else in the list at start', async () => {
    const s = await startTestServer({ env: { TESSERA_OUTBOUND_ALLOW: '10.0.0.0/8, 127.0.0.1' } });
    try {
      const tenantId = await tenant(s);
      for (const [url, allowed] of [
        ['https://10.20.30.40/bc', true],
        ['https://127.0.0.1:8443/bc', true],
        ['https://192.168.0.1/bc', false],
      ] as const) {
        const r = await s.app.inject({
          method: 'PUT',
          url: '/api/v1/admin/apps/allow-app',
          headers: admin,
          payload: { tenantId, redirectUris: ['https://app.example/cb'], backchannelLogoutUri: url },
        });
        expect(r.statusCode, `${url}: ${r.body}`).toBe(allowed ? 200 : 400);
      }
    } finally {
      await s.close();
    }
    await expect(startTestServer({ env: { TESSERA_OUTBOUND_ALLOW: '10.0.0.0/33' } })).rejects.toThrow(/TESSERA_OUTBOUND_ALLOW/);
  });
});

// ---- helpers for the cookie-session items -------------------------------------------------------

type Res = Awaited<ReturnType<TestServer['app']['inject']>>;
const PUBLIC = 'https://tessera.test';
const PASSWORD = 'correct horse battery';

function cookieOf(res: Res, name: string): string | null {
  const raw = res.headers['set-cookie'];
  const list = Array.isArray(raw) ? raw : raw ? [raw] : [];
  for (const c of list) {
    const pair = c.split(';')[0] as string;
    const eq = pair.indexOf('=');
    if (pair.slice(0, eq) === name) return pair.slice(eq + 1);
  }
  return null;
}

interface CookieBrowser {
  tenantId: string;
  sid: string;
  xsrf: string;
  handle: string;
  rb?: string;
}

/** The bank of the consent tests: the bank simulator as a separate process (issue 15). */
let sim: SimulatorProcess | undefined;
async function bankSimulator(): Promise<SimulatorProcess> {
  sim ??= await startSimulator();
  return sim;
}
afterAll(async () => {
  await sim?.stop();
});

async function cookieLogin(s: TestServer, tenantId: string, email: string): Promise<CookieBrowser> {
  const res = await s.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    headers: { 'x-tenant-id': tenantId, 'x-auth-mode': 'cookie', origin: PUBLIC },
    payload: { email, password: PASSWORD },
  });
  expect(res.statusCode, res.body).toBe(200);
  const body = res.json() as { xsrfToken: string; sessionId: string };
  return { tenantId, sid: cookieOf(res, '__Host-sid') as string, xsrf: body.xsrfToken, handle: body.sessionId };
}

async function startConsent(s: TestServer, b: CookieBrowser): Promise<{ redirectId: string; rid: string; location: string; res: Res }> {
  const bank = await s.app.inject({
    method: 'PUT',
    url: '/api/v1/admin/banks/sim-bank',
    headers: admin,
    payload: { tenantId: b.tenantId, name: 'Simulated Bank', protocol: 'berlin-group', baseUrl: (await bankSimulator()).url },
  });
  expect([200, 201], bank.body).toContain(bank.statusCode);
  const res = await s.app.inject({
    method: 'POST',
    url: '/api/v1/consents',
    headers: { cookie: `__Host-sid=${b.sid}` + (b.rb ? `; __Host-rb=${b.rb}` : ''), 'x-xsrf-token': b.xsrf, origin: PUBLIC },
    payload: { type: 'ais', bankId: 'sim-bank' },
  });
  expect(res.statusCode, res.body).toBe(202);
  b.rb ??= cookieOf(res, '__Host-rb') as string;
  const body = res.json() as { redirectId: string; location: string };
  return { redirectId: body.redirectId, rid: cookieOf(res, '__Secure-rid') as string, location: body.location, res };
}

/** The user approves at the bank (once; a second decision changes nothing) and comes back. */
async function bankReturn(s: TestServer, b: CookieBrowser, r: { redirectId: string; rid: string; location: string }): Promise<Res> {
  await (await bankSimulator()).decide(r.location, 'approve');
  return s.app.inject({ url: `/api/v1/redirects/${r.redirectId}/return?result=ok`, headers: { cookie: `__Secure-rid=${r.rid}; __Host-rb=${b.rb}` } });
}

async function appSessionsOf(s: TestServer, tenantId: string, userId: string): Promise<Array<{ sessionId: string; status: string; authMethod: string }>> {
  const res = await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${tenantId}&userId=${userId}&kind=app`, headers: admin });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as { items: Array<{ sessionId: string; status: string; authMethod: string }> }).items;
}

describe.each(storeChoices())('cookie sessions and consent returns (%s)', (choice: StoreChoice) => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ store: choice, env: { TESSERA_DEV_ALLOW_HTTP_LOOPBACK: '1' } });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('item 2: logout of an idle-expired session ends it and its redirects; the pending bank return renews nothing', async () => {
    const tenantId = uniqueTenant();
    const email = 'shared-device@example.com';
    const userId = await provision(s.app, tenantId, email, PASSWORD, { profile: 'integration', lifetimes: { appIdle: 60 }, consentReturnUrl: '/app/after-bank' });
    const b = await cookieLogin(s, tenantId, email);
    const pending = await startConsent(s, b);
    s.clock.advance(61_000);
    // The person leaves; the page says the session ended, and they press "log out".
    const logout = await s.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { cookie: `__Host-sid=${b.sid}`, origin: PUBLIC } });
    expect(logout.statusCode, logout.body).toBe(204);
    expect(logout.headers['set-cookie']).toBeDefined();
    // The next person replays the bank tab from history: no session comes back.
    const replay = await bankReturn(s, b, pending);
    expect(replay.statusCode, replay.body).toBe(403);
    expect(cookieOf(replay, '__Host-sid')).toBeNull();
    const sessions = await appSessionsOf(s, tenantId, userId);
    expect(sessions.map((x) => x.status)).toEqual(['revoked']);
    expect(sessions.some((x) => x.authMethod === 'renewed')).toBe(false);
    // A cross-site logout of the expired session is refused (the Origin rule still applies).
    const b2 = await cookieLogin(s, tenantId, email);
    s.clock.advance(61_000);
    const csrf = await s.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { cookie: `__Host-sid=${b2.sid}`, origin: 'https://evil.example' } });
    expect(csrf.statusCode).toBe(403);
  });

  it('item 2: "log out everywhere" with an idle-expired session ends every session of the user, and no return renews one', async () => {
    const tenantId = uniqueTenant();
    const email = 'everywhere@example.com';
    const userId = await provision(s.app, tenantId, email, PASSWORD, { profile: 'integration', lifetimes: { appIdle: 60 }, consentReturnUrl: '/app/after-bank' });
    const laptop = await cookieLogin(s, tenantId, email);
    const pending = await startConsent(s, laptop);
    s.clock.advance(30_000);
    const phone = await cookieLogin(s, tenantId, email);
    s.clock.advance(31_000); // the laptop's session idled out; the phone's is valid
    const r = await s.app.inject({ method: 'DELETE', url: '/api/v1/sessions?scope=others', headers: { cookie: `__Host-sid=${laptop.sid}`, origin: PUBLIC } });
    expect(r.statusCode, r.body).toBe(200);
    expect((r.json() as { revoked: number }).revoked).toBeGreaterThanOrEqual(3); // laptop, its redirect, phone
    expect((await s.app.inject({ url: '/api/v1/session', headers: { cookie: `__Host-sid=${phone.sid}` } })).statusCode).toBe(401);
    const replay = await bankReturn(s, laptop, pending);
    expect(replay.statusCode).toBe(403);
    expect(cookieOf(replay, '__Host-sid')).toBeNull();
    expect((await appSessionsOf(s, tenantId, userId)).every((x) => x.status === 'revoked')).toBe(true);
  });

  it('item 2: an administrator ending an idle-expired session makes it final: a late bank return renews nothing', async () => {
    const tenantId = uniqueTenant();
    const email = 'admin-ended@example.com';
    const userId = await provision(s.app, tenantId, email, PASSWORD, { profile: 'integration', lifetimes: { appIdle: 60 }, consentReturnUrl: '/app/after-bank' });
    const b = await cookieLogin(s, tenantId, email);
    const pending = await startConsent(s, b);
    s.clock.advance(61_000);
    const del = await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/users/${userId}/sessions?tenantId=${tenantId}`, headers: admin });
    expect([200, 204], del.body).toContain(del.statusCode);
    const replay = await bankReturn(s, b, pending);
    expect(cookieOf(replay, '__Host-sid')).toBeNull();
    expect((await appSessionsOf(s, tenantId, userId)).map((x) => x.status)).toEqual(['revoked']);
  });
});

describe.each(storeChoices())('session limits and renewals (%s)', (choice: StoreChoice) => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ store: choice, env: { TESSERA_DEV_ALLOW_HTTP_LOOPBACK: '1' } });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('item 10: a consent return renewal goes through the same limit as a login (max 1, reject_new)', async () => {
    const tenantId = uniqueTenant();
    const email = 'limited@example.com';
    const userId = await provision(s.app, tenantId, email, PASSWORD, {
      profile: 'integration',
      lifetimes: { appIdle: 60 },
      sessionLimit: { max: 1, policy: 'reject_new' },
      consentReturnUrl: '/app/after-bank',
    });
    const first = await cookieLogin(s, tenantId, email);
    const pending = await startConsent(s, first);
    // A second login while the first is valid is refused.
    const refused = await s.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'x-tenant-id': tenantId, 'x-auth-mode': 'cookie', origin: PUBLIC },
      payload: { email, password: PASSWORD },
    });
    expect(refused.statusCode).toBe(409);
    s.clock.advance(61_000); // the first idles out; a new login is the one active session
    await cookieLogin(s, tenantId, email);
    const back = await bankReturn(s, first, pending);
    expect(back.statusCode, back.body).toBe(303);
    expect(cookieOf(back, '__Host-sid')).toBeNull();
    const active = (await appSessionsOf(s, tenantId, userId)).filter((x) => x.status === 'active');
    expect(active).toHaveLength(1);
    expect(active[0]!.authMethod).toBe('password');
  });
});

describe.each(storeChoices())('login throttle (%s)', (choice: StoreChoice) => {
  function loginFrom(s: TestServer, tenantId: string, email: string, password: string, ip: string): Promise<Res> {
    return s.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      remoteAddress: ip,
      headers: { 'x-tenant-id': tenantId },
      payload: { email, password },
    });
  }

  it("item 13: a stranger's wrong guesses lock out the stranger's address, not the owner", async () => {
    const s = await startTestServer({ store: choice });
    try {
      const tenantId = uniqueTenant();
      const email = 'owner@example.com';
      await provision(s.app, tenantId, email, PASSWORD);
      expect((await loginFrom(s, tenantId, email, PASSWORD, '198.51.100.10')).statusCode).toBe(200); // the owner's device
      for (let i = 0; i < 5; i++) expect((await loginFrom(s, tenantId, email, `guess ${i}`, '203.0.113.66')).statusCode).toBe(401);
      const stranger = await loginFrom(s, tenantId, email, PASSWORD, '203.0.113.66');
      expect(stranger.statusCode).toBe(429);
      expect(stranger.json()).toMatchObject({ code: 'login_throttled' });
      // The owner, from the known device and from a new one, still gets in.
      expect((await loginFrom(s, tenantId, email, PASSWORD, '198.51.100.10')).statusCode).toBe(200);
      expect((await loginFrom(s, tenantId, email, PASSWORD, '192.0.2.20')).statusCode).toBe(200);
    } finally {
      await s.close();
    }
  });

  it('item 13: an IPv6 client counts by its /64 — guesses from many of its addresses lock the /64 out, not the next /64', async () => {
    const s = await startTestServer({ store: choice, throttle: { accountFailures: 100, ipFailures: 3, windowMs: 60_000, accountFailuresAnyAddress: 100 } });
    try {
      const tenantId = uniqueTenant();
      const email = 'v6@example.com';
      await provision(s.app, tenantId, email, PASSWORD);
      // Three addresses of one /64, as a client with privacy addresses picks them at will.
      for (const ip of ['2001:db8:1:2::a1', '2001:db8:1:2:0:0:0:a2', '2001:db8:1:2:1234:5678:9abc:def0']) {
        expect((await loginFrom(s, tenantId, email, 'wrong pass', ip)).statusCode, ip).toBe(401);
      }
      const sameNet = await loginFrom(s, tenantId, email, PASSWORD, '2001:0db8:0001:0002:ffff:ffff:ffff:ffff');
      expect(sameNet.statusCode).toBe(429);
      expect(sameNet.json()).toMatchObject({ code: 'login_throttled' });
      expect((await loginFrom(s, tenantId, email, PASSWORD, '2001:db8:1:3::1')).statusCode).toBe(200);
      // An IPv4 peer reported by a dual-stack socket as IPv4-mapped IPv6 is that IPv4 address.
      for (let i = 0; i < 3; i++) expect((await loginFrom(s, tenantId, email, 'wrong pass', '::ffff:203.0.113.7')).statusCode).toBe(401);
      expect((await loginFrom(s, tenantId, email, PASSWORD, '203.0.113.7')).statusCode).toBe(429);
    } finally {
      await s.close();
    }
  });

  it('item 13: guesses spread over many addresses hit the per-account limit; a known address still gets in', async () => {
    const s = await startTestServer({ store: choice, throttle: { accountFailures: 3, ipFailures: 1000, windowMs: 60_000, accountFailuresAnyAddress: 6 } });
    try {
      const tenantId = uniqueTenant();
      const email = 'spread@example.com';
      await provision(s.app, tenantId, email, PASSWORD);
      expect((await loginFrom(s, tenantId, email, PASSWORD, '198.51.100.10')).statusCode).toBe(200);
      for (let i = 0; i < 6; i++) expect((await loginFrom(s, tenantId, email, 'wrong pass', `203.0.113.${i + 1}`)).statusCode).toBe(401);
      const fresh = await loginFrom(s, tenantId, email, PASSWORD, '203.0.113.99');
      expect(fresh.statusCode).toBe(429);
      expect((await loginFrom(s, tenantId, email, PASSWORD, '198.51.100.10')).statusCode).toBe(200);
    } finally {
      await s.close();
    }
  });

  it('item 13: successful logins of one account are rate-limited', async () => {
    const s = await startTestServer({ store: choice, throttle: { accountFailures: 5, ipFailures: 1000, windowMs: 60_000, successesPerMinute: 3 } });
    try {
      const tenantId = uniqueTenant();
      const email = 'flood@example.com';
      await provision(s.app, tenantId, email, PASSWORD);
      const results = await Promise.all(Array.from({ length: 8 }, () => loginFrom(s, tenantId, email, PASSWORD, '198.51.100.10')));
      expect(results.filter((r) => r.statusCode === 200)).toHaveLength(3);
      for (const r of results.filter((x) => x.statusCode !== 200)) {
        expect(r.statusCode).toBe(429);
        expect(r.json()).toMatchObject({ code: 'login_throttled' });
        expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
      }
      s.clock.advance(61_000);
      expect((await loginFrom(s, tenantId, email, PASSWORD, '198.51.100.10')).statusCode).toBe(200);
    } finally {
      await s.close();
    }
  });

  it('item 13: argon2 verifications per second are capped per process', async () => {
    let t = 0;
    const s = await startTestServer({
      store: choice,
      throttle: { accountFailures: 5, ipFailures: 1000, windowMs: 60_000, argon2PerSecond: 2, argon2MaxWaitMs: 0, monotonicNow: () => t },
    });
    try {
      const tenantId = uniqueTenant();
      await provision(s.app, tenantId, 'a@example.com', PASSWORD);
      const codes: number[] = [];
      for (let i = 0; i < 4; i++) codes.push((await loginFrom(s, tenantId, 'a@example.com', PASSWORD, `198.51.100.${i + 1}`)).statusCode);
      expect(codes).toEqual([200, 200, 429, 429]);
      t += 1000; // a second later the budget has two more checks
      expect((await loginFrom(s, tenantId, 'a@example.com', PASSWORD, '198.51.100.9')).statusCode).toBe(200);
    } finally {
      await s.close();
    }
  });
});

describe('item 7: request timeouts and a per-address connection budget', () => {
  /** Connects to the listening app; resolves with what the server sent once it closed the socket. */
  function rawConnection(port: number): { socket: Socket; closed: Promise<string> } {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    socket.on('error', () => undefined);
    const closed = new Promise<string>((res) => socket.on('close', () => res(received)));
    return { socket, closed };
  }

  it('item 7: a body sent one byte at a time is cut off with 408 by the request timeout', async () => {
    const s = await startTestServer({ env: { TESSERA_REQUEST_TIMEOUT_MS: '1000' } });
    try {
      await s.app.listen({ host: '127.0.0.1', port: 0 });
      const port = (s.app.server.address() as AddressInfo).port;
      const c = rawConnection(port);
      await new Promise<void>((res) => c.socket.once('connect', () => res()));
      c.socket.write('POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nX-Tenant-ID: t\r\n\r\n{');
      // Nothing more is sent: the server, not the client, ends the exchange.
      const answer = await c.closed;
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    } finally {
      await s.close();
    }
  }, 30_000);

  it('item 7: one address cannot open more than TESSERA_MAX_CONNECTIONS_PER_IP connections; the others keep working', async () => {
    const s = await startTestServer({ env: { TESSERA_MAX_CONNECTIONS_PER_IP: '3' } });
    const sockets: Socket[] = [];
    try {
      await s.app.listen({ host: '127.0.0.1', port: 0 });
      const port = (s.app.server.address() as AddressInfo).port;
      const held = [rawConnection(port), rawConnection(port), rawConnection(port)];
      for (const h of held) {
        sockets.push(h.socket);
        await new Promise<void>((res) => h.socket.once('connect', () => res()));
      }
      // Each held connection is counted by the server before the next one arrives.
      const fourth = rawConnection(port);
      sockets.push(fourth.socket);
      fourth.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(await fourth.closed).toBe('');
      // A held connection still gets answers.
      const first = held[0] as { socket: Socket };
      const answer = new Promise<string>((res) => first.socket.once('data', (d: Buffer) => res(d.toString('latin1'))));
      first.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(await answer).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      for (const so of sockets) so.destroy();
      await s.close();
    }
  }, 30_000);
});

describe('item 12: malformed HTTP Basic credentials', () => {
  it('item 12: a malformed Basic credential on app logout is 401 invalid_client, never 500', async () => {
    const s = await startTestServer();
    try {
      const tenantId = await tenant(s);
      const app = await s.app.inject({
        method: 'PUT',
        url: '/api/v1/admin/apps/basic-app',
        headers: admin,
        payload: { tenantId, redirectUris: ['https://app.example/cb'], clientSecret: 'basic-app-secret-'.padEnd(40, 'x') },
      });
      expect(app.statusCode, app.body).toBe(200);
      for (const raw of ['basic-app:%E0%A4%A', '%:secret', 'basic-app:%', 'no-colon-at-all']) {
        const r = await s.app.inject({
          method: 'POST',
          url: '/api/v1/oidc/app-logout',
          headers: { authorization: `Basic ${Buffer.from(raw).toString('base64')}` },
          payload: { id_token_hint: 'x'.repeat(40), client_id: 'basic-app' },
        });
        expect(r.statusCode, `${raw}: ${r.body}`).toBe(401);
        expect(r.json()).toMatchObject({ code: 'invalid_client' });
      }
    } finally {
      await s.close();
    }
  });
});

describe('item 3: audit filters on SQLite', () => {
  it('item 3: distinct type filters share bounded prepared statements, and still filter right', async () => {
    const s = await startTestServer();
    try {
      const tenantId = uniqueTenant();
      await provision(s.app, tenantId, 'audit-filter@example.com', PASSWORD);
      expect((await s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email: 'audit-filter@example.com', password: PASSWORD } })).statusCode).toBe(200);
      await s.deps.monitor.flush();
      const query = async (type: string) => {
        const r = await s.app.inject({ url: `/api/v1/admin/audit?tenantId=${tenantId}&type=${encodeURIComponent(type)}`, headers: admin });
        expect(r.statusCode, r.body).toBe(200);
        return (r.json() as { items: Array<{ type: string }> }).items;
      };
      expect((await query('session.created')).map((e) => e.type)).toEqual(['session.created']);
      expect((await query('nothing.here,session.*')).map((e) => e.type)).toContain('session.created');
      expect(await query('session.revoked')).toEqual([]);
      // A tenant administrator trying ever new combinations (each once prepared a statement kept forever).
      for (let i = 0; i < 150; i++) {
        const name = (n: number) => String.fromCharCode(97 + (n % 26), 97 + Math.floor(n / 26));
        const combo = Array.from({ length: 1 + (i % 5) }, (_, j) => (j % 2 === 0 ? `t${name(i)}_${name(j)}.y` : `p${name(i)}_${name(j)}.*`)).join(',');
        expect(await query(combo)).toEqual([]);
      }
      const audit = (s.store as unknown as { audit: { cachedQueries: number } }).audit;
      expect(audit.cachedQueries).toBeGreaterThan(0);
      expect(audit.cachedQueries).toBeLessThanOrEqual(64);
    } finally {
      await s.close();
    }
  });
});

describe.each(storeChoices())('item 8: external back-channel logout tokens (%s)', (choice: StoreChoice) => {
  let world: SsoWorld;
  beforeAll(async () => {
    world = await startSsoWorld({ store: choice });
  });
  afterAll(async () => {
    await world?.close();
  });
  const bcl = (token: string) =>
    fetch(`${world.tesseraUrl}/api/v1/sso/oidc/backchannel-logout/${world.orgSlug}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: token }),
    });

  it('item 8: a logout token is single use (its jti is remembered), and an old iat is refused', async () => {
    const token = await world.idp.signLogoutToken({ sub: 'alice' });
    expect((await bcl(token)).status).toBe(200);
    // The same token again — later it would end the user's new sessions — is refused.
    const replay = await bcl(token);
    expect(replay.status).toBe(400);
    expect(await replay.json()).toMatchObject({ code: 'invalid_logout_token' });
    // A fresh token (another jti) still works.
    expect((await bcl(await world.idp.signLogoutToken({ sub: 'alice' }))).status).toBe(200);
    // Issued ten minutes ago: refused.
    const old = await world.idp.signLogoutToken({ sub: 'alice', iat: Math.floor(Date.now() / 1000) - 600 });
    expect((await bcl(old)).status).toBe(400);
  });
});

describe.each(storeChoices())('item 9: unauthenticated free text in the audit chain (%s)', (choice: StoreChoice) => {
  let world: SsoWorld;
  beforeAll(async () => {
    world = await startSsoWorld({ store: choice });
  });
  afterAll(async () => {
    await world?.close();
  });

  async function auditOf(type: string): Promise<Array<Record<string, unknown>>> {
    await world.server.deps.monitor.flush();
    const r = await world.server.app.inject({ url: `/api/v1/admin/audit?tenantId=${world.tenantId}&type=${type}`, headers: admin });
    expect(r.statusCode, r.body).toBe(200);
    return (r.json() as { items: Array<Record<string, unknown>> }).items;
  }

  it("item 9: an SSO callback's error and error_description are recorded as a code, never as the sender's text", async () => {
    const owner = new MiniBrowser();
    const denied = new URL(await loginAtProvider(owner, world, `${world.tesseraUrl}/api/v1/sso/oidc/login?orgSlug=${world.orgSlug}`, { login: 'alice', password: 'wonderland' }, 'deny'));
    denied.searchParams.set('error', 'server_error</script><b>CALL +1-555-0100 NOW</b>');
    denied.searchParams.set('error_description', 'Your account is locked: call +1-555-0100 and read your password');
    const r = await owner.get(denied.href);
    expect(r.status).toBe(400);
    const page = await r.text();
    expect(page).not.toContain('555-0100');
    const failures = await auditOf('sso.failed');
    expect(failures.length).toBeGreaterThan(0);
    const text = JSON.stringify(failures);
    expect(text).not.toContain('555-0100');
    expect(text).not.toContain('<b>');
    expect(text).toContain('unrecognised_error');
  });

  it('item 9: a request that names a session it did not prove is not attributed to it; user agents are bounded printable text', async () => {
    const s = world.server;
    const tenantId = world.tenantId;
    const email = `victim-${randomUUID().slice(0, 8)}@example.com`;
    await s.app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { tenantId, email, password: PASSWORD } });
    const victim = await s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email, password: PASSWORD } });
    expect(victim.statusCode, victim.body).toBe(200);
    const victimHandle = (victim.json() as { sessionId: string }).sessionId;
    const attack = await s.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'x-tenant-id': tenantId, 'x-session-id': victimHandle, 'user-agent': `${'A'.repeat(2000)}\u00ff` },
      payload: { email, password: 'wrong password' },
    });
    expect(attack.statusCode).toBe(401);
    const failed = (await auditOf('login.failed')).filter((e) => JSON.stringify(e).includes(email) || (e.userId !== null && e.userId !== undefined));
    expect(failed.length).toBeGreaterThan(0);
    for (const e of failed) {
      expect((e.headers as { sessionId: string | null }).sessionId).toBeNull();
      expect(e.sessionId ?? null).toBeNull();
      const ua = typeof e.userAgent === 'string' ? e.userAgent : '';
      expect(ua.length).toBeGreaterThan(0);
      expect(ua.length).toBeLessThanOrEqual(256);
      expect(ua).toMatch(/^[\x20-\x7E]*$/);
    }
  });
});

describe.each(storeChoices())('item 6: the SSO one-time token is bound in token mode too (%s)', (choice: StoreChoice) => {
  let world: SsoWorld;
  beforeAll(async () => {
    world = await startSsoWorld({ store: choice });
  });
  afterAll(async () => {
    await world?.close();
  });

  it('item 6: a leaked /login/sso token redeemed without the browser binding is refused, in token mode as in cookie mode', async () => {
    // The owner signs in in their browser; the token lands in history and proxy logs.
    const owner = new MiniBrowser();
    const callback = await loginAtProvider(owner, world, `${world.tesseraUrl}/api/v1/sso/oidc/login?orgSlug=${world.orgSlug}`, { login: 'alice', password: 'wonderland' });
    const back = await owner.get(callback);
    expect(back.status).toBe(302);
    const target = new URL(back.headers.get('location') as string, world.tesseraUrl);
    expect(target.pathname).toBe('/login/sso');
    const token = target.searchParams.get('token') as string;

    const url = `${world.tesseraUrl}/api/v1/sso/token`;
    const body = JSON.stringify({ token });
    // Whoever read the log: no cookies at all, token mode (and cookie mode).
    const bare = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(bare.status).toBe(403);
    expect(((await bare.json()) as Problem).code).toBe('sso_browser_mismatch');
    const bareCookie = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-auth-mode': 'cookie', origin: world.tesseraUrl }, body });
    expect(bareCookie.status).toBe(403);
    // A browser with a flow binding of its own (it started a sign-in too) is refused as well.
    const stranger = new MiniBrowser();
    expect((await stranger.get(`${world.tesseraUrl}/api/v1/sso/oidc/login?orgSlug=${world.orgSlug}`)).status).toBe(302);
    const other = await stranger.request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(other.status).toBe(403);
    expect(((await other.json()) as Problem).code).toBe('sso_browser_mismatch');
    // A made-up verifier does not turn a browser sign-in into a command-line one.
    const verifier = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, codeVerifier: 'v'.repeat(43) }) });
    expect(verifier.status).toBe(403);

    // The refusals used nothing up and created nothing: the owner's browser redeems it.
    const own = await owner.request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(own.status).toBe(200);
    const pair = (await own.json()) as { userSessionToken: string };
    expect((await fetch(`${world.tesseraUrl}/api/v1/session`, { headers: { authorization: `Bearer ${pair.userSessionToken}` } })).status).toBe(200);
  });
});

describe('item 5: logout CSRF at /oidc/session/end', () => {
  let world: SsoWorld;
  beforeAll(async () => {
    world = await startSsoWorld({ store: 'sqlite' });
  });
  afterAll(async () => {
    await world?.close();
  });

  it('item 5: without an id_token_hint a signed-in person is asked; nothing is submitted for them', async () => {
    const clientId = `csrf-app-${world.tenantId}`;
    const redirect = 'http://127.0.0.1:9/csrf-app/callback';
    const put = await world.server.app.inject({
      method: 'PUT',
      url: `/api/v1/admin/apps/${clientId}`,
      headers: admin,
      payload: { tenantId: world.tenantId, redirectUris: [redirect], orgSlug: world.orgSlug, clientSecret: null },
    });
    expect(put.statusCode, put.body).toBe(200);
    const config = await oidc.discovery(new URL(`${world.tesseraUrl}/oidc`), clientId, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirect,
      scope: 'openid email',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state: oidc.randomState(),
    });
    const browser = new MiniBrowser();
    const isApp = (u: URL) => u.href.startsWith(redirect);
    let at = await browser.follow(url.href, (u) => isApp(u) || (u.origin === world.idp.issuer && u.pathname.startsWith('/interaction')));
    if (!isApp(new URL(at.url))) {
      const callback = await loginAtProvider(browser, world, at.url, { login: 'alice', password: 'wonderland' });
      at = await browser.follow(callback, isApp);
    }
    expect(isApp(new URL(at.url)), at.url).toBe(true);
    // Signed in at /oidc. Another site sends the browser to the end-session endpoint:
    const r = await browser.get(`${world.tesseraUrl}/oidc/session/end`);
    expect(r.status).toBe(200);
    const page = await r.text();
    expect(page).toContain('id="confirm-logout"');
    expect(page).not.toContain('<script');
    expect(page).not.toMatch(/\.submit\(\)/);
    // A forged id_token_hint is refused outright.
    expect((await browser.get(`${world.tesseraUrl}/oidc/session/end?id_token_hint=e30.e30.`)).status).toBe(400);
  });
});

describe('item 11 (database files): the SQLite files are readable by their owner only', () => {
  it('item 11: tessera.db, -wal and -shm are created 0600', async () => {
    const s = await startTestServer();
    try {
      const tenantId = uniqueTenant();
      await provision(s.app, tenantId, 'files@example.com', PASSWORD);
      expect((await s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email: 'files@example.com', password: PASSWORD } })).statusCode).toBe(200);
      const path = s.deps.config.store.sqlitePath as string;
      for (const f of [path, `${path}-wal`, `${path}-shm`]) {
        expect(existsSync(f), f).toBe(true);
        expect((statSync(f).mode & 0o777).toString(8), f).toBe('600');
      }
      // A backup holds the same data: created 0600 too.
      const copy = `${path}.backup`;
      await backupSqlite(path, copy);
      expect((statSync(copy).mode & 0o777).toString(8)).toBe('600');
    } finally {
      await s.close();
    }
  });

  it('item 11: an existing database file readable by others is made 0600 when a store opens it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-mode-'));
    try {
      const path = join(dir, 'tessera.db');
      await (await openSqliteStore(path)).close();
      chmodSync(path, 0o644);
      const store = await openSqliteStore(path);
      try {
        expect((statSync(path).mode & 0o777).toString(8)).toBe('600');
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.each(storeChoices())('item 11 (/oidc records): no live credential in the store (%s)', (choice: StoreChoice) => {
  let world: SsoWorld;
  beforeAll(async () => {
    world = await startSsoWorld({ store: choice });
  });
  afterAll(async () => {
    await world?.close();
  });

  it('item 11: after an /oidc code flow, no issued token, code, session id or interaction id is in the store', async () => {
    const clientId = `clear-app-${world.tenantId}`;
    const redirect = 'http://127.0.0.1:9/clear-app/callback';
    const put = await world.server.app.inject({
      method: 'PUT',
      url: `/api/v1/admin/apps/${clientId}`,
      headers: admin,
      payload: { tenantId: world.tenantId, redirectUris: [redirect], orgSlug: world.orgSlug, clientSecret: null },
    });
    expect(put.statusCode, put.body).toBe(200);
    const config = await oidc.discovery(new URL(`${world.tesseraUrl}/oidc`), clientId, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirect,
      scope: 'openid email',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    });
    const browser = new MiniBrowser();
    const isApp = (u: URL) => u.href.startsWith(redirect);
    const visited: string[] = [];
    const stop = (u: URL) => {
      visited.push(u.href);
      return isApp(u) || (u.origin === world.idp.issuer && u.pathname.startsWith('/interaction'));
    };
    let at = await browser.follow(url.href, stop);
    if (!isApp(new URL(at.url))) {
      const callback = await loginAtProvider(browser, world, at.url, { login: 'alice', password: 'wonderland' });
      at = await browser.follow(callback, stop);
    }
    expect(isApp(new URL(at.url)), at.url).toBe(true);
    const code = new URL(at.url).searchParams.get('code') as string;
    const interactions = visited.flatMap((u) => /\/oidc\/interaction\/([^/?#]+)/.exec(u)?.[1] ?? []);
    const oidcSession = browser.cookies.get('tessera_oidc_session') as string;
    // Interaction ids are no credentials (oidc-provider wants its signed interaction cookie too,
    // and they are in URLs anyway), but oidc-provider's records must not be keyed by them
    // either. Tessera's own SSO flow and idp session name the interaction they belong to
    // (`oidcInteraction`, docs/security.md item 11): those mentions are taken out before looking,
    // and only those — the id right after the field name, separated either by JSON punctuation
    // (SQLite, PostgreSQL) or, in the Redis session value (MessagePack), by a str8 header (a
    // type byte, which is not ASCII, and a length byte, which can be any character: `-` for the
    // 45 bytes of the JSON-quoted id) and the opening quote.
    const withoutReferences = (dump: string) =>
      interactions.reduce((d, uid) => d.replace(new RegExp(`oidcInteraction(?:[^A-Za-z0-9_-]{0,12}|[^\\x00-\\x7f][\\s\\S]\\\\?")${uid}`, 'g'), 'oidcInteraction'), dump);
    // The code is read from the store before it is redeemed, and the token after.
    const beforeRedemption = withoutReferences(await dumpStore(world.storeConfig, world.redisPrefix));
    const tokens = await oidc.authorizationCodeGrant(config, new URL(at.url), { pkceCodeVerifier: verifier, expectedState: state, idTokenExpected: true });
    // Lookups by the real ids still work: the access token reads userinfo; the code is consumed.
    const info = await oidc.fetchUserInfo(config, tokens.access_token, tokens.claims()!.sub);
    expect(info.sub).toBe(tokens.claims()!.sub);
    await expect(oidc.authorizationCodeGrant(config, new URL(at.url), { pkceCodeVerifier: verifier, expectedState: state })).rejects.toThrow();
    const afterRedemption = withoutReferences(await dumpStore(world.storeConfig, world.redisPrefix));

    const secrets: Record<string, string> = { code, accessToken: tokens.access_token, oidcSession };
    interactions.forEach((uid, i) => (secrets[`interaction ${i}`] = uid));
    expect(code.length).toBeGreaterThan(20);
    expect(tokens.access_token.length).toBeGreaterThan(20);
    expect(oidcSession?.length).toBeGreaterThan(10);
    expect(interactions.length).toBeGreaterThan(0);
    // The store holds the records (it is not empty or elsewhere): oidc-provider's Session is there.
    expect(afterRedemption).toMatch(/oidc/);
    for (const [what, value] of Object.entries(secrets)) {
      expect(beforeRedemption.includes(value), `${what} in the store before the code was redeemed`).toBe(false);
      expect(afterRedemption.includes(value), `${what} in the store`).toBe(false);
    }
  });
});

describe.each(storeChoices().filter((c) => c !== 'postgres'))('item 4: the client address of sessions made through /oidc (%s)', (choice: StoreChoice) => {
  /** A code flow through /oidc in a browser that sends `X-Forwarded-For: 203.0.113.9` with every request; the `session.created` events and audit records of the app session. */
  async function signInThroughOidc(world: SsoWorld) {
    const events: TesseraEvent[] = [];
    const unsubscribe = world.server.deps.bus.subscribe((e) => events.push(e));
    const clientId = `xff-app-${world.tenantId}`;
    const redirect = 'http://127.0.0.1:9/xff-app/callback';
    const put = await world.server.app.inject({
      method: 'PUT',
      url: `/api/v1/admin/apps/${clientId}`,
      headers: admin,
      payload: { tenantId: world.tenantId, redirectUris: [redirect], orgSlug: world.orgSlug, clientSecret: null },
    });
    expect(put.statusCode, put.body).toBe(200);
    const config = await oidc.discovery(new URL(`${world.tesseraUrl}/oidc`), clientId, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirect,
      scope: 'openid',
      code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
      state: oidc.randomState(),
    });
    const browser = new MiniBrowser({ 'x-forwarded-for': '203.0.113.9', 'x-real-ip': '203.0.113.9' });
    const isApp = (u: URL) => u.href.startsWith(redirect);
    let at = await browser.follow(url.href, (u) => isApp(u) || (u.origin === world.idp.issuer && u.pathname.startsWith('/interaction')));
    if (!isApp(new URL(at.url))) {
      const callback = await loginAtProvider(browser, world, at.url, { login: 'alice', password: 'wonderland' });
      at = await browser.follow(callback, isApp);
    }
    expect(new URL(at.url).searchParams.get('code'), at.url).not.toBeNull();
    unsubscribe();
    const created = events.filter((e) => e.type === 'session.created' && e.kind === 'app' && e.details.clientId === clientId);
    expect(created).toHaveLength(1);
    await world.server.deps.monitor.flush();
    const r = await world.server.app.inject({ url: `/api/v1/admin/audit?tenantId=${world.tenantId}&type=session.created`, headers: admin });
    expect(r.statusCode, r.body).toBe(200);
    const audited = (r.json() as { items: Array<Record<string, unknown>> }).items.filter((a) => a.sessionHandle === created[0]!.sessionHandle || a.sessionId === created[0]!.sessionHandle);
    expect(audited).toHaveLength(1);
    return { event: created[0]!, audited: audited[0]! };
  }

  it('item 4: a session created through /oidc from a client that is no trusted proxy records the peer address, not its X-Forwarded-For', async () => {
    const world = await startSsoWorld({ store: choice });
    try {
      const { event, audited } = await signInThroughOidc(world);
      expect(event.ip).toBe('127.0.0.1');
      expect(audited.ip).toBe('127.0.0.1');
    } finally {
      await world.close();
    }
  });

  it("item 4: behind a trusted proxy (TESSERA_TRUSTED_PROXIES) the proxy's X-Forwarded-For is the client address of a session created through /oidc", async () => {
    const world = await startSsoWorld({ store: choice, env: { TESSERA_TRUSTED_PROXIES: '127.0.0.1' } });
    try {
      const { event, audited } = await signInThroughOidc(world);
      expect(event.ip).toBe('203.0.113.9');
      expect(audited.ip).toBe('203.0.113.9');
    } finally {
      await world.close();
    }
  });
});

describe('item 4: /oidc and forwarded headers', () => {
  it('item 4: X-Forwarded-Host, -Proto and Forwarded from a client that is no trusted proxy do not change the discovery document', async () => {
    const s = await startTestServer();
    try {
      const plain = await s.app.inject({ method: 'GET', url: '/oidc/.well-known/openid-configuration' });
      expect(plain.statusCode).toBe(200);
      const forged = await s.app.inject({
        method: 'GET',
        url: '/oidc/.well-known/openid-configuration',
        headers: { host: 'evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http', forwarded: 'host=evil.example;proto=http', 'x-forwarded-for': '203.0.113.9' },
      });
      expect(forged.statusCode).toBe(200);
      expect(forged.body).not.toContain('evil.example');
      expect(forged.json()).toStrictEqual(plain.json());
      expect((forged.json() as { issuer: string }).issuer).toBe('https://tessera.test/oidc');
    } finally {
      await s.close();
    }
  });
});
