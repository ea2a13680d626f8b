// Chaos: the writes that wait for a replica (WAIT, issue 17 item 4) when the replica cannot
// answer, short and without Sentinel: a redis-server master and a replica of it, started by the
// test; Tessera with TESSERA_REDIS_WAIT_REPLICAS=1 and a 300 ms wait timeout.
// - The replica connected but frozen (SIGSTOP): a logout is not confirmed in time and answers
//   503 `store_unavailable` (the client was not told it held); once the replica answers again,
//   the same logout is retried and answers 204.
// - No replica left (SIGKILL): a logout answers 204 at once, is counted as unreplicated, and is in
//   force in the store itself (not only in this process's cache).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { openStore, type Store } from '../../src/store/open.ts';
import type { RedisSessionStore } from '../../src/store/redis/redis-store.ts';
import { openConnection } from '../../src/store/redis/connection.ts';
import { parseRedisUrl } from '../../src/store/redis/url.ts';
import { ADMIN_TOKEN, COOKIE_SECRET, provision, startTestServer, uniqueTenant, type TestServer } from '../support/harness.ts';
import { redisBinariesMissing, requireOrSkip, startRedisStandalone, testPrefix } from '../support/redis.ts';

const skip = requireOrSkip(redisBinariesMissing());
const PASSWORD = 'correct horse battery';

async function connectedReplicas(url: string): Promise<number> {
  const conn = await openConnection(parseRedisUrl(url), { connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
  try {
    return Number(/connected_slaves:(\d+)/.exec(String(await conn.send(undefined, ['INFO', 'replication'])))?.[1] ?? '0');
  } finally {
    await conn.close();
  }
}

describe.skipIf(skip)('chaos: writes that wait for a replica, when the replica cannot answer', () => {
  let master: Awaited<ReturnType<typeof startRedisStandalone>>;
  let replica: Awaited<ReturnType<typeof startRedisStandalone>>;
  let store: Store;
  let s: TestServer;
  const tenant = uniqueTenant();

  beforeAll(async () => {
    master = await startRedisStandalone();
    replica = await startRedisStandalone({ replicaOf: master.port });
    const deadline = Date.now() + 15_000;
    while ((await connectedReplicas(master.url)) < 1) {
      if (Date.now() > deadline) throw new Error('the replica did not connect');
      await new Promise((r) => setTimeout(r, 50));
    }
    store = await openStore(
      loadConfig({
        TESSERA_STORE: master.url,
        TESSERA_REDIS_PREFIX: testPrefix('wait'),
        TESSERA_REDIS_WAIT_REPLICAS: '1',
        TESSERA_REDIS_WAIT_TIMEOUT_MS: '300',
        COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET,
        TESSERA_ADMIN_TOKEN: ADMIN_TOKEN,
      }),
    );
    s = await startTestServer({ sharedStore: store });
    await provision(s.app, tenant, 'p0@example.com', PASSWORD, { profile: 'integration' });
  });
  afterAll(async () => {
    replica?.resume();
    await s?.close();
    await store?.close();
    await replica?.stop();
    await master?.stop();
  });

  let people = 0;
  const login = async () => {
    const email = `p${++people}@example.com`;
    const u = await s.app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, payload: { tenantId: tenant, email, password: PASSWORD } });
    expect(u.statusCode).toBe(201);
    const r = await s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenant }, payload: { email, password: PASSWORD } });
    expect(r.statusCode).toBe(200);
    return r.json() as { userSessionToken: string; sessionId: string };
  };
  const logout = (token: string) => s.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { authorization: `Bearer ${token}` } });

  it('a frozen replica: the logout answers 503 store_unavailable, and 204 when retried after it answers again', async () => {
    const a = await login();
    replica.pause();
    let first;
    try {
      first = await logout(a.userSessionToken);
    } finally {
      replica.resume();
    }
    expect(first.statusCode).toBe(503);
    expect(first.json()).toMatchObject({ code: 'store_unavailable' });
    expect(first.headers['retry-after']).toBe('1');
    const again = await logout(a.userSessionToken);
    // The first attempt's write is on the master (the session is already ended there), so the
    // retry either ends it or finds it ended; either way the session is over.
    expect([204, 401]).toContain(again.statusCode);
    expect((await store.getSessionByHandle(a.sessionId))?.status).toBe('revoked');
  });

  it('no replica left: the logout answers 204, counted as unreplicated, and is in force in the store', async () => {
    const b = await login();
    await replica.kill();
    const deadline = Date.now() + 10_000;
    while ((await connectedReplicas(master.url)) > 0) {
      if (Date.now() > deadline) throw new Error('the master still counts the killed replica');
      await new Promise((r) => setTimeout(r, 50));
    }
    const before = (store as unknown as RedisSessionStore).unreplicatedWrites;
    expect((await logout(b.userSessionToken)).statusCode).toBe(204);
    expect((store as unknown as RedisSessionStore).unreplicatedWrites).toBeGreaterThan(before);
    expect((await store.getSessionByHandle(b.sessionId))?.status).toBe('revoked');
  });
});
