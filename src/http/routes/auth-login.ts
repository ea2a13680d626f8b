// POST /api/v1/auth/login (SPEC 5 token mode, SPEC 6 cookie mode with `X-Auth-Mode: cookie`).

import { Type } from 'typebox';
import { verifyPassword, MAX_PASSWORD_LENGTH } from '../../auth/password.ts';
import { accountKey, ipKey, throttledAttempt } from '../../auth/throttle.ts';
import { BadRequest, Forbidden, TooManyRequests, Unauthorized } from '../../domain/errors.ts';
import { normaliseEmail } from '../../domain/user.ts';
import { emit } from '../../events/bus.ts';
import { firstRefreshToken, scopeOf, startAppSession, tokenPair, xsrfTokenOf, type AuthMode } from '../../sessions/app-sessions.ts';
import { loadTenant, originOf, checkRequestOrigin } from '../authenticate.ts';
import { setCookie } from '../cookies.ts';
import type { App, Deps } from '../deps.ts';
import { problems } from '../schemas.ts';

export const TokenPairSchema = Type.Object({
  expires_in: Type.Integer(),
  token_type: Type.Literal('Bearer'),
  scope: Type.String(),
  customerId: Type.String(),
  tenantId: Type.String(),
  userSessionToken: Type.String(),
  refreshToken: Type.String(),
  sessionId: Type.String(),
});

export const CookieLoginSchema = Type.Object({
  sessionId: Type.String(),
  customerId: Type.String(),
  tenantId: Type.String(),
  xsrfToken: Type.String(),
  expires_in: Type.Integer(),
});

const INVALID = 'The email or password is wrong.';

export async function authLoginRoutes(app: App, deps: Deps): Promise<void> {
  app.post(
    '/api/v1/auth/login',
    {
      schema: {
        tags: ['auth'],
        operationId: 'login',
        summary: 'Log in with email and password',
        description:
          'Token mode by default (a userSessionToken and a rotating refreshToken). With `X-Auth-Mode: cookie` the session is set as the `__Host-sid` cookie and no bearer token is returned. Requires `X-Tenant-ID`.',
        headers: Type.Object({
          'x-tenant-id': Type.Optional(Type.String()),
          'x-auth-mode': Type.Optional(Type.Union([Type.Literal('token'), Type.Literal('cookie')])),
        }),
        body: Type.Object(
          {
            email: Type.String({ minLength: 3, maxLength: 254 }),
            password: Type.String({ minLength: 1, maxLength: MAX_PASSWORD_LENGTH }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Union([TokenPairSchema, CookieLoginSchema]), ...problems(400, 401, 403, 409, 429, 503) },
      },
    },
    async (request, reply) => {
      const now = deps.clock.now();
      const origin = originOf(request);
      const tenantId = request.ctx.tenantId;
      if (tenantId === null) throw new BadRequest('missing_header', 'X-Tenant-ID is required.', { header: 'X-Tenant-ID' });
      const mode: AuthMode = request.headers['x-auth-mode'] === 'cookie' ? 'cookie' : 'token';
      if (mode === 'cookie') checkRequestOrigin(deps, request);

      const email = normaliseEmail(request.body.email);
      const acct = accountKey(tenantId, email);
      const ip = ipKey(request.ip);
      const tenant = await loadTenant(deps, tenantId, now);
      const user = tenant ? await deps.store.findUserByEmail(tenantId, email) : null;
      // The same work and the same answer whether the user exists or not.
      const attempt = await throttledAttempt(deps.store, deps.throttle, acct, ip, now, () =>
        verifyPassword(user?.passwordHash ?? null, request.body.password),
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
        throw new Unauthorized('invalid_credentials', INVALID);
      }
      // Only after the right password, so the answer reveals nothing to someone guessing.
      if (user.disabled === true) {
        emit(deps, { type: 'login.failed', time: now, tenantId, userId: user.id, sessionHandle: null, details: { reason: 'user_disabled' } }, origin);
        throw new Forbidden('user_disabled', 'This account is disabled; ask an administrator.');
      }

      const { session, secret } = await startAppSession(
        deps,
        { tenant, user, mode, authMethod: 'password', device: { ip: request.ip, ...(request.ctx.userAgent ? { userAgent: request.ctx.userAgent } : {}) } },
        now,
        origin,
      );
      void reply.header('cache-control', 'no-store');
      if (mode === 'cookie') {
        const expiresIn = Math.floor(((session.idleExpiresAt ?? session.absoluteExpiresAt) - now) / 1000);
        setCookie(reply, deps.config, { name: 'sid', value: secret, maxAgeSeconds: expiresIn, sameSite: 'strict' });
        return {
          sessionId: session.handle,
          customerId: user.id,
          tenantId,
          xsrfToken: xsrfTokenOf(deps, session.handle),
          expires_in: expiresIn,
        };
      }
      const refreshToken = await firstRefreshToken(deps, session, now);
      const pair = await tokenPair(deps, session, tenant, scopeOf(user), refreshToken, now);
      return pair;
    },
  );
}
