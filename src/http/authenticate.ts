// Authentication of API calls: a bearer userSessionToken (token mode) or the `__Host-sid` cookie
// (cookie mode), then the header rules of the tenant's profile (docs/api.md §Request headers),
// then — for cookie-mode requests that change state — the XSRF token and Origin / Sec-Fetch-Site
// checks of docs/api.md §Cookie mode.

import type { FastifyReply, FastifyRequest } from 'fastify';
import { BadRequest, Forbidden, StoreUnavailable, Unauthorized } from '../domain/errors.ts';
import { missingHeaders, requiredHeaders } from '../domain/request-headers.ts';
import { hashSecret } from '../domain/secrets.ts';
import { isValid, slideIdleExpiry, type Session } from '../domain/session.ts';
import { degradationOf, type Tenant } from '../domain/tenant.ts';
import { sessionEvent, emit, type Origin } from '../events/bus.ts';
import { checkXsrf, idleSecondsOf, type AuthMode } from '../sessions/app-sessions.ts';
import { reauthMarkOf } from '../sessions/monitoring.ts';
import { cachedTenant, lastKnownTenant, loadTenant } from '../sessions/tenant-cache.ts';
import type { KeyRing } from '../tokens/key-ring.ts';
import { stillVerified, verifiedSessionToken, verifySessionToken, type SessionTokenClaims } from '../tokens/session-token.ts';
import { bearerToken } from './bearer.ts';
import { readCookie, setCookie } from './cookies.ts';
import type { Deps } from './deps.ts';
import { canonical } from './request-context.ts';

export interface Authenticated {
  session: Session;
  tenant: Tenant;
  mode: AuthMode;
  /** Set when the store did not answer and the tenant's `serve_cached` policy answered from memory. */
  degraded?: 'stale-cache';
}

/** The response header that marks an answer served from the stale cache. */
export const DEGRADED_HEADER = 'Tessera-Degraded';

declare module 'fastify' {
  interface FastifyRequest {
    auth: Authenticated | null;
  }
}

