// The PostgreSQL adapter's driver interface (src/store/postgres/driver.ts) on postgres.js, the
// other maintained driver: only for measuring it against node-postgres on the same adapter (the
// conformance suite with TESSERA_TEST_PG_DRIVER=postgres.js, and `npm run bench`'s driver
// section). Tessera itself ships node-postgres; docs/performance.md says why.
//
// Unlike pg-driver.ts, its LISTEN never reports a connection that went down (postgres.js
// reconnects and re-listens by itself, and calls back only once it listens again).

import postgres from 'postgres';
import { MAX_TRANSACTION_ATTEMPTS, RETRY_SQLSTATES, type ListenCallbacks, type ListenHandle, type PgDriver, type PoolOptions, type Sql } from '../../src/store/postgres/driver.ts';
import { toStoreError } from '../../src/store/postgres/pg-driver.ts';
import type { PostgresTarget } from '../../src/store/postgres/url.ts';

type Conn = postgres.Sql<{ bigint: number }>;

export function openPostgresJsDriver(target: PostgresTarget, opts: PoolOptions): Promise<PgDriver> {
  const sql: Conn = postgres({
    host: target.host,
    port: target.port,
    database: target.database,
    username: target.user,
    ...(target.password === undefined ? {} : { password: target.password }),
    ssl: target.ssl === false ? false : target.ssl,
    max: opts.max,
    connect_timeout: Math.ceil(target.connectTimeoutMs / 1000),
    prepare: true,
    onnotice: () => undefined,
    connection: { application_name: target.applicationName, statement_timeout: opts.statementTimeoutMs },
    types: { bigint: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) } },
  });
  return Promise.resolve(new PostgresJsDriver(sql));
}

function on(sql: Conn | postgres.TransactionSql<{ bigint: number }>): Sql {
  return {
    query: async <R>(text: string, params?: readonly unknown[]) => {
      // As pg-driver.ts: no stored text holds U+0000, so a lookup by one finds nothing.
      if (params !== undefined && /^\s*SELECT\b/i.test(text) && params.some((p) => typeof p === 'string' && p.includes('\u0000'))) return [];
      try {
        return [...(await sql.unsafe(text, (params ?? []) as never[], { prepare: params !== undefined }))] as R[];
      } catch (err) {
        throw toStoreError(err);
      }
    },
    execute: async (text: string, params?: readonly unknown[]) => {
      try {
        return (await sql.unsafe(text, (params ?? []) as never[], { prepare: params !== undefined })).count ?? 0;
      } catch (err) {
        throw toStoreError(err);
      }
    },
  };
}

class PostgresJsDriver implements PgDriver {
  readonly name = 'postgres.js';
  readonly #sql: Conn;
  readonly #plain: Sql;

  constructor(sql: Conn) {
    this.#sql = sql;
    this.#plain = on(sql);
  }

  query<R>(text: string, params?: readonly unknown[]): Promise<R[]> {
    return this.#plain.query<R>(text, params);
  }

  execute(text: string, params?: readonly unknown[]): Promise<number> {
    return this.#plain.execute(text, params);
  }

  async transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.#sql.begin((tx) => fn(on(tx)))) as T;
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code === 'string' && RETRY_SQLSTATES.has(code) && attempt < MAX_TRANSACTION_ATTEMPTS) continue;
        throw toStoreError(err);
      }
    }
  }

  async listen(channels: readonly string[], callbacks: ListenCallbacks): Promise<ListenHandle> {
    const listening = await Promise.all(
      channels.map((ch) => {
        let first = true;
        return this.#sql.listen(ch, (payload) => callbacks.onNotify(ch, payload), () => {
          if (!first) callbacks.onState(true);
          first = false;
        });
      }),
    );
    return {
      isLive: () => true,
      close: async () => {
        await Promise.all(listening.map((l) => l.unlisten().catch(() => undefined)));
      },
    };
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 1 });
  }
}
