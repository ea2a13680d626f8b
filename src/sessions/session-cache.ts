// Each Tessera process keeps the sessions it has seen in memory, so checking a bearer token's
// session needs no store round trip. The cache is kept exact by the store's feed of session ends
// (Redis pub/sub, PostgreSQL NOTIFY, or the SQLite end log) and, for explicit ends, by the other
// processes' requests to forget (peer-acks.ts): a revocation in any process drops the entry here, and
// the next request reads the store again. When a feed may be losing messages (its connection
// failed, or its own probes stopped coming back), the whole cache is forgotten and every check
// reads the store until the feed is proven to deliver again — a revocation made during the gap
// is never answered from memory. A route can demand a strict check that always reads the store.
//
// When the feeds go down, what was cached is not thrown away but kept aside as the stale cache
// (a swap of maps, nothing copied): a tenant whose degradation policy is `serve_cached` may have
// its bearer checks answered from it while the store does not answer (src/http/authenticate.ts).
// Nothing reads it while the store answers; it is dropped when the feeds are live again.

import { makeRoom } from '../domain/bounded-map.ts';
import { isValid, type Session } from '../domain/session.ts';
import type { Coordination, FeedChange } from '../store/coordination-port.ts';
import type { SessionStore } from '../store/port.ts';

/** The sessions cached when this process lost its feeds, and when that was. */
export interface StaleCache {
  readonly since: number;
  readonly entries: Map<string, Session>;
  /** Handles already served from it (each is audited once per outage). */
  readonly served: Set<string>;
}

/** How many handles heard on the feed are remembered (fromFeed). */
const FROM_FEED_MAX = 10_000;

export class SessionCache {
  private readonly store: SessionStore;
  private readonly now: () => number;
  private entries = new Map<string, Session>();
  private stale: StaleCache | null = null;
  /** Handles known to have ended. A session never becomes active again, so these stay true. */
  private readonly ended = new Set<string>();
  private readonly maxEntries: number;
  private subscription: { close(): Promise<void> } | null = null;
  /** Handles that came through the feed (bounded): a wait for them is already over. */
  private readonly fromFeed = new Set<string>();
  /** Callers waiting for handles to come back through the feed (see waitForFeed). */
  private readonly waiters = new Map<string, Set<() => void>>();
  /** Bumped on every reset, so a read that raced a reset does not repopulate stale data. */
  private generation = 0;
  /** Feeds (session ends, audit) that are down: while any is, nothing is served from memory. */
  private readonly feedsDown = new Set<string>();
  hits = 0;
  misses = 0;

  constructor(store: SessionStore, maxEntries = 100_000, now: () => number = Date.now) {
    this.store = store;
    this.maxEntries = maxEntries;
    this.now = now;
  }

  async start(feed: Coordination): Promise<void> {
    this.subscription = await feed.subscribeSessionEnds(
      (handles) => {
        this.forget(handles);
        for (const h of handles) {
          if (this.fromFeed.size >= FROM_FEED_MAX && !this.fromFeed.has(h)) makeRoom(this.fromFeed, FROM_FEED_MAX);
          this.fromFeed.add(h);
          const ws = this.waiters.get(h);
          if (!ws) continue;
          this.waiters.delete(h);
          for (const w of ws) w();
        }
      },
      (change) => this.feedChanged('ends', change),
    );
  }

  /**
   * A feed that keeps this cache exact went down or came back. Either way what is cached is
   * forgotten: on 'down' because messages may be lost from now on, on 'up' because they may
   * have been lost until now (including records read from the store while the feed was down).
   */
  feedChanged(feed: string, change: FeedChange): void {
    const wasLive = this.live;
    if (change === 'down') this.feedsDown.add(feed);
    else this.feedsDown.delete(feed);
    if (wasLive && !this.live) {
      // Set aside what was exact until now (the degradation policy's stale cache).
      this.stale = { since: this.now(), entries: this.entries, served: new Set() };
      this.entries = new Map();
      this.generation += 1;
      return;
    }
    if (this.live) this.stale = null;
    this.reset();
  }