export interface AuthOptions {
  /** Read the store for the session's state even when the local cache knows it. */
  strict?: boolean;
  /**
   * Let a session marked for re-authentication through (the reauth and logout routes); every
   * other route answers 401 `reauth_required` for it.
   */
  allowReauth?: boolean;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function originOf(request: FastifyRequest): Origin {
  const c = request.ctx;
  return {
    headers: {
      requestId: c.requestId,
      correlationId: c.correlationId,
      activityId: c.activityId,
      tenantId: c.tenantId,
      // X-Session-ID is the client's word: recorded only when the request proved that session
      // (authenticate checks that they match), never for a login, a callback or a return that
      // merely names one — an attacker could otherwise attribute their requests to a victim's.
      sessionId: c.sessionId !== null && request.auth?.session.handle === c.sessionId ? c.sessionId : null,
    },
    ip: c.ip,
    userAgent: c.userAgent,
    location: request.clientLocation ?? null,
  };
}

export { cachedTenant, forgetTenant, loadTenant } from '../sessions/tenant-cache.ts';

/** The Origin / Sec-Fetch-Site rule for state-changing cookie-mode requests (docs/api.md §Cookie mode). */
export function checkRequestOrigin(deps: Deps, request: FastifyRequest): void {
  const allowed = new Set([deps.config.publicUrl, ...deps.config.allowedOrigins]);
  const origin = request.headers.origin;
  if (typeof origin === 'string' && origin !== '' && !allowed.has(origin.toLowerCase())) {
    throw new Forbidden('csrf', `Origin ${origin.slice(0, 100)} is not allowed.`);
  }
  const site = request.headers['sec-fetch-site'];
  if (site === 'cross-site' && !(typeof origin === 'string' && allowed.has(origin.toLowerCase()))) {
    throw new Forbidden('csrf', 'Cross-site requests are not allowed.');
  }
}

/** The session a verified bearer token names, if it is valid and the token's own. */
function ownSession(session: Session | null, claims: { sid: string; tid: string; sub: string }): Session {
  if (!session || session.tenantId !== claims.tid || session.userId !== claims.sub) {
    throw new Unauthorized('session_ended', 'The session has ended.');
  }
  return session;
}

/** The cookie's stored session, if it may be used at all at `now`. */
function usableCookieSession(stored: Session | null, now: number): Session {
  if (!stored || stored.kind !== 'app' || stored.data.mode !== 'cookie' || !isValid(stored, now)) {
    throw new Unauthorized('session_ended', 'The session has ended.');
  }
  return stored;
}

/** Whether a cookie session's sliding idle expiry is due to be written (see fromCookie). */
function slideDue(stored: Session, idle: number | null, now: number): idle is number {
  return idle !== null && now - stored.lastSeenAt >= Math.min(60_000, idle * 50);
}

function throwAgain(err: unknown): never {
  throw err;
}

/**
 * The degradation policy (docs/reliability.md, "Degradation policy"), reached only when the
 * store did not answer: a session this process had cached when it lost its feeds, if the tenant
 * (as last read) has
 * `serve_cached` and the feeds were lost at most `maxStaleSeconds` ago. The first time a session
 * is served so in an outage, `session.served_stale` is emitted; the audit queue appends it once
 * the store answers again. Otherwise null: the caller answers 503.
 */
function servedStale(deps: Deps, handle: string, now: number, request: FastifyRequest): { session: Session; tenant: Tenant } | null {
  const hit = deps.sessionCache.staleSession(handle, now);
  if (hit === null) return null;
  const tenant = lastKnownTenant(deps, hit.session.tenantId);
  if (tenant === null) return null;
  const policy = degradationOf(tenant);
  if (policy.policy !== 'serve_cached' || now - hit.since > policy.maxStaleSeconds * 1000) return null;
  if (hit.first) {
    emit(deps, sessionEvent('session.served_stale', hit.session, now, { storeLostAt: hit.since, maxStaleSeconds: policy.maxStaleSeconds }), originOf(request));
  }
  return { session: hit.session, tenant };
}

/** The slides under way in this process, per runtime: session handle → the touch's outcome. */
const slidesUnderWay = new WeakMap<Deps, Map<string, Promise<Session | null>>>();

/**
 * Slides a cookie session's idle expiry: one `touchSession`, the record remembered, one
 * `session.extended`. The requests that find the same slide due while it is under way — every
 * connection of a browser whose requests arrive within the store's round trip — wait for it and
 * share its outcome instead of writing the same row again each (with a `session.extended` each):
 * on PostgreSQL, where the write is a round trip, 50 connections sharing a cookie made 50 writes of
 * the one row, serialised by its lock, and 50 audit records, at every slide.
 */
function slide(deps: Deps, stored: Session, idle: number, now: number, origin: Origin): Promise<Session | null> {
  let underWay = slidesUnderWay.get(deps);
  if (underWay === undefined) slidesUnderWay.set(deps, (underWay = new Map<string, Promise<Session | null>>()));
  const joined = underWay.get(stored.handle);
  if (joined !== undefined) return joined;
  const own = underWay;
  const touch = (async () => {
    const touched = await deps.store.touchSession(stored.handle, now, slideIdleExpiry(stored, idle, now));
    if (touched) {
      deps.sessionCache.remember(touched);
      emit(deps, sessionEvent('session.extended', touched, now, { idleExpiresAt: touched.idleExpiresAt }), origin);
    }
    return touched;
  })();
  own.set(stored.handle, touch);
  const done = () => {
    if (own.get(stored.handle) === touch) own.delete(stored.handle);
  };
  touch.then(done, done);
  return touch;
}

async function fromCookie(
  deps: Deps,
  secret: string,
  tenant: (id: string) => Promise<Tenant | null>,
  now: number,
  reply: FastifyReply,
  origin: Origin,
  strict: boolean,
): Promise<Session> {
  const stored = usableCookieSession(await deps.sessionCache.getValidBySecretHash(hashSecret(secret), now, strict), now);
  // Sliding idle expiry, written at most every min(60 s, idle/20) per session rather than per
  // request; the cookie's Max-Age slides with it.
  const t = await tenant(stored.tenantId);
  const idle = t ? idleSecondsOf(t, 'cookie') : null;
  if (slideDue(stored, idle, now)) {
    const touched = await slide(deps, stored, idle, now, origin);
    if (!touched) throw new Unauthorized('session_ended', 'The session has ended.');
    const maxAge = ((touched.idleExpiresAt ?? touched.absoluteExpiresAt) - now) / 1000;
    setCookie(reply, deps.config, { name: 'sid', value: secret, maxAgeSeconds: maxAge, sameSite: 'strict' });
    return touched;
  }
  return stored;
}

/**
 * For the routes that end sessions (logout, "log out everywhere"): when authentication failed
 * with `session_ended`, the cookie session that is past its idle expiry but within its absolute
 * lifetime — the one a pending bank return would still renew (docs/api.md §Consent redirects) — so
 * that a logout ends it (and its redirect children) instead of leaving it to be renewed. Anything
 * else rethrows `err`. The Origin / Sec-Fetch-Site rule applies; the XSRF token is not asked for,
 * since an expired session's page cannot read one any more (GET /api/v1/session answers 401), and
 * ending a session discloses nothing.
 */
export async function renewableSessionOf(deps: Deps, request: FastifyRequest, err: unknown): Promise<Session> {
  if (!(err instanceof Unauthorized) || err.code !== 'session_ended' || bearerToken(request) !== null) throw err;
  const secret = readCookie(request, deps.config, 'sid');
  if (secret === null) throw err;
  const now = deps.clock.now();
  const stored = await deps.store.getSessionBySecretHash(hashSecret(secret));
  if (!stored || stored.kind !== 'app' || stored.data.mode !== 'cookie' || stored.status === 'revoked' || now >= stored.absoluteExpiresAt) throw err;
  checkRequestOrigin(deps, request);
  return stored;
}

/**
 * What every authenticated request must pass once its session is known: the tenant still
 * exists, the X-Tenant-ID / X-Session-ID the client sent match, the tenant's required headers
 * are there, cookie-mode requests that change state carry the XSRF token and a same-site
 * origin, and a session marked for re-authentication goes only where that is allowed. Sets
 * `request.auth` (marked degraded when `stale`: served under the degradation policy).
 */
function admit(
  deps: Deps,
  request: FastifyRequest,
  reply: FastifyReply,
  session: Session,
  tenant: Tenant | null,
  mode: AuthMode,
  opts: AuthOptions,
  stale: boolean,
): void {
  if (!tenant) throw new Unauthorized('session_ended', 'The session has ended.');
  const ctx = request.ctx;
  if (ctx.tenantId !== null && ctx.tenantId !== session.tenantId) {
    throw new Forbidden('tenant_mismatch', 'X-Tenant-ID does not match the session.');
  }
  if (ctx.sessionId !== null && ctx.sessionId !== session.handle) {
    throw new Forbidden('session_mismatch', 'X-Session-ID does not match the session.');
  }
  const missing = missingHeaders(ctx, requiredHeaders(tenant.profile, 'authenticated'));
  if (missing.length > 0) {
    const name = canonical(missing[0] as string);
    throw new BadRequest('missing_header', `${name} is required for this tenant.`, { header: name });
  }
  if (mode === 'cookie' && !SAFE_METHODS.has(request.method)) {
    checkRequestOrigin(deps, request);
    const presented = request.headers['x-xsrf-token'];
    if (!checkXsrf(deps, session, typeof presented === 'string' ? presented : undefined)) {
      throw new Forbidden('csrf', 'X-XSRF-TOKEN is missing or does not match the session.');
    }
  }
  if (!opts.allowReauth && reauthMarkOf(session) !== null) {
    throw new Unauthorized('reauth_required', 'Confirm your password (POST /api/v1/auth/reauth) to go on with this session.');
  }
  if (stale) {
    reply.header(DEGRADED_HEADER, 'stale-cache');
    request.auth = { session, tenant, mode, degraded: 'stale-cache' };
    return;
  }
  request.auth = { session, tenant, mode };
}

/**
 * What the last request on a connection presented and what it came to: its Authorization header
 * and the claims of the verified token in it, its Cookie header and the hash of the secret in its
 * session cookie. A client sends the same credential on every request of a keep-alive connection;
 * an equal header then gives the same answer, so the fast path below skips parsing the header,
 * hashing the whole token text for the verified-token lookup (a few hundred characters), and the
 * Cookie header's parsing (an object per request, its names looked up as property keys), the
 * cookie's unsigning and SHA-256 — the answer is checked (issuer, expiry, session) as before.
 * Per socket (a WeakMap: gone with the connection); only answers that came from memory are kept.
 */
interface ConnectionMemo {
  authorization: string | undefined;
  ring: KeyRing | undefined;
  claims: SessionTokenClaims | undefined;
  cookieHeader: string | undefined;
  cookieDeps: Deps | undefined;
  secretHash: string | undefined;
}
const connectionMemos = new WeakMap<object, ConnectionMemo>();

function connectionMemo(request: FastifyRequest): ConnectionMemo | undefined {
  const socket = request.raw.socket as object | null | undefined;
  if (socket === null || socket === undefined) return undefined;
  let memo = connectionMemos.get(socket);
  if (memo === undefined) {
    memo = { authorization: undefined, ring: undefined, claims: undefined, cookieHeader: undefined, cookieDeps: undefined, secretHash: undefined };
    connectionMemos.set(socket, memo);
  }
  return memo;
}

/** The hash of the secret in the request's verified session cookie, or null (readCookie's rules). */
function cookieSecretHash(deps: Deps, request: FastifyRequest, memo: ConnectionMemo | undefined): string | null {
  // The whole Cookie header compared, not the parsed session cookie: an equal header parses to
  // the same cookies, and comparing it is cheaper than parsing it.
  const header = request.headers.cookie;
  if (memo !== undefined && header !== undefined && memo.cookieHeader === header && memo.cookieDeps === deps) return memo.secretHash as string;
  const secret = readCookie(request, deps.config, 'sid');
  if (secret === null) return null;
  const hash = hashSecret(secret);
  if (memo !== undefined && header !== undefined) {
    memo.cookieHeader = header;
    memo.cookieDeps = deps;
    memo.secretHash = hash;
  }
  return hash;
}

/**
 * The check from what this process already holds in memory — a token it verified before, the
 * session cache (kept exact by the store's feed), the tenant read in the last few seconds —
 * without a promise: true when the request was authenticated (or an error thrown, exactly as
 * the full check would), false when something must be read and only the full check can tell
 * (the store, and with it the degradation policy when the store does not answer). Never for
 * strict checks, and never when a cookie session's idle expiry is due to slide.
 */
function authenticateFromMemory(deps: Deps, request: FastifyRequest, reply: FastifyReply, opts: AuthOptions): boolean {
  const now = deps.clock.now();
  const memo = connectionMemo(request);
  let session: Session;
  let mode: AuthMode;
  // The claims of the bearer token, when the header holds one this process verified before.
  let claims: SessionTokenClaims | undefined;
  const header = request.headers.authorization;
  if (memo !== undefined && typeof header === 'string' && memo.authorization === header && memo.ring === deps.keyRing && memo.claims !== undefined) {
    claims = stillVerified(memo.claims, deps.config.publicUrl, now);
    if (claims === undefined) return false;
  } else {
    const bearer = bearerToken(request);
    if (bearer !== null) {
      claims = verifiedSessionToken(deps.keyRing, bearer, deps.config.publicUrl, now);
      if (claims === undefined) return false;
      if (memo !== undefined && typeof header === 'string') {
        memo.authorization = header;
        memo.ring = deps.keyRing;
        memo.claims = claims;
      }
    }
  }
  if (claims !== undefined) {
    const known = deps.sessionCache.peekValid(claims.sid, now);
    if (known === undefined) return false;
    session = ownSession(known, claims);
    mode = 'token';
  } else {
    const secretHash = cookieSecretHash(deps, request, memo);
    if (secretHash === null) throw new Unauthorized('unauthenticated', 'Log in first: no session token or cookie was sent.');
    const known = deps.sessionCache.peekValidBySecretHash(secretHash, now);
    if (known === undefined) return false;
    session = usableCookieSession(known, now);
    const t = cachedTenant(deps, session.tenantId, now);
    if (t === undefined || slideDue(session, idleSecondsOf(t, 'cookie'), now)) return false;
    mode = 'cookie';
  }
  const tenant = cachedTenant(deps, session.tenantId, now);
  if (tenant === undefined) return false;
  deps.sessionCache.hits += 1;
  admit(deps, request, reply, session, tenant, mode, opts, false);
  return true;
}

export interface Authenticator {
  /** Called directly: resolves once `request.auth` is set, or rejects with the 401/403/400/503. */
  (request: FastifyRequest, reply: FastifyReply): Promise<void>;
  /** As a Fastify preHandler hook: completes without a promise when memory suffices. */
  (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void;
}

/**
 * Authenticates the request or throws 401/403/400 (503 when the store does not answer and the
 * degradation policy does not serve it), and sets `request.auth`. Usable as a preHandler hook
 * (Fastify passes `done`; the check then completes synchronously whenever
 * `authenticateFromMemory` can decide — the session check's hot path: no promise, no microtask)
 * and as a plain async call (`await auth(request, reply)`).
 */
export function authenticate(deps: Deps, opts: AuthOptions = {}): Authenticator {
  const strict = opts.strict ?? false;
  async function authenticateRequest(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const now = deps.clock.now();
    const getTenant = (id: string) => loadTenant(deps, id, now);
    const bearer = bearerToken(request);
    let session: Session;
    let mode: AuthMode;
    let stale: Tenant | null = null;
    if (bearer !== null) {
      const claims = await verifySessionToken(deps.keyRing, bearer, deps.config.publicUrl, now);
      let found: Session | null;
      try {
        found = await deps.sessionCache.getValid(claims.sid, now, strict);
      } catch (err) {
        // Only here, with the store not answering, is the degradation policy looked at.
        if (!(err instanceof StoreUnavailable) || strict) throw err;
        const served = servedStale(deps, claims.sid, now, request) ?? throwAgain(err);
        found = served.session;
        stale = served.tenant;
      }
      session = ownSession(found, claims);
      mode = 'token';
    } else {
      const secret = readCookie(request, deps.config, 'sid');
      if (secret === null) throw new Unauthorized('unauthenticated', 'Log in first: no session token or cookie was sent.');
      session = await fromCookie(deps, secret, getTenant, now, reply, originOf(request), strict);
      mode = 'cookie';
    }
    admit(deps, request, reply, session, stale ?? (await getTenant(session.tenantId)), mode, opts, stale !== null);
  }
  function authenticator(request: FastifyRequest, reply: FastifyReply): Promise<void>;
  function authenticator(request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void;
  function authenticator(request: FastifyRequest, reply: FastifyReply, done?: (err?: Error) => void): Promise<void> | void {
    if (done === undefined) return authenticateRequest(request, reply);
    try {
      if (!strict && authenticateFromMemory(deps, request, reply, opts)) {
        done();
        return;
      }
    } catch (err) {
      done(err as Error);
      return;
    }
    authenticateRequest(request, reply).then(() => done(), (err: unknown) => done(err as Error));
  }
  return authenticator;
}
