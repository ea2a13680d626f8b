// SessionStore (and Coordination) over Redis — standalone, Sentinel or Cluster behind one URL.
// See keys.ts for the key layout, codec.ts for the record format, scripts.ts for the atomic
// operations, connection.ts for timeouts and the failure policy, url.ts for the URL forms.
//
// Design in short:
// - All keys of one user share a Cluster hash slot through the hash tag `{userTag}`; a handle
//   carries that tag, so an operation by handle goes straight to its slot, and every multi-key
//   operation on a user's data is one Lua script there (atomic across processes).
// - Lookups by secret hash or refresh-token hash go through a routing index in another slot
//   (hash -> tag). The index is written first and is only a hint: the script then reads the
//   authoritative in-slot key and the record, and verifies the hash.
// - Tenant listing and expiry sweeping use global sorted sets written before the record and
//   cleaned when a create is refused; readers skip members whose record does not exist.
// - Key TTLs free memory: every record lives (absoluteExpiresAt - now) + retention (24 h by
//   default), so ended sessions stay readable for the retention. The TTL is relative to the `now`
//   passed in (PEXPIRE, not PEXPIREAT), so an injected clock — tests run in 2026 or in 2031 —
//   cannot make Redis drop a record early; in production `now` is the wall clock and this equals
//   PEXPIREAT absoluteExpiresAt + retention.
// - Connection failures and timeouts surface as StoreUnavailable (connection.ts).
// - Every script that ends sessions publishes their handles on `P ends` in the same atomic step;
//   subscribeSessionEnds listens there (Coordination, for the per-process session cache).

import { ErrorReply } from 'redis';
import { BadRequest, Conflict, NotFound, StoreUnavailable } from '../../domain/errors.ts';
import { tagOfHandle, userTag } from '../../domain/secrets.ts';
import { effectiveStatus, expiresAt } from '../../domain/session.ts';
import type { RevokeReason, Session } from '../../domain/session.ts';
import type { Tenant } from '../../domain/tenant.ts';
import type { User } from '../../domain/user.ts';
import type { Coordination, CounterState, FeedChange } from '../coordination.ts';
import type {
  CreateLimit,
  CreateSessionResult,
  ListSessionsQuery,
  ListUsersQuery,
  Page,
  RefreshToken,
  RenewResult,
  RotateResult,
  SessionStore,
} from '../port.ts';
import {
  decodeCursor,
  encodeCursor,
  num,
  patchToFields,
  refreshTokenFromReply,
  refreshTokenToFields,
  sessionFromReply,
  sessionsFromReply,
  sessionToFields,
} from './codec.ts';
import type { ListPosition } from './codec.ts';
import type { ConsentStore } from '../consent-port.ts';
import { RedisConsentStore } from './consents.ts';
import type { FederationStore } from '../federation-port.ts';
import type { OidcStore } from '../oidc-port.ts';
import { RedisOidcStore } from './oidc.ts';
import { RedisFederationStore } from './federation.ts';
import { RedisAuditStore } from './audit.ts';
import { openConnection, toStoreError } from './connection.ts';
import type { RedisConnection } from './connection.ts';
import { RedisKeys } from './keys.ts';
import {
  ADD_REFRESH,
  BY_SECRET,
  CONSUME,
  CREATE,
  EXPIRE_IF_DUE,
  HIT_COUNTER,
  RENEW,
  REVOKE,
  REVOKE_HANDLES,
  REVOKE_USER,
  ROTATE,
  TOUCH,
  UPDATE_DATA,
} from './scripts.ts';
import type { LuaScript } from './scripts.ts';
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
}

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
  });
  return new RedisSessionStore(conn, { keys, retentionMs });
}

export interface RedisStoreSettings {
  keys: RedisKeys;
  /** How long a record stays readable after its absolute expiry. */
  retentionMs: number;
}

/** Members fetched per ZRANGE while listing, revoking a tenant or sweeping. */
const PAGE = 200;

export class RedisSessionStore implements SessionStore, Coordination {
  readonly kind: string;
  readonly audit: RedisAuditStore;
  readonly consents: ConsentStore;
  readonly federation: FederationStore;
  readonly oidc: OidcStore;
  readonly #conn: RedisConnection;
  readonly #keys: RedisKeys;
  readonly #retentionMs: number;
  #closed = false;

  constructor(conn: RedisConnection, settings: RedisStoreSettings) {
    this.kind = conn.kind;
    this.#conn = conn;
    this.#keys = settings.keys;
    this.#retentionMs = settings.retentionMs;
    this.audit = new RedisAuditStore(conn, settings.keys);
    this.consents = new RedisConsentStore(conn, settings.keys);
    this.federation = new RedisFederationStore(conn, settings.keys);
    this.oidc = new RedisOidcStore(conn, settings.keys);
  }

  // ---------------------------------------------------------------- sessions

