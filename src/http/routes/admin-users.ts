// Users of a tenant (docs/api.md §Administration): create, list and search, read, update (email,
// roles, disabled, an administrator's password reset), delete. Passwords are hashed with argon2id;
// every change is an audit event naming the administrator who made it (`details.actor`).

import { randomUUID } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { hashPassword, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '../../auth/password.ts';
import type { EventType } from '../../events/bus.ts';
import { NotFound } from '../../domain/errors.ts';
import type { RevokeReason } from '../../domain/session.ts';
import { normaliseEmail, type User } from '../../domain/user.ts';
import { emit } from '../../events/bus.ts';
import { endUserSessions } from '../../sessions/app-sessions.ts';
import { USER_LIST_MAX } from '../../store/accounts-port.ts';
import { actorOf, assertAdminOf, requireAdmin, tenantOfListing } from '../admin-auth.ts';
import { originOf } from '../authenticate.ts';
import type { App, Deps } from '../deps.ts';
import { BearerSecurity, PageOf, problems, TenantId, UserSchema } from '../schemas.ts';

export function userJson(u: User) {
  return {
    id: u.id,
    tenantId: u.tenantId,
    email: u.email,
    roles: u.roles,
    disabled: u.disabled === true,
    createdAt: new Date(u.createdAt).toISOString(),
    updatedAt: new Date(u.updatedAt).toISOString(),
  };
}

export const Role = Type.String({ pattern: '^[a-z][a-z0-9_:-]{0,31}$' });
const Email = Type.String({ format: 'email', maxLength: 254 });
const Password = Type.String({ minLength: MIN_PASSWORD_LENGTH, maxLength: MAX_PASSWORD_LENGTH });
const Roles = Type.Array(Role, { maxItems: 16, uniqueItems: true });
const UserId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' });
const Cursor = Type.String({ maxLength: 512, pattern: '^[A-Za-z0-9_-]*$' });

/** Ends every active session of the user (the session manager announces them); how many ended. */
async function endSessionsOf(deps: Deps, request: FastifyRequest, user: User, reason: RevokeReason, now: number): Promise<number> {
  return (await endUserSessions(deps, user.tenantId, user.id, reason, now, originOf(request))).length;
}

export function userEvent(
  deps: Deps,
  request: FastifyRequest,
  type: EventType,
  user: Pick<User, 'tenantId' | 'id'>,
  now: number,
  details: Record<string, unknown>,
): void {
  emit(
    deps,
    { type, time: now, tenantId: user.tenantId, userId: user.id, sessionHandle: null, details: { ...details, actor: actorOf(request) } },
    originOf(request),
  );
}

export async function adminUserRoutes(app: App, deps: Deps): Promise<void> {
  const admin = requireAdmin(deps);
  const oneUser = {
    params: Type.Object({ id: UserId }),
    querystring: Type.Object({ tenantId: Type.Optional(TenantId) }, { additionalProperties: false }),
  };

  async function mustUser(tenantId: string, id: string): Promise<User> {
    const user = await deps.store.getUser(tenantId, id);
    if (!user) throw new NotFound('user_not_found', 'No such user in this tenant.');
    return user;
  }

  app.post(
    '/api/v1/admin/users',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'createUser',
        summary: 'Create a user',
        description:
          'A tenant administrator creates users of its own tenant only. Users of the reserved tenant `platform` with the role `admin` are platform administrators; only a platform administrator can create one.',
        security: BearerSecurity,
        body: Type.Object({ tenantId: TenantId, email: Email, password: Password, roles: Type.Optional(Roles) }, { additionalProperties: false }),
        response: { 201: UserSchema, ...problems(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const { tenantId, email, password, roles } = request.body;
      assertAdminOf(request, tenantId);
      const tenant = await deps.store.getTenant(tenantId);
      if (!tenant) throw new NotFound('tenant_not_found', `No tenant "${tenantId}"; create it first with PUT /api/v1/admin/tenants/${tenantId}.`);
      const now = deps.clock.now();
      const user = await deps.store.createUser({
        id: randomUUID(),
        tenantId,
        email: normaliseEmail(email),
        passwordHash: await hashPassword(password),
        roles: roles ?? [],
        createdAt: now,
        updatedAt: now,
      });
      return reply.code(201).send(userJson(user));
    },
  );

  app.get(
    '/api/v1/admin/users',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'listUsers',
        summary: 'List or search the users of a tenant',
        description:
          'Ordered by email. `q` keeps the users whose email starts with it (case-insensitive). `tenantId` is required for a platform administrator; a tenant administrator gets their own tenant.',
        security: BearerSecurity,
        querystring: Type.Object(
          {
            tenantId: Type.Optional(TenantId),
            q: Type.Optional(Type.String({ maxLength: 254 })),
            cursor: Type.Optional(Cursor),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: USER_LIST_MAX })),
          },
          { additionalProperties: false },
        ),
        response: { 200: PageOf(UserSchema, 'UserPage'), ...problems(400, 401, 403) },
      },
    },
    async (request) => {
      const q = request.query;
      const tenantId = tenantOfListing(request, q.tenantId);
      const prefix = q.q === undefined ? '' : normaliseEmail(q.q);
      const page = await deps.store.listUsers({
        tenantId,
        ...(prefix !== '' ? { emailPrefix: prefix } : {}),
        cursor: q.cursor ?? null,
        limit: q.limit ?? 50,
      });
      return { items: page.items.map(userJson), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/api/v1/admin/users/:id',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'getUser',
        summary: 'Read a user',
        security: BearerSecurity,
        ...oneUser,
        response: { 200: UserSchema, ...problems(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const tenantId = tenantOfListing(request, request.query.tenantId);
      return userJson(await mustUser(tenantId, request.params.id));
    },
  );

  app.patch(
    '/api/v1/admin/users/:id',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'updateUser',
        summary: 'Change a user: email, roles, disabled, or reset the password',
        description:
          'Disabling a user or resetting the password ends all of the user’s sessions; a disabled user’s login answers 403 `user_disabled` and their refresh 401 `invalid_grant`; `disabled: true` on a user disabled already ends what is left of the sessions (a retried PATCH). Audit events: `user.updated` (the changed fields, never the password), `user.disabled`, `user.enabled`, `user.password_reset`.',
        security: BearerSecurity,
        ...oneUser,
        body: Type.Object(
          { email: Type.Optional(Email), roles: Type.Optional(Roles), disabled: Type.Optional(Type.Boolean()), password: Type.Optional(Password) },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: UserSchema, ...problems(400, 401, 403, 404, 409) },
      },
    },
    async (request) => {
      const tenantId = tenantOfListing(request, request.query.tenantId);
      const before = await mustUser(tenantId, request.params.id);
      const body = request.body;
      const now = deps.clock.now();
      const next: User = { ...before, updatedAt: now };
      const changed: string[] = [];
      if (body.email !== undefined && normaliseEmail(body.email) !== before.email) {
        next.email = normaliseEmail(body.email);
        next.emailVerified = true; // set by an administrator
        changed.push('email');
      }
      if (body.roles !== undefined && JSON.stringify([...body.roles].sort()) !== JSON.stringify([...before.roles].sort())) {
        next.roles = body.roles;
        changed.push('roles');
      }
      // disabled=true ends the user's sessions even when the user is stored disabled already: a
      // PATCH retried after its end of the sessions failed must still end them.
      const disable = body.disabled === true;
      const disabling = disable && before.disabled !== true;
      const enabling = body.disabled === false && before.disabled === true;
      if (disabling) next.disabled = true;
      if (enabling) delete next.disabled;
      if (body.password !== undefined) next.passwordHash = await hashPassword(body.password);
      const writing = changed.length > 0 || disabling || enabling || body.password !== undefined;
      if (!writing && !disable) return userJson(before);

      const stored = writing ? await deps.store.updateUser(next) : before;
      if (changed.length > 0) {
        userEvent(deps, request, 'user.updated', stored, now, {
          fields: changed,
          ...(changed.includes('email') ? { emailBefore: before.email, email: stored.email } : {}),
          ...(changed.includes('roles') ? { rolesBefore: before.roles, roles: stored.roles } : {}),
        });
      }
      if (disable) {
        const revoked = await endSessionsOf(deps, request, stored, 'user_disabled', now);
        if (disabling || revoked > 0) userEvent(deps, request, 'user.disabled', stored, now, { sessionsEnded: revoked });
      } else if (body.password !== undefined) {
        const revoked = await endSessionsOf(deps, request, stored, 'password_changed', now);
        userEvent(deps, request, 'user.password_reset', stored, now, { sessionsEnded: revoked });
      }
      if (disable && body.password !== undefined) userEvent(deps, request, 'user.password_reset', stored, now, { sessionsEnded: 0 });
      if (enabling) userEvent(deps, request, 'user.enabled', stored, now, {});
      return userJson(stored);
    },
  );

  app.delete(
    '/api/v1/admin/users/:id',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'deleteUser',
        summary: 'Delete a user',
        description:
          'Ends the user’s sessions and removes the user with its credentials (password hash, email claim). Audit records stay. An identity-provider account that was linked to the user is refused from then on (409 `sso_user_missing`).',
        security: BearerSecurity,
        ...oneUser,
        response: { 200: Type.Object({ revoked: Type.Integer() }), ...problems(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const tenantId = tenantOfListing(request, request.query.tenantId);
      const user = await mustUser(tenantId, request.params.id);
      const now = deps.clock.now();
      const revoked = await endSessionsOf(deps, request, user, 'user_deleted', now);
      if (!(await deps.store.deleteUser(user.tenantId, user.id))) throw new NotFound('user_not_found', 'No such user in this tenant.');
      userEvent(deps, request, 'user.deleted', user, now, { email: user.email, sessionsEnded: revoked });
      return { revoked };
    },
  );
}
