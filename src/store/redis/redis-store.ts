// SessionStore (and Coordination) over Redis — standalone, Sentinel or Cluster behind one URL —
// composed of one adapter per aggregate: sessions.ts (with refresh-tokens.ts, session-index.ts,
// due-index.ts, sweep.ts, scripts.ts, slot-lua.ts; migrate.ts upgrades layout 1), accounts.ts, meta.ts, coordination.ts, and the sub-stores consents.ts,
// federation.ts, oidc.ts, audit.ts. See keys.ts for the key layout, codec.ts for the record
// format, lua.ts for how scripts are sent, connection.ts for timeouts and the failure policy,
// url.ts for the URL forms.
//
// Design in short:
// - All sessions of one user (with their refresh tokens) are one value in a Cluster hash slot of
//   the hash tag `{userTag}`; a handle carries that tag, so an operation by handle goes straight
//   to its slot, and every operation on a user's sessions is one Lua script there (atomic across
//   processes).
// - Lookups by secret hash or refresh-token hash go through a route in another slot (hash ->
//   tag). The route is written first and is only a hint: the script then finds the record with
//   that full hash in the slot.
// - Tenant listing and the due index (expiry, then purge) are global sorted sets written before
//   the record and cleaned when a create is refused; readers skip members whose record does not
//   exist.
// - Records stay readable for the retention (24 h by default) after their absolute expiry; then
//   the sweeper purges them with their routes and listing entries. The slot's key has a TTL one
//   retention longer than its longest-living record, relative to the `now` passed in (PEXPIRE,
//   not PEXPIREAT), so an injected clock — tests run in 2026 or in 2031 — cannot make Redis drop
//   a record early.
// - Connection failures and timeouts surface as StoreUnavailable (connection.ts).
// - Every script that ends sessions publishes their handles on `P ends` in the same atomic step;
//   subscribeSessionEnds listens there (Coordination, for the per-process session cache).

import { StoreUnavailable } from '../../domain/errors.ts';
import { ACCOUNTS_OPERATIONS } from '../accounts-port.ts';
import { COORDINATION_OPERATIONS, type Coordination } from '../coordination-port.ts';
import { META_OPERATIONS } from '../meta-port.ts';
import { operationsOf } from '../operations.ts';
import type { SessionStore } from '../port.ts';
import { SESSIONS_OPERATIONS } from '../sessions-port.ts';
import { RedisAccounts } from './accounts.ts';
import { RedisAuditStore } from './audit.ts';
import { openConnection, toStoreError, type RedisConnection } from './connection.ts';
import type { HotWrites } from './hot-connection.ts';
import { backfillListings } from './indexes.ts';
import { RedisConsentStore } from './consents.ts';
import { RedisBankStore } from './banks.ts';
import { RedisContext, type ReplicaWait } from './context.ts';
import { RedisCoordination } from './coordination.ts';
import { RedisFederationStore } from './federation.ts';
import { RedisKeys } from './keys.ts';
import { RedisMeta } from './meta.ts';
import { checkLayout, migrateLayout1, recordLayout, RedisLayoutTooNew } from './migrate.ts';
import { RedisOidcStore } from './oidc.ts';
import { RedisSessions } from './sessions.ts';
import { parseRedisUrl } from './url.ts';

export { InvalidRedisUrl, parseRedisUrl, redactUrl } from './url.ts';
export type { RedisHost, RedisTarget } from './url.ts';
export { RedisKeys } from './keys.ts';

export const DEFAULT_RETENTION_MS = 24 * 3600 * 1000;

export interface RedisStoreOptions {
  /** Prepended to every key, e.g. `tessera:`. No `{` or `}`. */
  prefix: string;
  /** How long ended and expired records stay readable after their absolute expiry. Default 24 h. */
  retentionMs?: number;
  /** Bound on opening the store (and on each reconnect attempt). Default 1500 ms. */
  connectTimeoutMs?: number;
  /** Bound on every command; past it the caller gets StoreUnavailable. Default 1000 ms. */
  commandTimeoutMs?: number;
  /** Receives background connection errors (reconnects); they never reach a request. */
  onError?: (err: unknown) => void;
  /**
   * Writes that must survive a failover (session ends, limit evictions, refresh rotations)
   * answer only once this many replicas have them (WAIT), or after `timeoutMs`. 0 replicas: off.
   */
  replicaWait?: ReplicaWait;
  /**
   * The most live sessions (active, or expired and still renewable) one user may hold; a new one
   * at it still gets in: the oldest no longer valid leave the live value, then the oldest valid is
   * revoked `user_capacity` (slot-lua.ts makeRoom). Bounds the Redis time of every
   * operation on that user's sessions. Default DEFAULT_LIVE_MAX (200); 0 = no cap.
   */
  maxLiveSessionsPerUser?: number;
  /**
   * Standalone (redis://, rediss://) only: the hot Function calls — the refresh-token rotation and
   * the SSO exchange's look-up-and-redeem — through a lean connection of their own, written at
   * the end of their task ('task') or of the event-loop turn ('turn'), or through node-redis with
   * everything else ('off'). Default DEFAULT_HOT_WRITES. Off whenever `replicaWait` waits for
   * replicas: WAIT counts the writes of the connection it is sent on (node-redis's).
   */
  hotWrites?: HotWrites | 'off';
}

