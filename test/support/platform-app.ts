// An example platform application for tests: a Fastify server on 127.0.0.1 that uses the
// Tessera plugin (`tesseraApp` of @tessera/node). `/` needs a signed-in user and shows who it
// is; a form ends this application's session only; a link signs out everywhere.

import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import { MemoryAppSessionStore, tesseraApp } from '@tessera/node';
import { admin, type TestServer } from './harness.ts';
import { freePort } from './tessera-process.ts';

export interface PlatformApp {
  name: string;
  clientId: string;
  url: string;
  sessions: MemoryAppSessionStore;
  close(): Promise<void>;
}

/** Registers the application at Tessera (PUT /api/v1/admin/apps) and starts it. */
export async function startPlatformApp(
  tessera: { server: TestServer; tesseraUrl: string; tenantId: string; orgSlug: string },
  name: string,
  opts: { confidential: boolean },
): Promise<PlatformApp> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const clientId = `${name}-${tessera.tenantId}`;
  const clientSecret = opts.confidential ? randomBytes(32).toString('base64url') : undefined;
  const reg = await tessera.server.app.inject({
    method: 'PUT',
    url: `/api/v1/admin/apps/${clientId}`,
    headers: admin,
    payload: {
      tenantId: tessera.tenantId,
      redirectUris: [`${url}/auth/callback`],
      orgSlug: tessera.orgSlug,
      backchannelLogoutUri: `${url}/auth/backchannel-logout`,
      ...(clientSecret ? { clientSecret } : {}),
    },
  });
  if (reg.statusCode !== 200) throw new Error(`app registration: ${reg.statusCode} ${reg.body}`);

  const sessions = new MemoryAppSessionStore();
  const app = Fastify({ logger: false });
  await app.register(tesseraApp, {
    issuer: `${tessera.tesseraUrl}/oidc`,
    clientId,
    ...(clientSecret ? { clientSecret } : {}),
    baseUrl: url,
    cookieSecret: randomBytes(32).toString('base64url'),
    allowInsecureHttp: true,
    afterLogoutPath: '/signed-out',
    sessions,
  });
  app.get('/', { preHandler: app.requireLogin }, async (request, reply) => {
    const s = request.appSession!;
    return reply.type('text/html').send(`<!doctype html><html><head><title>${name}</title></head><body>
<h1 id="who" data-sub="${s.sub}" data-sid="${s.sid ?? ''}">${name}: signed in as ${s.email ?? s.sub}</h1>
<form method="post" action="/auth/logout"><button id="logout" type="submit">Sign out of ${name}</button></form>
<a id="everywhere" href="/auth/logout/everywhere">Sign out everywhere</a></body></html>`);
  });
  app.get('/signed-out', async (_request, reply) =>
    reply.type('text/html').send(`<!doctype html><html><head><title>${name}</title></head><body><h1 id="signed-out-of-app">Signed out of ${name}</h1></body></html>`),
  );
  await app.listen({ host: '127.0.0.1', port });
  return { name, clientId, url, sessions, close: () => app.close() };
}
