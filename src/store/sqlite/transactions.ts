// How every SQLite adapter (each aggregate, and the sub-stores) runs its synchronous work: a closed
// database is StoreUnavailable, SQLite's "cannot use the file" errors become StoreUnavailable,
// and a deciding operation takes the write lock first (BEGIN IMMEDIATE), so that what it reads
// cannot change before it writes — across connections and processes on the same file.

import type { DatabaseSync } from 'node:sqlite';
import type { SQLInputValue, StatementSync } from 'node:sqlite';
import { StoreUnavailable, TesseraError } from '../../domain/errors.ts';

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

/**
 * One connection as the aggregate adapters share it: reads (`run`), writes under the write lock
 * (`write`, after which the feed of session ends is delivered to this process's subscribers), and
 * the housekeeping that rides along with the expiry sweep.
 */
export class SqliteContext {
  readonly db: DatabaseSync;
  readonly #afterCommit: (() => void)[] = [];
  readonly #housekeeping: ((now: number) => void)[] = [];

  constructor(db: DatabaseSync) {
    this.db = db;
  }

  /** Runs `fn` in one BEGIN IMMEDIATE transaction; any throw rolls it back. */
  write<T>(fn: () => T): Promise<T> {
    return inWriteTransaction(this.db, fn, () => {
      for (const f of this.#afterCommit) f();
    });
  }

  /** Runs synchronous database work and settles the promise with its outcome. */
  run<T>(fn: () => T): Promise<T> {
    return settle(this.db, fn);
  }

  /** `f` runs after every commit of `write`, before its caller resumes. */
  afterCommit(f: () => void): void {
    this.#afterCommit.push(f);
  }

  /** `f` runs inside the expiry sweep's transaction (pruning of tables that grow). */
  onHousekeeping(f: (now: number) => void): void {
    this.#housekeeping.push(f);
  }

  housekeeping(now: number): void {
    for (const f of this.#housekeeping) f(now);
  }

  one<T>(stmt: StatementSync, params: Record<string, SQLInputValue>): T | undefined {
    return stmt.get(params) as T | undefined;
  }

  all<T>(stmt: StatementSync, params: Record<string, SQLInputValue>): T[] {
    return stmt.all(params) as T[];
  }
}

interface SqliteError {
  code: string;
  errcode?: number;
}

function isSqliteError(err: unknown): err is Error & SqliteError {
  return err instanceof Error && typeof (err as Partial<SqliteError>).code === 'string';
}

const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;
const SQLITE_CONSTRAINT_UNIQUE = 2067;

export function isUniqueViolation(err: unknown): boolean {
  return (
    isSqliteError(err) &&
    (err.errcode === SQLITE_CONSTRAINT_UNIQUE || err.errcode === SQLITE_CONSTRAINT_PRIMARYKEY)
  );
}

/**
 * Primary result codes that mean the database cannot be used right now (rather than a bug in a
 * statement): BUSY/LOCKED (another writer held the lock past the busy timeout), NOMEM, READONLY,
 * IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
 */
const UNAVAILABLE_CODES = new Set([5, 6, 7, 8, 10, 11, 13, 14, 15, 26]);

/** Maps what node:sqlite throws to the port's errors: unusable database → StoreUnavailable. */
export function toStoreError(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err));
  if (err instanceof TesseraError || !isSqliteError(err)) return err;
  if (err.code === 'ERR_SQLITE_ERROR' && err.errcode !== undefined && UNAVAILABLE_CODES.has(err.errcode & 0xff)) {
    return new StoreUnavailable(`The SQLite database is unavailable: ${err.message}`, err);
  }
  return err;
}
