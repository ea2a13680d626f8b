// The Fastify floor for bench/post-shell.ts and bench/post-shell-ab.ts: a hello world answering
// GET /api/v1/session, and a POST /refresh with the refresh route's body and response schemas
// answering a constant pair. Run as a program it listens on PORT.

import Fastify, { type FastifyInstance } from 'fastify';
import { PAIR as pair } from './post-shell-stubs.ts';

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
