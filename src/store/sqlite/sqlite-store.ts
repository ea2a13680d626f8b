// The SQLite adapter of the storage port: one file, WAL, node:sqlite (DatabaseSync).
//
// Every operation that writes runs in one BEGIN IMMEDIATE transaction. IMMEDIATE takes the
// database's write lock before the first read, so the read-decide-write inside the transaction
// cannot interleave with another writer — in this process (another connection) or in another
// process on the same file; a writer that finds the lock taken waits up to BUSY_TIMEOUT_MS.
// DatabaseSync is synchronous and no transaction contains an `await`, so calls on one connection
// never interleave either. Reads that are one SELECT need no transaction: a statement sees one
// consistent snapshot.
//
// It also implements Coordination (src/store/coordination.ts) for the embedded mode: counters in
// a table, and the feed of session ends from a log that a trigger on `sessions` fills.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { SQLInputValue, StatementSync } from 'node:sqlite';
import { BadRequest, Conflict, NotFound, StoreUnavailable, TesseraError } from '../../domain/errors.ts';
import { isValid, sessionsToEvict } from '../../domain/session.ts';
import type { RevokeReason, Session, SessionStatus } from '../../domain/session.ts';
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
import type { ConsentStore } from '../consent-port.ts';
import { SqliteConsentStore } from './consents.ts';
import type { FederationStore } from '../federation-port.ts';
import type { OidcStore } from '../oidc-port.ts';
import { SqliteOidcStore } from './oidc.ts';
import { SqliteFederationStore } from './federation.ts';
import { SqliteAuditStore } from './audit.ts';
import { migrate } from './migrations.ts';
import {
  decodeCursor,
  decodeUserCursor,
  encodeCursor,
  encodeUserCursor,
  refreshTokenFromRow,
  sessionFromRow,
  sessionParams,
  userFromRow,
  userParams,
} from './rows.ts';
import type { RefreshTokenRow, SessionRow, UserRow } from './rows.ts';
import { inWriteTransaction, markWritable, settle, unwritable } from './transactions.ts';

/** How long a writer waits for another connection's write lock before giving up (503). */
export const BUSY_TIMEOUT_MS = 5_000;

/**
 * How often a subscriber reads the log of session ends for ends written by other connections
 * (other processes). Ends written through this store instance are delivered at once.
 */
export const FEED_POLL_MS = 20;

/** Ends older than this are pruned from the log by sweepExpired (wall clock; housekeeping). */
export const FEED_RETENTION_MS = 10 * 60_000;

/** Ended sessions are kept this long after their absolute expiry, then purged (as Redis's key TTL). */
export const SESSION_RETENTION_MS = 24 * 3600 * 1000;

export interface SqliteStoreOptions {
  /** Default BUSY_TIMEOUT_MS: how long an operation waits for another writer before it fails with StoreUnavailable. */
  busyTimeoutMs?: number;
  /** Default FEED_POLL_MS. */
  feedPollMs?: number;
}

const LIST_LIMIT_MAX = 500;

/**
 * Opens (and creates, with its parent folders) the database file and brings its schema up to
 * date. `:memory:` gives a private in-memory database. Rejects with StoreUnavailable when the
 * file cannot be used (not a database, no permission, locked for longer than the busy timeout).
 */
export function openSqliteStore(path: string, opts: SqliteStoreOptions = {}): Promise<SqliteSessionStore> {
  return Promise.resolve().then(() => {
    let db: DatabaseSync | undefined;
    try {
      if (path !== ':memory:' && !path.startsWith('file:')) mkdirSync(dirname(path), { recursive: true });
      db = new DatabaseSync(path, { timeout: opts.busyTimeoutMs ?? BUSY_TIMEOUT_MS, enableForeignKeyConstraints: true });
      // WAL: readers never block the writer and the writer never blocks readers. With WAL,
      // synchronous=NORMAL loses nothing when the process dies (only on power loss / OS crash).
      db.exec('PRAGMA journal_mode = WAL');
      db.exec('PRAGMA synchronous = NORMAL');
      db.exec('PRAGMA foreign_keys = ON');
      migrate(db);
      return new SqliteSessionStore(db, opts.feedPollMs ?? FEED_POLL_MS);
    } catch (err) {
      if (db?.isOpen) db.close();
      // Whatever stops the file from opening (a folder we may not create, a file that is not a
      // database, a lock held past the busy timeout) means the store is unusable.
      if (err instanceof TesseraError) throw err;
      throw new StoreUnavailable(`Cannot open the SQLite database at ${path}: ${(err as Error).message}`, err);
    }
  });
}

interface EndsSubscription {
  /** The seq of the last end delivered. */
  last: number;
  listener: (handles: string[]) => void;
  onReset: (change: FeedChange) => void;
}

