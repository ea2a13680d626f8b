// Tessera's OpenID provider for platform applications (/oidc), over HTTP with the real external
// provider (test/support/oidc-idp.ts): an openid-client relying party — code no one here wrote —
// signs in through Tessera's discovery document unchanged; application registration is
// validated; the session levels (idp, app) and the logout cascade with back-channel logout
// tokens; a back-channel logout from the external provider. On SQLite and Redis.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import type { Session } from '../../src/domain/session.ts';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logoutToken } from '../../src/flows/oidc/backchannel.ts';
import { loadOidcSigningKeys } from '../../src/flows/oidc/keys.ts';
import { admin, COOKIE_SECRET, provision, startTestServer, uniqueTenant } from '../support/harness.ts';
import { startPlatformApp } from '../support/platform-app.ts';
import { loginAtProvider, MiniBrowser, startSsoWorld, type SsoWorld } from '../support/sso-world.ts';
import { storeChoices } from '../support/store-choices.ts';
import { closeServer, listenLoopback } from '../support/ports.ts';

const ALICE = { login: 'alice', password: 'wonderland' };
const BOB = { login: 'bob', password: 'builder' };
const ROOT = { login: 'root', password: 'toor-toor' };
const SECRET = 'app-secret-'.padEnd(40, 'x');

interface Receiver {
  url: string;
  tokens: string[];
  /** Answer this status to the next N requests (to prove retries). */
  failNext: number;
  close(): Promise<void>;
}

async function backchannelReceiver(): Promise<Receiver> {
  const { server, url } = await listenLoopback();
  const r: Receiver = { url: `${url}/backchannel`, tokens: [], failNext: 0, close: () => closeServer(server) };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (r.failNext > 0) {
        r.failNext -= 1;
        res.statusCode = 503;
        res.end();
        return;
      }
      r.tokens.push(new URLSearchParams(body).get('logout_token') ?? '');
      res.statusCode = 200;
      res.end();
    });
  });
  return r;
}

