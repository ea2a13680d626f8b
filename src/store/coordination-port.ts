// The part of the storage port that coordinates Tessera processes rather than holding sessions:
// shared counters for throttling, and the feed of session ends that keeps every process's local
// session cache exact (docs/api.md §Storage and scale: no store round trip per request, yet a
// revocation anywhere is honoured everywhere within a measured bound), and a broadcast channel
// between the processes (their presence, and their acknowledgements that they forgot ended sessions).

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
   * ends sessions publishes them, each end once — except that an adapter may leave out a flow
   * record consumed by redeemSession or lookUpAndRedeem (an SSO one-time token; the Redis adapter
   * does: no session cache keeps a flow record, SessionCache.remember); the ends of one user
   * arrive in the order they were made (across users no order is promised).
   * test/store/feed-conformance.ts holds every adapter to it. `onReset('down')` says the feed may
   * be losing messages from now on (connection trouble, a silent subscriber, a pruned log): the
   * caller must forget what it cached and trust nothing cached until `onReset('up')`, which says
   * that messages published from now on arrive again (those published in between are lost).
   */
  subscribeSessionEnds(listener: (handles: string[]) => void, onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void> }>;

  /**
   * Broadcasts `messages` to every subscriber of `subscribePeers` on this store, in every process
   * (this one included), each once, in no promised order (identical messages of one call may
   * arrive once; a Redis Cluster was seen to deliver the messages of one call out of order). The
   * channel between the Tessera processes on one store (src/sessions/peer-acks.ts: presence and
   * acknowledgements of ends); what a message says is the caller's. Fire-and-forget: a
   * subscriber whose connection is down misses what is sent meanwhile, and nothing is kept for
   * later; resolves once the store took the messages. Each message is at most
   * PEER_MESSAGE_MAX_BYTES of UTF-8, has no NUL character and does not start with a control
   * character (the Redis feed's probes do); a RangeError otherwise, before anything is sent.
   */
  publishToPeers(messages: readonly string[]): Promise<void>;
  /**
   * Calls `listener` with each message published to the peers from now on, from any process.
   * `onReset` as for subscribeSessionEnds: 'down' when messages may be lost from now on, 'up'
   * when they arrive again.
   */
  subscribePeers(listener: (message: string) => void, onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void> }>;
}

/**
 * The largest peer message, in bytes of UTF-8: well under PostgreSQL's NOTIFY payload limit
 * (8000 bytes), the tightest of the stores.
 */
export const PEER_MESSAGE_MAX_BYTES = 4000;

/** Throws a RangeError for a message that no store is required to carry (see publishToPeers). */
export function checkPeerMessages(messages: readonly string[]): void {
  for (const m of messages) {
    if (m.includes('\u0000') || m.charCodeAt(0) < 0x20 || Buffer.byteLength(m, 'utf8') > PEER_MESSAGE_MAX_BYTES) {
      throw new RangeError(`A peer message is at most ${PEER_MESSAGE_MAX_BYTES} bytes of UTF-8, without NUL, and starts with no control character.`);
    }
  }
}

/** Every operation of Coordination, for composites and proxies that forward them. */
export const COORDINATION_OPERATIONS = ['hitCounter', 'peekCounter', 'resetCounter', 'subscribeSessionEnds', 'publishToPeers', 'subscribePeers'] as const satisfies readonly (keyof Coordination)[];
