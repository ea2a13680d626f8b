// The advisory locks of the PostgreSQL store. Row locks (FOR UPDATE / FOR SHARE, and the lock an
// UPDATE takes) close races on rows that exist; they cannot close a race about rows that do not
// exist yet (a count of a user's sessions while another login inserts one). Those races take a
// transaction-level advisory lock on the thing that owns the rows, named by a string hashed to
// 64 bits (a collision only makes two unrelated owners wait for each other).
//
// Order, always: tenant (shared or exclusive) → user → rows. So no two transactions wait for
// each other in a circle; should one ever do, PostgreSQL aborts it (40P01) and the driver runs
// it again.

import type { Sql } from './driver.ts';

/** Every session write of a tenant shares this; revoking the whole tenant takes it alone. */
export async function lockTenantShared(tx: Sql, tenantId: string): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))', [`tenant\u001f${tenantId}`]);
}

export async function lockTenantExclusive(tx: Sql, tenantId: string): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`tenant\u001f${tenantId}`]);
}

/**
 * The sessions of one user (a session without a user — a `flow` — is its own owner). A session
 * tree belongs to one user: children are created for their parent's user.
 */
export async function lockOwner(tx: Sql, tenantId: string, userId: string | null, handle: string): Promise<void> {
  const owner = userId === null ? `session\u001f${handle}` : `user\u001f${userId}`;
  await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`sessions\u001f${tenantId}\u001f${owner}`]);
}

/** Any other named owner: a user's consents, an organization slug, a tenant's audit chain. */
export async function lockNamed(tx: Sql, name: string): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [name]);
}
