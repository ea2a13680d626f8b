// What the PostgreSQL adapter needs of a driver: parameterised statements on a pool, a
// transaction on one pooled connection, and LISTEN on a dedicated connection that reconnects by
// itself. The adapter is written against this and nothing else, so that the two maintained
// drivers could be measured on the same adapter (docs/performance.md); node-postgres (`pg`) is
// the one Tessera ships (pg-driver.ts).
//
// Rows come back with bigint columns as JavaScript numbers (every bigint here is an epoch-ms time
// or a counter, far inside Number.MAX_SAFE_INTEGER).

export type Row = Record<string, unknown>;

export interface Sql {
  /** Rows of one statement with $1, $2, … parameters. */
  query<R = Row>(text: string, params?: readonly unknown[]): Promise<R[]>;
  /** How many rows one statement changed. */
  execute(text: string, params?: readonly unknown[]): Promise<number>;
}

export interface ListenHandle {
  /** False while the listening connection is down (notifications may be missed then). */
  isLive(): boolean;
  close(): Promise<void>;
}

export interface ListenCallbacks {
  onNotify(channel: string, payload: string): void;
  /** The connection went down (`up` false) or came back and listens again (`up` true). */
  onState(up: boolean): void;
}

export interface PgDriver extends Sql {
  readonly name: string;
  /**
   * Runs `fn` in one READ COMMITTED transaction on one connection; a throw rolls back. A
   * transaction that the server aborted for a deadlock or a serialization failure is run again
   * from the start (a few times).
   */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
  /** LISTENs on `channels` on a connection of its own; resolves once listening. */
  listen(channels: readonly string[], callbacks: ListenCallbacks): Promise<ListenHandle>;
  close(): Promise<void>;
}

export interface PoolOptions {
  /** Connections in the pool (TESSERA_STORE_POOL_SIZE). */
  max: number;
  /** Server-side statement_timeout, ms (TESSERA_STORE_STATEMENT_TIMEOUT_MS); also bounds lock waits. */
  statementTimeoutMs: number;
}

/** SQLSTATEs after which a transaction is simply run again. */
export const RETRY_SQLSTATES = new Set(['40001', '40P01']);
export const MAX_TRANSACTION_ATTEMPTS = 5;

/** Backoff of background reconnects of the listening connection: 100 ms doubling to 2 s, with jitter. */
export function reconnectDelay(attempt: number): number {
  const base = Math.min(2000, 100 * 2 ** Math.min(attempt, 5));
  return Math.round(base / 2 + Math.random() * (base / 2));
}
