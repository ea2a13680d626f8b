// The node-postgres (`pg`) driver behind driver.ts: a pg.Pool sized by configuration, every
// connection with a server-side statement_timeout (which also bounds lock waits) and a
// client-side query timeout a little longer (a server that stopped answering), each distinct
// statement prepared once per connection (named statements), and a dedicated pg.Client for
// LISTEN that reconnects with backoff.

import pg from 'pg';
import { BadRequest, StoreUnavailable, TesseraError } from '../../domain/errors.ts';
import {
  MAX_TRANSACTION_ATTEMPTS,
  reconnectDelay,
  RETRY_SQLSTATES,
  type ListenCallbacks,
  type ListenHandle,
  type PgDriver,
  type PoolOptions,
  type Sql,
} from './driver.ts';
import type { PostgresTarget } from './url.ts';

const INT8_OID = 20;

/** How often the listening connection is asked a question to prove it still carries traffic. */
export const LISTEN_PROBE_EVERY_MS = 1000;
/** No answer within this long: the listening connection counts as lost (see listen()). */
export const LISTEN_PROBE_TIMEOUT_MS = 3000;

/** bigint columns as numbers (epoch-ms times and counters); everything else as pg parses it. */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary'): unknown =>
    oid === INT8_OID ? (v: string) => Number(v) : (pg.types.getTypeParser(oid, format ?? 'text') as unknown)) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * SQLSTATE classes and codes that mean "the database cannot serve now" rather than "this
 * statement is wrong": connection exceptions (08), insufficient resources (53), operator
 * intervention (57: shutdown, statement or lock timeout via query_canceled), system errors (58),
 * a read-only server (25006, a standby after a failover), a lock not available (55P03), and a
 * refused new connection.
 */
function unavailableSqlState(code: string, message: string): boolean {
  if (/^(08|53|57|58)/.test(code) || code === '25006' || code === '55P03') return true;
  // Refusals of a new connection: no such database, authentication failed, and a database that
  // does not accept connections now (ALLOW_CONNECTIONS false, being dropped or created).
  if (code === '3D000' || code === '28000' || code === '28P01') return true;
  return code === '55000' && /accepting connections/i.test(message);
}

/** Maps what pg throws to the port's errors: an unusable database → StoreUnavailable (503). */
export function toStoreError(err: unknown): Error {
  if (err instanceof TesseraError) return err;
  if (!(err instanceof Error)) return new Error(String(err));
  const code = (err as { code?: unknown }).code;
  if (code === '22021' || code === '22P05') {
    return new BadRequest('invalid_request', 'A text value holds a character that the store cannot keep (U+0000).');
  }
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    return unavailableSqlState(code, err.message) ? new StoreUnavailable(`The PostgreSQL store is unavailable: ${err.message}`, err) : err;
  }
  // No SQLSTATE: the connection itself failed (refused, reset, timed out, pool exhausted, ended).
  return new StoreUnavailable(`The PostgreSQL store is unavailable: ${err.message}`, err);
}

function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function connectionConfig(target: PostgresTarget): pg.ClientConfig {
  return {
    host: target.host,
    port: target.port,
    database: target.database,
    user: target.user,
    ...(target.password === undefined ? {} : { password: target.password }),
    ssl: target.ssl,
    application_name: target.applicationName,
    connectionTimeoutMillis: target.connectTimeoutMs,
    keepAlive: true,
    types,
  };
}

