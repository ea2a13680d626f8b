// Single sign-on over HTTP (docs/api.md §Single sign-on) against the real `oidc-provider` on
// 127.0.0.1, driven by a cookie-keeping HTTP client (test/support/sso-world.ts). The same flows
// through Debian's Chromium are in test/e2e/sso-browser.test.ts; this file covers the breadth: both
// stores, both protocols, every refusal, the one-time token, the organization API and the audit
// events.

import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealClientSecret } from '../../src/auth/federation/relying-party.ts';
import { hashSecret } from '../../src/domain/secrets.ts';
import type { TesseraEvent } from '../../src/events/bus.ts';
import { openConnection } from '../../src/store/redis/connection.ts';
import { parseRedisUrl } from '../../src/store/redis/url.ts';
import { deterministicJti } from '../../src/tokens/session-token.ts';
import { admin, redisTestUrl, startTestServer } from '../support/harness.ts';
import { storeChoices } from '../support/store-choices.ts';
import { loginAtProvider, MiniBrowser, OAUTH_PROVIDER, startSsoWorld, type SsoWorld } from '../support/sso-world.ts';

const ALICE = { login: 'alice', password: 'wonderland' };
const ROOT = { login: 'root', password: 'toor-toor' };
const MALLORY = { login: 'mallory', password: 'unverified' };

interface Problem {
  code: string;
  detail: string;
  status: number;
}

