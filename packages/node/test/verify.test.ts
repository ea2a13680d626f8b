// @tessera/node against Tessera as a real process (SQLite): verifySessionToken with valid,
// expired, tampered and other-tenant tokens, a revoked session with and without the
// introspection option, a key rotation; the Fastify and Express middleware.
// The package is imported as a consumer imports it (its built dist/, through the workspace link).

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import express from 'express';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TesseraAuthError, tessera, tesseraExpress, verifySessionToken, type VerifyOptions } from '@tessera/node';
import { CLI, freePort, startTessera, type TesseraProcess } from '../../../test/support/tessera-process.ts';

const ADMIN_TOKEN = 'node-verify-admin-' + 'a'.repeat(32);
const PASSWORD = 'correct horse battery';
const APP_SECRET = 'app-secret-' + 's'.repeat(40);
const stamp = Date.now().toString(36);
const ACME = `acme-${stamp}`;
const OTHER = `other-${stamp}`;
const SHORT = `short-${stamp}`;

let dir: string;
let env: Record<string, string>;
let server: TesseraProcess;
let base: string;

async function admin(method: string, path: string, body: unknown): Promise<void> {
  const r = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
}

interface Pair {
  userSessionToken: string;
  refreshToken: string;
  sessionId: string;
  customerId: string;
  tenantId: string;
}

async function login(tenant: string): Promise<Pair> {
  const r = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-tenant-id': tenant },
    body: JSON.stringify({ email: 'ada@example.com', password: PASSWORD }),
  });
  if (r.status !== 200) throw new Error(`login: ${r.status} ${await r.text()}`);
  return (await r.json()) as Pair;
}

async function refused(p: Promise<unknown>): Promise<TesseraAuthError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TesseraAuthError);
  return err as TesseraAuthError;
}

const opts = (o: Partial<VerifyOptions> = {}): VerifyOptions => ({ baseUrl: base, tenantId: ACME, ...o });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tessera-node-'));
  // The port the first start got stays in `env`: the key rotation test restarts on it.
  server = await startTessera((port) => {
    base = `http://127.0.0.1:${port}`;
    env = {
      TESSERA_PORT: String(port),
      TESSERA_PUBLIC_URL: base,
      TESSERA_STORE: `sqlite:${join(dir, 'tessera.db')}`,
      COOKIE_SECRET_SIGN_KEY: 'node-verify-cookie-' + 'c'.repeat(32),
      TESSERA_ADMIN_TOKEN: ADMIN_TOKEN,
      TESSERA_LOG_LEVEL: 'warn',
    };
    return env;
  });
  for (const [tenant, token] of [
    [ACME, 3600],
    [OTHER, 3600],
    [SHORT, 1],
  ] as const) {
    await admin('PUT', `/api/v1/admin/tenants/${tenant}`, { profile: 'integration', lifetimes: { token } });
    await admin('POST', '/api/v1/admin/users', { tenantId: tenant, email: 'ada@example.com', password: PASSWORD });
  }
  // Applications with a secret: the introspection credential of a resource server.
  const app = { redirectUris: ['https://reports.example.com/auth/callback'], clientSecret: APP_SECRET };
  await admin('PUT', `/api/v1/admin/apps/reports-${stamp}`, { tenantId: ACME, ...app });
  await admin('PUT', `/api/v1/admin/apps/other-app-${stamp}`, { tenantId: OTHER, ...app });
});

