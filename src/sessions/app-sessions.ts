// The session manager: what can be done with `app` sessions — start one (login), issue and rotate
// its token pair — and every way a session ends (endSession, endUserSessions, endTenantSessions):
// ending a session has required side effects (the local session caches, the audit events, the
// wait for the feed of ends), so nothing outside src/sessions and src/flows calls the store's
// revoke operations. Route files call these; the rules live in src/domain and the atomicity in
// the store.

import { emit, sessionEvent, type EventBus, type Origin } from '../events/bus.ts';
import { Conflict, Unauthorized } from '../domain/errors.ts';
import { makeRoom } from '../domain/bounded-map.ts';
import { hashSecret, newSecret } from '../domain/secrets.ts';
import { issueSession, type Device, type RevokeReason, type Session } from '../domain/session.ts';
import { lifetimeOf, type Tenant } from '../domain/tenant.ts';
import type { User } from '../domain/user.ts';
import { constantTimeEqual } from '../domain/secrets.ts';
import type { Config } from '../config/config.ts';
import type { Store } from '../store/port.ts';
import type { DerivedKeys } from '../tokens/derived-keys.ts';
import type { KeyRing } from '../tokens/key-ring.ts';
import type { PeerAcks } from './peer-acks.ts';
import type { SessionCache } from './session-cache.ts';
import { cachedTenant, loadTenant } from './tenant-cache.ts';
import type { CreateLimit, RefreshToken, RotateResult } from '../store/port.ts';
import { keyedDigest } from '../tokens/sealing.ts';
import { deterministicJti, signSessionTokenSync } from '../tokens/session-token.ts';

export type AuthMode = 'token' | 'cookie';

/**
 * What the session manager uses, declared here rather than taken from the composition root
 * (src/runtime.ts builds a Deps that has all of it).
 */
export interface SessionDeps {
  config: Pick<Config, 'publicUrl'>;
  store: Store;
  bus: EventBus;
  keyRing: KeyRing;
  keys: DerivedKeys;
  sessionCache: SessionCache;
  /** The other Tessera processes on the store, which acknowledge ends (src/sessions/peer-acks.ts). */
  peers: Pick<PeerAcks, 'confirmEnded'>;
  /** Anomaly screening of a new session (src/sessions/monitoring.ts). */
  monitor: { screenNewSession(session: Session, tenant: Tenant, now: number, origin?: Origin): Promise<Session | null> };
}

type Deps = SessionDeps;

/** Every process learns of ended sessions through the store's feed; this one forgets them at once. */
export function announceEnded(deps: Pick<Deps, 'bus' | 'sessionCache'>, ended: Session[], now: number, origin?: Origin): void {
  deps.sessionCache.forget(ended.map((s) => s.handle));
  for (const s of ended) {
    if (s.revokeReason === 'limit_evicted') emit(deps, sessionEvent('session.limit_evicted', s, now), origin);
    emit(deps, sessionEvent('session.revoked', s, now, { reason: s.revokeReason }), origin);
  }
}

export function scopeOf(user: User): string {
  return ['session', ...user.roles.map((r) => `role:${r}`)].join(' ');
}

/**
 * In token mode the client proves it is still there by refreshing, which it only needs to do
 * when the token expires; so its idle window starts after the token lifetime.
 */
export function idleSecondsOf(tenant: Tenant, mode: AuthMode): number {
  const app = lifetimeOf(tenant, 'app');
  return mode === 'token' ? tenant.lifetimes.token + (app.idle ?? 0) : (app.idle ?? 0);
}

/** XSRF tokens are a pure function of the handle: remembered per key, bounded. */
const xsrfMemo = new WeakMap<object, Map<string, string>>();

export function xsrfTokenOf(deps: Pick<Deps, 'keys'>, handle: string): string {
  let memo = xsrfMemo.get(deps.keys.xsrf);
  if (!memo) xsrfMemo.set(deps.keys.xsrf, (memo = new Map<string, string>()));
  let token = memo.get(handle);
  if (token === undefined) {
    token = keyedDigest(deps.keys.xsrf, handle);
    makeRoom(memo, 50_000);
    memo.set(handle, token);
  }
  return token;
}

