// The sessions aggregate of the storage port: sessions (with their tree of parents and children)
// and the refresh tokens of token-mode sessions. One unit, because rotating a refresh token can
// revoke a session subtree in the same atomic step (reuse detection), and because ending a
// session ends the tokens' usefulness with it.
//
// Conventions (every port): times are epoch milliseconds and always passed in (`now`); adapters
// never read the clock for domain decisions (they may for housekeeping such as key TTLs). Secrets
// never reach a store, only their SHA-256 hashes (`secretHash`, `tokenHash`). Every operation is
// atomic with respect to every other operation on the same user's data, across processes sharing
// the store; tenant-wide operations are atomic per user, not as a whole (in a Redis Cluster a
// tenant spans hash slots). A write that times out is StoreUnavailable (503) but may have been
// applied. Refusals are TesseraErrors with stable codes: here invalid_parent, session_exists,
// session_not_found, refresh_token_exists, invalid_limit, invalid_cursor.
//
// "Ended" means revoked, expired, or active-but-past-expiry-and-not-yet-swept; operations that
// end sessions change only sessions valid at `now`. The root of a revoked subtree gets the reason
// given; its descendants get `parent_revoked`. Every operation that ends sessions publishes their
// handles on the feed of session ends (coordination-port.ts) — test/store/feed-conformance.ts.

import type { RevokeReason, Session, SessionKind, SessionStatus } from '../domain/session.ts';
import type { LimitPolicy } from '../domain/tenant.ts';
import type { User } from '../domain/user.ts';
import type { Page } from './page.ts';

export interface CreateLimit {
  /** Counted among the user's sessions of this kind that are valid at `now`. */
  kind: SessionKind;
  max: number;
  policy: LimitPolicy;
}

export type CreateSessionResult =
  | { ok: true; session: Session; evicted: Session[] }
  | { ok: false; reason: 'limit_reached'; active: number };

export interface ListSessionsQuery {
  tenantId: string;
  userId?: string;
  kind?: SessionKind;
  /** Effective status at `now` (an `active` record past its expiry counts as `expired`). */
  status?: SessionStatus;
  now: number;
  cursor?: string | null;
  /** 1..500 */
  limit: number;
}

export type RenewResult =
  /** The predecessor is still valid: it stays the session; nothing was created. */
  | { outcome: 'still_valid'; session: Session }
  /**
   * A successor exists now: created by this call (`created: true`, with the sessions its limit
   * evicted) or by an earlier one (`evicted` empty).
   */
  | { outcome: 'renewed'; session: Session; created: boolean; evicted: Session[] }
  /** The limit (policy reject_new) refused the successor: the user has `active` valid sessions. */
  | { outcome: 'limit_reached'; active: number }
  /** The predecessor was revoked (not merely expired): it must never be renewed. */
  | { outcome: 'revoked'; session: Session }
  | { outcome: 'missing' };

export interface RefreshToken {
  tokenHash: string;
  sessionHandle: string;
  tenantId: string;
  userId: string;
  createdAt: number;
  /** When it was exchanged for its successor; null while it is the current token. */
  rotatedAt: number | null;
  successorHash: string | null;
}

export type RotateResult =
  /**
   * First use: the token is now rotated and `successor` is the new current token. `user`: the
   * session's user as stored, where the adapter reads it in the same step (Redis: the user's
   * record lives in the session's slot; null when there is none) — absent elsewhere. Read
   * only: an adapter may hand the same object to several calls while the stored user is the same.
   */
  | { outcome: 'rotated'; session: Session; successor: RefreshToken; user?: User | null }
  /**
   * Used again within the grace window (now - rotatedAt <= graceMs): `token` is the presented
   * token, whose `successorHash` names the successor the caller answers with again. `user` as
   * for 'rotated'.
   */
  | { outcome: 'grace'; session: Session; token: RefreshToken; user?: User | null }
  /** Used again after the grace window: the session and its subtree are now revoked. */
  | { outcome: 'reused'; session: Session; revoked: Session[] }
  /** The token's session has ended. Takes precedence over grace and reuse. */
  | { outcome: 'inactive'; session: Session }
  | { outcome: 'unknown' };

