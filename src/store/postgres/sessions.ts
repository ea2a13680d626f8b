// Sessions and refresh tokens on PostgreSQL (sessions-port.ts): one aggregate, because rotation
// revokes a subtree. Which lock closes which race is said at each operation and in
// docs/architecture.md (section 3, PostgreSQL).

import { Conflict, NotFound } from '../../domain/errors.ts';
import { isValid, sessionsToEvict } from '../../domain/session.ts';
import type { RevokeReason, Session, SessionStatus } from '../../domain/session.ts';
import { checkLimit, decodeCursor, pageOf, type Page } from '../page.ts';
import {
  SESSION_LIST_MAX,
  type CreateLimit,
  type CreateSessionResult,
  type ListSessionsQuery,
  type RefreshToken,
  type RenewResult,
  type RotateResult,
  type SessionsStore,
} from '../sessions-port.ts';
import type { PgDriver, Sql } from './driver.ts';
import { lockOwner, lockTenantExclusive, lockTenantShared } from './locks.ts';
import {
  FOREIGN_KEY_VIOLATION,
  INSERT_SESSION,
  refreshTokenFromRow,
  sessionFromRow,
  sessionValues,
  sqlState,
  UNIQUE_VIOLATION,
} from './rows.ts';
import type { RefreshTokenRow, SessionRow } from './rows.ts';

/** Ended sessions are kept this long after their absolute expiry, then purged (as Redis's key TTL). */
export const SESSION_RETENTION_MS = 24 * 3600 * 1000;

const VALID = "status = 'active' AND expires_at > $2";
/**
 * What a revocation ends: valid, or idle-expired within the absolute lifetime (still renewable
 * after a consent return, docs/api.md §Consent redirects, "The session after a return") — a
 * revocation makes either final, so no renewal brings it back.
 */
