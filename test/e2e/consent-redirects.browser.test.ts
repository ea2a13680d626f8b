// The story of docs/api.md §Consent redirects in a real browser (Debian's Chromium through
// playwright-core), against Tessera as a real process in demo mode:
//
//   two tabs of one browser share one session cookie; tab A starts an AIS consent and goes to the
//   bank; tab B keeps working and starts a payment, and goes to the bank too; the short session
//   lapses while both are at the bank; both approve at nearly the same moment. Afterwards the
//   browser holds exactly one working session cookie, both consents are confirmed, and exactly
//   one successor session exists. Then the order where the session is still valid at the return
//   (no new cookie). Meanwhile a second browser of the same user runs its own redirect, unaffected.
//
// The fintech pages are served at http://localhost:<port> (a secure context, so `__Host-` and
// `Secure` cookies work over plain HTTP in Chromium); the bank is the bank simulator, a separate
// process at http://127.0.0.1:<another port>, a different site, so the return is a real
// cross-site top-level navigation: it carries the SameSite=Lax redirect cookie but not the
// SameSite=Strict session cookie. Tessera asks the simulator for every status (Berlin Group).
//
// Without /usr/bin/chromium (or TESSERA_CHROMIUM) the test is skipped — unless TESSERA_REQUIRE_BROWSER=1
// (CI), then it fails.
// Screenshots of every step go to .tessera-test/screenshots (git-ignored).

import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page, type Response } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Session } from '../../src/domain/session.ts';
import { openSqliteStore, type SqliteSessionStore } from '../../src/store/sqlite/sqlite-store.ts';
import { PROJECT_ROOT, startTessera, type TesseraProcess } from '../support/tessera-process.ts';
import { startSimulator, type SimulatorProcess } from '../support/bank-simulator.ts';

const CHROMIUM = process.env.TESSERA_CHROMIUM ?? '/usr/bin/chromium';
const required = process.env.TESSERA_REQUIRE_BROWSER === '1';
const browserMissing = !existsSync(CHROMIUM);
if (browserMissing && !required) process.stderr.write(`[tessera tests] skipping the browser test: ${CHROMIUM} is not installed\n`);

const SHOTS = join(PROJECT_ROOT, '.tessera-test', 'screenshots');
const ADMIN_TOKEN = 'browser-test-admin-' + 'a'.repeat(32);
const COOKIE_SECRET = 'browser-test-cookie-' + 'c'.repeat(32);
/** The tenant's app idle lifetime: short, so the test can wait it out while the tabs are at the bank. */
const APP_IDLE_S = 5;
const PASSWORD = 'correct horse battery';
const EMAIL = 'ada@example.com';

function say(fact: string): void {
  process.stdout.write(`[browser] ${fact}\n`);
}

