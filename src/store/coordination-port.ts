// The part of the storage port that coordinates Tessera processes rather than holding sessions:
// shared counters for throttling, and the feed of session ends that keeps every process's local
// session cache exact (docs/api.md §Storage and scale: no store round trip per request, yet a
// revocation anywhere is honoured everywhere within a measured bound).

export interface CounterState {
  count: number;
  /** Epoch ms at which the window ends and the count starts again from zero. */
  resetAt: number;
}

/** A feed's state changes: 'down' (messages may be lost from now on) and 'up' (delivered again). */
export type FeedChange = 'down' | 'up';

export interface Coordination {
  /**
   * Fixed-window counter shared by all processes: adds `by` (default 1; may be negative, to take
   * back a reservation) to `key` and returns the count in the current window, never below 0. The
   * first hit opens a window of `windowMs`; a negative hit on a closed window opens one at 0.
   */
  hitCounter(key: string, windowMs: number, now: number, by?: number): Promise<CounterState>;
  /** The counter's state without changing it; null when no window is open. */
  peekCounter(key: string, now: number): Promise<CounterState | null>;
  resetCounter(key: string): Promise<void>;

  /**
   * Calls `listener` with the handles of sessions that stopped being active (revoked, consumed,
   * evicted, expired by the sweeper), whichever process ended them. Every adapter operation that
   * ends sessions publishes them, each end once; the ends of one user arrive in the order they were
   * made (across users no order is promised). test/store/feed-conformance.ts holds every adapter to it. `onReset('down')` says the feed may be losing messages from
   * now on (connection trouble, a silent subscriber, a pruned log): the caller must forget what
   * it cached and trust nothing cached until `onReset('up')`, which says that messages published
   * from now on arrive again (those published in between are lost).
   */
  subscribeSessionEnds(listener: (handles: string[]) => void, onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void> }>;
}

/** Every operation of Coordination, for composites and proxies that forward them. */
export const COORDINATION_OPERATIONS = ['hitCounter', 'peekCounter', 'resetCounter', 'subscribeSessionEnds'] as const satisfies readonly (keyof Coordination)[];
