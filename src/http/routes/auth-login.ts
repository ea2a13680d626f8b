// POST /api/v1/auth/login (docs/api.md §Token mode; §Cookie mode with `X-Auth-Mode: cookie`).

import { Type } from 'typebox';
import { MAX_PASSWORD_LENGTH } from '../../auth/password.ts';
import { BadRequest } from '../../domain/errors.ts';
import { passwordLogin } from '../../flows/password.ts';
import { xsrfTokenOf, type AuthMode } from '../../sessions/app-sessions.ts';
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

      const tenant = await loadTenant(deps, tenantId, now);
      const login = { tenantId, tenant, email: request.body.email, password: request.body.password, mode, ip: request.ip, userAgent: request.ctx.userAgent };
      const r = await passwordLogin(deps, login, now, origin);
      void reply.header('cache-control', 'no-store');
      if (r.mode === 'token') return r.pair;
      const expiresIn = Math.floor(((r.session.idleExpiresAt ?? r.session.absoluteExpiresAt) - now) / 1000);
      setCookie(reply, deps.config, { name: 'sid', value: r.secret, maxAgeSeconds: expiresIn, sameSite: 'strict' });
      return {
        sessionId: r.session.handle,
        customerId: r.user.id,
        tenantId,
        xsrfToken: xsrfTokenOf(deps, r.session.handle),
        expires_in: expiresIn,
      };
    },
  );
}
