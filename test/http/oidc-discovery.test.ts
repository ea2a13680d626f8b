// Tessera's discovery document (/oidc/.well-known/openid-configuration) says only what works:
// an openid-client relying party walks it and exercises every advertised response type (in
// every advertised response mode), grant type, scope, client authentication method and ID token
// signing algorithm — anything advertised that this test does not know how to exercise fails it.
// Endpoint URLs come from TESSERA_PUBLIC_URL whatever Host / X-Forwarded-Host say; discovery and
// JWKS carry Cache-Control. Over HTTP with the real external provider, on SQLite.

import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admin } from '../support/harness.ts';
import { loginAtProvider, MiniBrowser, startSsoWorld, type SsoWorld } from '../support/sso-world.ts';

const SECRET = 'discovery-secret-'.padEnd(40, 'x');
const ALICE = { login: 'alice', password: 'wonderland' };

describe('the discovery document of /oidc, exercised', () => {
  let world: SsoWorld;
  let metadata: Record<string, unknown>;
  const browser = new MiniBrowser();
  const redirect = (name: string) => `http://127.0.0.1:9/${name}/callback`;

  async function register(name: string, payload: Record<string, unknown>): Promise<string> {
    const clientId = `${name}-${world.tenantId}`;
    const r = await world.server.app.inject({
      method: 'PUT',
      url: `/api/v1/admin/apps/${clientId}`,
      headers: admin,
      payload: { tenantId: world.tenantId, redirectUris: [redirect(name)], orgSlug: world.orgSlug, ...payload },
    });
    expect(r.statusCode, r.body).toBe(200);
    return clientId;
  }

  beforeAll(async () => {
    world = await startSsoWorld({ store: 'sqlite' });
    const r = await fetch(`${world.tesseraUrl}/oidc/.well-known/openid-configuration`);
    expect(r.status).toBe(200);
    metadata = (await r.json()) as Record<string, unknown>;
  });
  afterAll(async () => {
    await world?.close();
  });

  const list = (key: string) => {
    const v = metadata[key];
    expect(Array.isArray(v), `${key} is a list`).toBe(true);
    return v as string[];
  };

  interface Flow {
    clientId: string;
    name: string;
    auth: oidc.ClientAuth;
    responseType?: string;
    responseMode?: string;
    scope?: string;
    /** The client metadata openid-client checks the ID token against. */
    alg?: string;
  }

  /** One sign-in by the authorization code flow; returns the token response. */
  async function signIn(f: Flow) {
    const config = await oidc.discovery(new URL(`${world.tesseraUrl}/oidc`), f.clientId, f.alg ? { id_token_signed_response_alg: f.alg } : undefined, f.auth, {
      execute: [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks],
    });
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirect(f.name),
      scope: f.scope ?? 'openid',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...(f.responseType ? { response_type: f.responseType } : {}),
      ...(f.responseMode ? { response_mode: f.responseMode } : {}),
    });
    const isApp = (u: URL) => u.href.startsWith(redirect(f.name));
    const isProvider = (u: URL) => u.origin === world.idp.issuer;
    let at = await browser.follow(url.href, (u) => isApp(u) || isProvider(u));
    if (isProvider(new URL(at.url))) {
      const callback = await loginAtProvider(browser, world, at.url, ALICE);
      at = await browser.follow(callback, isApp);
    }
    let response: URL | Request;
    if (isApp(new URL(at.url))) {
      const u = new URL(at.url);
      // The fragment response mode: what the application's page script would read.
      response = u.hash !== '' ? new URL(`${u.origin}${u.pathname}?${u.hash.slice(1)}`) : u;
    } else {
      // The form_post response mode: an auto-submitting form to the redirect URI.
      const html = await at.response.text();
      expect(at.response.status, html).toBe(200);
      const form = /<form method="post" action="([^"]+)"/.exec(html);
      expect(form?.[1], html).toBe(redirect(f.name));
      const fields = new URLSearchParams([...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"\s*\/?>/g)].map((m): [string, string] => [m[1]!, m[2]!]));
      response = new Request(redirect(f.name), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: fields.toString() });
    }
    return oidc.authorizationCodeGrant(config, response, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true });
  }

  it('every endpoint URL is built from TESSERA_PUBLIC_URL, never from Host or X-Forwarded-Host; discovery and JWKS may be cached', async () => {
    const { app } = world.server;
    for (const headers of [{ host: 'evil.example:666' }, { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' }, { forwarded: 'host=evil.example;proto=https' }]) {
      const r = await app.inject({ method: 'GET', url: '/oidc/.well-known/openid-configuration', headers });
      expect(r.statusCode).toBe(200);
      const doc = r.json() as Record<string, unknown>;
      const urls = Object.entries(doc).filter(([k, v]) => typeof v === 'string' && (k.endsWith('_endpoint') || k.endsWith('_uri') || k === 'issuer'));
      expect(urls.length).toBeGreaterThanOrEqual(6);
      for (const [k, v] of urls) expect(v, k).toMatch(new RegExp(`^${world.tesseraUrl.replace(/[.]/g, '\\.')}/oidc(/|$)`));
      expect(r.headers['cache-control']).toBe('public, max-age=300');
    }
    const jwks = await fetch(`${world.tesseraUrl}/oidc/jwks`);
    expect(jwks.headers.get('cache-control')).toBe('public, max-age=300');
    const keys = ((await jwks.json()) as { keys: Array<{ alg: string; d?: string }> }).keys;
    expect(keys.map((k) => k.alg).sort()).toEqual(['ES256', 'RS256']);
    expect(keys.every((k) => k.d === undefined)).toBe(true);
    // Per-request answers are not cacheable.
    const auth = await fetch(`${world.tesseraUrl}/oidc/auth?client_id=nobody`, { redirect: 'manual' });
    expect(auth.headers.get('cache-control')).toBe('no-store');
  });

  it('RS256 is supported as OpenID Connect Discovery requires, and is the default; an application may choose ES256 (its back-channel logout tokens follow: oidc-provider.test.ts)', async () => {
    const algs = list('id_token_signing_alg_values_supported');
    expect(algs).toContain('RS256');
    const byDefault = await register('alg-default', { clientSecret: SECRET });
    const r = await world.server.app.inject({ method: 'GET', url: `/api/v1/admin/apps/${byDefault}`, headers: admin });
    expect(r.json()).toMatchObject({ idTokenSignedResponseAlg: 'RS256', tokenEndpointAuthMethod: 'client_secret_basic' });
    const plain = await signIn({ clientId: byDefault, name: 'alg-default', auth: oidc.ClientSecretBasic(SECRET) });
    expect(decodeProtectedHeader(plain.id_token!).alg).toBe('RS256');
    for (const alg of algs) {
      const name = `alg-${alg.toLowerCase()}`;
      const clientId = await register(name, { clientSecret: SECRET, idTokenSignedResponseAlg: alg });
      const tokens = await signIn({ clientId, name, auth: oidc.ClientSecretBasic(SECRET), alg });
      expect(decodeProtectedHeader(tokens.id_token!).alg).toBe(alg);
      const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri as string));
      await jwtVerify(tokens.id_token!, jwks, { issuer: metadata.issuer as string, audience: clientId, algorithms: [alg] });
    }
    const bad = await world.server.app.inject({
      method: 'PUT',
      url: '/api/v1/admin/apps/alg-bad',
      headers: admin,
      payload: { tenantId: world.tenantId, redirectUris: [redirect('x')], idTokenSignedResponseAlg: 'HS256' },
    });
    expect(bad.statusCode).toBe(400);
  });

  it('every advertised response type works in every advertised response mode', async () => {
    const clientId = await register('modes', { clientSecret: SECRET });
    const types = list('response_types_supported');
    const modes = list('response_modes_supported');
    expect(types).toEqual(['code']);
    for (const responseType of types) {
      for (const responseMode of modes) {
        const tokens = await signIn({ clientId, name: 'modes', auth: oidc.ClientSecretBasic(SECRET), responseType, responseMode });
        expect(tokens.claims()!.aud, `${responseType} / ${responseMode}`).toBe(clientId);
      }
    }
  });

  it('every advertised grant type works (and no refresh_token or implicit is advertised)', async () => {
    const clientId = await register('grants', { clientSecret: SECRET });
    const grants = list('grant_types_supported');
    for (const grant of grants) {
      switch (grant) {
        case 'authorization_code': {
          const tokens = await signIn({ clientId, name: 'grants', auth: oidc.ClientSecretBasic(SECRET) });
          expect(tokens.access_token).toBeTruthy();
          expect(tokens.refresh_token).toBeUndefined();
          break;
        }
        default:
          throw new Error(`discovery advertises the grant type ${grant}, which this test does not exercise`);
      }
    }
    expect(grants).not.toContain('refresh_token');
    expect(grants).not.toContain('implicit');
  });

  it('every advertised scope is granted and has its effect; offline_access is not advertised', async () => {
    const clientId = await register('scopes', { clientSecret: SECRET });
    const scopes = list('scopes_supported');
    expect(scopes).not.toContain('offline_access');
    for (const scope of scopes) {
      const tokens = await signIn({ clientId, name: 'scopes', auth: oidc.ClientSecretBasic(SECRET), scope: scope === 'openid' ? 'openid' : `openid ${scope}` });
      expect(tokens.scope?.split(' '), scope).toContain(scope);
      const claims = tokens.claims()!;
      switch (scope) {
        case 'openid':
          expect(typeof claims.sub).toBe('string');
          expect(claims.email).toBeUndefined();
          break;
        case 'email': {
          // In the ID token itself (relying parties that read only the ID token), and in userinfo.
          expect(claims).toMatchObject({ email: 'alice@example.com', email_verified: true });
          const config = await oidc.discovery(new URL(`${world.tesseraUrl}/oidc`), clientId, undefined, oidc.ClientSecretBasic(SECRET), { execute: [oidc.allowInsecureRequests] });
          expect(await oidc.fetchUserInfo(config, tokens.access_token, claims.sub)).toMatchObject({ email: 'alice@example.com' });
          break;
        }
        default:
          throw new Error(`discovery advertises the scope ${scope}, which this test does not exercise`);
      }
    }
    // The defaults of express-openid-connect and Auth.js ask for `openid profile email`: an
    // unsupported scope is left out of the grant, not an error.
    const defaults = await signIn({ clientId, name: 'scopes', auth: oidc.ClientSecretBasic(SECRET), scope: 'openid profile email' });
    expect(defaults.scope?.split(' ').sort()).toEqual(['email', 'openid']);
    expect(defaults.claims()!.email).toBe('alice@example.com');
  });

  /** The token endpoint refused the client: 400/401 with error invalid_client (in the body or the challenge). */
  async function expectInvalidClient(p: Promise<unknown>) {
    const err = await p.then(
      () => null,
      (e: unknown) => e as { error?: string; cause?: unknown; status?: number },
    );
    expect(err, 'the token request was not refused').not.toBeNull();
    expect(JSON.stringify({ error: err!.error, cause: err!.cause })).toContain('invalid_client');
  }

  it('every advertised client authentication method works at the token endpoint; a wrong secret is refused', async () => {
    const methods = list('token_endpoint_auth_methods_supported');
    const confidential = await register('auth-secret', { clientSecret: SECRET });
    for (const method of methods) {
      switch (method) {
        case 'client_secret_basic':
        case 'client_secret_post': {
          const auth = (secret: string) => (method === 'client_secret_basic' ? oidc.ClientSecretBasic(secret) : oidc.ClientSecretPost(secret));
          expect((await signIn({ clientId: confidential, name: 'auth-secret', auth: auth(SECRET) })).access_token, method).toBeTruthy();
          await expectInvalidClient(signIn({ clientId: confidential, name: 'auth-secret', auth: auth(`${SECRET}-wrong`) }));
          break;
        }
        case 'none': {
          const name = 'auth-none';
          const clientId = await register(name, { clientSecret: null });
          expect((await signIn({ clientId, name, auth: oidc.None() })).access_token).toBeTruthy();
          // A confidential application may not go without its secret.
          await expectInvalidClient(signIn({ clientId: confidential, name: 'auth-secret', auth: oidc.None() }));
          break;
        }
        default:
          throw new Error(`discovery advertises the client authentication method ${method}, which this test does not exercise`);
      }
    }
  });

  it('the advertised userinfo and revocation endpoints work', async () => {
    const clientId = await register('endpoints', { clientSecret: SECRET });
    const tokens = await signIn({ clientId, name: 'endpoints', auth: oidc.ClientSecretBasic(SECRET), scope: 'openid email' });
    const config = await oidc.discovery(new URL(`${world.tesseraUrl}/oidc`), clientId, undefined, oidc.ClientSecretBasic(SECRET), { execute: [oidc.allowInsecureRequests] });
    const sub = tokens.claims()!.sub;
    expect((await oidc.fetchUserInfo(config, tokens.access_token, sub)).sub).toBe(sub);
    expect(metadata.revocation_endpoint).toBe(`${world.tesseraUrl}/oidc/token/revocation`);
    await oidc.tokenRevocation(config, tokens.access_token);
    await expect(oidc.fetchUserInfo(config, tokens.access_token, sub)).rejects.toThrow();
  });
});