describe.skipIf(browserMissing && !required)('consent redirects in several tabs of one browser (Chromium)', () => {
  let dir: string;
  let tessera: TesseraProcess;
  let sim: SimulatorProcess;
  let browser: Browser;
  let app: string; // http://localhost:<port>
  let bank: string; // the simulator, http://127.0.0.1:<other port>
  let store: SqliteSessionStore;
  const tenantId = `browser-${Date.now().toString(36)}`;
  /** A tenant with a long idle lifetime, for the test whose steps must not race the lapse. */
  const calmTenantId = `${tenantId}-calm`;
  let userId: string;

  beforeAll(async () => {
    if (browserMissing) throw new Error(`TESSERA_REQUIRE_BROWSER=1 but ${CHROMIUM} is not installed (apt-get install chromium)`);
    mkdirSync(SHOTS, { recursive: true });
    dir = mkdtempSync(join(tmpdir(), 'tessera-browser-'));
    sim = await startSimulator();
    bank = sim.url;
    tessera = await startTessera((port) => {
      app = `http://localhost:${port}`;
      return {
        TESSERA_STORE: `sqlite:${join(dir, 'tessera.db')}`,
        COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET,
        TESSERA_ADMIN_TOKEN: ADMIN_TOKEN,
        TESSERA_PUBLIC_URL: app,
        TESSERA_DEMO: '1',
        TESSERA_DEMO_BANK_URL: bank,
        TESSERA_DEV_ALLOW_HTTP_LOOPBACK: '1',
        TESSERA_SWEEP_INTERVAL_MS: '200',
        TESSERA_LOG_LEVEL: 'warn',
      };
    });
    // The test reads the same file (several processes on one SQLite file are supported).
    store = await openSqliteStore(join(dir, 'tessera.db'));
    const adminCall = async (method: string, path: string, body: unknown) => {
      const r = await fetch(`${tessera.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
      return (await r.json()) as Record<string, unknown>;
    };
    await adminCall('PUT', `/api/v1/admin/tenants/${tenantId}`, { profile: 'integration', lifetimes: { appIdle: APP_IDLE_S } });
    userId = (await adminCall('POST', '/api/v1/admin/users', { tenantId, email: EMAIL, password: PASSWORD })).id as string;
    // The demo page uses the bank `demo-bank`: this tenant registers the simulator under that id.
    await adminCall('PUT', '/api/v1/admin/banks/demo-bank', { tenantId, name: 'Demo Bank', protocol: 'berlin-group', baseUrl: bank });
    await adminCall('PUT', `/api/v1/admin/tenants/${calmTenantId}`, { profile: 'integration', lifetimes: { appIdle: 600 } });
    await adminCall('POST', '/api/v1/admin/users', { tenantId: calmTenantId, email: EMAIL, password: PASSWORD });
    await adminCall('PUT', '/api/v1/admin/banks/demo-bank', { tenantId: calmTenantId, name: 'Demo Bank', protocol: 'berlin-group', baseUrl: bank });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await store?.close();
    await tessera?.stop();
    await sim?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function shot(page: Page, name: string): Promise<void> {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  }

  async function newContext(): Promise<BrowserContext> {
    return browser.newContext({ viewport: { width: 1180, height: 860 }, deviceScaleFactor: 1, locale: 'en-GB' });
  }

  async function signIn(page: Page, tenant = tenantId): Promise<void> {
    await page.goto(`${app}/demo/`);
    await page.locator('#login-card').waitFor();
    await page.fill('input[name=tenantId]', tenant);
    await page.fill('input[name=email]', EMAIL);
    await page.fill('input[name=password]', PASSWORD);
    await page.click('#login-form button[type=submit]');
    await page.locator('#app').waitFor();
  }

  async function sidCookies(ctx: BrowserContext) {
    return (await ctx.cookies()).filter((c) => c.name === '__Host-sid');
  }

  /** What the page's own fetch sees (same-origin, with the session cookie). */
  async function apiFrom(page: Page, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
    return page.evaluate(async (p) => {
      const r = await fetch(p, { credentials: 'same-origin' });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    }, path);
  }

  async function toBank(page: Page, start: () => Promise<void>, kind: 'ais' | 'pis'): Promise<void> {
    await start();
    await page.waitForURL(`${bank}/sca/**`);
    await page.locator(`#${kind}`).waitFor();
    await page.locator('#approve:enabled').waitFor();
  }

  const pay = (page: Page, amount: string, creditor: string) => async () => {
    await page.fill('input[name=amount]', amount);
    await page.fill('input[name=creditorName]', creditor);
    await page.click('#payment-form button[type=submit]');
  };

  /** Records the returns from the bank that a context's pages make: status and the session cookie they set. */
  function recordReturns(ctx: BrowserContext) {
    const seen: Array<{ url: string; status: number; setsSid: string | null; at: number; sentAt: number }> = [];
    const sent = new Map<string, number>();
    ctx.on('request', (r) => {
      if (/\/api\/v1\/redirects\/[^/]+\/return/.test(r.url())) sent.set(r.url(), Date.now());
    });
    ctx.on('response', (r: Response) => {
      if (!/\/api\/v1\/redirects\/[^/]+\/return/.test(r.url())) return;
      const at = Date.now();
      void r.headersArray().then((headers) => {
        const sid = headers.find((h) => h.name.toLowerCase() === 'set-cookie' && h.value.startsWith('__Host-sid='));
        seen.push({
          url: r.url(),
          status: r.status(),
          setsSid: sid ? (sid.value.split(';')[0] as string).slice('__Host-sid='.length) : null,
          at,
          sentAt: sent.get(r.url()) ?? at,
        });
      });
    });
    return seen;
  }

  async function waitFor(cond: () => Promise<boolean>, what: string, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function appSessionsOfUser(): Promise<Session[]> {
    const page = await store.listSessions({ tenantId, userId, kind: 'app', now: Date.now(), limit: 100 });
    return page.items;
  }

  it('two tabs, both at the bank when the session lapses, come back to one session; then a still-valid return; a second browser unaffected', async () => {
    // ---- browser 1, tab A: sign in -----------------------------------------------------------
    const ctx1 = await newContext();
    const returns1 = recordReturns(ctx1);
    const tabA = await ctx1.newPage();
    await tabA.goto(`${app}/demo/`);
    await tabA.locator('#login-card').waitFor();
    await shot(tabA, '01-sign-in');
    await signIn(tabA);
    await tabA.locator('#accounts .empty').waitFor();
    await shot(tabA, '02-signed-in-no-consent');
    const [sid1] = await sidCookies(ctx1);
    expect(sid1).toBeDefined();
    expect(sid1).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/' });
    const s1 = (await apiFrom(tabA, '/api/v1/session')).body.sessionId as string;

    // ---- tab B of browser 1 shares the session ------------------------------------------------
    const tabB = await ctx1.newPage();
    await tabB.goto(`${app}/demo/`);
    await tabB.locator('#app').waitFor();
    expect(await tabB.locator('#session-handle').getAttribute('title')).toBe(s1);

    // ---- A starts an AIS consent and goes to the bank; B keeps working, pays, goes to the bank ----
    await toBank(tabA, () => tabA.click('#connect-bank'), 'ais');
    await shot(tabA, '03-bank-ais-consent');
    expect((await apiFrom(tabB, '/api/v1/session')).status).toBe(200); // B still works while A is away
    await toBank(tabB, pay(tabB, '42.00', 'Corner Bakery'), 'pis');

    // ---- browser 2 (same user): its own session, its own payment redirect ------------------------
    const ctx2 = await newContext();
    const returns2 = recordReturns(ctx2);
    const tabC = await ctx2.newPage();
    await signIn(tabC);
    const [sidC] = await sidCookies(ctx2);
    const sC = (await apiFrom(tabC, '/api/v1/session')).body.sessionId as string;
    expect(sC).not.toBe(s1);
    await toBank(tabC, pay(tabC, '7.30', 'Book Shop'), 'pis');
    await shot(tabB, '04-bank-payment');

    const jar1 = await ctx1.cookies();
    const rids = jar1.filter((c) => c.name === '__Secure-rid');
    expect(rids).toHaveLength(2);
    expect(new Set(rids.map((c) => c.path)).size).toBe(2);
    expect(rids.every((c) => c.sameSite === 'Lax' && c.httpOnly && c.secure)).toBe(true);
    expect((await sidCookies(ctx1)).map((c) => c.value)).toEqual([sid1!.value]); // the starts left it alone
    say(`browser 1 before the lapse: one __Host-sid (session ${s1}), two __Secure-rid cookies on paths ${rids.map((c) => c.path).join(' and ')}`);

    // ---- the short session lapses while both tabs are at the bank -----------------------------
    const lapseStart = Date.now();
    await waitFor(async () => {
      const s = await store.getSessionByHandle(s1);
      return s?.status === 'expired';
    }, 'the sweeper to mark session 1 expired');
    await waitFor(async () => (await store.getSessionByHandle(sC))?.status === 'expired', 'the sweeper to mark session C expired');
    say(`both sessions expired while the tabs were at the bank (idle ${APP_IDLE_S} s; the sweeper had marked them after ${Date.now() - lapseStart} ms of waiting)`);
    expect(await sidCookies(ctx1)).toHaveLength(0); // the browser dropped it too (Max-Age = idle)

    // ---- both tabs (and browser 2) approve at nearly the same moment ---------------------------
    await Promise.all([tabA.click('#approve'), tabB.click('#approve'), tabC.click('#approve')]);
    await Promise.all([tabA, tabB, tabC].map((p) => p.waitForURL(`${app}/demo/`)));
    await Promise.all([tabA, tabB, tabC].map((p) => p.locator('#notices .notice.ok').waitFor()));
    await tabA.locator('#accounts table').waitFor();
    await tabB.locator('#consents tr[data-consent-id]').first().waitFor();
    // Read both browsers' sessions at once: the renewed sessions have the same short idle lifetime.
    const [meA, meB, meC] = await Promise.all([apiFrom(tabA, '/api/v1/session'), apiFrom(tabB, '/api/v1/session'), apiFrom(tabC, '/api/v1/session')]);
    await shot(tabA, '05-tab-a-back-renewed');
    await shot(tabB, '06-tab-b-back-renewed');
    await shot(tabC, '07-browser-2-back');

    // ---- afterwards: one working session cookie, the same from both returns ----------------------
    expect(returns1).toHaveLength(2);
    expect(returns1.map((r) => r.status)).toEqual([303, 303]);
    const [first, second] = returns1 as [(typeof returns1)[0], (typeof returns1)[0]];
    expect(first.setsSid).not.toBeNull();
    expect(second.setsSid).toBe(first.setsSid);
    say(
      `the two returns of browser 1 left the browser ${Math.abs(second.sentAt - first.sentAt)} ms apart and were answered ${Math.abs(second.at - first.at)} ms apart: both 303, both setting the same __Host-sid`,
    );
    const sids = await sidCookies(ctx1);
    expect(sids).toHaveLength(1);
    expect(sids[0]!.value).not.toBe(sid1!.value);
    expect((await ctx1.cookies()).filter((c) => c.name === '__Secure-rid')).toHaveLength(0);
    expect(meA.status).toBe(200);
    const s2 = meA.body.sessionId as string;
    expect(s2).not.toBe(s1);
    expect(meB.body.sessionId).toBe(s2);
    expect(meA.body).toMatchObject({ authMethod: 'renewed', mode: 'cookie', customerId: userId });
    say(`browser 1 afterwards: exactly one __Host-sid cookie, session ${s2} (renewed from ${s1}), working in both tabs`);

    // Both consents confirmed.
    const consents1 = (await apiFrom(tabA, '/api/v1/consents')).body.items as Array<{ type: string; status: string; payment?: { amount: string } }>;
    const ais = consents1.find((c) => c.type === 'ais');
    const pis = consents1.find((c) => c.type === 'pis' && c.payment?.amount === '42.00');
    expect(ais?.status).toBe('confirmed');
    expect(pis?.status).toBe('confirmed');
    const accounts = await apiFrom(tabA, '/api/v1/accounts?bankId=demo-bank');
    expect(accounts.status).toBe(200);
    expect((accounts.body.accounts as Array<{ iban: string }>).map((a) => a.iban)).toEqual(['DE75512108001245126199', 'DE02100100109307118603']);
    say(`consents of the user: AIS ${ais?.status}, payment 42.00 ${pis?.status}`);

    // Exactly one successor of session 1 exists (and one of browser 2's session).
    const sessions = await appSessionsOfUser();
    const successorsOf = (h: string) => sessions.filter((s) => s.data.renewedFrom === h);
    expect(successorsOf(s1).map((s) => s.handle)).toEqual([s2]);
    expect((await store.getSessionByHandle(s1))?.successorHandle).toBe(s2);
    say(`store: ${sessions.length} app sessions of the user; successors of session 1: ${successorsOf(s1).length}; of browser 2's session: ${successorsOf(sC).length}`);

    // Browser 2 ran its own redirect: its own successor, its own cookie, its payment confirmed.
    expect(returns2.map((r) => r.status)).toEqual([303]);
    const sids2 = await sidCookies(ctx2);
    expect(sids2).toHaveLength(1);
    expect(sids2[0]!.value).not.toBe(sids[0]!.value);
    expect(sids2[0]!.value).not.toBe(sidC!.value);
    expect(meC.status).toBe(200);
    expect(meC.body.sessionId).not.toBe(s2);
    expect(successorsOf(sC).map((s) => s.handle)).toEqual([meC.body.sessionId]);
    const consents2 = (await apiFrom(tabC, '/api/v1/consents')).body.items as Array<{ type: string; status: string; payment?: { amount: string } }>;
    expect(consents2.find((c) => c.payment?.amount === '7.30')?.status).toBe('confirmed');
    say(`browser 2: its own session ${meC.body.sessionId as string}, cookie different from browser 1's, payment 7.30 confirmed`);

    // ---- the still-valid order: a return while the session is valid sets no cookie ------------------
    const before = (await sidCookies(ctx1))[0]!.value;
    await toBank(tabA, () => tabA.click('#connect-bank'), 'ais');
    await tabA.click('#approve');
    await tabA.waitForURL(`${app}/demo/`);
    await tabA.locator('#notices .notice.ok').waitFor();
    await tabA.locator('#consents tr[data-consent-id]').nth(2).waitFor();
    await shot(tabA, '08-still-valid-return');
    expect(returns1).toHaveLength(3);
    expect(returns1[2]).toMatchObject({ status: 303, setsSid: null });
    const after = await sidCookies(ctx1);
    expect(after.map((c) => c.value)).toEqual([before]);
    expect((await apiFrom(tabA, '/api/v1/session')).body.sessionId).toBe(s2);
    const consentsNow = (await apiFrom(tabA, '/api/v1/consents')).body.items as Array<{ id: string; type: string; status: string }>;
    const aisNow = consentsNow.filter((c) => c.type === 'ais');
    expect(aisNow.map((c) => c.status)).toEqual(['confirmed', 'superseded']);
    say('still-valid order: the return answered 303 without Set-Cookie for __Host-sid; the cookie and session stayed; the older AIS consent is now superseded');

    // Browser 2 was not touched by any of it: same cookie, its session never revoked nor renewed
    // again (it may simply have lapsed by now: it has been idle for seconds).
    expect((await sidCookies(ctx2)).every((c) => c.value === sids2[0]!.value)).toBe(true);
    const c2 = await store.getSessionByHandle(meC.body.sessionId as string);
    expect(c2).toMatchObject({ successorHandle: null });
    expect(c2?.status).not.toBe('revoked');
    expect((await appSessionsOfUser()).filter((s) => s.authMethod === 'renewed')).toHaveLength(2);

    // The tab that was away: a reload shows the renewed session and the consents.
    await tabB.reload();
    await tabB.locator('#consents tr[data-consent-id]').nth(3).waitFor();
    await shot(tabB, '09-tab-b-reloaded');

    await ctx1.close();
    await ctx2.close();
  });

  it('a denied consent comes back rejected; a forged return with result=ok confirms nothing', async () => {
    const ctx = await newContext();
    const tab = await ctx.newPage();
    await signIn(tab, calmTenantId);
    await toBank(tab, pay(tab, '1000.00', 'Unknown Recipient'), 'pis');
    await tab.click('#deny');
    await tab.waitForURL(`${app}/demo/`);
    await tab.locator('#notices .notice.bad').waitFor();
    await shot(tab, '10-payment-denied');
    const items = (await apiFrom(tab, '/api/v1/consents')).body.items as Array<{ status: string; payment?: { amount: string } }>;
    expect(items.find((c) => c.payment?.amount === '1000.00')?.status).toBe('rejected');

    // At the bank, the user types the return address with ?result=ok instead of approving.
    say('denied: rejected');
    await tab.goto(`${app}/demo/`);
    await tab.locator('#app').waitFor();
    await toBank(tab, pay(tab, '666.00', 'Forger'), 'pis');
    const rid = (await ctx.cookies()).find((c) => c.name === '__Secure-rid');
    expect(rid).toBeDefined();
    say(`forging the return at ${rid!.path}`);
    await tab.goto(`${app}${rid!.path}/return?result=ok`);
    say('forged return answered');
    await tab.waitForURL(`${app}/demo/`);
    await tab.locator('#notices .notice').first().waitFor();
    await shot(tab, '11-forged-return-pending');
    const after = (await apiFrom(tab, '/api/v1/consents')).body.items as Array<{ status: string; payment?: { amount: string } }>;
    expect(after.find((c) => c.payment?.amount === '666.00')?.status).toBe('pending');
    await ctx.close();
  }, 60_000);
});