export class SqliteSessionStore implements SessionStore, Coordination {
  readonly kind = 'sqlite';
  readonly audit: SqliteAuditStore;
  readonly consents: ConsentStore;
  readonly federation: FederationStore;
  readonly oidc: OidcStore;
  private readonly db: DatabaseSync;
  private readonly stmt: ReturnType<typeof prepareStatements>;
  private readonly listStatements = new Map<string, StatementSync>();
  private readonly feedPollMs: number;
  private readonly subscriptions = new Set<EndsSubscription>();
  private pollTimer: NodeJS.Timeout | null = null;

  constructor(db: DatabaseSync, feedPollMs = FEED_POLL_MS) {
    this.db = db;
    this.stmt = prepareStatements(db);
    this.audit = new SqliteAuditStore(db);
    this.consents = new SqliteConsentStore(db);
    this.federation = new SqliteFederationStore(db);
    this.oidc = new SqliteOidcStore(db);
    this.feedPollMs = feedPollMs;
  }

  // ---- sessions -------------------------------------------------------------------------------

  createSession(session: Session, now: number, limit?: CreateLimit): Promise<CreateSessionResult> {
    // Closes the race of simultaneous logins of one user: each would count the same N-1 valid
    // sessions and insert (the limit is exceeded), or evict the same oldest one. Under the write
    // lock the count, the evictions and the insert are one step.
    return this.write((): CreateSessionResult => {
      if (session.parentHandle !== null) this.assertValidParent(session, now);
      const limited = this.applyLimit(session, now, limit);
      if (!limited.ok) return { ok: false, reason: 'limit_reached', active: limited.active };
      return { ok: true, session: this.insertSession(session), evicted: limited.evicted };
    });
  }

  /** The per-user limit for a new session, inside the caller's write: refuse, or evict the oldest. */
  private applyLimit(session: Session, now: number, limit?: CreateLimit): { ok: true; evicted: Session[] } | { ok: false; active: number } {
    const evicted: Session[] = [];
    if (limit !== undefined && session.userId !== null) {
      const active = this.all<SessionRow>(this.stmt.validOfUserAndKind, {
        tenant_id: session.tenantId,
        user_id: session.userId,
        kind: limit.kind,
        now,
      }).map(sessionFromRow);
      if (limit.policy === 'reject_new') {
        if (active.length + 1 > limit.max) return { ok: false, active: active.length };
      } else {
        for (const victim of sessionsToEvict(active, limit.max)) {
          evicted.push(...this.revokeSubtree(victim.handle, 'limit_evicted', now));
        }
      }
    }
    return { ok: true, evicted };
  }

  getSessionByHandle(handle: string): Promise<Session | null> {
    return this.run(() => this.sessionByHandle(handle));
  }

  getSessionBySecretHash(secretHash: string): Promise<Session | null> {
    return this.run(() => {
      const row = this.one<SessionRow>(this.stmt.sessionBySecretHash, { secret_hash: secretHash });
      return row ? sessionFromRow(row) : null;
    });
  }

  touchSession(handle: string, now: number, idleExpiresAt: number | null): Promise<Session | null> {
    // Closes the race of a touch with a revoke or an expiry: the validity check and the update
    // are one statement under the write lock, so a revoked or expired session is never revived.
    return this.write(() => {
      const row = this.one<SessionRow>(this.stmt.touch, { handle, now, idle: idleExpiresAt });
      return row ? sessionFromRow(row) : null;
    });
  }

  updateSessionData(handle: string, patch: Record<string, unknown>, now: number): Promise<Session | null> {
    // Closes the lost update of two concurrent patches: each reads `data` and writes it back
    // merged; without the write lock the later write would drop the earlier patch's keys.
    return this.write(() => {
      const current = this.sessionByHandle(handle);
      if (current === null || !isValid(current, now)) return null;
      const data: Record<string, unknown> = { ...current.data };
      for (const [key, value] of Object.entries(patch)) {
        if (value === null) delete data[key];
        else data[key] = value;
      }
      const row = this.one<SessionRow>(this.stmt.setData, { handle, data: JSON.stringify(data) });
      return row ? sessionFromRow(row) : null;
    });
  }

  revokeSession(handle: string, reason: RevokeReason, now: number): Promise<Session[]> {
    // Closes the race of a revoke with the creation of a child (a redirect started from the app
    // session being logged out): createSession checks the parent under the same lock, so no
    // valid child can appear below a revoked parent.
    return this.write(() => this.revokeSubtree(handle, reason, now));
  }

