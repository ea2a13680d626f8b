// Sessions for APIs and browsers (issue 3): login in both modes, refresh rotation with grace and
// reuse detection, limits under simultaneous logins, fixation, CSRF, logout everywhere,
// revocation, introspection, self-service, and JWT tampering. Runs on SQLite and on Redis.

import { createHash } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { KeyRing } from '../../src/tokens/key-ring.ts';
import { admin, COOKIE_SECRET, provision, startTestServer, uniqueTenant, type StoreChoice, type TestServer } from '../support/harness.ts';
import { storeChoices } from '../support/store-choices.ts';

const PASSWORD = 'correct horse battery';

type Res = Awaited<ReturnType<TestServer['app']['inject']>>;

function cookieOf(res: Res, name: string): { value: string; attrs: string } | null {
  const raw = res.headers['set-cookie'];
  const list = Array.isArray(raw) ? raw : raw ? [raw] : [];
  for (const c of list) {
    const [pair, ...attrs] = c.split(';');
    const eq = (pair as string).indexOf('=');
    if ((pair as string).slice(0, eq) === name) return { value: (pair as string).slice(eq + 1), attrs: attrs.join(';') };
  }
  return null;
}

describe.each(storeChoices({ cluster: true }))('sessions on %s', (choice: StoreChoice) => {
  let s: TestServer;
  let tenantId: string;
  const email = 'ada@example.com';

  beforeAll(async () => {
    s = await startTestServer({ store: choice, throttle: { accountFailures: 3, ipFailures: 1000, windowMs: 60_000 } });
    tenantId = uniqueTenant();
    await provision(s.app, tenantId, email, PASSWORD);
  });
  afterAll(async () => {
    await s?.close();
  });

  const login = (tid = tenantId, extra: Record<string, string> = {}, body: Record<string, unknown> = { email, password: PASSWORD }) =>
    s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tid, ...extra }, payload: body });
  const refresh = (refreshToken: string) => s.app.inject({ method: 'POST', url: '/api/v1/auth/token/refresh', payload: { refreshToken } });
  const me = (token: string, headers: Record<string, string> = {}) =>
    s.app.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${token}`, ...headers } });

  describe('token mode (docs/api.md §Token mode)', () => {
    it('answers the token-mode shape with an EdDSA JWT carrying the session claims', async () => {
      const res = await login();
      expect(res.statusCode).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      const body = res.json() as Record<string, unknown>;
      expect(Object.keys(body).sort()).toEqual(
        ['customerId', 'expires_in', 'refreshToken', 'scope', 'sessionId', 'tenantId', 'token_type', 'userSessionToken'].sort(),
      );
      expect(body).toMatchObject({ expires_in: 3600, token_type: 'Bearer', tenantId });
      const header = decodeProtectedHeader(body.userSessionToken as string);
      expect(header.alg).toBe('EdDSA');
      expect(typeof header.kid).toBe('string');
      const claims = decodeJwt(body.userSessionToken as string);
      expect(claims).toMatchObject({ iss: 'https://tessera.test', sub: body.customerId, tid: tenantId, sid: body.sessionId, scope: body.scope });
      expect(claims.exp! - claims.iat!).toBe(3600);
      expect(typeof claims.jti).toBe('string');
      expect((await me(body.userSessionToken as string)).json()).toMatchObject({ sessionId: body.sessionId, kind: 'app', mode: 'token' });
    });

    it('gives the same answer for an unknown user and a wrong password', async () => {
      const strip = (r: Res) => {
        const b = r.json() as Record<string, unknown>;
        delete b.requestId;
        return { status: r.statusCode, b };
      };
      const unknown = strip(await login(tenantId, {}, { email: 'nobody@example.com', password: PASSWORD }));
      const wrong = strip(await login(tenantId, {}, { email: 'ada+x@example.com', password: 'nope nope' }));
      expect(unknown).toEqual(wrong);
      expect(unknown.status).toBe(401);
      expect(unknown.b.code).toBe('invalid_credentials');
    });

    it('throttles failed logins per account with 429 and Retry-After, then lets the right password in after the window', async () => {
      const tid = uniqueTenant();
      await provision(s.app, tid, 'bob@example.com', PASSWORD);
      for (let i = 0; i < 3; i++) {
        expect((await login(tid, {}, { email: 'bob@example.com', password: 'wrong pass' })).statusCode).toBe(401);
      }
      const throttled = await login(tid, {}, { email: 'bob@example.com', password: PASSWORD });
      expect(throttled.statusCode).toBe(429);
      expect(Number(throttled.headers['retry-after'])).toBeGreaterThan(0);
      expect(throttled.json()).toMatchObject({ code: 'login_throttled' });
      s.clock.advance(61_000);
      expect((await login(tid, {}, { email: 'bob@example.com', password: PASSWORD })).statusCode).toBe(200);
    });

    it('a burst of parallel wrong passwords gets no more checks than the limit allows', async () => {
      const tid = uniqueTenant();
      await provision(s.app, tid, 'burst@example.com', PASSWORD);
      const results = await Promise.all(
        Array.from({ length: 20 }, () => login(tid, {}, { email: 'burst@example.com', password: 'wrong pass' })),
      );
      const codes = results.map((r) => r.statusCode);
      expect(codes.filter((c) => c === 401)).toHaveLength(3);
      expect(codes.filter((c) => c === 429)).toHaveLength(17);
    });

    it('password changes share the throttle: a stolen token is no password-guessing oracle', async () => {
      const tid = uniqueTenant();
      await provision(s.app, tid, 'oracle@example.com', PASSWORD);
      const pair = (await login(tid, {}, { email: 'oracle@example.com', password: PASSWORD })).json() as Record<string, string>;
      const change = (currentPassword: string) =>
        s.app.inject({
          method: 'POST',
          url: '/api/v1/auth/password',
          headers: { authorization: `Bearer ${pair.userSessionToken}` },
          payload: { currentPassword, newPassword: 'a new password 9' },
        });
      for (let i = 0; i < 3; i++) expect((await change(`guess ${i}`)).statusCode).toBe(401);
      const throttled = await change(PASSWORD);
      expect(throttled.statusCode).toBe(429);
      expect(throttled.json()).toMatchObject({ code: 'login_throttled' });
      s.clock.advance(61_000);
      expect((await change(PASSWORD)).statusCode).toBe(200);
    });

    it('requires X-Tenant-ID on login', async () => {
      const res = await s.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email, password: PASSWORD } });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: 'missing_header', header: 'X-Tenant-ID' });
    });
  });

  describe('refresh rotation (RFC 9700 4.14.2)', () => {
    it('RT1 → RT2; RT1 again within grace returns the same pair; after grace it is reuse: 401 and RT2 dies too', async () => {
      const first = (await login()).json() as Record<string, string>;
      const r1 = await refresh(first.refreshToken as string);
      expect(r1.statusCode).toBe(200);
      // The pair is never cached, and the answer carries every answer's headers.
      expect(r1.headers['cache-control']).toBe('no-store');
      expect(r1.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(r1.headers['x-content-type-options']).toBe('nosniff');
      expect(r1.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      const pair2 = r1.json() as Record<string, string>;
      expect(pair2.refreshToken).not.toBe(first.refreshToken);
      expect(pair2.sessionId).toBe(first.sessionId);

      s.clock.advance(5_000);
      const again = await refresh(first.refreshToken as string);
      expect(again.statusCode).toBe(200);
      expect(again.json()).toEqual(pair2);

      s.clock.advance(6_000); // 11 s after rotation: past the 10 s grace
      const reuse = await refresh(first.refreshToken as string);
      expect(reuse.statusCode).toBe(401);
      expect(reuse.json()).toMatchObject({ code: 'refresh_token_reused' });
      expect((await refresh(pair2.refreshToken as string)).statusCode).toBe(401);
      expect((await me(pair2.userSessionToken as string)).statusCode).toBe(401);
    });

    it('20 concurrent refreshes of one token: all 200, one successor, the family alive', async () => {
      const first = (await login()).json() as Record<string, string>;
      const results = await Promise.all(Array.from({ length: 20 }, () => refresh(first.refreshToken as string)));
      expect(results.map((r) => r.statusCode)).toEqual(Array(20).fill(200));
      const tokens = new Set(results.map((r) => (r.json() as Record<string, string>).refreshToken));
      expect(tokens.size).toBe(1);
      const successor = [...tokens][0] as string;
      const next = await refresh(successor);
      expect(next.statusCode).toBe(200);
      expect((await me((next.json() as Record<string, string>).userSessionToken as string)).statusCode).toBe(200);
    });

    it('a chain refreshed through one process reads its token from the store once; a token it never saw is read, and refused when unknown', async () => {
      const reads = vi.spyOn(s.deps.store, 'getRefreshToken');
      const userReads = vi.spyOn(s.deps.store, 'getUser');
      try {
        let pair = (await login()).json() as Record<string, string>;
        userReads.mockClear();
        for (let i = 0; i < 4; i++) {
          const r = await refresh(pair.refreshToken as string);
          expect(r.statusCode).toBe(200);
          pair = r.json() as Record<string, string>;
        }
        // The login's token was read; the successors' owners were known from their rotations.
        expect(reads).toHaveBeenCalledTimes(1);
        // On Redis the rotate script reads the user (same slot) in its step; elsewhere one read each.
        expect(userReads).toHaveBeenCalledTimes(choice.startsWith('redis') ? 0 : 4);
        expect((await me(pair.userSessionToken as string)).statusCode).toBe(200);
        const unknown = await refresh('x'.repeat(43));
        expect(unknown.statusCode).toBe(401);
        expect(unknown.json()).toMatchObject({ code: 'invalid_grant' });
        expect(reads).toHaveBeenCalledTimes(2);
      } finally {
        reads.mockRestore();
        userReads.mockRestore();
      }
    });

    it("a refresh's scope follows the user's roles as stored at that refresh, within the grace window too", async () => {
      const who = `roles-${uniqueTenant()}@example.com`;
      const made = await s.app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { tenantId, email: who, password: PASSWORD } });
      expect(made.statusCode, made.body).toBe(201);
      const id = (made.json() as { id: string }).id;
      const first = (await login(tenantId, {}, { email: who, password: PASSWORD })).json() as Record<string, string>;
      expect(first.scope).toBe('session');
      const patched = await s.app.inject({ method: 'PATCH', url: `/api/v1/admin/users/${id}?tenantId=${tenantId}`, headers: admin, payload: { roles: ['auditor'] } });
      expect(patched.statusCode, patched.body).toBe(200);
      const r1 = await refresh(first.refreshToken as string);
      expect(r1.json()).toMatchObject({ scope: 'session role:auditor' });
      expect(decodeJwt((r1.json() as Record<string, string>).userSessionToken as string).scope).toBe('session role:auditor');
      const again = await refresh(first.refreshToken as string);
      expect(again.json()).toEqual(r1.json());
      // A user deleted since: no new pair.
      expect((await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/users/${id}?tenantId=${tenantId}`, headers: admin })).statusCode).toBeLessThan(300);
      const gone = await refresh((r1.json() as Record<string, string>).refreshToken as string);
      expect(gone.statusCode).toBe(401);
    });

    it('never outlives the session: after the absolute lifetime the refresh token is refused', async () => {
      const tid = uniqueTenant();
      await provision(s.app, tid, email, PASSWORD, { profile: 'integration', lifetimes: { appAbsolute: 7200, appIdle: 900 } });
      const loginAt = s.clock.now();
      let pair = (await login(tid)).json() as Record<string, string>;
      for (let i = 0; i < 3; i++) {
        s.clock.advance(1800_000);
        const r = await refresh(pair.refreshToken as string);
        expect(r.statusCode).toBe(200);
        pair = r.json() as Record<string, string>;
        const claims = decodeJwt(pair.userSessionToken as string);
        expect(claims.exp! * 1000).toBeLessThanOrEqual(loginAt + 7200_000);
      }
      s.clock.advance(1800_001);
      expect((await refresh(pair.refreshToken as string)).statusCode).toBe(401);
    });
  });

  describe('per-user limits under simultaneous logins (docs/api.md §Tenants and profiles)', () => {
    it('10 concurrent logins with max 3 evict_oldest leave exactly 3 active', async () => {
      const tid = uniqueTenant();
      const uid = await provision(s.app, tid, email, PASSWORD, { profile: 'production', sessionLimit: { max: 3, policy: 'evict_oldest' } });
      const results = await Promise.all(Array.from({ length: 10 }, () => login(tid)));
      expect(results.map((r) => r.statusCode)).toEqual(Array(10).fill(200));
      const list = await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${tid}&userId=${uid}&status=active`, headers: admin });
      expect((list.json() as { items: unknown[] }).items).toHaveLength(3);
      const evicted = await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${tid}&userId=${uid}&status=revoked`, headers: admin });
      const items = (evicted.json() as { items: Array<{ revokeReason: string }> }).items;
      expect(items).toHaveLength(7);
      expect(new Set(items.map((i) => i.revokeReason))).toEqual(new Set(['limit_evicted']));
    });

    it('with reject_new the 4th is refused with 409 session_limit_reached', async () => {
      const tid = uniqueTenant();
      await provision(s.app, tid, email, PASSWORD, { profile: 'integration', sessionLimit: { max: 3, policy: 'reject_new' } });
      const results = await Promise.all(Array.from({ length: 10 }, () => login(tid)));
      const codes = results.map((r) => r.statusCode).sort();
      expect(codes.filter((c) => c === 200)).toHaveLength(3);
      expect(codes.filter((c) => c === 409)).toHaveLength(7);
      expect(results.find((r) => r.statusCode === 409)!.json()).toMatchObject({ code: 'session_limit_reached' });
    });
  });

  describe('cookie mode (docs/api.md §Cookie mode)', () => {
    const cookieLogin = (extra: Record<string, string> = {}) => login(tenantId, { 'x-auth-mode': 'cookie', ...extra });

    it('sets __Host-sid Secure HttpOnly SameSite=Strict Path=/ and returns no bearer token', async () => {
      const res = await cookieLogin();
      expect(res.statusCode).toBe(200);
      const body = res.json() as Record<string, unknown>;
      expect(Object.keys(body).sort()).toEqual(['customerId', 'expires_in', 'sessionId', 'tenantId', 'xsrfToken']);
      const c = cookieOf(res, '__Host-sid')!;
      expect(c).not.toBeNull();
      expect(c.attrs).toMatch(/Secure/);
      expect(c.attrs).toMatch(/HttpOnly/);
      expect(c.attrs).toMatch(/SameSite=Strict/);
      expect(c.attrs).toMatch(/Path=\//);
      expect(c.attrs).not.toMatch(/Domain=/);
      expect(c.attrs).toMatch(/Max-Age=900/);
    });

    it('never lets a cookie value present before login become valid (fixation)', async () => {
      const planted = (await cookieLogin()).headers['set-cookie'];
      const plantedValue = cookieOf({ headers: { 'set-cookie': planted } } as unknown as Res, '__Host-sid')!.value;
      const forged = 'A'.repeat(43);
      for (const before of [plantedValue, forged]) {
        const res = await cookieLogin({ cookie: `__Host-sid=${before}` });
        const after = cookieOf(res, '__Host-sid')!.value;
        expect(after).not.toBe(before);
      }
      expect((await s.app.inject({ url: '/api/v1/session', headers: { cookie: `__Host-sid=${forged}` } })).statusCode).toBe(401);
    });

    it('checks XSRF token and Origin on state-changing requests; logout clears the cookie everywhere', async () => {
      const res = await cookieLogin();
      const { xsrfToken } = res.json() as { xsrfToken: string };
      const cookie = `__Host-sid=${cookieOf(res, '__Host-sid')!.value}`;
      const get = await s.app.inject({ url: '/api/v1/session', headers: { cookie } });
      expect(get.statusCode).toBe(200);
      expect(get.json()).toMatchObject({ xsrfToken, mode: 'cookie' });

      const post = (headers: Record<string, string>) => s.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { cookie, ...headers } });
      expect((await post({})).json()).toMatchObject({ status: 403, code: 'csrf' });
      expect((await post({ 'x-xsrf-token': 'wrong' })).json()).toMatchObject({ code: 'csrf' });
      expect((await post({ 'x-xsrf-token': xsrfToken, origin: 'https://evil.example' })).json()).toMatchObject({ code: 'csrf' });
      expect((await post({ 'x-xsrf-token': xsrfToken, 'sec-fetch-site': 'cross-site' })).json()).toMatchObject({ code: 'csrf' });

      const out = await post({ 'x-xsrf-token': xsrfToken, origin: 'https://tessera.test', 'sec-fetch-site': 'same-origin' });
      expect(out.statusCode).toBe(204);
      expect(cookieOf(out, '__Host-sid')!.attrs).toMatch(/Max-Age=0/);
      expect(out.headers['clear-site-data']).toBe('"cookies", "storage"');
      expect((await s.app.inject({ url: '/api/v1/session', headers: { cookie } })).statusCode).toBe(401);
    });

    it('slides the idle expiry on activity and ends the session when idle too long', async () => {
      const res = await cookieLogin();
      const cookie = `__Host-sid=${cookieOf(res, '__Host-sid')!.value}`;
      for (let i = 0; i < 4; i++) {
        s.clock.advance(600_000); // 10 min steps: 40 min in all, each within the 15 min idle window
        const r = await s.app.inject({ url: '/api/v1/session', headers: { cookie } });
        expect(r.statusCode).toBe(200);
        // The browser's cookie slides with the server's idle expiry.
        expect(cookieOf(r, '__Host-sid')?.attrs).toMatch(/Max-Age=900/);
      }
      s.clock.advance(900_001);
      expect((await s.app.inject({ url: '/api/v1/session', headers: { cookie } })).statusCode).toBe(401);
    });

    it('slides once for the requests that find the slide due together: one write, one session.extended, every answer with the slid cookie', async () => {
      const res = await cookieLogin();
      const cookie = `__Host-sid=${cookieOf(res, '__Host-sid')!.value}`;
      const handle = (res.json() as { sessionId: string }).sessionId;
      const extended: string[] = [];
      const unsubscribe = s.deps.bus.subscribe((e) => {
        if (e.type === 'session.extended' && e.sessionHandle === handle) extended.push(handle);
      });
      // The write held back a moment (as a PostgreSQL round trip is), so that the other requests
      // find the slide due while it is under way.
      const store = s.deps.store;
      const touch = store.touchSession.bind(store);
      const spy = vi.spyOn(store, 'touchSession').mockImplementation(async (...args) => {
        await new Promise((r) => setTimeout(r, 50));
        return touch(...args);
      });
      try {
        for (let round = 0; round < 2; round++) {
          s.clock.advance(600_000);
          const answers = await Promise.all(Array.from({ length: 10 }, () => s.app.inject({ url: '/api/v1/session', headers: { cookie } })));
          for (const a of answers) {
            expect(a.statusCode).toBe(200);
            expect(cookieOf(a, '__Host-sid')?.attrs).toMatch(/Max-Age=900/);
            expect((a.json() as { lastSeenAt: string }).lastSeenAt).toBe(new Date(s.clock.now()).toISOString());
          }
          // One write and one event per slide (the next slide, 10 min later, writes again).
          expect(spy.mock.calls.filter(([h]) => h === handle)).toHaveLength(round + 1);
          await s.deps.monitor.flush();
          expect(extended).toHaveLength(round + 1);
        }
        // A slide that finds the session ended answers every request that waited for it 401.
        spy.mockImplementation(async () => {
          await new Promise((r) => setTimeout(r, 50));
          return null;
        });
        s.clock.advance(600_000);
        const refused = await Promise.all(Array.from({ length: 5 }, () => s.app.inject({ url: '/api/v1/session', headers: { cookie } })));
        expect(refused.map((a) => (a.json() as { code: string }).code)).toEqual(Array(5).fill('session_ended'));
        expect(spy.mock.calls.filter(([h]) => h === handle)).toHaveLength(3);
      } finally {
        spy.mockRestore();
        unsubscribe();
      }
    });
  });

  describe('revocation, introspection, JWT tampering', () => {
    it('logout ends the token pair at once', async () => {
      const pair = (await login()).json() as Record<string, string>;
      const out = await s.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { authorization: `Bearer ${pair.userSessionToken}` } });
      expect(out.statusCode).toBe(204);
      expect((await me(pair.userSessionToken as string)).statusCode).toBe(401);
      expect((await refresh(pair.refreshToken as string)).statusCode).toBe(401);
    });

    it('revokes a refresh token sent as a form (RFC 7009), answering 200 also for unknown tokens', async () => {
      const pair = (await login()).json() as Record<string, string>;
      const form = (token: string) =>
        s.app.inject({ method: 'POST', url: '/api/v1/auth/revoke', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${encodeURIComponent(token)}&token_type_hint=refresh_token` });
      expect((await form('unknown-token')).statusCode).toBe(200);
      expect((await form(pair.refreshToken as string)).statusCode).toBe(200);
      expect((await me(pair.userSessionToken as string)).statusCode).toBe(401);
    });

    it('introspects for a service credential only, and says only {active:false} for anything inactive', async () => {
      const pair = (await login()).json() as Record<string, string>;
      const intro = (token: string, headers: Record<string, string> = admin) =>
        s.app.inject({ method: 'POST', url: '/api/v1/auth/introspect', headers, payload: { token } });
      expect((await intro(pair.userSessionToken as string, {})).statusCode).toBe(401);
      expect((await intro(pair.userSessionToken as string)).json()).toMatchObject({ active: true, sid: pair.sessionId, tid: tenantId });
      const rt: unknown = (await intro(pair.refreshToken as string)).json();
      expect(rt).toMatchObject({ active: true, sid: pair.sessionId });
      expect(rt).not.toHaveProperty('token_type');
      await s.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { authorization: `Bearer ${pair.userSessionToken}` } });
      expect((await intro(pair.userSessionToken as string)).json()).toEqual({ active: false });
      expect((await intro(pair.refreshToken as string)).json()).toEqual({ active: false });
      expect((await intro('garbage')).json()).toEqual({ active: false });
    });

    it('refuses alg none, a tampered payload and an unknown kid with 401', async () => {
      const pair = (await login()).json() as Record<string, string>;
      const [h, p, sig] = (pair.userSessionToken as string).split('.') as [string, string, string];
      const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const header = decodeProtectedHeader(pair.userSessionToken as string);
      const claims = decodeJwt(pair.userSessionToken as string);
      const none = `${b64({ alg: 'none', typ: 'JWT', kid: header.kid })}.${p}.`;
      const tampered = `${h}.${b64({ ...claims, sub: 'someone-else' })}.${sig}`;
      const unknownKid = `${b64({ ...header, kid: 'nope' })}.${p}.${sig}`;
      for (const t of [none, tampered, unknownKid, 'a.b.c', 'x'.repeat(5000)]) {
        const r = await me(t);
        expect(r.statusCode, t.slice(0, 40)).toBe(401);
      }
      expect((await me(pair.userSessionToken as string)).statusCode).toBe(200);
    });

    it('rotates signing keys without logging anyone out', async () => {
      const before = (await login()).json() as Record<string, string>;
      const oldKid = decodeProtectedHeader(before.userSessionToken as string).kid;
      const { kid } = await KeyRing.rotate(s.store, COOKIE_SECRET, s.clock.now());
      await s.deps.keyRing.load(s.clock.now());
      const after = (await login()).json() as Record<string, string>;
      expect(decodeProtectedHeader(after.userSessionToken as string).kid).toBe(kid);
      expect(kid).not.toBe(oldKid);
      expect((await me(before.userSessionToken as string)).statusCode).toBe(200);
      const jwks = (await s.app.inject('/.well-known/jwks.json')).json() as { keys: Array<{ kid: string }> };
      expect(jwks.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([oldKid, kid]));
    });
  });

  describe('self-service (docs/api.md §Cookie mode)', () => {
    it('lists, ends one, ends all others, changes the password with the current one', async () => {
      const tid = uniqueTenant();
      await provision(s.app, tid, email, PASSWORD);
      const a = (await login(tid)).json() as Record<string, string>;
      const b = (await login(tid)).json() as Record<string, string>;
      const c = (await login(tid)).json() as Record<string, string>;
      const auth = { authorization: `Bearer ${a.userSessionToken}` };
      const list = (await s.app.inject({ url: '/api/v1/sessions', headers: auth })).json() as { items: Array<{ sessionId: string; current: boolean }> };
      expect(list.items.map((i) => i.sessionId).sort()).toEqual([a.sessionId, b.sessionId, c.sessionId].sort());
      expect(list.items.find((i) => i.current)?.sessionId).toBe(a.sessionId);

      expect((await s.app.inject({ method: 'DELETE', url: `/api/v1/sessions/${b.sessionId}`, headers: auth })).statusCode).toBe(204);
      expect((await me(b.userSessionToken as string)).statusCode).toBe(401);

      const other = uniqueTenant();
      await provision(s.app, other, email, PASSWORD);
      const stranger = (await login(other)).json() as Record<string, string>;
      expect((await s.app.inject({ method: 'DELETE', url: `/api/v1/sessions/${stranger.sessionId}`, headers: auth })).statusCode).toBe(404);
      expect((await me(stranger.userSessionToken as string)).statusCode).toBe(200);

      const others = await s.app.inject({ method: 'DELETE', url: '/api/v1/sessions?scope=others', headers: auth });
      expect(others.json()).toEqual({ revoked: 1 });
      expect((await me(c.userSessionToken as string)).statusCode).toBe(401);
      expect((await me(a.userSessionToken as string)).statusCode).toBe(200);

      const d = (await login(tid)).json() as Record<string, string>;
      const wrong = await s.app.inject({ method: 'POST', url: '/api/v1/auth/password', headers: auth, payload: { currentPassword: 'nope', newPassword: 'new password 1' } });
      expect(wrong.statusCode).toBe(401);
      const ok = await s.app.inject({
        method: 'POST',
        url: '/api/v1/auth/password',
        headers: auth,
        payload: { currentPassword: PASSWORD, newPassword: 'new password 1', endOtherSessions: true },
      });
      expect(ok.json()).toEqual({ revoked: 1 });
      expect((await me(d.userSessionToken as string)).statusCode).toBe(401);
      expect((await login(tid)).statusCode).toBe(401);
      expect((await login(tid, {}, { email, password: 'new password 1' })).statusCode).toBe(200);
    });
  });

  describe('tenant header rules (docs/api.md §Request headers)', () => {
    it('production requires all six headers on authenticated calls; mismatches are 403', async () => {
      const tid = uniqueTenant();
      await provision(s.app, tid, email, PASSWORD, { profile: 'production' });
      const pair = (await login(tid)).json() as Record<string, string>;
      expect(pair.expires_in).toBe(1800);
      const missing = await me(pair.userSessionToken as string, { 'x-tenant-id': tid });
      expect(missing.statusCode).toBe(400);
      expect(missing.json()).toMatchObject({ code: 'missing_header' });
      const full = {
        'x-tenant-id': tid,
        'x-request-id': '6f1c2a7e-8b4d-4e3f-9a2b-1c3d5e7f9a0b',
        'x-correlation-id': 'corr-1',
        'x-activity-id': '2b4d6f8a-1c3e-4a5b-8c7d-9e0f1a2b3c4d',
        'x-session-id': pair.sessionId as string,
      };
      expect((await me(pair.userSessionToken as string, full)).statusCode).toBe(200);
      expect((await me(pair.userSessionToken as string, { ...full, 'x-tenant-id': tenantId })).json()).toMatchObject({ code: 'tenant_mismatch' });
      expect((await me(pair.userSessionToken as string, { ...full, 'x-session-id': 'other' })).json()).toMatchObject({ code: 'session_mismatch' });
    });
  });

  it('answers 400 invalid_cursor, never a 5xx, to cursors it did not issue', async () => {
    const pair = (await login()).json() as Record<string, string>;
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    for (const cursor of [Buffer.from('[1e999,"x"]').toString('base64url'), b64(['a', 'b']), b64([1, 'x'.repeat(500)]), 'not-json', b64({})]) {
      const r = await s.app.inject({ url: `/api/v1/sessions?cursor=${cursor}`, headers: { authorization: `Bearer ${pair.userSessionToken}` } });
      expect(r.statusCode, cursor).toBe(400);
    }
    for (const cursor of ['99999999999999999999-0', '0-0', '18446744073709551615-18446744073709551615']) {
      for (const path of ['audit', 'anomalies']) {
        const r = await s.app.inject({ url: `/api/v1/admin/${path}?tenantId=${tenantId}&cursor=${cursor}`, headers: admin });
        expect(r.statusCode, `${path} ${cursor}`).toBeLessThan(500);
      }
    }
  });

  it('keeps raw secrets out of the store', async () => {
    const pair = (await login()).json() as Record<string, string>;
    const session = await s.store.getSessionByHandle(pair.sessionId as string);
    expect(JSON.stringify(session)).not.toContain(pair.refreshToken);
    const rt = await s.store.getRefreshToken(createHash('sha256').update(pair.refreshToken as string).digest('base64url'));
    expect(rt?.sessionHandle).toBe(pair.sessionId);
  });
});

describe('browser integration settings', () => {
  it('TESSERA_ALLOWED_ORIGINS drives credentialed CORS for exactly those origins', async () => {
    const s = await startTestServer({ env: { TESSERA_ALLOWED_ORIGINS: 'https://app.example.com' } });
    try {
      const pre = await s.app.inject({
        method: 'OPTIONS',
        url: '/api/v1/auth/login',
        headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-tenant-id' },
      });
      expect(pre.statusCode).toBe(204);
      expect(pre.headers['access-control-allow-origin']).toBe('https://app.example.com');
      expect(pre.headers['access-control-allow-credentials']).toBe('true');
      const evil = await s.app.inject({
        method: 'OPTIONS',
        url: '/api/v1/auth/login',
        headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
      });
      expect(evil.headers['access-control-allow-origin']).toBeUndefined();
    } finally {
      await s.close();
    }
  });

  it('TESSERA_INSECURE_COOKIES=1 drops Secure and the __Host- prefix, nothing else', async () => {
    const s = await startTestServer({ env: { TESSERA_INSECURE_COOKIES: '1' } });
    try {
      const tid = uniqueTenant();
      await provision(s.app, tid, 'ada@example.com', PASSWORD);
      const res = await s.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        headers: { 'x-tenant-id': tid, 'x-auth-mode': 'cookie' },
        payload: { email: 'ada@example.com', password: PASSWORD },
      });
      expect(cookieOf(res, '__Host-sid')).toBeNull();
      const c = cookieOf(res, 'sid')!;
      expect(c.attrs).not.toMatch(/Secure/);
      expect(c.attrs).toMatch(/HttpOnly/);
      expect(c.attrs).toMatch(/SameSite=Strict/);
      expect((await s.app.inject({ url: '/api/v1/session', headers: { cookie: `sid=${c.value}` } })).statusCode).toBe(200);
    } finally {
      await s.close();
    }
  });
});