afterAll(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('verifySessionToken against a real Tessera', () => {
  it('a valid token gives its session, user, tenant and expiry', async () => {
    const pair = await login(ACME);
    const c = await verifySessionToken(pair.userSessionToken, opts());
    expect(c).toMatchObject({ sessionId: pair.sessionId, userId: pair.customerId, tenantId: ACME });
    expect(c.expiresAt).toBeGreaterThan(Date.now());
    expect(c.expiresAt - c.issuedAt).toBe(3600_000);
  });

  it('an expired token: token_expired', async () => {
    const pair = await login(SHORT);
    const { exp } = JSON.parse(Buffer.from(pair.userSessionToken.split('.')[1]!, 'base64url').toString()) as { exp: number };
    while (Date.now() < exp * 1000 + 100) await new Promise((r) => setTimeout(r, 100));
    const err = await refused(verifySessionToken(pair.userSessionToken, opts({ tenantId: SHORT })));
    expect(err.code).toBe('token_expired');
    expect(err.status).toBe(401);
  });

  it('a tampered token (claims or signature): invalid_token', async () => {
    const pair = await login(ACME);
    const [h, p, s] = pair.userSessionToken.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: 'someone-else' })).toString('base64url')}.${s}`;
    expect((await refused(verifySessionToken(forged, opts()))).code).toBe('invalid_token');
    const flipped = `${h}.${p}.${s.slice(0, 10)}${s[10] === 'A' ? 'B' : 'A'}${s.slice(11)}`;
    expect((await refused(verifySessionToken(flipped, opts()))).code).toBe('invalid_token');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${p}.`;
    expect((await refused(verifySessionToken(none, opts()))).code).toBe('invalid_token');
    // The genuine token is fine (so the refusals above are about the changes).
    await expect(verifySessionToken(pair.userSessionToken, opts())).resolves.toMatchObject({ tenantId: ACME });
  });

  it("another tenant's token: wrong_tenant (accepted where that tenant is listed)", async () => {
    const pair = await login(OTHER);
    expect((await refused(verifySessionToken(pair.userSessionToken, opts()))).code).toBe('wrong_tenant');
    await expect(verifySessionToken(pair.userSessionToken, opts({ tenantId: [ACME, OTHER] }))).resolves.toMatchObject({ tenantId: OTHER });
  });

  it('a token of another issuer (a different public URL): invalid_token', async () => {
    const pair = await login(ACME);
    const err = await refused(verifySessionToken(pair.userSessionToken, opts({ issuer: 'https://auth.example.com' })));
    expect(err.code).toBe('invalid_token');
  });

  it('a revoked session: still a valid signature, but refused with introspection by an app credential (basic and post; cache bounded)', async () => {
    const pair = await login(ACME);
    const basic = { clientId: `reports-${stamp}`, clientSecret: APP_SECRET, cacheSeconds: 0 };
    const post = { ...basic, authMethod: 'client_secret_post' as const };
    const admin = { bearer: ADMIN_TOKEN, cacheSeconds: 0 };
    for (const introspection of [basic, post, admin]) {
      await expect(verifySessionToken(pair.userSessionToken, opts({ introspection }))).resolves.toMatchObject({ sessionId: pair.sessionId });
    }
    const cached = { ...basic, cacheSeconds: 3600 };
    await verifySessionToken(pair.userSessionToken, opts({ introspection: cached }));

    const out = await fetch(`${base}/api/v1/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${pair.userSessionToken}` } });
    expect(out.status).toBe(204);

    // Without introspection the signature alone still holds until the token expires.
    await expect(verifySessionToken(pair.userSessionToken, opts())).resolves.toMatchObject({ sessionId: pair.sessionId });
    for (const introspection of [basic, post, admin]) {
      expect((await refused(verifySessionToken(pair.userSessionToken, opts({ introspection })))).code).toBe('session_ended');
    }
    // The cached answer is reused until its time is up (that is what the cache bound trades).
    await expect(verifySessionToken(pair.userSessionToken, opts({ introspection: cached }))).resolves.toMatchObject({ sessionId: pair.sessionId });
  });

  it("an application of another tenant cannot see this tenant's sessions: session_ended", async () => {
    const pair = await login(ACME);
    const foreign = { clientId: `other-app-${stamp}`, clientSecret: APP_SECRET, cacheSeconds: 0 };
    expect((await refused(verifySessionToken(pair.userSessionToken, opts({ introspection: foreign })))).code).toBe('session_ended');
  });

  it('a refused introspection credential is a configuration error (thrown, not a 401 for the user); an unreachable Tessera fails closed (503)', async () => {
    const pair = await login(ACME);
    const wrong = { clientId: `reports-${stamp}`, clientSecret: 'w'.repeat(40), cacheSeconds: 0 };
    const err = await verifySessionToken(pair.userSessionToken, opts({ introspection: wrong })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(TesseraAuthError);
    expect((err as Error).message).toMatch(/401 invalid_client/);
    const closed = `http://127.0.0.1:${await freePort()}/api/v1/auth/introspect`; // nothing is to listen there
    const down = await refused(verifySessionToken(pair.userSessionToken, opts({ introspection: { ...wrong, endpoint: closed } })));
    expect(down.code).toBe('tessera_unavailable');
    expect(down.status).toBe(503);
  });

  it("Tessera's keys unreachable: tessera_unavailable", async () => {
    const pair = await login(ACME);
    const closed = `http://127.0.0.1:${await freePort()}`;
    const err = await refused(verifySessionToken(pair.userSessionToken, { baseUrl: base, tenantId: ACME, jwksUrl: `${closed}/.well-known/jwks.json` }));
    expect(err.code).toBe('tessera_unavailable');
  });
});

