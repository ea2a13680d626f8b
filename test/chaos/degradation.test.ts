// Chaos: the tenant's degradation policy while Redis does not answer (issue 17 item 3).
//
// Two Tessera processes (in-process apps, each with its own connections) on a redis-server the
// test starts with AOF. Tenant `lenient` has `degradation: { policy: serve_cached,
// maxStaleSeconds: 30 }`, tenant `strict` keeps the default `fail_closed`. Redis is SIGKILLed
// (commands fail at once), later SIGSTOPped (commands time out; the feed's probes notice):
// - a `lenient` session that process A had cached is served, marked `Tessera-Degraded:
//   stale-cache` and `degraded: "stale-cache"`, until 30 s after A lost the store;
// - a `strict` session is refused 503 `store_unavailable` with Retry-After;
// - a `lenient` session A never had cached, and one logged out on B before the outage, are not
//   served;
// - one `session.served_stale` audit event per session and outage is queued and appended once
//   the store is back; after recovery answers are normal again.
// Latencies are printed, not asserted (docs/reliability.md has them).

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { openStore, type Store } from '../../src/store/open.ts';
import { admin, ADMIN_TOKEN, COOKIE_SECRET, provision, startTestServer, type TestServer } from '../support/harness.ts';
import { purgePrefix, redisBinariesMissing, requireOrSkip, startRedisStandalone, testPrefix } from '../support/redis.ts';

const skip = requireOrSkip(redisBinariesMissing());
const PASSWORD = 'correct horse battery';

async function waitUntil(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - started;
}

