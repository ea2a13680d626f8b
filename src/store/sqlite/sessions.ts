// The SQLite adapter of the sessions aggregate (sessions-port.ts): sessions and refresh tokens.
//
// Every operation that writes runs in one BEGIN IMMEDIATE transaction (SqliteContext.write).
// IMMEDIATE takes the database's write lock before the first read, so the read-decide-write
// inside the transaction cannot interleave with another writer — in this process (another
// connection) or in another process on the same file; a writer that finds the lock taken waits
// up to the busy timeout. DatabaseSync is synchronous and no transaction contains an `await`, so
// calls on one connection never interleave either. Reads that are one SELECT need no transaction:
// a statement sees one consistent snapshot. Each race an operation closes is written beside it.

import type { SQLInputValue, StatementSync } from 'node:sqlite';
import { Conflict, NotFound } from '../../domain/errors.ts';
import { isValid, redeemableInto, refreshGraceApplies, sessionsToEvict } from '../../domain/session.ts';
import type { RevokeReason, Session } from '../../domain/session.ts';
import { checkLimit, decodeCursor, pageOf, type Page } from '../page.ts';
import {
  SESSION_LIST_MAX,
  type CreateLimit,
  type CreateSessionResult,
  checkRedeemTarget,
  lookUpAndRedeemInSteps,
  type ListSessionsQuery,
  type LookUpAndRedeemResult,
  type RedeemPlan,
  type RedeemResult,
  type RedeemTarget,
  type RefreshToken,
  type RenewResult,
  type RotateResult,
  type SessionsStore,
  type SessionWithUser,
} from '../sessions-port.ts';
import { refreshTokenFromRow, sessionFromRow, sessionParams, userFromRow } from './rows.ts';
import type { RefreshTokenRow, SessionRow, UserRow } from './rows.ts';
import { prepareSessionStatements, STATUS_CONDITION } from './sessions-sql.ts';
import { isUniqueViolation, type SqliteContext } from './transactions.ts';

/** Ended sessions are kept this long after their absolute expiry, then purged (as Redis's key TTL). */
export const SESSION_RETENTION_MS = 24 * 3600 * 1000;

export class SqliteSessions implements SessionsStore {
  private readonly ctx: SqliteContext;
  private readonly stmt: ReturnType<typeof prepareSessionStatements>;
  private readonly listStatements = new Map<string, StatementSync>();

  constructor(ctx: SqliteContext) {
    this.ctx = ctx;
    this.stmt = prepareSessionStatements(ctx.db);
  }

  // ---- sessions -------------------------------------------------------------------------------

