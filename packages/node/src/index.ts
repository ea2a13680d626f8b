// @tessera/node: verify Tessera's userSessionTokens in resource servers (Fastify and Express
// middleware included), and the Fastify plugin that signs a platform application's users in
// through Tessera's OpenID provider.

import type { FastifyInstance, FastifyReply } from 'fastify';
import { bearerToken, problemOf, TesseraAuthError, verifySessionToken, type TesseraClaims, type VerifyOptions } from './verify.ts';

export { bearerToken, TesseraAuthError, verifySessionToken } from './verify.ts';
export type { IntrospectionOptions, TesseraAuthErrorCode, TesseraClaims, VerifyOptions } from './verify.ts';
export { MemoryAppSessionStore, tesseraApp } from './app-plugin.ts';
export type { AppSession, AppSessionStore, TesseraAppOptions } from './app-plugin.ts';

export interface MiddlewareOptions extends VerifyOptions {
  /** Let requests without a bearer token through with `tessera` null (a bad token is still refused). */
  optional?: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    tessera: TesseraClaims | null;
  }
}

async function authenticate(header: string | string[] | undefined, opts: MiddlewareOptions): Promise<TesseraClaims | null> {
  const token = bearerToken(header);
  if (token === null) {
    if (header === undefined && opts.optional) return null;
    throw new TesseraAuthError(header === undefined ? 'missing_token' : 'invalid_token', header === undefined ? 'No bearer token.' : 'The Authorization header is not a bearer token.');
  }
  return verifySessionToken(token, opts);
}

/**
 * Fastify: `fastify.register(tessera, opts)`. Every request of the registering instance (and its
 * children) is authenticated; `request.tessera` holds the verified claims. A refused token gets
 * 401 application/problem+json (503 when Tessera's keys or introspection cannot be reached).
 */
export async function tessera(fastify: FastifyInstance, opts: MiddlewareOptions): Promise<void> {
  fastify.decorateRequest('tessera', null);
  fastify.addHook('onRequest', async (request, reply: FastifyReply) => {
    try {
      request.tessera = await authenticate(request.headers.authorization, opts);
    } catch (err) {
      if (!(err instanceof TesseraAuthError)) throw err;
      const p = problemOf(err);
      return reply.code(p.status).headers(p.headers).send(p.body);
    }
  });
}
// Like fastify-plugin: the hook and decorator reach the instance that registers the plugin.
(tessera as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;
(tessera as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')] = '@tessera/node';

interface NodeRequestLike {
  headers: Record<string, string | string[] | undefined>;
  tessera?: TesseraClaims | null;
}
interface NodeResponseLike {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(body?: string): unknown;
}

/**
 * Express (or any connect-style stack): `app.use(tesseraExpress(opts))`; `req.tessera` holds the
 * verified claims; a refused token gets 401 application/problem+json.
 */
export function tesseraExpress(opts: MiddlewareOptions): (req: NodeRequestLike, res: NodeResponseLike, next: (err?: unknown) => void) => void {
  return (req, res, next) => {
    authenticate(req.headers.authorization, opts).then(
      (claims) => {
        req.tessera = claims;
        next();
      },
      (err: unknown) => {
        if (!(err instanceof TesseraAuthError)) return next(err);
        const p = problemOf(err);
        res.statusCode = p.status;
        for (const [k, v] of Object.entries(p.headers)) res.setHeader(k, v);
        res.end(p.body);
      },
    );
  };
}
