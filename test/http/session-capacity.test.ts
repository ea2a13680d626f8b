// The Redis store's cap on one user's live sessions over HTTP (TESSERA_REDIS_USER_SESSIONS_MAX;
// docs/performance.md, "One user with many sessions"): it bounds the user's live value without
// ever locking the account out — the login over it gets in, and the oldest session is revoked
// `user_capacity` (audited as session.revoked, dropped by every cache).

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
  const session = (token: string) => s.app.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${token}` } });

  it('the 4th login gets in: the oldest session is revoked user_capacity and audited, the others stay, and every later login gets in', async () => {
    const tokens: string[] = [];
    const handles: string[] = [];
    for (let i = 0; i < 4; i++) {
      s.clock.advance(1000);
      const r = await login();
      expect(r.statusCode).toBe(200);
      tokens.push((r.json() as { userSessionToken: string }).userSessionToken);
      handles.push(((await session(tokens[i] as string)).json() as { sessionId: string }).sessionId);
    }
    // The first one is over (its cached copy dropped too), the three newest are valid.
    expect((await session(tokens[0] as string)).statusCode).toBe(401);
    for (const t of tokens.slice(1)) expect((await session(t)).statusCode).toBe(200);
    const listed = await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${tenantId}&userId=${userId}&status=active`, headers: admin });
    expect((listed.json() as { items: Array<{ sessionId: string }> }).items.map((x) => x.sessionId).sort()).toStrictEqual(handles.slice(1).sort());

    await s.deps.monitor.flush();
    const audit = await s.app.inject({ url: `/api/v1/admin/audit?tenantId=${tenantId}&type=session.revoked`, headers: admin });
    expect((audit.json() as { items: Array<{ sessionId: string; details: Record<string, unknown> }> }).items.map((e) => [e.sessionId, e.details.reason])).toEqual([
      [handles[0], 'user_capacity'],
    ]);
    const failed = await s.app.inject({ url: `/api/v1/admin/audit?tenantId=${tenantId}&type=login.failed`, headers: admin });
    expect((failed.json() as { items: unknown[] }).items).toHaveLength(0);

    // Many more logins: every one gets in, and the account can still sign out everywhere.
    for (let i = 0; i < 10; i++) {
      s.clock.advance(1000);
      expect((await login()).statusCode).toBe(200);
    }
    const last = await login();
    expect(last.statusCode).toBe(200);
    const lastToken = (last.json() as { userSessionToken: string }).userSessionToken;
    const active = await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${tenantId}&userId=${userId}&status=active`, headers: admin });
    expect((active.json() as { items: unknown[] }).items).toHaveLength(3);
    expect((await session(lastToken)).statusCode).toBe(200);
  });
});
