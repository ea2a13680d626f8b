// The admin console at /admin in a real browser (Debian's Chromium through playwright-core),
// against Tessera as a real process: sign in as a platform and as a tenant administrator, find a
// user's session by email and revoke it, disable a user, filter the audit log and export it,
// watch an event arrive live, edit a tenant's lifetime (and see the server's message for a bad
// one). Every screen is photographed at 1280×800 and 390×844 into .tessera-test/screenshots
// (git-ignored). The whole story runs on SQLite; on Redis (own key prefix) the core of it: sign
// in, find a session by email, revoke it, the user's next call is 401.
//
// Without /usr/bin/chromium (or TESSERA_CHROMIUM) the test is skipped — unless
// TESSERA_REQUIRE_BROWSER=1 (CI), then it fails. It needs the built console (npm install).

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, skipWithoutBrowser } from '../support/chromium.ts';
import { redisTestUrl } from '../support/harness.ts';
import { purgePrefix, testPrefix } from '../support/redis.ts';
import { redisReachable } from '../support/store-choices.ts';
import { PROJECT_ROOT, startTessera, type TesseraProcess } from '../support/tessera-process.ts';

const skip = skipWithoutBrowser();
const SHOTS = join(PROJECT_ROOT, '.tessera-test', 'screenshots');
const ADMIN_TOKEN = 'console-test-admin-' + 'a'.repeat(32);
const COOKIE_SECRET = 'console-test-cookie-' + 'c'.repeat(32);
const PASSWORD = 'correct horse battery';
const WIDE = { width: 1280, height: 800 };
const NARROW = { width: 390, height: 844 };
/** expect.poll with room for a loaded machine (its default gives up after 1 s). */
const eventually = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 15_000, interval: 100 });
const STORES = ['sqlite', ...(process.env.TESSERA_REQUIRE_REDIS === '1' || redisReachable() ? ['redis'] : [])] as const;

