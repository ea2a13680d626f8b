// The Redis adapter through Sentinel: one master and one Sentinel that this file starts (and
// stops), the store finding the master by its name, `mymaster`. The conformance suite.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIFETIMES, issueSession } from '../../src/domain/session.ts';
import { openRedisStore } from '../../src/store/redis/redis-store.ts';
import { purgePrefix, redisBinariesMissing, requireOrSkip, startRedisSentinel, testPrefix } from '../support/redis.ts';
import type { StartedRedis } from '../support/redis.ts';
import { describeStoreConformance } from './conformance.ts';

const skip = requireOrSkip(redisBinariesMissing());
let sentinel: StartedRedis | undefined;

beforeAll(async () => {
  if (!skip) sentinel = await startRedisSentinel();
});
afterAll(async () => {
  await sentinel?.stop();
});

describeStoreConformance(
  'Redis store, Sentinel (one master, one Sentinel)',
  async () => {
    if (!sentinel) throw new Error('the test Sentinel set-up did not start');
    const url = sentinel.url;
    const prefix = testPrefix('sentinel');
    const store = await openRedisStore(url, { prefix });
    return {
      store,
      close: async () => {
        await store.close();
        await purgePrefix(url, prefix);
      },
    };
  },
  { skip },
);

describe.skipIf(skip)('Redis store through Sentinel: what the suite does not cover', () => {
  it('says it is redis-sentinel and delivers session ends to another process', async () => {
    if (!sentinel) throw new Error('the test Sentinel set-up did not start');
    const prefix = testPrefix('sentinel-feed');
    const a = await openRedisStore(sentinel.url, { prefix });
    const b = await openRedisStore(sentinel.url, { prefix });
    const heard: string[] = [];
    const sub = await b.subscribeSessionEnds(
      (h) => heard.push(...h),
      () => undefined,
    );
    try {
      expect(a.kind).toBe('redis-sentinel');
      const s = issueSession({ tenantId: 't-s', userId: 'u-s', kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password' }, Date.now()).session;
      expect((await a.createSession(s, s.createdAt)).ok).toBe(true);
      await a.revokeSession(s.handle, 'logout', s.createdAt + 1);
      const deadline = Date.now() + 2000;
      while (!heard.includes(s.handle) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(heard).toContain(s.handle);
    } finally {
      await sub.close();
      await a.close();
      await b.close();
      await purgePrefix(sentinel.url, prefix);
    }
  });
});
