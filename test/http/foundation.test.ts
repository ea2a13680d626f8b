// The HTTP skeleton: health, readiness, problem+json for every error shape, request ids,
// the admin guard, tenant and user provisioning, the OpenAPI document.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admin, startTestServer, uniqueTenant, type TestServer } from '../support/harness.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s.close();
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function expectProblem(res: { statusCode: number; headers: Record<string, unknown>; json: () => unknown }, status: number, code: string) {
  expect(res.statusCode).toBe(status);
  expect(String(res.headers['content-type'])).toMatch(/^application\/problem\+json/);
  const body = res.json() as Record<string, unknown>;
  expect(body).toMatchObject({ status, code, type: expect.stringContaining(code) as unknown });
  expect(typeof body.title).toBe('string');
  expect(typeof body.detail).toBe('string');
  expect(body.requestId).toBe(res.headers['x-request-id']);
  return body;
}

describe('operations endpoints', () => {
  it('GET /healthz and /readyz answer 200 on a reachable store', async () => {
    expect((await s.app.inject('/healthz')).json()).toEqual({ status: 'ok' });
    const ready = await s.app.inject('/readyz');
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ status: 'ready', store: 'sqlite' });
  });

  it('GET /readyz answers 503 problem+json with Retry-After when the store is gone', async () => {
    const broken = await startTestServer();
    await broken.store.close();
    const res = await broken.app.inject('/readyz');
    expectProblem(res, 503, 'store_unavailable');
    expect(res.headers['retry-after']).toBeDefined();
    // Any request that needs the store fails fast the same way, never a 500.
    const login = await broken.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'x-tenant-id': 'acme' },
      payload: { email: 'a@example.com', password: 'whatever it is' },
    });
    expectProblem(login, 503, 'store_unavailable');
    expect(login.headers['retry-after']).toBe('1');
    await broken.app.close();
    await broken.deps.sessionCache.stop();
  });

  it('serves an OpenAPI 3.1 document generated from the route schemas', async () => {
    const res = await s.app.inject('/docs');
    expect(res.statusCode).toBe(200);
    const doc = res.json() as { openapi: string; paths: Record<string, Record<string, { requestBody?: unknown }>> };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/api/v1/admin/tenants/{id}', '/api/v1/admin/users', '/api/v1/auth/login', '/readyz']),
    );
    expect(doc.paths['/api/v1/admin/users']?.post?.requestBody).toBeDefined();
  });
});

describe('request ids (docs/api.md §Request headers)', () => {
  it('generates X-Request-ID and X-Correlation-ID when absent and echoes them', async () => {
    const res = await s.app.inject('/healthz');
    expect(res.headers['x-request-id']).toMatch(UUID);
    expect(res.headers['x-correlation-id']).toMatch(UUID);
  });

  it('echoes the ids the client sent', async () => {
    const rid = '0d7e4c52-3a5b-4c7d-9e1f-2a3b4c5d6e7f';
    const res = await s.app.inject({ url: '/healthz', headers: { 'x-request-id': rid, 'x-correlation-id': 'corr-12345678' } });
    expect(res.headers['x-request-id']).toBe(rid);
    expect(res.headers['x-correlation-id']).toBe('corr-12345678');
  });

  it.each([
    ['x-request-id', 'not-a-uuid', 'X-Request-ID'],
    ['x-activity-id', '123', 'X-Activity-ID'],
    ['x-tenant-id', 'bad tenant!', 'X-Tenant-ID'],
    ['x-correlation-id', 'a'.repeat(200), 'X-Correlation-ID'],
  ])('refuses a malformed %s with 400 naming it', async (name, value, canonical) => {
    const res = await s.app.inject({ url: '/healthz', headers: { [name]: value } });
    const body = expectProblem(res, 400, 'invalid_header');
    expect(body.header).toBe(canonical);
  });
});

