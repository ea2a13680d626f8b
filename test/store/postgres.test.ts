// The PostgreSQL adapter (TESSERA_TEST_POSTGRES_URL or postgres://postgres@127.0.0.1:5432): the
// conformance suites, each on a database of its own that is dropped afterwards — once on one
// store (its pool of connections already makes the suite's Promise.all races real concurrent
// transactions) and once on three store instances on one database, called in turn (three
// processes, in effect).

import { afterAll } from 'vitest';
import type { SessionStore } from '../../src/store/port.ts';
import {
  DEFAULT_STATEMENT_TIMEOUT_MS,
  openPostgresStore,
  parsePostgresUrl,
  type PostgresSessionStore,
} from '../../src/store/postgres/postgres-store.ts';
import { createTestDatabase, postgresUnavailable, requirePostgresOrSkip, type TestDatabase } from '../support/postgres.ts';
import { describeAuditConformance } from './audit-conformance.ts';
import { describeConsentConformance } from './consent-conformance.ts';
import { describeStoreConformance, type OpenedStore } from './conformance.ts';
import { describeFederationConformance } from './federation-conformance.ts';
import { describeOidcConformance } from './oidc-conformance.ts';

const skip = requirePostgresOrSkip(await postgresUnavailable());
// TESSERA_TEST_PG_DRIVER=postgres.js runs the suites on the other driver (the benchmark compares them).
const otherDriver = process.env.TESSERA_TEST_PG_DRIVER === 'postgres.js';

async function open(url: string, opts: { max?: number } = {}): Promise<PostgresSessionStore> {
  if (!otherDriver) return openPostgresStore(url, { max: 6, ...opts });
  const { openPostgresJsDriver } = await import('../support/postgresjs-driver.ts');
  const driver = await openPostgresJsDriver(parsePostgresUrl(url), { max: opts.max ?? 6, statementTimeoutMs: DEFAULT_STATEMENT_TIMEOUT_MS });
  return openPostgresStore(url, { driver });
}
const databases: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(databases.map((d) => d.drop()));
});

async function fresh(label: string): Promise<TestDatabase> {
  const db = await createTestDatabase(label);
  databases.push(db);
  return db;
}

async function one(label: string): Promise<OpenedStore> {
  const db = await fresh(label);
  const store = await open(db.url);
  return {
    store,
    close: async () => {
      await store.close();
      await db.drop();
    },
  };
}

/** Three store instances (pools, feeds) on one database; calls go to each in turn. */
async function three(): Promise<OpenedStore> {
  const db = await fresh('multi');
  const stores = await Promise.all([0, 1, 2].map(() => open(db.url, { max: 4 })));
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

describeStoreConformance('PostgreSQL store, one pool', () => one('conf'), { skip });
describeStoreConformance('PostgreSQL store, three store instances on one database', three, { skip });
describeAuditConformance(
  'PostgreSQL audit store, two store instances on one database',
  async () => {
    const db = await fresh('audit');
    const a = await open(db.url);
    const b = await open(db.url);
    return {
      a,
      b,
      close: async () => {
        await a.close();
        await b.close();
        await db.drop();
      },
    };
  },
  { skip },
);
describeFederationConformance('PostgreSQL store', () => one('fed'), { skip });
describeOidcConformance('PostgreSQL store', () => one('oidc'), { skip });
describeConsentConformance('PostgreSQL store', () => one('consent'), { skip });