/** What redeemSession does to the session a single-use secret stands for (see there). */
export interface RedeemTarget {
  handle: string;
  /** Entries the target's data must hold, each equal to the value given (e.g. `{ mode: 'pending' }`). */
  expectData: Record<string, string | number | boolean>;
  /** Merged into the target's data as updateSessionData merges (a null value removes the key). */
  patch: Record<string, unknown>;
  /** The target's new idle expiry (capped at its absolute expiry); `lastSeenAt` becomes `now`. */
  idleExpiresAt: number | null;
  /** Stored as a refresh token of the target (`sessionHandle` must be the target's handle), or null. */
  refreshToken: RefreshToken | null;
}

export type RedeemResult =
  /**
   * Consumed (as consumeSession consumes: the session with the secret hash is now revoked,
   * `consumed`), and the target activated: `session` the target as updated. The consumed record
   * is not returned — the caller read it to decide on the exchange, and on Redis sending it back
   * was a third record to encode and decode per SSO exchange.
   */
  | { outcome: 'redeemed'; session: Session }
  /**
   * Consumed, but the target is missing, not valid at `now`, of another tenant or user than the
   * consumed session, or without the expected data: it was not changed.
   */
  | { outcome: 'target_unusable'; consumed: Session }
  /** No session valid at `now` has this secret hash (unknown, already used, expired): nothing changed. */
  | { outcome: 'not_consumed' };

/**
 * What lookUpAndRedeem redeems, stated before the record is read: the conditions the record with
 * the secret hash must meet (`planHolds`), and the target's change as in RedeemTarget, its handle
 * taken from the record's data.
 */
export interface RedeemPlan {
  /** The record's kind must be this, its tenant one of these (each with the target's new idle expiry for it), */
  kind: SessionKind;
  tenants: ReadonlyArray<{ tenantId: string; idleExpiresAt: number | null }>;
  /** its data must hold each entry equal to the value given, and not hold those given as null, */
  expectSeen: Record<string, string | number | boolean | null>;
  /** its data entry `targetField` names the target session (a string: its handle), */
  targetField: string;
  /** and its user must be stored and not disabled (`disabled` not true). */
  target: Omit<RedeemTarget, 'handle' | 'refreshToken' | 'idleExpiresAt'>;
  /** The target's first refresh token (its owner is the record's tenant, user and target), or null. */
  refreshToken: { tokenHash: string; createdAt: number } | null;
}

export type LookUpAndRedeemResult =
  /**
   * No record has the secret hash (`found` null), or the plan does not hold for it: nothing
   * changed, and `found` is what getSessionWithUserBySecretHash answers.
   */
  | { outcome: 'looked'; found: SessionWithUser | null }
  /** The plan held, and redeemSession's outcomes followed; `user` the record's user. */
  | { outcome: 'redeemed'; session: Session; user: User }
  | { outcome: 'target_unusable'; consumed: Session }
  | { outcome: 'not_consumed' };

/** Whether a RedeemPlan holds for a record and its user (what lookUpAndRedeem checks). */
export function planHolds(found: SessionWithUser, plan: RedeemPlan): boolean {
  const { session: s, user } = found;
  if (s.kind !== plan.kind || !plan.tenants.some((t) => t.tenantId === s.tenantId) || user === null || user.disabled === true) return false;
  if (typeof s.data[plan.targetField] !== 'string') return false;
  for (const [k, v] of Object.entries(plan.expectSeen)) {
    if (v === null ? Object.hasOwn(s.data, k) : s.data[k] !== v) return false;
  }
  return true;
}

/** The RedeemTarget a plan makes for the record it held for. */
export function targetOfPlan(seen: Session, plan: RedeemPlan): RedeemTarget {
  const handle = seen.data[plan.targetField] as string;
  const t = plan.refreshToken;
  const tenant = plan.tenants.find((x) => x.tenantId === seen.tenantId);
  if (tenant === undefined) throw new Error('targetOfPlan: the record is not of a tenant of the plan');
  return {
    handle,
    ...plan.target,
    idleExpiresAt: tenant.idleExpiresAt,
    refreshToken:
      t === null ? null : { tokenHash: t.tokenHash, sessionHandle: handle, tenantId: seen.tenantId, userId: seen.userId as string, createdAt: t.createdAt, rotatedAt: null, successorHash: null },
  };
}

/**
 * lookUpAndRedeem as its two steps (getSessionWithUserBySecretHash, then redeemSession): for a
 * store where a call is not a round trip, or not worth one script (SQLite, PostgreSQL). The
 * redeem is atomic on its own; between the steps the record may change as between the exchange's
 * two calls before.
 */
