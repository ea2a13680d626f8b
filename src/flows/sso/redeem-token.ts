// POST /api/v1/sso/token (docs/api.md §Single sign-on, step 3): the one-time token of a finished
// SSO login, exchanged once (within 60 s) for the app session that the callback created — as a
// token pair (token mode) or as the session cookie (cookie mode), like a password login.
//
// The token is bound to whoever started the login, in both modes (docs/security.md, item 6):
// against login CSRF (an attacker hands the victim a token of the attacker's own login) and
// against a leaked token (browser history, proxy logs, a Referer), which would otherwise be a
// session for anyone within 60 s. A browser login's token needs the `flow` cookie whose binding
// the login's flow had — the browser that started it; a command-line login's token (and any other
// client that is not that browser, through the same loopback flow) needs the verifier of the S256
// challenge it started with. A refusal leaves the token to its owner.

import { Forbidden, Unauthorized } from '../../domain/errors.ts';
import { constantTimeEqual, hashSecret, newSecret } from '../../domain/secrets.ts';
import type { Session } from '../../domain/session.ts';
import type { Tenant } from '../../domain/tenant.ts';
import type { User } from '../../domain/user.ts';
import { emit, type Origin } from '../../events/bus.ts';
import { endSession, idleSecondsOf, newRefreshToken, scopeOf, tokenPairSync, xsrfTokenOf, type AuthMode, type SessionDeps, type TokenPair } from '../../sessions/app-sessions.ts';
import { cachedTenant, loadTenant } from '../../sessions/tenant-cache.ts';
import type { RedeemPlan, SessionWithUser } from '../../store/sessions-port.ts';
import { appSecretOf, SSO_TOKEN_PURPOSE } from './sessions.ts';

/** What redeeming an SSO token uses, declared here (src/runtime.ts's `Deps` has all of it). */
type Deps = SessionDeps;

export type Redeemed =
  | { mode: 'token'; session: Session; pair: TokenPair }
  | { mode: 'cookie'; session: Session; user: User; tenant: Tenant; cookieSecret: string; xsrfToken: string; expiresIn: number };

const INVALID = 'The sign-in token is unknown, expired or already used; sign in again.';
const DISABLED = 'This account is disabled; ask an administrator.';

export interface RedeemInput {
  token: string;
  /** The verifier of a command-line login's challenge (body `codeVerifier`), or null. */
  codeVerifier: string | null;
  /** The browser's binding secret from its `flow` cookie, or null when it sent none (valid). */
  binding: string | null;
}

/** check_token_binding: the caller is whoever started the login (see the top of this file). */
function checkTokenBinding(oneTime: Session, input: RedeemInput, mode: AuthMode): void {
  const challenge = oneTime.data.codeChallenge;
  if (typeof challenge === 'string') {
    if (input.codeVerifier === null || !constantTimeEqual(hashSecret(input.codeVerifier), challenge)) {
      throw new Forbidden('sso_verifier_mismatch', 'This sign-in was started by `tessera login`; only that command can redeem its token.');
    }
  } else if (input.codeVerifier !== null) {
    throw new Forbidden('sso_verifier_mismatch', 'This token was not issued to a command-line sign-in; a command-line sign-in never accepts it.');
  }
  // A command-line login proved possession with its verifier; in cookie mode its cookie goes to
  // a browser, which must be the one that did the login. Every other token is a browser login's.
  if (mode === 'cookie' || typeof challenge !== 'string') {
    const bound = oneTime.data.flowBinding;
    if (typeof bound !== 'string' || input.binding === null || !constantTimeEqual(hashSecret(input.binding), bound)) {
      throw new Forbidden(
        'sso_browser_mismatch',
        'This sign-in was started in another browser: only that browser (its __Host-flow cookie) can redeem the token; sign in again here.',
      );
    }
  }
}