/** See RedisStoreOptions.hotWrites (docs/performance.md, "A lean connection for the hot Function calls"). */
export const DEFAULT_HOT_WRITES: HotWrites | 'off' = 'task';

/**
 * Opens the store on `redis://`, `rediss://`, `redis-sentinel://h1:p1,h2:p2/<master>` or
 * `redis-cluster://h1:p1,h2:p2`. Throws InvalidRedisUrl for a URL it cannot use, and
 * StoreUnavailable when the store cannot be reached within the connect timeout.
 */
export async function openRedisStore(url: string, opts: RedisStoreOptions): Promise<RedisSessionStore> {
  const target = parseRedisUrl(url);
  const keys = new RedisKeys(opts.prefix);
  const retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
  if (!(retentionMs >= 1000)) throw new Error(`retentionMs must be at least 1000 ms (got ${retentionMs})`);
  const conn = await openConnection(target, {
    connectTimeoutMs: opts.connectTimeoutMs ?? 1500,
    commandTimeoutMs: opts.commandTimeoutMs ?? 1000,
    ...(opts.onError ? { onError: opts.onError } : {}),
    hotWrites: (opts.replicaWait?.replicas ?? 0) > 0 ? 'off' : (opts.hotWrites ?? DEFAULT_HOT_WRITES),
  });
  try {
    // A store a newer version marked with a layout this code does not know: refused (migrate.ts).
    await checkLayout(conn, keys);
    // Listings that records written by older versions are missing from (indexes.ts): once.
    await backfillListings(conn, keys);
    // Layout 1 → 2 before anything is answered (migrate.ts); one EXISTS when there is nothing to do.
    await migrateLayout1(conn, keys, retentionMs);
    // Then the mark: layout 3 (2 → 3 rewrites nothing, values are shed as they are read).
    await recordLayout(conn, keys);
  } catch (err) {
    await conn.close().catch(() => undefined);
    throw err instanceof RedisLayoutTooNew ? err : toStoreError(err);
  }
  return composeRedisStore(conn, {
    keys,
    retentionMs,
    ...(opts.replicaWait ? { replicaWait: opts.replicaWait } : {}),
    ...(opts.maxLiveSessionsPerUser !== undefined ? { maxLiveSessionsPerUser: opts.maxLiveSessionsPerUser } : {}),
  });
}

export interface RedisStoreSettings {
  keys: RedisKeys;
  /** How long a record stays readable after its absolute expiry. */
  retentionMs: number;
  replicaWait?: ReplicaWait;
  /** See RedisStoreOptions. */
  maxLiveSessionsPerUser?: number;
}

/** The Redis store: the aggregates' operations of its adapters, and the sub-stores. */
export type RedisSessionStore = SessionStore &
  Coordination & {
    readonly audit: RedisAuditStore;
    /** Writes answered without a replica's confirmation because none was left (RedisContext.replicated). */
    readonly unreplicatedWrites: number;
  };

export function composeRedisStore(conn: RedisConnection, settings: RedisStoreSettings): RedisSessionStore {
  const ctx = new RedisContext(conn, settings.keys, settings.retentionMs, settings.replicaWait, settings.maxLiveSessionsPerUser);
  return {
    kind: conn.kind,
    ...operationsOf(new RedisSessions(ctx), SESSIONS_OPERATIONS),
    ...operationsOf(new RedisAccounts(ctx), ACCOUNTS_OPERATIONS),
    ...operationsOf(new RedisMeta(ctx), META_OPERATIONS),
    ...operationsOf(new RedisCoordination(ctx), COORDINATION_OPERATIONS),
    audit: new RedisAuditStore(conn, settings.keys),
    consents: new RedisConsentStore(conn, settings.keys),
    banks: new RedisBankStore(conn, settings.keys),
    federation: new RedisFederationStore(conn, settings.keys),
    oidc: new RedisOidcStore(conn, settings.keys),
    get unreplicatedWrites() {
      return ctx.unreplicatedWrites;
    },
    ping: () =>
      ctx.guard(async () => {
        const masters = await conn.masters();
        if (masters.length === 0) throw new StoreUnavailable('The session store has no reachable master.');
        await Promise.all(masters.map((send) => send(['PING'])));
      }),
    close: async () => {
      if (ctx.closed) return;
      ctx.markClosed();
      await conn.close();
    },
  };
}
