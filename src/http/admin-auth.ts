// The admin guard (SPEC 10). Two kinds of administrator:
// - the bootstrap credential `Authorization: Bearer $TESSERA_ADMIN_TOKEN` (compared in constant
//   time through its hash): platform-wide, every tenant;
// - a user with the `admin` role, authenticated like any API call (bearer token or cookie with
//   XSRF): their own tenant only. Roles are read from the store on every admin call, so taking
//   the role away takes effect at once.

import type { FastifyReply, FastifyRequest } from 'fastify';
import { Forbidden, Unauthorized } from '../domain/errors.ts';
import { constantTimeEqual, hashSecret } from '../domain/secrets.ts';
import { authenticate } from './authenticate.ts';
import { bearerToken } from './bearer.ts';
import type { Deps } from './deps.ts';

export { bearerToken } from './bearer.ts';

export type AdminScope = { kind: 'platform' } | { kind: 'tenant'; tenantId: string; userId: string };

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
      request.admin = { kind: 'platform' };
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
    if (!user || !user.roles.includes(ADMIN_ROLE)) throw new Forbidden('admin_required', 'This needs the admin role.');
    request.admin = { kind: 'tenant', tenantId: user.tenantId, userId: user.id };
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

/** Only the platform administrator (bootstrap credential) may do this. */
export function assertPlatformAdmin(request: FastifyRequest): void {
  if (request.admin?.kind !== 'platform') throw new Forbidden('platform_admin_required', 'This needs the platform admin credential.');
}
