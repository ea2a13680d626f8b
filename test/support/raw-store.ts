// Everything a reader of the store sees, as one string: every row of every SQLite table (and the
// database and WAL files' bytes), every row of every PostgreSQL table, or every key under the
// Redis prefix with its value. For tests asserting that no live credential is stored in clear.

import { existsSync, readFileSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import type { Config } from '../../src/config/config.ts';
import { openConnection } from '../../src/store/redis/connection.ts';
import { parseRedisUrl } from '../../src/store/redis/url.ts';

export async function dumpStore(store: Config['store'], redisPrefix: string | null): Promise<string> {
  if (store.kind === 'sqlite') return dumpSqlite(store.sqlitePath as string);
  if (store.kind === 'postgres') return dumpPostgres(store.url);
  if (redisPrefix === null) throw new Error('a Redis store without a prefix');
  return dumpRedis(store.url, redisPrefix);
}

function dumpSqlite(path: string): string {
  const out: string[] = [];
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
    for (const { name } of tables) {
      for (const row of db.prepare(`SELECT * FROM "${name.replaceAll('"', '""')}"`).all()) out.push(`${name} ${JSON.stringify(row)}`);
    }
  } finally {
    db.close();
  }
  // The files too: pages of rows since deleted or rewritten are still in them.
  for (const f of [path, `${path}-wal`]) if (existsSync(f)) out.push(readFileSync(f).toString('latin1'));
  return out.join('\n');
}

async function dumpPostgres(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  await c.connect();
  try {
    const out: string[] = [];
    const tables = await c.query<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
    for (const { tablename } of tables.rows) {
      const rows = await c.query<{ r: string }>(`SELECT t::text AS r FROM ${pg.escapeIdentifier(tablename)} t`);
      for (const { r } of rows.rows) out.push(`${tablename} ${r}`);
    }
    return out.join('\n');
  } finally {
    await c.end();
  }
}

async function dumpRedis(url: string, prefix: string): Promise<string> {
  const conn = await openConnection(parseRedisUrl(url), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
  const out: string[] = [];
  try {
    const pattern = prefix.replace(/[*?[\]\\]/g, '\\$&') + '*';
    for (const send of await conn.masters()) {
      let cursor = '0';
      do {
        const [next, keys] = (await send(['SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000'])) as [string, string[]];
        cursor = next;
        for (const key of keys) {
          const type = (await send(['TYPE', key])) as string;
          const read: Record<string, string[]> = {
            string: ['GET', key],
            set: ['SMEMBERS', key],
            zset: ['ZRANGE', key, '0', '-1', 'WITHSCORES'],
            hash: ['HGETALL', key],
            list: ['LRANGE', key, '0', '-1'],
            stream: ['XRANGE', key, '-', '+'],
          };
          const cmd = read[type];
          out.push(`${key} ${type} ${cmd ? JSON.stringify(await send(cmd)) : ''}`);
        }
      } while (cursor !== '0');
    }
  } finally {
    await conn.close();
  }
  return out.join('\n');
}
