// How every SQLite store (sessions and its sub-stores) runs its synchronous work: a closed
// database is StoreUnavailable, SQLite's "cannot use the file" errors become StoreUnavailable,
// and a deciding operation takes the write lock first (BEGIN IMMEDIATE), so that what it reads
// cannot change before it writes — across connections and processes on the same file.

import type { DatabaseSync } from 'node:sqlite';
import { StoreUnavailable } from '../../domain/errors.ts';
import { toStoreError } from './sqlite-store.ts';

/**
 * Primary result codes that say the file does not take writes (disk full, read-only, I/O error,
 * cannot open): a database in that state still answers reads, so readiness asks for a write
 * until one succeeds again (see `unwritable`).
 */
const WRITE_FAILURE_CODES = new Set([8, 10, 13, 14]);
const unwritableSince = new WeakMap<DatabaseSync, { at: number; reason: string }>();

/** Why the last write on `db` failed, while no write has succeeded since; null when writes work. */
export function unwritable(db: DatabaseSync): { at: number; reason: string } | null {
  return unwritableSince.get(db) ?? null;
}

/** A write on `db` succeeded: it takes writes again. */
export function markWritable(db: DatabaseSync): void {
  unwritableSince.delete(db);
}

/** Runs synchronous database work and settles the promise with its outcome. */
export function settle<T>(db: DatabaseSync, fn: () => T): Promise<T> {
  if (!db.isOpen) return Promise.reject(new StoreUnavailable('The SQLite store is closed.'));
  try {
    return Promise.resolve(fn());
  } catch (err) {
    const errcode = (err as { errcode?: unknown }).errcode;
    if (typeof errcode === 'number' && WRITE_FAILURE_CODES.has(errcode & 0xff) && !unwritableSince.has(db)) {
      unwritableSince.set(db, { at: Date.now(), reason: err instanceof Error ? err.message : String(err) });
    }
    return Promise.reject(toStoreError(err));
  }
}

/** `fn` inside BEGIN IMMEDIATE … COMMIT (rolled back when it throws); `after` runs once committed. */
export function inWriteTransaction<T>(db: DatabaseSync, fn: () => T, after?: () => void): Promise<T> {
  return settle(db, () => {
    db.exec('BEGIN IMMEDIATE');
    let result: T;
    try {
      result = fn();
      db.exec('COMMIT');
      unwritableSince.delete(db);
    } catch (err) {
      if (db.isOpen && db.isTransaction) db.exec('ROLLBACK');
      throw err;
    }
    after?.();
    return result;
  });
}
