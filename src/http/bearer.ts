// The bearer credential of a request, if it sent one.

import type { FastifyRequest } from 'fastify';

export function bearerToken(request: FastifyRequest): string | null {
  const h = request.headers.authorization;
  if (typeof h !== 'string') return null;
  const m = /^Bearer ([\x21-\x7e]{1,4096})$/i.exec(h.trim());
  return m ? (m[1] as string) : null;
}