  createSession(session: Session, now: number, limit?: CreateLimit): Promise<CreateSessionResult> {
    // Closes the race of simultaneous logins of one user: each would count the same N-1 valid
    // sessions and insert (the limit is exceeded), or evict the same oldest one. Under the write
    // lock the count, the evictions and the insert are one step.
    return this.ctx.write((): CreateSessionResult => {
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
      const active = this.ctx.all<SessionRow>(this.stmt.validOfUserAndKind, {
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
    return this.ctx.run(() => this.sessionByHandle(handle));
  }

  getSessionBySecretHash(secretHash: string): Promise<Session | null> {
    return this.ctx.run(() => {
      const row = this.ctx.one<SessionRow>(this.stmt.sessionBySecretHash, { secret_hash: secretHash });
      return row ? sessionFromRow(row) : null;
    });
  }

  getSessionWithUserBySecretHash(secretHash: string): Promise<SessionWithUser | null> {
    return this.ctx.run(() => {
      const row = this.ctx.one<SessionRow>(this.stmt.sessionBySecretHash, { secret_hash: secretHash });
      if (!row) return null;
      const session = sessionFromRow(row);
      const user = session.userId === null ? undefined : this.ctx.one<UserRow>(this.stmt.userById, { tenant_id: session.tenantId, id: session.userId });
      return { session, user: user ? userFromRow(user) : null };
    });
  }

  touchSession(handle: string, now: number, idleExpiresAt: number | null): Promise<Session | null> {
    // Closes the race of a touch with a revoke or an expiry: the validity check and the update
    // are one statement under the write lock, so a revoked or expired session is never revived.
    return this.ctx.write(() => {
      const row = this.ctx.one<SessionRow>(this.stmt.touch, { handle, now, idle: idleExpiresAt });
      return row ? sessionFromRow(row) : null;
    });
  }

  updateSessionData(handle: string, patch: Record<string, unknown>, now: number): Promise<Session | null> {
    // Closes the lost update of two concurrent patches: each reads `data` and writes it back
    // merged; without the write lock the later write would drop the earlier patch's keys.
    return this.ctx.write(() => {
      const current = this.sessionByHandle(handle);
      if (current === null || !isValid(current, now)) return null;
      return this.mergeData(current, patch);
    });
  }

  /** Inside the caller's write: `patch` merged into the session's data. */
  private mergeData(current: Session, patch: Record<string, unknown>): Session | null {
    const data: Record<string, unknown> = { ...current.data };
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete data[key];
      else data[key] = value;
    }
    const row = this.ctx.one<SessionRow>(this.stmt.setData, { handle: current.handle, data: JSON.stringify(data) });
    return row ? sessionFromRow(row) : null;
  }

  revokeSession(handle: string, reason: RevokeReason, now: number): Promise<Session[]> {
    // Closes the race of a revoke with the creation of a child (a redirect started from the app
    // session being logged out): createSession checks the parent under the same lock, so no
    // valid child can appear below a revoked parent.
    return this.ctx.write(() => this.revokeSubtree(handle, reason, now));
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
    return this.ctx.write(() => {
      const keep = new Set<string>();
      if (opts?.exceptHandle !== undefined) {
        // The kept session keeps its subtree and its ancestors: revoking an ancestor would end
        // the kept session too (ending a session ends its subtree).
        for (const r of this.ctx.all<{ handle: string }>(this.stmt.subtreeHandles, { handle: opts.exceptHandle })) {
          keep.add(r.handle);
        }
        for (const r of this.ctx.all<{ handle: string }>(this.stmt.ancestorHandles, { handle: opts.exceptHandle })) {
          keep.add(r.handle);
        }
      }
      const changed: Session[] = [];
      for (const r of this.ctx.all<{ handle: string }>(this.stmt.userTreeHandles, { tenant_id: tenantId, user_id: userId })) {
        if (keep.has(r.handle)) continue;
        const row = this.ctx.one<SessionRow>(this.stmt.revokeIfValid, { handle: r.handle, now, reason });
        if (row) changed.push(sessionFromRow(row));
      }
      return changed;
    });
  }

  revokeTenantSessions(tenantId: string, reason: RevokeReason, now: number): Promise<Session[]> {
    // One UPDATE under the write lock: a session created in the tenant concurrently is either
    // revoked here or created after the revocation, never missed half-way.
    return this.ctx.write(() =>
      this.ctx.all<SessionRow>(this.stmt.revokeTenant, { tenant_id: tenantId, now, reason })
        .map(sessionFromRow)
        .sort(byCreatedThenHandle),
    );
  }

  listSessions(query: ListSessionsQuery): Promise<Page<Session>> {
    return this.ctx.run(() => {
      checkLimit(query.limit, SESSION_LIST_MAX);
      const after = decodeCursor(query.cursor);
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
      if (after !== null) {
        where.push('(created_at > $c_created OR (created_at = $c_created AND handle > $c_handle))');
        params.c_created = after.createdAt;
        params.c_handle = after.key;
      }
      const sql = `SELECT * FROM sessions WHERE ${where.join(' AND ')} ORDER BY created_at, handle LIMIT $limit`;
      let stmt = this.listStatements.get(sql);
      if (stmt === undefined) {
        stmt = this.ctx.db.prepare(sql);
        this.listStatements.set(sql, stmt);
      }
      const rows = this.ctx.all<SessionRow>(stmt, params).map(sessionFromRow);
      return pageOf(rows, query.limit, (s) => ({ createdAt: s.createdAt, key: s.handle }));
    });
  }

  consumeSession(secretHash: string, now: number): Promise<Session | null> {
    // Closes the double use of a single-use session (two tabs returning from the bank with one
    // redirect cookie, a replayed OIDC callback): the check "still active" and the revocation
    // are one UPDATE under the write lock, so exactly one caller gets the row back.
    return this.ctx.write(() => this.consumeIn(secretHash, now));
  }

  /** Inside the caller's write: consumeSession's step. */
  private consumeIn(secretHash: string, now: number): Session | null {
    const row = this.ctx.one<SessionRow>(this.stmt.consume, { secret_hash: secretHash, now });
    if (!row) return null;
    // Ending a session ends its subtree; single-use kinds normally have none.
    for (const child of this.ctx.all<{ handle: string }>(this.stmt.subtreeHandles, { handle: row.handle })) {
      if (child.handle !== row.handle) {
        this.ctx.one<SessionRow>(this.stmt.revokeIfValid, { handle: child.handle, now, reason: 'parent_revoked' });
      }
    }
    return sessionFromRow(row);
  }

  /** The look-up, then the redeem (sessions-port.ts lookUpAndRedeemInSteps). */
  lookUpAndRedeem(secretHash: string, plan: RedeemPlan, now: number): Promise<LookUpAndRedeemResult> {
    return lookUpAndRedeemInSteps(this, secretHash, plan, now);
  }

  redeemSession(secretHash: string, target: RedeemTarget, now: number): Promise<RedeemResult> {
    checkRedeemTarget(target);
    // Closes the double exchange of one single-use secret (two clients racing with one SSO
    // token) and its race with an end of the target: under the write lock the consumption, the
    // target's check and every change to it are one step; a refresh token that exists already
    // rolls the whole step back.
    return this.ctx.write((): RedeemResult => {
      const consumed = this.consumeIn(secretHash, now);
      if (consumed === null) return { outcome: 'not_consumed' };
      const current = this.sessionByHandle(target.handle);
      if (current === null || !redeemableInto(current, consumed, target.expectData, now)) return { outcome: 'target_unusable', consumed };
      this.mergeData(current, target.patch);
      const idle = target.idleExpiresAt;
      const touched = this.ctx.one<SessionRow>(this.stmt.touch, { handle: current.handle, now, idle });
      if (!touched) throw new Error(`redeemSession: ${current.handle} was valid and could not be touched`);
      if (target.refreshToken !== null) this.insertRefreshToken(target.refreshToken);
      return { outcome: 'redeemed', session: sessionFromRow(touched) };
    });
  }

  renewAfterExpiry(predecessorHandle: string, successor: Session, now: number, limit?: CreateLimit): Promise<RenewResult> {
    // Closes the race of several redirects returning after their starting session expired: each
    // would create its own new session. Under the write lock the first links its successor to
    // the predecessor; every later caller finds the link and gets that same successor.
    return this.ctx.write((): RenewResult => {
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
    return this.ctx.write(() => {
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
    return this.ctx.write((): RotateResult => {
      const tokenRow = this.ctx.one<RefreshTokenRow>(this.stmt.refreshTokenByHash, { token_hash: presentedHash });
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
        const touched = this.ctx.one<SessionRow>(this.stmt.touch, { handle: session.handle, now, idle: idleExpiresAt });
        return { outcome: 'rotated', session: touched ? sessionFromRow(touched) : session, successor };
      }
      if (refreshGraceApplies(token.rotatedAt, this.successorRotated(token), now, graceMs)) return { outcome: 'grace', session, token };

      // A rotated token after the grace window: someone kept a copy (RFC 9700 4.14.2).
      const revoked = this.revokeSubtree(session.handle, 'refresh_reuse', now);
      return { outcome: 'reused', session: revoked[0] ?? session, revoked };
    });
  }

  private successorRotated(token: RefreshToken): boolean {
    if (token.successorHash === null) return false;
    const row = this.ctx.one<RefreshTokenRow>(this.stmt.refreshTokenByHash, { token_hash: token.successorHash });
    return row !== undefined && refreshTokenFromRow(row).rotatedAt !== null;
  }

  getRefreshToken(tokenHash: string): Promise<RefreshToken | null> {
    return this.ctx.run(() => {
      const row = this.ctx.one<RefreshTokenRow>(this.stmt.refreshTokenByHash, { token_hash: tokenHash });
      return row ? refreshTokenFromRow(row) : null;
    });
  }

  // ---- housekeeping ---------------------------------------------------------------------------

  sweepExpired(now: number, max: number): Promise<Session[]> {
    // Closes the race of several sweepers (threads or processes) picking the same expired
    // session and each emitting session.expired: selecting and marking are one UPDATE under
    // the write lock, so a session leaves the `active` set in exactly one call.
    return this.ctx.write(() => {
      // Housekeeping rides along: closed counter windows, ends every subscriber has read.
      this.ctx.housekeeping(now);
      const cutoff = now - SESSION_RETENTION_MS;
      this.stmt.purgeEndedTokens.run({ cutoff, max: 500 });
      this.stmt.purgeEndedSessions.run({ cutoff, max: 500 });
      if (max < 1) return [];
      return this.ctx.all<SessionRow>(this.stmt.sweep, { now, max: Math.floor(max) })
        .map(sessionFromRow)
        .sort((a, b) => (a.endedAt ?? 0) - (b.endedAt ?? 0) || byCreatedThenHandle(a, b));
    });
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
      return sessionFromRow(this.ctx.one<SessionRow>(this.stmt.insertSession, sessionParams(session))!);
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
    for (const r of this.ctx.all<{ handle: string }>(this.stmt.subtreeHandles, { handle: rootHandle })) {
      const row = this.ctx.one<SessionRow>(this.stmt.revokeIfValid, {
        handle: r.handle,
        now,
        reason: r.handle === rootHandle ? reason : 'parent_revoked',
      });
      if (row) changed.push(sessionFromRow(row));
    }
    return changed;
  }

  private sessionByHandle(handle: string): Session | null {
    const row = this.ctx.one<SessionRow>(this.stmt.sessionByHandle, { handle });
    return row ? sessionFromRow(row) : null;
  }
}

function byCreatedThenHandle(a: Session, b: Session): number {
  return a.createdAt - b.createdAt || (a.handle < b.handle ? -1 : a.handle > b.handle ? 1 : 0);
}
