// How every SQLite store (sessions and its sub-stores) runs its synchronous work: a closed
// database is StoreUnavailable, SQLite's "cannot use the file" errors become StoreUnavailable,
// and a deciding operation takes the write lock first (BEGIN IMMEDIATE), so that what it reads
// cannot change before it writes — across connections and processes on the same file.

import type { DatabaseSync } from 'node:sqlite';
import { StoreUnavailable } from '../../domain/errors.ts';
import { toStoreError } from './sqlite-store.ts';

/** Runs synchronous database work and settles the promise with its outcome. */
export function settle<T>(db: DatabaseSync, fn: () => T): Promise<T> {
  if (!db.isOpen) return Promise.reject(new StoreUnavailable('The SQLite store is closed.'));
  try {
    return Promise.resolve(fn());
  } catch (err) {
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
    } catch (err) {
      if (db.isOpen && db.isTransaction) db.exec('ROLLBACK');
      throw err;
    }
    after?.();
    return result;
  });
}
