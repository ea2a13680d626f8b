// Sessions and refresh tokens on PostgreSQL (sessions-port.ts): one aggregate, because rotation
// revokes a subtree. Which lock closes which race is said at each operation and in
// docs/architecture.md (section 3, PostgreSQL). This file holds the session operations; the
// in-transaction steps they share are in session-tree.ts, the refresh tokens in
// refresh-tokens.ts, the sweep in sweep.ts.

import { isValid, redeemableInto, type RevokeReason, type Session, type SessionStatus } from '../../domain/session.ts';
import { checkLimit, decodeCursor, pageOf, type Page } from '../page.ts';
import {
  SESSION_LIST_MAX,
  checkRedeemTarget,
  lookUpAndRedeemInSteps,
  type CreateLimit,
  type CreateSessionResult,
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
import type { PgDriver, Sql } from './driver.ts';
import { lockOwner, lockTenantExclusive, lockTenantShared } from './locks.ts';
import { addRefreshToken, getRefreshToken, rotateRefreshToken } from './refresh-tokens.ts';
import { applyLimit, assertValidParent, byCreatedThenHandle, ENDABLE, insertSession, revokeSubtree, sessionByHandle, VALID } from './session-tree.ts';
import { sweepExpired } from './sweep.ts';
import { sessionFromRow, userFromRow, type SessionRow, type UserRow } from './rows.ts';

export { SESSION_RETENTION_MS } from './sweep.ts';

/** Effective status at `now` (parameter `$n`): an `active` row past its expiry reads as `expired`. */
function statusCondition(status: SessionStatus, n: number): string {
  switch (status) {
    case 'active':
      return `(status = 'active' AND expires_at > $${n})`;
    case 'expired':
      return `(status = 'expired' OR (status = 'active' AND expires_at <= $${n}))`;
    case 'revoked':
      return "status = 'revoked'";
  }
}

export class PostgresSessions implements SessionsStore {
  private readonly driver: PgDriver;

  constructor(driver: PgDriver) {
    this.driver = driver;
  }

  // ---- sessions -------------------------------------------------------------------------------

  createSession(session: Session, now: number, limit?: CreateLimit): Promise<CreateSessionResult> {
    // Race: simultaneous logins of one user each count the same N-1 valid sessions and insert
    // (limit exceeded), or evict the same oldest. Closed by the owner's advisory lock: the count,
    // the evictions and the insert are one step per user. The parent is read FOR SHARE, so a
    // revocation of the parent (FOR UPDATE by its UPDATE) either commits first — and the parent
    // reads as revoked here — or waits until this child exists and is revoked with it.
    return this.driver.transaction(async (tx): Promise<CreateSessionResult> => {
      await lockTenantShared(tx, session.tenantId);
      await lockOwner(tx, session.tenantId, session.userId, session.handle);
      if (session.parentHandle !== null) await assertValidParent(tx, session, now);
      const limited = await applyLimit(tx, session, now, limit);
      if (!limited.ok) return { ok: false, reason: 'limit_reached', active: limited.active };
      return { ok: true, session: await insertSession(tx, session), evicted: limited.evicted };
    });
  }

  async getSessionByHandle(handle: string): Promise<Session | null> {
    const [row] = await this.driver.query<SessionRow>('SELECT * FROM sessions WHERE handle = $1', [handle]);
    return row ? sessionFromRow(row) : null;
  }

  async getSessionBySecretHash(secretHash: string): Promise<Session | null> {
    const [row] = await this.driver.query<SessionRow>('SELECT * FROM sessions WHERE secret_hash = $1', [secretHash]);
    return row ? sessionFromRow(row) : null;
  }

  async getSessionWithUserBySecretHash(secretHash: string): Promise<SessionWithUser | null> {
    const [row] = await this.driver.query<SessionRow>('SELECT * FROM sessions WHERE secret_hash = $1', [secretHash]);
    if (!row) return null;
    const session = sessionFromRow(row);
    if (session.userId === null) return { session, user: null };
    const [user] = await this.driver.query<UserRow>('SELECT * FROM users WHERE tenant_id = $1 AND id = $2', [session.tenantId, session.userId]);
    return { session, user: user ? userFromRow(user) : null };
  }

  async touchSession(handle: string, now: number, idleExpiresAt: number | null): Promise<Session | null> {
    // Race: a touch with a revoke or an expiry. One UPDATE whose WHERE demands validity: a
    // concurrent revoke holds the row lock; after it commits, READ COMMITTED re-checks the WHERE
    // on the revoked row and nothing is revived. (least() ignores NULL: a null idle expiry keeps
    // expires_at at the absolute expiry.)
    const [row] = await this.driver.query<SessionRow>(
      `UPDATE sessions SET
         last_seen_at = $2,
         idle_expires_at = CASE WHEN $3::bigint IS NULL THEN NULL ELSE least($3::bigint, absolute_expires_at) END,
         expires_at = least($3::bigint, absolute_expires_at)
       WHERE handle = $1 AND ${VALID}
       RETURNING *`,
      [handle, now, idleExpiresAt],
    );
    return row ? sessionFromRow(row) : null;
  }

  updateSessionData(handle: string, patch: Record<string, unknown>, now: number): Promise<Session | null> {
    // Race: two patches each read `data` and write it back merged (lost update). The row is read
    // FOR UPDATE, so the second patch reads the first one's result.
    return this.driver.transaction(async (tx) => {
      const [row] = await tx.query<SessionRow>('SELECT * FROM sessions WHERE handle = $1 FOR UPDATE', [handle]);
      if (!row) return null;
      const current = sessionFromRow(row);
      if (!isValid(current, now)) return null;
      const data: Record<string, unknown> = { ...current.data };
      for (const [key, value] of Object.entries(patch)) {
        if (value === null) delete data[key];
        else data[key] = value;
      }
      const [updated] = await tx.query<SessionRow>('UPDATE sessions SET data = $2 WHERE handle = $1 RETURNING *', [
        handle,
        JSON.stringify(data),
      ]);
      return updated ? sessionFromRow(updated) : null;
    });
  }

  revokeSession(handle: string, reason: RevokeReason, now: number): Promise<Session[]> {
    // Race: a revoke with the creation of a child below the subtree (a redirect started from the
    // app session being logged out). Both take the owner's lock, so the subtree read here is
    // complete and no valid child appears below a revoked parent.
    return this.driver.transaction(async (tx) => {
      const [owner] = await tx.query<{ tenant_id: string; user_id: string | null }>(
        'SELECT tenant_id, user_id FROM sessions WHERE handle = $1',
        [handle],
      );
      if (!owner) return [];
      await lockTenantShared(tx, owner.tenant_id);
      await lockOwner(tx, owner.tenant_id, owner.user_id, handle);
      return revokeSubtree(tx, handle, reason, now);
    });
  }

  revokeUserSessions(
    tenantId: string,
    userId: string,
    reason: RevokeReason,
    now: number,
    opts?: { exceptHandle?: string },
  ): Promise<Session[]> {
    // Race: "log out everywhere" with a login of the same user. The owner's lock orders them: the
    // new session is created before (and revoked here) or after (and stays).
    return this.driver.transaction(async (tx) => {
      await lockTenantShared(tx, tenantId);
      await lockOwner(tx, tenantId, userId, '');
      let keep: string[] = [];
      if (opts?.exceptHandle !== undefined) {
        // The kept session keeps its subtree and its ancestors (revoking an ancestor would end it).
        keep = (
          await tx.query<{ handle: string }>(
            `WITH RECURSIVE down (handle) AS (
               SELECT handle FROM sessions WHERE handle = $1
               UNION SELECT s.handle FROM sessions s JOIN down ON s.parent_handle = down.handle
             ), up (handle, parent_handle) AS (
               SELECT handle, parent_handle FROM sessions WHERE handle = $1
               UNION SELECT s.handle, s.parent_handle FROM sessions s JOIN up ON s.handle = up.parent_handle
             )
             SELECT handle FROM down UNION SELECT handle FROM up`,
            [opts.exceptHandle],
          )
        ).map((r) => r.handle);
      }
      const rows = await tx.query<SessionRow>(
        `WITH RECURSIVE tree (handle) AS (
           SELECT handle FROM sessions WHERE tenant_id = $1 AND user_id = $3
           UNION SELECT s.handle FROM sessions s JOIN tree ON s.parent_handle = tree.handle
         )
         UPDATE sessions s SET status = 'revoked', ended_at = $2, revoke_reason = $4
         FROM tree
         WHERE s.handle = tree.handle AND NOT (s.handle = ANY($5::text[])) AND s.status <> 'revoked' AND s.absolute_expires_at > $2
         RETURNING s.*`,
        [tenantId, now, userId, reason, keep],
      );
      return rows.map(sessionFromRow).sort(byCreatedThenHandle);
    });
  }

  revokeTenantSessions(tenantId: string, reason: RevokeReason, now: number): Promise<Session[]> {
    // Race: the tenant-wide revocation with logins in the tenant. It takes the tenant lock
    // exclusively (every session write holds it shared), so a concurrent login is either committed
    // before the UPDATE's snapshot — and revoked — or waits and is created after.
    return this.driver.transaction(async (tx) => {
      await lockTenantExclusive(tx, tenantId);
      const rows = await tx.query<SessionRow>(
        `UPDATE sessions SET status = 'revoked', ended_at = $2, revoke_reason = $3
         WHERE tenant_id = $1 AND ${ENDABLE} RETURNING *`,
        [tenantId, now, reason],
      );
      return rows.map(sessionFromRow).sort(byCreatedThenHandle);
    });
  }

  async listSessions(query: ListSessionsQuery): Promise<Page<Session>> {
    checkLimit(query.limit, SESSION_LIST_MAX);
    const after = decodeCursor(query.cursor);
    const params: unknown[] = [query.tenantId];
    const where = ['tenant_id = $1'];
    const p = (v: unknown): string => {
      params.push(v);
      return `$${params.length}`;
    };
    if (query.userId !== undefined) where.push(`user_id = ${p(query.userId)}`);
    if (query.kind !== undefined) where.push(`kind = ${p(query.kind)}`);
    if (query.status !== undefined) {
      where.push(query.status === 'revoked' ? statusCondition('revoked', 0) : statusCondition(query.status, params.length + 1));
      if (query.status !== 'revoked') params.push(query.now);
    }
    if (after !== null) {
      const created = p(after.createdAt);
      const handle = p(after.key);
      where.push(`(created_at > ${created} OR (created_at = ${created} AND handle > ${handle}))`);
    }
    const limit = p(query.limit + 1);
    const rows = await this.driver.query<SessionRow>(
      `SELECT * FROM sessions WHERE ${where.join(' AND ')} ORDER BY created_at, handle LIMIT ${limit}`,
      params,
    );
    return pageOf(rows.map(sessionFromRow), query.limit, (s) => ({ createdAt: s.createdAt, key: s.handle }));
  }

  consumeSession(secretHash: string, now: number): Promise<Session | null> {
    // Race: the double use of a single-use session (two tabs back from the bank with one redirect
    // cookie, a replayed callback). "Still valid" and the revocation are one UPDATE: the second
    // caller waits for the first's row lock, then READ COMMITTED re-checks the WHERE on the
    // revoked row and gets nothing. Its subtree ends with it under the owner's lock.
    return this.driver.transaction((tx) => consumeIn(tx, secretHash, now));
  }

  /** The look-up, then the redeem (sessions-port.ts lookUpAndRedeemInSteps). */
  lookUpAndRedeem(secretHash: string, plan: RedeemPlan, now: number): Promise<LookUpAndRedeemResult> {
    return lookUpAndRedeemInSteps(this, secretHash, plan, now);
  }

  redeemSession(secretHash: string, target: RedeemTarget, now: number): Promise<RedeemResult> {
    checkRedeemTarget(target);
    // Race: two clients exchanging one single-use secret (an SSO token) at once, and the exchange
    // with an end of the target. The consumption takes the owner's lock (consumeIn) and the
    // target — the same owner's — is read FOR UPDATE: the check and every change to it are one
    // transaction after the one consumption; a refresh token that exists already rolls it all back.
    return this.driver.transaction(async (tx): Promise<RedeemResult> => {
      const consumed = await consumeIn(tx, secretHash, now);
      if (consumed === null) return { outcome: 'not_consumed' };
      const current = await sessionByHandle(tx, target.handle, true);
      if (current === null || !redeemableInto(current, consumed, target.expectData, now)) return { outcome: 'target_unusable', consumed };
      const data: Record<string, unknown> = { ...current.data };
      for (const [key, value] of Object.entries(target.patch)) {
        if (value === null) delete data[key];
        else data[key] = value;
      }
      // The data and the touch (as touchSession's UPDATE) in one statement.
      const [row] = await tx.query<SessionRow>(
        `UPDATE sessions SET
           data = $3,
           last_seen_at = $2,
           idle_expires_at = CASE WHEN $4::bigint IS NULL THEN NULL ELSE least($4::bigint, absolute_expires_at) END,
           expires_at = least($4::bigint, absolute_expires_at)
         WHERE handle = $1
         RETURNING *`,
        [current.handle, now, JSON.stringify(data), target.idleExpiresAt],
      );
      if (!row) throw new Error(`redeemSession: ${current.handle} was read and could not be updated`);
      if (target.refreshToken !== null) await addRefreshToken(tx, target.refreshToken);
      return { outcome: 'redeemed', session: sessionFromRow(row) };
    });
  }

  renewAfterExpiry(predecessorHandle: string, successor: Session, now: number, limit?: CreateLimit): Promise<RenewResult> {
    // Race: several redirects return after their starting session expired and each would create
    // a successor. The predecessor is read FOR UPDATE under the owner's lock: the first links its
    // successor, every later caller finds the link and gets that same successor.
    return this.driver.transaction(async (tx): Promise<RenewResult> => {
      const [owner] = await tx.query<{ tenant_id: string; user_id: string | null }>(
        'SELECT tenant_id, user_id FROM sessions WHERE handle = $1',
        [predecessorHandle],
      );
      if (!owner) return { outcome: 'missing' };
      await lockTenantShared(tx, owner.tenant_id);
      await lockOwner(tx, owner.tenant_id, owner.user_id, predecessorHandle);
      const predecessor = await sessionByHandle(tx, predecessorHandle, true);
      if (predecessor === null) return { outcome: 'missing' };
      if (predecessor.status === 'revoked') return { outcome: 'revoked', session: predecessor };
      if (predecessor.successorHandle !== null) {
        const existing = await sessionByHandle(tx, predecessor.successorHandle);
        if (existing === null) throw new Error(`successor ${predecessor.successorHandle} of ${predecessorHandle} is missing`);
        return { outcome: 'renewed', session: existing, created: false, evicted: [] };
      }
      if (isValid(predecessor, now)) return { outcome: 'still_valid', session: predecessor };
      if (successor.parentHandle !== null) await assertValidParent(tx, successor, now);
      // The successor is a new session of the user: the same limit as a login, under the same lock.
      const limited = await applyLimit(tx, successor, now, limit);
      if (!limited.ok) return { outcome: 'limit_reached', active: limited.active };
      const stored = await insertSession(tx, successor);
      await tx.execute('UPDATE sessions SET successor_handle = $2 WHERE handle = $1', [predecessorHandle, stored.handle]);
      return { outcome: 'renewed', session: stored, created: true, evicted: limited.evicted };
    });
  }

  // ---- refresh tokens (refresh-tokens.ts) ----------------------------------------------------

  addRefreshToken(token: RefreshToken): Promise<void> {
    return addRefreshToken(this.driver, token);
  }

  rotateRefreshToken(presentedHash: string, successorHash: string, now: number, graceMs: number, idleExpiresAt: number | null): Promise<RotateResult> {
    return rotateRefreshToken(this.driver, presentedHash, successorHash, now, graceMs, idleExpiresAt);
  }

  getRefreshToken(tokenHash: string): Promise<RefreshToken | null> {
    return getRefreshToken(this.driver, tokenHash);
  }

  // ---- housekeeping (sweep.ts) ----------------------------------------------------------------

  sweepExpired(now: number, max: number): Promise<Session[]> {
    return sweepExpired(this.driver, now, max);
  }
}

/**
 * consumeSession's step inside the caller's transaction: "still valid" and the revocation are one
 * UPDATE under the owner's lock; the subtree ends with it.
 */
async function consumeIn(tx: Sql, secretHash: string, now: number): Promise<Session | null> {
  const [owner] = await tx.query<{ tenant_id: string; user_id: string | null; handle: string }>(
    'SELECT tenant_id, user_id, handle FROM sessions WHERE secret_hash = $1',
    [secretHash],
  );
  if (!owner) return null;
  await lockTenantShared(tx, owner.tenant_id);
  await lockOwner(tx, owner.tenant_id, owner.user_id, owner.handle);
  const [row] = await tx.query<SessionRow>(
    `UPDATE sessions SET status = 'revoked', ended_at = $2, revoke_reason = 'consumed'
     WHERE secret_hash = $1 AND ${VALID} RETURNING *`,
    [secretHash, now],
  );
  if (!row) return null;
  await revokeSubtree(tx, row.handle, 'parent_revoked', now);
  return sessionFromRow(row);
}
