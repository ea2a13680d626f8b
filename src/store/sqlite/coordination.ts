// The SQLite adapter of Coordination (coordination-port.ts) for the embedded mode: counters in a
// table, the feed of session ends from a log that a trigger on `sessions` fills (migration 2), and
// the channel between the processes on the file, a log of messages (migration 11) read with it.

import type { DatabaseSync } from 'node:sqlite';
import { checkPeerMessages, type Coordination, type CounterState, type FeedChange } from '../coordination-port.ts';
import type { SqliteContext } from './transactions.ts';

/**
 * How often a subscriber reads the log of session ends for ends written by other connections
 * (other processes). Ends written through this store instance are delivered at once.
 */
export const FEED_POLL_MS = 20;

/** Ends older than this are pruned from the log by the expiry sweep (wall clock; housekeeping). */
export const FEED_RETENTION_MS = 10 * 60_000;

/**
 * Messages between the processes older than this are pruned by the expiry sweep: they are
 * fire-and-forget, and a process that has not read one within a minute no longer needs it.
 */
export const PEER_MESSAGE_RETENTION_MS = 60_000;

interface PeersSubscription {
  /** The seq of the last message delivered. */
  last: number;
  listener: (message: string) => void;
}

interface EndsSubscription {
  /** The seq of the last end delivered. */
  last: number;
  listener: (handles: string[]) => void;
  onReset: (change: FeedChange) => void;
}

export class SqliteCoordination implements Coordination {
  private readonly ctx: SqliteContext;
  private readonly stmt: ReturnType<typeof prepareStatements>;
  private readonly feedPollMs: number;
  private readonly subscriptions = new Set<EndsSubscription>();
  private readonly peerSubscriptions = new Set<PeersSubscription>();
  private pollTimer: NodeJS.Timeout | null = null;
  /** A commit through this instance is writing peer messages (they are delivered on its commit). */
  private peerMessagesWritten = false;

  constructor(ctx: SqliteContext, feedPollMs = FEED_POLL_MS) {
    this.ctx = ctx;
    this.stmt = prepareStatements(ctx.db);
    this.feedPollMs = feedPollMs;
    // Ends written through this connection reach its subscribers before the writer resumes; so
    // do peer messages, but the log of those is read only after a commit that wrote some (not
    // after every session write): the other processes' messages come with the poll, as before.
    ctx.afterCommit(() => {
      if (this.subscriptions.size > 0) this.deliverEnds();
      if (this.peerMessagesWritten) {
        this.peerMessagesWritten = false;
        if (this.peerSubscriptions.size > 0) this.deliverPeerMessages();
      }
    });
    ctx.onHousekeeping((now) => {
      this.stmt.pruneCounters.run({ now });
      this.stmt.pruneEnds.run({ before: Date.now() - FEED_RETENTION_MS });
      this.stmt.prunePeerMessages.run({ before: Date.now() - PEER_MESSAGE_RETENTION_MS });
    });
  }

  hitCounter(key: string, windowMs: number, now: number, by = 1): Promise<CounterState> {
    // One upsert under the write lock: concurrent hits from several processes each count once,
    // and exactly one of them opens the next window.
    return this.ctx.write(() => {
      const row = this.ctx.one<{ count: number; reset_at: number }>(this.stmt.hitCounter, {
        key,
        now,
        by: Math.trunc(by),
        reset_at: now + Math.max(1, Math.ceil(windowMs)),
      });
      if (!row) throw new Error('the counter upsert returned no row');
      return { count: row.count, resetAt: row.reset_at };
    });
  }

  peekCounter(key: string, now: number): Promise<CounterState | null> {
    return this.ctx.run(() => {
      const row = this.ctx.one<{ count: number; reset_at: number }>(this.stmt.counterByKey, { key });
      return row && now < row.reset_at ? { count: row.count, resetAt: row.reset_at } : null;
    });
  }

  resetCounter(key: string): Promise<void> {
    return this.ctx.write(() => {
      this.stmt.deleteCounter.run({ key });
    });
  }

  /**
   * Delivers the ends logged by the trigger on `sessions` (migration 2) from now on: at once for
   * ends written through this instance, within `feedPollMs` for ends written by other
   * connections. A gap in the seqs (the log was pruned past this subscriber) calls `onReset`.
   */
  subscribeSessionEnds(listener: (handles: string[]) => void, onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void> }> {
    return this.ctx.run(() => {
      const top = this.ctx.one<{ seq: number }>(this.stmt.endsHighWater, {});
      const sub: EndsSubscription = { last: top?.seq ?? 0, listener, onReset };
      this.subscriptions.add(sub);
      this.startPolling();
      return {
        close: () => {
          this.subscriptions.delete(sub);
          this.stopPollingWhenIdle();
          return Promise.resolve();
        },
      };
    });
  }

  /** One row per message, in one write transaction; delivered to this instance's subscribers on commit. */
  async publishToPeers(messages: readonly string[]): Promise<void> {
    checkPeerMessages(messages);
    if (messages.length === 0) return;
    await this.ctx.write(() => {
      const at = Date.now();
      for (const message of messages) this.stmt.insertPeerMessage.run({ message, at });
      this.peerMessagesWritten = true;
    });
  }

