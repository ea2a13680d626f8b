// Single sign-on through Debian's Chromium (playwright-core) against the real `oidc-provider`
// on 127.0.0.1, Tessera in-process on a real port: the logins a person does, and the refusals an
// attacker meets. Skips without /usr/bin/chromium unless TESSERA_REQUIRE_BROWSER=1.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret } from '../../src/domain/secrets.ts';
import { openConnection } from '../../src/store/redis/connection.ts';
import { parseRedisUrl } from '../../src/store/redis/url.ts';
import { launchChromium, pageText, skipWithoutBrowser } from '../support/chromium.ts';
import { redisTestUrl } from '../support/harness.ts';
import { loginAtProvider, MiniBrowser, startSsoWorld, type SsoWorld } from '../support/sso-world.ts';
import { storeChoices } from '../support/store-choices.ts';
import { CLI, PROJECT_ROOT } from '../support/tessera-process.ts';

const skip = skipWithoutBrowser();
const ALICE = { login: 'alice', password: 'wonderland' };

describe.skipIf(skip).each(storeChoices())('SSO in Chromium (%s)', (storeChoice) => {
  let world: SsoWorld;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    world = await startSsoWorld({ store: storeChoice });
    browser = await launchChromium();
  });
  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await world?.close();
  });

  /** A fresh browser profile: its own cookies for Tessera and for the provider. */
  async function newBrowser(): Promise<BrowserContext> {
    const c = await browser.newContext();
    contexts.push(c);
    return c;
  }

  const loginUrl = (query = '') => `${world.tesseraUrl}/api/v1/sso/oidc/login?orgSlug=${world.orgSlug}${query}`;
  const atProvider = (page: Page) => page.url().startsWith(world.idp.issuer);

  /**
   * Completes what the provider asks on `page` (login form, consent) until the browser leaves the
   * provider. Returns the status of Tessera's callback answer.
   */
  async function completeAtProvider(page: Page, account = ALICE, consent: 'allow' | 'deny' = 'allow'): Promise<number | null> {
    let callbackStatus: number | null = null;
    const onResponse = (r: { url(): string; status(): number }) => {
      if (r.url().startsWith(`${world.tesseraUrl}/api/v1/sso/`) && r.url().includes('/callback')) callbackStatus = r.status();
    };
    page.on('response', onResponse);
    try {
      for (let step = 0; step < 4 && atProvider(page); step++) {
        const before = page.url();
        if ((await page.locator('input[name=login]').count()) > 0) {
          await page.fill('input[name=login]', account.login);
          await page.fill('input[name=password]', account.password);
          await page.click('button[value=login]');
        } else if ((await page.locator(`button[value=${consent}]`).count()) > 0) {
          await page.click(`button[value=${consent}]`);
        } else {
          throw new Error(`nothing to do at ${page.url()}: ${await pageText(page)}`);
        }
        await page.waitForURL((u) => u.href !== before, { waitUntil: 'load' });
      }
      if (atProvider(page)) throw new Error(`still at the provider: ${page.url()}`);
      return callbackStatus;
    } finally {
      page.off('response', onResponse);
    }
  }

  /** On Tessera's /login/sso page: waits for the redemption and returns its outcome. */
  async function redeemed(page: Page): Promise<{ state: string; sessionId: string | null; code: string | null }> {
    await page.waitForSelector('body[data-state]', { timeout: 10_000 });
    return {
      state: (await page.getAttribute('body', 'data-state')) ?? '',
      sessionId: await page.getAttribute('body', 'data-session-id'),
      code: await page.getAttribute('body', 'data-code'),
    };
  }

  /** The state Tessera sent to the provider in the next authorization request of `page`. */
  function nextState(page: Page): Promise<string> {
    return page
      .waitForRequest((r) => r.url().startsWith(`${world.idp.issuer}/auth?`))
      .then((r) => new URL(r.url()).searchParams.get('state') as string);
  }

  it('two tabs start two logins; both finish, in either order, each with its own session', async () => {
    const ctx = await newBrowser();
    const tab1 = await ctx.newPage();
    const tab2 = await ctx.newPage();
    await tab1.goto(loginUrl());
    await tab2.goto(loginUrl());
    expect(atProvider(tab1) && atProvider(tab2)).toBe(true);
    // The flow cookie is one per browser, bound to both flows.
    const flowCookies = (await ctx.cookies(world.tesseraUrl)).filter((c) => c.name === '__Host-flow');
    expect(flowCookies).toHaveLength(1);
    expect(flowCookies[0]).toMatchObject({ sameSite: 'Lax', httpOnly: true, secure: true });

    // The second tab finishes first: with a per-browser flow, the first would now fail.
    expect(await completeAtProvider(tab2)).toBe(302);
    const second = await redeemed(tab2);
    expect(await completeAtProvider(tab1)).toBe(302);
    const first = await redeemed(tab1);
    expect(first.state, first.code ?? '').toBe('ok');
    expect(second.state, second.code ?? '').toBe('ok');
    expect(first.sessionId).not.toBe(second.sessionId);
    // The token left the address bar.
    expect(new URL(tab1.url()).search).toBe('');

    // The last redemption set the session cookie; the API knows this browser now.
    const me = await tab1.evaluate(async () => (await fetch('/api/v1/session')).json());
    expect((me as { sessionId: string }).sessionId).toBe(first.sessionId);
  });

  it("refuses a callback with another browser's state; the owner still finishes; a replay is refused", async () => {
    const owner = await (await newBrowser()).newPage();
    const stateSeen = nextState(owner);
    await owner.goto(loginUrl());
    const state = await stateSeen;

    const stranger = await (await newBrowser()).newPage();
    await stranger.goto(loginUrl()); // a flow of its own, so it does send a flow cookie
    const r = await stranger.goto(`${world.tesseraUrl}/api/v1/sso/oidc/callback?code=anything&state=${state}`);
    expect(r?.status()).toBe(403);
    expect(await stranger.textContent('#code')).toBe('sso_state_mismatch');

    let callbackUrl = '';
    owner.on('request', (req) => {
      if (req.url().startsWith(`${world.tesseraUrl}/api/v1/sso/oidc/callback`)) callbackUrl = req.url();
    });
    expect(await completeAtProvider(owner)).toBe(302);
    expect((await redeemed(owner)).state).toBe('ok');

    const replay = await owner.goto(callbackUrl);
    expect(replay?.status()).toBe(403);
    expect(await owner.textContent('#code')).toBe('sso_state_mismatch');
  });

  it("login CSRF: /login/sso with an attacker's token does not sign the victim's browser in", async () => {
    // The attacker finishes a login of their own and sends the victim the /login/sso link.
    const attacker = new MiniBrowser();
    const r = await attacker.get(await loginAtProvider(attacker, world, loginUrl(), ALICE));
    expect(r.status).toBe(302);
    const link = new URL(r.headers.get('location') as string, world.tesseraUrl).href;

    const victim = await newBrowser();
    const page = await victim.newPage();
    await page.goto(loginUrl()); // the victim even has a flow cookie of its own
    await page.goto(link);
    const outcome = await redeemed(page);
    expect(outcome.state).toBe('failed');
    expect(outcome.code).toBe('sso_browser_mismatch');
    expect((await victim.cookies(world.tesseraUrl)).some((c) => c.name === '__Host-sid')).toBe(false);
  });

  it('refuses a tampered ID token, an expired flow and denied consent, each on an error page', async () => {
    const tampered = await (await newBrowser()).newPage();
    await tampered.goto(loginUrl());
    world.idp.tamper = 'signature';
    try {
      expect(await completeAtProvider(tampered)).toBe(401);
    } finally {
      world.idp.tamper = 'none';
    }
    expect(await tampered.textContent('#code')).toBe('sso_id_token_invalid');

    const slow = await (await newBrowser()).newPage();
    await slow.goto(loginUrl());
    world.clock.advance(601_000);
    expect(await completeAtProvider(slow)).toBe(400);
    expect(await slow.textContent('#code')).toBe('sso_flow_expired');

    const denied = await (await newBrowser()).newPage();
    await denied.goto(loginUrl());
    expect(await completeAtProvider(denied, ALICE, 'deny')).toBe(403);
    expect(await denied.textContent('#code')).toBe('sso_access_denied');
  });

  it('`tessera login --org` ends at its local listener with a token pair that works, stored 0600', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-login-'));
    try {
      const credentials = join(dir, 'nested', 'credentials.json');
      const child = spawn(process.execPath, [CLI, 'login', '--org', world.orgSlug, '--server', world.tesseraUrl, '--credentials', credentials, '--timeout', '60'], {
        cwd: PROJECT_ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: dir },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /^\s+(http:\/\/\S+)$/m.exec(out);
          if (m) resolve(m[1] as string);
        });
        void exited.then(() => reject(new Error(`tessera login exited early: ${out}${err}`)));
      });
      const callbackPort = Number(new URL(url).searchParams.get('callbackPort'));
      expect(callbackPort).toBeGreaterThanOrEqual(1024);

      const page = await (await newBrowser()).newPage();
      await page.goto(url);
      expect(await completeAtProvider(page)).toBe(302);
      expect(page.url()).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${callbackPort}/callback\\?token=`));
      expect(await page.textContent('#status')).toContain('You are signed in');
      expect(await exited, err).toBe(0);
      expect(out).toContain('Signed in as');

      expect(statSync(credentials).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, 'nested')).mode & 0o777).toBe(0o700);
      const creds = JSON.parse(readFileSync(credentials, 'utf8')) as { userSessionToken: string; refreshToken: string; tenantId: string };
      expect(creds.tenantId).toBe(world.tenantId);
      const me = await fetch(`${world.tesseraUrl}/api/v1/session`, { headers: { authorization: `Bearer ${creds.userSessionToken}` } });
      expect(me.status).toBe(200);
      expect(out + err).not.toContain(creds.refreshToken);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // Only on Redis (defined, not skipped: CI counts skipped tests as failures).
  if (storeChoice === 'redis') it('Redis: the flow is an oidc-session: key with a TTL of at most 600 s while the browser is at the provider, gone after the callback', async () => {
    const page = await (await newBrowser()).newPage();
    const stateSeen = nextState(page);
    await page.goto(loginUrl());
    const key = `${world.redisPrefix}oidc-session:${hashSecret(await stateSeen)}`;
    const pttl = Number(await redis(['PTTL', key]));
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(600_000);
    expect(await completeAtProvider(page)).toBe(302);
    expect((await redeemed(page)).state).toBe('ok');
    expect(Number(await redis(['EXISTS', key]))).toBe(0);
  });
});

async function redis(args: string[]): Promise<unknown> {
  const conn = await openConnection(parseRedisUrl(redisTestUrl()), { connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
  try {
    return await conn.send(args[1], args);
  } finally {
    await conn.close();
  }
}