  revokeUserSessions(
    tenantId: string,
    userId: string,
    reason: RevokeReason,
    now: number,
    opts?: { exceptHandle?: string },
  ): Promise<Session[]> {
    // Closes the race of "log out everywhere" with a login of the same user: the new session is
    // either created before (and revoked here) or after (and stays), never half-way.
    return this.write(() => {
      const keep = new Set<string>();
      if (opts?.exceptHandle !== undefined) {
        // The kept session keeps its subtree and its ancestors: revoking an ancestor would end
        // the kept session too (ending a session ends its subtree).
        for (const r of this.all<{ handle: string }>(this.stmt.subtreeHandles, { handle: opts.exceptHandle })) {
          keep.add(r.handle);
        }
        for (const r of this.all<{ handle: string }>(this.stmt.ancestorHandles, { handle: opts.exceptHandle })) {
          keep.add(r.handle);
        }
      }
      const changed: Session[] = [];
      for (const r of this.all<{ handle: string }>(this.stmt.userTreeHandles, { tenant_id: tenantId, user_id: userId })) {
        if (keep.has(r.handle)) continue;
        const row = this.one<SessionRow>(this.stmt.revokeIfValid, { handle: r.handle, now, reason });
        if (row) changed.push(sessionFromRow(row));
      }
      return changed;
    });
  }

  revokeTenantSessions(tenantId: string, reason: RevokeReason, now: number): Promise<Session[]> {
    // One UPDATE under the write lock: a session created in the tenant concurrently is either
    // revoked here or created after the revocation, never missed half-way.
    return this.write(() =>
      this.all<SessionRow>(this.stmt.revokeTenant, { tenant_id: tenantId, now, reason })
        .map(sessionFromRow)
        .sort(byCreatedThenHandle),
    );
  }

  listSessions(query: ListSessionsQuery): Promise<Page<Session>> {
    return this.run(() => {
      if (!Number.isInteger(query.limit) || query.limit < 1 || query.limit > LIST_LIMIT_MAX) {
        throw new BadRequest('invalid_limit', `limit must be an integer from 1 to ${LIST_LIMIT_MAX}.`);
      }
      const where = ['tenant_id = $tenant_id'];
      const params: Record<string, SQLInputValue> = { tenant_id: query.tenantId, limit: query.limit + 1 };
      if (query.userId !== undefined) {
        where.push('user_id = $user_id');
        params.user_id = query.userId;
      }
      if (query.kind !== undefined) {
        where.push('kind = $kind');
        params.kind = query.kind;
      }
      if (query.status !== undefined) {
        const condition = STATUS_CONDITION[query.status];
        where.push(condition);
        if (condition.includes('$now')) params.now = query.now;
      }
      if (query.cursor !== undefined && query.cursor !== null) {
        const c = decodeCursor(query.cursor);
        where.push('(created_at > $c_created OR (created_at = $c_created AND handle > $c_handle))');
        params.c_created = c.createdAt;
        params.c_handle = c.handle;
      }
      const sql = `SELECT * FROM sessions WHERE ${where.join(' AND ')} ORDER BY created_at, handle LIMIT $limit`;
      let stmt = this.listStatements.get(sql);
      if (stmt === undefined) {
        stmt = this.db.prepare(sql);
        this.listStatements.set(sql, stmt);
      }
      const rows = this.all<SessionRow>(stmt, params);
      const items = rows.slice(0, query.limit).map(sessionFromRow);
      const last = items[items.length - 1];
      const nextCursor =
        rows.length > query.limit && last !== undefined
          ? encodeCursor({ createdAt: last.createdAt, handle: last.handle })
          : null;
      return { items, nextCursor };
    });
  }

  consumeSession(secretHash: string, now: number): Promise<Session | null> {
    // Closes the double use of a single-use session (two tabs returning from the bank with one
    // redirect cookie, a replayed OIDC callback): the check "still active" and the revocation
    // are one UPDATE under the write lock, so exactly one caller gets the row back.
    return this.write(() => {
      const row = this.one<SessionRow>(this.stmt.consume, { secret_hash: secretHash, now });
      if (!row) return null;
      // Ending a session ends its subtree; single-use kinds normally have none.
      for (const child of this.all<{ handle: string }>(this.stmt.subtreeHandles, { handle: row.handle })) {
        if (child.handle !== row.handle) {
          this.one<SessionRow>(this.stmt.revokeIfValid, { handle: child.handle, now, reason: 'parent_revoked' });
        }
      }
      return sessionFromRow(row);
    });
  }

  renewAfterExpiry(predecessorHandle: string, successor: Session, now: number, limit?: CreateLimit): Promise<RenewResult> {
    // Closes the race of several redirects returning after their starting session expired: each
    // would create its own new session. Under the write lock the first links its successor to
    // the predecessor; every later caller finds the link and gets that same successor.
    return this.write((): RenewResult => {
      const predecessor = this.sessionByHandle(predecessorHandle);
      if (predecessor === null) return { outcome: 'missing' };
      if (predecessor.status === 'revoked') return { outcome: 'revoked', session: predecessor };
      if (predecessor.successorHandle !== null) {
        const existing = this.sessionByHandle(predecessor.successorHandle);
        if (existing === null) throw new Error(`successor ${predecessor.successorHandle} of ${predecessorHandle} is missing`);
        return { outcome: 'renewed', session: existing, created: false, evicted: [] };
      }
      if (isValid(predecessor, now)) return { outcome: 'still_valid', session: predecessor };
      if (successor.parentHandle !== null) this.assertValidParent(successor, now);
      // The successor is a new session of the user: the same limit as a login, in this write.
      const limited = this.applyLimit(successor, now, limit);
      if (!limited.ok) return { outcome: 'limit_reached', active: limited.active };
      const stored = this.insertSession(successor);
      this.stmt.linkSuccessor.run({ handle: predecessorHandle, successor_handle: stored.handle });
      return { outcome: 'renewed', session: stored, created: true, evicted: limited.evicted };
    });
  }

