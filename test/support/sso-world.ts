// An SSO test world: the external identity provider (test/support/oidc-idp.ts) and Tessera
// in-process, both listening on 127.0.0.1 (ports without races: test/support/ports.ts), Tessera with
// TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1 and a tenant with an OIDC organization and an OAuth 2.0
// organization on that provider. Plus a tiny cookie-keeping HTTP client that walks redirects
// one at a time, for tests that do not need a real browser.

import type { Config } from '../../src/config/config.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { admin, openTestStore, startListeningTestServer, uniqueTenant, type StoreChoice, type TestServer } from './harness.ts';
import { startTestIdp, type TestIdp } from './oidc-idp.ts';

export const OAUTH_PROVIDER = 'testidp';

export interface SsoWorld {
  idp: TestIdp;
  server: TestServer;
  clock: ManualClock;
  tesseraUrl: string;
  tenantId: string;
  /** An OIDC organization (link by verified email off). */
  orgSlug: string;
  /** A plain OAuth 2.0 organization on the same provider (link by verified email on). */
  oauthOrgSlug: string;
  /** The store's Redis key prefix, or null on SQLite. */
  redisPrefix: string | null;
  /** Where the store is (URL, kind, SQLite path), for tests that read it raw. */
  storeConfig: Config['store'];
  close(): Promise<void>;
}

