// Coordination on PostgreSQL (coordination-port.ts): fixed-window counters in a table, and the
// feed of session ends — a trigger NOTIFYs each end (migration 1), a LISTEN connection per store
// instance hears them (feed.ts).

import type { Coordination, CounterState, FeedChange } from '../coordination-port.ts';
import type { PgDriver } from './driver.ts';
import type { NotifyFeed } from './feed.ts';
import { SESSION_ENDS_CHANNEL } from './migrations.ts';

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
}