export async function lookUpAndRedeemInSteps(
  store: Pick<SessionsStore, 'getSessionWithUserBySecretHash' | 'redeemSession'>,
  secretHash: string,
  plan: RedeemPlan,
  now: number,
): Promise<LookUpAndRedeemResult> {
  const found = await store.getSessionWithUserBySecretHash(secretHash);
  if (found === null || !planHolds(found, plan)) return { outcome: 'looked', found };
  const r = await store.redeemSession(secretHash, targetOfPlan(found.session, plan), now);
  return r.outcome === 'redeemed' ? { outcome: 'redeemed', session: r.session, user: found.user as User } : r;
}

/** A session read together with its user (getSessionWithUserBySecretHash). */
export interface SessionWithUser {
  session: Session;
  /** The session's user as stored: null when the session has no user or the user is not stored. */
  user: User | null;
}

export interface SessionsStore {
  /**
   * Stores a new session. With `limit`, counts the user's valid sessions of `limit.kind` at `now`
   * and, in the same atomic step, either evicts the oldest (revoked with `limit_evicted`, their
   * subtrees too) or refuses (`reject_new`). A `parentHandle` must name a valid session of the
   * same tenant; a child never outlives it (the caller caps `absoluteExpiresAt`) — except a
   * `redirect` child, which keeps its own lifetime so that it outlives a short idle parent
   * (docs/api.md §Consent redirects); ending the parent still ends it.
   */
  createSession(session: Session, now: number, limit?: CreateLimit): Promise<CreateSessionResult>;

  /** The stored record whatever its status, or null. */
  getSessionByHandle(handle: string): Promise<Session | null>;
  /** The stored record whatever its status, or null. */
  getSessionBySecretHash(secretHash: string): Promise<Session | null>;
  /**
   * getSessionBySecretHash and, in the same call, the session's user (getUser of its tenant and
   * user): the SSO token exchange's look-up, which needs both before it may consume anything (its
   * binding checks and the user's `disabled`). A read: no race to close (the exchange's
   * redeemSession checks the target again in its own atomic step). Null when no session has
   * this secret hash. On Redis one command where the secret's route is on the same node.
   */
  getSessionWithUserBySecretHash(secretHash: string): Promise<SessionWithUser | null>;

  /**
   * Records activity: sets `lastSeenAt = now` and `idleExpiresAt` (the caller computes it, capped
   * at the absolute expiry). Only for a session valid at `now`; returns the updated record, or
   * null when it is not valid (nothing changes then).
   */
  touchSession(handle: string, now: number, idleExpiresAt: number | null): Promise<Session | null>;

  /** Merges `patch` into the session's `data` (keys with value null are removed). Valid sessions only. */
  updateSessionData(handle: string, patch: Record<string, unknown>, now: number): Promise<Session | null>;

  /**
   * Revokes the session and its whole subtree. Returns every session that this call moved from
   * active to revoked (the root first); already-ended sessions are left as they are.
   */
  revokeSession(handle: string, reason: RevokeReason, now: number): Promise<Session[]>;
  /**
   * All active sessions of a user (every kind, subtrees included), except `exceptHandle`'s
   * subtree and its ancestors (so no kept session is left under an ended parent).
   */
  revokeUserSessions(
    tenantId: string,
    userId: string,
    reason: RevokeReason,
    now: number,
    opts?: { exceptHandle?: string },
  ): Promise<Session[]>;
  revokeTenantSessions(tenantId: string, reason: RevokeReason, now: number): Promise<Session[]>;

  /** Sorted by (createdAt, handle) ascending. With `userId`, lists that user's sessions. */
  listSessions(query: ListSessionsQuery): Promise<Page<Session>>;

  /**
   * Single use: if the session with this secret hash is valid at `now`, marks it revoked with
   * `consumed` and returns it (the state as it was before consumption, with status `revoked`).
   * Its subtree, if any, ends with it.
   * Of many concurrent callers exactly one gets the session; the others get null.
   */
  consumeSession(secretHash: string, now: number): Promise<Session | null>;

