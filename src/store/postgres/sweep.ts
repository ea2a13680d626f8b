// Housekeeping of the sessions aggregate on PostgreSQL (sessions-port.ts `sweepExpired`): expired
// counters go, ended sessions are purged SESSION_RETENTION_MS after their absolute expiry (with
// their refresh tokens, children first), and sessions past their expiry are marked expired, each
// by exactly one of several concurrent sweepers. Called by PostgresSessions (sessions.ts).

import type { Session } from '../../domain/session.ts';
import type { PgDriver } from './driver.ts';
import { sessionFromRow, type SessionRow } from './rows.ts';
import { byCreatedThenHandle } from './session-tree.ts';

/** Ended sessions are kept this long after their absolute expiry, then purged (as Redis's key TTL). */
export const SESSION_RETENTION_MS = 24 * 3600 * 1000;

export async function sweepExpired(driver: PgDriver, now: number, max: number): Promise<Session[]> {
  // Race: several sweepers (processes) pick the same expired session and each emits
  // session.expired. One UPDATE over a sub-select FOR UPDATE SKIP LOCKED, re-checking
  // `status = 'active'`: a row is changed by exactly one sweeper, the others skip it.
  await driver.execute('DELETE FROM counters WHERE reset_at <= $1', [now]);
  const cutoff = now - SESSION_RETENTION_MS;
  // Retention, as in Redis (absolute expiry + 24 h): ended sessions without remaining children,
  // a batch at a time; parents go in a later sweep, after their children.
  await driver.execute(
    `WITH picked AS MATERIALIZED (
       SELECT s.handle FROM sessions s
       WHERE s.status <> 'active' AND s.absolute_expires_at < $1
         AND NOT EXISTS (SELECT 1 FROM sessions c WHERE c.parent_handle = s.handle)
       LIMIT 500
     )
     DELETE FROM refresh_tokens t USING picked WHERE t.session_handle = picked.handle`,
    [cutoff],
  );
  await driver.execute(
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
  const rows = await driver.query<SessionRow>(
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
