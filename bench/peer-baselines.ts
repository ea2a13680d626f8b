// Baseline servers for the benchmark's ratios, each the least a session check could cost:
//   PEER=hello      a Fastify hello world (the ceiling of this runtime and machine)
//   PEER=redis-get  a Fastify route that does one Redis GET of a session value per request
//   PEER=jose       a Fastify route that verifies an EdDSA JWT with jose per request
// Environment: PORT, PEER, REDIS_URL, PREFIX. GET /api/v1/session answers; POST /login gives
// what the route needs (a cookie or a token).

import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import { SignJWT, generateKeyPair, jwtVerify } from 'jose';
import { createClient } from 'redis';

const port = Number(process.env.PORT ?? 0);
const peer = process.env.PEER ?? 'hello';
const prefix = process.env.PREFIX ?? 'bench-baseline:';
const app = Fastify({ logger: false });

if (peer === 'hello') {
  app.get('/api/v1/session', async () => ({ hello: 'world' }));
  app.post('/login', async () => ({ ok: true }));
} else if (peer === 'redis-get') {
  const client = createClient({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
  client.on('error', () => {}); // reconnects by itself; a dropped proxy connection is not fatal
  await client.connect();
  // quit() rejects when the connection is already gone (a delay proxy stopped first): not fatal.
  app.addHook('onClose', async () => void (await client.quit().catch(() => undefined)));
  app.post('/login', async (_req, reply) => {
    const sid = randomBytes(16).toString('base64url');
    await client.set(`${prefix}${sid}`, JSON.stringify({ userId: 'u-1', tenantId: 'bench' }), { EX: 900 });
    return reply.header('set-cookie', `sid=${sid}; Path=/; HttpOnly`).send({ ok: true });
  });
  app.get('/api/v1/session', async (request, reply) => {
    const m = /(?:^|;\s*)sid=([A-Za-z0-9_-]+)/.exec(request.headers.cookie ?? '');
    const raw = m ? await client.get(`${prefix}${m[1]}`) : null;
    if (!raw) return reply.code(401).send({ error: 'unauthenticated' });
    return JSON.parse(raw) as object;
  });
} else if (peer === 'jose') {
  const { publicKey, privateKey } = await generateKeyPair('EdDSA');
  app.post('/login', async () => ({
    token: await new SignJWT({ tid: 'bench' }).setProtectedHeader({ alg: 'EdDSA' }).setSubject('u-1').setExpirationTime('1h').sign(privateKey),
  }));
  app.get('/api/v1/session', async (request, reply) => {
    const m = /^Bearer (.+)$/.exec(request.headers.authorization ?? '');
    if (!m) return reply.code(401).send({ error: 'unauthenticated' });
    try {
      const { payload } = await jwtVerify(m[1] as string, publicKey);
      return { userId: payload.sub, tenantId: payload.tid };
    } catch {
      return reply.code(401).send({ error: 'unauthenticated' });
    }
  });
} else {
  throw new Error(`unknown PEER ${peer}`);
}

const address = await app.listen({ host: '127.0.0.1', port });
process.stdout.write(`listening ${address}\n`);
process.on('SIGTERM', () => void app.close().catch(() => undefined).finally(() => process.exit(0)));
