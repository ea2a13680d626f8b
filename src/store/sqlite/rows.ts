// Rows of the SQLite schema and their mapping to the domain records. JSON columns hold what is
// never queried (device, data, roles, the tenant object); everything a query filters or sorts on
// has a column of its own.

import type { Session, SessionKind, SessionStatus, RevokeReason, Device } from '../../domain/session.ts';
import { expiresAt } from '../../domain/session.ts';
import type { User } from '../../domain/user.ts';
import type { RefreshToken } from '../port.ts';
import type { Consent, ConsentType, Payment, StoredConsentStatus } from '../../domain/consent.ts';

export interface SessionRow {
  handle: string;
  secret_hash: string;
  tenant_id: string;
  user_id: string | null;
  kind: string;
  parent_handle: string | null;
  status: string;
  created_at: number;
  last_seen_at: number;
  idle_expires_at: number | null;
  absolute_expires_at: number;
  expires_at: number;
  auth_method: string;
  client_id: string | null;
  device: string;
  ended_at: number | null;
  revoke_reason: string | null;
  successor_handle: string | null;
  data: string;
}

export function sessionFromRow(row: SessionRow): Session {
  return {
    handle: row.handle,
    secretHash: row.secret_hash,
    tenantId: row.tenant_id,
    userId: row.user_id,
    kind: row.kind as SessionKind,
    parentHandle: row.parent_handle,
    createdAt: row.created_at,
    lastSeenAt: row.last_seen_at,
    idleExpiresAt: row.idle_expires_at,
    absoluteExpiresAt: row.absolute_expires_at,
    authMethod: row.auth_method,
    clientId: row.client_id,
    device: JSON.parse(row.device) as Device,
    status: row.status as SessionStatus,
    endedAt: row.ended_at,
    revokeReason: row.revoke_reason as RevokeReason | null,
    successorHandle: row.successor_handle,
    data: JSON.parse(row.data) as Record<string, unknown>,
  };
}

/** Named parameters for INSERT INTO sessions (see SqliteSessionStore's statement). */
export function sessionParams(s: Session): Record<string, string | number | null> {
  return {
    handle: s.handle,
    secret_hash: s.secretHash,
    tenant_id: s.tenantId,
    user_id: s.userId,
    kind: s.kind,
    parent_handle: s.parentHandle,
    status: s.status,
    created_at: s.createdAt,
    last_seen_at: s.lastSeenAt,
    idle_expires_at: s.idleExpiresAt,
    absolute_expires_at: s.absoluteExpiresAt,
    expires_at: expiresAt(s),
    auth_method: s.authMethod,
    client_id: s.clientId,
    device: JSON.stringify(s.device),
    ended_at: s.endedAt,
    revoke_reason: s.revokeReason,
    successor_handle: s.successorHandle,
    data: JSON.stringify(s.data),
  };
}

export interface RefreshTokenRow {
  token_hash: string;
  session_handle: string;
  tenant_id: string;
  user_id: string;
  created_at: number;
  rotated_at: number | null;
  successor_hash: string | null;
}

export function refreshTokenFromRow(row: RefreshTokenRow): RefreshToken {
  return {
    tokenHash: row.token_hash,
    sessionHandle: row.session_handle,
    tenantId: row.tenant_id,
    userId: row.user_id,
    createdAt: row.created_at,
    rotatedAt: row.rotated_at,
    successorHash: row.successor_hash,
  };
}

export interface UserRow {
  tenant_id: string;
  id: string;
  email: string;
  password_hash: string | null;
  roles: string;
  /** 1, 0, or NULL for users written before migration 7. */
  email_verified: number | null;
  /** 1 when an administrator disabled the user (migration 9). */
  disabled: number;
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
    ...(row.email_verified === null ? {} : { emailVerified: row.email_verified === 1 }),
    ...(row.disabled === 1 ? { disabled: true } : {}),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export function userParams(u: User): Record<string, string | number | null> {
  return {
    tenant_id: u.tenantId,
    id: u.id,
    email: u.email,
    password_hash: u.passwordHash,
    roles: JSON.stringify(u.roles),
    email_verified: u.emailVerified === undefined ? null : u.emailVerified ? 1 : 0,
    disabled: u.disabled === true ? 1 : 0,
    created_at: u.createdAt,
    updated_at: u.updatedAt,
  };
}

/** A `consents` row, the same on SQLite and PostgreSQL (times as epoch ms, payment as JSON text). */
export interface ConsentRow {
  id: string;
  tenant_id: string;
  user_id: string;
  type: string;
  bank_id: string;
  status: string;
  created_at: number;
  expires_at: number;
  confirmed_at: number | null;
  ended_at: number | null;
  redirect_handle: string | null;
  started_by: string | null;
  superseded_by: string | null;
  payment: string | null;
  bank_consent_id: string | null;
  valid_until: number | null;
}

/** PostgreSQL may hand `valid_until` over as a string (BIGINT); both stores read it as a number. */
export function consentFromRow(r: ConsentRow): Consent {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    userId: r.user_id,
    type: r.type as ConsentType,
    bankId: r.bank_id,
    status: r.status as StoredConsentStatus,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    confirmedAt: r.confirmed_at,
    endedAt: r.ended_at,
    redirectHandle: r.redirect_handle,
    startedBy: r.started_by,
    supersededBy: r.superseded_by,
    payment: r.payment === null ? null : (JSON.parse(r.payment) as Payment),
    bankConsentId: r.bank_consent_id,
    validUntil: r.valid_until === null ? null : Number(r.valid_until),
  };
}
