// The SQLite adapter of the meta aggregate (meta-port.ts).

import type { DatabaseSync } from 'node:sqlite';
import type { MetaStore } from '../meta-port.ts';
import type { SqliteContext } from './transactions.ts';

export class SqliteMeta implements MetaStore {
  private readonly ctx: SqliteContext;
  private readonly stmt: ReturnType<typeof prepareStatements>;

  constructor(ctx: SqliteContext) {
    this.ctx = ctx;
    this.stmt = prepareStatements(ctx.db);
  }

  getMeta(key: string): Promise<unknown> {
    return this.ctx.run(() => {
      const row = this.ctx.one<{ value: string }>(this.stmt.metaByKey, { key });
      return row ? (JSON.parse(row.value) as unknown) : null;
    });
  }

  putMetaIfAbsent(key: string, value: unknown): Promise<unknown> {
    // Closes the race of two servers starting at once, each generating a signing key: the first
    // insert wins and both read back the same value.
    return this.ctx.write(() => {
      this.stmt.insertMetaIfAbsent.run({ key, value: JSON.stringify(value) });
      const row = this.ctx.one<{ value: string }>(this.stmt.metaByKey, { key });
      return JSON.parse(row!.value) as unknown;
    });
  }

  putMeta(key: string, value: unknown): Promise<void> {
    return this.ctx.write(() => {
      this.stmt.putMeta.run({ key, value: JSON.stringify(value) });
    });
  }

  /** A write for readiness (sqlite-store.ts ping), inside the caller's settle. */
  writeReadinessProbe(now: number): void {
    this.stmt.putMeta.run({ key: 'readiness-probe', value: JSON.stringify(now) });
  }
}

function prepareStatements(db: DatabaseSync) {
  return {
    metaByKey: db.prepare('SELECT value FROM meta WHERE key = $key'),
    insertMetaIfAbsent: db.prepare('INSERT INTO meta (key, value) VALUES ($key, $value) ON CONFLICT (key) DO NOTHING'),
    putMeta: db.prepare('INSERT INTO meta (key, value) VALUES ($key, $value) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
  };
}
