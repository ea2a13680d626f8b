// Administrators (docs/api.md §Administration): the bootstrap credential acts on every tenant; a
// user with the admin role acts on their own tenant only; a user without it is refused.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admin, provision, startTestServer, uniqueTenant, type TestServer } from '../support/harness.ts';

const PASSWORD = 'correct horse battery';
let s: TestServer;
let home: string;
let other: string;
let adminToken: string;
let plainToken: string;
let otherSession: string;

async function login(tenantId: string, email: string): Promise<{ userSessionToken: string; sessionId: string }> {
  const r = await s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email, password: PASSWORD } });
  expect(r.statusCode).toBe(200);
  return r.json() as { userSessionToken: string; sessionId: string };
}

beforeAll(async () => {
  s = await startTestServer();
  home = uniqueTenant();
  other = uniqueTenant();
  await provision(s.app, home, 'plain@example.com', PASSWORD);
  await provision(s.app, other, 'someone@example.com', PASSWORD);
  const u = await s.app.inject({
    method: 'POST',
    url: '/api/v1/admin/users',
    headers: admin,
    payload: { tenantId: home, email: 'boss@example.com', password: PASSWORD, roles: ['admin'] },
  });
  expect(u.statusCode).toBe(201);
  adminToken = (await login(home, 'boss@example.com')).userSessionToken;
  plainToken = (await login(home, 'plain@example.com')).userSessionToken;
  otherSession = (await login(other, 'someone@example.com')).sessionId;
});
afterAll(async () => {
  await s.close();
});

const as = (token: string) => ({ authorization: `Bearer ${token}` });

describe('admin-role users', () => {
  it('manage their own tenant: read it, add users, list and end sessions', async () => {
    expect((await s.app.inject({ url: `/api/v1/admin/tenants/${home}`, headers: as(adminToken) })).statusCode).toBe(200);
    const add = await s.app.inject({
      method: 'POST',
      url: '/api/v1/admin/users',
      headers: as(adminToken),
      payload: { tenantId: home, email: 'new@example.com', password: PASSWORD },
    });
    expect(add.statusCode).toBe(201);
    const list = await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${home}&status=active`, headers: as(adminToken) });
    expect(list.statusCode).toBe(200);
    expect((list.json() as { items: unknown[] }).items.length).toBeGreaterThanOrEqual(2);
  });

  it('cannot touch another tenant, and another tenant\'s session reads as none', async () => {
    const read = await s.app.inject({ url: `/api/v1/admin/tenants/${other}`, headers: as(adminToken) });
    expect(read.statusCode).toBe(403);
    expect(read.json()).toMatchObject({ code: 'other_tenant' });
    const put = await s.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${other}`, headers: as(adminToken), payload: {} });
    expect(put.statusCode).toBe(403);
    const user = await s.app.inject({
      method: 'POST',
      url: '/api/v1/admin/users',
      headers: as(adminToken),
      payload: { tenantId: other, email: 'intruder@example.com', password: PASSWORD, roles: ['admin'] },
    });
    expect(user.statusCode).toBe(403);
    expect((await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${other}`, headers: as(adminToken) })).statusCode).toBe(403);
    const del = await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/sessions/${otherSession}`, headers: as(adminToken) });
    expect(del.statusCode).toBe(404);
    expect((await s.store.getSessionByHandle(otherSession))?.status).toBe('active');
  });

  it('a user without the role is refused with 403; no credential is 401', async () => {
    const r = await s.app.inject({ url: `/api/v1/admin/tenants/${home}`, headers: as(plainToken) });
    expect(r.statusCode).toBe(403);
    expect(r.json()).toMatchObject({ code: 'admin_required' });
    expect((await s.app.inject({ url: `/api/v1/admin/tenants/${home}` })).statusCode).toBe(401);
  });

  it('the bootstrap credential acts on every tenant', async () => {
    expect((await s.app.inject({ url: `/api/v1/admin/tenants/${other}`, headers: admin })).statusCode).toBe(200);
    expect((await s.app.inject({ url: `/api/v1/admin/tenants/${home}`, headers: admin })).statusCode).toBe(200);
  });
});