  /**
   * A single-use secret exchanged for the session it stands for, in ONE atomic step (the SSO
   * token exchange, docs/api.md §Single sign-on): consumes the session with `secretHash` exactly
   * as consumeSession does and, only when this call consumed it, applies `target` to the session
   * it names — a valid session of the same tenant and user holding `expectData` — at once:
   * the data patch, the activity (as touchSession) and the first refresh token. Of many
   * concurrent callers exactly one gets `redeemed` or `target_unusable`; the others get
   * `not_consumed`. A refresh token whose hash is already stored: Conflict
   * refresh_token_exists, and nothing changed. The consumed session's end is published on the
   * feed of ends (coordination-port.ts), unless it is a flow record: that one an adapter may
   * leave out (Redis does).
   */
  redeemSession(secretHash: string, target: RedeemTarget, now: number): Promise<RedeemResult>;

  /**
   * getSessionWithUserBySecretHash and redeemSession in ONE atomic step when the caller can state
   * in advance what it would redeem (the SSO token exchange): reads the record with `secretHash`
   * and its user; when `plan` holds for them (planHolds), redeems as redeemSession with the target
   * the plan names (targetOfPlan) — `redeemed` with the record's user, `target_unusable`, or
   * `not_consumed` (the record is no longer valid); otherwise changes nothing and answers the
   * look-up (`looked`), after which the caller decides, and may redeemSession, as before. On Redis
   * one command where the secret's route is on the same node; elsewhere the two steps
   * (lookUpAndRedeemInSteps).
   */
  lookUpAndRedeem(secretHash: string, plan: RedeemPlan, now: number): Promise<LookUpAndRedeemResult>;

  /**
   * Renew-once-after-expiry (docs/api.md §Consent redirects, "The session after a return"): when
   * the predecessor has expired, store `successor` and link it, unless a successor was already
   * linked, in which case that one is returned. Many concurrent callers with the same expired
   * predecessor all get the same successor. The caller builds `successor` (its secret derived from
   * the predecessor, so all callers agree on it); it must belong to the predecessor's tenant and
   * user. A new successor counts against `limit` exactly as a login does (createSession), in the
   * same atomic step: reject_new refuses it, evict_oldest ends the oldest valid sessions of the
   * kind.
   */
  renewAfterExpiry(predecessorHandle: string, successor: Session, now: number, limit?: CreateLimit): Promise<RenewResult>;

  /** Stores the first refresh token of a session (at login). */
  addRefreshToken(token: RefreshToken): Promise<void>;
  /**
   * Rotates a refresh token (RFC 9700 4.14.2). `successorHash` is the hash of the token that
   * replaces it; `graceMs` the window in which a rotated token may come back; `idleExpiresAt`
   * the session's new idle expiry on success (the store caps it at the absolute expiry). See
   * RotateResult for the outcomes.
   */
  rotateRefreshToken(
    presentedHash: string,
    successorHash: string,
    now: number,
    graceMs: number,
    idleExpiresAt: number | null,
  ): Promise<RotateResult>;
  getRefreshToken(tokenHash: string): Promise<RefreshToken | null>;

  /**
   * Marks active sessions past their expiry at `now` as `expired` and returns them, at most
   * `max` per call. Each session is returned by exactly one call, even with several sweepers
   * in several processes: the caller emits `session.expired` for each.
   */
  sweepExpired(now: number, max: number): Promise<Session[]>;
}

/** A refresh token given to redeemSession must be the target's (a programming error otherwise). */
export function checkRedeemTarget(target: RedeemTarget): void {
  if (target.refreshToken !== null && target.refreshToken.sessionHandle !== target.handle) {
    throw new Error('redeemSession: the refresh token must belong to the target session');
  }
}

/** Every operation of SessionsStore, for composites and proxies that forward them. */
export const SESSIONS_OPERATIONS = [
  'createSession',
  'getSessionByHandle',
  'getSessionBySecretHash',
  'getSessionWithUserBySecretHash',
  'touchSession',
  'updateSessionData',
  'revokeSession',
  'revokeUserSessions',
  'revokeTenantSessions',
  'listSessions',
  'consumeSession',
  'redeemSession',
  'lookUpAndRedeem',
  'renewAfterExpiry',
  'addRefreshToken',
  'rotateRefreshToken',
  'getRefreshToken',
  'sweepExpired',
] as const satisfies readonly (keyof SessionsStore)[];

/** Maximum `limit` of listSessions. */
export const SESSION_LIST_MAX = 500;
