// The session tree (docs/api.md §Sessions): pure data and pure rules. No I/O, no clock of its own:
// every function that needs the time is handed `now` (milliseconds since the epoch).

import { newHandle, newSecret, hashSecret } from './secrets.ts';

export const SESSION_KINDS = ['idp', 'app', 'flow', 'redirect'] as const;
export type SessionKind = (typeof SESSION_KINDS)[number];

export const SESSION_STATUSES = ['active', 'revoked', 'expired'] as const;
export type SessionStatus = (typeof SESSION_STATUSES)[number];

/** Why a session stopped being active. Stable strings: they appear in audit events and the API. */
export const REVOKE_REASONS = [
  'logout',
  'admin',
  'user', // the user ended it (self-service)
  'parent_revoked', // an ancestor in the tree ended
  'limit_evicted', // pushed out by the per-user session limit
  'user_capacity', // pushed out by the Redis store's cap on one user's live sessions (TESSERA_REDIS_USER_SESSIONS_MAX)
  'refresh_reuse', // a rotated refresh token came back after the grace window
  'password_changed',
  'consumed', // a single-use session (flow, redirect, one-time token) was used
  'anomaly',
  'tenant_revoked',
  'user_revoked',
  'user_disabled', // an administrator disabled the user
  'user_deleted', // an administrator deleted the user
  'tenant_deleted', // an administrator deleted the tenant (force)
] as const;
export type RevokeReason = (typeof REVOKE_REASONS)[number];

export interface Location {
  country?: string;
  city?: string;
  lat?: number;
  lon?: number;
}

export interface Device {
  userAgent?: string;
  ip?: string;
  location?: Location;
}

/** A stored session. Times are epoch milliseconds. The raw secret is never part of it. */
export interface Session {
  /** Public, non-secret identifier: listings, admin calls, audit events, the JWT `sid` claim. */
  handle: string;
  /** SHA-256 (base64url) of the session's secret; the secret itself is never stored. */
  secretHash: string;
  tenantId: string;
  /** null only for `flow` sessions, which exist before anyone has logged in. */
  userId: string | null;
  kind: SessionKind;
  parentHandle: string | null;
  createdAt: number;
  lastSeenAt: number;
  /** null when the kind has no idle lifetime (flow, redirect). */
  idleExpiresAt: number | null;
  absoluteExpiresAt: number;
  /** How the person authenticated: `password`, `oidc`, `oauth`, `renewed`, ... */
  authMethod: string;
  /** The application (client id) the session belongs to, when there is one. */
  clientId: string | null;
  device: Device;
  status: SessionStatus;
  endedAt: number | null;
  revokeReason: RevokeReason | null;
  /** Set once when `renewAfterExpiry` made a successor for this (expired) session. */
  successorHandle: string | null;
  /** Kind-specific state: flow state/nonce/PKCE verifier, redirect target, xsrf hash, ... */
  data: Record<string, unknown>;
}

export interface Lifetime {
  /** Idle lifetime in seconds, or null when the kind has none. */
  idle: number | null;
  absolute: number;
}

/** The defaults of docs/api.md §Sessions (seconds). A tenant may override every one of them. */
export const DEFAULT_LIFETIMES: Record<SessionKind, Lifetime> = {
  idp: { idle: 3600, absolute: 12 * 3600 },
  app: { idle: 900, absolute: 12 * 3600 },
  flow: { idle: null, absolute: 600 },
  redirect: { idle: null, absolute: 1200 },
};

export interface NewSessionInput {
  tenantId: string;
  userId: string | null;
  kind: SessionKind;
  parentHandle?: string | null;
  lifetime: Lifetime;
  authMethod: string;
  clientId?: string | null;
  device?: Device;
  data?: Record<string, unknown>;
  /** Caps the absolute expiry, e.g. a child never outlives its parent. */
  notAfter?: number;
}

export interface IssuedSession {
  session: Session;
  /** The raw secret. Give it to the client once; it is never stored. */
  secret: string;
}

/**
 * Builds a new session record and its secret. The secret is 256 bits from the CSPRNG;
 * only its SHA-256 goes into the record.
 */
