// Coordination on PostgreSQL (coordination-port.ts): fixed-window counters in a table, and the
// feed of session ends — a trigger NOTIFYs each end (migration 1), a LISTEN connection per store
// instance hears them (feed.ts) — and the channel between the processes, NOTIFY on PEERS_CHANNEL
// heard on that same connection.

import { checkPeerMessages, type Coordination, type CounterState, type FeedChange } from '../coordination-port.ts';
import type { PgDriver } from './driver.ts';
import type { NotifyFeed } from './feed.ts';
import { PEERS_CHANNEL, SESSION_ENDS_CHANNEL } from './migrations.ts';

export class PostgresCoordination implements Coordination {
  private readonly driver: PgDriver;
  readonly #feed: NotifyFeed;

  constructor(driver: PgDriver, feed: NotifyFeed) {
    this.driver = driver;
    this.#feed = feed;
  }

  // ---- coordination ---------------------------------------------------------------------------

  async hitCounter(key: string, windowMs: number, now: number, by = 1): Promise<CounterState> {
    // One upsert: the conflicting row is locked, so concurrent hits from several processes each
    // count once, and exactly one of them opens the next window.
    const [row] = await this.driver.query<{ count: number; reset_at: number }>(
      `INSERT INTO counters (key, count, reset_at) VALUES ($1, greatest($2::bigint, 0), $3)
       ON CONFLICT (key) DO UPDATE SET
         count = CASE WHEN $4::bigint >= counters.reset_at THEN greatest($2::bigint, 0) ELSE greatest(counters.count + $2::bigint, 0) END,
         reset_at = CASE WHEN $4::bigint >= counters.reset_at THEN excluded.reset_at ELSE counters.reset_at END
       RETURNING count, reset_at`,
      [key, Math.trunc(by), now + Math.max(1, Math.ceil(windowMs)), now],
    );
    return { count: row!.count, resetAt: row!.reset_at };
  }

  async peekCounter(key: string, now: number): Promise<CounterState | null> {
    const [row] = await this.driver.query<{ count: number; reset_at: number }>('SELECT count, reset_at FROM counters WHERE key = $1', [key]);
    return row && now < row.reset_at ? { count: row.count, resetAt: row.reset_at } : null;
  }

  async resetCounter(key: string): Promise<void> {
    await this.driver.execute('DELETE FROM counters WHERE key = $1', [key]);
  }

  /** The ends NOTIFYed by the trigger on `sessions`, from every process on this database. */
  subscribeSessionEnds(
    listener: (handles: string[]) => void,
    onReset: (change: FeedChange) => void,
  ): Promise<{ close(): Promise<void>; isLive(): boolean }> {
    return this.#feed.subscribe(SESSION_ENDS_CHANNEL, (handle) => listener([handle]), onReset);
  }

  /**
   * One statement: the NOTIFYs of one transaction are delivered after its commit to every connection that LISTENs on the database (this store's own included);
   * identical messages of one call are delivered once (NOTIFY folds them). The messages go as
   * one JSON text parameter, which every driver passes as it is.
   */
  async publishToPeers(messages: readonly string[]): Promise<void> {
    checkPeerMessages(messages);
    if (messages.length === 0) return;
    await this.driver.query('SELECT pg_notify($1, m) FROM json_array_elements_text($2::json) AS t(m)', [PEERS_CHANNEL, JSON.stringify(messages)]);
  }

  subscribePeers(listener: (message: string) => void, onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void>; isLive(): boolean }> {
    return this.#feed.subscribe(PEERS_CHANNEL, listener, onReset);
  }
}