  // ---- refresh tokens -------------------------------------------------------------------------

  addRefreshToken(token: RefreshToken): Promise<void> {
    return this.write(() => {
      if (this.sessionByHandle(token.sessionHandle) === null) {
        throw new NotFound('session_not_found', `No session ${token.sessionHandle} for this refresh token.`);
      }
      this.insertRefreshToken(token);
    });
  }

  rotateRefreshToken(
    presentedHash: string,
    successorHash: string,
    now: number,
    graceMs: number,
    idleExpiresAt: number | null,
  ): Promise<RotateResult> {
    // Closes the race of several tabs refreshing with the same token at once: under the write
    // lock exactly one finds the token current and rotates it; the others find it rotated a
    // moment ago (within the grace window) and get the same successor.
    return this.write((): RotateResult => {
      const tokenRow = this.one<RefreshTokenRow>(this.stmt.refreshTokenByHash, { token_hash: presentedHash });
      if (!tokenRow) return { outcome: 'unknown' };
      const token = refreshTokenFromRow(tokenRow);
      const session = this.sessionByHandle(token.sessionHandle);
      if (session === null) return { outcome: 'unknown' };
      if (!isValid(session, now)) return { outcome: 'inactive', session };

      if (token.rotatedAt === null) {
        this.stmt.markRotated.run({ token_hash: presentedHash, rotated_at: now, successor_hash: successorHash });
        const successor: RefreshToken = {
          tokenHash: successorHash,
          sessionHandle: token.sessionHandle,
          tenantId: token.tenantId,
          userId: token.userId,
          createdAt: now,
          rotatedAt: null,
          successorHash: null,
        };
        this.insertRefreshToken(successor);
        const touched = this.one<SessionRow>(this.stmt.touch, { handle: session.handle, now, idle: idleExpiresAt });
        return { outcome: 'rotated', session: touched ? sessionFromRow(touched) : session, successor };
      }
      if (now - token.rotatedAt <= graceMs) return { outcome: 'grace', session, token };

      // A rotated token after the grace window: someone kept a copy (RFC 9700 4.14.2).
      const revoked = this.revokeSubtree(session.handle, 'refresh_reuse', now);
      return { outcome: 'reused', session: revoked[0] ?? session, revoked };
    });
  }

  getRefreshToken(tokenHash: string): Promise<RefreshToken | null> {
    return this.run(() => {
      const row = this.one<RefreshTokenRow>(this.stmt.refreshTokenByHash, { token_hash: tokenHash });
      return row ? refreshTokenFromRow(row) : null;
    });
  }

  // ---- housekeeping ---------------------------------------------------------------------------

  sweepExpired(now: number, max: number): Promise<Session[]> {
    // Closes the race of several sweepers (threads or processes) picking the same expired
    // session and each emitting session.expired: selecting and marking are one UPDATE under
    // the write lock, so a session leaves the `active` set in exactly one call.
    return this.write(() => {
      // Housekeeping rides along: closed counter windows, and ends every subscriber has read.
      this.stmt.pruneCounters.run({ now });
      this.stmt.pruneEnds.run({ before: Date.now() - FEED_RETENTION_MS });
      const cutoff = now - SESSION_RETENTION_MS;
      this.stmt.purgeEndedTokens.run({ cutoff, max: 500 });
      this.stmt.purgeEndedSessions.run({ cutoff, max: 500 });
      if (max < 1) return [];
      return this.all<SessionRow>(this.stmt.sweep, { now, max: Math.floor(max) })
        .map(sessionFromRow)
        .sort((a, b) => (a.endedAt ?? 0) - (b.endedAt ?? 0) || byCreatedThenHandle(a, b));
    });
  }

  // ---- users ----------------------------------------------------------------------------------

  createUser(user: User): Promise<User> {
    // The UNIQUE (tenant_id, email) index closes the race of two sign-ups with one email.
    return this.write(() => {
      try {
        return userFromRow(this.one<UserRow>(this.stmt.insertUser, userParams(user))!);
      } catch (err) {
        if (isUniqueViolation(err)) {
          throw new Conflict('user_exists', 'A user with this email already exists in this tenant.');
        }
        throw err;
      }
    });
  }

  getUser(tenantId: string, userId: string): Promise<User | null> {
    return this.run(() => {
      const row = this.one<UserRow>(this.stmt.userById, { tenant_id: tenantId, id: userId });
      return row ? userFromRow(row) : null;
    });
  }

