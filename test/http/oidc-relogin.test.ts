// Signing in again through Tessera's OpenID provider (/oidc) while the browser still holds
// oidc-provider's own session cookie, after each of the five ways the sign-in must be asked
// again: an administrator ends the idp session, the idp session idles out, the external provider
// sends a back-channel logout, the application sends prompt=login, the application sends
// max_age=0. Each ends signed in (a code, tokens, an app session under a valid idp session),
// never a 5xx. An openid-client relying party, over HTTP, on SQLite and Redis.

import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lifetimeOf } from '../../src/domain/tenant.ts';
import type { Session } from '../../src/domain/session.ts';
import { admin } from '../support/harness.ts';
import { loginAtProvider, MiniBrowser, startSsoWorld, type SsoWorld } from '../support/sso-world.ts';
import { storeChoices } from '../support/store-choices.ts';

const SECRET = 'relogin-secret-'.padEnd(40, 'x');
const REDIRECT = 'http://127.0.0.1:9/relogin/callback';
const OIDC_COOKIE = 'tessera_oidc_session';

describe.each(storeChoices())('re-login through /oidc with a stale oidc-provider session (%s)', (storeChoice) => {
  let world: SsoWorld;
  const clientId = () => `relogin-${world.tenantId}`;

  beforeAll(async () => {
    world = await startSsoWorld({ store: storeChoice });
    const r = await world.server.app.inject({
      method: 'PUT',
      url: `/api/v1/admin/apps/${clientId()}`,
      headers: admin,
      payload: { tenantId: world.tenantId, redirectUris: [REDIRECT], orgSlug: world.orgSlug, clientSecret: SECRET },
    });
    expect(r.statusCode, r.body).toBe(200);
  });
  afterAll(async () => {
    await world?.close();
  });

  async function rp(): Promise<oidc.Configuration> {
    return oidc.discovery(new URL(`${world.tesseraUrl}/oidc`), clientId(), undefined, oidc.ClientSecretBasic(SECRET), { execute: [oidc.allowInsecureRequests] });
  }

  /**
   * One sign-in: every answer on the way is recorded; a login form at the external provider is
   * filled in when one is shown. Returns the tokens and whether the provider asked for credentials.
   */
  async function signIn(browser: MiniBrowser, config: oidc.Configuration, account: { login: string; password: string }, extra: Record<string, string> = {}) {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid email',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...extra,
    });
    const statuses: number[] = [];
    const isApp = (u: URL) => u.href.startsWith(REDIRECT);
    const atProviderLogin = (u: URL) => u.origin === world.idp.issuer && u.pathname.startsWith('/interaction');
    let askedCredentials = false;
    let at = await browser.follow(url.href, (u) => isApp(u) || atProviderLogin(u));
    statuses.push(at.response.status);
    if (!isApp(new URL(at.url)) && atProviderLogin(new URL(at.url))) {
      askedCredentials = true;
      const callback = await loginAtProvider(browser, world, at.url, account);
      at = await browser.follow(callback, isApp);
      statuses.push(at.response.status);
    }
    const body = isApp(new URL(at.url)) ? '' : await at.response.text();
    expect(statuses.every((s) => s < 500), `answers ${statuses.join(',')} at ${at.url}: ${body}`).toBe(true);
    expect(isApp(new URL(at.url)), `ended at ${at.url} (${at.response.status}): ${body}`).toBe(true);
    expect(new URL(at.url).searchParams.get('error'), at.url).toBeNull();
    const tokens = await oidc.authorizationCodeGrant(config, new URL(at.url), {
      pkceCodeVerifier: verifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
      ...(extra.max_age !== undefined ? { maxAge: Number(extra.max_age) } : {}),
    });
    return { tokens, askedCredentials };
  }

  async function active(sub: string): Promise<Session[]> {
    const { deps } = world.server;
    const now = deps.clock.now();
    return (await deps.store.listSessions({ tenantId: world.tenantId, userId: sub, now, limit: 200 })).items.filter((s) => s.status === 'active' && s.idleExpiresAt! > now);
  }

  /** The newest valid app session of this application and the valid idp session above it. */
  async function signedIn(sub: string): Promise<{ idp: Session; app: Session }> {
    const sessions = await active(sub);
    const apps = sessions.filter((s) => s.kind === 'app' && s.clientId === clientId()).sort((a, b) => b.createdAt - a.createdAt);
    const idp = sessions.find((s) => s.kind === 'idp' && s.handle === apps[0]?.parentHandle);
    expect(idp, JSON.stringify(sessions.map((s) => [s.kind, s.clientId, s.data]))).toBeDefined();
    return { idp: idp!, app: apps[0]! };
  }

  async function firstSignIn(account: { login: string; password: string }) {
    const browser = new MiniBrowser();
    const config = await rp();
    const first = await signIn(browser, config, account);
    const sub = first.tokens.claims()!.sub;
    expect(browser.cookies.has(OIDC_COOKIE)).toBe(true);
    const { idp } = await signedIn(sub);
    return { browser, config, sub, idp };
  }

  /** The idp session `ended` is gone; a new one, with an app session of this application, took its place. */
  async function expectSignedInAgain(sub: string, ended: Session) {
    const now = await signedIn(sub);
    expect(now.idp.handle).not.toBe(ended.handle);
    return now;
  }

  it('an administrator ends the idp session: signing in again works', async () => {
    const account = { login: 'alice', password: 'wonderland' };
    const { browser, config, sub, idp } = await firstSignIn(account);
    const del = await world.server.app.inject({ method: 'DELETE', url: `/api/v1/admin/sessions/${idp.handle}`, headers: admin });
    expect(del.statusCode, del.body).toBeLessThan(300);
    expect((await active(sub)).filter((s) => s.handle === idp.handle || s.parentHandle === idp.handle)).toEqual([]);
    expect(browser.cookies.has(OIDC_COOKIE)).toBe(true);
    await signIn(browser, config, account);
    await expectSignedInAgain(sub, idp);
  });

  it('the idp session idles out: signing in again works', async () => {
    const account = { login: 'bob', password: 'builder' };
    const { browser, config, sub, idp } = await firstSignIn(account);
    const tenant = await world.server.deps.store.getTenant(world.tenantId);
    const idle = lifetimeOf(tenant!, 'idp').idle;
    expect(idle).not.toBeNull();
    world.clock.advance(idle! * 1000 + 60_000);
    expect((await active(sub)).filter((s) => s.handle === idp.handle)).toEqual([]);
    await signIn(browser, config, account);
    await expectSignedInAgain(sub, idp);
  });

  it("the external provider's back-channel logout ends the idp session: signing in again works", async () => {
    const account = { login: 'root', password: 'toor-toor' };
    const { browser, config, sub, idp } = await firstSignIn(account);
    const token = await world.idp.signLogoutToken({ sub: account.login });
    const r = await fetch(`${world.tesseraUrl}/api/v1/sso/oidc/backchannel-logout/${world.orgSlug}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: token }),
    });
    expect(r.status, await r.text()).toBe(200);
    expect((await active(sub)).filter((s) => s.handle === idp.handle)).toEqual([]);
    await signIn(browser, config, account);
    await expectSignedInAgain(sub, idp);
  });

  it('prompt=login: the person authenticates again at the external provider, with a fresh auth_time', async () => {
    const account = { login: 'alice', password: 'wonderland' };
    const { browser, config, sub, idp } = await firstSignIn(account);
    // Without prompt: the idp session signs in silently.
    const silent = await signIn(browser, config, account);
    expect(silent.askedCredentials).toBe(false);
    expect((await signedIn(sub)).idp.handle).toBe(idp.handle);
    world.clock.advance(5 * 60_000);
    const again = await signIn(browser, config, account, { prompt: 'login' });
    expect(again.askedCredentials).toBe(true);
    const claims = again.tokens.claims()!;
    expect(claims.sub).toBe(sub);
    const fresh = await expectSignedInAgain(sub, idp);
    expect(claims.auth_time).toBe(Math.floor(fresh.idp.createdAt / 1000));
    expect(claims.auth_time).toBeGreaterThan(Math.floor(idp.createdAt / 1000));
  });

  it('max_age=0: the person authenticates again at the external provider; auth_time satisfies max_age', async () => {
    const account = { login: 'bob', password: 'builder' };
    const { browser, config, sub, idp } = await firstSignIn(account);
    world.clock.advance(5 * 60_000);
    const again = await signIn(browser, config, account, { max_age: '0' });
    expect(again.askedCredentials).toBe(true);
    const claims = again.tokens.claims()!;
    expect(claims.sub).toBe(sub);
    const fresh = await expectSignedInAgain(sub, idp);
    expect(claims.auth_time).toBe(Math.floor(fresh.idp.createdAt / 1000));
  });
});
