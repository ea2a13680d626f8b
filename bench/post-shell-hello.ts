// The Fastify floor for bench/post-shell.ts and bench/post-shell-ab.ts: a hello world answering
// GET /api/v1/session, and a POST /refresh with the refresh route's body and response schemas
// answering a constant pair. Run as a program it listens on PORT. Beside it, for
// bench/post-shell-ab.ts, the same POST on `node:http` alone (nodeFloor): what a server without a
// framework spends on it.

import Fastify, { type FastifyInstance } from 'fastify';
import { createServer, type Server } from 'node:http';
import { randomRequestId } from '../src/http/request-id.ts';
import { PAIR as pair } from './post-shell-stubs.ts';

/**
 * The refresh POST on `node:http` with no framework: the body read from the request stream and
 * parsed, its one field checked, the constant pair written with the six headers Tessera's answer
 * has (its two random ids included), not yet listening.
 */
export function nodeFloor(): Server {
  return createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      const parsed = JSON.parse(body) as { refreshToken?: unknown };
      if (typeof parsed.refreshToken !== 'string') {
        res.statusCode = 400;
        res.end();
        return;
      }
      const text = JSON.stringify(pair);
      res.writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(text),
        'x-content-type-options': 'nosniff',
        'cache-control': 'no-store',
        'x-request-id': randomRequestId(),
        'x-correlation-id': randomRequestId(),
      });
      res.end(text);
    });
  });
}

/** The floor's app, not yet listening. */
export function fastifyFloor(): FastifyInstance {
  const app = Fastify({ logger: false });
  const str = { type: 'string' };
  app.get('/api/v1/session', async () => ({ hello: 'world' }));
  app.post(
    '/refresh',
    {
      schema: {
        body: { type: 'object', properties: { refreshToken: { type: 'string', minLength: 1, maxLength: 512 } }, required: ['refreshToken'], additionalProperties: false },
        response: {
          200: {
            type: 'object',
            properties: { expires_in: { type: 'integer' }, token_type: str, scope: str, customerId: str, tenantId: str, userSessionToken: str, refreshToken: str, sessionId: str },
          },
        },
      },
    },
    async () => pair,
  );
  return app;
}

if (import.meta.main) await fastifyFloor().listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