  findUserByEmail(tenantId: string, normalisedEmail: string): Promise<User | null> {
    return this.run(() => {
      const row = this.one<UserRow>(this.stmt.userByEmail, { tenant_id: tenantId, email: normalisedEmail });
      return row ? userFromRow(row) : null;
    });
  }

  updateUser(user: User): Promise<User> {
    return this.write(() => {
      const current = this.one<UserRow>(this.stmt.userById, { tenant_id: user.tenantId, id: user.id });
      if (!current) throw new NotFound('user_not_found', `No user ${user.id} in tenant ${user.tenantId}.`);
      try {
        return userFromRow(this.one<UserRow>(this.stmt.updateUser, userParams(user))!);
      } catch (err) {
        // The UNIQUE (tenant_id, email) index refuses another user's email.
        if (isUniqueViolation(err)) throw new Conflict('user_exists', 'A user with this email already exists in this tenant.');
        throw err;
      }
    });
  }

  listUsers(query: ListUsersQuery): Promise<Page<User>> {
    return this.run(() => {
      const after = query.cursor ? decodeUserCursor(query.cursor) : null;
      const prefix = query.emailPrefix ?? '';
      const rows = this.all<UserRow>(this.stmt.listUsers, {
        tenant_id: query.tenantId,
        // Range over the prefix instead of LIKE: no wildcard characters to escape.
        from: prefix,
        to: prefix + '\u{10FFFF}',
        after_email: after?.email ?? null,
        after_id: after?.id ?? '',
        limit: query.limit + 1,
      });
      const items = rows.slice(0, query.limit).map(userFromRow);
      const last = items.at(-1);
      return { items, nextCursor: rows.length > query.limit && last ? encodeUserCursor(last) : null };
    });
  }

  deleteUser(tenantId: string, userId: string): Promise<boolean> {
    return this.write(() => this.stmt.deleteUser.run({ tenant_id: tenantId, id: userId }).changes > 0);
  }

  // ---- tenants and metadata -------------------------------------------------------------------

  putTenant(tenant: Tenant): Promise<Tenant> {
    return this.write(() => {
      this.stmt.putTenant.run({ id: tenant.id, body: JSON.stringify(tenant) });
      return tenant;
    });
  }

  getTenant(tenantId: string): Promise<Tenant | null> {
    return this.run(() => {
      const row = this.one<{ body: string }>(this.stmt.tenantById, { id: tenantId });
      return row ? (JSON.parse(row.body) as Tenant) : null;
    });
  }

  listTenants(): Promise<Tenant[]> {
    return this.run(() => this.all<{ body: string }>(this.stmt.listTenants, {}).map((r) => JSON.parse(r.body) as Tenant));
  }

  deleteTenant(tenantId: string): Promise<boolean> {
    return this.write(() => this.stmt.deleteTenant.run({ id: tenantId }).changes > 0);
  }

  getMeta(key: string): Promise<unknown> {
    return this.run(() => {
      const row = this.one<{ value: string }>(this.stmt.metaByKey, { key });
      return row ? (JSON.parse(row.value) as unknown) : null;
    });
  }

  putMetaIfAbsent(key: string, value: unknown): Promise<unknown> {
    // Closes the race of two servers starting at once, each generating a signing key: the first
    // insert wins and both read back the same value.
    return this.write(() => {
      this.stmt.insertMetaIfAbsent.run({ key, value: JSON.stringify(value) });
      const row = this.one<{ value: string }>(this.stmt.metaByKey, { key });
      return JSON.parse(row!.value) as unknown;
    });
  }

  putMeta(key: string, value: unknown): Promise<void> {
    return this.write(() => {
      this.stmt.putMeta.run({ key, value: JSON.stringify(value) });
    });
  }

  // ---- coordination ---------------------------------------------------------------------------

