// The Redis store's cap on one user's live sessions over HTTP (docs/api.md, 409
// session_capacity_reached): the login over it gets the problem document, the refusal is audited,
// and a logout makes room.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admin, provision, startTestServer, uniqueTenant, type TestServer } from '../support/harness.ts';
import { redisUrlForTests, requireOrSkip } from '../support/redis.ts';

const redis = await redisUrlForTests();
const skip = requireOrSkip(redis.unavailable);

describe.skipIf(skip)('per-user cap on live sessions (Redis, TESSERA_REDIS_USER_SESSIONS_MAX=3)', () => {
  let s: TestServer;
  const tenantId = uniqueTenant();
  const email = 'many@example.com';
  const PASSWORD = 'correct horse battery staple';
  let userId: string;

  beforeAll(async () => {
    s = await startTestServer({ store: 'redis', env: { TESSERA_REDIS_USER_SESSIONS_MAX: '3' } });
    userId = await provision(s.app, tenantId, email, PASSWORD);
  });
  afterAll(async () => {
    await s?.close();
  });

  const login = () => s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email, password: PASSWORD } });

  it('answers the 4th login with 409 session_capacity_reached, audits it, and takes one again after a logout', async () => {
    const tokens: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await login();
      expect(r.statusCode).toBe(200);
      tokens.push((r.json() as { userSessionToken: string }).userSessionToken);
    }
    const refused = await login();
    expect(refused.statusCode).toBe(409);
    expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(refused.json()).toMatchObject({ status: 409, code: 'session_capacity_reached' });
    const listed = await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${tenantId}&userId=${userId}`, headers: admin });
    expect((listed.json() as { items: unknown[] }).items).toHaveLength(3);

    await s.deps.monitor.flush();
    const audit = await s.app.inject({ url: `/api/v1/admin/audit?tenantId=${tenantId}&type=login.failed`, headers: admin });
    expect((audit.json() as { items: Array<{ userId: string; details: Record<string, unknown> }> }).items.map((e) => [e.userId, e.details])).toEqual([
      [userId, { reason: 'session_capacity_reached' }],
    ]);

    const out = await s.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { authorization: `Bearer ${tokens[0]}` } });
    expect(out.statusCode).toBeLessThan(300);
    expect((await login()).statusCode).toBe(200);
  });
});