  async createSession(session: Session, now: number, limit?: CreateLimit): Promise<CreateSessionResult> {
    return this.#guard(async () => {
      const tag = this.#tagOfSession(session);
      if (session.parentHandle !== null && tagOfHandle(session.parentHandle) !== tag) throw parentInvalid();
      const ttl = this.#ttl(session.absoluteExpiresAt, now);
      const pre = await this.#indexBeforeWrite(session, tag, ttl);
      const reply = (await this.#run(CREATE, tag, now, [
        session.handle,
        String(ttl),
        limit?.kind ?? '',
        limit ? String(limit.max) : '0',
        limit?.policy ?? '',
        ...sessionToFields(session),
      ])) as unknown[];
      const outcome = reply[0];
      if (outcome === 'ok') {
        const evicted = sessionsFromReply(reply[2]);
        await this.#forgetExpiries(evicted);
        return { ok: true, session: mustSession(reply[1]), evicted };
      }
      // Refused: take back the index entries this call added (never those of an existing session).
      await this.#undoIndex(session, pre);
      if (outcome === 'exists') throw new Conflict('session_exists', `A session with the handle ${session.handle} already exists.`);
      if (outcome === 'limit') return { ok: false, reason: 'limit_reached', active: Number(reply[1]) };
      if (outcome === 'secret_exists') throw secretInUse();
      if (outcome === 'parent_invalid') throw parentInvalid();
      throw new Error(`unexpected reply from the create script: ${String(outcome)}`);
    });
  }

  async getSessionByHandle(handle: string): Promise<Session | null> {
    return this.#guard(async () => {
      const tag = tagOfHandle(handle);
      if (tag === null) return null;
      const key = this.#keys.session(tag, handle);
      const s = sessionFromReply(await this.#send(key, ['HGETALL', key], true));
      return s !== null && s.handle === handle ? s : null;
    });
  }

  async getSessionBySecretHash(secretHash: string): Promise<Session | null> {
    return this.#guard(async () => {
      const tag = await this.#route(this.#keys.secretRoute(secretHash));
      if (tag === null) return null;
      const s = sessionFromReply(await this.#run(BY_SECRET, tag, 0, [secretHash]));
      return s !== null && s.secretHash === secretHash ? s : null;
    });
  }

  async touchSession(handle: string, now: number, idleExpiresAt: number | null): Promise<Session | null> {
    return this.#guard(async () => {
      const tag = tagOfHandle(handle);
      if (tag === null) return null;
      const reply = (await this.#run(TOUCH, tag, now, [handle, idleExpiresAt === null ? '' : num(idleExpiresAt)])) as
        | [unknown, string]
        | null;
      if (reply === null) return null;
      const s = mustSession(reply[0]);
      await this.#expiryMayHaveMovedEarlier(s, reply[1]);
      return s;
    });
  }

  async updateSessionData(handle: string, patch: Record<string, unknown>, now: number): Promise<Session | null> {
    return this.#guard(async () => {
      const tag = tagOfHandle(handle);
      if (tag === null) return null;
      const reply = await this.#run(UPDATE_DATA, tag, now, [handle, ...patchToFields(patch)]);
      return reply === null ? null : mustSession(reply);
    });
  }

  async revokeSession(handle: string, reason: RevokeReason, now: number): Promise<Session[]> {
    return this.#guard(async () => {
      const tag = tagOfHandle(handle);
      if (tag === null) return [];
      const revoked = sessionsFromReply(await this.#run(REVOKE, tag, now, [handle, reason]));
      await this.#forgetExpiries(revoked);
      return revoked;
    });
  }

  async revokeUserSessions(
    tenantId: string,
    userId: string,
    reason: RevokeReason,
    now: number,
    opts?: { exceptHandle?: string },
  ): Promise<Session[]> {
    return this.#guard(async () => {
      const tag = userTag(tenantId, userId);
      const revoked = sessionsFromReply(
        await this.#run(REVOKE_USER, tag, now, [tenantId, userId, reason, opts?.exceptHandle ?? '']),
      );
      await this.#forgetExpiries(revoked);
      return revoked;
    });
  }

  async revokeTenantSessions(tenantId: string, reason: RevokeReason, now: number): Promise<Session[]> {
    return this.#guard(async () => {
      const out: Session[] = [];
      for await (const page of this.#zsetPages(this.#keys.tenantSessions(tenantId), null)) {
        // One script per slot, handles in createdAt order so parents come before their children.
        const byTag = new Map<string, string[]>();
        for (const { handle } of page) {
          const tag = tagOfHandle(handle);
          if (tag === null) continue;
          const list = byTag.get(tag) ?? [];
          list.push(handle);
          byTag.set(tag, list);
        }
        const replies = await Promise.all(
          [...byTag].map(([tag, handles]) => this.#run(REVOKE_HANDLES, tag, now, [tenantId, reason, ...handles])),
        );
        const revoked = replies.flatMap(sessionsFromReply);
        await this.#forgetExpiries(revoked);
        out.push(...revoked);
      }
      return out;
    });
  }

  async listSessions(query: ListSessionsQuery): Promise<Page<Session>> {
    return this.#guard(async () => {
      const limit = query.limit;
      if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
        throw new BadRequest('invalid_limit', 'limit must be an integer from 1 to 500.');
      }
      let after: ListPosition | null = null;
      if (query.cursor !== undefined && query.cursor !== null && query.cursor !== '') {
        after = decodeCursor(query.cursor);
        if (after === null) throw new BadRequest('invalid_cursor', 'The cursor is not one this server issued.');
      }
      const byUser = query.userId !== undefined;
      const zkey = byUser
        ? this.#keys.userSessions(userTag(query.tenantId, query.userId as string))
        : this.#keys.tenantSessions(query.tenantId);
      const items: Session[] = [];
      let more = false;
      outer: for await (const page of this.#zsetPages(zkey, after)) {
        const records = await Promise.all(
          page.map(async ({ handle }) => {
            const tag = tagOfHandle(handle);
            if (tag === null) return null;
            const key = this.#keys.session(tag, handle);
            return sessionFromReply(await this.#send(key, ['HGETALL', key], true));
          }),
        );
        const stale: string[] = [];
        for (const [i, s] of records.entries()) {
          const entry = page[i] as { handle: string; score: number };
          if (s === null) {
            // Gone after its retention (or a create still in flight, or refused): skip it, and
            // forget it once it is certainly not in flight any more.
            if (!byUser && entry.score < query.now - this.#retentionMs) stale.push(entry.handle);
            continue;
          }
          if (s.tenantId !== query.tenantId) continue;
          if (byUser && s.userId !== query.userId) continue;
          if (query.kind !== undefined && s.kind !== query.kind) continue;
          if (query.status !== undefined && effectiveStatus(s, query.now) !== query.status) continue;
          if (items.length === limit) {
            more = true;
            break;
          }
          items.push(s);
        }
        if (stale.length > 0) await this.#send(zkey, ['ZREM', zkey, ...stale]);
        if (more) break outer;
      }
      const last = items[items.length - 1];
      return {
        items,
        nextCursor: more && last ? encodeCursor({ createdAt: last.createdAt, handle: last.handle }) : null,
      };
    });
  }

  async consumeSession(secretHash: string, now: number): Promise<Session | null> {
    return this.#guard(async () => {
      const tag = await this.#route(this.#keys.secretRoute(secretHash));
      if (tag === null) return null;
      const reply = await this.#run(CONSUME, tag, now, [secretHash]);
      if (reply === null) return null;
      const s = mustSession(reply);
      await this.#forgetExpiries([s]);
      return s;
    });
  }

  async renewAfterExpiry(predecessorHandle: string, successor: Session, now: number, limit?: CreateLimit): Promise<RenewResult> {
    return this.#guard(async () => {
      const tag = tagOfHandle(predecessorHandle);
      if (tag === null) return { outcome: 'missing' };
      if (this.#tagOfSession(successor) !== tag) {
        throw new Error('renewAfterExpiry: the successor must belong to the predecessor’s user (its handle carries another routing tag)');
      }
      if (successor.parentHandle !== null && tagOfHandle(successor.parentHandle) !== tag) throw parentInvalid();
      const ttl = this.#ttl(successor.absoluteExpiresAt, now);
      const pre = await this.#indexBeforeWrite(successor, tag, ttl);
      const reply = (await this.#run(RENEW, tag, now, [
        predecessorHandle,
        String(ttl),
        limit?.kind ?? '',
        limit ? String(limit.max) : '0',
        limit?.policy ?? '',
        ...sessionToFields(successor),
      ])) as unknown[];
      const outcome = reply[0];
      const result = ((): RenewResult => {
        switch (outcome) {
          case 'renewed':
            return { outcome: 'renewed', session: mustSession(reply[1]), created: Number(reply[2]) === 1, evicted: sessionsFromReply(reply[3]) };
          case 'limit':
            return { outcome: 'limit_reached', active: Number(reply[1]) };
          case 'still_valid':
            return { outcome: 'still_valid', session: mustSession(reply[1]) };
          case 'revoked':
            return { outcome: 'revoked', session: mustSession(reply[1]) };
          case 'missing':
            return { outcome: 'missing' };
          case 'exists':
            throw new Conflict('session_exists', `A session with the handle ${successor.handle} already exists.`);
          case 'secret_exists':
            throw secretInUse();
          case 'parent_invalid':
            throw parentInvalid();
          case 'mismatch':
            throw new Error('renewAfterExpiry: the successor must have the predecessor’s tenant and user');
          default:
            throw new Error(`unexpected reply from the renew script: ${String(outcome)}`);
        }
      })();
      // Another caller's successor won (or none was needed): take back this call's index entries.
      // The secret route stays: concurrent renewals agree on the secret, so it may be the winner's.
      if (!(result.outcome === 'renewed' && result.session.handle === successor.handle)) {
        await this.#undoIndex(successor, { ...pre, route: false });
      }
      if (result.outcome === 'renewed') await this.#forgetExpiries(result.evicted);
      return result;
    });
  }

  // ---------------------------------------------------------------- refresh tokens

  async addRefreshToken(token: RefreshToken): Promise<void> {
    return this.#guard(async () => {
      const tag = tagOfHandle(token.sessionHandle);
      if (tag === null) throw new NotFound('session_not_found', `No session ${token.sessionHandle} for this refresh token.`);
      const route = this.#keys.tokenRoute(token.tokenHash);
      const routeWritten = await this.#claimRoute(route, tag, this.#retentionMs);
      const reply = (await this.#run(ADD_REFRESH, tag, 0, [token.tokenHash, ...refreshTokenToFields(token)])) as unknown[];
      if (reply[0] === 'ok') {
        const ms = Number(reply[1]);
        if (ms > 0) await this.#send(route, ['PEXPIRE', route, String(ms)]);
        return;
      }
      if (routeWritten) await this.#send(route, ['DEL', route]);
      if (reply[0] === 'no_session') throw new NotFound('session_not_found', `No session ${token.sessionHandle} for this refresh token.`);
      throw new Conflict('refresh_token_exists', 'This refresh token is already stored.');
    });
  }

  async rotateRefreshToken(
    presentedHash: string,
    successorHash: string,
    now: number,
    graceMs: number,
    idleExpiresAt: number | null,
  ): Promise<RotateResult> {
    return this.#guard(async () => {
      const tag = await this.#route(this.#keys.tokenRoute(presentedHash));
      if (tag === null) return { outcome: 'unknown' };
      const successorRoute = this.#keys.tokenRoute(successorHash);
      await this.#claimRoute(successorRoute, tag, this.#retentionMs);
      const reply = (await this.#run(ROTATE, tag, now, [
        presentedHash,
        successorHash,
        num(graceMs),
        idleExpiresAt === null ? '' : num(idleExpiresAt),
      ])) as unknown[];
      switch (reply[0]) {
        case 'rotated': {
          const session = mustSession(reply[1]);
          const successor = mustToken(reply[2]);
          const ttl = Number(reply[4]);
          if (ttl > 0) await this.#send(successorRoute, ['PEXPIRE', successorRoute, String(ttl)]);
          await this.#expiryMayHaveMovedEarlier(session, String(reply[3]));
          return { outcome: 'rotated', session, successor };
        }
        case 'grace':
          // The presented token as stored: its successorHash names the pair the first caller got.
          return { outcome: 'grace', session: mustSession(reply[1]), token: mustToken(reply[2]) };
        case 'reused': {
          const revoked = sessionsFromReply(reply[2]);
          await this.#forgetExpiries(revoked);
          return { outcome: 'reused', session: mustSession(reply[1]), revoked };
        }
        case 'inactive':
          return { outcome: 'inactive', session: mustSession(reply[1]) };
        case 'unknown':
          return { outcome: 'unknown' };
        case 'successor_exists':
          throw new Conflict('refresh_token_exists', 'The successor refresh token is already stored.');
        default:
          throw new Error(`unexpected reply from the rotate script: ${String(reply[0])}`);
      }
    });
  }

  async getRefreshToken(tokenHash: string): Promise<RefreshToken | null> {
    return this.#guard(async () => {
      const tag = await this.#route(this.#keys.tokenRoute(tokenHash));
      if (tag === null) return null;
      const key = this.#keys.refreshToken(tag, tokenHash);
      const t = refreshTokenFromReply(await this.#send(key, ['HGETALL', key], true));
      return t !== null && t.tokenHash === tokenHash ? t : null;
    });
  }

  // ---------------------------------------------------------------- expiry

  async sweepExpired(now: number, max: number): Promise<Session[]> {
    return this.#guard(async () => {
      const exp = this.#keys.expiry();
      const out: Session[] = [];
      // Bounded: every round removes or re-scores (above `now`) each handle it took.
      for (let round = 0; out.length < max && round < 100; round++) {
        const want = Math.min(PAGE, max - out.length);
        const due = (await this.#send(exp, ['ZRANGEBYSCORE', exp, '-inf', num(now), 'LIMIT', '0', String(want)], true)) as string[];
        if (due.length === 0) break;
        const results = await Promise.all(
          due.map(async (handle) => {
            const tag = tagOfHandle(handle);
            if (tag === null) return { handle, reply: ['gone'] as unknown[] };
            return { handle, reply: (await this.#run(EXPIRE_IF_DUE, tag, now, [handle])) as unknown[] };
          }),
        );
        const remove: string[] = [];
        const rescore: string[] = [];
        for (const { handle, reply } of results) {
          if (reply[0] === 'expired') {
            out.push(mustSession(reply[1]));
            remove.push(handle);
          } else if (reply[0] === 'notdue') {
            rescore.push(String(reply[1]), handle);
          } else {
            remove.push(handle);
          }
        }
        // XX: never re-add a handle that a concurrent sweeper has just removed.
        if (rescore.length > 0) await this.#send(exp, ['ZADD', exp, 'XX', ...rescore]);
        if (remove.length > 0) await this.#send(exp, ['ZREM', exp, ...remove]);
      }
      await this.#collectListingGarbage(now, Math.max(max, PAGE));
      return out;
    });
  }

  // ---------------------------------------------------------------- users, tenants, meta

  async createUser(user: User): Promise<User> {
    return this.#guard(async () => {
      const emailKey = this.#keys.email(user.tenantId, user.email);
      const claimed = await this.#send(emailKey, ['SET', emailKey, user.id, 'NX']);
      if (claimed === null) throw new Conflict('user_exists', `A user with the email ${user.email} already exists in this tenant.`);
      const listKey = this.#keys.tenantUsers(user.tenantId);
      const member = userMember(user);
      const userKey = this.#keys.user(userTag(user.tenantId, user.id), user.id);
      let stored: unknown;
      try {
        await this.#send(listKey, ['ZADD', listKey, '0', member]);
        stored = await this.#send(userKey, ['SET', userKey, JSON.stringify(user), 'NX']);
      } catch (err) {
        await this.#send(emailKey, ['DEL', emailKey]).catch(() => undefined);
        throw err;
      }
      if (stored === null) {
        await this.#send(emailKey, ['DEL', emailKey]);
        throw new Conflict('user_exists', `A user with the id ${user.id} already exists in this tenant.`);
      }
      return user;
    });
  }

  async getUser(tenantId: string, userId: string): Promise<User | null> {
    return this.#guard(async () => {
      const key = this.#keys.user(userTag(tenantId, userId), userId);
      const raw = (await this.#send(key, ['GET', key], true)) as string | null;
      if (raw === null) return null;
      const u = JSON.parse(raw) as User;
      return u.tenantId === tenantId && u.id === userId ? u : null;
    });
  }

  async findUserByEmail(tenantId: string, normalisedEmail: string): Promise<User | null> {
    return this.#guard(async () => {
      const emailKey = this.#keys.email(tenantId, normalisedEmail);
      const id = (await this.#send(emailKey, ['GET', emailKey], true)) as string | null;
      if (id === null) return null;
      const u = await this.getUser(tenantId, id);
      return u !== null && u.email === normalisedEmail ? u : null;
    });
  }

  async updateUser(user: User): Promise<User> {
    return this.#guard(async () => {
      const key = this.#keys.user(userTag(user.tenantId, user.id), user.id);
      const raw = (await this.#send(key, ['GET', key])) as string | null;
      if (raw === null) throw new NotFound('user_not_found', `No user ${user.id} in this tenant.`);
      const before = JSON.parse(raw) as User;
      if (before.email === user.email) {
        await this.#send(key, ['SET', key, JSON.stringify(user), 'XX']);
        return user;
      }
      // A new email: claim it first (SET NX decides between racing claimants), list it, write the
      // record, then release the old claim if it is still this user's.
      const newEmailKey = this.#keys.email(user.tenantId, user.email);
      const claimed = await this.#send(newEmailKey, ['SET', newEmailKey, user.id, 'NX']);
      if (claimed === null) throw new Conflict('user_exists', `A user with the email ${user.email} already exists in this tenant.`);
      const listKey = this.#keys.tenantUsers(user.tenantId);
      await this.#send(listKey, ['ZADD', listKey, '0', userMember(user)]);
      const written = await this.#send(key, ['SET', key, JSON.stringify(user), 'XX']);
      if (written === null) {
        await this.#send(newEmailKey, ['DEL', newEmailKey]);
        throw new NotFound('user_not_found', `No user ${user.id} in this tenant.`);
      }
      const oldEmailKey = this.#keys.email(user.tenantId, before.email);
      await this.#send(oldEmailKey, ['EVAL', DEL_IF_EQUALS, '1', oldEmailKey, user.id]);
      await this.#send(listKey, ['ZREM', listKey, userMember(before)]);
      return user;
    });
  }

  async listUsers(query: ListUsersQuery): Promise<Page<User>> {
    return this.#guard(async () => {
      const listKey = this.#keys.tenantUsers(query.tenantId);
      const prefix = query.emailPrefix ?? '';
      let from = prefix === '' ? '-' : `[${prefix}`;
      if (query.cursor) from = `(${decodeUserCursor(query.cursor)}`;
      const to = prefix === '' ? '+' : `[${prefix}\u{10FFFF}`;
      const items: User[] = [];
      let more = false;
      // Members whose record is gone or changed email are skipped; read on until the page is full.
      for (;;) {
        const batch = (await this.#send(listKey, ['ZRANGEBYLEX', listKey, from, to, 'LIMIT', '0', String(query.limit + 1)], true)) as string[];
        for (const member of batch) {
          if (items.length === query.limit) {
            more = true;
            break;
          }
          const cut = member.lastIndexOf(' ');
          const email = member.slice(0, cut);
          if (prefix !== '' && !email.startsWith(prefix)) continue;
          const u = await this.getUser(query.tenantId, member.slice(cut + 1));
          if (u !== null && u.email === email) items.push(u);
        }
        if (more || batch.length <= query.limit) break;
        from = `(${batch.at(-1)!}`;
      }
      const last = items.at(-1);
      return { items, nextCursor: more && last ? encodeUserCursor(userMember(last)) : null };
    });
  }

  async deleteUser(tenantId: string, userId: string): Promise<boolean> {
    return this.#guard(async () => {
      const key = this.#keys.user(userTag(tenantId, userId), userId);
      const raw = (await this.#send(key, ['GET', key])) as string | null;
      if (raw === null) return false;
      const u = JSON.parse(raw) as User;
      if (u.tenantId !== tenantId) return false;
      const removed = (await this.#send(key, ['DEL', key])) as number;
      const emailKey = this.#keys.email(tenantId, u.email);
      await this.#send(emailKey, ['EVAL', DEL_IF_EQUALS, '1', emailKey, userId]);
      const listKey = this.#keys.tenantUsers(tenantId);
      await this.#send(listKey, ['ZREM', listKey, userMember(u)]);
      return removed > 0;
    });
  }

  async putTenant(tenant: Tenant): Promise<Tenant> {
    return this.#guard(async () => {
      const listKey = this.#keys.tenants();
      await this.#send(listKey, ['ZADD', listKey, '0', tenant.id]);
      const key = this.#keys.tenant(tenant.id);
      await this.#send(key, ['SET', key, JSON.stringify(tenant)]);
      return tenant;
    });
  }

  async getTenant(tenantId: string): Promise<Tenant | null> {
    return this.#guard(async () => {
      const key = this.#keys.tenant(tenantId);
      const raw = (await this.#send(key, ['GET', key], true)) as string | null;
      return raw === null ? null : (JSON.parse(raw) as Tenant);
    });
  }

  async listTenants(): Promise<Tenant[]> {
    return this.#guard(async () => {
      const listKey = this.#keys.tenants();
      const ids = (await this.#send(listKey, ['ZRANGE', listKey, '0', '-1'], true)) as string[];
      const out: Tenant[] = [];
      for (const id of ids) {
        const t = await this.getTenant(id);
        if (t !== null) out.push(t);
      }
      return out;
    });
  }

  async deleteTenant(tenantId: string): Promise<boolean> {
    return this.#guard(async () => {
      const key = this.#keys.tenant(tenantId);
      const removed = (await this.#send(key, ['DEL', key])) as number;
      const listKey = this.#keys.tenants();
      await this.#send(listKey, ['ZREM', listKey, tenantId]);
      return removed > 0;
    });
  }

  async getMeta(key: string): Promise<unknown> {
    return this.#guard(async () => {
      const k = this.#keys.meta(key);
      const raw = (await this.#send(k, ['GET', k], true)) as string | null;
      return raw === null ? null : (JSON.parse(raw) as unknown);
    });
  }

  async putMetaIfAbsent(key: string, value: unknown): Promise<unknown> {
    return this.#guard(async () => {
      const k = this.#keys.meta(key);
      // SET NX ... GET (Redis 7) answers the earlier value in the same step, or nil when ours was set.
      const earlier = (await this.#send(k, ['SET', k, JSON.stringify(value), 'NX', 'GET'])) as string | null;
      return earlier === null ? value : (JSON.parse(earlier) as unknown);
    });
  }

  async putMeta(key: string, value: unknown): Promise<void> {
    return this.#guard(async () => {
      const k = this.#keys.meta(key);
      await this.#send(k, ['SET', k, JSON.stringify(value)]);
    });
  }

  // ---------------------------------------------------------------- coordination

  async hitCounter(key: string, windowMs: number, now: number, by = 1): Promise<CounterState> {
    return this.#guard(async () => {
      const k = this.#keys.counter(key);
      const window = Math.max(1, Math.ceil(windowMs));
      const args = ['1', k, num(now), num(now + window), String(window), String(Math.trunc(by))];
      let reply: unknown;
      try {
        reply = await this.#send(k, ['EVALSHA', HIT_COUNTER.sha1, ...args]);
      } catch (err) {
        if (!(err instanceof ErrorReply) || !err.message.startsWith('NOSCRIPT')) throw err;
        reply = await this.#send(k, ['EVAL', HIT_COUNTER.source, ...args]);
      }
      const [count, resetAt] = reply as [number, string];
      return { count: Number(count), resetAt: Number(resetAt) };
    });
  }

  async peekCounter(key: string, now: number): Promise<CounterState | null> {
    return this.#guard(async () => {
      const k = this.#keys.counter(key);
      const [count, resetAt] = (await this.#send(k, ['HMGET', k, 'count', 'resetAt'], true)) as [string | null, string | null];
      if (count === null || resetAt === null || now >= Number(resetAt)) return null;
      return { count: Number(count), resetAt: Number(resetAt) };
    });
  }

  async resetCounter(key: string): Promise<void> {
    return this.#guard(async () => {
      const k = this.#keys.counter(key);
      await this.#send(k, ['DEL', k]);
    });
  }

  async subscribeSessionEnds(listener: (handles: string[]) => void, onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void> }> {
    return this.#guard(() =>
      this.#conn.subscribe(
        this.#keys.endsChannel(),
        (message) => {
          const handles = message.split(' ').filter((h) => h !== '');
          if (handles.length > 0) listener(handles);
        },
        onReset,
      ),
    );
  }

  // ---------------------------------------------------------------- lifecycle

  async ping(): Promise<void> {
    return this.#guard(async () => {
      const masters = await this.#conn.masters();
      if (masters.length === 0) throw new StoreUnavailable('The session store has no reachable master.');
      await Promise.all(masters.map((send) => send(['PING'])));
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#conn.close();
  }

  // ---------------------------------------------------------------- internals

  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreUnavailable('The session store has been closed.');
    try {
      return await fn();
    } catch (err) {
      throw toStoreError(err);
    }
  }

  #send(key: string, args: string[], readonly = false): Promise<unknown> {
    return this.#conn.send(key, args, readonly);
  }

  /** EVALSHA, and EVAL when the server does not know the script yet. */
  async #run(script: LuaScript, tag: string, now: number, args: string[]): Promise<unknown> {
    const base = this.#keys.slotBase(tag);
    const routing = this.#keys.userSessions(tag);
    const tail = ['1', routing, base, num(now), this.#keys.endsChannel(), ...args];
    try {
      return await this.#send(routing, ['EVALSHA', script.sha1, ...tail]);
    } catch (err) {
      if (!(err instanceof ErrorReply) || !err.message.startsWith('NOSCRIPT')) throw err;
      return this.#send(routing, ['EVAL', script.source, ...tail]);
    }
  }

  /** The routing tag a session's keys live under; it must match the session's user. */
  #tagOfSession(s: Session): string {
    const tag = tagOfHandle(s.handle);
    if (tag === null) throw new Error(`"${s.handle}" is not a session handle`);
    if (s.userId !== null && tag !== userTag(s.tenantId, s.userId)) {
      throw new Error(`the handle ${s.handle} does not carry the routing tag of its user`);
    }
    return tag;
  }

  /** (absolute expiry - now) + retention, at least the retention. */
  #ttl(absoluteExpiresAt: number, now: number): number {
    return Math.ceil(Math.max(0, absoluteExpiresAt - now) + this.#retentionMs);
  }

  async #route(routeKey: string): Promise<string | null> {
    const tag = (await this.#send(routeKey, ['GET', routeKey], true)) as string | null;
    return tag !== null && /^[A-Za-z0-9_-]{12}$/.test(tag) ? tag : null;
  }

  /**
   * Writes an immutable routing entry (hash -> tag). Returns whether this call wrote it. An entry
   * that exists with another tag means two sessions share a secret hash: refuse.
   */
  async #claimRoute(routeKey: string, tag: string, ttl: number): Promise<boolean> {
    const set = await this.#send(routeKey, ['SET', routeKey, tag, 'NX', 'PX', String(ttl)]);
    if (set !== null) return true;
    const existing = await this.#send(routeKey, ['GET', routeKey]);
    if (existing !== null && existing !== tag) throw secretInUse();
    return false;
  }

  /**
   * The global index entries of a new session, written before its record (see keys.ts): secret
   * route, tenant listing, expiry index, and the entry that later takes it out of the tenant
   * listing. Reports what this call added, so that a refusal takes back exactly that.
   */
  async #indexBeforeWrite(s: Session, tag: string, ttl: number): Promise<IndexWrites> {
    const tenantKey = this.#keys.tenantSessions(s.tenantId);
    const exp = this.#keys.expiry();
    const gc = this.#keys.listingGc();
    const [claim, added] = await Promise.all([
      this.#claimRoute(this.#keys.secretRoute(s.secretHash), tag, ttl).then(
        (written) => ({ written, err: null }),
        (err: unknown) => ({ written: false, err: toStoreError(err) }),
      ),
      Promise.all([
        this.#send(tenantKey, ['ZADD', tenantKey, 'NX', num(s.createdAt), s.handle]),
        this.#send(exp, ['ZADD', exp, 'NX', num(expiresAt(s)), s.handle]),
        this.#send(gc, ['ZADD', gc, 'NX', num(s.absoluteExpiresAt + this.#retentionMs), gcMember(s)]),
      ]),
    ]);
    const [t, e, g] = added as [number, number, number];
    const writes: IndexWrites = { route: claim.written, tenant: t === 1, expiry: e === 1, gc: g === 1 };
    if (claim.err !== null) {
      await this.#undoIndex(s, writes);
      throw claim.err;
    }
    return writes;
  }

  async #undoIndex(s: Session, w: IndexWrites): Promise<void> {
    const tenantKey = this.#keys.tenantSessions(s.tenantId);
    const exp = this.#keys.expiry();
    const gc = this.#keys.listingGc();
    const route = this.#keys.secretRoute(s.secretHash);
    await Promise.all([
      w.tenant ? this.#send(tenantKey, ['ZREM', tenantKey, s.handle]) : null,
      w.expiry ? this.#send(exp, ['ZREM', exp, s.handle]) : null,
      w.gc ? this.#send(gc, ['ZREM', gc, gcMember(s)]) : null,
      w.route ? this.#send(route, ['DEL', route]) : null,
    ]);
  }

  /**
   * Takes sessions whose records have outlived their retention out of the tenant listings (the
   * only index without a TTL of its own), at most `max` per call. Part of sweepExpired.
   */
  async #collectListingGarbage(now: number, max: number): Promise<void> {
    const gc = this.#keys.listingGc();
    const due = (await this.#send(gc, ['ZRANGEBYSCORE', gc, '-inf', num(now), 'LIMIT', '0', String(max)], true)) as string[];
    if (due.length === 0) return;
    const byTenant = new Map<string, string[]>();
    for (const member of due) {
      const [tenantId, handle] = member.split(' ') as [string, string];
      byTenant.set(tenantId, [...(byTenant.get(tenantId) ?? []), handle]);
    }
    await Promise.all(
      [...byTenant].map(([tenantId, handles]) => {
        const key = this.#keys.tenantSessions(tenantId);
        return this.#send(key, ['ZREM', key, ...handles]);
      }),
    );
    await this.#send(gc, ['ZREM', gc, ...due]);
  }

  /** Ended sessions need no sweeping; dropping them keeps the index small (best effort). */
  async #forgetExpiries(ended: Session[]): Promise<void> {
    if (ended.length === 0) return;
    const exp = this.#keys.expiry();
    await this.#send(exp, ['ZREM', exp, ...ended.map((s) => s.handle)]).catch(() => undefined);
  }

  /**
   * The expiry index must never hold a score later than the real expiry, or the sweeper would
   * find the session late. A touch usually slides the expiry forward (the stale, earlier score is
   * fixed when the sweeper looks); only when it moved earlier is the score lowered here.
   */
  async #expiryMayHaveMovedEarlier(s: Session, previousIdle: string): Promise<void> {
    const before = expiresAt({ idleExpiresAt: previousIdle === '' ? null : Number(previousIdle), absoluteExpiresAt: s.absoluteExpiresAt });
    const after = expiresAt(s);
    if (after < before) {
      const exp = this.#keys.expiry();
      await this.#send(exp, ['ZADD', exp, 'LT', num(after), s.handle]);
    }
  }

  /**
   * The members of a zset in (score, member) order after `after`, in pages. Ties on the score are
   * ordered by member, as Redis orders them, so (createdAt, handle) is a total order.
   */
  async *#zsetPages(key: string, after: ListPosition | null): AsyncGenerator<Array<{ handle: string; score: number }>> {
    let min = after === null ? '-inf' : num(after.createdAt);
    let offset = 0;
    for (;;) {
      const reply = (await this.#send(key, ['ZRANGEBYSCORE', key, min, '+inf', 'WITHSCORES', 'LIMIT', String(offset), String(PAGE)], true)) as string[];
      const page: Array<{ handle: string; score: number }> = [];
      for (let i = 0; i + 1 < reply.length; i += 2) {
        const handle = reply[i] as string;
        const score = Number(reply[i + 1]);
        if (after !== null && (score < after.createdAt || (score === after.createdAt && handle <= after.handle))) continue;
        page.push({ handle, score });
      }
      const fetched = reply.length / 2;
      if (page.length > 0) yield page;
      if (fetched < PAGE) return;
      // Continue from the last score; skip what was already seen at that score.
      const lastScore = Number(reply[reply.length - 1]);
      let sameScore = 0;
      for (let i = reply.length - 1; i > 0 && Number(reply[i]) === lastScore; i -= 2) sameScore++;
      offset = num(lastScore) === min ? offset + fetched : sameScore;
      min = num(lastScore);
    }
  }
}

