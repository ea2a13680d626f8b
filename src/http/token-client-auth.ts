// Who calls the token API (POST /api/v1/auth/revoke, RFC 7009; POST /api/v1/auth/introspect,
// RFC 7662), and the error objects these two endpoints answer (RFC 6749 §5.2) instead of problem
// documents, as generic OAuth clients expect:
//
// - a registered application (PUT /api/v1/admin/apps) with its secret: HTTP Basic
//   (`client_secret_basic`, id and secret form-urlencoded, RFC 6749 §2.3.1) or `client_id` and
//   `client_secret` in the form (`client_secret_post`) — one method only;
// - a public application (registered without a secret): `client_id` in the form;
// - an administrator: `Authorization: Bearer` with the admin credential or an admin user's token;
// - nobody (revocation only: whoever holds a token may end it).
//
// Failed client authentication is 401 `invalid_client` (with a WWW-Authenticate challenge of the
// scheme that was tried); an authenticated caller that may not introspect is 403
// `insufficient_scope`; a malformed request is 400 `invalid_request`.

import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { unsealClientSecret } from '../auth/federation/relying-party.ts';
import { TesseraError } from '../domain/errors.ts';
import { constantTimeEqual, hashSecret } from '../domain/secrets.ts';
import type { PlatformApp } from '../store/oidc-port.ts';
import { requireAdmin, type AdminScope } from './admin-auth.ts';
import type { Deps } from './deps.ts';

export type OAuthErrorCode = 'invalid_request' | 'invalid_client' | 'insufficient_scope' | 'server_error' | 'temporarily_unavailable';

export class OAuthError extends Error {
  readonly status: number;
  readonly error: OAuthErrorCode;
  /** The WWW-Authenticate challenge of a 401/403. */
  readonly challenge: string | undefined;
  constructor(status: number, error: OAuthErrorCode, description: string, challenge?: string) {
    super(description);
    this.status = status;
    this.error = error;
    this.challenge = challenge;
  }
}

export type TokenClient =
  | { kind: 'admin'; scope: AdminScope }
  | { kind: 'app'; app: PlatformApp; confidential: boolean }
  | { kind: 'anonymous' };

const BASIC_CHALLENGE = 'Basic realm="tessera", charset="UTF-8"';

/**
 * RFC 6749 §2.3.1: the id and the secret are form-urlencoded before they are joined. Anything
 * malformed (not base64, no colon, a broken percent-escape) is null — the caller's 401, never a
 * thrown URIError (500).
 */
export function parseBasic(header: string): { id: string; secret: string } | null {
  const m = /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(header.trim());
  if (!m) return null;
  const decoded = Buffer.from(m[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1) return null;
  try {
    const formDecode = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
    return { id: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) };
  } catch {
    return null;
  }
}

interface ClientFields {
  client_id?: string;
  client_secret?: string;
}

