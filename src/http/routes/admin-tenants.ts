// Tenants (docs/api.md §Tenants and profiles, §Administration): provisioning one and reading back
// the effective object (profile defaults filled in), listing them, deleting one (with `force`,
// everything of it).

import { Type } from 'typebox';
import { BadRequest, Conflict, NotFound } from '../../domain/errors.ts';
import { buildTenant, degradationOf, InvalidTenant, PLATFORM_TENANT, type Tenant } from '../../domain/tenant.ts';
import { emit } from '../../events/bus.ts';
import { removeTenant } from '../../flows/tenant-delete.ts';
import { actorOf, assertAdminOf, assertPlatformAdmin, requireAdmin } from '../admin-auth.ts';
import { forgetTenant, originOf } from '../authenticate.ts';
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
    degradation: degradationOf(t),
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
        operationId: 'putTenant',
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
        operationId: 'getTenant',
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

  app.get(
    '/api/v1/admin/tenants',
    {
      preHandler: requireAdmin(deps),
      schema: {
        tags: ['admin'],
        operationId: 'listTenants',
        summary: 'List tenants',
        description: 'Every tenant for a platform administrator, ordered by id; a tenant administrator gets their own.',
        security: BearerSecurity,
        response: { 200: Type.Object({ items: Type.Array(TenantSchema) }, { title: 'TenantList' }), ...problems(401, 403) },
      },
    },
    async (request) => {
      const scope = request.admin;
      if (scope?.kind === 'tenant') {
        const own = await deps.store.getTenant(scope.tenantId);
        return { items: own ? [tenantJson(own)] : [] };
      }
      return { items: (await deps.store.listTenants()).map(tenantJson) };
    },
  );

  app.delete(
    '/api/v1/admin/tenants/:id',
    {
      preHandler: requireAdmin(deps),
      schema: {
        tags: ['admin'],
        operationId: 'deleteTenant',
        summary: 'Delete a tenant',
        description:
          'Platform administrators only. While the tenant has users the answer is 409 `tenant_not_empty`, unless `force=true`, which ends every session of the tenant and deletes its users (with their consents) first. Then its queued bank work (status checks, terminations, purges), identity links, organizations, applications and banks go, and the tenant record last, once the audit log has this deletion\'s events (waiting at most 5 s). The reserved tenant `platform` cannot be deleted (409 `tenant_reserved`). Audit records stay; the event is `tenant.deleted`.',
        security: BearerSecurity,
        params,
        querystring: Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
        response: {
          200: Type.Object(
            {
              revoked: Type.Integer(),
              usersDeleted: Type.Integer(),
              consentsDeleted: Type.Integer(),
              organizationsDeleted: Type.Integer(),
              appsDeleted: Type.Integer(),
              banksDeleted: Type.Integer(),
              identitiesDeleted: Type.Integer(),
              bankWorkDropped: Type.Integer(),
            },
            { title: 'TenantDeleted' },
          ),
          ...problems(400, 401, 403, 404, 409),
        },
      },
    },
    async (request) => {
      assertPlatformAdmin(request);
      const id = request.params.id;
      if (id === PLATFORM_TENANT) throw new Conflict('tenant_reserved', 'The platform tenant cannot be deleted.');
      const tenant = await deps.store.getTenant(id);
      if (!tenant) throw new NotFound('tenant_not_found', `No tenant "${id}".`);
      const force = request.query.force === true;
      const first = await deps.store.listUsers({ tenantId: id, limit: 1 });
      if (first.items.length > 0 && !force) {
        throw new Conflict('tenant_not_empty', `The tenant "${id}" still has users; delete them first, or pass force=true to end and delete everything of it.`);
      }
      const now = deps.clock.now();
      const origin = originOf(request);
      const removed = await removeTenant(deps, id, now, origin);
      emit(
        deps,
        {
          type: 'tenant.deleted',
          time: now,
          tenantId: id,
          userId: null,
          sessionHandle: null,
          details: {
            force,
            sessionsEnded: removed.revoked,
            usersDeleted: removed.usersDeleted,
            organizationsDeleted: removed.organizationsDeleted,
            appsDeleted: removed.appsDeleted,
            banksDeleted: removed.banksDeleted,
            bankWorkDropped: removed.bankWorkDropped,
            actor: actorOf(request),
          },
        },
        origin,
      );
      // The audit pipeline appends events only of tenants it finds in the store (it must not open
      // chains for any tenant id a request names). So the tenant record goes only once this
      // deletion's events — its sessions' ends, tenant.deleted — are appended, or after a bounded
      // wait (a store too slow to append them would also fail this delete).
      await within(AUDIT_WAIT_MS, deps.monitor.flush());
      await deps.store.deleteTenant(id);
      forgetTenant(deps, id);
      return removed;
    },
  );
}

/** How long deleting a tenant waits for its audit records before the tenant record goes. */
const AUDIT_WAIT_MS = 5000;

async function within(ms: number, work: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([work, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