  /**
   * Delivers the messages published from now on: at once for those published through this
   * instance, within `feedPollMs` (with the ends) for those of other connections. A subscriber
   * that fell behind the pruning misses what was pruned, and is not told (fire-and-forget);
   * `onReset` is never called, and a failed read is tried again at the next poll: PeerAcks finds
   * a subscriber that stopped delivering by its own hellos not coming back (self-echo).
   */
  subscribePeers(listener: (message: string) => void, _onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void> }> {
    return this.ctx.run(() => {
      const top = this.ctx.one<{ seq: number }>(this.stmt.peerHighWater, {});
      const sub: PeersSubscription = { last: top?.seq ?? 0, listener };
      this.peerSubscriptions.add(sub);
      this.startPolling();
      return {
        close: () => {
          this.peerSubscriptions.delete(sub);
          this.stopPollingWhenIdle();
          return Promise.resolve();
        },
      };
    });
  }

  private startPolling(): void {
    if (this.pollTimer !== null) return;
    this.pollTimer = setInterval(() => {
      if (this.subscriptions.size > 0) this.deliverEnds();
      if (this.peerSubscriptions.size > 0) this.deliverPeerMessages();
    }, this.feedPollMs);
    this.pollTimer.unref();
  }

  private stopPollingWhenIdle(): void {
    if (this.subscriptions.size === 0 && this.peerSubscriptions.size === 0) this.stopPolling();
  }

  /** Reads the log of messages from each subscriber's last seq and hands it the new ones, in order. */
  private deliverPeerMessages(): void {
    if (!this.ctx.db.isOpen) return;
    for (const sub of this.peerSubscriptions) {
      let rows: { seq: number; message: string }[];
      try {
        rows = this.ctx.all<{ seq: number; message: string }>(this.stmt.peerMessagesAfter, { after: sub.last });
      } catch {
        return; // the next poll tries again from the same seq
      }
      const lastRow = rows[rows.length - 1];
      if (lastRow === undefined) continue;
      sub.last = lastRow.seq;
      for (const r of rows) {
        try {
          sub.listener(r.message);
        } catch {
          // A failing listener must not fail the store operation that triggered the delivery.
        }
      }
    }
  }

  // ---- the feed of session ends ---------------------------------------------------------------

  /** Reads the log from each subscriber's last seq and hands it the new ends, in order. */
  private deliverEnds(): void {
    if (!this.ctx.db.isOpen) return;
    for (const sub of this.subscriptions) {
      let rows: { seq: number; handle: string }[];
      try {
        rows = this.ctx.all<{ seq: number; handle: string }>(this.stmt.endsAfter, { after: sub.last });
      } catch {
        return; // the next poll tries again from the same seq; nothing is lost
      }
      const first = rows[0];
      const lastRow = rows[rows.length - 1];
      if (first === undefined || lastRow === undefined) continue;
      try {
        if (first.seq > sub.last + 1) {
          // Ends were pruned past this subscriber: lost, but the log delivers again at once.
          sub.onReset('down');
          sub.onReset('up');
        }
        sub.last = lastRow.seq;
        sub.listener(rows.map((r) => r.handle));
      } catch {
        // A failing listener must not fail the store operation that triggered the delivery.
      }
    }
  }

  private stopPolling(): void {
    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  close(): void {
    this.subscriptions.clear();
    this.peerSubscriptions.clear();
    this.stopPolling();
  }
}

function prepareStatements(db: DatabaseSync) {
  return {
    // A closed window (now >= reset_at) starts again from 1. SET expressions read the old row.
    hitCounter: db.prepare(`
      INSERT INTO counters (key, count, reset_at) VALUES ($key, max($by, 0), $reset_at)
      ON CONFLICT (key) DO UPDATE SET
        count = CASE WHEN $now >= reset_at THEN max($by, 0) ELSE max(count + $by, 0) END,
        reset_at = CASE WHEN $now >= reset_at THEN excluded.reset_at ELSE reset_at END
      RETURNING count, reset_at`),
    counterByKey: db.prepare('SELECT count, reset_at FROM counters WHERE key = $key'),
    deleteCounter: db.prepare('DELETE FROM counters WHERE key = $key'),
    pruneCounters: db.prepare('DELETE FROM counters WHERE reset_at <= $now'),
    // The highest seq ever given out (sqlite_sequence survives pruning of the log itself).
    endsHighWater: db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'session_ends'"),
    endsAfter: db.prepare('SELECT seq, handle FROM session_ends WHERE seq > $after ORDER BY seq LIMIT 10000'),
    pruneEnds: db.prepare('DELETE FROM session_ends WHERE recorded_at < $before'),
    insertPeerMessage: db.prepare('INSERT INTO peer_messages (message, recorded_at) VALUES ($message, $at)'),
    peerHighWater: db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'peer_messages'"),
    peerMessagesAfter: db.prepare('SELECT seq, message FROM peer_messages WHERE seq > $after ORDER BY seq LIMIT 10000'),
    prunePeerMessages: db.prepare('DELETE FROM peer_messages WHERE recorded_at < $before'),
  };
}