export function checkXsrf(deps: Pick<Deps, 'keys'>, session: Session, presented: string | undefined): boolean {
  if (typeof presented !== 'string' || presented.length > 128) return false;
  const expected = typeof session.data.xsrfHash === 'string' ? session.data.xsrfHash : null;
  return expected !== null && constantTimeEqual(hashSecret(presented), expected);
}

export interface StartAppSession {
  tenant: Tenant;
  user: User;
  mode: AuthMode;
  authMethod: string;
  device: Device;
  clientId?: string | null;
  parentHandle?: string | null;
  notAfter?: number;
}

/** The tenant's per-user limit of `app` sessions, as the store applies it (none: undefined). */
export function appSessionLimit(tenant: Tenant): CreateLimit | undefined {
  return tenant.sessionLimit.max === null ? undefined : { kind: 'app', max: tenant.sessionLimit.max, policy: tenant.sessionLimit.policy };
}

/**
 * Creates an `app` session under the tenant's per-user limit (atomic in the store even under
 * simultaneous logins). A brand-new handle and secret every time: nothing a client held before
 * can become valid (no fixation).
 */
export async function startAppSession(deps: Deps, input: StartAppSession, now: number, origin?: Origin) {
  const { tenant, user, mode } = input;
  const life = lifetimeOf(tenant, 'app');
  const issued = issueSession(
    {
      tenantId: tenant.id,
      userId: user.id,
      kind: 'app',
      parentHandle: input.parentHandle ?? null,
      lifetime: { idle: idleSecondsOf(tenant, mode), absolute: life.absolute },
      authMethod: input.authMethod,
      clientId: input.clientId ?? null,
      device: origin?.location && !input.device.location ? { ...input.device, location: origin.location } : input.device,
      data: { mode },
      ...(input.notAfter !== undefined ? { notAfter: input.notAfter } : {}),
    },
    now,
  );
  if (mode === 'cookie') issued.session.data.xsrfHash = hashSecret(xsrfTokenOf(deps, issued.session.handle));
  const result = await deps.store.createSession(issued.session, now, appSessionLimit(tenant));
  if (!result.ok) {
    throw new Conflict(
      'session_limit_reached',
      `This account already has ${result.active} active sessions, the most the tenant allows; end one first.`,
    );
  }
  deps.sessionCache.remember(result.session);
  announceEnded(deps, result.evicted, now, origin);
  emit(deps, sessionEvent('session.created', result.session, now, { mode, authMethod: input.authMethod }), origin);
  // Anomaly rules and the tenant's policy, before anyone holds a credential of the session.
  const screened = await deps.monitor.screenNewSession(result.session, tenant, now, origin);
  if (screened === null) {
    throw new Unauthorized('anomaly_detected', 'This login was refused: it does not match how this account is normally used.');
  }
  return { session: screened, secret: issued.secret };
}

export interface TokenPair {
  expires_in: number;
  token_type: 'Bearer';
  scope: string;
  customerId: string;
  tenantId: string;
  userSessionToken: string;
  refreshToken: string;
  sessionId: string;
}

/**
 * Signs the pair for a session. `issuedAt` (ms) and `refreshToken` fully determine the result,
 * so the grace-window answer reproduces the first answer byte for byte.
 */
export async function tokenPair(
  deps: Deps,
  session: Session,
  tenant: Tenant,
  scope: string,
  refreshToken: string,
  issuedAt: number,
): Promise<TokenPair> {
  return tokenPairSync(deps, session, tenant, scope, refreshToken, hashSecret(refreshToken), issuedAt);
}