export function issueSession(input: NewSessionInput, now: number): IssuedSession {
  if (input.kind !== 'flow' && input.userId === null) {
    throw new TypeError(`a ${input.kind} session needs a user`);
  }
  const secret = newSecret();
  let absoluteExpiresAt = now + input.lifetime.absolute * 1000;
  if (input.notAfter !== undefined) absoluteExpiresAt = Math.min(absoluteExpiresAt, input.notAfter);
  const idleExpiresAt =
    input.lifetime.idle === null ? null : Math.min(now + input.lifetime.idle * 1000, absoluteExpiresAt);
  const session: Session = {
    handle: newHandle(input.tenantId, input.userId),
    secretHash: hashSecret(secret),
    tenantId: input.tenantId,
    userId: input.userId,
    kind: input.kind,
    parentHandle: input.parentHandle ?? null,
    createdAt: now,
    lastSeenAt: now,
    idleExpiresAt,
    absoluteExpiresAt,
    authMethod: input.authMethod,
    clientId: input.clientId ?? null,
    device: input.device ?? {},
    status: 'active',
    endedAt: null,
    revokeReason: null,
    successorHandle: null,
    data: input.data ?? {},
  };
  return { session, secret };
}

/** The moment a session stops being valid on its own (the earlier of idle and absolute expiry). */
export function expiresAt(s: Pick<Session, 'idleExpiresAt' | 'absoluteExpiresAt'>): number {
  return s.idleExpiresAt === null ? s.absoluteExpiresAt : Math.min(s.idleExpiresAt, s.absoluteExpiresAt);
}

/** Active and not past either expiry. A stored `active` status alone is not enough. */
export function isValid(s: Session, now: number): boolean {
  return s.status === 'active' && now < expiresAt(s);
}

/** The status a reader should see: an `active` record past its expiry reads as `expired`. */
export function effectiveStatus(s: Session, now: number): SessionStatus {
  if (s.status === 'active' && now >= expiresAt(s)) return 'expired';
  return s.status;
}

/**
 * The new idle expiry after activity at `now`: slides forward by the idle lifetime but never
 * past the absolute expiry. Returns null for kinds without an idle lifetime.
 */
export function slideIdleExpiry(s: Session, idleSeconds: number | null, now: number): number | null {
  if (s.idleExpiresAt === null || idleSeconds === null) return s.idleExpiresAt;
  return Math.min(now + idleSeconds * 1000, s.absoluteExpiresAt);
}

/**
 * Which sessions a limit pushes out when one more is created: the oldest first, so that after
 * the new one exists at most `max` remain. Pure; the store runs the same rule atomically.
 */
export function sessionsToEvict(active: readonly Session[], max: number): Session[] {
  const overflow = active.length + 1 - max;
  if (overflow <= 0) return [];
  return [...active].sort((a, b) => a.createdAt - b.createdAt || cmp(a.handle, b.handle)).slice(0, overflow);
}

/** The handles of `root` and everything below it, given all sessions that may be descendants. */
export function subtreeOf(rootHandle: string, candidates: readonly Session[]): string[] {
  const children = new Map<string, string[]>();
  for (const c of candidates) {
    if (c.parentHandle === null) continue;
    const list = children.get(c.parentHandle) ?? [];
    list.push(c.handle);
    children.set(c.parentHandle, list);
  }
  const out: string[] = [];
  const queue = [rootHandle];
  const seen = new Set<string>();
  while (queue.length > 0) {
    const h = queue.shift() as string;
    if (seen.has(h)) continue;
    seen.add(h);
    out.push(h);
    for (const child of children.get(h) ?? []) queue.push(child);
  }
  return out;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A rotated refresh token presented again gets the grace answer (the same pair again, for tabs
 * refreshing at once) only within the grace window and while its successor is still current;
 * once the successor was rotated in its turn the pair is spent, and the old token is reuse.
 * The Redis script applies the same rule in Lua (store/redis/refresh-scripts.ts).
 */
export function refreshGraceApplies(rotatedAt: number, successorRotated: boolean, now: number, graceMs: number): boolean {
  return now - rotatedAt <= graceMs && !successorRotated;
}

/**
 * May a single-use session just consumed be exchanged for `target` (the session it stands for)?
 * Only for a valid session of the same tenant and user whose data holds every `expected` entry
 * (e.g. an SSO login's app session still `pending`). The Redis script applies the same rule in Lua
 * (store/redis/scripts.ts, REDEEM).
 */
export function redeemableInto(target: Session, consumed: Session, expected: Record<string, string | number | boolean>, now: number): boolean {
  if (!isValid(target, now) || target.tenantId !== consumed.tenantId || target.userId !== consumed.userId) return false;
  return Object.entries(expected).every(([k, v]) => target.data[k] === v);
}
