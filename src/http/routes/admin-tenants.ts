// PUT/GET /api/v1/admin/tenants/{id} (SPEC 10): provisioning a tenant and reading back the
// effective object (profile defaults filled in).

import { Type } from 'typebox';
import { BadRequest, NotFound } from '../../domain/errors.ts';
import { buildTenant, InvalidTenant, type Tenant } from '../../domain/tenant.ts';
import { assertAdminOf, requireAdmin } from '../admin-auth.ts';
import { forgetTenant } from '../authenticate.ts';
import type { App, Deps } from '../deps.ts';
import { BearerSecurity, problems, TenantId, TenantInputSchema, TenantSchema } from '../schemas.ts';

export function tenantJson(t: Tenant) {
  return {
    id: t.id,
    profile: t.profile,
    lifetimes: t.lifetimes,
    sessionLimit: t.sessionLimit,
    anomalyPolicy: t.anomalyPolicy,
    consentReturnUrl: t.consentReturnUrl ?? null,
    createdAt: new Date(t.createdAt).toISOString(),
    updatedAt: new Date(t.updatedAt).toISOString(),
  };
}

export async function adminTenantRoutes(app: App, deps: Deps): Promise<void> {
  const params = Type.Object({ id: TenantId });

  app.put(
    '/api/v1/admin/tenants/:id',
    {
      preHandler: requireAdmin(deps),
      schema: {
        tags: ['admin'],
        summary: 'Create or replace a tenant',
        description: 'Fields left out take the defaults of the profile (production when no profile is given).',
        security: BearerSecurity,
        params,
        body: TenantInputSchema,
        response: { 200: TenantSchema, ...problems(400, 401, 403) },
      },
    },
    async (request) => {
      assertAdminOf(request, request.params.id);
      const now = deps.clock.now();
      const previous = await deps.store.getTenant(request.params.id);
      let tenant: Tenant;
      try {
        tenant = buildTenant(request.params.id, request.body, now, previous ?? undefined);
      } catch (err) {
        if (err instanceof InvalidTenant) throw new BadRequest('invalid_tenant', err.message, { field: err.field });
        throw err;
      }
      const stored = await deps.store.putTenant(tenant);
      // This process sees the change at once; others within their 5 s tenant cache.
      forgetTenant(deps, stored.id);
      return tenantJson(stored);
    },
  );

  app.get(
    '/api/v1/admin/tenants/:id',
    {
      preHandler: requireAdmin(deps),
      schema: {
        tags: ['admin'],
        summary: 'The effective tenant object',
        security: BearerSecurity,
        params,
        response: { 200: TenantSchema, ...problems(401, 403, 404) },
      },
    },
    async (request) => {
      assertAdminOf(request, request.params.id);
      const tenant = await deps.store.getTenant(request.params.id);
      if (!tenant) throw new NotFound('tenant_not_found', `No tenant "${request.params.id}".`);
      return tenantJson(tenant);
    },
  );
}
