// What the Redis aggregate adapters share: the connection, the key layout, the retention, and
// the calling convention of the slot scripts (scripts.ts).

import { makeRoom } from '../../domain/bounded-map.ts';
import { tagOfHandle, userTag } from '../../domain/secrets.ts';
import type { Session } from '../../domain/session.ts';
import { StoreUnavailable } from '../../domain/errors.ts';
import { num } from './codec.ts';
import { toStoreError, type RedisConnection } from './connection.ts';
import type { RedisKeys } from './keys.ts';
import { evalScript, type LuaScript } from './lua.ts';
import { packedHash } from './lua-codec.ts';

/** How many replicas must have a write that a failover must not lose, and how long to wait. */
export interface ReplicaWait {
  replicas: number;
  timeoutMs: number;
}

function rethrowAsStoreError(err: unknown): never {
  throw toStoreError(err);
}

/** Routes remembered per process (RedisContext.route): about 1 MB at most. */
const ROUTE_CACHE_MAX = 10_000;

/**
 * The default cap on one user's live sessions in Redis (TESSERA_REDIS_USER_SESSIONS_MAX): every
 * script on a user's sessions reads and writes that user's live value, so its size bounds the
 * Redis time of each (docs/performance.md, "One user with many sessions").
 */
export const DEFAULT_LIVE_MAX = 200;

export class RedisContext {
  readonly conn: RedisConnection;
  readonly keys: RedisKeys;
  /** How long a record stays readable after its absolute expiry. */
  readonly retentionMs: number;
  /** The most live records one user's slot keeps (slot-lua.ts); 0 = no cap. */
  readonly liveMax: number;
  readonly #wait: ReplicaWait;
  /** Until when the master is known to have no replica at all (checked again after that). */
  #noReplicaUntil = 0;
  readonly #waitGroups = new Map<string, { running: Promise<number> | null; queued: Promise<number> | null }>();
  /** Writes answered without a replica's confirmation because none was connected (see replicated). */
  unreplicatedWrites = 0;
  #closed = false;

  constructor(
    conn: RedisConnection,
    keys: RedisKeys,
    retentionMs: number,
    replicaWait: ReplicaWait = { replicas: 0, timeoutMs: 0 },
    liveMax: number = DEFAULT_LIVE_MAX,
  ) {
    this.conn = conn;
    this.keys = keys;
    this.retentionMs = retentionMs;
    this.#wait = replicaWait;
    this.liveMax = liveMax;
  }