/** tokenPair without a promise, for a caller that has the refresh token's hash already. */
export function tokenPairSync(
  deps: Pick<Deps, 'config' | 'keyRing'>,
  session: Session,
  tenant: Tenant,
  scope: string,
  refreshToken: string,
  refreshTokenHash: string,
  issuedAt: number,
): TokenPair {
  const iat = Math.floor(issuedAt / 1000);
  const exp = Math.min(iat + tenant.lifetimes.token, Math.floor(session.absoluteExpiresAt / 1000));
  const userSessionToken = signSessionTokenSync(deps.keyRing, {
    iss: deps.config.publicUrl,
    sub: session.userId as string,
    tid: session.tenantId,
    sid: session.handle,
    scope,
    iat,
    exp,
    jti: deterministicJti(session.handle, refreshTokenHash),
  });
  return {
    expires_in: Math.max(0, exp - iat),
    token_type: 'Bearer',
    scope,
    customerId: session.userId as string,
    tenantId: session.tenantId,
    userSessionToken,
    refreshToken,
    sessionId: session.handle,
  };
}

/** The first refresh token of a token-mode session. */
export async function firstRefreshToken(deps: Deps, session: Session, now: number): Promise<string> {
  const { raw, token } = newRefreshToken(session.tenantId, session.userId as string, session.handle, now);
  await deps.store.addRefreshToken(token);
  return raw;
}

/** A new first refresh token of a session (raw, and as stored), for the caller to store. */
export function newRefreshToken(tenantId: string, userId: string, sessionHandle: string, now: number): { raw: string; token: RefreshToken } {
  const raw = newSecret();
  return { raw, token: { tokenHash: hashSecret(raw), sessionHandle, tenantId, userId, createdAt: now, rotatedAt: null, successorHash: null } };
}

/** Whose a refresh token is: what a rotation needs to know before it asks the store to rotate. */
interface TokenOwner {
  tenantId: string;
  userId: string;
}

/** Owners remembered per runtime (its Deps object), by token hash: about 2 MB at most. */
const OWNERS_MAX = 10_000;
const owners = new WeakMap<object, Map<string, TokenOwner>>();

function rememberOwner(deps: object, tokenHash: string, owner: TokenOwner): void {
  let m = owners.get(deps);
  if (!m) owners.set(deps, (m = new Map<string, TokenOwner>()));
  makeRoom(m, OWNERS_MAX);
  // The record itself (a rotation's successor token, which nothing changes afterwards): its
  // strings are held by the caches anyway, and no copy is made per rotation.
  m.set(tokenHash, owner);
}

/**
 * Refresh with rotation (RFC 9700 4.14.2). The successor is derived from the presented token
 * with a server key, so every caller racing with the same token computes the same successor and
 * the store only has to decide who rotates; the others get the same pair (grace window).
 *
 * The token's tenant and user (which never change) are read from the store only when this
 * process does not know them: it remembers them for the successor of every rotation it made, so
 * a client that keeps refreshing through the same process costs the rotation alone. A token the
 * store no longer holds is refused by the rotation itself ('unknown'), as by the read. The user
 * record (for the scope) comes with the rotation where the store reads it in the same step; a
 * user that no longer exists or is disabled gets invalid_grant, and its session no new pair.
 */
export function refreshTokenPair(deps: Deps, presented: string, now: number, origin?: Origin): Promise<TokenPair> {
  // Not an async function: when the token's owner and tenant are known here (the usual case),
  // the rotation's own promise and one reaction reading its result — no async frame and await
  // on top of it. A throw still comes as the promise's rejection.
  try {
    const successor = keyedDigest(deps.keys.refresh, presented);
    const presentedHash = hashSecret(presented);
    const successorHash = hashSecret(successor);
    const known = owners.get(deps)?.get(presentedHash);
    // The tenant from the process's short-lived cache (tenant-cache.ts), as the session check has
    // it: read without a promise when it is there (the usual case).
    const tenant = known === undefined ? undefined : cachedTenant(deps, known.tenantId, now);
    const refresh: Refresh = { presentedHash, successor, successorHash, now, origin };
    if (known === undefined || tenant === undefined) return refreshLookingUp(deps, known, refresh);
    return rotateFor(deps, known, tenant, refresh);
  } catch (err) {
    return rejected(err);
  }
}

/** A promise rejected with what was thrown. */
async function rejected(err: unknown): Promise<never> {
  throw err;
}