export async function openPgDriver(target: PostgresTarget, opts: PoolOptions): Promise<PgDriver> {
  const pool = new pg.Pool({
    ...connectionConfig(target),
    max: opts.max,
    statement_timeout: opts.statementTimeoutMs,
    query_timeout: opts.statementTimeoutMs + 1000,
    idle_in_transaction_session_timeout: Math.max(opts.statementTimeoutMs * 2, 10_000),
    idleTimeoutMillis: 30_000,
  });
  // An idle connection that breaks (server restart) is dropped by the pool; the next checkout
  // makes a new one. Without a listener the error would crash the process.
  pool.on('error', () => undefined);
  const driver = new NodePostgresDriver(pool, target);
  try {
    await driver.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  return driver;
}

class NodePostgresDriver implements PgDriver {
  readonly name = 'node-postgres';
  readonly #pool: pg.Pool;
  readonly #target: PostgresTarget;
  readonly #names = new Map<string, string>();
  readonly #listeners = new Set<{ close(): Promise<void> }>();
  #closed = false;

  constructor(pool: pg.Pool, target: PostgresTarget) {
    this.#pool = pool;
    this.#target = target;
  }

  /** A named (server-side prepared, per connection) statement for each distinct text. */
  #statement(text: string, params: readonly unknown[] | undefined): pg.QueryConfig<unknown[]> {
    // Without parameters: the simple protocol, which also runs several statements (migrations).
    if (params === undefined) return { text };
    let name = this.#names.get(text);
    if (name === undefined && this.#names.size < 2000) {
      name = `t${this.#names.size}`;
      this.#names.set(text, name);
    }
    return { text, values: params as unknown[], ...(name === undefined ? {} : { name }) };
  }

  async query<R>(text: string, params?: readonly unknown[]): Promise<R[]> {
    if (this.#closed) throw new StoreUnavailable('The PostgreSQL store has been closed.');
    // PostgreSQL text cannot hold U+0000, so no stored value equals one that does: a lookup by
    // it finds nothing (SQLite and Redis would store it; here a write of it is refused, 400).
    if (params !== undefined && /^\s*SELECT\b/i.test(text) && params.some((p) => typeof p === 'string' && p.includes('\u0000'))) return [];
    try {
      return (await this.#pool.query(this.#statement(text, params))).rows as R[];
    } catch (err) {
      throw toStoreError(err);
    }
  }

  async execute(text: string, params?: readonly unknown[]): Promise<number> {
    if (this.#closed) throw new StoreUnavailable('The PostgreSQL store has been closed.');
    try {
      return (await this.#pool.query(this.#statement(text, params))).rowCount ?? 0;
    } catch (err) {
      throw toStoreError(err);
    }
  }

  async transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      if (this.#closed) throw new StoreUnavailable('The PostgreSQL store has been closed.');
      let client: pg.PoolClient;
      try {
        client = await this.#pool.connect();
      } catch (err) {
        throw toStoreError(err);
      }
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const tx: Sql = {
          query: async <R>(text: string, params?: readonly unknown[]) => (await client.query(this.#statement(text, params))).rows as R[],
          execute: async (text: string, params?: readonly unknown[]) => (await client.query(this.#statement(text, params))).rowCount ?? 0,
        };
        const result = await fn(tx);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          broken = rollbackErr as Error; // the connection is unusable: the pool must not hand it out again
        }
        const state = sqlState(err);
        if (state !== undefined && RETRY_SQLSTATES.has(state) && attempt < MAX_TRANSACTION_ATTEMPTS) continue;
        throw toStoreError(err);
      } finally {
        client.release(broken);
      }
    }
  }

  async listen(channels: readonly string[], callbacks: ListenCallbacks): Promise<ListenHandle> {
    if (this.#closed) throw new StoreUnavailable('The PostgreSQL store has been closed.');
    let closed = false;
    let live = false;
    let client: pg.Client | null = null;
    let timer: NodeJS.Timeout | null = null;
    let attempt = 0;
    // A listening connection can go deaf without any event: a half-open socket (a peer or a
    // network path that vanished) neither errors nor ends, and TCP keepalive notices only after
    // minutes. So the listener asks its own connection a question every LISTEN_PROBE_EVERY_MS;
    // an answer proves the socket carries traffic both ways (notifications travel on it too),
    // and no answer within LISTEN_PROBE_TIMEOUT_MS counts as the connection lost: the feed
    // reports 'down' (strict reads) and reconnects.
    let probing = false;
    const probe = setInterval(() => {
      const c = client;
      if (closed || c === null || probing) return;
      probing = true;
      const deadline = setTimeout(() => {
        probing = false;
        lost(c);
      }, LISTEN_PROBE_TIMEOUT_MS);
      deadline.unref();
      c.query('SELECT 1').then(
        () => {
          clearTimeout(deadline);
          probing = false;
        },
        () => {
          clearTimeout(deadline);
          probing = false;
          lost(c);
        },
      );
    }, LISTEN_PROBE_EVERY_MS);
    probe.unref();

    const connect = async (): Promise<pg.Client> => {
      const c = new pg.Client({ ...connectionConfig(this.#target), query_timeout: this.#target.connectTimeoutMs });
      c.on('notification', (n) => {
        if (!closed) callbacks.onNotify(n.channel, n.payload ?? '');
      });
      c.on('error', () => lost(c));
      c.on('end', () => lost(c));
      try {
        await c.connect();
        for (const ch of channels) await c.query(`LISTEN ${pg.escapeIdentifier(ch)}`);
      } catch (err) {
        c.removeAllListeners('end');
        c.on('error', () => undefined);
        await c.end().catch(() => undefined);
        throw toStoreError(err);
      }
      return c;
    };

    const lost = (c: pg.Client): void => {
      if (closed || c !== client) return;
      client = null;
      c.removeAllListeners('end');
      c.on('error', () => undefined);
      void c.end().catch(() => undefined);
      if (live) {
        live = false;
        callbacks.onState(false);
      }
      schedule();
    };

    const schedule = (): void => {
      if (closed || timer !== null) return;
      timer = setTimeout(() => {
        timer = null;
        connect().then(
          (c) => {
            if (closed) {
              void c.end().catch(() => undefined);
              return;
            }
            attempt = 0;
            client = c;
            live = true;
            callbacks.onState(true);
          },
          () => {
            attempt += 1;
            schedule();
          },
        );
      }, reconnectDelay(attempt));
      timer.unref();
    };

    try {
      client = await connect();
    } catch (err) {
      clearInterval(probe);
      throw err;
    }
    live = true;
    const handle = {
      isLive: () => live,
      close: async () => {
        if (closed) return;
        closed = true;
        live = false;
        clearInterval(probe);
        this.#listeners.delete(handle);
        if (timer !== null) clearTimeout(timer);
        const c = client;
        client = null;
        if (c) {
          c.removeAllListeners('end');
          c.on('error', () => undefined);
          await c.end().catch(() => undefined);
        }
      },
    };
    this.#listeners.add(handle);
    return handle;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#listeners].map((l) => l.close()));
    await this.#pool.end().catch(() => undefined);
  }
}
