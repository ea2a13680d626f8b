// Operators' view of sessions (docs/api.md §Administration): list with filters and a cursor, end
// one, all of a user's, all of a tenant's.

import { Type } from 'typebox';
import { NotFound } from '../../domain/errors.ts';
import { SESSION_KINDS, SESSION_STATUSES } from '../../domain/session.ts';
import { endSession, endTenantSessions, endUserSessions } from '../../sessions/app-sessions.ts';
import { assertAdminOf, requireAdmin } from '../admin-auth.ts';
import { originOf } from '../authenticate.ts';
import type { App, Deps } from '../deps.ts';
import { BearerSecurity, problems, TenantId } from '../schemas.ts';
import { SessionPageSchema, sessionJson } from '../session-json.ts';

const Kind = Type.Union(SESSION_KINDS.map((k) => Type.Literal(k)));
const Status = Type.Union(SESSION_STATUSES.map((k) => Type.Literal(k)));
const Revoked = Type.Object({ revoked: Type.Integer() });

export async function adminSessionRoutes(app: App, deps: Deps): Promise<void> {
  const admin = requireAdmin(deps);

  app.get(
    '/api/v1/admin/sessions',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'listSessions',
        summary: 'List sessions of a tenant',
        security: BearerSecurity,
        querystring: Type.Object(
          {
            tenantId: TenantId,
            userId: Type.Optional(Type.String({ maxLength: 64 })),
            kind: Type.Optional(Kind),
            status: Type.Optional(Status),
            cursor: Type.Optional(Type.String({ maxLength: 256, pattern: '^[A-Za-z0-9_-]*$' })),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: SessionPageSchema, ...problems(400, 401, 403) },
      },
    },
    async (request) => {
      const q = request.query;
      assertAdminOf(request, q.tenantId);
      const now = deps.clock.now();
      const page = await deps.store.listSessions({
        tenantId: q.tenantId,
        ...(q.userId ? { userId: q.userId } : {}),
        ...(q.kind ? { kind: q.kind } : {}),
        ...(q.status ? { status: q.status } : {}),
        now,
        cursor: q.cursor ?? null,
        limit: q.limit ?? 100,
      });
      // The users' emails beside their ids: one read per distinct user of the page.
      const emails = new Map<string, string | null>();
      for (const s of page.items) {
        if (s.userId === null || emails.has(s.userId)) continue;
        emails.set(s.userId, (await deps.store.getUser(s.tenantId, s.userId))?.email ?? null);
      }
      return {
        items: page.items.map((s) => sessionJson(s, now, undefined, s.userId === null ? null : (emails.get(s.userId) ?? null))),
        nextCursor: page.nextCursor,
      };
    },
  );

  app.delete(
    '/api/v1/admin/sessions/:handle',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'revokeSession',
        summary: 'End a session and its subtree',
        security: BearerSecurity,
        params: Type.Object({ handle: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 200: Revoked, ...problems(401, 403, 404) },
      },
    },
    async (request) => {
      const target = await deps.store.getSessionByHandle(request.params.handle);
      // Another tenant's session reads as none to a tenant administrator.
      if (!target || (request.admin?.kind === 'tenant' && request.admin.tenantId !== target.tenantId)) {
        throw new NotFound('session_not_found', 'No such session.');
      }
      const ended = await endSession(deps, target.handle, 'admin', deps.clock.now(), originOf(request));
      return { revoked: ended.length };
    },
  );

  app.delete(
    '/api/v1/admin/users/:id/sessions',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'revokeUserSessions',
        summary: "End all of a user's sessions",
        security: BearerSecurity,
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        querystring: Type.Object({ tenantId: TenantId }, { additionalProperties: false }),
        response: { 200: Revoked, ...problems(400, 401, 403, 404) },
      },
    },
    async (request) => {
      assertAdminOf(request, request.query.tenantId);
      const now = deps.clock.now();
      const user = await deps.store.getUser(request.query.tenantId, request.params.id);
      if (!user) throw new NotFound('user_not_found', 'No such user in this tenant.');
      const ended = await endUserSessions(deps, user.tenantId, user.id, 'admin', now, originOf(request));
      return { revoked: ended.length };
    },
  );

  app.delete(
    '/api/v1/admin/tenants/:id/sessions',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'revokeTenantSessions',
        summary: "End all of a tenant's sessions",
        security: BearerSecurity,
        params: Type.Object({ id: TenantId }),
        response: { 200: Revoked, ...problems(401, 403) },
      },
    },
    async (request) => {
      assertAdminOf(request, request.params.id);
      const now = deps.clock.now();
      const ended = await endTenantSessions(deps, request.params.id, 'tenant_revoked', now, originOf(request));
      return { revoked: ended.length };
    },
  );
}
