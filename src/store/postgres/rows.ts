// Rows of the PostgreSQL schema. Sessions and refresh tokens have the same columns as in SQLite
// (bigint times read back as numbers, JSON kept as text), so their mapping is shared; users
// differ only in `email_verified`, a real boolean here.

import type { User } from '../../domain/user.ts';
import { sessionParams } from '../sqlite/rows.ts';
import type { Session } from '../../domain/session.ts';

export { refreshTokenFromRow, sessionFromRow } from '../sqlite/rows.ts';
export type { RefreshTokenRow, SessionRow } from '../sqlite/rows.ts';

export const SESSION_COLUMNS = [
  'handle',
  'secret_hash',
  'tenant_id',
  'user_id',
  'kind',
  'parent_handle',
  'status',
  'created_at',
  'last_seen_at',
  'idle_expires_at',
  'absolute_expires_at',
  'expires_at',
  'auth_method',
  'client_id',
  'device',
  'ended_at',
  'revoke_reason',
  'successor_handle',
  'data',
] as const;

export const INSERT_SESSION = `INSERT INTO sessions (${SESSION_COLUMNS.join(', ')})
  VALUES (${SESSION_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING *`;

export function sessionValues(s: Session): unknown[] {
  const p = sessionParams(s);
  return SESSION_COLUMNS.map((c) => p[c]);
}

export interface UserRow {
  tenant_id: string;
  id: string;
  email: string;
  password_hash: string | null;
  roles: string;
  email_verified: boolean | null;
  disabled: boolean;
  created_at: number;
  updated_at: number;
}

export function userFromRow(row: UserRow): User {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    email: row.email,
    passwordHash: row.password_hash,
    roles: JSON.parse(row.roles) as string[],
    ...(row.email_verified === null ? {} : { emailVerified: row.email_verified }),
    ...(row.disabled ? { disabled: true } : {}),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export function userValues(u: User): unknown[] {
  return [u.tenantId, u.id, u.email, u.passwordHash, JSON.stringify(u.roles), u.emailVerified ?? null, u.disabled === true, u.createdAt, u.updatedAt];
}

/** The SQLSTATE of a driver error, if it has one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export const UNIQUE_VIOLATION = '23505';
export const FOREIGN_KEY_VIOLATION = '23503';
