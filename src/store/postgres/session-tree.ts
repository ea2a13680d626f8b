// The session tree on PostgreSQL, inside a caller's transaction: reading a session (FOR UPDATE),
// the per-user limit, the parent check, the insert, and revoking a subtree in one statement.
// Shared by the session operations (sessions.ts) and refresh-token rotation (refresh-tokens.ts),
// which revokes a subtree on reuse; the locks are the caller's (locks.ts).

import { Conflict } from '../../domain/errors.ts';
import { isValid, sessionsToEvict, type RevokeReason, type Session } from '../../domain/session.ts';
import type { CreateLimit } from '../sessions-port.ts';
import type { Sql } from './driver.ts';
import { FOREIGN_KEY_VIOLATION, INSERT_SESSION, sessionFromRow, sessionValues, sqlState, UNIQUE_VIOLATION, type SessionRow } from './rows.ts';

/** Valid at `now` (parameter `$2`). */
export const VALID = "status = 'active' AND expires_at > $2";
/**
 * What a revocation ends: valid, or idle-expired within the absolute lifetime (still renewable
 * after a consent return, docs/api.md §Consent redirects, "The session after a return") — a
 * revocation makes either final, so no renewal brings it back.
 */
export const ENDABLE = "status <> 'revoked' AND absolute_expires_at > $2";

export async function sessionByHandle(tx: Sql, handle: string, forUpdate = false): Promise<Session | null> {
  const [row] = await tx.query<SessionRow>(`SELECT * FROM sessions WHERE handle = $1${forUpdate ? ' FOR UPDATE' : ''}`, [handle]);
  return row ? sessionFromRow(row) : null;
}

/**
 * The per-user limit for a new session, inside the caller's transaction and under its owner's
 * lock: refuse, or evict the oldest valid sessions of the kind (with their subtrees).
 */
export async function applyLimit(
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
export async function assertValidParent(tx: Sql, child: Session, now: number): Promise<void> {
  const [row] = await tx.query<SessionRow>('SELECT * FROM sessions WHERE handle = $1 FOR SHARE', [child.parentHandle]);
  const parent = row ? sessionFromRow(row) : null;
  if (parent === null || parent.tenantId !== child.tenantId || !isValid(parent, now)) {
    throw new Conflict('invalid_parent', `The parent session ${child.parentHandle} is not a valid session of this tenant.`);
  }
}

export async function insertSession(tx: Sql, session: Session): Promise<Session> {
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
export async function revokeSubtree(tx: Sql, rootHandle: string, reason: RevokeReason, now: number): Promise<Session[]> {
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

export function byCreatedThenHandle(a: Session, b: Session): number {
  return a.createdAt - b.createdAt || (a.handle < b.handle ? -1 : a.handle > b.handle ? 1 : 0);
}