describe.each(storeChoices())('Tessera as OpenID provider (%s)', (storeChoice) => {
  let world: SsoWorld;
  let receiverA: Receiver;
  let receiverB: Receiver;
  const redirectA = 'http://127.0.0.1:9/app-a/callback';
  const redirectB = 'http://127.0.0.1:9/app-b/callback';

  beforeAll(async () => {
    world = await startSsoWorld({ store: storeChoice });
    receiverA = await backchannelReceiver();
    receiverB = await backchannelReceiver();
    // app-a chose ES256 for its ID tokens; app-b has the default, RS256.
    for (const [id, redirect, receiver, secret, alg] of [
      ['app-a', redirectA, receiverA, SECRET, { idTokenSignedResponseAlg: 'ES256' }],
      ['app-b', redirectB, receiverB, null, {}],
    ] as const) {
      const r = await world.server.app.inject({
        method: 'PUT',
        url: `/api/v1/admin/apps/${id}-${world.tenantId}`,
        headers: admin,
        payload: { tenantId: world.tenantId, redirectUris: [redirect], orgSlug: world.orgSlug, backchannelLogoutUri: receiver.url, clientSecret: secret, ...alg },
      });
      expect(r.statusCode, r.body).toBe(200);
    }
  });
  afterAll(async () => {
    await receiverA?.close();
    await receiverB?.close();
    await world?.close();
  });

  const clientA = () => `app-a-${world.tenantId}`;
  const clientB = () => `app-b-${world.tenantId}`;

  async function rp(clientId: string, secret: string | null): Promise<oidc.Configuration> {
    return oidc.discovery(new URL(`${world.tesseraUrl}/oidc`), clientId, undefined, secret === null ? oidc.None() : oidc.ClientSecretBasic(secret), {
      execute: [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks],
    });
  }

  /** Runs an authorization request in `browser` up to the application's redirect URI; logs in at the provider when asked. */
  async function authorize(browser: MiniBrowser, config: oidc.Configuration, redirectUri: string, opts: { expectProvider: 'login' | 'silent' | 'none'; account?: { login: string; password: string } }) {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid email',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    const isApp = (u: URL) => u.href.startsWith(redirectUri);
    const visited: string[] = [];
    let at = await browser.follow(url.href, (u) => {
      visited.push(u.href);
      return isApp(u) || (opts.expectProvider === 'login' && u.origin === world.idp.issuer && u.pathname.startsWith('/interaction'));
    });
    if (!isApp(new URL(at.url))) {
      const callback = await loginAtProvider(browser, world, at.url, opts.account ?? ALICE);
      at = await browser.follow(callback, (u) => {
        visited.push(u.href);
        return isApp(u);
      });
    }
    expect(isApp(new URL(at.url)), `ended at ${at.url}: ${await at.response.text().catch(() => '')}`).toBe(true);
    const tokens = await oidc.authorizationCodeGrant(config, new URL(at.url), { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true });
    return { tokens, visited };
  }

  it('an openid-client relying party signs in through the discovery document; ID token ES256 (as registered) with sid; userinfo', async () => {
    const config = await rp(clientA(), SECRET);
    const m = config.serverMetadata();
    expect(m.issuer).toBe(`${world.tesseraUrl}/oidc`);
    expect(m.backchannel_logout_supported).toBe(true);
    expect(m.end_session_endpoint).toBe(`${world.tesseraUrl}/oidc/session/end`);
    const browser = new MiniBrowser();
    const { tokens, visited } = await authorize(browser, config, redirectA, { expectProvider: 'login' });
    expect(visited.some((u) => u.startsWith(world.idp.issuer))).toBe(true);
    const claims = tokens.claims()!;
    expect(claims.iss).toBe(`${world.tesseraUrl}/oidc`);
    expect(claims.aud).toBe(clientA());
    expect(typeof claims.sid).toBe('string');
    expect(decodeProtectedHeader(tokens.id_token!).alg).toBe('ES256');
    const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
    expect(info.email).toBe('alice@example.com');

    // The session tree: one idp session, one app session of app-a below it.
    const { deps } = world.server;
    const now = deps.clock.now();
    const sessions = (await deps.store.listSessions({ tenantId: world.tenantId, userId: claims.sub, now, limit: 100 })).items.filter((s) => s.status === 'active');
    const idp = sessions.filter((s) => s.kind === 'idp');
    const apps = sessions.filter((s) => s.kind === 'app');
    expect(idp).toHaveLength(1);
    expect(apps).toHaveLength(1);
    expect(apps[0]).toMatchObject({ parentHandle: idp[0]!.handle, clientId: clientA(), data: { oidcSid: claims.sid } });

    // An administrator ends the idp session: the app session ends with it, and app-a is told.
    const before = receiverA.tokens.length;
    const del = await world.server.app.inject({ method: 'DELETE', url: `/api/v1/admin/sessions/${idp[0]!.handle}`, headers: admin });
    expect(del.statusCode, del.body).toBeLessThan(300);
    await expect.poll(() => receiverA.tokens.length, { timeout: 5000 }).toBe(before + 1);
    expect(await verifyLogoutToken(receiverA.tokens[before]!, clientA())).toMatchObject({ sub: claims.sub, sid: claims.sid });
  });

  async function activeSessions(sub: string): Promise<Session[]> {
    const { deps } = world.server;
    const now = deps.clock.now();
    return (await deps.store.listSessions({ tenantId: world.tenantId, userId: sub, now, limit: 200 })).items.filter((x) => x.status === 'active' && x.idleExpiresAt! > now);
  }

  async function verifyLogoutToken(token: string, clientId: string) {
    const jwks = createRemoteJWKSet(new URL(`${world.tesseraUrl}/oidc/jwks`));
    const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: `${world.tesseraUrl}/oidc`, audience: clientId, typ: 'logout+jwt' });
    // Signed as the application's ID tokens are.
    expect(protectedHeader.alg).toBe(clientId === clientA() ? 'ES256' : 'RS256');
    expect(payload.events).toEqual({ 'http://schemas.openid.net/event/backchannel-logout': {} });
    expect(payload).not.toHaveProperty('nonce');
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(120);
    expect(typeof payload.jti).toBe('string');
    return payload;
  }

  it('session levels: a second app signs in from the idp session without the provider; an expired app session is re-created silently; app logout ends that app only; idp logout ends all and reaches both apps by back-channel', async () => {
    const browser = new MiniBrowser();
    const configA = await rp(clientA(), SECRET);
    const configB = await rp(clientB(), null);
    const [a0, b0] = [receiverA.tokens.length, receiverB.tokens.length];
    // Flow 1: no session anywhere: credentials at the external provider.
    const first = await authorize(browser, configA, redirectA, { expectProvider: 'login', account: BOB });
    expect(first.visited.some((u) => u.startsWith(world.idp.issuer))).toBe(true);
    const sub = first.tokens.claims()!.sub;
    const requestsBefore = world.idp.tokenRequests;

    // Flow 3: an idp session: app-b gets a session without leaving Tessera.
    const second = await authorize(browser, configB, redirectB, { expectProvider: 'none' });
    expect(second.visited.some((u) => u.startsWith(world.idp.issuer))).toBe(false);
    expect(world.idp.tokenRequests).toBe(requestsBefore);
    expect(second.tokens.claims()!.sub).toBe(sub);
    let sessions = await activeSessions(sub);
    const idp = sessions.filter((x) => x.kind === 'idp');
    expect(idp).toHaveLength(1);
    expect(sessions.filter((x) => x.kind === 'app' && x.parentHandle === idp[0]!.handle).map((x) => x.clientId).sort()).toEqual([clientA(), clientB()].sort());

    // The app session of app-a expires (15 min idle) while the idp session (1 h idle) is still
    // valid: the next sign-in re-creates it, silently.
    world.clock.advance(16 * 60_000);
    const again = await authorize(browser, configA, redirectA, { expectProvider: 'none' });
    expect(again.visited.some((u) => u.startsWith(world.idp.issuer))).toBe(false);
    sessions = await activeSessions(sub);
    expect(sessions.filter((x) => x.kind === 'app' && x.clientId === clientA())).toHaveLength(1);

    // App-only logout: app-b ends its own app session; app-a's and the idp session stay.
    const out = await fetch(`${world.tesseraUrl}/api/v1/oidc/app-logout`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ id_token_hint: second.tokens.id_token!, client_id: clientB() }),
    });
    expect(out.status, await out.text()).toBe(204);
    sessions = await activeSessions(sub);
    expect(sessions.filter((x) => x.kind === 'app').map((x) => x.clientId)).toEqual([clientA()]);
    expect(sessions.filter((x) => x.kind === 'idp')).toHaveLength(1);
    expect([receiverA.tokens.length, receiverB.tokens.length]).toEqual([a0, b0]);

    // app-b again (idp still valid: no provider), so that both apps have a session to lose.
    const b2 = await authorize(browser, configB, redirectB, { expectProvider: 'none' });

    // Idp-level logout (RP-initiated logout of app-a); app-a's receiver fails once: retried.
    receiverA.failNext = 1;
    const endUrl = oidc.buildEndSessionUrl(configA, { id_token_hint: again.tokens.id_token!, post_logout_redirect_uri: undefined as unknown as string });
    const page = await browser.get(endUrl.href.replace(/&?post_logout_redirect_uri=undefined/, ''));
    const html = await page.text();
    const form = /action="([^"]+)"[\s\S]*?name="xsrf" value="([^"]+)"/.exec(html);
    expect(form, html).not.toBeNull();
    const confirm = await browser.post(new URL(form![1]!, endUrl).href, { xsrf: form![2]!, logout: 'yes' });
    expect([302, 303]).toContain(confirm.status);
    expect(browser.cookies.has('__Host-idp')).toBe(false);
    expect(await activeSessions(sub)).toEqual([]);
    await expect.poll(() => [receiverA.tokens.length, receiverB.tokens.length], { timeout: 5000 }).toEqual([a0 + 1, b0 + 1]);
    const ta = await verifyLogoutToken(receiverA.tokens[a0]!, clientA());
    const tb = await verifyLogoutToken(receiverB.tokens[b0]!, clientB());
    expect(ta).toMatchObject({ sub, sid: again.tokens.claims()!.sid });
    expect(tb).toMatchObject({ sub, sid: b2.tokens.claims()!.sid });

    // One audit event per delivery, after the retry for app-a.
    await world.server.deps.monitor.flush();
    const audit = await world.server.app.inject({ method: 'GET', url: `/api/v1/admin/audit?tenantId=${world.tenantId}&type=sso.backchannel_logout_delivered`, headers: admin });
    expect(audit.statusCode, audit.body).toBe(200);
    const items = (audit.json() as { items: Array<{ details: { clientId: string; attempts: number } }> }).items;
    const bySession = items.map((e) => [e.details.clientId, e.details.attempts]);
    expect(bySession).toContainEqual([clientA(), 2]);
    expect(bySession).toContainEqual([clientB(), 1]);

    // Signed out at Tessera, still signed in at the external provider: flow 2, no credentials.
    const flow2 = await authorize(browser, configB, redirectB, { expectProvider: 'silent' });
    expect(flow2.visited.some((u) => u.startsWith(world.idp.issuer))).toBe(true);
    expect(flow2.visited.some((u) => u.includes('/interaction/'))).toBe(true);
  });

  it('a back-channel logout from the external provider ends the idp session it names, its app sessions, and tells the apps', async () => {
    const browser = new MiniBrowser();
    const configA = await rp(clientA(), SECRET);
    const { tokens } = await authorize(browser, configA, redirectA, { expectProvider: 'login', account: ROOT });
    const sub = tokens.claims()!.sub;
    expect((await activeSessions(sub)).length).toBeGreaterThanOrEqual(2);
    const before = receiverA.tokens.length;
    const bcl = (token: string) =>
      fetch(`${world.tesseraUrl}/api/v1/sso/oidc/backchannel-logout/${world.orgSlug}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ logout_token: token }),
      });
    // Refused: a nonce, no event, another audience.
    expect((await bcl(await world.idp.signLogoutToken({ sub: 'root', nonce: 'n' }))).status).toBe(400);
    expect((await bcl(await world.idp.signLogoutToken({ sub: 'root', events: {} }))).status).toBe(400);
    expect((await bcl(await world.idp.signLogoutToken({ sub: 'root', aud: 'someone-else' }))).status).toBe(400);
    expect(await activeSessions(sub)).not.toEqual([]);
    const ok = await bcl(await world.idp.signLogoutToken({ sub: 'root' }));
    expect(ok.status, await ok.text()).toBe(200);
    expect(await activeSessions(sub)).toEqual([]);
    await expect.poll(() => receiverA.tokens.length, { timeout: 5000 }).toBe(before + 1);
    expect(await verifyLogoutToken(receiverA.tokens[before]!, clientA())).toMatchObject({ sub, sid: tokens.claims()!.sid });
  });

  it('prompt=none: login_required without an idp session; a code from a valid one', async () => {
    const browser = new MiniBrowser();
    const config = await rp(clientB(), null);
    const silent = async () => {
      const verifier = oidc.randomPKCECodeVerifier();
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectB,
        scope: 'openid',
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state: oidc.randomState(),
        prompt: 'none',
      });
      const r = await browser.follow(url.href, (u) => u.href.startsWith(redirectB));
      return new URL(r.url).searchParams;
    };
    expect((await silent()).get('error')).toBe('login_required');
    await authorize(browser, config, redirectB, { expectProvider: 'login' });
    const ok = await silent();
    expect(ok.get('error')).toBeNull();
    expect(ok.get('code')).toBeTruthy();
  });

  it('a disabled user whose idp session is still valid gets nothing from /oidc: access_denied instead of a code, a code issued before refused at the token endpoint, an access token issued before at userinfo', async () => {
    const browser = new MiniBrowser();
    const config = await rp(clientA(), SECRET);
    const { tokens } = await authorize(browser, config, redirectA, { expectProvider: 'login', account: ROOT });
    const sub = tokens.claims()!.sub;
    /** An authorization request in `browser` up to the application's redirect URI: what it was given there. */
    const request = async (prompt?: 'none') => {
      const verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectA,
        scope: 'openid email',
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        ...(prompt ? { prompt } : {}),
      });
      const visited: string[] = [];
      const at = await browser.follow(url.href, (u) => {
        visited.push(u.href);
        return u.href.startsWith(redirectA);
      });
      return { at: new URL(at.url), verifier, state, visited };
    };
    // A code the application was given while the user was enabled, not exchanged yet.
    const pending = await request();
    expect(pending.at.searchParams.get('code')).toBeTruthy();
    const appSessions = async () => (await activeSessions(sub)).filter((x) => x.kind === 'app').length;
    const before = await appSessions();
    expect((await activeSessions(sub)).filter((x) => x.kind === 'idp')).toHaveLength(1);

    // Stored disabled, its sessions not ended: what PATCH disabled=true leaves when its end of the
    // sessions failed (a retried PATCH ends them).
    const { store } = world.server.deps;
    const user = (await store.getUser(world.tenantId, sub))!;
    await store.updateUser({ ...user, disabled: true });
    try {
      for (const prompt of [undefined, 'none'] as const) {
        const r = await request(prompt);
        expect(r.at.href.startsWith(redirectA), r.at.href).toBe(true);
        expect(r.at.searchParams.get('code'), `prompt=${prompt}`).toBeNull();
        expect(r.at.searchParams.get('error'), `prompt=${prompt}`).toBe('access_denied');
        expect(r.at.searchParams.get('state')).toBe(r.state);
        // Refused from the idp session: the browser was not sent to the external provider.
        expect(r.visited.some((u) => u.startsWith(world.idp.issuer))).toBe(false);
      }
      await expect(oidc.authorizationCodeGrant(config, pending.at, { pkceCodeVerifier: pending.verifier, expectedState: pending.state, idTokenExpected: true })).rejects.toMatchObject({ error: 'invalid_grant' });
      const info = await fetch(config.serverMetadata().userinfo_endpoint!, { headers: { authorization: `Bearer ${tokens.access_token}` } });
      expect(info.status).toBe(401);
      expect(info.headers.get('www-authenticate')).toContain('invalid_token');
      expect(await info.text()).not.toContain('root@example.com');
      // No app session was made for the disabled user.
      expect(await appSessions()).toBe(before);
    } finally {
      const { disabled: _, ...enabled } = (await store.getUser(world.tenantId, sub))!;
      await store.updateUser(enabled);
    }
    // Enabled again: the same idp session gives a code.
    expect((await request()).at.searchParams.get('code')).toBeTruthy();
  });

  it("a disabled user's idp session asked to authenticate again (prompt=login, max_age=0), or without oidc-provider's own session (prompt=none too), or disabled while the interaction waits: access_denied at the redirect URI, no trip to the external provider, the idp session not extended", async () => {
    const browser = new MiniBrowser();
    const config = await rp(clientA(), SECRET);
    const { tokens } = await authorize(browser, config, redirectA, { expectProvider: 'login', account: ROOT });
    const sub = tokens.claims()!.sub;
    // This browser's idp session (earlier tests may have left others of the same user).
    const [mine] = (await activeSessions(sub)).filter((x) => x.kind === 'app' && x.data.oidcSid === tokens.claims()!.sid);
    const idpSession = async () => {
      const idp = (await activeSessions(sub)).filter((x) => x.kind === 'idp' && x.handle === mine!.parentHandle);
      expect(idp).toHaveLength(1);
      return idp[0]!;
    };
    /** The same person's browser in another tab: its cookies, without oidc-provider's session cookie unless `oidcSession`. */
    const tab = (oidcSession: boolean) => {
      const b = new MiniBrowser();
      for (const [k, v] of browser.cookies) if (oidcSession || k !== 'tessera_oidc_session') b.cookies.set(k, v);
      expect(b.cookies.has('__Host-idp')).toBe(true);
      return b;
    };
    /** An authorization request in `b` until the redirect URI (or until `stopAt`): where it ended, and every URL on the way. */
    const request = async (b: MiniBrowser, extra: Record<string, string>, stopAt: (u: URL) => boolean = () => false) => {
      const state = oidc.randomState();
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectA,
        scope: 'openid email',
        code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
        code_challenge_method: 'S256',
        state,
        ...extra,
      });
      const visited: string[] = [];
      const at = await b.follow(url.href, (u) => {
        visited.push(u.href);
        return u.href.startsWith(redirectA) || stopAt(u);
      });
      return { at: new URL(at.url), state, visited };
    };
    const refused = (r: { at: URL; state: string; visited: string[] }, what: string) => {
      expect.soft(r.at.href.startsWith(redirectA), `${what}: ended at ${r.at.href}`).toBe(true);
      expect.soft(r.at.searchParams.get('error'), what).toBe('access_denied');
      expect.soft(r.at.searchParams.get('code'), what).toBeNull();
      expect.soft(r.at.searchParams.get('state'), what).toBe(r.state);
      expect.soft(r.visited.filter((u) => u.startsWith(world.idp.issuer)), what).toEqual([]);
    };
    // Interactions started while the user was enabled (the ones that would go to the external
    // provider, and the one answered from the idp session), left waiting at Tessera's
    // interaction page.
    const atInteraction = (u: URL) => u.pathname.startsWith('/oidc/interaction/');
    const waiting = [];
    for (const [what, b, extra] of [
      ['prompt=login, disabled while the interaction waits', tab(true), { prompt: 'login' }],
      ["no oidc-provider session, disabled while the interaction waits", tab(false), {}],
    ] as const) {
      const r = await request(b, extra, atInteraction);
      expect(atInteraction(r.at), `${what}: ${r.at.href}`).toBe(true);
      waiting.push({ what, b, r });
    }

    const { store } = world.server.deps;
    const user = (await store.getUser(world.tenantId, sub))!;
    await store.updateUser({ ...user, disabled: true });
    try {
      const idpBefore = await idpSession();
      for (const [what, b, extra] of [
        ['prompt=login', tab(true), { prompt: 'login' }],
        ['max_age=0', tab(true), { max_age: '0' }],
        ["without oidc-provider's session", tab(false), {}],
        ["prompt=none without oidc-provider's session", tab(false), { prompt: 'none' }],
      ] as const) {
        // Long enough after the last activity that a touch would slide the idle expiry.
        world.clock.advance(2 * 60_000);
        refused(await request(b, extra), what);
      }
      for (const w of waiting) {
        world.clock.advance(2 * 60_000);
        const visited: string[] = [];
        const at = await w.b.follow(w.r.at.href, (u) => {
          visited.push(u.href);
          return u.href.startsWith(redirectA);
        });
        refused({ at: new URL(at.url), state: w.r.state, visited }, w.what);
      }
      // Not extended by any of these.
      const idpAfter = await idpSession();
      expect.soft({ lastSeenAt: idpAfter.lastSeenAt, idleExpiresAt: idpAfter.idleExpiresAt }).toEqual({ lastSeenAt: idpBefore.lastSeenAt, idleExpiresAt: idpBefore.idleExpiresAt });
    } finally {
      const { disabled: _, ...enabled } = (await store.getUser(world.tenantId, sub))!;
      await store.updateUser(enabled);
    }
    // Enabled again: the same idp session gives a code, and is extended by it.
    const before = await idpSession();
    const ok = await request(tab(false), {});
    expect(ok.at.searchParams.get('code'), ok.at.href).toBeTruthy();
    expect(ok.visited.filter((u) => u.startsWith(world.idp.issuer))).toEqual([]);
    expect((await idpSession()).idleExpiresAt).toBeGreaterThan(before.idleExpiresAt!);
  });

  it('the Fastify plugin accepts only valid, fresh, unused logout tokens of Tessera for itself', async () => {
    const plug = await startPlatformApp(world, 'plug', { confidential: false });
    try {
      const issuer = `${world.tesseraUrl}/oidc`;
      const [key] = await loadOidcSigningKeys(world.server.deps.store, COOKIE_SECRET, Date.now());
      const post = (token: string) =>
        fetch(`${plug.url}/auth/backchannel-logout`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: token }) });
      await plug.sessions.set({ id: 's1', sub: 'u1', sid: 'sid-1', email: null, idToken: 'x', createdAt: Date.now(), lastSeenAt: Date.now() });
      await plug.sessions.set({ id: 's2', sub: 'u1', sid: 'sid-2', email: null, idToken: 'x', createdAt: Date.now(), lastSeenAt: Date.now() });
      const good = await logoutToken(issuer, key!, plug.clientId, 'u1', 'sid-1', Date.now());
      const [h, p, sig] = good.split('.') as [string, string, string];
      const tampered = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sid: 'sid-2' })).toString('base64url')}.${sig}`;
      expect((await post(tampered)).status).toBe(400);
      expect((await post(await logoutToken(issuer, key!, 'another-app', 'u1', 'sid-1', Date.now()))).status).toBe(400);
      expect((await post(await logoutToken('https://evil.example.com/oidc', key!, plug.clientId, 'u1', 'sid-1', Date.now()))).status).toBe(400);
      expect((await post(await logoutToken(issuer, key!, plug.clientId, 'u1', 'sid-1', Date.now() - 10 * 60_000))).status).toBe(400);
      expect(plug.sessions.sessions.size).toBe(2);
      expect((await post(good)).status).toBe(200);
      expect([...plug.sessions.sessions.keys()]).toEqual(['s2']);
      expect((await post(good)).status).toBe(400); // the same jti again
    } finally {
      await plug.close();
    }
  });

  it('registration: plain-HTTP URIs need the development setting; the organization must be of the tenant; a tenant admin acts on its own tenant', async () => {
    const put = (id: string, payload: Record<string, unknown>) => world.server.app.inject({ method: 'PUT', url: `/api/v1/admin/apps/${id}`, headers: admin, payload });
    const base = { tenantId: world.tenantId, redirectUris: ['https://app.example.com/cb'] };
    expect((await put('ok-app', base)).json()).toMatchObject({ clientId: 'ok-app', hasClientSecret: false, issuer: `${world.tesseraUrl}/oidc` });
    const r1 = await put('x1', { ...base, redirectUris: ['http://app.example.com/cb'] });
    expect(r1.statusCode).toBe(400);
    expect(r1.json()).toMatchObject({ code: 'insecure_url', field: 'redirectUris[0]' });
    const r2 = await put('x2', { ...base, backchannelLogoutUri: 'ftp://app.example.com/bc' });
    expect(r2.json()).toMatchObject({ code: 'insecure_url', field: 'backchannelLogoutUri' });
    const r3 = await put('x3', { ...base, orgSlug: 'no-such-org' });
    expect(r3.json()).toMatchObject({ code: 'invalid_app', field: 'orgSlug' });
    expect((await put('x4', { ...base, clientSecret: 'short' })).statusCode).toBe(400);
    expect((await put('x5', { ...base, unknown: 1 })).statusCode).toBe(400);
    expect((await put('bad id!', base)).statusCode).toBe(400);
    expect((await put('x6', { ...base, tenantId: 't-nope1234' })).statusCode).toBe(404);
    const secretApp = await put('x7', { ...base, clientSecret: SECRET });
    expect(secretApp.json()).toMatchObject({ hasClientSecret: true });
    expect(secretApp.body).not.toContain(SECRET);
    expect((await world.server.app.inject({ method: 'GET', url: '/api/v1/admin/apps/x7', headers: admin })).json()).toMatchObject({ hasClientSecret: true });
    expect((await world.server.app.inject({ method: 'GET', url: '/api/v1/admin/apps/x7' })).statusCode).toBe(401);

    // A tenant administrator registers applications of its own tenant only, and cannot take over another's.
    const other = uniqueTenant();
    await provision(world.server.app, other, 'plain@example.com', 'correct horse battery');
    const boss = await world.server.app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { tenantId: other, email: 'boss@example.com', password: 'correct horse battery', roles: ['admin'] } });
    expect(boss.statusCode).toBe(201);
    const login = await world.server.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': other }, payload: { email: 'boss@example.com', password: 'correct horse battery' } });
    const asBoss = { authorization: `Bearer ${(login.json() as { userSessionToken: string }).userSessionToken}`, 'x-tenant-id': other };
    const own = await world.server.app.inject({ method: 'PUT', url: '/api/v1/admin/apps/boss-app', headers: asBoss, payload: { tenantId: other, redirectUris: ['https://boss.example.com/cb'] } });
    expect(own.statusCode, own.body).toBe(200);
    const foreign = await world.server.app.inject({ method: 'PUT', url: '/api/v1/admin/apps/boss-app-2', headers: asBoss, payload: base });
    expect(foreign.statusCode).toBe(403);
    const takeover = await world.server.app.inject({ method: 'PUT', url: '/api/v1/admin/apps/ok-app', headers: asBoss, payload: { tenantId: other, redirectUris: ['https://boss.example.com/cb'] } });
    expect(takeover.statusCode).toBe(403);
    expect((await world.server.app.inject({ method: 'GET', url: '/api/v1/admin/apps/ok-app', headers: asBoss })).statusCode).toBe(403);
  });
});