const ENDABLE = "status <> 'revoked' AND absolute_expires_at > $2";

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
    return this.driver.transaction(async (tx) => {
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

  // ---- refresh tokens -------------------------------------------------------------------------

  async addRefreshToken(token: RefreshToken): Promise<void> {
    try {
      await this.driver.execute(
        `INSERT INTO refresh_tokens (token_hash, session_handle, tenant_id, user_id, created_at, rotated_at, successor_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [token.tokenHash, token.sessionHandle, token.tenantId, token.userId, token.createdAt, token.rotatedAt, token.successorHash],
      );
    } catch (err) {
      // The foreign key: no such session.
      if (sqlState(err) === FOREIGN_KEY_VIOLATION) {
        throw new NotFound('session_not_found', `No session ${token.sessionHandle} for this refresh token.`);
      }
      if (sqlState(err) === UNIQUE_VIOLATION) throw new Conflict('refresh_token_exists', 'This refresh token is already stored.');
      throw err;
    }
  }

  rotateRefreshToken(
    presentedHash: string,
    successorHash: string,
    now: number,
    graceMs: number,
    idleExpiresAt: number | null,
  ): Promise<RotateResult> {
    // Race: several tabs refresh with the same token at once. The token is read FOR UPDATE under
    // the owner's lock: exactly one finds it current and rotates it; the others find it rotated
    // a moment ago (within the grace window) and get the same successor. Reuse after the grace
    // window revokes the subtree under the same lock.
    return this.driver.transaction(async (tx): Promise<RotateResult> => {
      const [first] = await tx.query<RefreshTokenRow>('SELECT * FROM refresh_tokens WHERE token_hash = $1', [presentedHash]);
      if (!first) return { outcome: 'unknown' };
      const [owner] = await tx.query<{ tenant_id: string; user_id: string | null }>(
        'SELECT tenant_id, user_id FROM sessions WHERE handle = $1',
        [first.session_handle],
      );
      if (!owner) return { outcome: 'unknown' };
      await lockTenantShared(tx, owner.tenant_id);
      await lockOwner(tx, owner.tenant_id, owner.user_id, first.session_handle);
      const [tokenRow] = await tx.query<RefreshTokenRow>('SELECT * FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE', [
        presentedHash,
      ]);
      if (!tokenRow) return { outcome: 'unknown' };
      const token = refreshTokenFromRow(tokenRow);
      const session = await sessionByHandle(tx, token.sessionHandle, true);
      if (session === null) return { outcome: 'unknown' };
      if (!isValid(session, now)) return { outcome: 'inactive', session };

      if (token.rotatedAt === null) {
        await tx.execute('UPDATE refresh_tokens SET rotated_at = $2, successor_hash = $3 WHERE token_hash = $1 AND rotated_at IS NULL', [
          presentedHash,
          now,
          successorHash,
        ]);
        const successor: RefreshToken = {
          tokenHash: successorHash,
          sessionHandle: token.sessionHandle,
          tenantId: token.tenantId,
          userId: token.userId,
          createdAt: now,
          rotatedAt: null,
          successorHash: null,
        };
        try {
          await tx.execute(
            `INSERT INTO refresh_tokens (token_hash, session_handle, tenant_id, user_id, created_at, rotated_at, successor_hash)
             VALUES ($1, $2, $3, $4, $5, NULL, NULL)`,
            [successor.tokenHash, successor.sessionHandle, successor.tenantId, successor.userId, successor.createdAt],
          );
        } catch (err) {
          if (sqlState(err) === UNIQUE_VIOLATION) throw new Conflict('refresh_token_exists', 'This refresh token is already stored.');
          throw err;
        }
        const [touched] = await tx.query<SessionRow>(
          `UPDATE sessions SET
             last_seen_at = $2,
             idle_expires_at = CASE WHEN $3::bigint IS NULL THEN NULL ELSE least($3::bigint, absolute_expires_at) END,
             expires_at = least($3::bigint, absolute_expires_at)
           WHERE handle = $1 AND ${VALID}
           RETURNING *`,
          [session.handle, now, idleExpiresAt],
        );
        return { outcome: 'rotated', session: touched ? sessionFromRow(touched) : session, successor };
      }
      if (now - token.rotatedAt <= graceMs) return { outcome: 'grace', session, token };

      // A rotated token after the grace window: someone kept a copy (RFC 9700 4.14.2).
      const revoked = await revokeSubtree(tx, session.handle, 'refresh_reuse', now);
      return { outcome: 'reused', session: revoked[0] ?? session, revoked };
    });
  }

  async getRefreshToken(tokenHash: string): Promise<RefreshToken | null> {
    const [row] = await this.driver.query<RefreshTokenRow>('SELECT * FROM refresh_tokens WHERE token_hash = $1', [tokenHash]);
    return row ? refreshTokenFromRow(row) : null;
  }

  // ---- housekeeping ---------------------------------------------------------------------------

  async sweepExpired(now: number, max: number): Promise<Session[]> {
    // Race: several sweepers (processes) pick the same expired session and each emits
    // session.expired. One UPDATE over a sub-select FOR UPDATE SKIP LOCKED, re-checking
    // `status = 'active'`: a row is changed by exactly one sweeper, the others skip it.
    await this.driver.execute('DELETE FROM counters WHERE reset_at <= $1', [now]);
    const cutoff = now - SESSION_RETENTION_MS;
    // Retention, as in Redis (absolute expiry + 24 h): ended sessions without remaining children,
    // a batch at a time; parents go in a later sweep, after their children.
    await this.driver.execute(
      `WITH picked AS MATERIALIZED (
         SELECT s.handle FROM sessions s
         WHERE s.status <> 'active' AND s.absolute_expires_at < $1
           AND NOT EXISTS (SELECT 1 FROM sessions c WHERE c.parent_handle = s.handle)
         LIMIT 500
       )
       DELETE FROM refresh_tokens t USING picked WHERE t.session_handle = picked.handle`,
      [cutoff],
    );
    await this.driver.execute(
      `WITH picked AS MATERIALIZED (
         SELECT s.handle FROM sessions s
         WHERE s.status <> 'active' AND s.absolute_expires_at < $1
           AND NOT EXISTS (SELECT 1 FROM sessions c WHERE c.parent_handle = s.handle)
           AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_handle = s.handle)
         LIMIT 500
         FOR UPDATE SKIP LOCKED
       )
       DELETE FROM sessions s USING picked WHERE s.handle = picked.handle`,
      [cutoff],
    );
    if (max < 1) return [];
    // The pick is a MATERIALIZED CTE: evaluated once, so LIMIT holds (a sub-select under IN may
    // be run again by the planner and pick further rows).
    const rows = await this.driver.query<SessionRow>(
      `WITH picked AS MATERIALIZED (
         SELECT handle FROM sessions WHERE status = 'active' AND expires_at <= $1
         ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
       )
       UPDATE sessions s SET status = 'expired', ended_at = s.expires_at
       FROM picked WHERE s.handle = picked.handle AND s.status = 'active' AND s.expires_at <= $1
       RETURNING s.*`,
      [now, Math.floor(max)],
    );
    return rows.map(sessionFromRow).sort((a, b) => (a.endedAt ?? 0) - (b.endedAt ?? 0) || byCreatedThenHandle(a, b));
  }
}

// ---- inside a transaction -----------------------------------------------------------------------

// ---- inside a transaction -----------------------------------------------------------------------

async function sessionByHandle(tx: Sql, handle: string, forUpdate = false): Promise<Session | null> {
  const [row] = await tx.query<SessionRow>(`SELECT * FROM sessions WHERE handle = $1${forUpdate ? ' FOR UPDATE' : ''}`, [handle]);
  return row ? sessionFromRow(row) : null;
}

/**
 * The per-user limit for a new session, inside the caller's transaction and under its owner's
 * lock: refuse, or evict the oldest valid sessions of the kind (with their subtrees).
 */
async function applyLimit(
  tx: Sql,
  session: Session,
  now: number,
  limit: CreateLimit | undefined,
): Promise<{ ok: true; evicted: Session[] } | { ok: false; active: number }> {
  const evicted: Session[] = [];
  if (limit === undefined || session.userId === null) return { ok: true, evicted };
  const active = (
    await tx.query<SessionRow>(
      `SELECT * FROM sessions WHERE tenant_id = $1 AND user_id = $3 AND kind = $4 AND ${VALID} ORDER BY created_at, handle`,
      [session.tenantId, now, session.userId, limit.kind],
    )
  ).map(sessionFromRow);
  if (limit.policy === 'reject_new') {
    if (active.length + 1 > limit.max) return { ok: false, active: active.length };
  } else {
    for (const victim of sessionsToEvict(active, limit.max)) {
      evicted.push(...(await revokeSubtree(tx, victim.handle, 'limit_evicted', now)));
    }
  }
  return { ok: true, evicted };
}

/** A parent must be a valid session of the same tenant at `now`; read FOR SHARE (see createSession). */
async function assertValidParent(tx: Sql, child: Session, now: number): Promise<void> {
  const [row] = await tx.query<SessionRow>('SELECT * FROM sessions WHERE handle = $1 FOR SHARE', [child.parentHandle]);
  const parent = row ? sessionFromRow(row) : null;
  if (parent === null || parent.tenantId !== child.tenantId || !isValid(parent, now)) {
    throw new Conflict('invalid_parent', `The parent session ${child.parentHandle} is not a valid session of this tenant.`);
  }
}

async function insertSession(tx: Sql, session: Session): Promise<Session> {
  try {
    const [row] = await tx.query<SessionRow>(INSERT_SESSION, sessionValues(session));
    return sessionFromRow(row!);
  } catch (err) {
    if (sqlState(err) === UNIQUE_VIOLATION) throw new Conflict('session_exists', 'A session with this handle or secret exists.');
    if (sqlState(err) === FOREIGN_KEY_VIOLATION) {
      throw new Conflict('invalid_parent', `The parent session ${session.parentHandle} is not a valid session of this tenant.`);
    }
    throw err;
  }
}

/**
 * Revokes the endable sessions (ENDABLE) of `rootHandle`'s subtree in one statement: the root
 * with `reason`, descendants with `parent_revoked`. Walks through ended sessions too (a valid
 * redirect below an expired app session still ends with its idp). Returns the changed sessions,
 * root first, by depth.
 */
async function revokeSubtree(tx: Sql, rootHandle: string, reason: RevokeReason, now: number): Promise<Session[]> {
  const rows = await tx.query<SessionRow & { depth: number }>(
    `WITH RECURSIVE subtree (handle, depth) AS (
       SELECT handle, 0 FROM sessions WHERE handle = $1
       UNION ALL
       SELECT s.handle, subtree.depth + 1 FROM sessions s JOIN subtree ON s.parent_handle = subtree.handle
     )
     UPDATE sessions s SET status = 'revoked', ended_at = $2,
       revoke_reason = CASE WHEN s.handle = $1 THEN $3 ELSE 'parent_revoked' END
     FROM subtree
     WHERE s.handle = subtree.handle AND s.status <> 'revoked' AND s.absolute_expires_at > $2
     RETURNING s.*, subtree.depth AS depth`,
    [rootHandle, now, reason],
  );
  return rows
    .sort((a, b) => a.depth - b.depth || a.created_at - b.created_at || (a.handle < b.handle ? -1 : a.handle > b.handle ? 1 : 0))
    .map(sessionFromRow);
}

function byCreatedThenHandle(a: Session, b: Session): number {
  return a.createdAt - b.createdAt || (a.handle < b.handle ? -1 : a.handle > b.handle ? 1 : 0);
}