  /**
   * A write that must survive a failover (an end, an eviction, a rotation) answers only once
   * `replicas` replicas have it: WAIT on the connection that wrote it (the connection is shared,
   * so it covers every earlier write too). A failover promotes a replica, so what every replica
   * has cannot be lost by one.
   * - Not confirmed in time while a replica is connected: StoreUnavailable (503, retry). The
   *   write is on the master and may be lost if it fails now; the caller was not told it held.
   *   Ends and rotations are safe to retry.
   * - No replica connected at all: answered normally and counted (`unreplicatedWrites`): there
   *   is nothing a failover could promote, so the write is as safe as the master's own
   *   persistence (AOF). Known for a second, so WAIT does not hold the shared connection on
   *   every write meanwhile.
   */
  async replicated(tags: readonly string[]): Promise<void> {
    const { replicas, timeoutMs } = this.#wait;
    if (replicas <= 0 || tags.length === 0) return;
    if (Date.now() < this.#noReplicaUntil) {
      this.unreplicatedWrites += 1;
      return;
    }
    const routes = [...new Set(tags)].map((t) => this.keys.slotSessions(t));
    const acked = await Promise.all(routes.map((r) => this.#waitOn(r)));
    if (acked.every((n) => n >= replicas)) return;
    const info = String(await this.send(routes[0] as string, ['INFO', 'replication']));
    const connected = Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? '0');
    if (connected === 0) {
      this.#noReplicaUntil = Date.now() + 1000;
      this.unreplicatedWrites += 1;
      return;
    }
    throw new StoreUnavailable(`The write was not confirmed by ${replicas} replica(s) within ${timeoutMs} ms; retry.`);
  }

  /**
   * Group commit: WAIT blocks the (shared) connection until the replicas answer, so concurrent
   * writers do not each send one. A WAIT covers every write sent before it; a writer arriving
   * while one is in flight joins the single next one, sent when it returns. Standalone and
   * Sentinel have one master connection (one group); in a Cluster, one group per node route.
   */
  #waitOn(route: string): Promise<number> {
    const group = this.conn.kind === 'redis-cluster' ? route : '';
    let g = this.#waitGroups.get(group);
    if (!g) this.#waitGroups.set(group, (g = { running: null, queued: null }));
    const state = g;
    const start = (): Promise<number> => {
      const p = this.send(route, ['WAIT', String(this.#wait.replicas), String(this.#wait.timeoutMs)]).then(Number);
      state.running = p;
      p.finally(() => {
        if (state.running === p) state.running = null;
      }).catch(() => undefined);
      return p;
    };
    if (state.running === null) return start();
    state.queued ??= state.running
      .then(() => undefined, () => undefined)
      .then(() => {
        state.queued = null;
        return start();
      });
    return state.queued;
  }

  /** Whether writes wait for replicas (replicated() does something): hot paths skip the call otherwise. */
  get waitsForReplicas(): boolean {
    return this.#wait.replicas > 0;
  }

  get closed(): boolean {
    return this.#closed;
  }

  markClosed(): void {
    this.#closed = true;
  }

  /**
   * Runs an operation: StoreUnavailable once closed, and every failure mapped by toStoreError.
   * (One promise on top of the operation's, not an async function's and an await's: every store
   * call goes through here.)
   */
  guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new StoreUnavailable('The session store has been closed.'));
    let running: Promise<T>;
    try {
      running = fn();
    } catch (err) {
      return Promise.reject(toStoreError(err));
    }
    return running.catch(rethrowAsStoreError);
  }

  send(key: string, args: string[], readonly = false): Promise<unknown> {
    return this.conn.send(key, args, readonly);
  }

  /**
   * Runs a slot script (slot-lua.ts convention) on the slot of `tag`; `ttl` (ms) is the least TTL
   * the slot's key must keep after it, when the script stores a session. `read`: evalScript's.
   */
  runSlot(script: LuaScript, tag: string, now: number, args: ReadonlyArray<string | Buffer>, ttl?: number): Promise<unknown>;
  runSlot<T>(script: LuaScript, tag: string, now: number, args: ReadonlyArray<string | Buffer>, ttl: number | undefined, read: (reply: unknown) => T | PromiseLike<T>): Promise<T>;
  runSlot<T>(script: LuaScript, tag: string, now: number, args: ReadonlyArray<string | Buffer>, ttl?: number, read?: (reply: unknown) => T | PromiseLike<T>): Promise<unknown> {
    const base = this.keys.slotBase(tag);
    const keep = ttl === undefined ? '' : String(ttl);
    const head = [base, num(now), this.keys.endsChannel(), keep];
    return read === undefined
      ? evalScript(this.conn, script, this.keys.slotSessions(tag), args, head)
      : evalScript(this.conn, script, this.keys.slotSessions(tag), args, head, read);
  }

  /** The routing tag a session's keys live under; it must match the session's user. */
  tagOfSession(s: Session): string {
    const tag = tagOfHandle(s.handle);
    if (tag === null) throw new Error(`"${s.handle}" is not a session handle`);
    if (s.userId !== null && tag !== userTag(s.tenantId, s.userId)) {
      throw new Error(`the handle ${s.handle} does not carry the routing tag of its user`);
    }
    return tag;
  }

  /** (absolute expiry - now) + retention, at least the retention. */
  ttl(absoluteExpiresAt: number, now: number): number {
    return Math.ceil(Math.max(0, absoluteExpiresAt - now) + this.retentionMs);
  }

  /**
   * The TTL of a slot's key when it stores a record: one retention longer than the record's own
   * purge time, so that the sweeper, not Redis, takes the record out with its global entries
   * (keys.ts); Redis drops the key only when no sweeper ran for that long.
   */
  keyTtl(absoluteExpiresAt: number, now: number): number {
    return this.ttl(absoluteExpiresAt, now) + this.retentionMs;
  }

  /**
   * Routes this process has read or written, hash → tag. A route never changes while it exists
   * (HSETNX), so a remembered one is never wrong; one removed since (a purge) leads to a slot
   * that no longer holds the hash, which the script answers as "not found", as without a route.
   * It spares a refresh the route lookups: getRefreshToken then rotate read the same route, and
   * the next refresh presents the successor whose route this process wrote.
   */
  readonly #routes = new Map<string, string>();

  rememberRoute(hash: string, tag: string): void {
    makeRoom(this.#routes, ROUTE_CACHE_MAX);
    this.#routes.set(hash, tag);
  }

  /** The route of `hash` when this process knows it, without a promise (else route()). */
  knownRoute(hash: string): string | undefined {
    return this.#routes.get(hash);
  }

  forgetRoute(hash: string): void {
    this.#routes.delete(hash);
  }

  /**
   * Runs a routed slot script (slot-lua.ts routedScript) on the slot the route of `hash` names;
   * `args` are the script's own, from ARGV[8]. On standalone and Sentinel, when this process
   * does not know the route, one command that reads the route itself — and the route is not
   * remembered: a one-time secret's route (the SSO token's, the only one looked up this way) is
   * never needed again, and remembering it would push out routes that are (rotation's). In a
   * Cluster, the route first (route(), remembered). Null when there is no route. The hash goes
   * as ARGV[5] in its packed form (lua-codec.ts packedHash).
   */
  runRouted(script: LuaScript, hash: string, now: number, args: ReadonlyArray<string | Buffer>): Promise<unknown> {
    // Not an async function: the script's own promise is returned, not wrapped in another one.
    const known = this.#routes.get(hash);
    if (known === undefined && this.conn.kind !== 'redis-cluster') {
      return evalScript(this.conn, script, this.keys.route(hash), args, ['', num(now), this.keys.endsChannel(), '', packedHash(hash), this.keys.routeField(hash), this.keys.prefix]);
    }
    if (known !== undefined) return this.#runRoutedOn(script, known, hash, now, args);
    return this.route(hash).then((tag) => (tag === null ? null : this.#runRoutedOn(script, tag, hash, now, args)));
  }

  /** runSlot(script, tag, now, [packedHash(hash), '', '', ...args]) without that array's copy of `args`. */
  #runRoutedOn(script: LuaScript, tag: string, hash: string, now: number, args: ReadonlyArray<string | Buffer>): Promise<unknown> {
    return evalScript(this.conn, script, this.keys.slotSessions(tag), args, [this.keys.slotBase(tag), num(now), this.keys.endsChannel(), '', packedHash(hash), '', '']);
  }

  /** The tag the route of a secret or refresh-token hash names, or null. */
  async route(hash: string): Promise<string | null> {
    const known = this.#routes.get(hash);
    if (known !== undefined) return known;
    const key = this.keys.route(hash);
    const tag = (await this.send(key, ['HGET', key, this.keys.routeField(hash)], true)) as string | null;
    if (tag === null || !/^[A-Za-z0-9_-]{12}$/.test(tag)) return null;
    this.rememberRoute(hash, tag);
    return tag;
  }
}
