// The SQLite adapter of the storage port: one file, WAL, node:sqlite (DatabaseSync). It composes
// one adapter per aggregate over one connection (SqliteContext in transactions.ts):
//
//   sessions.ts      sessions and refresh tokens     accounts.ts   tenants and users
//   meta.ts          server metadata                 coordination.ts counters, feed of session ends
//   consents.ts, federation.ts, oidc.ts, audit.ts    the sub-stores (store.consents, …)

import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { StoreUnavailable, TesseraError } from '../../domain/errors.ts';
import { ACCOUNTS_OPERATIONS } from '../accounts-port.ts';
import { COORDINATION_OPERATIONS, type Coordination } from '../coordination-port.ts';
import { META_OPERATIONS } from '../meta-port.ts';
import { operationsOf } from '../operations.ts';
import type { SessionStore } from '../port.ts';
import { SESSIONS_OPERATIONS } from '../sessions-port.ts';
import { SqliteAccounts } from './accounts.ts';
import { SqliteAuditStore } from './audit.ts';
import { SqliteConsentStore } from './consents.ts';
import { SqliteBankStore } from './banks.ts';
import { FEED_POLL_MS, SqliteCoordination } from './coordination.ts';
import { SqliteFederationStore } from './federation.ts';
import { SqliteMeta } from './meta.ts';
import { migrate } from './migrations.ts';
import { SqliteOidcStore } from './oidc.ts';
import { SqliteSessions } from './sessions.ts';
import { markWritable, settle, SqliteContext, unwritable } from './transactions.ts';

export { FEED_POLL_MS, FEED_RETENTION_MS } from './coordination.ts';
export { SESSION_RETENTION_MS } from './sessions.ts';

/** How long a writer waits for another connection's write lock before giving up (503). */
export const BUSY_TIMEOUT_MS = 5_000;

export interface SqliteStoreOptions {
  /** Default BUSY_TIMEOUT_MS: how long an operation waits for another writer before it fails with StoreUnavailable. */
  busyTimeoutMs?: number;
  /** Default FEED_POLL_MS. */
  feedPollMs?: number;
}

/**
 * The database holds sessions, users and audit records: the file is created 0600 (SQLite gives
 * its `-wal` and `-shm` files the database file's mode), and an existing file and its companions
 * are set to 0600.
 */
function ownerOnly(path: string): void {
  closeSync(openSync(path, 'a', 0o600));
  for (const f of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      chmodSync(f, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/**
 * Opens (and creates, with its parent folders) the database file and brings its schema up to
 * date. `:memory:` gives a private in-memory database. Rejects with StoreUnavailable when the
 * file cannot be used (not a database, no permission, locked for longer than the busy timeout).
 */
export function openSqliteStore(path: string, opts: SqliteStoreOptions = {}): Promise<SqliteSessionStore> {
  return Promise.resolve().then(() => {
    let db: DatabaseSync | undefined;
    try {
      if (path !== ':memory:' && !path.startsWith('file:')) {
        mkdirSync(dirname(path), { recursive: true });
        ownerOnly(path);
      }
      db = new DatabaseSync(path, { timeout: opts.busyTimeoutMs ?? BUSY_TIMEOUT_MS, enableForeignKeyConstraints: true });
      // WAL: readers never block the writer and the writer never blocks readers. With WAL,
      // synchronous=NORMAL loses nothing when the process dies (only on power loss / OS crash).
      db.exec('PRAGMA journal_mode = WAL');
      db.exec('PRAGMA synchronous = NORMAL');
      db.exec('PRAGMA foreign_keys = ON');
      migrate(db);
      return composeSqliteStore(db, opts.feedPollMs ?? FEED_POLL_MS);
    } catch (err) {
      if (db?.isOpen) db.close();
      // Whatever stops the file from opening (a folder we may not create, a file that is not a
      // database, a lock held past the busy timeout) means the store is unusable.
      if (err instanceof TesseraError) throw err;
      throw new StoreUnavailable(`Cannot open the SQLite database at ${path}: ${(err as Error).message}`, err);
    }
  });
}

/** The SQLite store: the aggregates' operations of its adapters, and the sub-stores. */
export type SqliteSessionStore = SessionStore & Coordination & { readonly audit: SqliteAuditStore };

function composeSqliteStore(db: DatabaseSync, feedPollMs = FEED_POLL_MS): SqliteSessionStore {
  const ctx = new SqliteContext(db);
  const coordination = new SqliteCoordination(ctx, feedPollMs);
  const meta = new SqliteMeta(ctx);
  return {
    kind: 'sqlite',
    ...operationsOf(new SqliteSessions(ctx), SESSIONS_OPERATIONS),
    ...operationsOf(new SqliteAccounts(ctx), ACCOUNTS_OPERATIONS),
    ...operationsOf(meta, META_OPERATIONS),
    ...operationsOf(coordination, COORDINATION_OPERATIONS),
    audit: new SqliteAuditStore(db),
    consents: new SqliteConsentStore(db),
    banks: new SqliteBankStore(db),
    federation: new SqliteFederationStore(db),
    oidc: new SqliteOidcStore(db),
    // Readiness. After a write failed for want of a writable file (disk full, read-only, I/O
    // error), reads alone would still succeed, so until a write works again this one writes.
    ping: () =>
      settle(db, () => {
        if (unwritable(db) === null) {
          db.prepare('SELECT 1').get();
          return;
        }
        meta.writeReadinessProbe(Date.now());
        markWritable(db);
      }),
    close: () => {
      coordination.close();
      if (db.isOpen) db.close();
      return Promise.resolve();
    },
  };
}
