// The Redis adapter on a 3-master Redis Cluster that this file starts (and stops): the
// conformance suite, where every multi-key script must stay in one user's hash slot.

import { afterAll, beforeAll } from 'vitest';
import { openRedisStore } from '../../src/store/redis/redis-store.ts';
import { purgePrefix, redisBinariesMissing, requireOrSkip, startRedisCluster, testPrefix } from '../support/redis.ts';
import type { StartedRedis } from '../support/redis.ts';
import { describeAuditConformance, redisPair } from './audit-conformance.ts';
import { describeConsentConformance } from './consent-conformance.ts';
import { describeStoreConformance } from './conformance.ts';
import { describeFederationConformance } from './federation-conformance.ts';
import { describeOidcConformance } from './oidc-conformance.ts';

const skip = requireOrSkip(redisBinariesMissing());
let cluster: StartedRedis | undefined;

beforeAll(async () => {
  if (!skip) cluster = await startRedisCluster();
});
afterAll(async () => {
  await cluster?.stop();
});

describeStoreConformance(
  'Redis store, 3-master Cluster',
  async () => {
    if (!cluster) throw new Error('the test cluster did not start');
    const url = cluster.url;
    const prefix = testPrefix('cluster');
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

describeFederationConformance('Redis store, 3-master Cluster', async () => { if (!cluster) throw new Error('the test cluster did not start'); const url = cluster.url; const prefix = testPrefix('federation'); const store = await openRedisStore(url, { prefix }); return { store, close: async () => { await store.close(); await purgePrefix(url, prefix); } }; }, { skip });
describeOidcConformance('Redis store, 3-master Cluster', async () => { if (!cluster) throw new Error('the test cluster did not start'); const url = cluster.url; const prefix = testPrefix('oidc'); const store = await openRedisStore(url, { prefix }); return { store, close: async () => { await store.close(); await purgePrefix(url, prefix); } }; }, { skip });

describeConsentConformance('Redis store, 3-master Cluster', async () => { if (!cluster) throw new Error('the test cluster did not start'); const url = cluster.url; const prefix = testPrefix('consents'); const store = await openRedisStore(url, { prefix }); return { store, close: async () => { await store.close(); await purgePrefix(url, prefix); } }; }, { skip });

describeAuditConformance('Redis audit store, 3-master Cluster', redisPair(() => (cluster as StartedRedis).url), { skip });