describe.skipIf(skip)('chaos: degradation policy (fail_closed / serve_cached) while Redis does not answer', () => {
  let redis: Awaited<ReturnType<typeof startRedisStandalone>>;
  const prefix = testPrefix('degrade');
  const clock = new ManualClock(Date.UTC(2026, 10, 23, 9, 0, 0));
  let storeA: Store;
  let storeB: Store;
  let a: TestServer;
  let b: TestServer;
  const lenient = `lenient-${randomBytes(3).toString('hex')}`;
  const strict = `strict-${randomBytes(3).toString('hex')}`;

  beforeAll(async () => {
    redis = await startRedisStandalone({ aof: 'everysec' });
    const config = loadConfig({ TESSERA_STORE: redis.url, TESSERA_REDIS_PREFIX: prefix, COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET, TESSERA_ADMIN_TOKEN: ADMIN_TOKEN });
    storeA = await openStore(config);
    storeB = await openStore(config);
    a = await startTestServer({ sharedStore: storeA, clock });
    b = await startTestServer({ sharedStore: storeB, clock });
    await provision(a.app, lenient, 'ada@example.com', PASSWORD, { profile: 'integration', degradation: { policy: 'serve_cached', maxStaleSeconds: 30 } });
    await provision(a.app, lenient, 'bob@example.com', PASSWORD, { profile: 'integration', degradation: { policy: 'serve_cached', maxStaleSeconds: 30 } });
    await provision(a.app, strict, 'cy@example.com', PASSWORD, { profile: 'integration' });
  });
  afterAll(async () => {
    redis?.resume();
    await a?.close();
    await b?.close();
    await storeA?.close();
    await storeB?.close();
    if (redis) {
      await purgePrefix(redis.url, prefix).catch(() => 0);
      await redis.stop();
    }
  });

  const login = async (s: TestServer, tenant: string, email: string) => {
    const r = await s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenant }, payload: { email, password: PASSWORD } });
    expect(r.statusCode).toBe(200);
    return r.json() as { userSessionToken: string; sessionId: string };
  };
  const check = async (s: TestServer, token: string) => {
    const t0 = performance.now();
    const r = await s.app.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${token}` } });
    return { r, ms: performance.now() - t0 };
  };
  const servedStaleEvents = async (tenant: string) => {
    await a.deps.monitor.flush();
    const r = await a.app.inject({ url: `/api/v1/admin/audit?tenantId=${tenant}&type=session.served_stale`, headers: admin });
    expect(r.statusCode).toBe(200);
    return (r.json() as { items: { sessionId: string; details: Record<string, unknown> }[] }).items;
  };

  it('the setting is part of the tenant: defaults to fail_closed, validated', async () => {
    const lenientT = (await a.app.inject({ url: `/api/v1/admin/tenants/${lenient}`, headers: admin })).json() as Record<string, unknown>;
    expect(lenientT.degradation).toEqual({ policy: 'serve_cached', maxStaleSeconds: 30 });
    const strictT = (await a.app.inject({ url: `/api/v1/admin/tenants/${strict}`, headers: admin })).json() as Record<string, unknown>;
    expect(strictT.degradation).toEqual({ policy: 'fail_closed', maxStaleSeconds: 60 });
    for (const bad of [{ policy: 'serve_stale' }, { maxStaleSeconds: 0 }, { maxStaleSeconds: 3601 }, { maxStaleSeconds: 1.5 }, { policy: 'serve_cached', extra: 1 }]) {
      const r = await a.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${strict}`, headers: admin, payload: { profile: 'integration', degradation: bad } });
      expect(r.statusCode, JSON.stringify(bad)).toBe(400);
    }
    // Nothing changed.
    expect(((await a.app.inject({ url: `/api/v1/admin/tenants/${strict}`, headers: admin })).json() as Record<string, unknown>).degradation).toEqual({
      policy: 'fail_closed',
      maxStaleSeconds: 60,
    });
  });

  it('Redis killed: serve_cached serves what A had cached, marked, for at most maxStaleSeconds; fail_closed answers 503', async () => {
    const cached = await login(a, lenient, 'ada@example.com');
    const strictSession = await login(a, strict, 'cy@example.com');
    const neverOnA = await login(b, lenient, 'bob@example.com');
    const loggedOut = await login(a, lenient, 'bob@example.com');
    for (const t of [cached, strictSession, loggedOut]) expect((await check(a, t.userSessionToken)).r.statusCode).toBe(200);
    // Logged out on B; A hears of it through the feed.
    const out = await b.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { authorization: `Bearer ${loggedOut.userSessionToken}` } });
    expect(out.statusCode).toBe(204);
    expect(await a.deps.sessionCache.waitForFeed([loggedOut.sessionId], 5000)).toBe(true);

    await redis.kill();
    const killedAt = Date.now();
    await waitUntil('A to notice that its feed is down', 10_000, () => !a.deps.sessionCache.live);
    console.log(`[degradation] A's feed reported down ${Date.now() - killedAt} ms after the kill`);

    const served = [await check(a, cached.userSessionToken), await check(a, cached.userSessionToken)];
    for (const { r } of served) {
      expect(r.statusCode).toBe(200);
      expect(r.headers['tessera-degraded']).toBe('stale-cache');
      expect(r.json()).toMatchObject({ sessionId: cached.sessionId, degraded: 'stale-cache' });
    }
    const refused = [await check(a, strictSession.userSessionToken), await check(a, neverOnA.userSessionToken), await check(a, loggedOut.userSessionToken)];
    for (const { r } of refused) {
      expect(r.statusCode).toBe(503);
      expect(r.json()).toMatchObject({ code: 'store_unavailable' });
      expect(r.headers['retry-after']).toBe('1');
      expect(r.headers['tessera-degraded']).toBeUndefined();
    }
    // Everything else that needs the store still fails closed, for every tenant.
    expect((await a.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': lenient }, payload: { email: 'ada@example.com', password: PASSWORD } })).statusCode).toBe(503);
    expect((await a.app.inject({ url: '/api/v1/sessions', headers: { authorization: `Bearer ${cached.userSessionToken}` } })).statusCode).toBe(503);
    console.log(
      `[degradation] killed: stale answers ${served.map((s) => s.ms.toFixed(1)).join(', ')} ms; 503 answers ${refused.map((s) => s.ms.toFixed(1)).join(', ')} ms`,
    );

    // 30 s after A lost the store the window is over: 503.
    clock.advance(30_001);
    const late = await check(a, cached.userSessionToken);
    expect(late.r.statusCode).toBe(503);
    expect(late.r.json()).toMatchObject({ code: 'store_unavailable' });

    const back = Date.now();
    await redis.restart();
    await waitUntil('A to hear its feed again', 15_000, () => a.deps.sessionCache.live);
    console.log(`[degradation] A's feed up ${Date.now() - back} ms after redis-server was started again`);
    const normal = await check(a, cached.userSessionToken);
    expect(normal.r.statusCode).toBe(200);
    expect(normal.r.headers['tessera-degraded']).toBeUndefined();
    expect(normal.r.json()).not.toHaveProperty('degraded');
    expect((await check(a, loggedOut.userSessionToken)).r.statusCode).toBe(401);

    // One event for the session served twice, queued during the outage and appended now.
    const events = await servedStaleEvents(lenient);
    expect(events.map((e) => e.sessionId)).toEqual([cached.sessionId]);
    expect(events[0]?.details).toMatchObject({ maxStaleSeconds: 30 });
    expect(typeof events[0]?.details.storeLostAt).toBe('number');
    expect(await servedStaleEvents(strict)).toEqual([]);
  });

  it('Redis paused (commands time out): the same once the feed probes report it; resumed: normal again', async () => {
    const cached = await login(a, lenient, 'ada@example.com');
    const strictSession = await login(a, strict, 'cy@example.com');
    for (const t of [cached, strictSession]) expect((await check(a, t.userSessionToken)).r.statusCode).toBe(200);
    const before = (await servedStaleEvents(lenient)).length;

    redis.pause();
    const pausedAt = Date.now();
    try {
      await waitUntil('A to notice that its feed is silent', 15_000, () => !a.deps.sessionCache.live);
      console.log(`[degradation] A's feed reported down ${Date.now() - pausedAt} ms after the pause`);
      const served = await check(a, cached.userSessionToken);
      expect(served.r.statusCode).toBe(200);
      expect(served.r.headers['tessera-degraded']).toBe('stale-cache');
      const refused = await check(a, strictSession.userSessionToken);
      expect(refused.r.statusCode).toBe(503);
      expect(refused.r.json()).toMatchObject({ code: 'store_unavailable' });
      console.log(`[degradation] paused: stale answer ${served.ms.toFixed(0)} ms, 503 answer ${refused.ms.toFixed(0)} ms (each waits for the 1 s command deadline)`);
    } finally {
      redis.resume();
    }
    await waitUntil('A to hear its feed again', 15_000, () => a.deps.sessionCache.live);
    const normal = await check(a, cached.userSessionToken);
    expect(normal.r.statusCode).toBe(200);
    expect(normal.r.headers['tessera-degraded']).toBeUndefined();
    const events = await servedStaleEvents(lenient);
    expect(events.length).toBe(before + 1);
    expect(events[0]?.sessionId).toBe(cached.sessionId); // newest first
  });
});