// Error codes as the SQLite adapter has them, so that callers see one set.
interface IndexWrites {
  route: boolean;
  tenant: boolean;
  expiry: boolean;
  gc: boolean;
}

/** The user listing's member: email and id, split at the last space (ids contain none). */
function userMember(u: { email: string; id: string }): string {
  return `${u.email} ${u.id}`;
}

function encodeUserCursor(member: string): string {
  return Buffer.from(member, 'utf8').toString('base64url');
}

function decodeUserCursor(cursor: string): string {
  const member = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^\S[^\n]* [^ ]+$/.test(member)) throw new BadRequest('invalid_cursor', 'The cursor is not one that this server issued.');
  return member;
}

const DEL_IF_EQUALS = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/** Tenant ids and handles contain no spaces (TENANT_ID_PATTERN, base64url). */
function gcMember(s: Session): string {
  return `${s.tenantId} ${s.handle}`;
}

function secretInUse(): Conflict {
  return new Conflict('session_exists', 'A session with this secret already exists.');
}

function parentInvalid(): Conflict {
  return new Conflict('invalid_parent', 'The parent session is not a valid session of this tenant and user.');
}

function mustSession(reply: unknown): Session {
  const s = sessionFromReply(reply);
  if (s === null) throw new Error('the store returned an empty session record');
  return s;
}

function mustToken(reply: unknown): RefreshToken {
  const t = refreshTokenFromReply(reply);
  if (t === null) throw new Error('the store returned an empty refresh-token record');
  return t;
}