describe('Tessera as OpenID provider without TESSERA_DEV_ALLOW_HTTP_LOOPBACK', () => {
  it('refuses plain-HTTP loopback URIs of an application, and does not serve /oidc on a plain-HTTP public URL', async () => {
    const secure = await startTestServer();
    try {
      const tenantId = uniqueTenant();
      await provision(secure.app, tenantId, 'a@example.com', 'correct horse battery');
      const r = await secure.app.inject({ method: 'PUT', url: '/api/v1/admin/apps/loop', headers: admin, payload: { tenantId, redirectUris: ['http://127.0.0.1:8080/cb'] } });
      expect(r.statusCode).toBe(400);
      expect(r.json()).toMatchObject({ code: 'insecure_url', field: 'redirectUris[0]' });
      expect((r.json() as { detail: string }).detail).toContain('TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1');
      const discovery = await secure.app.inject({ method: 'GET', url: '/oidc/.well-known/openid-configuration' });
      expect(discovery.statusCode).toBe(200);
      expect(discovery.json()).toMatchObject({ issuer: 'https://tessera.test/oidc' });
    } finally {
      await secure.close();
    }
    const plain = await startTestServer({ env: { TESSERA_PUBLIC_URL: 'http://127.0.0.1:8080' } });
    try {
      const r = await plain.app.inject({ method: 'GET', url: '/oidc/.well-known/openid-configuration' });
      expect(r.statusCode).toBe(404);
      expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(r.json()).toMatchObject({ code: 'insecure_issuer' });
      expect((r.json() as { detail: string }).detail).toContain('TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1');
    } finally {
      await plain.close();
    }
  });
});
