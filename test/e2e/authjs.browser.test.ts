// Auth.js (@auth/express, test/support/authjs-app.ts) against Tessera's OpenID provider in
// Debian's Chromium, with Auth.js's defaults apart from the settings every deployment sets:
// sign-in from Auth.js's own sign-in page with the email in `session.user`, and signing in again
// after each of the five ways a sign-in must be asked again (an administrator ends the idp
// session, the idp session idles out, the external provider's back-channel logout, prompt=login,
// max_age=0 — the last two as authorization parameters of Auth.js's sign-in request, as its
// client's signIn('tessera', {}, { prompt: 'login' }) sends them). Each ends signed in; no answer
// on the way is a 5xx. (Auth.js has neither RP-initiated nor back-channel logout.) Skips without
// /usr/bin/chromium unless TESSERA_REQUIRE_BROWSER=1.

import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lifetimeOf } from '../../src/domain/tenant.ts';
import { startAuthJsApp, type AuthJsApp } from '../support/authjs-app.ts';
import { launchChromium, pageText, skipWithoutBrowser } from '../support/chromium.ts';
import { admin } from '../support/harness.ts';
import { startSsoWorld, type SsoWorld } from '../support/sso-world.ts';

const skip = skipWithoutBrowser();
const ALICE = { login: 'alice', password: 'wonderland' };