/**
 * check_user_enabled: a user disabled after the callback (within the token's 60 s) gets no session,
 * as a disabled user's password or SSO login gets none: 403 `user_disabled`. The token is spent
 * like by any exchange that got this far, and the sign-in's sessions end — its idp session and the
 * pending app session below it, which never got a credential — audited as `sso.failed` (reason
 * `user_disabled`, as the callback's refusal of a disabled user) and `session.revoked`.
 */
async function refuseDisabled(deps: Deps, tokenHash: string, appHandle: string, user: User, now: number, origin: Origin): Promise<never> {
  // Only the exchange that spends the token ends the sign-in; a used token stays a plain refusal.
  if ((await deps.store.consumeSession(tokenHash, now)) === null) throw new Unauthorized('invalid_sso_token', INVALID);
  const app = await deps.store.getSessionByHandle(appHandle);
  if (app !== null && app.userId === user.id) {
    await endSession(deps, app.handle, 'user_disabled', now, origin);
    if (app.parentHandle !== null) await endSession(deps, app.parentHandle, 'user_disabled', now, origin);
  }
  emit(
    deps,
    { type: 'sso.failed', time: now, tenantId: user.tenantId, userId: user.id, sessionHandle: appHandle, kind: 'app', details: { reason: 'user_disabled', detail: DISABLED } },
    origin,
  );
  throw new Forbidden('user_disabled', DISABLED);
}

/** The tenants of the last tokens this process exchanged, most recent first, per runtime (its Deps object): the plan's guesses. */
const recentTenants = new WeakMap<object, string[]>();
/** How many: a deployment's busiest tenants (each costs the plan two arguments). */
const RECENT_TENANTS = 4;

function exchangedFor(deps: Deps, tenantId: string): void {
  const recent = recentTenants.get(deps);
  if (recent === undefined) {
    recentTenants.set(deps, [tenantId]);
    return;
  }
  if (recent[0] === tenantId) return;
  const i = recent.indexOf(tenantId);
  if (i >= 0) recent.splice(i, 1);
  else if (recent.length >= RECENT_TENANTS) recent.pop();
  recent.unshift(tenantId);
}

interface Planned {
  plan: RedeemPlan;
  /** The plan's tenants (the one the record turns out to be of is the exchange's). */
  tenants: Map<string, Tenant>;
  refreshRaw: string;
}

/**
 * A token-mode exchange in one store call (lookUpAndRedeem), stated before the token's record is
 * read: it redeems only when the record is what every check below would pass — a one-time token
 * of a guessed tenant (the request's X-Tenant-ID, else the tenants of this process's last
 * exchanges, those the tenant cache holds), bound as checkTokenBinding requires for this
 * input, naming its app session, its user stored and enabled — and changes the target as the
 * redeem below would. Anything else (another tenant, a refusal to come, cookie mode, no guess)
 * gets the look-up's answer and goes the steps below, as before. Null: no plan for this input.
 */
function planFor(deps: Deps, input: RedeemInput, mode: AuthMode, tenantId: string | null, now: number): Planned | null {
  if (mode !== 'token') return null;
  // checkTokenBinding's two cases in token mode: a command-line login's challenge and its
  // verifier, or a browser login's binding without a challenge.
  if (input.codeVerifier === null && input.binding === null) return null;
  const tenants = new Map<string, Tenant>();
  const planTenants: RedeemPlan['tenants'][number][] = [];
  const recent = tenantId !== null ? null : recentTenants.get(deps);
  const count = tenantId !== null ? 1 : (recent?.length ?? 0);
  for (let i = 0; i < count; i++) {
    const id = recent ? (recent[i] as string) : (tenantId as string);
    const tenant = cachedTenant(deps, id, now);
    if (!tenant || tenants.has(id)) continue;
    tenants.set(id, tenant);
    planTenants.push({ tenantId: tenant.id, idleExpiresAt: now + idleSecondsOf(tenant, mode) * 1000 });
  }
  if (tenants.size === 0) return null;
  const expectSeen: RedeemPlan['expectSeen'] =
    input.codeVerifier !== null
      ? { purpose: SSO_TOKEN_PURPOSE, codeChallenge: hashSecret(input.codeVerifier) }
      : { purpose: SSO_TOKEN_PURPOSE, codeChallenge: null, flowBinding: hashSecret(input.binding as string) };
  const refreshRaw = newSecret();
  return {
    tenants,
    refreshRaw,
    plan: {
      kind: 'flow',
      tenants: planTenants,
      expectSeen,
      targetField: 'appHandle',
      target: { expectData: { mode: 'pending' }, patch: { mode } },
      refreshToken: { tokenHash: hashSecret(refreshRaw), createdAt: now },
    },
  };
}

