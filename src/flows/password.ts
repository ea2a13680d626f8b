// Password flows: login with email and password, re-authentication (step-up after an anomaly)
// and password change. The routes (auth-login.ts, auth-reauth.ts, self-service.ts) validate the
// request and shape the reply; the decisions live here, with one verifyCurrentPassword for every
// re-check of a signed-in user's password.

import { hashPassword, verifyPassword } from '../auth/password.ts';
import { accountKey, ipKey, throttledAttempt, type ThrottlePolicy } from '../auth/throttle.ts';
import { Forbidden, TooManyRequests, Unauthorized } from '../domain/errors.ts';
import type { Session } from '../domain/session.ts';
import type { Tenant } from '../domain/tenant.ts';
import { normaliseEmail, type User } from '../domain/user.ts';
import { emit, sessionEvent, type Origin } from '../events/bus.ts';
import {
  endUserSessions,
  firstRefreshToken,
  scopeOf,
  startAppSession,
  tokenPair,
  type AuthMode,
  type SessionDeps,
  type TokenPair,
} from '../sessions/app-sessions.ts';
import { reauthMarkOf } from '../sessions/monitoring.ts';

/** What the password flows use, declared here (src/runtime.ts's `Deps` has all of it). */
export interface PasswordDeps extends SessionDeps {
  throttle: ThrottlePolicy;
}

type Deps = PasswordDeps;

const INVALID_LOGIN = 'The email or password is wrong.';

export interface PasswordLogin {
  /** The tenant named by X-Tenant-ID (null when it does not exist). */
  tenantId: string;
  tenant: Tenant | null;
  email: string;
  password: string;
  mode: AuthMode;
  ip: string;
  userAgent: string | null;
}

export type PasswordLoginResult =
  | { mode: 'cookie'; session: Session; secret: string; user: User }
  | { mode: 'token'; session: Session; user: User; pair: TokenPair };

/**
 * Login with email and password: throttled per account and per IP, the same work and the same
 * answer whether the user exists or not, and a new `app` session under the tenant's limit.
 */
export async function passwordLogin(deps: Deps, input: PasswordLogin, now: number, origin: Origin): Promise<PasswordLoginResult> {
  const { tenantId, tenant, mode } = input;
  const email = normaliseEmail(input.email);
  const user = tenant ? await deps.store.findUserByEmail(tenantId, email) : null;
  const attempt = await throttledAttempt(deps.store, deps.throttle, accountKey(tenantId, email), ipKey(input.ip), now, () =>
    verifyPassword(user?.passwordHash ?? null, input.password),
  );
  if (attempt.kind === 'throttled') {
    const wait = attempt.retryAfter;
    emit(deps, { type: 'login.throttled', time: now, tenantId, userId: null, sessionHandle: null, details: { retryAfter: wait, reason: attempt.reason } }, origin);
    throw new TooManyRequests(wait, 'login_throttled', 'Too many logins; try again later.');
  }
  if (!tenant || !user || attempt.kind !== 'ok') {
    emit(
      deps,
      { type: 'login.failed', time: now, tenantId, userId: user?.id ?? null, sessionHandle: null, details: { reason: 'invalid_credentials' } },
      origin,
    );
    throw new Unauthorized('invalid_credentials', INVALID_LOGIN);
  }
  // Only after the right password, so the answer reveals nothing to someone guessing.
  if (user.disabled === true) {
    emit(deps, { type: 'login.failed', time: now, tenantId, userId: user.id, sessionHandle: null, details: { reason: 'user_disabled' } }, origin);
    throw new Forbidden('user_disabled', 'This account is disabled; ask an administrator.');
  }
  const { session, secret } = await startAppSession(
    deps,
    { tenant, user, mode, authMethod: 'password', device: { ip: input.ip, ...(input.userAgent ? { userAgent: input.userAgent } : {}) } },
    now,
    origin,
  );
  if (mode === 'cookie') return { mode, session, secret, user };
  const refreshToken = await firstRefreshToken(deps, session, now);
  return { mode, session, user, pair: await tokenPair(deps, session, tenant, scopeOf(user), refreshToken, now) };
}

/** Which re-check of a signed-in user's password: its events and its refusal name it. */
export type PasswordStep = 'reauth' | 'password_change';

const WRONG: Record<PasswordStep, string> = {
  reauth: 'The password is wrong.',
  password_change: 'The current password is wrong.',
};

/**
 * The signed-in user proves their password again. Throttled like login (per account and per IP):
 * a stolen session must not become a password-guessing oracle. A wrong password is a
 * `login.failed` event with reason `<step>_failed`. Returns the user.
 */
export async function verifyCurrentPassword(deps: Deps, session: Session, password: string, step: PasswordStep, now: number, origin: Origin): Promise<User> {
  const user = session.userId === null ? null : await deps.store.getUser(session.tenantId, session.userId);
  const attempt = await throttledAttempt(deps.store, deps.throttle, accountKey(session.tenantId, user?.email ?? session.handle), ipKey(origin.ip ?? ''), now, () =>
    verifyPassword(user?.passwordHash ?? null, password),
  );
  if (attempt.kind === 'throttled') {
    emit(deps, sessionEvent('login.throttled', session, now, { retryAfter: attempt.retryAfter, reason: attempt.reason, step }), origin);
    throw new TooManyRequests(attempt.retryAfter, 'login_throttled', 'Too many failed attempts; try again later.');
  }
  if (!user || attempt.kind !== 'ok') {
    emit(deps, sessionEvent('login.failed', session, now, { reason: `${step}_failed` }), origin);
    throw new Unauthorized('invalid_credentials', WRONG[step]);
  }
  return user;
}

/** Step-up: the password again, and the re-authentication mark an anomaly put on the session goes. */
export async function reauthenticate(deps: Deps, session: Session, password: string, now: number, origin: Origin): Promise<void> {
  await verifyCurrentPassword(deps, session, password, 'reauth', now, origin);
  const marked = reauthMarkOf(session) !== null;
  if (marked) {
    const cleared = await deps.store.updateSessionData(session.handle, { reauth: null }, now);
    if (!cleared) throw new Unauthorized('session_ended', 'The session has ended.');
    deps.sessionCache.remember(cleared);
  }
  emit(deps, sessionEvent('session.reauthenticated', session, now, { cleared: marked }), origin);
}

export interface PasswordChange {
  currentPassword: string;
  newPassword: string;
  /** End every other session of the user (this one and its subtree stay). */
  endOtherSessions?: boolean;
}

/** Changes the password after re-checking the current one; answers how many sessions ended. */
export async function changePassword(deps: Deps, session: Session, input: PasswordChange, now: number, origin: Origin): Promise<{ revoked: number }> {
  const user = await verifyCurrentPassword(deps, session, input.currentPassword, 'password_change', now, origin);
  await deps.store.updateUser({ ...user, passwordHash: await hashPassword(input.newPassword), updatedAt: now });
  if (!input.endOtherSessions) return { revoked: 0 };
  const ended = await endUserSessions(deps, session.tenantId, user.id, 'password_changed', now, origin, { exceptHandle: session.handle });
  return { revoked: ended.length };
}