describe('middleware', () => {
  it('Fastify: request.tessera, or 401 application/problem+json', async () => {
    const app = Fastify();
    await app.register(tessera, opts());
    app.get('/me', async (request) => ({ user: request.tessera?.userId, session: request.tessera?.sessionId }));
    const pair = await login(ACME);
    const ok = await app.inject({ url: '/me', headers: { authorization: `Bearer ${pair.userSessionToken}` } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ user: pair.customerId, session: pair.sessionId });

    const none = await app.inject({ url: '/me' });
    expect(none.statusCode).toBe(401);
    expect(none.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(none.headers['www-authenticate']).toBe('Bearer');
    expect(none.json()).toMatchObject({ status: 401, code: 'missing_token', type: 'https://tessera.dev/problems/missing_token' });

    const other = await login(OTHER);
    const wrong = await app.inject({ url: '/me', headers: { authorization: `Bearer ${other.userSessionToken}` } });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json()).toMatchObject({ code: 'wrong_tenant' });
    await app.close();
  });

  it('Express: req.tessera, or 401 application/problem+json', async () => {
    const app = express();
    app.use(tesseraExpress(opts()));
    app.get('/me', (req, res) => {
      res.json({ user: (req as unknown as { tessera: { userId: string } }).tessera.userId });
    });
    const listener = app.listen(0);
    await new Promise((r) => listener.once('listening', r));
    const url = `http://127.0.0.1:${(listener.address() as AddressInfo).port}/me`;
    try {
      const pair = await login(ACME);
      const ok = await fetch(url, { headers: { authorization: `Bearer ${pair.userSessionToken}` } });
      expect(ok.status).toBe(200);
      expect(await ok.json()).toEqual({ user: pair.customerId });
      const bad = await fetch(url, { headers: { authorization: `Bearer ${pair.userSessionToken.slice(0, -4)}AAAA` } });
      expect(bad.status).toBe(401);
      expect(bad.headers.get('content-type')).toBe('application/problem+json');
      expect(await bad.json()).toMatchObject({ status: 401, code: 'invalid_token' });
    } finally {
      await new Promise((r) => listener.close(r));
    }
  });
});

// Last: it restarts Tessera with a new signing key (verifiers that cached the old key set
// refetch it on the first unknown kid, at most once per jwksCooldownMs).
describe('key rotation', () => {
  it('key rotation: a token signed with the new key verifies (the key set is refetched); old tokens still verify', async () => {
    const o = opts({ jwksCooldownMs: 0 });
    const before = await login(ACME);
    const c1 = await verifySessionToken(before.userSessionToken, o);
    await server.stop();
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'keys', 'rotate'], { env: { PATH: process.env.PATH ?? '', ...env } });
    const rotated = JSON.parse(stdout.trim().split('\n').at(-1)!) as { signingKid: string };
    server = await startTessera(env);
    const after = await login(ACME);
    const c2 = await verifySessionToken(after.userSessionToken, o);
    expect(c2.keyId).toBe(rotated.signingKid);
    expect(c2.keyId).not.toBe(c1.keyId);
    await expect(verifySessionToken(before.userSessionToken, o)).resolves.toMatchObject({ keyId: c1.keyId });
  });
});
