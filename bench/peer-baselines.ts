// Baseline servers for the benchmark's ratios, each the least a session check could cost:
//   PEER=hello      a Fastify hello world (the ceiling of this runtime and machine)
//   PEER=redis-get  a Fastify route that does one Redis GET of a session value per request
//   PEER=jose       a Fastify route that verifies an EdDSA JWT with jose per request
//   PEER=rotation-floor  the least a refresh-token rotation could cost on this stack (goal 2's
//                   floor): POST /api/v1/auth/token/refresh { refreshToken } with Fastify's body and
//                   answer schemas, the presented token's HMAC, ONE Redis command that consumes it
//                   and stores its successor atomically (RENAME of the hash's key to the successor's;
//                   it does not read the record back, so the claims signed are constant — a read in
//                   the same call, e.g. a script doing GET + RENAME, would cost a little more),
//                   an Ed25519 (libsodium) signature of a JWT of Tessera's claims, a new 256-bit
//                   token and its HMAC, an answer of Tessera's shape — and nothing else (no grace
//                   answer, no reuse detection, no audit, no revocation feed, no log line, no metrics).
//                   FLOOR_WITHOUT=redis,sign leaves parts out, to price each (redis: a Map in the
//                   process instead of the RENAME; sign: a fixed signature instead of Ed25519's).
// Environment: PORT, PEER, REDIS_URL, PREFIX. GET /api/v1/session answers; POST /login gives
// what the route needs (a cookie or a token).

import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
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
} else if (peer === 'rotation-floor') {
  const sodium = createRequire(import.meta.url)('sodium-native') as {
    crypto_sign_keypair(pk: Buffer, sk: Buffer): void;
    crypto_sign_detached(sig: Buffer, m: Buffer, sk: Buffer): void;
  };
  const pk = Buffer.alloc(32);
  const sk = Buffer.alloc(64);
  sodium.crypto_sign_keypair(pk, sk);
  const without = new Set((process.env.FLOOR_WITHOUT ?? '').split(',').filter(Boolean));
  const memory = new Map<string, string>();
  const hmacKey = createSecretKey(randomBytes(32));
  const hashOf = (token: string) => createHmac('sha256', hmacKey).update(token).digest('base64url');
  const client = createClient({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
  client.on('error', () => {});
  await client.connect();
  app.addHook('onClose', async () => void (await client.quit().catch(() => undefined)));
  const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'JWT', kid: 'k1' })).toString('base64url');
  const record = JSON.stringify({ sessionId: 's', userId: 'u-1', tenantId: 'bench', scope: 'session role:user' });
  /** An answer of Tessera's shape: a signed session token and the successor refresh token. */
  const pair = (sessionId: string) => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'http://127.0.0.1', sub: 'u-1', tid: 'bench', sid: sessionId, scope: 'session role:user', iat: now, exp: now + 1800, jti: randomBytes(16).toString('base64url') };
    const input = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    const sig = Buffer.alloc(64);
    if (!without.has('sign')) sodium.crypto_sign_detached(sig, Buffer.from(input), sk);
    const refreshToken = randomBytes(32).toString('base64url');
    return { refreshToken, body: { expires_in: 1800, token_type: 'Bearer', scope: 'session role:user', customerId: 'u-1', tenantId: 'bench', userSessionToken: `${input}.${sig.toString('base64url')}`, refreshToken, sessionId } };
  };
  const answer = {
    200: {
      type: 'object',
      properties: {
        expires_in: { type: 'integer' }, token_type: { type: 'string' }, scope: { type: 'string' }, customerId: { type: 'string' },
        tenantId: { type: 'string' }, userSessionToken: { type: 'string' }, refreshToken: { type: 'string' }, sessionId: { type: 'string' },
      },
    },
    401: { type: 'object', properties: { error: { type: 'string' } } },
  };
  app.post('/login', async () => {
    const p = pair(randomBytes(16).toString('base64url'));
    if (without.has('redis')) memory.set(hashOf(p.refreshToken), record);
    else await client.set(`${prefix}${hashOf(p.refreshToken)}`, record, { EX: 2700 });
    return p.body;
  });
  app.post('/api/v1/auth/token/refresh', {
    schema: { body: { type: 'object', required: ['refreshToken'], additionalProperties: false, properties: { refreshToken: { type: 'string', minLength: 43, maxLength: 43 } } }, response: answer },
  }, async (request, reply) => {
    const presented = hashOf((request.body as { refreshToken: string }).refreshToken);
    const p = pair('s');
    if (without.has('redis')) {
      const r = memory.get(presented);
      if (r === undefined) return reply.code(401).send({ error: 'invalid_grant' });
      memory.delete(presented);
      memory.set(hashOf(p.refreshToken), r);
      return p.body;
    }
    try {
      await client.rename(`${prefix}${presented}`, `${prefix}${hashOf(p.refreshToken)}`);
    } catch {
      return reply.code(401).send({ error: 'invalid_grant' });
    }
    return p.body;
  });
} else {
  throw new Error(`unknown PEER ${peer}`);
}

const address = await app.listen({ host: '127.0.0.1', port });
process.stdout.write(`listening ${address}\n`);
process.on('SIGTERM', () => void app.close().catch(() => undefined).finally(() => process.exit(0)));