/**
 * The tenants a plan would guess (the request's X-Tenant-ID when this process exchanged for it
 * lately, else those of its last exchanges) whose tenant-cache entry ran out: read again before
 * the plan is made, so that the exchange still goes as one store call — without this, every
 * exchange in flight when the entry runs out (every TENANT_CACHE_MS) went as the look-up, the
 * tenant's read and the redeem. Each read is the tenant cache's own (one per tenant for all the
 * exchanges waiting, and the read the steps below would make anyway for the token's tenant). A
 * tenant that is gone, or a failed read, only leaves it out of the plan (the steps decide, as
 * before); a gone tenant is dropped from the guesses, so that it is not read again per exchange.
 * Only tenants this process exchanged for are read: a request's X-Tenant-ID alone never makes a
 * read before its token is known. Null (no promise to wait for) when every guess is cached.
 */
function readGuessesAgain(deps: Deps, tenantId: string | null, now: number): Promise<unknown> | null {
  const recent = recentTenants.get(deps);
  if (recent === undefined) return null;
  const ids = tenantId === null ? recent : recent.includes(tenantId) ? [tenantId] : [];
  const ranOut = ids.filter((id) => cachedTenant(deps, id, now) === undefined);
  if (ranOut.length === 0) return null;
  return Promise.all(
    ranOut.map(async (id) => {
      const tenant = await loadTenant(deps, id, now).catch(() => undefined);
      if (tenant !== null) return;
      const i = recent.indexOf(id);
      if (i >= 0) recent.splice(i, 1);
    }),
  );
}

/** The exchange's end once redeemed: the session remembered, the event, the token pair. */
function redeemedPair(deps: Deps, session: Session, user: User, tenant: Tenant, refreshRaw: string, refreshHash: string, now: number, origin: Origin): Redeemed {
  exchangedFor(deps, session.tenantId);
  deps.sessionCache.remember(session);
  emit(
    deps,
    { type: 'sso.token_redeemed', time: now, tenantId: session.tenantId, userId: user.id, sessionHandle: session.handle, kind: 'app', details: { mode: 'token' } },
    origin,
  );
  // The refresh token's hash (its jti's input) as made for the store: not hashed again.
  return { mode: 'token', session, pair: tokenPairSync(deps, session, tenant, scopeOf(user), refreshRaw, refreshHash, now) };
}

