// An example platform application for tests: a Fastify server on 127.0.0.1 that uses the
// Tessera plugin (`tesseraApp` of @tessera/node). `/` needs a signed-in user and shows who it
// is; a form ends this application's session only; a link signs out everywhere.

import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import { MemoryAppSessionStore, tesseraApp } from '@tessera/node';
import { admin, type TestServer } from './harness.ts';
import { closeServer, listenLoopback } from './ports.ts';

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
  // Bound first: its URL goes into the registration at Tessera and into the plugin's options;
  // Fastify serves on that listening server (serverFactory) instead of listening itself.
  const { server, url } = await listenLoopback();
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
  if (reg.statusCode !== 200) {
    await closeServer(server);
    throw new Error(`app registration: ${reg.statusCode} ${reg.body}`);
  }

  const sessions = new MemoryAppSessionStore();
  const app = Fastify({
    logger: false,
    serverFactory: (handler) => {
      server.on('request', handler);
      return server;
    },
  });
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
  await app.ready();
  return {
    name,
    clientId,
    url,
    sessions,
    // Fastify closes only a server it made listen: this one is closed here, after the app.
    close: async () => {
      await app.close();
      await closeServer(server);
    },
  };
}