describe.skipIf(skip)('admin console (Chromium)', () => {
  for (const store of STORES) describe(`on ${store}`, () => {
    /** The whole story on SQLite; on Redis the sign-in and the session revocation. */
    const full = store === 'sqlite';
    // The rest of the story is registered on SQLite only (not skipped on Redis: a skip fails CI).
    const fullIt = (full ? it : () => undefined) as typeof it;
    const prefix = testPrefix('console');
    let dir: string;
    let tessera: TesseraProcess;
    let browser: Browser;
    let base: string;
    const acme = 'acme';
    const globex = 'globex';
    const cspViolations: string[] = [];

    async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = { authorization: `Bearer ${ADMIN_TOKEN}` }) {
      const r = await fetch(`${base}${path}`, {
        method,
        headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await r.text();
      return { status: r.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
    }
    async function apiLogin(tenantId: string, email: string, userAgent = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:133.0) Gecko/20100101 Firefox/133.0') {
      return call('POST', '/api/v1/auth/login', { email, password: PASSWORD }, { 'x-tenant-id': tenantId, 'user-agent': userAgent });
    }
    async function addUser(tenantId: string, email: string, roles: string[] = []) {
      const r = await call('POST', '/api/v1/admin/users', { tenantId, email, password: PASSWORD, roles });
      if (r.status !== 201) throw new Error(`user ${email}: ${r.status} ${JSON.stringify(r.json)}`);
      return r.json.id as string;
    }

    beforeAll(async () => {
      if (!existsSync(join(PROJECT_ROOT, 'web', 'admin', 'dist', 'index.html'))) throw new Error('The console is not built: run npm install (or npm run build -w web/admin).');
      mkdirSync(SHOTS, { recursive: true });
      dir = mkdtempSync(join(tmpdir(), 'tessera-console-'));
      tessera = await startTessera((port) => {
        base = `http://localhost:${port}`;
        return {
          ...(store === 'redis' ? { TESSERA_STORE: redisTestUrl(), TESSERA_REDIS_PREFIX: prefix } : { TESSERA_STORE: `sqlite:${join(dir, 'tessera.db')}` }),
          COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET,
          TESSERA_ADMIN_TOKEN: ADMIN_TOKEN,
          TESSERA_PUBLIC_URL: base,
          TESSERA_LOG_LEVEL: 'warn',
        };
      });
      for (const [t, body] of [
        [acme, { profile: 'integration', sessionLimit: { max: 7, policy: 'reject_new' } }],
        [globex, { profile: 'integration' }],
      ] as const) {
        expect((await call('PUT', `/api/v1/admin/tenants/${t}`, body)).status).toBe(200);
      }
      await addUser('platform', 'root@platform.example', ['admin']);
      await addUser(acme, 'boss@acme.example', ['admin']);
      for (const e of ['alice@acme.example', 'bob@acme.example', 'carol@acme.example']) await addUser(acme, e);
      await addUser(globex, 'gina@globex.example');
      for (const e of ['alice@acme.example', 'bob@acme.example']) expect((await apiLogin(acme, e)).status).toBe(200);
      expect((await apiLogin(globex, 'gina@globex.example')).status).toBe(200);
      // Alice, known on Firefox/macOS, signs in from an Android phone: a new_device finding.
      expect((await apiLogin(acme, 'alice@acme.example', 'Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0 Mobile Safari/537.36')).status).toBe(200);
      expect((await apiLogin(acme, 'carol@acme.example', 'Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1')).status).toBe(200);
      browser = await launchChromium();
    });

    afterAll(async () => {
      await browser?.close();
      await tessera?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (store === 'redis') await purgePrefix(redisTestUrl(), prefix);
    });

    async function open(viewport = WIDE): Promise<{ context: BrowserContext; page: Page }> {
      const context = await browser.newContext({ viewport, deviceScaleFactor: 1, locale: 'en-GB' });
      const page = await context.newPage();
      page.setDefaultTimeout(10_000);
      page.on('console', (m) => {
        if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text());
      });
      return { context, page };
    }
    async function signIn(page: Page, tenant: string, email: string) {
      await page.goto(`${base}/admin/`);
      const tenantField = page.getByLabel('Tenant', { exact: true });
      await eventually(() => tenantField.inputValue()).toBe('platform');
      await tenantField.fill(tenant);
      await page.getByLabel('Email', { exact: true }).fill(email);
      await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('button', { name: 'Sign out' }).waitFor();
    }
    async function go(page: Page, name: string) {
      const link = page.getByRole('link', { name, exact: true });
      if (!(await link.isVisible())) await page.getByRole('button', { name: 'Menu' }).click();
      await link.click();
      await page.getByRole('heading', { level: 1, name }).waitFor();
    }
    async function shot(page: Page, name: string) {
      if (!full) return; // one set of pictures, from the SQLite run
      await page.screenshot({ path: join(SHOTS, `admin-${name}.png`), fullPage: true });
    }

    fullIt('serves the console with a strict Content-Security-Policy', async () => {
      const r = await fetch(`${base}/admin/`);
      expect(r.status).toBe(200);
      const csp = r.headers.get('content-security-policy') ?? '';
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).not.toContain('unsafe-eval');
      const html = await r.text();
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
      expect((await fetch(`${base}/admin/assets/..%2F..%2Fpackage.json`)).status).toBe(404);
    });

    it('a platform administrator finds a user’s session by email and revokes it; the user’s next call is 401', async () => {
      const bob = await apiLogin(acme, 'bob@acme.example');
      const bobToken = bob.json.userSessionToken as string;
      expect((await call('GET', '/api/v1/session', undefined, { authorization: `Bearer ${bobToken}` })).status).toBe(200);

      const { context, page } = await open();
      await signIn(page, 'platform', 'root@platform.example');
      await go(page, 'Sessions');
      await page.getByLabel('Tenant', { exact: true }).selectOption(acme);
      const table = page.getByRole('table', { name: 'Sessions' });
      await eventually(() => table.getByRole('row').count()).toBeGreaterThan(3);
      await page.getByLabel('Search', { exact: true }).fill('bob@');
      await page.getByLabel('Search', { exact: true }).press('Enter');
      await eventually(async () => {
          const rows = (await table.getByRole('row').allTextContents()).slice(1);
          return rows.length > 0 && rows.every((t) => t.includes('bob@acme.example'));
        })
        .toBe(true);
      const rows = table.getByRole('row').filter({ hasText: 'bob@acme.example' });
      expect(await rows.count()).toBe(2);
      expect(await rows.first().textContent()).toContain('Firefox 133 on macOS, desktop');
      await shot(page, 'sessions-wide');
      // Revoke the session made just now: the newest row.
      const row = rows.last();
      await row.getByRole('button', { name: 'Revoke', exact: true }).click();
      const dialog = page.getByRole('dialog');
      await dialog.waitFor();
      await shot(page, 'sessions-confirm-wide');
      await dialog.getByRole('button', { name: 'Revoke session' }).click();
      await page.getByText('1 session ended.').waitFor();
      expect((await call('GET', '/api/v1/session', undefined, { authorization: `Bearer ${bobToken}` })).status).toBe(401);
      await eventually(() => table.getByRole('row').filter({ hasText: 'bob@acme.example' }).count()).toBe(1);
      await context.close();
    });

    fullIt('disables a user from the Users screen; their login is refused', async () => {
      const { context, page } = await open();
      await signIn(page, 'platform', 'root@platform.example');
      await go(page, 'Users');
      await page.getByLabel('Tenant', { exact: true }).selectOption(acme);
      const table = page.getByRole('table', { name: 'Users' });
      await table.getByRole('button', { name: 'carol@acme.example' }).click();
      await shot(page, 'users-wide');
      await page.getByRole('button', { name: 'Disable', exact: true }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Disable user' }).click();
      await page.getByText('carol@acme.example is disabled').waitFor();
      expect(await table.getByRole('row').filter({ hasText: 'carol@acme.example' }).textContent()).toContain('disabled');
      const refused = await apiLogin(acme, 'carol@acme.example');
      expect(refused.status).toBe(403);
      expect(refused.json.code).toBe('user_disabled');
      await context.close();
    });

    fullIt('filters the audit log by type', async () => {
      const { context, page } = await open();
      await signIn(page, 'platform', 'root@platform.example');
      await go(page, 'Audit');
      await page.getByLabel('Tenant', { exact: true }).selectOption(acme);
      const events = page.getByRole('list', { name: 'Audit events' });
      await eventually(async () => new Set((await events.locator('.type').allTextContents())).size).toBeGreaterThan(2);
      await page.getByLabel('Type', { exact: true }).fill('user.disabled');
      await page.getByRole('button', { name: 'Filter' }).click();
      await eventually(async () => [...new Set(await events.locator('.type').allTextContents())]).toEqual(['user.disabled']);
      // The user's email, not only the id.
      expect(await events.locator('.who').first().textContent()).toBe('carol@acme.example');
      await events.locator('summary').first().click();
      await eventually(() => events.locator('pre').first().textContent()).toContain('requestId');
      await page.getByRole('button', { name: 'Verify chain' }).click();
      await page.getByText('The chain is intact').waitFor();
      await shot(page, 'audit-wide');

      // Export: the browser downloads a file, and it holds the filtered events — the same lines the
      // API exports for that filter.
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export' }).click()]);
      expect(download.suggestedFilename()).toBe(`audit-${acme}.ndjson`);
      const file = join(dir, 'audit-export.ndjson');
      await download.saveAs(file);
      const text = readFileSync(file, 'utf8');
      const lines = text.trim().split('\n').map((l) => JSON.parse(l) as { type: string; tenantId: string; userId: string; hash: string });
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.every((l) => l.type === 'user.disabled' && l.tenantId === acme)).toBe(true);
      const viaApi = await fetch(`${base}/api/v1/admin/audit/export?tenantId=${acme}&type=user.disabled`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(text).toBe(await viaApi.text());
      await context.close();
    });

    fullIt('lists anomaly findings with their evidence and the action taken', async () => {
      const { context, page } = await open();
      await signIn(page, 'platform', 'root@platform.example');
      await go(page, 'Anomalies');
      await page.getByLabel('Tenant', { exact: true }).selectOption(acme);
      const row = page.getByRole('table', { name: 'Anomalies' }).getByRole('row').filter({ hasText: 'new device' });
      await row.first().waitFor();
      const text = (await row.first().textContent()) ?? '';
      expect(text).toContain('chrome/android');
      expect(text).toContain('firefox/macos');
      expect(text).toContain('record');
      expect(text).toContain('alice@acme.example');
      await context.close();
    });

    fullIt('shows a new event live, without reload', async () => {
      const { context, page } = await open();
      await signIn(page, 'platform', 'root@platform.example');
      await go(page, 'Live');
      await page.getByLabel('Tenant', { exact: true }).selectOption(acme);
      await page.getByText('● Live').waitFor();
      const list = page.getByRole('list', { name: 'Newest events' });
      expect((await apiLogin(acme, 'alice@acme.example')).status).toBe(200);
      await list.getByText('session.created').first().waitFor({ timeout: 15_000 });
      await shot(page, 'live-wide');
      await context.close();
    });

    fullIt('edits a tenant’s lifetime, keeping its other settings; a bad value shows the server’s message', async () => {
      const { context, page } = await open();
      await signIn(page, 'platform', 'root@platform.example');
      await go(page, 'Tenants');
      await page.getByRole('button', { name: acme, exact: true }).click();
      const appIdle = page.getByLabel('appIdle', { exact: true });
      await appIdle.fill('600');
      await page.getByRole('button', { name: 'Save' }).click();
      await page.getByText(`Saved ${acme}.`).waitFor();
      const t = (await call('GET', `/api/v1/admin/tenants/${acme}`)).json as { lifetimes: { appIdle: number }; sessionLimit: { max: number; policy: string } };
      expect(t.lifetimes.appIdle).toBe(600);
      expect(t.sessionLimit).toEqual({ max: 7, policy: 'reject_new' });

      await page.getByLabel('appIdle', { exact: true }).fill('99999999');
      await page.getByRole('button', { name: 'Save' }).click();
      const message = page.locator('#err-appIdle');
      await message.waitFor({ timeout: 10_000 }).catch(async (e: unknown) => {
        await shot(page, 'tenants-error-failed');
        throw e;
      });
      expect(await message.textContent()).toMatch(/appIdle/);
      expect(await page.getByLabel('appIdle', { exact: true }).getAttribute('aria-invalid')).toBe('true');
      await shot(page, 'tenants-error-wide');
      expect(((await call('GET', `/api/v1/admin/tenants/${acme}`)).json as { lifetimes: { appIdle: number } }).lifetimes.appIdle).toBe(600);
      await context.close();
    });

    fullIt('a tenant administrator sees only their own tenant', async () => {
      const { context, page } = await open();
      await signIn(page, acme, 'boss@acme.example');
      await go(page, 'Users');
      const tenant = page.getByLabel('Tenant', { exact: true });
      await eventually(() => tenant.inputValue()).toBe(acme);
      expect(await tenant.isDisabled()).toBe(true);
      await eventually(() => tenant.locator('option').allTextContents()).toEqual([acme]);
      const table = page.getByRole('table', { name: 'Users' });
      await table.getByText('alice@acme.example').waitFor();
      expect(await table.textContent()).not.toContain('globex');
      await go(page, 'Sessions');
      await page.getByRole('table', { name: 'Sessions' }).waitFor();
      expect(await page.getByRole('table', { name: 'Sessions' }).textContent()).not.toContain('gina@globex.example');
      await go(page, 'Tenants');
      await eventually(() => page.getByRole('navigation', { name: 'Tenant list' }).getByRole('button').allTextContents()).toEqual([acme]);
      await context.close();
    });

    fullIt('every screen, wide and narrow (Menu button on the narrow one), photographed; keyboard reaches the navigation', async () => {
      for (const [size, viewport] of [
        ['wide', WIDE],
        ['narrow', NARROW],
      ] as const) {
        const { context, page } = await open(viewport);
        await page.goto(`${base}/admin/`);
        await page.getByRole('button', { name: 'Sign in' }).waitFor();
        await shot(page, `signin-${size}`);
        await signIn(page, 'platform', 'root@platform.example');
        const menu = page.getByRole('button', { name: 'Menu' });
        expect(await menu.isVisible()).toBe(size === 'narrow');
        if (size === 'narrow') {
          expect(await page.getByRole('link', { name: 'Sessions', exact: true }).isVisible()).toBe(false);
          await menu.click();
          expect(await menu.getAttribute('aria-expanded')).toBe('true');
          await shot(page, 'menu-narrow');
          await menu.click();
        }
        for (const name of ['Sessions', 'Users', 'Audit', 'Anomalies', 'Live', 'Tenants']) {
          await go(page, name);
          if (name !== 'Tenants') await page.getByLabel('Tenant', { exact: true }).selectOption(acme);
          else await page.getByRole('button', { name: 'Save' }).waitFor();
          if (name === 'Live') await page.getByText('● Live').waitFor();
          // Until the screen has its data (the loading note is gone).
          await page.getByText(/^Loading/).waitFor({ state: 'detached', timeout: 10_000 });
          await shot(page, `${name.toLowerCase()}-${size}`);
        }
        if (size === 'wide') {
          // Keyboard: from the top of the page, Tab reaches the navigation links and Enter follows one.
          await page.goto(`${base}/admin/#/sessions`);
          await page.reload();
          await page.getByRole('heading', { level: 1, name: 'Sessions' }).waitFor();
          let reached = false;
          for (let i = 0; i < 12 && !reached; i++) {
            await page.keyboard.press('Tab');
            reached = (await page.evaluate('document.activeElement?.textContent ?? ""')) === 'Users';
          }
          expect(reached).toBe(true);
          await page.keyboard.press('Enter');
          await page.getByRole('heading', { level: 1, name: 'Users' }).waitFor();
        }
        await context.close();
      }
      expect(cspViolations).toEqual([]);
    });
  });
});