  hitCounter(key: string, windowMs: number, now: number, by = 1): Promise<CounterState> {
    // One upsert under the write lock: concurrent hits from several processes each count once,
    // and exactly one of them opens the next window.
    return this.write(() => {
      const row = this.one<{ count: number; reset_at: number }>(this.stmt.hitCounter, {
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
    return this.run(() => {
      const row = this.one<{ count: number; reset_at: number }>(this.stmt.counterByKey, { key });
      return row && now < row.reset_at ? { count: row.count, resetAt: row.reset_at } : null;
    });
  }

  resetCounter(key: string): Promise<void> {
    return this.write(() => {
      this.stmt.deleteCounter.run({ key });
    });
  }

  /**
   * Delivers the ends logged by the trigger on `sessions` (migration 2) from now on: at once for
   * ends written through this instance, within `feedPollMs` for ends written by other
   * connections. A gap in the seqs (the log was pruned past this subscriber) calls `onReset`.
   */
  subscribeSessionEnds(listener: (handles: string[]) => void, onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void> }> {
    return this.run(() => {
      const top = this.one<{ seq: number }>(this.stmt.endsHighWater, {});
      const sub: EndsSubscription = { last: top?.seq ?? 0, listener, onReset };
      this.subscriptions.add(sub);
      if (this.pollTimer === null) {
        this.pollTimer = setInterval(() => this.deliverEnds(), this.feedPollMs);
        this.pollTimer.unref();
      }
      return {
        close: () => {
          this.subscriptions.delete(sub);
          if (this.subscriptions.size === 0) this.stopPolling();
          return Promise.resolve();
        },
      };
    });
  }

  /**
   * Readiness. After a write failed for want of a writable file (disk full, read-only, I/O
   * error), reads alone would still succeed, so until a write works again this one writes.
   */
  ping(): Promise<void> {
    return this.run(() => {
      if (unwritable(this.db) === null) {
        this.db.prepare('SELECT 1').get();
        return;
      }
      this.stmt.putMeta.run({ key: 'readiness-probe', value: JSON.stringify(Date.now()) });
      markWritable(this.db);
    });
  }

  close(): Promise<void> {
    this.subscriptions.clear();
    this.stopPolling();
    if (this.db.isOpen) this.db.close();
    return Promise.resolve();
  }

  // ---- inside a transaction -------------------------------------------------------------------

  /** A parent must be a valid session of the same tenant at `now`. */
  private assertValidParent(child: Session, now: number): void {
    const parent = child.parentHandle === null ? null : this.sessionByHandle(child.parentHandle);
    if (parent === null || parent.tenantId !== child.tenantId || !isValid(parent, now)) {
      throw new Conflict('invalid_parent', `The parent session ${child.parentHandle} is not a valid session of this tenant.`);
    }
  }

  private insertSession(session: Session): Session {
    try {
      return sessionFromRow(this.one<SessionRow>(this.stmt.insertSession, sessionParams(session))!);
    } catch (err) {
      if (isUniqueViolation(err)) throw new Conflict('session_exists', 'A session with this handle or secret exists.');
      throw err;
    }
  }

  private insertRefreshToken(token: RefreshToken): void {
    try {
      this.stmt.insertRefreshToken.run({
        token_hash: token.tokenHash,
        session_handle: token.sessionHandle,
        tenant_id: token.tenantId,
        user_id: token.userId,
        created_at: token.createdAt,
        rotated_at: token.rotatedAt,
        successor_hash: token.successorHash,
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new Conflict('refresh_token_exists', 'This refresh token is already stored.');
      throw err;
    }
  }

  /**
   * Revokes the sessions of `rootHandle`'s subtree that are valid or still renewable (idle-expired
   * within their absolute lifetime): the root with `reason`, descendants with `parent_revoked`.
   * Walks through ended sessions too (a valid redirect below an expired app session still ends
   * with its idp). Returns the changed sessions, root first, by depth.
   */
  private revokeSubtree(rootHandle: string, reason: RevokeReason, now: number): Session[] {
    const changed: Session[] = [];
    for (const r of this.all<{ handle: string }>(this.stmt.subtreeHandles, { handle: rootHandle })) {
      const row = this.one<SessionRow>(this.stmt.revokeIfValid, {
        handle: r.handle,
        now,
        reason: r.handle === rootHandle ? reason : 'parent_revoked',
      });
      if (row) changed.push(sessionFromRow(row));
    }
    return changed;
  }

  private sessionByHandle(handle: string): Session | null {
    const row = this.one<SessionRow>(this.stmt.sessionByHandle, { handle });
    return row ? sessionFromRow(row) : null;
  }

  private one<T>(stmt: StatementSync, params: Record<string, SQLInputValue>): T | undefined {
    return stmt.get(params) as T | undefined;
  }

  private all<T>(stmt: StatementSync, params: Record<string, SQLInputValue>): T[] {
    return stmt.all(params) as T[];
  }

  // ---- the feed of session ends ---------------------------------------------------------------

  /** Reads the log from each subscriber's last seq and hands it the new ends, in order. */
  private deliverEnds(): void {
    if (!this.db.isOpen) return;
    for (const sub of this.subscriptions) {
      let rows: { seq: number; handle: string }[];
      try {
        rows = this.all<{ seq: number; handle: string }>(this.stmt.endsAfter, { after: sub.last });
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

  // ---- plumbing -------------------------------------------------------------------------------

  /**
   * Runs `fn` in one BEGIN IMMEDIATE transaction; any throw rolls it back. After the commit,
   * this instance's subscribers get the ends the transaction logged before the caller resumes.
   */
  private write<T>(fn: () => T): Promise<T> {
    return inWriteTransaction(this.db, fn, () => {
      if (this.subscriptions.size > 0) this.deliverEnds();
    });
  }

  /** Runs synchronous database work and settles the promise with its outcome. */
  private run<T>(fn: () => T): Promise<T> {
    return settle(this.db, fn);
  }
}

/** Effective status at `$now`: an `active` row past its expiry reads as `expired`. */
const STATUS_CONDITION: Record<SessionStatus, string> = {
  active: "(status = 'active' AND expires_at > $now)",
  expired: "(status = 'expired' OR (status = 'active' AND expires_at <= $now))",
  revoked: "status = 'revoked'",
};

function prepareStatements(db: DatabaseSync) {
  return {
    insertSession: db.prepare(`
      INSERT INTO sessions (handle, secret_hash, tenant_id, user_id, kind, parent_handle, status, created_at,
        last_seen_at, idle_expires_at, absolute_expires_at, expires_at, auth_method, client_id, device, ended_at,
        revoke_reason, successor_handle, data)
      VALUES ($handle, $secret_hash, $tenant_id, $user_id, $kind, $parent_handle, $status, $created_at,
        $last_seen_at, $idle_expires_at, $absolute_expires_at, $expires_at, $auth_method, $client_id, $device, $ended_at,
        $revoke_reason, $successor_handle, $data)
      RETURNING *`),
    sessionByHandle: db.prepare('SELECT * FROM sessions WHERE handle = $handle'),
    sessionBySecretHash: db.prepare('SELECT * FROM sessions WHERE secret_hash = $secret_hash'),
    validOfUserAndKind: db.prepare(`
      SELECT * FROM sessions
      WHERE tenant_id = $tenant_id AND user_id = $user_id AND kind = $kind AND status = 'active' AND expires_at > $now
      ORDER BY created_at, handle`),
    // The idle expiry is capped at the absolute expiry here too, so expires_at stays right.
    touch: db.prepare(`
      UPDATE sessions SET
        last_seen_at = $now,
        idle_expires_at = min($idle, absolute_expires_at),
        expires_at = coalesce(min($idle, absolute_expires_at), absolute_expires_at)
      WHERE handle = $handle AND status = 'active' AND expires_at > $now
      RETURNING *`),
    setData: db.prepare('UPDATE sessions SET data = $data WHERE handle = $handle RETURNING *'),
    // Valid, or idle-expired within its absolute lifetime (renewable after a consent return,
    // SPEC 7.3): a revocation makes either final, so a renewal never brings it back.
    revokeIfValid: db.prepare(`
      UPDATE sessions SET status = 'revoked', ended_at = $now, revoke_reason = $reason
      WHERE handle = $handle AND status != 'revoked' AND absolute_expires_at > $now
      RETURNING *`),
    revokeTenant: db.prepare(`
      UPDATE sessions SET status = 'revoked', ended_at = $now, revoke_reason = $reason
      WHERE tenant_id = $tenant_id AND status != 'revoked' AND absolute_expires_at > $now
      RETURNING *`),
    consume: db.prepare(`
      UPDATE sessions SET status = 'revoked', ended_at = $now, revoke_reason = 'consumed'
      WHERE secret_hash = $secret_hash AND status = 'active' AND expires_at > $now
      RETURNING *`),
    // The root and every descendant, breadth first (a child is always created after its parent,
    // so the tree has no cycles).
    subtreeHandles: db.prepare(`
      WITH RECURSIVE subtree (handle, depth) AS (
        SELECT handle, 0 FROM sessions WHERE handle = $handle
        UNION ALL
        SELECT s.handle, subtree.depth + 1 FROM sessions s JOIN subtree ON s.parent_handle = subtree.handle
      )
      SELECT subtree.handle FROM subtree JOIN sessions s USING (handle)
      ORDER BY subtree.depth, s.created_at, s.handle`),
    ancestorHandles: db.prepare(`
      WITH RECURSIVE up (handle, parent_handle) AS (
        SELECT handle, parent_handle FROM sessions WHERE handle = $handle
        UNION ALL
        SELECT s.handle, s.parent_handle FROM sessions s JOIN up ON s.handle = up.parent_handle
      )
      SELECT handle FROM up`),
    // A user's sessions and everything below them.
    userTreeHandles: db.prepare(`
      WITH RECURSIVE tree (handle) AS (
        SELECT handle FROM sessions WHERE tenant_id = $tenant_id AND user_id = $user_id
        UNION
        SELECT s.handle FROM sessions s JOIN tree ON s.parent_handle = tree.handle
      )
      SELECT tree.handle FROM tree JOIN sessions s USING (handle) ORDER BY s.created_at, s.handle`),
    linkSuccessor: db.prepare('UPDATE sessions SET successor_handle = $successor_handle WHERE handle = $handle'),
    sweep: db.prepare(`
      UPDATE sessions SET status = 'expired', ended_at = expires_at
      WHERE handle IN (
        SELECT handle FROM sessions WHERE status = 'active' AND expires_at <= $now ORDER BY expires_at LIMIT $max
      )
      RETURNING *`),

    insertRefreshToken: db.prepare(`
      INSERT INTO refresh_tokens (token_hash, session_handle, tenant_id, user_id, created_at, rotated_at, successor_hash)
      VALUES ($token_hash, $session_handle, $tenant_id, $user_id, $created_at, $rotated_at, $successor_hash)`),
    refreshTokenByHash: db.prepare('SELECT * FROM refresh_tokens WHERE token_hash = $token_hash'),
    markRotated: db.prepare(`
      UPDATE refresh_tokens SET rotated_at = $rotated_at, successor_hash = $successor_hash
      WHERE token_hash = $token_hash AND rotated_at IS NULL`),

    insertUser: db.prepare(`
      INSERT INTO users (tenant_id, id, email, password_hash, roles, email_verified, disabled, created_at, updated_at)
      VALUES ($tenant_id, $id, $email, $password_hash, $roles, $email_verified, $disabled, $created_at, $updated_at)
      RETURNING *`),
    updateUser: db.prepare(`
      UPDATE users SET email = $email, password_hash = $password_hash, roles = $roles, email_verified = $email_verified,
        disabled = $disabled, created_at = $created_at, updated_at = $updated_at
      WHERE tenant_id = $tenant_id AND id = $id
      RETURNING *`),
    userById: db.prepare('SELECT * FROM users WHERE tenant_id = $tenant_id AND id = $id'),
    userByEmail: db.prepare('SELECT * FROM users WHERE tenant_id = $tenant_id AND email = $email'),

    putTenant: db.prepare('INSERT INTO tenants (id, body) VALUES ($id, $body) ON CONFLICT (id) DO UPDATE SET body = excluded.body'),
    tenantById: db.prepare('SELECT body FROM tenants WHERE id = $id'),
    listTenants: db.prepare('SELECT body FROM tenants ORDER BY id'),
    deleteTenant: db.prepare('DELETE FROM tenants WHERE id = $id'),
    listUsers: db.prepare(`
      SELECT * FROM users
      WHERE tenant_id = $tenant_id AND email >= $from AND email < $to
        AND ($after_email IS NULL OR email > $after_email OR (email = $after_email AND id > $after_id))
      ORDER BY email, id
      LIMIT $limit`),
    deleteUser: db.prepare('DELETE FROM users WHERE tenant_id = $tenant_id AND id = $id'),

    metaByKey: db.prepare('SELECT value FROM meta WHERE key = $key'),
    insertMetaIfAbsent: db.prepare('INSERT INTO meta (key, value) VALUES ($key, $value) ON CONFLICT (key) DO NOTHING'),
    putMeta: db.prepare('INSERT INTO meta (key, value) VALUES ($key, $value) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),

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
    // Retention, as in Redis (absolute expiry + 24 h): ended sessions without remaining children,
    // a batch at a time; parents go in a later sweep, after their children.
    purgeEndedTokens: db.prepare(`
      DELETE FROM refresh_tokens WHERE session_handle IN (
        SELECT s.handle FROM sessions s
        WHERE s.status != 'active' AND s.absolute_expires_at < $cutoff
          AND NOT EXISTS (SELECT 1 FROM sessions c WHERE c.parent_handle = s.handle)
        LIMIT $max)`),
    purgeEndedSessions: db.prepare(`
      DELETE FROM sessions WHERE handle IN (
        SELECT s.handle FROM sessions s
        WHERE s.status != 'active' AND s.absolute_expires_at < $cutoff
          AND NOT EXISTS (SELECT 1 FROM sessions c WHERE c.parent_handle = s.handle)
          AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_handle = s.handle)
        LIMIT $max)`),
  };
}

function byCreatedThenHandle(a: Session, b: Session): number {
  return a.createdAt - b.createdAt || (a.handle < b.handle ? -1 : a.handle > b.handle ? 1 : 0);
}

interface SqliteError {
  code: string;
  errcode?: number;
}

function isSqliteError(err: unknown): err is Error & SqliteError {
  return err instanceof Error && typeof (err as Partial<SqliteError>).code === 'string';
}

const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;
const SQLITE_CONSTRAINT_UNIQUE = 2067;

function isUniqueViolation(err: unknown): boolean {
  return (
    isSqliteError(err) &&
    (err.errcode === SQLITE_CONSTRAINT_UNIQUE || err.errcode === SQLITE_CONSTRAINT_PRIMARYKEY)
  );
}

/**
 * Primary result codes that mean the database cannot be used right now (rather than a bug in a
 * statement): BUSY/LOCKED (another writer held the lock past the busy timeout), NOMEM, READONLY,
 * IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
 */
const UNAVAILABLE_CODES = new Set([5, 6, 7, 8, 10, 11, 13, 14, 15, 26]);

/** Maps what node:sqlite throws to the port's errors: unusable database → StoreUnavailable. */
export function toStoreError(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err));
  if (err instanceof TesseraError || !isSqliteError(err)) return err;
  if (err.code === 'ERR_SQLITE_ERROR' && err.errcode !== undefined && UNAVAILABLE_CODES.has(err.errcode & 0xff)) {
    return new StoreUnavailable(`The SQLite database is unavailable: ${err.message}`, err);
  }
  return err;
}
