// The admin guard (docs/api.md §Administration). Two kinds of administrator:
// - the bootstrap credential `Authorization: Bearer $TESSERA_ADMIN_TOKEN` (compared in constant
//   time through its hash): platform-wide, every tenant;
// - a user with the `admin` role, authenticated like any API call (bearer token or cookie with
//   XSRF): their own tenant only — except users of the reserved tenant `platform`, who act on
//   every tenant like the bootstrap credential, under their own identity. Roles are read from the
//   store on every admin call, so taking the role away takes effect at once.

import type { FastifyReply, FastifyRequest } from 'fastify';
import { BadRequest, Forbidden, Unauthorized } from '../domain/errors.ts';
import { constantTimeEqual, hashSecret } from '../domain/secrets.ts';
import { PLATFORM_TENANT } from '../domain/tenant.ts';
import { authenticate } from './authenticate.ts';
import { bearerToken } from './bearer.ts';
import type { Deps } from './deps.ts';

export { bearerToken } from './bearer.ts';

/** Who acts: a user of some tenant, or (null) the bootstrap credential. */
export interface AdminUser {
  tenantId: string;
  userId: string;
}

export type AdminScope = { kind: 'platform'; user: AdminUser | null } | ({ kind: 'tenant' } & AdminUser);

export { PLATFORM_TENANT };

declare module 'fastify' {
  interface FastifyRequest {
    admin: AdminScope | null;
  }
}

export const ADMIN_ROLE = 'admin';

export function requireAdmin(deps: Deps) {
  const asUser = authenticate(deps, { strict: true });
  return async function adminGuard(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const token = bearerToken(request);
    if (token !== null && deps.adminTokenHash !== null && constantTimeEqual(hashSecret(token), deps.adminTokenHash)) {
      request.admin = { kind: 'platform', user: null };
      return;
    }
    const hasSessionCredential = token !== null || request.headers.cookie !== undefined;
    if (!hasSessionCredential) throw new Unauthorized('admin_required', 'An admin credential is required.');
    try {
      await asUser(request, reply);
    } catch (err) {
      if (err instanceof Unauthorized) throw new Unauthorized('admin_required', 'An admin credential is required.');
      throw err;
    }
    const { session } = request.auth!;
    const user = session.userId === null ? null : await deps.store.getUser(session.tenantId, session.userId);
    if (!user || !user.roles.includes(ADMIN_ROLE) || user.disabled === true) throw new Forbidden('admin_required', 'This needs the admin role.');
    request.admin =
      user.tenantId === PLATFORM_TENANT
        ? { kind: 'platform', user: { tenantId: user.tenantId, userId: user.id } }
        : { kind: 'tenant', tenantId: user.tenantId, userId: user.id };
  };
}

/** Throws 403 unless the administrator may act on `tenantId`. */
export function assertAdminOf(request: FastifyRequest, tenantId: string): void {
  const scope = request.admin;
  if (scope === null) throw new Unauthorized('admin_required', 'An admin credential is required.');
  if (scope.kind === 'tenant' && scope.tenantId !== tenantId) {
    throw new Forbidden('other_tenant', 'A tenant administrator acts on their own tenant only.');
  }
}

/** Only a platform administrator (the bootstrap credential or an admin of `platform`) may do this. */
export function assertPlatformAdmin(request: FastifyRequest): void {
  if (request.admin?.kind !== 'platform') throw new Forbidden('platform_admin_required', 'This needs a platform administrator.');
}

/** The user behind an admin scope, or null for the bootstrap credential. */
export function adminUserOf(scope: AdminScope): AdminUser | null {
  return scope.kind === 'platform' ? scope.user : { tenantId: scope.tenantId, userId: scope.userId };
}

/**
 * Who did it, for audit details: `{ "by": "bootstrap" }`, or the administrator's own identity
 * `{ "by": "user", "tenantId", "userId" }`.
 */
export function actorOf(request: FastifyRequest): Record<string, string> {
  const who = request.admin === null ? null : adminUserOf(request.admin);
  return who === null ? { by: 'bootstrap' } : { by: 'user', tenantId: who.tenantId, userId: who.userId };
}

/**
 * The tenant an admin listing is about: the one asked for (which the administrator must be
 * allowed), else a tenant administrator's own; a platform administrator must name one.
 */
export function tenantOfListing(request: FastifyRequest, asked: string | undefined): string {
  if (asked !== undefined) {
    assertAdminOf(request, asked);
    return asked;
  }
  const scope = request.admin;
  if (scope?.kind === 'tenant') return scope.tenantId;
  throw new BadRequest('invalid_request', 'tenantId is required.');
}