/** What one refresh works with, from the presented token and the request. */
interface Refresh {
  presentedHash: string;
  /** The successor token (derived from the presented one) and its hash. */
  successor: string;
  successorHash: string;
  now: number;
  origin: Origin | undefined;
}

/** refreshTokenPair when the token's owner or its tenant has to be read first. */
async function refreshLookingUp(deps: Deps, owner: TokenOwner | undefined, q: Refresh): Promise<TokenPair> {
  const known = owner ?? (await deps.store.getRefreshToken(q.presentedHash));
  if (!known) throw new Unauthorized('invalid_grant', 'The refresh token is not valid.');
  const tenant = cachedTenant(deps, known.tenantId, q.now) ?? (await loadTenant(deps, known.tenantId, q.now));
  if (!tenant) throw new Unauthorized('invalid_grant', 'The refresh token is not valid.');
  return rotateFor(deps, known, tenant, q);
}

/** The rotation of a token whose owner and tenant are known, and the pair it gives. */
function rotateFor(deps: Deps, known: TokenOwner, tenant: Tenant, q: Refresh): Promise<TokenPair> {
  const mode: AuthMode = 'token';
  const idleExpiresAt = q.now + idleSecondsOf(tenant, mode) * 1000;
  return deps.store
    .rotateRefreshToken(q.presentedHash, q.successorHash, q.now, tenant.lifetimes.refreshGrace * 1000, idleExpiresAt)
    .then((r) => pairAfter(deps, r, known, tenant, q));
}

/** What a rotation's outcome gives: the pair, or the refusal (a promise only when something is read or awaited). */
function pairAfter(deps: Deps, r: RotateResult, known: TokenOwner, tenant: Tenant, q: Refresh): TokenPair | Promise<TokenPair> {
  const { successor, successorHash, now, origin } = q;
  switch (r.outcome) {
    case 'rotated': {
      // The user as stored now (its roles make the token's scope, so a role change reaches the
      // next refresh): from the rotation's own step where the store reads it there (Redis), else
      // read — only then with a promise.
      if (r.user === undefined) return deps.store.getUser(known.tenantId, known.userId).then((u) => rotatedPair(deps, r, known, tenant, scopeOf(usableUser(u)), q));
      return rotatedPair(deps, r, known, tenant, rotationScopeOf(usableUser(r.user)), q);
    }
    case 'grace': {
      if (r.token.successorHash === null || !constantTimeEqual(r.token.successorHash, successorHash)) {
        throw new Unauthorized('invalid_grant', 'The refresh token is not valid.');
      }
      const issuedAt = r.token.rotatedAt ?? now;
      if (r.user === undefined) return deps.store.getUser(known.tenantId, known.userId).then((u) => tokenPairSync(deps, r.session, tenant, scopeOf(usableUser(u)), successor, successorHash, issuedAt));
      return tokenPairSync(deps, r.session, tenant, rotationScopeOf(usableUser(r.user)), successor, successorHash, issuedAt);
    }
    case 'reused':
      emit(deps, sessionEvent('refresh_token.reused', r.session, now, { revoked: r.revoked.map((s) => s.handle) }), origin);
      announceEnded(deps, r.revoked, now, origin);
      return endedEverywhere(deps, r.revoked).then(() => {
        throw new Unauthorized('refresh_token_reused', 'The refresh token was already used; the session has been ended.');
      });
    case 'inactive':
    case 'unknown':
      throw new Unauthorized('invalid_grant', 'The refresh token is not valid.');
  }
}

/** A rotation's pair, once its user is known usable: the successor's owner, the session and the event remembered. */
function rotatedPair(deps: Deps, r: Extract<RotateResult, { outcome: 'rotated' }>, known: TokenOwner, tenant: Tenant, scope: string, q: Refresh): TokenPair {
  const { successor, successorHash, now, origin } = q;
  // The presented token's owner stands for the successor's (one session, whose tenant and
  // user never change): the object the cache holds already, not the decoded successor
  // record, which the entry would keep alive into the old generation on every rotation.
  rememberOwner(deps, successorHash, known.tenantId === r.successor.tenantId && known.userId === r.successor.userId ? known : r.successor);
  deps.sessionCache.remember(r.session);
  emit(deps, sessionEvent('session.refreshed', r.session, now), origin);
  return tokenPairSync(deps, r.session, tenant, scope, successor, successorHash, now);
}

