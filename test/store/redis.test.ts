// The Redis adapter on a standalone server (TESSERA_TEST_REDIS_URL or redis://127.0.0.1:6379):
// the conformance suite, each store on a random key prefix that close() deletes again.

import { openRedisStore } from '../../src/store/redis/redis-store.ts';
import { purgePrefix, redisUrlForTests, requireOrSkip, testPrefix } from '../support/redis.ts';
import { describeAuditConformance, redisPair } from './audit-conformance.ts';
import { describeConsentConformance } from './consent-conformance.ts';
import { describeStoreConformance } from './conformance.ts';
import { describeFederationConformance } from './federation-conformance.ts';
import { describeOidcConformance } from './oidc-conformance.ts';

const redis = await redisUrlForTests();
const skip = requireOrSkip(redis.unavailable);

describeStoreConformance(
  `Redis store, standalone (${redis.url})`,
  async () => {
    const prefix = testPrefix('standalone');
    const store = await openRedisStore(redis.url, { prefix });
    return {
      store,
      close: async () => {
        await store.close();
        await purgePrefix(redis.url, prefix);
      },
    };
  },
  { skip },
);

describeFederationConformance(`Redis store, standalone (${redis.url})`, async () => { const prefix = testPrefix('federation'); const store = await openRedisStore(redis.url, { prefix }); return { store, close: async () => { await store.close(); await purgePrefix(redis.url, prefix); } }; }, { skip });
describeOidcConformance(`Redis store, standalone (${redis.url})`, async () => { const prefix = testPrefix('oidc'); const store = await openRedisStore(redis.url, { prefix }); return { store, close: async () => { await store.close(); await purgePrefix(redis.url, prefix); } }; }, { skip });

describeConsentConformance(`Redis store, standalone (${redis.url})`, async () => { const prefix = testPrefix('consents'); const store = await openRedisStore(redis.url, { prefix }); return { store, close: async () => { await store.close(); await purgePrefix(redis.url, prefix); } }; }, { skip });

describeAuditConformance(`Redis audit store, standalone (${redis.url})`, redisPair(() => redis.url), { skip });
