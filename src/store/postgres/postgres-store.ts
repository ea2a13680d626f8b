// The PostgreSQL adapter of the storage port, composed of one adapter per aggregate on one
// driver (a pool, and a LISTEN connection per store instance):
//
//   sessions.ts      sessions and refresh tokens     accounts.ts     tenants and users
//   meta.ts          server metadata                 coordination.ts counters, feed of session ends
//   consents.ts, federation.ts, oidc.ts, audit.ts    the sub-stores (store.consents, …)
//
// Every deciding operation is one READ COMMITTED transaction (driver.transaction). Which lock
// closes which race is said at each operation and in docs/architecture.md; in short:
// - a single UPDATE … WHERE <still valid> RETURNING decides by itself: the row lock makes a
//   concurrent writer wait, and READ COMMITTED re-checks the WHERE on the row as committed;
// - read-decide-write on existing rows takes the rows FOR UPDATE (or FOR SHARE for a parent);
// - decisions about rows that may not exist yet (a count of a user's sessions, children of a
//   parent being revoked) take advisory locks on their owner (locks.ts): the user exclusively,
//   the tenant shared — and exclusively for the tenant-wide revocation.
// Later statements of a READ COMMITTED transaction see what other transactions committed before
// them, so what a transaction reads after taking a lock is current.
//
// The feed of session ends is a trigger that NOTIFYs each end (migration 1) and a LISTEN
// connection per store instance (feed.ts); the same connection hears the audit feed and the
// channel between the processes (publishToPeers: pg_notify, no table).


import { ACCOUNTS_OPERATIONS } from '../accounts-port.ts';
import { COORDINATION_OPERATIONS, type Coordination } from '../coordination-port.ts';
import { META_OPERATIONS } from '../meta-port.ts';
import { operationsOf } from '../operations.ts';
import type { SessionStore } from '../port.ts';
import { SESSIONS_OPERATIONS } from '../sessions-port.ts';
import { PostgresAccounts } from './accounts.ts';
import { PostgresAuditStore } from './audit.ts';
import { PostgresConsentStore } from './consents.ts';
import { PostgresBankStore } from './banks.ts';
import { PostgresCoordination } from './coordination.ts';
import type { PgDriver, PoolOptions } from './driver.ts';
import { NotifyFeed } from './feed.ts';
import { PostgresFederationStore } from './federation.ts';
import { PostgresMeta } from './meta.ts';
import { AUDIT_CHANNEL, migrate, PEERS_CHANNEL, SESSION_ENDS_CHANNEL } from './migrations.ts';
import { PostgresOidcStore } from './oidc.ts';
import { openPgDriver } from './pg-driver.ts';
import { PostgresSessions } from './sessions.ts';
import { parsePostgresUrl } from './url.ts';

export { InvalidPostgresUrl, parsePostgresUrl, redactPostgresUrl } from './url.ts';
export { SESSION_RETENTION_MS } from './sessions.ts';

export const DEFAULT_POOL_SIZE = 10;
export const DEFAULT_STATEMENT_TIMEOUT_MS = 5_000;

export interface PostgresStoreOptions extends Partial<PoolOptions> {
  /** Apply missing migrations on open (default true; `tessera migrate` opens with false). */
  migrate?: boolean;
  /** A driver other than node-postgres (the benchmark measures postgres.js this way). */
  driver?: PgDriver;
}

/** The PostgreSQL store: the aggregates' operations of its adapters, the sub-stores and its driver. */
export type PostgresSessionStore = SessionStore &
  Coordination & {
    readonly audit: PostgresAuditStore;
    readonly driver: PgDriver;
    /** As Coordination's, with whether the feed's connection is up now. */
    subscribeSessionEnds: PostgresCoordination['subscribeSessionEnds'];
  };

/** Opens a pool on the URL's database, brings its schema up to date and returns the store. */
export async function openPostgresStore(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresSessionStore> {
  const driver =
    opts.driver ??
    (await openPgDriver(parsePostgresUrl(url), {
      max: opts.max ?? DEFAULT_POOL_SIZE,
      statementTimeoutMs: opts.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS,
    }));
  try {
    if (opts.migrate !== false) await migrate(driver);
  } catch (err) {
    await driver.close();
    throw err;
  }
  return composePostgresStore(driver);
}

function composePostgresStore(driver: PgDriver): PostgresSessionStore {
  const feed = new NotifyFeed(driver, [SESSION_ENDS_CHANNEL, AUDIT_CHANNEL, PEERS_CHANNEL]);
  const coordination = new PostgresCoordination(driver, feed);
  return {
    kind: 'postgres',
    driver,
    ...operationsOf(new PostgresSessions(driver), SESSIONS_OPERATIONS),
    ...operationsOf(new PostgresAccounts(driver), ACCOUNTS_OPERATIONS),
    ...operationsOf(new PostgresMeta(driver), META_OPERATIONS),
    ...operationsOf(coordination, COORDINATION_OPERATIONS),
    subscribeSessionEnds: coordination.subscribeSessionEnds.bind(coordination),
    audit: new PostgresAuditStore(driver, feed),
    consents: new PostgresConsentStore(driver),
    banks: new PostgresBankStore(driver),
    federation: new PostgresFederationStore(driver),
    oidc: new PostgresOidcStore(driver),
    ping: async () => {
      await driver.query('SELECT 1');
    },
    close: () => driver.close(),
  };
}
