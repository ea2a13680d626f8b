// Token endpoints: refresh with rotation (docs/api.md §Token mode), logout, revocation (RFC 7009),
// introspection (RFC 7662), and the JWKS that verifies userSessionTokens.

import { Type } from 'typebox';
import { hashSecret } from '../../domain/secrets.ts';
import { isValid } from '../../domain/session.ts';
import { endSession, refreshTokenPair } from '../../sessions/app-sessions.ts';
import { verifySessionToken } from '../../tokens/session-token.ts';
import { authenticate, originOf, renewableSessionOf } from '../authenticate.ts';
import { clearCookie } from '../cookies.ts';
import type { App, Deps } from '../deps.ts';
import { BearerSecurity, problems } from '../schemas.ts';
import { authenticateTokenClient, OAuthError, oauthErrorHandler, tenantOfClient } from '../token-client-auth.ts';
import { TokenPairSchema } from './auth-login.ts';

const TokenBody = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 4096 }),
    token_type_hint: Type.Optional(Type.String({ maxLength: 64 })),
    client_id: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    client_secret: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
);

/** RFC 6749 §5.2 error objects. */
const OAuthErrorSchema = Type.Object({ error: Type.String(), error_description: Type.Optional(Type.String()) });
function oauthErrors(...statuses: number[]): Record<number, unknown> {
  return Object.fromEntries(statuses.map((s) => [s, OAuthErrorSchema]));
}

/** The session a presented token (refresh token or userSessionToken) belongs to, if any. */
async function sessionOfToken(deps: Deps, token: string, now: number) {
  if (token.split('.').length === 3) {
    try {
      const claims = await verifySessionToken(deps.keyRing, token, deps.config.publicUrl, now);
      const s = await deps.store.getSessionByHandle(claims.sid);
      return s ? { session: s, claims } : null;
    } catch {
      return null;
    }
  }
  const rt = await deps.store.getRefreshToken(hashSecret(token));
  if (!rt) return null;
  const s = await deps.store.getSessionByHandle(rt.sessionHandle);
  // A rotated refresh token is no longer active, even within the grace window.
  return s && rt.rotatedAt === null ? { session: s, claims: null } : null;
}

