// A relying party nobody here wrote: Auth.js (@auth/express) in a small Express application,
// registered at Tessera, with Tessera as an OpenID Connect provider (`type: 'oidc'`) and Auth.js's
// defaults apart from what any deployment must set: the issuer, the client id and secret, the
// session secret, and `trustHost` (Auth.js's way of saying which URL it is served at when
// AUTH_URL is not set). Auth.js serves /auth/* (sign-in page, callback, session, sign-out); `/`
// shows the session (its `user` with the email from Tessera's ID token) or says nobody is signed in.

import { randomBytes } from 'node:crypto';
import express from 'express';
import { admin, type TestServer } from './harness.ts';
import { closeServer, listenLoopback } from './ports.ts';

// @auth/express's type declarations pull in Preact's JSX types, which reference the DOM library
// and so change the global fetch types of the whole program; the module is therefore loaded by a
// specifier TypeScript does not resolve, with the little of its API this app uses typed here.
interface AuthExpress {
  ExpressAuth: (config: object) => express.RequestHandler;
  getSession: (req: express.Request, config: object) => Promise<{ user?: Record<string, unknown> } | null>;
}
const AUTH_EXPRESS: string = '@auth/express';

export interface AuthJsApp {
  clientId: string;
  url: string;
  close(): Promise<void>;
}

export async function startAuthJsApp(tessera: { server: TestServer; tesseraUrl: string; tenantId: string; orgSlug: string }, name: string): Promise<AuthJsApp> {
  // Bound first: its URL goes into the registration at Tessera.
  const { server, url } = await listenLoopback();
  const clientId = `${name}-${tessera.tenantId}`;
  const clientSecret = randomBytes(32).toString('base64url');
  const reg = await tessera.server.app.inject({
    method: 'PUT',
    url: `/api/v1/admin/apps/${clientId}`,
    headers: admin,
    payload: { tenantId: tessera.tenantId, redirectUris: [`${url}/auth/callback/tessera`], orgSlug: tessera.orgSlug, clientSecret },
  });
  if (reg.statusCode !== 200) {
    await closeServer(server);
    throw new Error(`registration: ${reg.statusCode} ${reg.body}`);
  }

  const { ExpressAuth, getSession } = (await import(AUTH_EXPRESS)) as AuthExpress;
  const config = {
    providers: [{ id: 'tessera', name: 'Tessera', type: 'oidc', issuer: `${tessera.tesseraUrl}/oidc`, clientId, clientSecret }],
    secret: randomBytes(32).toString('base64url'),
    trustHost: true,
  };
  const app = express();
  app.set('trust proxy', true);
  // @auth/express finds its base path with the first unnamed route parameter (Express 4's "/auth/*");
  // in Express 5 that is a regular expression's capture group.
  app.use(/^\/auth\/(.*)$/, ExpressAuth(config));
  app.get('/', async (req, res) => {
    const session = await getSession(req, config);
    if (!session?.user) {
      res.type('html').send('<!doctype html><title>Auth.js</title><p id="nobody">not signed in</p><a id="signin" href="/auth/signin">Sign in</a>');
      return;
    }
    res.type('html').send(`<!doctype html><title>Auth.js</title><pre id="user">${JSON.stringify(session.user).replace(/</g, '\\u003c')}</pre><p id="who">signed in</p>`);
  });
  server.on('request', app);
  return { clientId, url, close: () => closeServer(server) };
}
