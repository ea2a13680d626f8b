// The Redis adapter through Sentinel: one master and one Sentinel that this file starts (and
// stops), the store finding the master by its name, `mymaster`. The conformance suite.

import { afterAll, beforeAll } from 'vitest';
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