/**
 * scopeOf for the user a rotation got in the rotation's own step, remembered per user object:
 * the Redis store hands the same (read-only) object to the rotations of an unchanged user
 * (RotateResult), so its scope is joined once, not per rotation. (A user read by getUser is a
 * new object every time: not remembered.)
 */
const scopes = new WeakMap<User, string>();

function rotationScopeOf(user: User): string {
  let scope = scopes.get(user);
  if (scope === undefined) scopes.set(user, (scope = scopeOf(user)));
  return scope;
}

/**
 * The user a refresh may issue a pair for. A disabled user's sessions are ended when the user is
 * disabled; should that end have failed (or not reached this session yet), the refresh is refused
 * all the same, as it is for a user that no longer exists.
 */
function usableUser(user: User | null): User {
  if (!user || user.disabled === true) throw new Unauthorized('invalid_grant', 'The refresh token is not valid.');
  return user;
}

/**
 * How long an explicit end waits, at most, for its own echo through the feed and for the other
 * processes' acknowledgements (endedEverywhere). Both normally take a few milliseconds; the bound
 * is only reached when a message was lost or a process died without saying bye (for at most
 * three heartbeats after it: PEER_FORGET_AFTER_MS, 6 s, or 30 s on SQLite — peerTiming in
 * peer-acks.ts), and is what such a logout then costs.
 */
export const FEED_ECHO_TIMEOUT_MS = 250;

/**
 * Waits until every other live Tessera process on the store has acknowledged that it forgot the
 * ended sessions (peer-acks.ts), and the ends have come back through this process's own
 * subscription to the feed: when an explicit end (logout, revoke, admin) answers, the very next
 * request to any server is refused. Bounded by `timeoutMs`: a lost message costs at most that
 * here, and a process whose feed or channel broke serves nothing from memory until it is back.
 * Resolves to whether everything came back in time.
 */
export async function endedEverywhere(deps: Pick<Deps, 'sessionCache' | 'peers'>, ended: readonly Session[], timeoutMs = FEED_ECHO_TIMEOUT_MS): Promise<boolean> {
  if (ended.length === 0) return true;
  const handles = ended.map((s) => s.handle);
  const [echoed, acknowledged] = await Promise.all([deps.sessionCache.waitForFeed(handles, timeoutMs), deps.peers.confirmEnded(handles, timeoutMs)]);
  return echoed && acknowledged;
}

/** Ends a session and its subtree, announces it, and answers once every server knows. */
export async function endSession(deps: Deps, handle: string, reason: RevokeReason, now: number, origin?: Origin): Promise<Session[]> {
  const ended = await deps.store.revokeSession(handle, reason, now);
  announceEnded(deps, ended, now, origin);
  await endedEverywhere(deps, ended);
  return ended;
}


/**
 * Ends every session of a user (subtrees included) except `exceptHandle`'s subtree and its
 * ancestors, announces them, and answers once every server knows.
 */
export async function endUserSessions(
  deps: Deps,
  tenantId: string,
  userId: string,
  reason: RevokeReason,
  now: number,
  origin?: Origin,
  opts: { exceptHandle?: string } = {},
): Promise<Session[]> {
  const ended = await deps.store.revokeUserSessions(tenantId, userId, reason, now, opts.exceptHandle === undefined ? {} : { exceptHandle: opts.exceptHandle });
  announceEnded(deps, ended, now, origin);
  await endedEverywhere(deps, ended);
  return ended;
}

/** Ends every session of a tenant, announces them, and answers once every server knows. */
export async function endTenantSessions(deps: Deps, tenantId: string, reason: RevokeReason, now: number, origin?: Origin): Promise<Session[]> {
  const ended = await deps.store.revokeTenantSessions(tenantId, reason, now);
  announceEnded(deps, ended, now, origin);
  await endedEverywhere(deps, ended);
  return ended;
}
