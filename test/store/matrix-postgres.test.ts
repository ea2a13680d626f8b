// The conformance matrix on one target (test/store/targets.ts): every suite on 'postgres' (its
// pool already makes the races concurrent transactions on several connections), and the session
// suite once more on three store instances on one database, called in turn (three processes, in
// effect).

import type { SessionStore } from '../../src/store/port.ts';
import { createTestDatabase } from '../support/postgres.ts';
import { describeStoreConformance, type OpenedStore } from './conformance.ts';
import { describeMatrix, openPostgresTestStore } from './targets.ts';

/** Three store instances (pools, feeds) on one database; calls go to each in turn. */
async function three(): Promise<OpenedStore> {
  const db = await createTestDatabase('multi');
  const stores = await Promise.all([0, 1, 2].map(() => openPostgresTestStore(db.url, 4)));
  let next = 0;
  const store = new Proxy({} as SessionStore, {
    get(_target, prop) {
      if (prop === 'kind') return 'postgres';
      if (prop === 'then' || typeof prop !== 'string') return undefined;
      if (prop === 'close') return () => Promise.all(stores.map((s) => s.close())).then(() => undefined);
      const s = stores[next++ % stores.length]!;
      const member = (s as unknown as Record<string, unknown>)[prop];
      return typeof member === 'function' ? (member as (...a: unknown[]) => unknown).bind(s) : member;
    },
  });
  return {
    store,
    close: async () => {
      await Promise.all(stores.map((s) => s.close()));
      await db.drop();
    },
  };
}

await describeMatrix('postgres', () => {
  describeStoreConformance('postgres: sessions on three store instances on one database', three);
});
