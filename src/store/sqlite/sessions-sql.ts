// The statements of the SQLite sessions adapter (sessions.ts), prepared once per connection.

import type { DatabaseSync } from 'node:sqlite';
import type { SessionStatus } from '../../domain/session.ts';

/** Effective status at `$now`: an `active` row past its expiry reads as `expired`. */
export const STATUS_CONDITION: Record<SessionStatus, string> = {
  active: "(status = 'active' AND expires_at > $now)",
  expired: "(status = 'expired' OR (status = 'active' AND expires_at <= $now))",
  revoked: "status = 'revoked'",
};

export function prepareSessionStatements(db: DatabaseSync) {
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
    userById: db.prepare('SELECT * FROM users WHERE tenant_id = $tenant_id AND id = $id'),
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
    // docs/api.md §Consent redirects): a revocation makes either final, so a renewal never brings
    // it back.
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
