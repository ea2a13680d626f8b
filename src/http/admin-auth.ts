// The admin guard (SPEC 10): `Authorization: Bearer $TESSERA_ADMIN_TOKEN`, compared in constant
// time through its hash. Admin-role user sessions are accepted here too once sessions exist.

import type { FastifyRequest } from 'fastify';
import { Unauthorized } from '../domain/errors.ts';
import { constantTimeEqual, hashSecret } from '../domain/secrets.ts';
import type { Deps } from './deps.ts';

export function bearerToken(request: FastifyRequest): string | null {
  const h = request.headers.authorization;
  if (typeof h !== 'string') return null;
  const m = /^Bearer ([\x21-\x7e]{1,4096})$/i.exec(h.trim());
  return m ? (m[1] as string) : null;
}

export function requireAdmin(deps: Deps) {
  return async function adminGuard(request: FastifyRequest): Promise<void> {
    const token = bearerToken(request);
    if (token !== null && deps.adminTokenHash !== null && constantTimeEqual(hashSecret(token), deps.adminTokenHash)) {
      return;
    }
    throw new Unauthorized('admin_required', 'An admin credential is required.');
  };
}
