// Tessera's token API as generic OAuth clients use it: POST /api/v1/auth/revoke (RFC 7009) and
// POST /api/v1/auth/introspect (RFC 7662) with form-encoded bodies; a registered application
// authenticates with client_secret_basic or client_secret_post (openid-client does both, over
// HTTP), a public application revokes with its client_id, administrators keep working; an
// application reaches its own tenant's tokens only; errors are RFC 6749 §5.2 objects.

import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admin, provision, startTestServer, uniqueTenant, type TestServer } from '../support/harness.ts';
import { storeChoices } from '../support/store-choices.ts';

const SECRET_A = 'token-api-secret-a-'.padEnd(40, 'a');
const SECRET_B = 'token-api-secret-b-'.padEnd(40, 'b');
const PASSWORD = 'correct horse battery';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

describe.each(storeChoices({ cluster: true }))('token API for OAuth clients (%s)', (storeChoice) => {
  let s: TestServer;
  let base: string;
  const tenantA = uniqueTenant();
  const tenantB = uniqueTenant();
  const appA = `rs-a-${tenantA}`;
  const publicA = `spa-a-${tenantA}`;
  const appB = `rs-b-${tenantB}`;

  beforeAll(async () => {
    s = await startTestServer({ store: storeChoice });
    await provision(s.app, tenantA, 'a@example.com', PASSWORD);
    await provision(s.app, tenantB, 'b@example.com', PASSWORD);
    for (const [clientId, tenantId, clientSecret] of [
      [appA, tenantA, SECRET_A],
      [publicA, tenantA, null],
      [appB, tenantB, SECRET_B],
    ] as const) {
      const r = await s.app.inject({ method: 'PUT', url: `/api/v1/admin/apps/${clientId}`, headers: admin, payload: { tenantId, redirectUris: ['https://app.example.com/cb'], clientSecret } });
      expect(r.statusCode, r.body).toBe(200);
    }
    base = await s.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await s?.close();
  });

  async function login(tenantId: string, email: string): Promise<{ userSessionToken: string; refreshToken: string; sessionId: string }> {
    const r = await s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email, password: PASSWORD } });
    expect(r.statusCode, r.body).toBe(200);
    return r.json();
  }

  const post = (path: 'revoke' | 'introspect', form: Record<string, string>, headers: Record<string, string> = {}) =>
    s.app.inject({ method: 'POST', url: `/api/v1/auth/${path}`, headers: { ...FORM, ...headers }, payload: new URLSearchParams(form).toString() });

  /** An openid-client configuration for Tessera's token API (the endpoints as metadata). */
  const client = (clientId: string, auth: oidc.ClientAuth) => {
    const config = new oidc.Configuration(
      { issuer: base, introspection_endpoint: `${base}/api/v1/auth/introspect`, revocation_endpoint: `${base}/api/v1/auth/revoke` },
      clientId,
      undefined,
      auth,
    );
    oidc.allowInsecureRequests(config);
    return config;
  };

  it('client_secret_basic and client_secret_post (openid-client): introspection of a userSessionToken and of a refresh token, then revocation', async () => {
    for (const auth of [oidc.ClientSecretBasic(SECRET_A), oidc.ClientSecretPost(SECRET_A)]) {
      const pair = await login(tenantA, 'a@example.com');
      const config = client(appA, auth);
      const at = await oidc.tokenIntrospection(config, pair.userSessionToken);
      expect(at).toMatchObject({ active: true, token_type: 'Bearer', sid: pair.sessionId, tid: tenantA });
      const rt = await oidc.tokenIntrospection(config, pair.refreshToken, { token_type_hint: 'refresh_token' });
      expect(rt).toMatchObject({ active: true, sid: pair.sessionId, tid: tenantA });
      // A refresh token is not an access token: no token_type.
      expect(rt).not.toHaveProperty('token_type');
      await oidc.tokenRevocation(config, pair.refreshToken, { token_type_hint: 'refresh_token' });
      expect(await oidc.tokenIntrospection(config, pair.userSessionToken)).toEqual({ active: false });
    }
  });

  it('a public application revokes with its client_id (openid-client, none); it may not introspect', async () => {
    const pair = await login(tenantA, 'a@example.com');
    const config = client(publicA, oidc.None());
    await expect(oidc.tokenIntrospection(config, pair.userSessionToken)).rejects.toThrow();
    const intro = await post('introspect', { token: pair.userSessionToken, client_id: publicA });
    expect(intro.statusCode).toBe(401);
    expect(intro.json()).toMatchObject({ error: 'invalid_client' });
    await oidc.tokenRevocation(config, pair.refreshToken);
    expect((await post('introspect', { token: pair.userSessionToken }, { authorization: basic(appA, SECRET_A) })).json()).toEqual({ active: false });
    // An unknown client_id is refused, and revokes nothing.
    const other = await login(tenantA, 'a@example.com');
    const unknown = await post('revoke', { token: other.refreshToken, client_id: 'nobody-here' });
    expect(unknown.statusCode).toBe(401);
    expect(unknown.json()).toMatchObject({ error: 'invalid_client' });
    expect((await post('introspect', { token: other.userSessionToken }, { authorization: basic(appA, SECRET_A) })).json()).toMatchObject({ active: true });
  });

  it('a wrong secret is 401 invalid_client (an RFC 6749 error object, a Basic challenge when Basic was tried); nothing is revoked', async () => {
    const pair = await login(tenantA, 'a@example.com');
    for (const [form, headers] of [
      [{ token: pair.userSessionToken }, { authorization: basic(appA, `${SECRET_A}x`) }],
      [{ token: pair.userSessionToken, client_id: appA, client_secret: `${SECRET_A}x` }, {}],
      [{ token: pair.userSessionToken, client_id: appA }, {}],
      [{ token: pair.userSessionToken }, { authorization: basic(appA, SECRET_B) }],
      [{ token: pair.userSessionToken }, { authorization: 'Basic %%%not-base64' }],
      [{ token: pair.userSessionToken }, { authorization: `Basic ${Buffer.from('no-colon').toString('base64')}` }],
    ] as Array<[Record<string, string>, Record<string, string>]>) {
      for (const path of ['introspect', 'revoke'] as const) {
        const r = await post(path, form, headers);
        expect(r.statusCode, `${path} ${JSON.stringify(form)} ${JSON.stringify(headers)}`).toBe(401);
        expect(r.headers['content-type']).toMatch(/^application\/json/);
        expect(r.json()).toMatchObject({ error: 'invalid_client' });
        if (headers.authorization) expect(r.headers['www-authenticate']).toMatch(/^Basic /);
      }
    }
    expect((await post('introspect', { token: pair.userSessionToken }, { authorization: basic(appA, SECRET_A) })).json()).toMatchObject({ active: true });
  });

  it("another tenant's application: introspection says active:false, revocation ends nothing", async () => {
    const pair = await login(tenantA, 'a@example.com');
    const asB = { authorization: basic(appB, SECRET_B) };
    expect((await post('introspect', { token: pair.userSessionToken }, asB)).json()).toEqual({ active: false });
    expect((await post('introspect', { token: pair.refreshToken }, asB)).json()).toEqual({ active: false });
    const revoke = await post('revoke', { token: pair.refreshToken }, asB);
    expect(revoke.statusCode).toBe(200);
    expect((await post('introspect', { token: pair.userSessionToken }, { authorization: basic(appA, SECRET_A) })).json()).toMatchObject({ active: true });
    // Its own tenant's token: it may.
    const own = await login(tenantB, 'b@example.com');
    expect((await post('introspect', { token: own.userSessionToken }, asB)).json()).toMatchObject({ active: true, tid: tenantB });
  });

  it('administrators keep working; a user without the admin role is 403 insufficient_scope; an anonymous introspection is 401', async () => {
    const pair = await login(tenantA, 'a@example.com');
    expect((await post('introspect', { token: pair.userSessionToken }, admin)).json()).toMatchObject({ active: true, tid: tenantA });
    const json = await s.app.inject({ method: 'POST', url: '/api/v1/auth/introspect', headers: admin, payload: { token: pair.refreshToken } });
    expect(json.json()).toMatchObject({ active: true });
    const asUser = await post('introspect', { token: pair.userSessionToken }, { authorization: `Bearer ${pair.userSessionToken}` });
    expect(asUser.statusCode).toBe(403);
    expect(asUser.json()).toMatchObject({ error: 'insufficient_scope' });
    const anonymous = await post('introspect', { token: pair.userSessionToken });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json()).toMatchObject({ error: 'invalid_client' });
    const badBearer = await post('introspect', { token: pair.userSessionToken }, { authorization: 'Bearer not-a-credential' });
    expect(badBearer.statusCode).toBe(401);
    expect(badBearer.json()).toMatchObject({ error: 'invalid_client' });
    // Anyone holding a token may still revoke it (RFC 7009 without client authentication).
    expect((await post('revoke', { token: pair.refreshToken })).statusCode).toBe(200);
    expect((await post('introspect', { token: pair.userSessionToken }, admin)).json()).toEqual({ active: false });
  });

  it('malformed requests are 400 invalid_request error objects, not problem documents', async () => {
    const pair = await login(tenantA, 'a@example.com');
    const asA = { authorization: basic(appA, SECRET_A) };
    const cases: Array<[string, Awaited<ReturnType<typeof post>>]> = [
      ['no token', await post('introspect', {}, asA)],
      ['unknown field', await post('introspect', { token: pair.userSessionToken, foo: 'bar' }, asA)],
      ['two methods', await post('introspect', { token: pair.userSessionToken, client_secret: SECRET_A }, asA)],
      ['secret without id', await post('revoke', { token: pair.userSessionToken, client_secret: SECRET_A })],
      ['client_id differs from Basic', await post('introspect', { token: pair.userSessionToken, client_id: appB }, asA)],
      ['duplicated field', await s.app.inject({ method: 'POST', url: '/api/v1/auth/revoke', headers: FORM, payload: 'token=a&token=b' })],
    ];
    for (const [what, r] of cases) {
      expect(r.statusCode, what).toBe(400);
      expect(r.headers['content-type'], what).toMatch(/^application\/json/);
      const body = r.json() as { error: string; error_description?: string };
      expect(body.error, what).toBe('invalid_request');
      expect(body.error_description ?? '', what).toMatch(/^[\x20\x21\x23-\x5b\x5d-\x7e]*$/);
    }
    expect((await post('introspect', { token: pair.userSessionToken }, asA)).json()).toMatchObject({ active: true });
  });
});
