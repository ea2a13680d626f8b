// Refresh tokens on PostgreSQL (sessions-port.ts): part of the sessions aggregate — a token
// belongs to a session (foreign key), and reuse after the grace window revokes the session's
// subtree in the same transaction (session-tree.ts). Called by PostgresSessions (sessions.ts).

import { Conflict, NotFound } from '../../domain/errors.ts';
import { isValid, refreshGraceApplies } from '../../domain/session.ts';
import type { RefreshToken, RotateResult } from '../sessions-port.ts';
import type { PgDriver, Sql } from './driver.ts';
import { lockOwner, lockTenantShared } from './locks.ts';
import { FOREIGN_KEY_VIOLATION, refreshTokenFromRow, sessionFromRow, sqlState, UNIQUE_VIOLATION, type RefreshTokenRow, type SessionRow } from './rows.ts';
import { revokeSubtree, sessionByHandle, VALID } from './session-tree.ts';

/** On the pool, or inside a transaction (`sql` a transaction's). */
export async function addRefreshToken(sql: Sql, token: RefreshToken): Promise<void> {
  try {
    await sql.execute(
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

export function rotateRefreshToken(
  driver: PgDriver,
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
  return driver.transaction(async (tx): Promise<RotateResult> => {
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
    const [next] =
      token.successorHash === null
        ? []
        : await tx.query<{ rotated_at: unknown }>('SELECT rotated_at FROM refresh_tokens WHERE token_hash = $1', [token.successorHash]);
    const successorRotated = next !== undefined && next.rotated_at !== null;
    if (refreshGraceApplies(token.rotatedAt, successorRotated, now, graceMs)) return { outcome: 'grace', session, token };

    // A rotated token after the grace window: someone kept a copy (RFC 9700 4.14.2).
    const revoked = await revokeSubtree(tx, session.handle, 'refresh_reuse', now);
    return { outcome: 'reused', session: revoked[0] ?? session, revoked };
  });
}

export async function getRefreshToken(driver: PgDriver, tokenHash: string): Promise<RefreshToken | null> {
  const [row] = await driver.query<RefreshTokenRow>('SELECT * FROM refresh_tokens WHERE token_hash = $1', [tokenHash]);
  return row ? refreshTokenFromRow(row) : null;
}
