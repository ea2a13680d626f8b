// PostgreSQL for tests: the server on 127.0.0.1:5432 (TESSERA_TEST_POSTGRES_URL to change it;
// user postgres, trust auth). Every test run makes its own database, tessera_test_<random>, and
// drops exactly that database afterwards — never anything it did not make.
//
// A test that needs PostgreSQL and cannot get it SKIPS — unless TESSERA_REQUIRE_POSTGRES=1 (CI
// sets it), in which case it FAILS.

import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The server's URL without a database name (the admin connection uses `postgres`). */
export function postgresServerUrl(): string {
  return process.env.TESSERA_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432';
}

function withDatabase(server: string, database: string): string {
  const u = new URL(server);
  u.pathname = `/${database}`;
  return u.toString();
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: withDatabase(postgresServerUrl(), 'postgres'), connectionTimeoutMillis: 2000 });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** null when the server answers; otherwise why not. */
export async function postgresUnavailable(): Promise<string | null> {
  try {
    await admin((c) => c.query('SELECT 1'));
    return null;
  } catch (err) {
    return `${postgresServerUrl()} does not answer (${err instanceof Error ? err.message : String(err)})`;
  }
}

export function requirePostgresOrSkip(reason: string | null): boolean {
  if (reason === null) return false;
  if (process.env.TESSERA_REQUIRE_POSTGRES === '1') throw new Error(`PostgreSQL is required (TESSERA_REQUIRE_POSTGRES=1) but ${reason}`);
  process.stderr.write(`[tessera tests] skipping PostgreSQL tests: ${reason}\n`);
  return true;
}

export interface TestDatabase {
  name: string;
  url: string;
  /** Drops the database (terminating what is still connected). Safe to call twice. */
  drop(): Promise<void>;
}

/** Creates tessera_test_<random> and returns its URL. */
export async function createTestDatabase(label = 't'): Promise<TestDatabase> {
  const name = `tessera_test_${label}_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`));
  let dropped: Promise<void> | null = null;
  return {
    name,
    url: withDatabase(postgresServerUrl(), name),
    drop: () =>
      (dropped ??= admin(async (c) => {
        await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
      })),
  };
}

/** Refuses new connections to the database; the open ones go on. */
export async function refuseConnections(name: string): Promise<void> {
  await admin((c) => c.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} ALLOW_CONNECTIONS false`));
}

/** Refuses new connections to the database and ends the open ones: the database "goes away". */
export async function takeDatabaseAway(name: string): Promise<void> {
  await admin(async (c) => {
    await c.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} ALLOW_CONNECTIONS false`);
    await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
  });
}

export async function bringDatabaseBack(name: string): Promise<void> {
  await admin((c) => c.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} ALLOW_CONNECTIONS true`));
}

/** Ends the connections of this database that LISTEN (the feed), leaving the pool alone. */
export async function terminateListeners(name: string): Promise<number> {
  return admin(async (c) => {
    const r = await c.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
      [name],
    );
    return r.rowCount ?? 0;
  });
}
