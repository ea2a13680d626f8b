// The peer: a Fastify app with @fastify/session and connect-redis, the usual Node stack for
// server sessions. It checks a session cookie the usual way: one Redis GET per request.

import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import { RedisStore } from 'connect-redis';
import Fastify from 'fastify';
import { createClient } from 'redis';

const port = Number(process.env.PORT ?? 0);
const prefix = process.env.PREFIX ?? 'bench-peer:';
const client = createClient({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
client.on('error', () => {}); // reconnects by itself; a dropped proxy connection is not fatal
await client.connect();

const app = Fastify({ logger: false });
await app.register(fastifyCookie);
await app.register(fastifySession, {
  secret: 'a-peer-session-secret-of-at-least-32-chars',
  cookieName: 'sessionId',
  cookie: { secure: false, httpOnly: true, sameSite: 'strict', maxAge: 900_000 },
  saveUninitialized: false,
  rolling: false,
  store: new RedisStore({ client, prefix, ttl: 900 }),
});

app.post('/login', async (request) => {
  await request.session.regenerate();
  request.session.set('userId' as never, 'u-1' as never);
  request.session.set('tenantId' as never, 'bench' as never);
  return { ok: true };
});

app.get('/api/v1/session', async (request, reply) => {
  const userId = request.session.get('userId' as never) as string | undefined;
  if (!userId) return reply.code(401).send({ error: 'unauthenticated' });
  return { userId, sessionId: request.session.sessionId };
});

app.addHook('onClose', async () => {
  // quit() rejects when the connection is already gone (a delay proxy stopped first): not fatal.
  await client.quit().catch(() => undefined);
});

const address = await app.listen({ host: '127.0.0.1', port });
process.stdout.write(`listening ${address}\n`);
process.on('SIGTERM', () => {
  void app.close().catch(() => undefined).finally(() => process.exit(0));
});
