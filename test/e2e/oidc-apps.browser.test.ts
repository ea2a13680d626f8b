// The four flows of docs/sessions.md in Debian's Chromium (playwright-core): two example
// applications using the Tessera plugin (test/support/platform-app.ts), Tessera as their OpenID
// provider, and an external `oidc-provider` (test/support/oidc-idp.ts) as the organization's
// provider.
//
//   1. no session anywhere              credentials at the external provider
//   3. an idp session                   the second application signs in without leaving Tessera
//   4. an active application session    nothing happens (no request to Tessera)
//   idp-level logout                    both applications' sessions end by back-channel logout
//   2. only the external session        through the external provider, no credentials
//
// The credentials form must appear in flow 1 only. Skips without /usr/bin/chromium unless
// TESSERA_REQUIRE_BROWSER=1.

import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, pageText, skipWithoutBrowser } from '../support/chromium.ts';
import { startPlatformApp, type PlatformApp } from '../support/platform-app.ts';
import { startSsoWorld, type SsoWorld } from '../support/sso-world.ts';
import { storeChoices } from '../support/store-choices.ts';

const skip = skipWithoutBrowser();
const ALICE = { login: 'alice', password: 'wonderland' };

describe.skipIf(skip).each(storeChoices())('platform applications through Tessera in Chromium (%s)', (storeChoice) => {
  let world: SsoWorld;
  let browser: Browser;
  let appA: PlatformApp;
  let appB: PlatformApp;

  beforeAll(async () => {
    world = await startSsoWorld({ store: storeChoice });
    appA = await startPlatformApp(world, 'reports', { confidential: true });
    appB = await startPlatformApp(world, 'billing', { confidential: false });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await appA?.close();
    await appB?.close();
    await world?.close();
  });

  interface Visit {
    credentialsAsked: boolean;
    sawProvider: boolean;
    sawTessera: boolean;
    sub: string;
  }

  /** Opens `url` and does what the external provider asks until the application shows who is signed in. */
  async function visit(page: Page, url: string): Promise<Visit> {
    const requests: string[] = [];
    const onRequest = (r: { url(): string }) => requests.push(r.url());
    page.on('request', onRequest);
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
        throw new Error(`no signed-in page at ${page.url()}: ${await pageText(page)}`);
      });
      return {
        credentialsAsked,
        sawProvider: requests.some((u) => u.startsWith(world.idp.issuer)),
        sawTessera: requests.some((u) => u.startsWith(world.tesseraUrl)),
        sub: (await page.getAttribute('#who', 'data-sub')) ?? '',
      };
    } finally {
      page.off('request', onRequest);
    }
  }

  async function tesseraSessions(sub: string) {
    const { deps } = world.server;
    const now = deps.clock.now();
    return (await deps.store.listSessions({ tenantId: world.tenantId, userId: sub, now, limit: 100 })).items.filter((s) => s.status === 'active' && now < (s.idleExpiresAt ?? s.absoluteExpiresAt));
  }

  it('flows 1, 3, 4; app-only logout; idp-level logout reaching both applications by back-channel; flow 2', async () => {
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();

      // Flow 1: no session anywhere: the credentials form of the external provider.
      const f1 = await visit(page, `${appA.url}/`);
      expect(f1).toMatchObject({ credentialsAsked: true, sawProvider: true, sawTessera: true });
      expect(await page.textContent('#who')).toContain('reports: signed in as alice@example.com');
      const sub = f1.sub;
      expect(appA.sessions.sessions.size).toBe(1);
      const idpCookie = (await ctx.cookies(world.tesseraUrl)).find((c) => c.name === '__Host-idp');
      expect(idpCookie).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Lax' });

      // Flow 3: an idp session: the second application signs in without leaving Tessera.
      const f3 = await visit(page, `${appB.url}/`);
      expect(f3).toMatchObject({ credentialsAsked: false, sawProvider: false, sawTessera: true, sub });
      let sessions = await tesseraSessions(sub);
      const idp = sessions.filter((s) => s.kind === 'idp');
      expect(idp).toHaveLength(1);
      expect(sessions.filter((s) => s.kind === 'app' && s.parentHandle === idp[0]!.handle).map((s) => s.clientId).sort()).toEqual([appA.clientId, appB.clientId].sort());

      // Flow 4: an active application session: nothing happens.
      const f4 = await visit(page, `${appA.url}/`);
      expect(f4).toMatchObject({ credentialsAsked: false, sawProvider: false, sawTessera: false, sub });

      // App-only logout at billing: its session ends; reports and the idp session stay.
      await page.goto(`${appB.url}/`);
      await page.click('#logout');
      await page.waitForSelector('#signed-out-of-app');
      expect(appB.sessions.sessions.size).toBe(0);
      sessions = await tesseraSessions(sub);
      expect(sessions.filter((s) => s.kind === 'app').map((s) => s.clientId)).toEqual([appA.clientId]);
      expect(await visit(page, `${appA.url}/`)).toMatchObject({ sawTessera: false });
      // billing again: back through Tessera, still no provider (the idp session decides).
      expect(await visit(page, `${appB.url}/`)).toMatchObject({ credentialsAsked: false, sawProvider: false, sawTessera: true });

      // Idp-level logout from reports: every application session ends; both hear it by back-channel.
      await page.goto(`${appA.url}/`);
      await page.click('#everywhere');
      await page.waitForSelector('#signed-out', { timeout: 10_000 });
      await expect.poll(() => appA.sessions.sessions.size + appB.sessions.sessions.size, { timeout: 5000 }).toBe(0);
      expect(await tesseraSessions(sub)).toEqual([]);
      expect((await ctx.cookies(world.tesseraUrl)).some((c) => c.name === '__Host-idp')).toBe(false);

      // Flow 2: only the external provider's session is left: through it, without credentials.
      const f2 = await visit(page, `${appB.url}/`);
      expect(f2).toMatchObject({ credentialsAsked: false, sawProvider: true, sawTessera: true, sub });
      expect(appB.sessions.sessions.size).toBe(1);
    } finally {
      await ctx.close();
    }
  });
});
