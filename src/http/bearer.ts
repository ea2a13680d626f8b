// The bearer credential of a request, if it sent one.

import type { FastifyRequest } from 'fastify';

const TOKEN_CHARS = /^[\x21-\x7e]+$/;

/**
 * `Authorization: Bearer <token>` (the scheme in any case, one space, 1–4096 visible ASCII
 * characters; surrounding whitespace ignored) → the token; anything else → null. Written out
 * rather than as one case-insensitive regular expression with a counted repetition, which cost
 * a microsecond per request on the session check.
 */
export function bearerToken(request: FastifyRequest): string | null {
  const h = request.headers.authorization;
  if (typeof h !== 'string') return null;
  const t = h.trim();
  if (t.length < 8 || t.length > 7 + 4096 || t.charCodeAt(6) !== 32) return null;
  const scheme = t.slice(0, 6);
  if (scheme !== 'Bearer' && scheme.toLowerCase() !== 'bearer') return null;
  const token = t.slice(7);
  return TOKEN_CHARS.test(token) ? token : null;
}