export async function authTokenRoutes(app: App, deps: Deps): Promise<void> {
  const logoutAuth = authenticate(deps, { allowReauth: true });
  app.post(
    '/api/v1/auth/token/refresh',
    {
      schema: {
        tags: ['auth'],
        summary: 'Exchange a refresh token for a new pair (rotation)',
        description:
          'Every use rotates the refresh token. The same token presented again within the tenant\'s grace window (default 10 s) returns the same new pair; after it, the session is ended (`refresh_token_reused`).',
        body: Type.Object({ refreshToken: Type.String({ minLength: 1, maxLength: 512 }) }, { additionalProperties: false }),
        response: { 200: TokenPairSchema, ...problems(400, 401, 503) },
      },
    },
    // Not an async function: the operation's promise is the answer (one promise and one await
    // fewer per rotation). `Cache-Control: no-store` is on every answer (the request-context hook).
    (request) => refreshTokenPair(deps, request.body.refreshToken, deps.clock.now(), originOf(request)),
  );

  app.post(
    '/api/v1/auth/logout',
    {
      schema: {
        tags: ['auth'],
        summary: 'End the current session (bearer or cookie)',
        description:
          'A cookie session past its idle expiry but within its absolute lifetime (one that a pending bank return would renew) is ended too, with its redirects.',
        security: BearerSecurity,
        response: { 204: Type.Null(), ...problems(401, 403) },
      },
    },
    async (request, reply) => {
      let handle: string;
      try {
        await logoutAuth(request, reply);
        handle = request.auth!.session.handle;
      } catch (err) {
        handle = (await renewableSessionOf(deps, request, err)).handle;
      }
      await endSession(deps, handle, 'logout', deps.clock.now(), originOf(request));
      clearCookie(reply, deps.config, 'sid', 'strict');
      void reply.header('clear-site-data', '"cookies", "storage"');
      return reply.code(204).send(null);
    },
  );

  // RFC 7009 and RFC 7662: their own scope, whose errors are RFC 6749 §5.2 objects.
  await app.register(async (scope) => {
    const oauth = scope as App;
    oauth.setErrorHandler(oauthErrorHandler);

    oauth.post(
      '/api/v1/auth/revoke',
      {
        schema: {
          tags: ['auth'],
          summary: 'Revoke a token (RFC 7009)',
          description:
            'Form (or JSON) `token`, `token_type_hint`?, and the caller: a registered application with its secret (HTTP Basic or `client_id` + `client_secret` in the form), a public application (`client_id`), an administrator (bearer), or nobody (whoever holds the token). Revoking a refresh token or a userSessionToken ends its session. An application or a tenant administrator revokes its own tenant\'s tokens only. Answers 200 whether or not the token was known or revoked. Errors: RFC 6749 §5.2 objects (400 `invalid_request`, 401 `invalid_client`).',
          body: TokenBody,
          response: { 200: Type.Object({}), ...oauthErrors(400, 401, 403) },
        },
      },
      async (request, reply) => {
        const now = deps.clock.now();
        const client = await authenticateTokenClient(deps, request, reply, request.body);
        const tenant = tenantOfClient(client);
        const found = await sessionOfToken(deps, request.body.token, now);
        if (found && found.session.status === 'active' && (tenant === null || tenant === undefined || tenant === found.session.tenantId)) {
          await endSession(deps, found.session.handle, 'logout', now, originOf(request));
        }
        return {};
      },
    );

    oauth.post(
      '/api/v1/auth/introspect',
      {
        schema: {
          tags: ['auth'],
          summary: 'Introspect a token (RFC 7662): a registered application or an administrator',
          description:
            'Form (or JSON) `token`, `token_type_hint`?. The caller authenticates as a registered application with its secret (HTTP Basic or `client_id` + `client_secret` in the form) or as an administrator (bearer). An application or a tenant administrator learns about its own tenant\'s tokens only. Anything that is not an active token of the caller\'s reach gives exactly `{"active": false}`. A userSessionToken answers `token_type: Bearer` and its `scope`; a refresh token has no token_type. Errors: RFC 6749 §5.2 objects (400 `invalid_request`, 401 `invalid_client`, 403 `insufficient_scope`).',
          security: [{ bearer: [] }, { basic: [] }],
          body: TokenBody,
          response: {
            200: Type.Object({
              active: Type.Boolean(),
              token_type: Type.Optional(Type.String()),
              sub: Type.Optional(Type.String()),
              tid: Type.Optional(Type.String()),
              sid: Type.Optional(Type.String()),
              scope: Type.Optional(Type.String()),
              iss: Type.Optional(Type.String()),
              exp: Type.Optional(Type.Integer()),
              iat: Type.Optional(Type.Integer()),
            }),
            ...oauthErrors(400, 401, 403),
          },
        },
      },
      async (request, reply) => {
        const now = deps.clock.now();
        const client = await authenticateTokenClient(deps, request, reply, request.body);
        if (client.kind === 'anonymous' || (client.kind === 'app' && !client.confidential)) {
          throw new OAuthError(401, 'invalid_client', 'Introspection needs client authentication: an application with its secret, or an administrator.', 'Basic realm="tessera", charset="UTF-8"');
        }
        const tenant = tenantOfClient(client);
        const found = await sessionOfToken(deps, request.body.token, now);
        if (!found || !isValid(found.session, now)) return { active: false };
        if (tenant !== null && tenant !== found.session.tenantId) return { active: false };
        const s = found.session;
        if (found.claims) {
          const c = found.claims;
          return { active: true, token_type: 'Bearer', sub: c.sub, tid: c.tid, sid: c.sid, scope: c.scope, iss: c.iss, exp: c.exp, iat: c.iat };
        }
        // A refresh token: not an access token, so no token_type (RFC 7662 §2.2 names access token types).
        return {
          active: true,
          sub: s.userId ?? undefined,
          tid: s.tenantId,
          sid: s.handle,
          iss: deps.config.publicUrl,
          exp: Math.floor(s.absoluteExpiresAt / 1000),
        };
      },
    );
  });

  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['auth'],
        summary: 'Public keys that verify userSessionTokens',
        response: { 200: Type.Object({ keys: Type.Array(Type.Record(Type.String(), Type.Unknown())) }) },
      },
    },
    async (_request, reply) => {
      const now = deps.clock.now();
      await deps.keyRing.maybeReload(now, 60_000);
      void reply.header('cache-control', 'public, max-age=300');
      return deps.keyRing.jwks(now);
    },
  );
}