/** `tenantId`: the request's X-Tenant-ID, when it sent one; it must be the token's tenant. */
export async function redeemSsoToken(deps: Deps, input: RedeemInput, mode: AuthMode, tenantId: string | null, now: number, origin: Origin): Promise<Redeemed> {
  const { token } = input;
  const tokenHash = hashSecret(token);
  // Only one-time tokens are redeemable here: a look first, so that no other single-use secret
  // (a redirect cookie, a session cookie) can be consumed through this endpoint. The token's
  // user (its roles are the token's scope; a disabled one is refused) comes in the same call —
  // and, when the plan holds (planFor), the redeem too.
  const reading = mode === 'token' && (input.codeVerifier !== null || input.binding !== null) ? readGuessesAgain(deps, tenantId, now) : null;
  if (reading !== null) await reading;
  const planned = planFor(deps, input, mode, tenantId, now);
  let found: SessionWithUser | null;
  if (planned !== null) {
    const r = await deps.store.lookUpAndRedeem(tokenHash, planned.plan, now);
    if (r.outcome === 'redeemed') {
      const { tenants, refreshRaw, plan } = planned;
      const tenant = tenants.get(r.session.tenantId);
      if (tenant === undefined) throw new Error('an exchange redeemed for a tenant outside its plan');
      return redeemedPair(deps, r.session, r.user, tenant, refreshRaw, (plan.refreshToken as { tokenHash: string }).tokenHash, now, origin);
    }
    if (r.outcome === 'not_consumed') throw new Unauthorized('invalid_sso_token', INVALID);
    if (r.outcome === 'target_unusable') throw new Unauthorized('session_ended', 'The session of this sign-in has ended; sign in again.');
    found = r.found;
  } else {
    found = await deps.store.getSessionWithUserBySecretHash(tokenHash);
  }
  const seen = found?.session;
  if (!found || !seen || seen.kind !== 'flow' || seen.data.purpose !== SSO_TOKEN_PURPOSE) throw new Unauthorized('invalid_sso_token', INVALID);
  if (tenantId !== null && tenantId !== seen.tenantId) throw new Forbidden('tenant_mismatch', 'X-Tenant-ID does not match the sign-in.');
  checkTokenBinding(seen, input, mode);

  // The tenant from the process's short-lived cache (tenant-cache.ts), as the check and rotation
  // have it; no promise to wait for when it is there.
  const tenant = cachedTenant(deps, seen.tenantId, now) ?? (await loadTenant(deps, seen.tenantId, now));
  const user = tenant ? found.user : null;
  if (!tenant || !user) {
    // The token is spent all the same, as by any exchange that got this far.
    await deps.store.consumeSession(tokenHash, now);
    throw new Unauthorized('session_ended', 'The session of this sign-in has ended; sign in again.');
  }
  const appHandle = typeof seen.data.appHandle === 'string' ? seen.data.appHandle : '';
  if (user.disabled === true) await refuseDisabled(deps, tokenHash, appHandle, user, now, origin);
  const patch: Record<string, unknown> = { mode };
  const xsrfToken = mode === 'cookie' ? xsrfTokenOf(deps, appHandle) : null;
  if (xsrfToken !== null) patch.xsrfHash = hashSecret(xsrfToken);
  const refresh = mode === 'token' ? newRefreshToken(seen.tenantId, seen.userId as string, appHandle, now) : null;
  // One atomic step (sessions-port.ts redeemSession): the token consumed once, and only then the
  // app session — still valid, the same user's and still pending — switched to `mode`, touched,
  // and given its first refresh token in token mode.
  const r = await deps.store.redeemSession(
    tokenHash,
    { handle: appHandle, expectData: { mode: 'pending' }, patch, idleExpiresAt: now + idleSecondsOf(tenant, mode) * 1000, refreshToken: refresh?.token ?? null },
    now,
  );
  if (r.outcome === 'not_consumed') throw new Unauthorized('invalid_sso_token', INVALID);
  if (r.outcome === 'target_unusable') throw new Unauthorized('session_ended', 'The session of this sign-in has ended; sign in again.');
  const { session } = r;
  if (refresh !== null) return redeemedPair(deps, session, user, tenant, refresh.raw, refresh.token.tokenHash, now, origin);
  exchangedFor(deps, session.tenantId);
  deps.sessionCache.remember(session);
  emit(
    deps,
    { type: 'sso.token_redeemed', time: now, tenantId: session.tenantId, userId: user.id, sessionHandle: session.handle, kind: 'app', details: { mode } },
    origin,
  );
  if (xsrfToken === null) throw new Error('a cookie-mode exchange without its XSRF token');
  const expiresIn = Math.floor(((session.idleExpiresAt ?? session.absoluteExpiresAt) - now) / 1000);
  return { mode: 'cookie', session, user, tenant, cookieSecret: appSecretOf(deps, token), xsrfToken, expiresIn };
}
