// A relying party nobody here wrote: Auth0's express-openid-connect (EOC) in a small Express
// application, registered at Tessera and configured as its README says, with its defaults apart
// from what any deployment must set: the issuer, the client id and secret, the base URL, the
// session secret, and
//
// - `authorizationParams.response_type: 'code'` (EOC's default is `id_token`, an implicit-style
//   response Tessera does not serve: see docs/api.md);
// - `idpLogout: true`, so that EOC's /logout is RP-initiated logout at Tessera (EOC's default
//   only ends its own session);
// - `backchannelLogout: { store }`: EOC requires a store for back-channel logout when its sessions
//   live in cookies (a Map here).
//
// Every page needs a signed-in user (EOC's default `authRequired`); `/` shows the ID token's
// claims; `/login-again` and `/login-max-age` sign in again with `prompt=login` and `max_age=0`.

import { randomBytes } from 'node:crypto';
import express from 'express';
import { auth, type ConfigParams } from 'express-openid-connect';
import { admin, type TestServer } from './harness.ts';
import { closeServer, listenLoopback } from './ports.ts';

export interface EocApp {
  clientId: string;
  url: string;
  /** Back-channel logout tokens EOC accepted (its store's entries). */
  loggedOut: Map<string, unknown>;
  close(): Promise<void>;
}

type BackchannelStore = NonNullable<Exclude<ConfigParams['backchannelLogout'], boolean | undefined>['store']>;

/** express-session's Store interface, as much as EOC uses (callbacks). */
class MapStore {
  readonly map = new Map<string, unknown>();
  get(key: string, cb: (err: unknown, value?: unknown) => void): void {
    cb(null, this.map.get(key));
  }
  set(key: string, value: unknown, cb: (err?: unknown) => void): void {
    this.map.set(key, value);
    cb();
  }
  destroy(key: string, cb: (err?: unknown) => void): void {
    this.map.delete(key);
    cb();
  }
}

export async function startEocApp(tessera: { server: TestServer; tesseraUrl: string; tenantId: string; orgSlug: string }, name: string): Promise<EocApp> {
  // Bound first: its URL goes into the registration at Tessera and into EOC's configuration.
  const { server, url } = await listenLoopback();
  const clientId = `${name}-${tessera.tenantId}`;
  const clientSecret = randomBytes(32).toString('base64url');
  const reg = await tessera.server.app.inject({
    method: 'PUT',
    url: `/api/v1/admin/apps/${clientId}`,
    headers: admin,
    payload: {
      tenantId: tessera.tenantId,
      redirectUris: [`${url}/callback`],
      postLogoutRedirectUris: [url],
      backchannelLogoutUri: `${url}/backchannel-logout`,
      orgSlug: tessera.orgSlug,
      clientSecret,
    },
  });
  if (reg.statusCode !== 200) {
    await closeServer(server);
    throw new Error(`registration: ${reg.statusCode} ${reg.body}`);
  }

  const store = new MapStore();
  const config: ConfigParams = {
    issuerBaseURL: `${tessera.tesseraUrl}/oidc`,
    baseURL: url,
    clientID: clientId,
    clientSecret,
    secret: randomBytes(32).toString('base64url'),
    authorizationParams: { response_type: 'code' },
    idpLogout: true,
    backchannelLogout: { store: store as unknown as BackchannelStore },
  };
  const app = express();
  app.use(auth(config));
  app.get('/', (req, res) => {
    const user = req.oidc.user ?? {};
    res.type('html').send(`<!doctype html><title>EOC</title><pre id="user">${JSON.stringify(user).replace(/</g, '\\u003c')}</pre><p id="who" data-sub="${String(user.sub ?? '')}">signed in</p>`);
  });
  app.get('/login-again', (_req, res) => res.oidc.login({ returnTo: '/', authorizationParams: { prompt: 'login' } }));
  app.get('/login-max-age', (_req, res) => res.oidc.login({ returnTo: '/', authorizationParams: { max_age: 0 } }));
  server.on('request', app);
  return {
    clientId,
    url,
    loggedOut: store.map,
    close: () => closeServer(server),
  };
}
