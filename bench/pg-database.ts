// A PostgreSQL database of a bench's own, on the server of `serverUrl` (its own database is left
// alone): created now, dropped by `drop()` — the benches that measure PostgreSQL (run.ts,
// cookie-tail.ts, slide-burst.ts) make theirs through here.

import pg from 'pg';

export interface BenchDatabase {
  url: string;
  drop(): Promise<void>;
}

export async function createBenchDatabase(serverUrl: string, name: string): Promise<BenchDatabase> {
  const at = (db: string) => {
    const u = new URL(serverUrl);
    u.pathname = `/${db}`;
    return u.toString();
  };
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: at('postgres'), connectionTimeoutMillis: 2000 });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  return { url: at(name), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}
