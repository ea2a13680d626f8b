// The user's own sessions (docs/api.md §Cookie mode): the current one, the list, ending one or all
// others, and changing the password.

import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '../../auth/password.ts';
import { NotFound } from '../../domain/errors.ts';
import type { Session } from '../../domain/session.ts';
import { changePassword } from '../../flows/password.ts';
import { endSession, endUserSessions, xsrfTokenOf } from '../../sessions/app-sessions.ts';
import { authenticate, originOf, renewableSessionOf } from '../authenticate.ts';
import { clearCookie } from '../cookies.ts';
import type { App, Deps } from '../deps.ts';
import { BearerSecurity, problems } from '../schemas.ts';
import { currentSessionText, SessionPageSchema, SessionViewSchema, sessionJson } from '../session-json.ts';

const Handle = Type.String({ minLength: 1, maxLength: 64 });
const Cursor = Type.String({ maxLength: 256, pattern: '^[A-Za-z0-9_-]*$' });

export async function selfServiceRoutes(app: App, deps: Deps): Promise<void> {
  const auth = authenticate(deps);

  app.get(
    '/api/v1/session',
    {
      preHandler: auth,
      schema: {
        tags: ['sessions'],
        summary: 'The current session (and, in cookie mode, its current xsrfToken)',
        security: BearerSecurity,
        response: {
          200: Type.Intersect([
            SessionViewSchema,
            Type.Object({
              xsrfToken: Type.Optional(Type.String()),
              degraded: Type.Optional(
                Type.Literal('stale-cache', {
                  description: "Present when the store did not answer and the tenant's serve_cached policy answered from this server's memory (docs/reliability.md)",
                }),
              ),
            }),
          ]),
          ...problems(401, 503),
        },
      },
    },
    // Synchronous, and the JSON text is remembered per session record (session-json.ts): the
    // session check's hot path. An answer under the degradation policy is built afresh.
    (request, reply) => {
      const { session, mode, degraded } = request.auth!;
      const now = deps.clock.now();
      const xsrfToken = mode === 'cookie' ? xsrfTokenOf(deps, session.handle) : undefined;
      const text = degraded
        ? (reply.serialize({ ...sessionJson(session, now), ...(xsrfToken !== undefined ? { xsrfToken } : {}), degraded }) as string)
        : currentSessionText(session, now, xsrfToken, (view) => reply.serialize(view) as string);
      // Text with a JSON content type is sent as it is (the schema's serialiser made it).
      void (reply as unknown as FastifyReply).header('content-type', 'application/json; charset=utf-8').send(text);
    },
  );

  app.get(
    '/api/v1/sessions',
    {
      preHandler: auth,
      schema: {
        tags: ['sessions'],
        summary: "The user's active sessions",
        security: BearerSecurity,
        querystring: Type.Object(
          { cursor: Type.Optional(Cursor), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })) },
          { additionalProperties: false },
        ),
        response: { 200: SessionPageSchema, ...problems(400, 401) },
      },
    },
    async (request) => {
      const { session } = request.auth!;
      const now = deps.clock.now();
      const page = await deps.store.listSessions({
        tenantId: session.tenantId,
        userId: session.userId as string,
        status: 'active',
        now,
        cursor: request.query.cursor ?? null,
        limit: request.query.limit ?? 50,
      });
      return { items: page.items.map((s) => sessionJson(s, now, session.handle)), nextCursor: page.nextCursor };
    },
  );

  app.delete(
    '/api/v1/sessions/:handle',
    {
      preHandler: auth,
      schema: {
        tags: ['sessions'],
        summary: 'End one of your sessions (and its subtree)',
        security: BearerSecurity,
        params: Type.Object({ handle: Handle }),
        response: { 204: Type.Null(), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      const { session } = request.auth!;
      const target = await deps.store.getSessionByHandle(request.params.handle);
      // Another user's session is indistinguishable from none.
      if (!target || target.tenantId !== session.tenantId || target.userId !== session.userId) {
        throw new NotFound('session_not_found', 'No such session.');
      }
      await endSession(deps, target.handle, 'user', deps.clock.now(), originOf(request));
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/api/v1/sessions',
    {
      schema: {
        tags: ['sessions'],
        summary: 'End all your other sessions (scope=others)',
        description:
          'With a cookie session past its idle expiry but within its absolute lifetime (one that a pending bank return would renew), every session of the user ends, that one included.',
        security: BearerSecurity,
        querystring: Type.Object({ scope: Type.Literal('others') }, { additionalProperties: false }),
        response: { 200: Type.Object({ revoked: Type.Integer() }), ...problems(400, 401, 403) },
      },
    },
    async (request, reply) => {
      let session: Session;
      let keep: string | undefined;
      try {
        await auth(request, reply);
        session = request.auth!.session;
        keep = session.handle;
      } catch (err) {
        session = await renewableSessionOf(deps, request, err);
        keep = undefined;
      }
      const now = deps.clock.now();
      const ended = await endUserSessions(deps, session.tenantId, session.userId as string, 'user', now, originOf(request), keep === undefined ? {} : { exceptHandle: keep });
      if (keep === undefined) clearCookie(reply, deps.config, 'sid', 'strict');
      return { revoked: ended.length };
    },
  );

  app.post(
    '/api/v1/auth/password',
    {
      preHandler: authenticate(deps, { strict: true }),
      schema: {
        tags: ['auth'],
        summary: 'Change the password (re-enter the current one)',
        security: BearerSecurity,
        body: Type.Object(
          {
            currentPassword: Type.String({ minLength: 1, maxLength: MAX_PASSWORD_LENGTH }),
            newPassword: Type.String({ minLength: MIN_PASSWORD_LENGTH, maxLength: MAX_PASSWORD_LENGTH }),
            endOtherSessions: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ revoked: Type.Integer() }), ...problems(400, 401, 403, 429) },
      },
    },
    async (request) => changePassword(deps, request.auth!.session, request.body, deps.clock.now(), originOf(request)),
  );
}
