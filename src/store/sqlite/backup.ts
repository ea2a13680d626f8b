// `tessera backup` / `tessera restore` for the SQLite store, through SQLite's online backup API
// (node:sqlite `backup`): a consistent copy taken page by page while servers keep writing (a
// write during the copy makes SQLite restart the copy step, never copy a torn page).

import { closeSync, existsSync, openSync, renameSync, rmSync } from 'node:fs';
import { backup, DatabaseSync } from 'node:sqlite';

/**
 * Copies the live database at `source` to `target` (which must not exist). Resolves to pages
 * copied. The copy holds what the store holds (password hashes, the audit log): it is created
 * 0600, like the store's own files.
 */
export async function backupSqlite(source: string, target: string): Promise<number> {
  try {
    closeSync(openSync(target, 'wx', 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(`${target} exists already; name a new file`, { cause: err });
    throw err;
  }
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(source, { readOnly: true });
    db.exec('PRAGMA busy_timeout = 5000');
    return await backup(db, target);
  } catch (err) {
    rmSync(target, { force: true });
    throw err;
  } finally {
    db?.close();
  }
}

/** `PRAGMA integrity_check` of a file: 'ok' or what is wrong. */
export function checkSqlite(path: string): string {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const rows = db.prepare('PRAGMA integrity_check').all() as Array<{ integrity_check: string }>;
    return rows.map((r) => r.integrity_check).join('; ');
  } finally {
    db.close();
  }
}

/**
 * Puts the backup at `from` in place of the database at `target`. No server may be running on
 * `target` (the caller says so with `force` when a database is there already): the old file and
 * its WAL are replaced, not merged. The backup is checked first and copied through the backup
 * API to a temporary file that is then renamed, so a failure leaves the old database as it was.
 */
export async function restoreSqlite(from: string, target: string, force: boolean): Promise<number> {
  if (!existsSync(from)) throw new Error(`no backup at ${from}`);
  const check = checkSqlite(from);
  if (check !== 'ok') throw new Error(`the backup ${from} is damaged: ${check}`);
  if (existsSync(target) && !force) throw new Error(`${target} exists; stop every server on it and pass --force to replace it`);
  const temp = `${target}.restoring`;
  rmSync(temp, { force: true });
  closeSync(openSync(temp, 'wx', 0o600));
  const src = new DatabaseSync(from, { readOnly: true });
  let pages: number;
  try {
    pages = await backup(src, temp);
  } finally {
    src.close();
  }
  for (const suffix of ['-wal', '-shm']) rmSync(`${target}${suffix}`, { force: true });
  renameSync(temp, target);
  return pages;
}