  /**
   * The session as it was cached when this process lost its feeds, if it is still valid at `now`
   * and was not ended since; with the moment the feeds were lost. For the degradation policy
   * only: the caller decides whether the tenant allows it, and for how long.
   */
  staleSession(handle: string, now: number): { session: Session; since: number; first: boolean } | null {
    const stale = this.stale;
    if (stale === null || this.ended.has(handle)) return null;
    const session = stale.entries.get(handle);
    if (!session || !isValid(session, now)) return null;
    const first = !stale.served.has(handle);
    if (first) stale.served.add(handle);
    return { session, since: stale.since, first };
  }

  /** Whether records may be served from memory: subscribed, and every feed delivering. */
  get live(): boolean {
    return this.subscription !== null && this.feedsDown.size === 0;
  }

  async stop(): Promise<void> {
    await this.subscription?.close();
    this.subscription = null;
    this.feedsDown.clear();
    this.stale = null;
    this.reset();
  }

  /**
   * Resolves once every handle has come back through this process's own subscription to the
   * store's feed, or after `timeoutMs`; to whether all handles were seen. Only half of what an
   * explicit end waits for: the other processes read the feed on their own schedule (a
   * PostgreSQL LISTEN connection, a SQLite poll), so endedEverywhere (app-sessions.ts) also waits
   * for their acknowledgements (peer-acks.ts).
   */
  waitForFeed(handles: readonly string[], timeoutMs: number): Promise<boolean> {
    const awaited = handles.filter((h) => !this.fromFeed.has(h));
    if (this.subscription === null || awaited.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      let pending = awaited.length;
      const done = new Set<() => void>();
      const timer = setTimeout(() => {
        for (const h of awaited) {
          const set = this.waiters.get(h);
          if (!set) continue;
          for (const d of done) set.delete(d);
          if (set.size === 0) this.waiters.delete(h);
        }
        resolve(false);
      }, timeoutMs);
      for (const h of awaited) {
        const w = () => {
          pending -= 1;
          if (pending === 0) {
            clearTimeout(timer);
            resolve(true);
          }
        };
        done.add(w);
        let set = this.waiters.get(h);
        if (!set) this.waiters.set(h, (set = new Set()));
        set.add(w);
      }
    });
  }

  forget(handles: Iterable<string>): void {
    for (const h of handles) {
      this.entries.delete(h);
      this.stale?.entries.delete(h);
      // (The look-up only at the bound: below it there is nothing to make room for.)
      if (this.ended.size >= this.maxEntries && !this.ended.has(h)) makeRoom(this.ended, this.maxEntries);
      this.ended.add(h);
    }
  }

  /**
   * Drops cached records that changed elsewhere without ending (e.g. marked for
   * re-authentication), so the next check reads the store. Unlike `forget`, no tombstone.
   */
  invalidate(handles: Iterable<string>): void {
    this.generation += 1;
    for (const h of handles) {
      this.entries.delete(h);
      this.stale?.entries.delete(h);
    }
  }

  reset(): void {
    this.generation += 1;
    this.entries.clear();
    // `ended` stays: what has ended stays ended, whatever messages were lost.
  }

  /**
   * Remember a record this process has just written or read. Never a flow record (an SSO login's
   * state or its one-time token): nothing is answered from memory for one — a bearer token names
   * an app session, a cookie must be an app session's (authenticate.ts), and every flow step reads
   * the store — so none is kept, and the end of a consumed one-time token need not reach this
   * cache (the Redis redeem scripts do not publish it). Nor a pending app session (an SSO login's,
   * before its token is exchanged): no credential names it yet, and the exchange that activates it
   * — on any process — is no end, so a copy kept here would outlive it (the bearer check answering
   * `pending` and the callback's expiry). On the check's miss path only: a hit never calls this.
   */
  remember(session: Session): void {
    if (session.status !== 'active' || session.kind === 'flow' || session.data.mode === 'pending' || this.ended.has(session.handle) || !this.live) {
      this.entries.delete(session.handle);
      return;
    }
    const before = this.entries.get(session.handle);
    // A new entry: the oldest go first (a sixteenth of the bound at once, bounded-map.ts).
    if (before === undefined) makeRoom(this.entries, this.maxEntries);
    if (before !== undefined && before !== session) shareStrings(session, before);
    this.entries.set(session.handle, session);
  }

  /** A store read while the feeds are down keeps the stale cache's copy current (never adds one). */
  private refreshStale(handle: string, fresh: Session | null): void {
    const stale = this.stale as StaleCache;
    if (!stale.entries.has(handle)) return;
    if (fresh && fresh.status === 'active' && !this.ended.has(handle)) stale.entries.set(handle, fresh);
    else stale.entries.delete(handle);
  }

  /** secret hash → handle; immutable once a session exists, so it never needs invalidating. */
  private readonly handleOfSecret = new Map<string, string>();

  /**
   * The session whose secret has this hash, if it is valid at `now` (cookie sessions). After the
   * first lookup the hash → handle link is known, and the rest is `getValid`.
   */
  async getValidBySecretHash(secretHash: string, now: number, strict = false): Promise<Session | null> {
    const handle = this.handleOfSecret.get(secretHash);
    if (handle !== undefined) return this.getValid(handle, now, strict);
    this.misses += 1;
    const generation = this.generation;
    const fresh = await this.store.getSessionBySecretHash(secretHash);
    if (!fresh) return null;
    if (this.handleOfSecret.size >= this.maxEntries && !this.handleOfSecret.has(secretHash)) makeRoom(this.handleOfSecret, this.maxEntries);
    this.handleOfSecret.set(secretHash, fresh.handle);
    if (generation === this.generation) this.remember(fresh);
    return isValid(fresh, now) ? fresh : null;
  }

  /**
   * What `getValid` (not strict) answers from memory alone, without a promise: the valid cached
   * session, null when it is known to have ended, undefined when only the store can tell. Counts
   * nothing; a caller that serves the answer counts the hit (`hits`).
   */
  peekValid(handle: string, now: number): Session | null | undefined {
    if (!this.live) return undefined;
    if (this.ended.has(handle)) return null;
    const cached = this.entries.get(handle);
    // A cached record that looks expired may only be stale (another process slid its idle
    // expiry): ask the store then.
    return cached && isValid(cached, now) ? cached : undefined;
  }

  /** `peekValid` by the hash of a cookie session's secret (undefined until the link is known). */
  peekValidBySecretHash(secretHash: string, now: number): Session | null | undefined {
    const handle = this.handleOfSecret.get(secretHash);
    return handle === undefined ? undefined : this.peekValid(handle, now);
  }

  /**
   * The session if it is valid at `now`, else null. Without a live feed, or with `strict`, it
   * always reads the store.
   */
  async getValid(handle: string, now: number, strict = false): Promise<Session | null> {
    if (!strict) {
      const known = this.peekValid(handle, now);
      if (known !== undefined) {
        this.hits += 1;
        return known;
      }
    }
    this.misses += 1;
    const generation = this.generation;
    const fresh = await this.store.getSessionByHandle(handle);
    if (fresh && generation === this.generation) this.remember(fresh);
    else if (!fresh) this.entries.delete(handle);
    if (this.stale !== null) this.refreshStale(handle, fresh);
    return fresh && isValid(fresh, now) ? fresh : null;
  }
}

/**
 * Gives `fresh` the strings of `before` (the same session's record cached until now) where they
 * are equal: a record read again (every refresh, every touch) is all new strings, and the cache
 * would keep them and let the equal ones it held go — each move of a record into the old
 * generation taking its handle, hashes, ids and User-Agent along. Equal strings are
 * interchangeable: only which copy stays alive changes.
 */
function shareStrings(fresh: Session, before: Session): void {
  if (fresh.handle === before.handle) fresh.handle = before.handle;
  if (fresh.secretHash === before.secretHash) fresh.secretHash = before.secretHash;
  if (fresh.tenantId === before.tenantId) fresh.tenantId = before.tenantId;
  if (fresh.userId === before.userId) fresh.userId = before.userId;
  if (fresh.authMethod === before.authMethod) fresh.authMethod = before.authMethod;
  const d = fresh.device as Session['device'] | undefined;
  const b = before.device as Session['device'] | undefined;
  if (d === undefined || b === undefined || d === b) return;
  if (d.userAgent !== undefined && d.userAgent === b.userAgent) d.userAgent = b.userAgent;
  if (d.ip !== undefined && d.ip === b.ip) d.ip = b.ip;
}