describe.each(storeChoices({ cluster: true }))('SSO over HTTP (%s)', (storeChoice) => {
  let world: SsoWorld;
  const events: TesseraEvent[] = [];

  beforeAll(async () => {
    world = await startSsoWorld({ store: storeChoice });
    world.server.deps.bus.subscribe((e) => events.push(e));
  });
  afterAll(async () => {
    await world?.close();
  });

  const loginUrl = (query = '') => `${world.tesseraUrl}/api/v1/sso/oidc/login?orgSlug=${world.orgSlug}${query}`;

  async function redeem(token: string, mode: 'token' | 'cookie' = 'token', opts: { browser?: MiniBrowser; codeVerifier?: string } = {}) {
    const init = {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(mode === 'cookie' ? { 'x-auth-mode': 'cookie', origin: world.tesseraUrl } : {}) },
      body: JSON.stringify({ token, ...(opts.codeVerifier !== undefined ? { codeVerifier: opts.codeVerifier } : {}) }),
    };
    const url = `${world.tesseraUrl}/api/v1/sso/token`;
    // With a browser: its cookies (the `__Host-flow` binding) go along, as from the /login/sso page.
    return opts.browser ? opts.browser.request(url, init) : fetch(url, init);
  }

  /** What `tessera login` sends: a verifier's S256 challenge and a state for its listener. */
  function cliParams(port: number) {
    const verifier = randomBytes(32).toString('base64url');
    const cliState = randomBytes(32).toString('base64url');
    const query = `&callbackPort=${port}&codeChallenge=${createHash('sha256').update(verifier).digest('base64url')}&cliState=${cliState}`;
    return { verifier, cliState, query };
  }

  /** A whole login in `browser`: returns the callback's redirect target. */
  async function signIn(browser: MiniBrowser, account = ALICE, url = loginUrl()): Promise<URL> {
    const callback = await loginAtProvider(browser, world, url, account);
    const r = await browser.get(callback);
    expect(r.status, await r.clone().text()).toBe(302);
    return new URL(r.headers.get('location') as string, world.tesseraUrl);
  }

  function tokenOf(target: URL): string {
    const t = target.searchParams.get('token');
    if (t === null) throw new Error(`no token in ${target.href}`);
    return t;
  }

  it('starts a flow: flow cookie (Lax, 10 min), a 302 to the provider with state, nonce and PKCE S256', async () => {
    const browser = new MiniBrowser();
    const r = await browser.get(loginUrl());
    expect(r.status).toBe(302);
    const cookie = r.headers.getSetCookie().find((c) => c.startsWith('__Host-flow='));
    expect(cookie).toBeDefined();
    expect(cookie).toMatch(/Max-Age=600/);
    expect(cookie).toMatch(/SameSite=Lax/);
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/Secure/);
    expect(cookie).toMatch(/Path=\//);
    const to = new URL(r.headers.get('location') as string);
    expect(to.origin).toBe(world.idp.issuer);
    expect(to.searchParams.get('client_id')).toBe(world.idp.clientId);
    expect(to.searchParams.get('redirect_uri')).toBe(`${world.tesseraUrl}/api/v1/sso/oidc/callback`);
    expect(to.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(to.searchParams.get('nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(to.searchParams.get('code_challenge_method')).toBe('S256');
    expect(to.searchParams.get('scope')).toBe('openid email');
  });

  it('logs in (token mode): idp and app sessions, the user created by (issuer, subject), a token pair that works', async () => {
    const browser = new MiniBrowser();
    const target = await signIn(browser);
    expect(target.pathname).toBe('/login/sso');
    const token = tokenOf(target);
    // Redeemed by the browser that started the sign-in (its __Host-flow binding goes along).
    const r = await redeem(token, 'token', { browser });
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('no-store');
    const pair = (await r.json()) as { userSessionToken: string; refreshToken: string; sessionId: string; customerId: string; tenantId: string };
    expect(pair.tenantId).toBe(world.tenantId);
    // The token's jti is the session's and its refresh token's (as every pair's: a grace answer of
    // the first rotation signs the same one), from the hash the exchange made once.
    const claims = JSON.parse(Buffer.from(pair.userSessionToken.split('.')[1] as string, 'base64url').toString('utf8')) as { jti: string; sid: string };
    expect(claims.sid).toBe(pair.sessionId);
    expect(claims.jti).toBe(deterministicJti(pair.sessionId, hashSecret(pair.refreshToken)));
    const me = await fetch(`${world.tesseraUrl}/api/v1/session`, { headers: { authorization: `Bearer ${pair.userSessionToken}` } });
    expect(me.status).toBe(200);
    const store = world.server.store;
    const app = await store.getSessionByHandle(pair.sessionId);
    expect(app).toMatchObject({ kind: 'app', authMethod: 'oidc', status: 'active', data: { mode: 'token' } });
    const idp = await store.getSessionByHandle(app?.parentHandle as string);
    expect(idp).toMatchObject({ kind: 'idp', userId: pair.customerId, status: 'active', data: { subject: 'alice', issuer: world.idp.issuer } });
    const identity = await store.federation.findIdentity(world.tenantId, world.idp.issuer, 'alice');
    expect(identity?.userId).toBe(pair.customerId);
    const user = await store.getUser(world.tenantId, pair.customerId);
    expect(user).toMatchObject({ email: 'alice@example.com', passwordHash: null, roles: [] });

    // The refresh token rotates like any other.
    const refreshed = await fetch(`${world.tesseraUrl}/api/v1/auth/token/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refreshToken: pair.refreshToken }),
    });
    expect(refreshed.status).toBe(200);
  });

  it('the one-time token is single use, refuses other secrets, and dies after 60 s', async () => {
    const browser = new MiniBrowser();
    const token = tokenOf(await signIn(browser));
    expect((await redeem(token, 'token', { browser })).status).toBe(200);
    const again = await redeem(token, 'token', { browser });
    expect(again.status).toBe(401);
    expect(((await again.json()) as Problem).code).toBe('invalid_sso_token');

    const lateBrowser = new MiniBrowser();
    const late = tokenOf(await signIn(lateBrowser));
    world.clock.advance(61_000);
    const r = await redeem(late, 'token', { browser: lateBrowser });
    expect(r.status).toBe(401);
    expect(((await r.json()) as Problem).code).toBe('invalid_sso_token');

    expect((await redeem('x'.repeat(43), 'token', { browser })).status).toBe(401);

    // X-Tenant-ID, when sent, must be the token's tenant; a refusal does not use the token up.
    const otherBrowser = new MiniBrowser();
    const other = tokenOf(await signIn(otherBrowser));
    const wrongTenant = await otherBrowser.request(`${world.tesseraUrl}/api/v1/sso/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-tenant-id': 'someone-else' },
      body: JSON.stringify({ token: other }),
    });
    expect(wrongTenant.status).toBe(403);
    expect(((await wrongTenant.json()) as Problem).code).toBe('tenant_mismatch');
    expect((await redeem(other, 'token', { browser: otherBrowser })).status).toBe(200);
  });

  it('two redemptions racing with one token: exactly one session', async () => {
    const browser = new MiniBrowser();
    const token = tokenOf(await signIn(browser));
    const results = await Promise.all(Array.from({ length: 10 }, () => redeem(token, 'token', { browser })));
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    expect(results.filter((r) => r.status === 401)).toHaveLength(9);
  });

  it('a token whose app session ended meanwhile: 401 session_ended, the token spent, the session left ended and pending', async () => {
    const browser = new MiniBrowser();
    const token = tokenOf(await signIn(browser));
    const store = world.server.store;
    const oneTime = await store.getSessionBySecretHash(hashSecret(token));
    const appHandle = oneTime?.data.appHandle as string;
    expect(await store.getSessionByHandle(appHandle)).toMatchObject({ status: 'active', data: { mode: 'pending' } });
    await store.revokeSession(appHandle, 'logout', world.clock.now());
    const r = await redeem(token, 'token', { browser });
    expect(r.status).toBe(401);
    expect(((await r.json()) as Problem).code).toBe('session_ended');
    expect((await store.getSessionBySecretHash(hashSecret(token)))?.status).toBe('revoked');
    const again = await redeem(token, 'token', { browser });
    expect(((await again.json()) as Problem).code).toBe('invalid_sso_token');
    const app = await store.getSessionByHandle(appHandle);
    expect(app).toMatchObject({ status: 'revoked', revokeReason: 'logout', data: { mode: 'pending' } });
    expect(events.some((e) => e.type === 'sso.token_redeemed' && e.sessionHandle === appHandle)).toBe(false);
  });

  it('a user disabled between the callback and the exchange: 403 user_disabled in both modes, the token spent, no active session, audited', async () => {
    const store = world.server.store;
    const BOB = { login: 'bob', password: 'builder' };
    const tokenBrowser = new MiniBrowser();
    const tokenModeToken = tokenOf(await signIn(tokenBrowser, BOB));
    const cookieBrowser = new MiniBrowser();
    const cookieModeToken = tokenOf(await signIn(cookieBrowser, BOB));
    const sessionsOf = async (token: string) => {
      const app = await store.getSessionByHandle((await store.getSessionBySecretHash(hashSecret(token)))?.data.appHandle as string);
      return { app: app?.handle as string, idp: app?.parentHandle as string, userId: app?.userId as string };
    };
    const signIns = [await sessionsOf(tokenModeToken), await sessionsOf(cookieModeToken)];
    const userId = signIns[0]?.userId as string;
    // Disabled in the store alone, as when the disable's end of the user's sessions ran before
    // the callback created these: the pending app sessions are still there.
    const bob = await store.getUser(world.tenantId, userId);
    if (!bob) throw new Error('no user for bob');
    await store.updateUser({ ...bob, disabled: true });
    const eventsBefore = events.length;
    try {
      const refusals = [await redeem(tokenModeToken, 'token', { browser: tokenBrowser }), await redeem(cookieModeToken, 'cookie', { browser: cookieBrowser })];
      for (const r of refusals) {
        expect(r.status).toBe(403);
        expect(((await r.json()) as Problem).code).toBe('user_disabled');
        expect(r.headers.getSetCookie().some((c) => c.startsWith('__Host-sid='))).toBe(false);
      }
      expect(cookieBrowser.cookies.has('__Host-sid')).toBe(false);
      // Spent: a second exchange finds no token.
      for (const [token, browser] of [[tokenModeToken, tokenBrowser], [cookieModeToken, cookieBrowser]] as const) {
        expect((await store.getSessionBySecretHash(hashSecret(token)))?.status).toBe('revoked');
        expect(((await (await redeem(token, 'token', { browser })).json()) as Problem).code).toBe('invalid_sso_token');
      }
      // The sign-ins' sessions ended (the app session still pending: it never got a credential).
      for (const s of signIns) {
        expect(await store.getSessionByHandle(s.app)).toMatchObject({ status: 'revoked', revokeReason: 'user_disabled', data: { mode: 'pending' } });
        expect(await store.getSessionByHandle(s.idp)).toMatchObject({ status: 'revoked', revokeReason: 'user_disabled' });
      }
      const active = await store.listSessions({ tenantId: world.tenantId, userId, status: 'active', now: world.clock.now(), limit: 100 });
      expect(active.items).toEqual([]);
      // Audited like the callback's refusal of a disabled user: sso.failed with the code, and the ends.
      const after = events.slice(eventsBefore);
      expect(after.filter((e) => e.type === 'sso.token_redeemed')).toEqual([]);
      for (const s of signIns) {
        const failed = after.filter((e) => e.type === 'sso.failed' && e.sessionHandle === s.app);
        expect(failed).toHaveLength(1);
        expect(failed[0]).toMatchObject({ tenantId: world.tenantId, userId, kind: 'app', details: { reason: 'user_disabled' } });
        for (const handle of [s.app, s.idp]) {
          expect(after.some((e) => e.type === 'session.revoked' && e.sessionHandle === handle && e.details.reason === 'user_disabled')).toBe(true);
        }
      }
    } finally {
      await store.updateUser(bob);
    }
  });

  it('logs in (cookie mode): the session cookie, an xsrf token, and no bearer tokens', async () => {
    const browser = new MiniBrowser();
    const token = tokenOf(await signIn(browser));
    const r = await redeem(token, 'cookie', { browser });
    expect(r.status).toBe(200);
    const body = (await r.json()) as Record<string, unknown>;
    expect(body).toHaveProperty('xsrfToken');
    expect(body).not.toHaveProperty('userSessionToken');
    const sid = r.headers.getSetCookie().find((c) => c.startsWith('__Host-sid='));
    expect(sid).toMatch(/SameSite=Strict/);
    const me = await fetch(`${world.tesseraUrl}/api/v1/session`, { headers: { cookie: (sid as string).split(';')[0] as string } });
    expect(me.status).toBe(200);
    expect(((await me.json()) as { sessionId: string }).sessionId).toBe(body.sessionId);
  });

  it("login CSRF: a token redeemed in cookie mode needs the flow cookie of the browser that started the login", async () => {
    // The attacker finishes a login in their own browser and sends the victim /login/sso?token=….
    const attacker = new MiniBrowser();
    const token = tokenOf(await signIn(attacker));
    const victim = new MiniBrowser();
    const noCookie = await redeem(token, 'cookie', { browser: victim });
    expect(noCookie.status).toBe(403);
    expect(((await noCookie.json()) as Problem).code).toBe('sso_browser_mismatch');
    expect(victim.cookies.has('__Host-sid')).toBe(false);
    // A victim with a flow cookie of its own (a login of its own was started) is refused too.
    await victim.get(loginUrl());
    expect(victim.cookies.has('__Host-flow')).toBe(true);
    const otherCookie = await redeem(token, 'cookie', { browser: victim });
    expect(otherCookie.status).toBe(403);
    expect(((await otherCookie.json()) as Problem).code).toBe('sso_browser_mismatch');
    expect(victim.cookies.has('__Host-sid')).toBe(false);
    // The refusals did not use the token up: the browser that started the login still redeems it.
    const own = await redeem(token, 'cookie', { browser: attacker });
    expect(own.status).toBe(200);
  });

  it('a cookie-mode exchange from a foreign origin is refused (403 csrf, with the ids and headers of every answer) before the token is looked at', async () => {
    const browser = new MiniBrowser();
    const token = tokenOf(await signIn(browser));
    const url = `${world.tesseraUrl}/api/v1/sso/token`;
    const body = JSON.stringify({ token });
    for (const headers of [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }]) {
      const r = await browser.request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-auth-mode': 'cookie', ...headers }, body });
      expect(r.status).toBe(403);
      expect(r.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
      expect(r.headers.get('cache-control')).toBe('no-store');
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      const problem = (await r.json()) as Problem & { requestId: string };
      expect(problem).toMatchObject({ status: 403, code: 'csrf' });
      expect(problem.requestId).toBe(r.headers.get('x-request-id'));
      expect(r.headers.get('x-correlation-id')).toMatch(/^[0-9a-f-]{36}$/);
      expect(r.headers.getSetCookie().some((c) => c.startsWith('__Host-sid='))).toBe(false);
    }
    // Refused before the exchange: the token is still good for its own browser.
    const own = await redeem(token, 'cookie', { browser });
    expect(own.status).toBe(200);
  });

  it('two logins started in two tabs of one browser both finish (one flow per state)', async () => {
    const browser = new MiniBrowser();
    const first = await browser.get(loginUrl());
    const second = await browser.get(loginUrl());
    expect(first.status).toBe(302);
    expect(second.status).toBe(302);
    const one = await loginAtProvider(browser, world, first.headers.get('location') as string, ALICE);
    const two = await loginAtProvider(browser, world, second.headers.get('location') as string, ALICE);
    // Finish them in the other order.
    const r2 = await browser.get(two);
    const r1 = await browser.get(one);
    expect(r2.status).toBe(302);
    expect(r1.status).toBe(302);
    const t1 = tokenOf(new URL(r1.headers.get('location') as string, world.tesseraUrl));
    const t2 = tokenOf(new URL(r2.headers.get('location') as string, world.tesseraUrl));
    expect(t1).not.toBe(t2);
    expect((await redeem(t1, 'token', { browser })).status).toBe(200);
    expect((await redeem(t2, 'token', { browser })).status).toBe(200);
  });

  it("refuses a callback with another browser's state, and leaves the flow to its owner", async () => {
    const owner = new MiniBrowser();
    const callback = await loginAtProvider(owner, world, loginUrl(), ALICE);
    const failedBefore = events.filter((e) => e.type === 'sso.failed').length;

    const stranger = new MiniBrowser();
    const r = await stranger.get(callback);
    expect(r.status).toBe(403);
    expect(r.headers.get('content-type')).toMatch(/text\/html/);
    expect(await r.text()).toContain('sso_state_mismatch');

    // A stranger with a flow cookie of its own is refused the same way.
    await stranger.get(loginUrl());
    const r2 = await stranger.get(callback);
    expect(r2.status).toBe(403);
    const failed = events.filter((e) => e.type === 'sso.failed').slice(failedBefore);
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(failed[0]).toMatchObject({ tenantId: world.tenantId, details: { reason: 'sso_state_mismatch' } });

    const ok = await owner.get(callback);
    expect(ok.status).toBe(302);
    expect(ok.headers.get('location')).toMatch(/^\/login\/sso\?token=/);
  });

  it('refuses a replayed callback (the flow is used once)', async () => {
    const browser = new MiniBrowser();
    const callback = await loginAtProvider(browser, world, loginUrl(), ALICE);
    expect((await browser.get(callback)).status).toBe(302);
    const replay = await browser.get(callback);
    expect(replay.status).toBe(403);
    expect(await replay.text()).toContain('sso_state_mismatch');
  });

  it('screens SSO logins with the anomaly rules: on a revoke tenant, a login past the concurrent-session threshold is refused', async () => {
    // Alice's active app sessions (her user is whoever the newest OIDC app session belongs to).
    const alicesActive = async () => {
      const all = (await world.server.store.listSessions({ tenantId: world.tenantId, kind: 'app', status: 'active', now: Date.now(), limit: 500 })).items;
      const newest = all.filter((x) => x.authMethod === 'oidc').sort((a, b) => b.createdAt - a.createdAt)[0];
      return all.filter((x) => x.userId === newest?.userId);
    };
    // Reach the threshold (5 active app sessions) while the tenant only records.
    do await signIn(new MiniBrowser(), ALICE);
    while ((await alicesActive()).length < 5);
    const put = (payload: unknown) =>
      world.server.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${world.tenantId}`, headers: admin, payload: payload as object });
    expect((await put({ profile: 'production', sessionLimit: { max: null }, anomalyPolicy: 'revoke' })).statusCode).toBe(200);
    try {
      const before = (await alicesActive()).length;
      const browser = new MiniBrowser();
      const callback = await loginAtProvider(browser, world, loginUrl(), ALICE);
      const refused = await browser.get(callback);
      expect(refused.status, await refused.clone().text()).toBe(401);
      expect(await refused.text()).toContain('anomaly_detected');
      // Neither an app session nor its idp parent survives the refusal.
      expect((await alicesActive()).length).toBe(before);
      expect(events.some((e) => e.type === 'anomaly.detected' && e.details.reason === 'concurrent_sessions')).toBe(true);
    } finally {
      expect((await put({ profile: 'integration' })).statusCode).toBe(200);
    }
  });

  it('API clients get problem+json; browsers get a page', async () => {
    const api = await fetch(`${world.tesseraUrl}/api/v1/sso/oidc/login?orgSlug=no-such-org`, { redirect: 'manual', headers: { accept: 'application/json' } });
    expect(api.status).toBe(404);
    expect(api.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(((await api.json()) as Problem).code).toBe('org_not_found');
    const page = await new MiniBrowser().get(`${world.tesseraUrl}/api/v1/sso/oidc/login?orgSlug=no-such-org`);
    expect(page.status).toBe(404);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    const noState = await new MiniBrowser().get(`${world.tesseraUrl}/api/v1/sso/oidc/callback?code=abc`);
    expect(noState.status).toBe(400);
    expect(await noState.text()).toContain('sso_invalid_callback');
  });

  it('refuses a tampered ID token and one with the wrong nonce; the flow is gone afterwards', async () => {
    for (const tamper of ['signature', 'nonce'] as const) {
      const browser = new MiniBrowser();
      const callback = await loginAtProvider(browser, world, loginUrl(), ALICE);
      world.idp.tamper = tamper;
      let r: Response;
      try {
        r = await browser.get(callback);
      } finally {
        world.idp.tamper = 'none';
      }
      expect(r.status, tamper).toBe(401);
      const text = await r.text();
      expect(text, tamper).toContain('sso_id_token_invalid');
      const again = await browser.get(callback);
      expect(again.status).toBe(403);
    }
    const failures = events.filter((e) => e.type === 'sso.failed' && e.details.reason === 'sso_id_token_invalid');
    expect(failures.length).toBeGreaterThanOrEqual(2);
  });

  it('refuses an expired flow', async () => {
    const browser = new MiniBrowser();
    const callback = await loginAtProvider(browser, world, loginUrl(), ALICE);
    world.clock.advance(601_000);
    const r = await browser.get(callback);
    expect(r.status).toBe(400);
    expect(await r.text()).toContain('sso_flow_expired');
    expect((await browser.get(callback)).status).toBe(403);
  });

  it('refuses denied consent and a bad code, and destroys the flow', async () => {
    const browser = new MiniBrowser();
    const denied = await loginAtProvider(new MiniBrowser(), world, loginUrl(), ALICE, 'deny');
    expect(new URL(denied).searchParams.get('error')).toBe('access_denied');
    // The provider's answer went to a browser without this flow; replay it in the right one.
    const owner = new MiniBrowser();
    const deniedOwn = await loginAtProvider(owner, world, loginUrl(), ALICE, 'deny');
    const r = await owner.get(deniedOwn);
    expect(r.status).toBe(403);
    expect(await r.text()).toContain('sso_access_denied');
    expect((await owner.get(deniedOwn)).status).toBe(403);

    const callback = new URL(await loginAtProvider(browser, world, loginUrl(), ALICE));
    callback.searchParams.set('code', 'not-a-code-the-provider-issued');
    const bad = await browser.get(callback.href);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('sso_code_rejected');
    expect((await browser.get(callback.href)).status).toBe(403);
  });

  it('a command-line login ends at http://127.0.0.1:<callbackPort>/callback, with its token or its error, and its listener state', async () => {
    const cli = cliParams(49152);
    const target = await signIn(new MiniBrowser(), ALICE, loginUrl(cli.query));
    expect(target.origin).toBe('http://127.0.0.1:49152');
    expect(target.pathname).toBe('/callback');
    expect(target.searchParams.get('state')).toBe(cli.cliState);
    expect((await redeem(tokenOf(target), 'token', { codeVerifier: cli.verifier })).status).toBe(200);

    const browser = new MiniBrowser();
    const failing = cliParams(49153);
    const callback = await loginAtProvider(browser, world, loginUrl(failing.query), ALICE);
    world.idp.tamper = 'signature';
    let r: Response;
    try {
      r = await browser.get(callback);
    } finally {
      world.idp.tamper = 'none';
    }
    expect(r.status).toBe(302);
    const to = new URL(r.headers.get('location') as string);
    expect(to.origin).toBe('http://127.0.0.1:49153');
    expect(to.searchParams.get('error')).toBe('sso_id_token_invalid');
    expect(to.searchParams.get('state')).toBe(failing.cliState);
    expect(to.searchParams.get('token')).toBeNull();
  });

  it("a command-line login's token is redeemed only with the verifier of the challenge it started with", async () => {
    const cli = cliParams(49154);
    const token = tokenOf(await signIn(new MiniBrowser(), ALICE, loginUrl(cli.query)));
    // Whoever got the token (a web page fetching the listener, another local process) lacks the verifier.
    for (const codeVerifier of [undefined, randomBytes(32).toString('base64url')]) {
      const r = await redeem(token, 'token', codeVerifier === undefined ? {} : { codeVerifier });
      expect(r.status).toBe(403);
      expect(((await r.json()) as Problem).code).toBe('sso_verifier_mismatch');
    }
    const inCookieMode = await redeem(token, 'cookie');
    expect(inCookieMode.status).toBe(403);
    // The refusals did not use it up.
    expect((await redeem(token, 'token', { codeVerifier: cli.verifier })).status).toBe(200);

    // A verifier is refused with a token that was not issued to a command-line login (the CLI
    // never accepts a browser login's token).
    const browserToken = tokenOf(await signIn(new MiniBrowser()));
    const withVerifier = await redeem(browserToken, 'token', { codeVerifier: cli.verifier });
    expect(withVerifier.status).toBe(403);
    expect(((await withVerifier.json()) as Problem).code).toBe('sso_verifier_mismatch');

    // A command-line login cannot start without a challenge and a listener state: a crafted link
    // with someone's callbackPort would otherwise send a live token to that port.
    for (const q of ['&callbackPort=49155', `&callbackPort=49155&cliState=${cli.cliState}`, `&callbackPort=49155&codeChallenge=${'a'.repeat(43)}`, `&codeChallenge=${'a'.repeat(43)}&cliState=${cli.cliState}`, `${cli.query.replace(/codeChallenge=[^&]+/, 'codeChallenge=short')}`]) {
      const r = await new MiniBrowser().get(loginUrl(q));
      expect(r.status, q).toBe(400);
      expect(await r.text(), q).toContain('invalid_cli_login');
    }
  });

  it('validates callbackPort (integer 1024–65535)', async () => {
    for (const bad of ['80', '1023', '65536', 'abc', '4711.5', '-1', '99999']) {
      const r = await new MiniBrowser().get(loginUrl(`&callbackPort=${encodeURIComponent(bad)}`));
      expect(r.status, bad).toBe(400);
      expect(await r.text(), bad).toContain('invalid_callback_port');
    }
    expect((await new MiniBrowser().get(loginUrl(cliParams(1024).query))).status).toBe(302);
    expect((await new MiniBrowser().get(loginUrl(cliParams(65535).query))).status).toBe(302);
  });

  it('plain OAuth 2.0: isAdminLogin is carried through the flow and needs the admin role', async () => {
    const oauthLogin = (q: string) => `${world.tesseraUrl}/api/v1/sso/oauth/${OAUTH_PROVIDER}/login?orgSlug=${world.oauthOrgSlug}${q}`;
    // An admin of the tenant, linked by verified email on first SSO login.
    const created = await world.server.app.inject({
      method: 'POST',
      url: '/api/v1/admin/users',
      headers: admin,
      payload: { tenantId: world.tenantId, email: 'root@example.com', password: 'a-long-password-1', roles: ['admin'] },
    });
    expect(created.statusCode).toBe(201);
    const rootId = (created.json() as { id: string }).id;

    const browser = new MiniBrowser();
    const start = await browser.get(oauthLogin('&isAdminLogin=true'));
    expect(start.status).toBe(302);
    const to = new URL(start.headers.get('location') as string);
    expect(to.searchParams.get('nonce')).toBeNull();
    expect(to.searchParams.get('code_challenge_method')).toBe('S256');
    if (world.redisPrefix !== null) {
      const keys = await redisKeys(`${world.redisPrefix}oauth-session:*`, world.storeConfig.url);
      expect(keys).toContain(`${world.redisPrefix}oauth-session:${hashSecret(to.searchParams.get('state') as string)}`);
    }

    const refusedBrowser = new MiniBrowser();
    const refused = await refusedBrowser.get(await loginAtProvider(refusedBrowser, world, oauthLogin('&isAdminLogin=true'), ALICE));
    expect(refused.status).toBe(403);
    expect(await refused.text()).toContain('sso_admin_required');

    const adminBrowser = new MiniBrowser();
    const ok = await adminBrowser.get(await loginAtProvider(adminBrowser, world, oauthLogin('&isAdminLogin=true'), ROOT));
    expect(ok.status).toBe(302);
    const token = tokenOf(new URL(ok.headers.get('location') as string, world.tesseraUrl));
    const pair = (await (await redeem(token, 'token', { browser: adminBrowser })).json()) as { customerId: string; sessionId: string; userSessionToken: string };
    expect(pair.customerId).toBe(rootId);
    const session = await world.server.store.getSessionByHandle(pair.sessionId);
    expect(session).toMatchObject({ authMethod: 'oauth', data: { adminLogin: true } });
    // The admin API accepts that session.
    const t = await fetch(`${world.tesseraUrl}/api/v1/admin/tenants/${world.tenantId}`, { headers: { authorization: `Bearer ${pair.userSessionToken}` } });
    expect(t.status).toBe(200);

    // An unverified email never links to (takes over) the admin's account: Mallory gets an
    // account of her own, without the address.
    const mallory = new MiniBrowser();
    const m = await mallory.get(await loginAtProvider(mallory, world, oauthLogin(''), MALLORY));
    expect(m.status).toBe(302);
    const malloryPair = (await (await redeem(tokenOf(new URL(m.headers.get('location') as string, world.tesseraUrl)), 'token', { browser: mallory })).json()) as { customerId: string };
    expect(malloryPair.customerId).not.toBe(rootId);

    // The OIDC routes refuse an OAuth organization, and the OAuth routes another provider.
    const wrong = await new MiniBrowser().get(`${world.tesseraUrl}/api/v1/sso/oidc/login?orgSlug=${world.oauthOrgSlug}`);
    expect(wrong.status).toBe(400);
    expect(await wrong.text()).toContain('wrong_protocol');
    const other = await new MiniBrowser().get(`${world.tesseraUrl}/api/v1/sso/oauth/github/login?orgSlug=${world.oauthOrgSlug}`);
    expect(other.status).toBe(400);
  });

  // Only on Redis (defined, not skipped: CI counts skipped tests as failures).
  if (storeChoice === 'redis' || storeChoice === 'redis-cluster') it('Redis: the oidc-session: key exists during the flow with a TTL of at most 600 s, and is gone after the callback', async () => {
    const browser = new MiniBrowser();
    const start = await browser.get(loginUrl());
    const state = new URL(start.headers.get('location') as string).searchParams.get('state') as string;
    const key = `${world.redisPrefix}oidc-session:${hashSecret(state)}`;
    const pttl = await redisCommand(['PTTL', key], world.storeConfig.url);
    expect(Number(pttl)).toBeGreaterThan(0);
    expect(Number(pttl)).toBeLessThanOrEqual(600_000);
    const callback = await loginAtProvider(browser, world, start.headers.get('location') as string, ALICE);
    expect(Number(await redisCommand(['EXISTS', key], world.storeConfig.url))).toBe(1);
    expect((await browser.get(callback)).status).toBe(302);
    expect(Number(await redisCommand(['EXISTS', key], world.storeConfig.url))).toBe(0);
  });

  it('emits sso.started, sso.completed and sso.failed with the request ids', async () => {
    const types = new Set(events.map((e) => e.type));
    expect(types).toContain('sso.started');
    expect(types).toContain('sso.completed');
    expect(types).toContain('sso.failed');
    const completed = events.find((e) => e.type === 'sso.completed');
    expect(completed).toMatchObject({ tenantId: world.tenantId, kind: 'app', details: { protocol: 'oidc' } });
    expect(completed?.headers?.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.stringify(events)).not.toMatch(/code_verifier|"nonce"/);
  });

  it('stores the client secret sealed and never returns it', async () => {
    const stored = await world.server.store.federation.getOrganization(world.orgSlug);
    expect(stored?.oidc?.sealedClientSecret).toMatch(/^v1\./);
    expect(JSON.stringify(stored)).not.toContain(world.idp.clientSecret);
    const got = await world.server.app.inject({ method: 'GET', url: `/api/v1/admin/orgs/${world.orgSlug}`, headers: admin });
    expect(got.statusCode).toBe(200);
    expect(got.body).not.toContain(world.idp.clientSecret);
    expect(got.json()).toMatchObject({ protocol: 'oidc', oidc: { hasClientSecret: true }, redirectUri: `${world.tesseraUrl}/api/v1/sso/oidc/callback` });
  });
});

describe('organizations (admin API)', () => {
  it('refuses plain-HTTP providers unless TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1, and non-loopback HTTP always', async () => {
    const strict = await startTestServer();
    const loose = await startTestServer({ env: { TESSERA_DEV_ALLOW_HTTP_LOOPBACK: '1' } });
    try {
      for (const s of [strict, loose]) {
        const t = await s.app.inject({ method: 'PUT', url: '/api/v1/admin/tenants/t-org', headers: admin, payload: { profile: 'integration' } });
        expect(t.statusCode).toBe(200);
      }
      const put = (s: typeof strict, body: Record<string, unknown>) =>
        s.app.inject({ method: 'PUT', url: '/api/v1/admin/orgs/acme', headers: admin, payload: { tenantId: 't-org', ...body } });

      const loopback = await put(strict, { oidc: { issuer: 'http://127.0.0.1:9/', clientId: 'x' } });
      expect(loopback.statusCode).toBe(400);
      expect(loopback.json()).toMatchObject({ code: 'insecure_url' });
      expect((loopback.json() as Problem).detail).toContain('TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1');

      const lan = await put(loose, { oidc: { issuer: 'http://idp.internal/', clientId: 'x' } });
      expect(lan.statusCode).toBe(400);
      expect(lan.json()).toMatchObject({ code: 'insecure_url' });

      const oauthHttp = await put(strict, {
        oauth: { provider: 'gh', authorizationEndpoint: 'https://gh.example/a', tokenEndpoint: 'http://gh.example/t', userinfoEndpoint: 'https://gh.example/u', clientId: 'x' },
      });
      expect(oauthHttp.statusCode).toBe(400);

      // The loopback issuer is allowed in development; nobody answers there, so discovery fails.
      const unreachable = await put(loose, { oidc: { issuer: 'http://127.0.0.1:9', clientId: 'x' } });
      expect(unreachable.statusCode).toBe(502);
      expect(unreachable.json()).toMatchObject({ code: 'oidc_discovery_failed' });

      const both = await put(strict, {
        oidc: { issuer: 'https://a.example', clientId: 'x' },
        oauth: { provider: 'gh', authorizationEndpoint: 'https://a.example/a', tokenEndpoint: 'https://a.example/t', userinfoEndpoint: 'https://a.example/u', clientId: 'x' },
      });
      expect(both.statusCode).toBe(400);
      expect(both.json()).toMatchObject({ code: 'invalid_org' });

      const noTenant = await strict.app.inject({
        method: 'PUT',
        url: '/api/v1/admin/orgs/acme',
        headers: admin,
        payload: { tenantId: 't-none', oauth: { provider: 'gh', authorizationEndpoint: 'https://a.example/a', tokenEndpoint: 'https://a.example/t', userinfoEndpoint: 'https://a.example/u', clientId: 'x' } },
      });
      expect(noTenant.statusCode).toBe(404);

      const oauth = await put(strict, {
        oauth: { provider: 'gh', authorizationEndpoint: 'https://gh.example/a', tokenEndpoint: 'https://gh.example/t', userinfoEndpoint: 'https://gh.example/u', clientId: 'x', clientSecret: 's3cret-value' },
      });
      expect(oauth.statusCode).toBe(200);
      expect(oauth.json()).toMatchObject({
        protocol: 'oauth',
        oauth: { provider: 'gh', hasClientSecret: true, issuer: 'https://gh.example', mapping: { subject: 'id', email: 'email', emailVerified: null } },
        redirectUri: 'https://tessera.test/api/v1/sso/oauth/gh/callback',
      });
      expect(oauth.body).not.toContain('s3cret-value');
      // Omitting the secret keeps it (same client id).
      const again = await put(strict, {
        oauth: { provider: 'gh', authorizationEndpoint: 'https://gh.example/a', tokenEndpoint: 'https://gh.example/t', userinfoEndpoint: 'https://gh.example/u', clientId: 'x' },
      });
      expect(again.json()).toMatchObject({ oauth: { hasClientSecret: true } });

      // Tessera's own redirect URI must be HTTPS too: this server's public URL is plain HTTP.
      const httpTessera = await startTestServer({ env: { TESSERA_PUBLIC_URL: 'http://127.0.0.1:1' } });
      try {
        await httpTessera.app.inject({ method: 'PUT', url: '/api/v1/admin/tenants/t-org', headers: admin, payload: {} });
        await put(httpTessera, {
          oauth: { provider: 'gh', authorizationEndpoint: 'https://gh.example/a', tokenEndpoint: 'https://gh.example/t', userinfoEndpoint: 'https://gh.example/u', clientId: 'x' },
        });
        const r = await httpTessera.app.inject({ method: 'GET', url: '/api/v1/sso/oauth/gh/login?orgSlug=acme' });
        expect(r.statusCode).toBe(500);
        expect(r.json()).toMatchObject({ code: 'insecure_redirect_uri' });
      } finally {
        await httpTessera.close();
      }

      expect((await strict.app.inject({ method: 'PUT', url: '/api/v1/admin/orgs/acme', payload: { tenantId: 't-org' } })).statusCode).toBe(401);
      expect((await strict.app.inject({ method: 'GET', url: '/api/v1/admin/orgs/nope', headers: admin })).statusCode).toBe(404);
      expect((await strict.app.inject({ method: 'PUT', url: '/api/v1/admin/orgs/Bad_Slug', headers: admin, payload: { tenantId: 't-org' } })).statusCode).toBe(400);
    } finally {
      await strict.close();
      await loose.close();
    }
  });
});

describe.each(storeChoices({ cluster: true }))('SSO pre-hijack through an unverified email (%s)', (storeChoice) => {
  let world: SsoWorld;
  beforeAll(async () => {
    world = await startSsoWorld({ store: storeChoice });
  });
  afterAll(async () => {
    await world?.close();
  });

  async function signInFor(url: string, account: { login: string; password: string }): Promise<Response> {
    const browser = new MiniBrowser();
    const r = await browser.get(await loginAtProvider(browser, world, url, account));
    if (r.status !== 302) return r;
    const token = new URL(r.headers.get('location') as string, world.tesseraUrl).searchParams.get('token') as string;
    // Redeemed by the browser that signed in (its __Host-flow binding goes along).
    return browser.request(`${world.tesseraUrl}/api/v1/sso/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  }
  const oidcLogin = () => `${world.tesseraUrl}/api/v1/sso/oidc/login?orgSlug=${world.orgSlug}`;
  // This organization links by verified email (linkVerifiedEmail: true).
  const oauthLogin = () => `${world.tesseraUrl}/api/v1/sso/oauth/${OAUTH_PROVIDER}/login?orgSlug=${world.oauthOrgSlug}`;

  it("a first login with an unverified email does not take the address; the address's verified owner is never linked to that account", async () => {
    // Mallory's provider account claims root@example.com without verifying it.
    const m = await signInFor(oidcLogin(), MALLORY);
    expect(m.status).toBe(200);
    const mallory = (await m.json()) as { customerId: string };
    const malloryUser = await world.server.store.getUser(world.tenantId, mallory.customerId);
    expect(malloryUser?.email).not.toBe('root@example.com');
    expect(malloryUser?.email).toMatch(/\.sso\.invalid$/);
    expect(malloryUser?.emailVerified).toBe(false);
    expect(await world.server.store.findUserByEmail(world.tenantId, 'root@example.com')).toBeNull();

    // The real owner signs in later with a verified address, through an organization that links
    // by verified email: a new account of their own, not Mallory's.
    const r = await signInFor(oauthLogin(), ROOT);
    expect(r.status).toBe(200);
    const root = (await r.json()) as { customerId: string };
    expect(root.customerId).not.toBe(mallory.customerId);
    expect(await world.server.store.getUser(world.tenantId, root.customerId)).toMatchObject({ email: 'root@example.com', emailVerified: true });
  });

  it('never links by verified email to an account whose email came from an unverified source (one made before this rule)', async () => {
    // An account a first SSO login made with an unverified address, as earlier versions did.
    const legacy = await world.server.store.createUser({
      id: 'sso-legacyunverifiedaccount00000',
      tenantId: world.tenantId,
      email: 'bob@example.com',
      passwordHash: null,
      roles: [],
      createdAt: 1,
      updatedAt: 1,
    });
    const r = await signInFor(oauthLogin(), { login: 'bob', password: 'builder' });
    expect(r.status).toBe(409);
    expect(await r.text()).toContain('sso_email_conflict');
    expect(await world.server.store.federation.findIdentity(world.tenantId, world.idp.issuer, 'bob')).toBeNull();
    expect(legacy.id).toBe('sso-legacyunverifiedaccount00000');
  });

  it('still links by verified email to an account an administrator made', async () => {
    const created = await world.server.app.inject({
      method: 'POST',
      url: '/api/v1/admin/users',
      headers: admin,
      payload: { tenantId: world.tenantId, email: 'alice@example.com', password: 'a-long-password-1' },
    });
    expect(created.statusCode).toBe(201);
    const r = await signInFor(oauthLogin(), ALICE);
    expect(r.status).toBe(200);
    expect(((await r.json()) as { customerId: string }).customerId).toBe((created.json() as { id: string }).id);
  });
});

describe('organizations: the stored client secret follows the provider', () => {
  it('is kept when the secret is omitted only if the issuer and every endpoint are unchanged; otherwise 400 client_secret_required', async () => {
    const s = await startTestServer({ env: { TESSERA_DEV_ALLOW_HTTP_LOOPBACK: '1' } });
    try {
      expect((await s.app.inject({ method: 'PUT', url: '/api/v1/admin/tenants/t-sec', headers: admin, payload: { profile: 'integration' } })).statusCode).toBe(200);
      const oauth = { provider: 'gh', authorizationEndpoint: 'https://gh.example/a', tokenEndpoint: 'https://gh.example/t', userinfoEndpoint: 'https://gh.example/u', clientId: 'x' };
      const put = (o: Record<string, unknown>, slug = 'acme-sec') =>
        s.app.inject({ method: 'PUT', url: `/api/v1/admin/orgs/${slug}`, headers: admin, payload: { tenantId: 't-sec', oauth: o } });
      expect((await put({ ...oauth, clientSecret: 'platform-set-secret' })).statusCode).toBe(200);
      const stored = await s.store.federation.getOrganization('acme-sec');
      // Unchanged provider: the omitted secret is kept.
      const same = await put(oauth);
      expect(same.statusCode).toBe(200);
      expect(same.json()).toMatchObject({ oauth: { hasClientSecret: true } });

      // Pointing any endpoint (or the issuer) elsewhere would send the stored secret there.
      for (const change of [
        { tokenEndpoint: 'https://attacker.example/t' },
        { authorizationEndpoint: 'https://attacker.example/a' },
        { userinfoEndpoint: 'https://attacker.example/u' },
        { issuer: 'https://attacker.example' },
        { clientId: 'y' },
      ]) {
        const r = await put({ ...oauth, ...change });
        expect(r.statusCode, JSON.stringify(change)).toBe(400);
        expect(r.json(), JSON.stringify(change)).toMatchObject({ code: 'client_secret_required', field: 'oauth.clientSecret' });
        // Nothing was stored.
        expect((await s.store.federation.getOrganization('acme-sec'))?.oauth).toEqual(stored?.oauth);
      }
      // With a secret of its own, or explicitly none, the change is accepted.
      expect((await put({ ...oauth, tokenEndpoint: 'https://other.example/t', clientSecret: 'their-own-secret' })).statusCode).toBe(200);
      const publicClient = await put({ ...oauth, tokenEndpoint: 'https://third.example/t', clientSecret: null });
      expect(publicClient.statusCode).toBe(200);
      expect(publicClient.json()).toMatchObject({ oauth: { hasClientSecret: false } });
      // Nothing stored to leak: omitting the secret on a change is fine (stays a public client).
      expect((await put({ ...oauth, tokenEndpoint: 'https://fourth.example/t' })).statusCode).toBe(200);

      // OpenID Connect: the issuer decides every endpoint (discovery).
      await s.store.federation.putOrganization({
        slug: 'acme-sec-oidc',
        tenantId: 't-sec',
        protocol: 'oidc',
        oidc: { issuer: 'http://127.0.0.1:9', clientId: 'x', sealedClientSecret: sealClientSecret(s.deps.keys.clientSecrets, 'platform-set-secret'), scopes: ['openid'], tokenEndpointAuthMethod: 'client_secret_basic' },
        oauth: null,
        linkVerifiedEmail: false,
        createdAt: 1,
        updatedAt: 1,
      }, null);
      const putOidc = (o: Record<string, unknown>) =>
        s.app.inject({ method: 'PUT', url: '/api/v1/admin/orgs/acme-sec-oidc', headers: admin, payload: { tenantId: 't-sec', oidc: o } });
      const moved = await putOidc({ issuer: 'http://127.0.0.1:10', clientId: 'x' });
      expect(moved.statusCode).toBe(400);
      expect(moved.json()).toMatchObject({ code: 'client_secret_required', field: 'oidc.clientSecret' });
      // Same issuer: the secret check passes (nobody answers discovery there, hence 502).
      const kept = await putOidc({ issuer: 'http://127.0.0.1:9', clientId: 'x' });
      expect(kept.json()).toMatchObject({ code: 'oidc_discovery_failed' });
    } finally {
      await s.close();
    }
  });
});

async function redisCommand(args: string[], url = redisTestUrl()): Promise<unknown> {
  const conn = await openConnection(parseRedisUrl(url), { connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
  try {
    return await conn.send(args[1], args);
  } finally {
    await conn.close();
  }
}

/** Keys matching `pattern` on the store at `url` (every master of a cluster). */
async function redisKeys(pattern: string, url: string): Promise<string[]> {
  const out: string[] = [];
  const conn = await openConnection(parseRedisUrl(url), { connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
  try {
    for (const send of await conn.masters()) {
      let cursor = '0';
      do {
        const [next, keys] = (await send(['SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000'])) as [string, string[]];
        cursor = next;
        out.push(...keys);
      } while (cursor !== '0');
    }
  } finally {
    await conn.close();
  }
  return out;
}

describe('flow starts per address', () => {
  let world: SsoWorld;
  beforeAll(async () => {
    world = await startSsoWorld();
  });
  afterAll(async () => {
    await world?.close();
  });

  it('are limited (429 sso_throttled with Retry-After) so that nobody fills the store with flows', async () => {
    const url = `${world.tesseraUrl}/api/v1/sso/oidc/login?orgSlug=${world.orgSlug}`;
    const statuses: number[] = [];
    for (let i = 0; i < 121; i++) {
      statuses.push((await fetch(url, { redirect: 'manual', headers: { accept: 'application/json' } })).status);
    }
    expect(statuses.slice(0, 120).every((s) => s === 302)).toBe(true);
    const r = await fetch(url, { redirect: 'manual', headers: { accept: 'application/json' } });
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(((await r.json()) as Problem).code).toBe('sso_throttled');
    world.clock.advance(60_000);
    expect((await fetch(url, { redirect: 'manual' })).status).toBe(302);
  });
});