export async function startSsoWorld(opts: { store?: StoreChoice; env?: Record<string, string> } = {}): Promise<SsoWorld> {
  const clock = new ManualClock(Date.now());
  const opened = await openTestStore(opts.store ?? 'sqlite');
  // Tessera first: its URL is in its own configuration; the provider, bound first itself, learns
  // Tessera's callbacks as its client's redirect URIs.
  const server = await startListeningTestServer((url) => ({
    sharedStore: opened.store,
    clock,
    env: { TESSERA_PUBLIC_URL: url, TESSERA_DEV_ALLOW_HTTP_LOOPBACK: '1', ...opts.env },
  }));
  const tesseraUrl = server.url;
  const idp = await startTestIdp({
    redirectUris: [`${tesseraUrl}/api/v1/sso/oidc/callback`, `${tesseraUrl}/api/v1/sso/oauth/${OAUTH_PROVIDER}/callback`],
  });

  const tenantId = uniqueTenant();
  const t = await server.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${tenantId}`, headers: admin, payload: { profile: 'integration' } });
  if (t.statusCode !== 200) throw new Error(`tenant: ${t.statusCode} ${t.body}`);
  const orgSlug = `acme-${tenantId.slice(2)}`;
  const o = await server.app.inject({
    method: 'PUT',
    url: `/api/v1/admin/orgs/${orgSlug}`,
    headers: admin,
    payload: { tenantId, oidc: { issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret } },
  });
  if (o.statusCode !== 200) throw new Error(`org: ${o.statusCode} ${o.body}`);
  const oauthOrgSlug = `acme-oauth-${tenantId.slice(2)}`;
  const oa = await server.app.inject({
    method: 'PUT',
    url: `/api/v1/admin/orgs/${oauthOrgSlug}`,
    headers: admin,
    payload: {
      tenantId,
      linkVerifiedEmail: true,
      oauth: {
        provider: OAUTH_PROVIDER,
        authorizationEndpoint: `${idp.issuer}/auth`,
        tokenEndpoint: `${idp.issuer}/token`,
        userinfoEndpoint: `${idp.issuer}/me`,
        clientId: idp.clientId,
        clientSecret: idp.clientSecret,
        // The test provider is an OpenID provider; its user document is the userinfo.
        scopes: ['openid', 'email'],
        issuer: idp.issuer,
        mapping: { subject: 'sub', email: 'email', emailVerified: 'email_verified' },
      },
    },
  });
  if (oa.statusCode !== 200) throw new Error(`oauth org: ${oa.statusCode} ${oa.body}`);

  return {
    idp,
    server,
    clock,
    tesseraUrl,
    tenantId,
    orgSlug,
    oauthOrgSlug,
    redisPrefix: opened.config.store.kind === 'sqlite' || opened.config.store.kind === 'postgres' ? null : opened.config.redisPrefix,
    storeConfig: opened.config.store,
    async close() {
      await server.close();
      await idp.close();
      await opened.store.close();
      await opened.cleanup();
    },
  };
}

/**
 * A minimal browser for tests: keeps cookies (by name; every test host is 127.0.0.1, so the port
 * does not separate them, as in a real browser) and follows nothing by itself.
 */
export class MiniBrowser {
  readonly cookies = new Map<string, string>();
  /** Sent with every request (say, an `X-Forwarded-For` a client makes up). */
  readonly extraHeaders: Record<string, string>;

  constructor(extraHeaders: Record<string, string> = {}) {
    this.extraHeaders = extraHeaders;
  }

  async get(url: string): Promise<Response> {
    return this.request(url, { method: 'GET' });
  }

  async post(url: string, form: Record<string, string>): Promise<Response> {
    return this.request(url, {
      method: 'POST',
      body: new URLSearchParams(form).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
  }

  async request(url: string, init: RequestInit): Promise<Response> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const headers = new Headers(init.headers);
    for (const [k, v] of Object.entries(this.extraHeaders)) headers.set(k, v);
    headers.set('accept', 'text/html');
    if (cookie !== '') headers.set('cookie', cookie);
    const r = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of r.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';');
      const eq = (pair as string).indexOf('=');
      const name = (pair as string).slice(0, eq).trim();
      const value = (pair as string).slice(eq + 1).trim();
      if (value === '' || attrs.some((a) => /^\s*max-age=0\s*$/i.test(a))) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return r;
  }

  /** Follows redirects from `url` until a non-redirect answer, or until `stop(url)` says so. */
  async follow(url: string, stop: (next: URL) => boolean = () => false): Promise<{ url: string; response: Response }> {
    let current = url;
    for (let i = 0; i < 20; i++) {
      const r = await this.get(current);
      const loc = r.headers.get('location');
      if (r.status < 300 || r.status >= 400 || loc === null) return { url: current, response: r };
      const next = new URL(loc, current);
      if (stop(next)) return { url: next.href, response: r };
      current = next.href;
    }
    throw new Error('too many redirects');
  }
}

/**
 * Walks a login at the test provider: from Tessera's login URL through the provider's login and
 * consent forms, up to (not into) the redirect back to Tessera's callback. Returns that callback URL.
 */
export async function loginAtProvider(
  browser: MiniBrowser,
  world: Pick<SsoWorld, 'idp' | 'tesseraUrl'>,
  loginUrl: string,
  account: { login: string; password: string },
  consent: 'allow' | 'deny' = 'allow',
): Promise<string> {
  const isCallback = (u: URL) => u.origin === world.tesseraUrl && u.pathname.endsWith('/callback');
  let at = await browser.follow(loginUrl, isCallback);
  for (let step = 0; step < 5; step++) {
    if (isCallback(new URL(at.url))) return at.url;
    const html = await at.response.text();
    if (at.response.status !== 200) throw new Error(`provider answered ${at.response.status}: ${html.slice(0, 300)}`);
    const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
    if (!action) throw new Error(`no form at ${at.url}: ${html.slice(0, 300)}`);
    const target = new URL(action, at.url).href;
    const r = html.includes('name="login"')
      ? await browser.post(target, { action: 'login', login: account.login, password: account.password })
      : await browser.post(target, { action: consent });
    const loc = r.headers.get('location');
    if (loc === null) throw new Error(`the provider did not redirect after the form: ${r.status} ${await r.text()}`);
    const next = new URL(loc, target);
    if (isCallback(next)) return next.href;
    at = await browser.follow(next.href, isCallback);
  }
  throw new Error('the provider never sent the browser back');
}
