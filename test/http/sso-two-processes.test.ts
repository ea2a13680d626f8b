// The SSO one-time token and its app session across two Tessera processes on one store (two
// servers, each with its own store instance and session cache, behind one public URL): the
// callback on one, the exchange on the other. Neither process may answer from memory for what the
// other changed without an end: the token (consumed by the exchange; on Redis its end is not
// published) and the pending app session (activated by the exchange, which is no end).
// test/store/sso-token-end.test.ts holds the same below HTTP.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { openStore, type Store } from '../../src/store/open.ts';
import { ADMIN_TOKEN, COOKIE_SECRET, startListeningTestServer, type TestServer } from '../support/harness.ts';
import { storeChoices } from '../support/store-choices.ts';
import { loginAtProvider, MiniBrowser, startSsoWorld, type SsoWorld } from '../support/sso-world.ts';

const ALICE = { login: 'alice', password: 'wonderland' };

describe.each(storeChoices())('SSO across two processes (%s)', (storeChoice) => {
  let world: SsoWorld;
  let storeB: Store;
  let b: TestServer & { url: string };

  beforeAll(async () => {
    world = await startSsoWorld({ store: storeChoice });
    // B: a store instance of its own on A's data, and A's public URL (the provider's redirect URIs).
    storeB = await openStore(
      loadConfig({
        TESSERA_STORE: world.storeConfig.url,
        ...(world.redisPrefix !== null ? { TESSERA_REDIS_PREFIX: world.redisPrefix } : {}),
        COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET,
        TESSERA_ADMIN_TOKEN: ADMIN_TOKEN,
      }),
    );
    b = await startListeningTestServer(() => ({
      sharedStore: storeB,
      clock: world.clock,
      env: { TESSERA_PUBLIC_URL: world.tesseraUrl, TESSERA_DEV_ALLOW_HTTP_LOOPBACK: '1' },
    }));
  });
  afterAll(async () => {
    await b?.close();
    await storeB?.close();
    await world?.close();
  });

  /** A login whose callback runs on `server`: the browser and the one-time token. */
  async function signInVia(server: string): Promise<{ browser: MiniBrowser; token: string }> {
    const browser = new MiniBrowser();
    const callback = new URL(await loginAtProvider(browser, world, `${world.tesseraUrl}/api/v1/sso/oidc/login?orgSlug=${world.orgSlug}`, ALICE));
    const r = await browser.get(`${server}${callback.pathname}${callback.search}`);
    expect(r.status, await r.clone().text()).toBe(302);
    const token = new URL(r.headers.get('location') as string, server).searchParams.get('token');
    if (token === null) throw new Error('no one-time token');
    return { browser, token };
  }

  function exchange(server: string, browser: MiniBrowser, token: string, mode: 'token' | 'cookie' = 'token'): Promise<Response> {
    return browser.request(`${server}/api/v1/sso/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(mode === 'cookie' ? { 'x-auth-mode': 'cookie', origin: world.tesseraUrl } : {}) },
      body: JSON.stringify({ token }),
    });
  }

  const sessionOn = (server: string, headers: Record<string, string>) => fetch(`${server}/api/v1/session`, { headers });

  it('the token as a cookie on B is refused; exchanged on A; its replay on B is refused', async () => {
    const { browser, token } = await signInVia(world.tesseraUrl);
    // B reads the token's record by its hash (a flow record: no session; nothing kept).
    expect((await sessionOn(b.url, { cookie: `__Host-sid=${token}` })).status).toBe(401);
    expect((await exchange(world.tesseraUrl, browser, token)).status).toBe(200);
    const replay = await exchange(b.url, browser, token);
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as { code: string }).code).toBe('invalid_sso_token');
    expect((await sessionOn(b.url, { cookie: `__Host-sid=${token}` })).status).toBe(401);
  });

  it('callback on B, token-mode exchange on A: B answers the activated session, not the pending one', async () => {
    const { browser, token } = await signInVia(b.url);
    world.clock.advance(1_000);
    const r = await exchange(world.tesseraUrl, browser, token);
    expect(r.status).toBe(200);
    const { userSessionToken } = (await r.json()) as { userSessionToken: string };
    const bearer = { authorization: `Bearer ${userSessionToken}` };
    const onA = await sessionOn(world.tesseraUrl, bearer);
    const onB = await sessionOn(b.url, bearer);
    expect(onA.status).toBe(200);
    expect(onB.status).toBe(200);
    const [a, bAnswer] = (await Promise.all([onA.json(), onB.json()])) as [Record<string, unknown>, Record<string, unknown>];
    expect(a.mode).toBe('token');
    expect(bAnswer).toEqual(a);
  });

  it('callback on B, cookie-mode exchange on A: B answers the cookie from the store', async () => {
    const { browser, token } = await signInVia(b.url);
    world.clock.advance(1_000);
    expect((await exchange(world.tesseraUrl, browser, token, 'cookie')).status).toBe(200);
    const sid = browser.cookies.get('__Host-sid');
    expect(sid).toBeDefined();
    const onB = await sessionOn(b.url, { cookie: `__Host-sid=${sid}` });
    expect(onB.status).toBe(200);
    expect(((await onB.json()) as { mode: string }).mode).toBe('cookie');
  });
});