export async function authenticateTokenClient(deps: Deps, request: FastifyRequest, reply: FastifyReply, body: ClientFields): Promise<TokenClient> {
  const header = request.headers.authorization;
  const scheme = typeof header === 'string' ? (/^\s*(\S+)/.exec(header)?.[1] ?? '').toLowerCase() : null;
  if (scheme === 'bearer') {
    if (body.client_id !== undefined || body.client_secret !== undefined) throw new OAuthError(400, 'invalid_request', 'Use one way to authenticate: a bearer credential or client credentials, not both.');
    try {
      await requireAdmin(deps)(request, reply);
    } catch (err) {
      if (err instanceof TesseraError && err.status === 401) throw new OAuthError(401, 'invalid_client', 'The bearer credential is not a valid admin credential.', 'Bearer');
      if (err instanceof TesseraError && err.status === 403) throw new OAuthError(403, 'insufficient_scope', 'This needs the admin role.', 'Bearer error="insufficient_scope"');
      throw err;
    }
    return { kind: 'admin', scope: request.admin! };
  }
  let id: string | undefined;
  let secret: string | undefined;
  let challenge: string | undefined;
  if (scheme === 'basic') {
    challenge = BASIC_CHALLENGE;
    const basic = parseBasic(header as string);
    if (!basic) throw new OAuthError(401, 'invalid_client', 'The Basic credentials are malformed.', challenge);
    if (body.client_secret !== undefined) throw new OAuthError(400, 'invalid_request', 'Use one way to authenticate: HTTP Basic or client_secret in the form, not both.');
    if (body.client_id !== undefined && body.client_id !== basic.id) throw new OAuthError(400, 'invalid_request', 'client_id in the form differs from the one in HTTP Basic.');
    ({ id, secret } = basic);
  } else if (scheme !== null) {
    throw new OAuthError(401, 'invalid_client', 'Unsupported authentication scheme; use HTTP Basic, client_id/client_secret in the form, or an admin bearer credential.', BASIC_CHALLENGE);
  } else {
    id = body.client_id;
    secret = body.client_secret;
    if (id === undefined) {
      if (secret !== undefined) throw new OAuthError(400, 'invalid_request', 'client_secret without client_id.');
      return { kind: 'anonymous' };
    }
  }
  const app = await deps.store.oidc.getApp(id);
  if (!app) throw new OAuthError(401, 'invalid_client', 'Client authentication failed.', challenge);
  if (app.sealedClientSecret === null) {
    // A public client names itself; it has no secret to send.
    if (secret !== undefined && secret !== '') throw new OAuthError(401, 'invalid_client', 'Client authentication failed.', challenge);
    return { kind: 'app', app, confidential: false };
  }
  const expected = unsealClientSecret(deps.keys.clientSecrets, app.sealedClientSecret);
  if (secret === undefined || !constantTimeEqual(hashSecret(secret), hashSecret(expected))) {
    throw new OAuthError(401, 'invalid_client', 'Client authentication failed.', challenge);
  }
  return { kind: 'app', app, confidential: true };
}

/** The tenant whose tokens the caller may act on; null = every tenant; undefined = only the token's holder (anonymous). */
export function tenantOfClient(client: TokenClient): string | null | undefined {
  if (client.kind === 'admin') return client.scope.kind === 'platform' ? null : client.scope.tenantId;
  if (client.kind === 'app') return client.app.tenantId;
  return undefined;
}

/**
 * The error handler of the token API's scope: every error becomes an RFC 6749 §5.2 object
 * `{ "error", "error_description" }` — validation and parsing errors are `invalid_request`.
 */
export function oauthErrorHandler(err: FastifyError | OAuthError | TesseraError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  let status: number;
  let error: OAuthErrorCode;
  let description: string;
  if (err instanceof OAuthError) {
    ({ status, error } = err);
    description = err.message;
    if (err.challenge !== undefined) void reply.header('www-authenticate', err.challenge);
  } else {
    const s = err instanceof TesseraError ? err.status : err.validation ? 400 : (err.statusCode ?? 500);
    status = s >= 400 && s < 600 ? s : 500;
    if (status === 503) error = 'temporarily_unavailable';
    else if (status >= 500) error = 'server_error';
    else error = 'invalid_request';
    if (status >= 500) {
      request.log.error({ err }, 'token API error');
      description = status === 503 ? 'The service is temporarily unavailable; try again.' : 'An unexpected error occurred.';
    } else {
      const v = (err as FastifyError).validation?.[0];
      description = v
        ? v.keyword === 'additionalProperties'
          ? `unknown field ${String((v.params as { additionalProperty?: string }).additionalProperty)}`
          : `body${v.instancePath.replaceAll('/', '.')} ${v.message ?? 'is invalid'}`
        : err.message;
    }
    if (err instanceof TesseraError && err.retryAfter !== undefined) void reply.header('retry-after', String(err.retryAfter));
  }
  // RFC 6749 §5.2: error_description is printable ASCII without '"' and '\\'.
  const safe = description.replace(/["\\]/g, "'").replace(/[^\x20-\x7e]/g, '?');
  return reply.code(status).type('application/json').send({ error, error_description: safe });
}