describe('problem+json for every error shape (docs/api.md §Errors)', () => {
  it('404 for an unknown route', async () => {
    expectProblem(await s.app.inject('/nope'), 404, 'not_found');
  });

  it('400 for malformed JSON, wrong types, unknown fields; 413 for a huge body; 415 for other media types', async () => {
    const url = '/api/v1/admin/users';
    const headers = { ...admin, 'content-type': 'application/json' };
    expectProblem(await s.app.inject({ method: 'POST', url, headers, payload: '{"tenantId":' }), 400, 'invalid_json');
    expectProblem(await s.app.inject({ method: 'POST', url, headers, payload: { tenantId: 5, email: 'a@b.c', password: 'x'.repeat(9) } }), 400, 'invalid_request');
    const unknown = expectProblem(
      await s.app.inject({ method: 'POST', url, headers, payload: { tenantId: 't', email: 'a@b.c', password: 'x'.repeat(9), isAdmin: true } }),
      400,
      'invalid_request',
    );
    expect(unknown.detail).toContain('isAdmin');
    expectProblem(await s.app.inject({ method: 'POST', url, headers, payload: JSON.stringify({ pad: 'x'.repeat(200_000) }) }), 413, 'body_too_large');
    expectProblem(await s.app.inject({ method: 'POST', url, headers: { ...admin, 'content-type': 'text/plain' }, payload: 'hi' }), 415, 'unsupported_media_type');
  });

  it('400 for invalid UTF-8 in a JSON body', async () => {
    const payload = Buffer.concat([Buffer.from('{"tenantId":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    const res = await s.app.inject({ method: 'PUT', url: '/api/v1/admin/tenants/utf8', headers: { ...admin, 'content-type': 'application/json' }, payload });
    expect(res.statusCode).toBeGreaterThanOrEqual(400);
    expect(res.statusCode).toBeLessThan(500);
    expect((await s.app.inject({ url: '/api/v1/admin/tenants/utf8', headers: admin })).statusCode).toBe(404);
  });
});

describe('admin provisioning (docs/api.md §Administration)', () => {
  it('refuses without the admin credential, or with a wrong one', async () => {
    expectProblem(await s.app.inject({ method: 'GET', url: '/api/v1/admin/tenants/x' }), 401, 'admin_required');
    expectProblem(
      await s.app.inject({ method: 'GET', url: '/api/v1/admin/tenants/x', headers: { authorization: 'Bearer ' + 'z'.repeat(49) } }),
      401,
      'admin_required',
    );
  });

  it('PUT fills profile defaults; GET returns the effective object', async () => {
    const id = uniqueTenant();
    const put = await s.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${id}`, headers: admin, payload: { sessionLimit: { max: 3 } } });
    expect(put.statusCode).toBe(200);
    const got = (await s.app.inject({ url: `/api/v1/admin/tenants/${id}`, headers: admin })).json<unknown>();
    expect(got).toMatchObject({
      id,
      profile: 'production',
      lifetimes: { token: 1800, appIdle: 900, appAbsolute: 43200, idpIdle: 3600, idpAbsolute: 43200, flow: 600, redirect: 1200, refreshGrace: 10 },
      sessionLimit: { max: 3, policy: 'evict_oldest' },
      anomalyPolicy: 'record',
    });
    const integ = await s.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${id}`, headers: admin, payload: { profile: 'integration' } });
    expect(integ.json()).toMatchObject({ profile: 'integration', lifetimes: { token: 3600 }, sessionLimit: { max: null } });
  });

  it('a bad tenant object changes nothing', async () => {
    const id = uniqueTenant();
    await s.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${id}`, headers: admin, payload: { profile: 'integration' } });
    const bad = [
      { profile: 'staging' },
      { lifetimes: { appIdle: -1 } },
      { lifetimes: { appIdle: 999999, appAbsolute: 10 } },
      { sessionLimit: { policy: 'drop' } },
      { extra: 1 },
    ];
    for (const payload of bad) {
      const res = await s.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${id}`, headers: admin, payload });
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
    }
    expect((await s.app.inject({ url: `/api/v1/admin/tenants/${id}`, headers: admin })).json()).toMatchObject({ profile: 'integration' });
  });

  it('creates users with argon2id hashes, never returning the hash; duplicates are 409; unknown tenant 404', async () => {
    const id = uniqueTenant();
    await s.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${id}`, headers: admin, payload: {} });
    const res = await s.app.inject({
      method: 'POST',
      url: '/api/v1/admin/users',
      headers: admin,
      payload: { tenantId: id, email: 'Ada@Example.com', password: 'correct horse', roles: ['admin'] },
    });
    expect(res.statusCode).toBe(201);
    const body = res.json() as Record<string, unknown>;
    expect(body).toMatchObject({ tenantId: id, email: 'ada@example.com', roles: ['admin'] });
    expect(JSON.stringify(body)).not.toMatch(/argon2|passwordHash|correct horse/);
    const stored = await s.store.findUserByEmail(id, 'ada@example.com');
    expect(stored?.passwordHash).toMatch(/^\$argon2id\$/);
    const dup = await s.app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { tenantId: id, email: 'ada@example.com', password: 'another one' } });
    expectProblem(dup, 409, 'user_exists');
    const none = await s.app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { tenantId: 'no-such-tenant', email: 'a@b.co', password: 'long enough' } });
    expectProblem(none, 404, 'tenant_not_found');
  });
});
