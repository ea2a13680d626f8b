// POST /api/v1/admin/users (SPEC 10): a user in a tenant, password hashed with argon2id.

import { randomUUID } from 'node:crypto';
import { Type } from 'typebox';
import { hashPassword, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '../../auth/password.ts';
import { NotFound } from '../../domain/errors.ts';
import { normaliseEmail, type User } from '../../domain/user.ts';
import { assertAdminOf, requireAdmin } from '../admin-auth.ts';
import type { App, Deps } from '../deps.ts';
import { BearerSecurity, problems, TenantId, UserSchema } from '../schemas.ts';

export function userJson(u: User) {
  return { id: u.id, tenantId: u.tenantId, email: u.email, roles: u.roles, createdAt: new Date(u.createdAt).toISOString() };
}

export const Role = Type.String({ pattern: '^[a-z][a-z0-9_:-]{0,31}$' });

export async function adminUserRoutes(app: App, deps: Deps): Promise<void> {
  app.post(
    '/api/v1/admin/users',
    {
      preHandler: requireAdmin(deps),
      schema: {
        tags: ['admin'],
        summary: 'Create a user',
        security: BearerSecurity,
        body: Type.Object(
          {
            tenantId: TenantId,
            email: Type.String({ format: 'email', maxLength: 254 }),
            password: Type.String({ minLength: MIN_PASSWORD_LENGTH, maxLength: MAX_PASSWORD_LENGTH }),
            roles: Type.Optional(Type.Array(Role, { maxItems: 16, uniqueItems: true })),
          },
          { additionalProperties: false },
        ),
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
}