describe.skipIf(skip)('Auth.js against Tessera in Chromium', () => {
  let world: SsoWorld;
  let browser: Browser;
  let authjs: AuthJsApp;
  let ctx: BrowserContext;
  let page: Page;
  let sub: string;

  beforeAll(async () => {
    world = await startSsoWorld({ store: 'sqlite' });
    authjs = await startAuthJsApp(world, 'authjs');
    browser = await launchChromium();
    ctx = await browser.newContext();
    page = await ctx.newPage();
  });
  afterAll(async () => {
    await ctx?.close();
    await browser?.close();
    await authjs?.close();
    await world?.close();
  });

  /**
   * Signs in: from Auth.js's sign-in page (its "Sign in with Tessera" button), or with extra
   * authorization parameters by posting Auth.js's sign-in form as its client library does.
   * Answers the external provider's forms; waits for the signed-in page. No 5xx anywhere.
   */
  async function signIn(params?: Record<string, string>): Promise<{ credentialsAsked: boolean; user: Record<string, unknown> }> {
    const failures: string[] = [];
    const onResponse = (r: { url(): string; status(): number }) => {
      if (r.status() >= 500) failures.push(`${r.status()} ${r.url()}`);
    };
    page.on('response', onResponse);
    let credentialsAsked = false;
    try {
      if (params === undefined) {
        await page.goto(`${authjs.url}/auth/signin`);
        await page.click('button:has-text("Sign in with Tessera")');
      } else {
        await page.goto(`${authjs.url}/`);
        // What Auth.js's client signIn('tessera', {}, params) does: its sign-in form, posted with
        // the CSRF token and the extra authorization parameters in the query.
        const csrf = (await (await page.request.get(`${authjs.url}/auth/csrf`)).json()) as { csrfToken: string };
        await page.setContent(
          `<form method="post" action="${authjs.url}/auth/signin/tessera?${new URLSearchParams(params).toString()}"><input type="hidden" name="csrfToken" value="${csrf.csrfToken}"><input type="hidden" name="callbackUrl" value="${authjs.url}/"><button id="go">Sign in</button></form>`,
        );
        await page.click('#go');
      }
      await page.waitForURL((u) => !u.href.startsWith(`${authjs.url}/auth/signin`), { waitUntil: 'load' });
      for (let step = 0; step < 5 && page.url().startsWith(world.idp.issuer); step++) {
        const before = page.url();
        if ((await page.locator('input[name=password]').count()) > 0) {
          credentialsAsked = true;
          await page.fill('input[name=login]', ALICE.login);
          await page.fill('input[name=password]', ALICE.password);
          await page.click('button[value=login]');
        } else if ((await page.locator('button[value=allow]').count()) > 0) {
          await page.click('button[value=allow]');
        } else {
          throw new Error(`nothing to do at ${page.url()}: ${await pageText(page)}`);
        }
        await page.waitForURL((u) => u.href !== before, { waitUntil: 'load' });
      }
      await page.waitForSelector('#who', { timeout: 10_000 }).catch(async () => {
        throw new Error(`no signed-in page at ${page.url()}: ${await pageText(page)} (5xx: ${failures.join(', ')})`);
      });
      expect(failures).toEqual([]);
      return { credentialsAsked, user: JSON.parse((await page.textContent('#user')) ?? '{}') as Record<string, unknown> };
    } finally {
      page.off('response', onResponse);
    }
  }

  async function idpSessions() {
    const { deps } = world.server;
    const now = deps.clock.now();
    return (await deps.store.listSessions({ tenantId: world.tenantId, userId: sub, kind: 'idp', now, limit: 200 })).items.filter((s) => s.status === 'active' && now < (s.idleExpiresAt ?? s.absoluteExpiresAt));
  }

  async function newestIdp() {
    const all = await idpSessions();
    expect(all.length).toBeGreaterThanOrEqual(1);
    return all.sort((a, b) => b.createdAt - a.createdAt)[0]!;
  }

  it("signs in from Auth.js's sign-in page; session.user carries the email", async () => {
    const r = await signIn();
    expect(r.credentialsAsked).toBe(true);
    expect(r.user).toMatchObject({ email: 'alice@example.com' });
    const users = await world.server.deps.store.listSessions({ tenantId: world.tenantId, kind: 'app', now: world.server.deps.clock.now(), limit: 50 });
    const app = users.items.find((s) => s.clientId === authjs.clientId);
    expect(app).toBeDefined();
    sub = app!.userId!;
  });

  it('an administrator ends the idp session: signing in again works', async () => {
    const idp = await newestIdp();
    const del = await world.server.app.inject({ method: 'DELETE', url: `/api/v1/admin/sessions/${idp.handle}`, headers: admin });
    expect(del.statusCode, del.body).toBeLessThan(300);
    expect((await signIn()).user).toMatchObject({ email: 'alice@example.com' });
    expect((await newestIdp()).handle).not.toBe(idp.handle);
  });

  it('the idp session idles out: signing in again works', async () => {
    const idp = await newestIdp();
    const tenant = await world.server.deps.store.getTenant(world.tenantId);
    world.clock.advance(lifetimeOf(tenant!, 'idp').idle! * 1000 + 60_000);
    await signIn();
    expect((await newestIdp()).handle).not.toBe(idp.handle);
  });

  it("the external provider's back-channel logout: signing in again works", async () => {
    const idp = await newestIdp();
    const r = await fetch(`${world.tesseraUrl}/api/v1/sso/oidc/backchannel-logout/${world.orgSlug}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: await world.idp.signLogoutToken({ sub: ALICE.login }) }),
    });
    expect(r.status, await r.text()).toBe(200);
    expect((await idpSessions()).map((s) => s.handle)).not.toContain(idp.handle);
    await signIn();
    expect((await newestIdp()).handle).not.toBe(idp.handle);
  });

  it('prompt=login: the credentials are asked again', async () => {
    const idp = await newestIdp();
    world.clock.advance(60_000);
    expect((await signIn({ prompt: 'login' })).credentialsAsked).toBe(true);
    expect((await newestIdp()).handle).not.toBe(idp.handle);
  });

  it('max_age=0: the credentials are asked again', async () => {
    const idp = await newestIdp();
    world.clock.advance(60_000);
    expect((await signIn({ max_age: '0' })).credentialsAsked).toBe(true);
    expect((await newestIdp()).handle).not.toBe(idp.handle);
  });
});
