// express-openid-connect (Auth0's EOC, test/support/eoc-app.ts) against Tessera's OpenID provider
// in Debian's Chromium, with EOC's defaults apart from the settings every deployment sets: sign-in
// with the email claim, RP-initiated logout, back-channel logout, and signing in again after each
// of the five ways a sign-in must be asked again (an administrator ends the idp session, the idp
// session idles out, the external provider's back-channel logout, prompt=login, max_age=0). Each
// ends signed in; no answer on the way is a 5xx. Skips without /usr/bin/chromium unless
// TESSERA_REQUIRE_BROWSER=1.

import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lifetimeOf } from '../../src/domain/tenant.ts';
import { launchChromium, pageText, skipWithoutBrowser } from '../support/chromium.ts';
import { startEocApp, type EocApp } from '../support/eoc-app.ts';
import { admin } from '../support/harness.ts';
import { startSsoWorld, type SsoWorld } from '../support/sso-world.ts';

const skip = skipWithoutBrowser();
const ALICE = { login: 'alice', password: 'wonderland' };

describe.skipIf(skip)('express-openid-connect against Tessera in Chromium', () => {
  let world: SsoWorld;
  let browser: Browser;
  let eoc: EocApp;

  beforeAll(async () => {
    world = await startSsoWorld({ store: 'sqlite' });
    eoc = await startEocApp(world, 'eoc');
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await eoc?.close();
    await world?.close();
  });

  interface Visit {
    credentialsAsked: boolean;
    sawTessera: boolean;
    requests: string[];
    user: Record<string, unknown>;
  }

  /** Opens `url`, answers the external provider's forms, and waits for EOC's signed-in page. No 5xx anywhere. */
  async function visit(page: Page, url: string): Promise<Visit> {
    const requests: string[] = [];
    const failures: string[] = [];
    const onRequest = (r: { url(): string }) => requests.push(r.url());
    const onResponse = (r: { url(): string; status(): number }) => {
      if (r.status() >= 500) failures.push(`${r.status()} ${r.url()}`);
    };
    page.on('request', onRequest);
    page.on('response', onResponse);
    let credentialsAsked = false;
    try {
      await page.goto(url);
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
      return {
        credentialsAsked,
        sawTessera: requests.some((u) => u.startsWith(world.tesseraUrl)),
        requests,
        user: JSON.parse((await page.textContent('#user')) ?? '{}') as Record<string, unknown>,
      };
    } finally {
      page.off('request', onRequest);
      page.off('response', onResponse);
    }
  }

  async function active(sub: string) {
    const { deps } = world.server;
    const now = deps.clock.now();
    return (await deps.store.listSessions({ tenantId: world.tenantId, userId: sub, now, limit: 200 })).items.filter((s) => s.status === 'active' && now < (s.idleExpiresAt ?? s.absoluteExpiresAt));
  }

  async function currentIdp(sub: string) {
    const idp = (await active(sub)).filter((s) => s.kind === 'idp');
    expect(idp).toHaveLength(1);
    return idp[0]!;
  }

  /** EOC was told by back-channel logout (its store holds the logout of this sid). */
  async function expectBackchannelLogout(sid: string) {
    await expect.poll(() => [...eoc.loggedOut.keys()].some((k) => k.endsWith(`|${sid}`)), { timeout: 5000 }).toBe(true);
  }

  let ctx: BrowserContext;
  let page: Page;
  let sub: string;

  it('signs in (code flow, RS256 ID token) with the email claim', async () => {
    ctx = await browser.newContext();
    page = await ctx.newPage();
    const v = await visit(page, `${eoc.url}/`);
    expect(v.credentialsAsked).toBe(true);
    expect(v.user).toMatchObject({ email: 'alice@example.com', email_verified: true });
    sub = String(v.user.sub);
    expect((await active(sub)).filter((s) => s.kind === 'app').map((s) => s.clientId)).toEqual([eoc.clientId]);
  });

  it('an administrator ends the idp session: EOC hears it by back-channel logout, and signing in again works', async () => {
    const idp = await currentIdp(sub);
    const del = await world.server.app.inject({ method: 'DELETE', url: `/api/v1/admin/sessions/${idp.handle}`, headers: admin });
    expect(del.statusCode, del.body).toBeLessThan(300);
    const sid = String((await page.textContent('#user')) ?? '').match(/"sid":"([^"]+)"/)?.[1];
    expect(sid).toBeTruthy();
    await expectBackchannelLogout(sid!);
    const v = await visit(page, `${eoc.url}/`);
    expect(v.sawTessera).toBe(true);
    expect((await currentIdp(sub)).handle).not.toBe(idp.handle);
  });

  it('the idp session idles out: signing in again works', async () => {
    const idp = await currentIdp(sub);
    const tenant = await world.server.deps.store.getTenant(world.tenantId);
    world.clock.advance(lifetimeOf(tenant!, 'idp').idle! * 1000 + 60_000);
    const v = await visit(page, `${eoc.url}/login`);
    expect(v.sawTessera).toBe(true);
    expect((await currentIdp(sub)).handle).not.toBe(idp.handle);
  });

  it("the external provider's back-channel logout: EOC is told, and signing in again works", async () => {
    const idp = await currentIdp(sub);
    const sid = String((await page.textContent('#user')) ?? '').match(/"sid":"([^"]+)"/)?.[1];
    const r = await fetch(`${world.tesseraUrl}/api/v1/sso/oidc/backchannel-logout/${world.orgSlug}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: await world.idp.signLogoutToken({ sub: ALICE.login }) }),
    });
    expect(r.status, await r.text()).toBe(200);
    await expectBackchannelLogout(sid!);
    await visit(page, `${eoc.url}/`);
    expect((await currentIdp(sub)).handle).not.toBe(idp.handle);
  });

  it('prompt=login: the credentials are asked again', async () => {
    const idp = await currentIdp(sub);
    world.clock.advance(60_000);
    const v = await visit(page, `${eoc.url}/login-again`);
    expect(v.credentialsAsked).toBe(true);
    expect((await active(sub)).some((s) => s.kind === 'idp' && s.handle !== idp.handle)).toBe(true);
  });

  it('max_age=0: the credentials are asked again, and EOC accepts the auth_time', async () => {
    world.clock.advance(60_000);
    const v = await visit(page, `${eoc.url}/login-max-age`);
    expect(v.credentialsAsked).toBe(true);
  });

  it('RP-initiated logout (EOC /logout with idpLogout) ends the idp session at Tessera; EOC is back at its start page, which signs in again', async () => {
    // The browser's idp session: the newest (earlier re-authentications left older ones valid).
    const current = (await active(sub)).filter((s) => s.kind === 'idp').sort((a, b) => b.createdAt - a.createdAt)[0]!;
    const app = (await active(sub)).find((s) => s.kind === 'app' && s.parentHandle === current.handle);
    expect(app?.clientId).toBe(eoc.clientId);
    const v = await visit(page, `${eoc.url}/logout`);
    expect(v.requests.some((u) => u.startsWith(`${world.tesseraUrl}/oidc/session/end`))).toBe(true);
    const after = (await active(sub)).map((s) => s.handle);
    expect(after).not.toContain(current.handle);
    expect(after).not.toContain(app!.handle);
    await ctx.close();
  });
});
