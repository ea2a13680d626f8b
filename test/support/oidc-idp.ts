// An external identity provider for tests: the real `oidc-provider` (panva) on 127.0.0.1 and a
// port the kernel chose (bound before the provider is configured with its issuer URL), with test
// accounts and interactions a browser can complete — a login form that checks a password, and a
// consent form with "Allow" and "Deny". Interactions are ours (the package's devInteractions
// accept any login and are off here), as a production provider would have them.
//
// Test switches on the token endpoint (`tamper`): rewrite the ID token in the token response,
// either breaking its signature or re-signing it with the provider's own key and another nonce.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { decodeJwt, decodeProtectedHeader, importJWK, SignJWT } from 'jose';
import Provider from 'oidc-provider';
import { closeServer, listenLoopback } from './ports.ts';

export interface TestAccount {
  password: string;
  email: string;
  emailVerified: boolean;
}

export type Tamper = 'none' | 'signature' | 'nonce';

export interface TestIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  accounts: Record<string, TestAccount>;
  /** What the token endpoint does to the ID token of the next responses. */
  tamper: Tamper;
  /** How many token requests the provider answered. */
  tokenRequests: number;
  /** A back-channel logout token signed by this provider for its client (claims override the defaults). */
  signLogoutToken(claims: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

export const DEFAULT_ACCOUNTS: Record<string, TestAccount> = {
  alice: { password: 'wonderland', email: 'alice@example.com', emailVerified: true },
  bob: { password: 'builder', email: 'bob@example.com', emailVerified: true },
  root: { password: 'toor-toor', email: 'root@example.com', emailVerified: true },
  mallory: { password: 'unverified', email: 'root@example.com', emailVerified: false },
};

export interface IdpOptions {
  /** Redirect URIs Tessera uses (its callbacks). */
  redirectUris: string[];
  accounts?: Record<string, TestAccount>;
}

function html(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let raw = '';
  for await (const chunk of req) raw += (chunk as Buffer).toString('utf8');
  return new URLSearchParams(raw);
}

/** oidc-provider's storage adapter interface, in memory (one store per provider instance). */
function memoryAdapter() {
  const data = new Map<string, { payload: Record<string, unknown>; expiresAt: number }>();
  const live = (key: string) => {
    const e = data.get(key);
    if (e && e.expiresAt <= Date.now()) {
      data.delete(key);
      return undefined;
    }
    return e?.payload;
  };
  return class MemoryAdapter {
    readonly name: string;
    constructor(name: string) {
      this.name = name;
    }
    key(id: string) {
      return `${this.name}:${id}`;
    }
    async upsert(id: string, payload: Record<string, unknown>, expiresIn: number) {
      data.set(this.key(id), { payload, expiresAt: Date.now() + (expiresIn || 3600) * 1000 });
    }
    async find(id: string) {
      return live(this.key(id));
    }
    async findByUid(uid: string) {
      for (const [k] of data) {
        const p = k.startsWith(`${this.name}:`) ? live(k) : undefined;
        if (p && p.uid === uid) return p;
      }
      return undefined;
    }
    async findByUserCode(userCode: string) {
      for (const [k] of data) {
        const p = k.startsWith(`${this.name}:`) ? live(k) : undefined;
        if (p && p.userCode === userCode) return p;
      }
      return undefined;
    }
    async consume(id: string) {
      const p = live(this.key(id));
      if (p) p.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string) {
      data.delete(this.key(id));
    }
    async revokeByGrantId(grantId: string) {
      for (const [k, e] of data) if (e.payload.grantId === grantId) data.delete(k);
    }
  };
}

export async function startTestIdp(opts: IdpOptions): Promise<TestIdp> {
  // Bound first: the issuer URL (with its port) goes into the provider's configuration.
  const { server, url: issuer } = await listenLoopback();
  const accounts = opts.accounts ?? DEFAULT_ACCOUNTS;
  const clientId = 'tessera-test';
  const clientSecret = randomBytes(24).toString('base64url');

  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privateJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'idp-key-1', use: 'sig', alg: 'RS256' };
  const signingKey = await importJWK(privateJwk, 'RS256');

  const provider = new Provider(issuer, {
    adapter: memoryAdapter(),
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: opts.redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [privateJwk] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    features: { devInteractions: { enabled: false }, userinfo: { enabled: true } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    pkce: { required: () => true },
    ttl: { AccessToken: 600, AuthorizationCode: 60, Grant: 3600, IdToken: 600, Interaction: 600, Session: 3600 },
    findAccount: (_ctx, id) => {
      const a = accounts[id];
      if (!a) return undefined;
      return {
        accountId: id,
        claims: () => ({ sub: id, email: a.email, email_verified: a.emailVerified }),
      };
    },
  });
  // Nothing to log in tests; oidc-provider reports server errors through Koa's 'error' event.
  provider.on('server_error', () => undefined);
  const callback = provider.callback();

  const idp: TestIdp = {
    issuer,
    clientId,
    clientSecret,
    accounts,
    tamper: 'none',
    tokenRequests: 0,
    signLogoutToken: async (claims) =>
      new SignJWT({
        iss: issuer,
        aud: clientId,
        iat: Math.floor(Date.now() / 1000),
        events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
        jti: randomBytes(8).toString('hex'),
        ...claims,
      })
        .setProtectedHeader({ alg: 'RS256', kid: 'idp-key-1', typ: 'logout+jwt' })
        .sign(signingKey),
    close: async () => {
      await closeServer(server);
    },
  };

  async function interaction(req: IncomingMessage, res: ServerResponse, uid: string, abort: boolean): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) throw new Error('interaction mismatch');
    const prompt = details.prompt.name;
    if (req.method === 'GET' && abort) {
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User aborted interaction' }, { mergeWithLastSubmission: false });
      return;
    }
    if (req.method === 'GET') {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      if (prompt === 'login') {
        res.end(
          html(
            'Sign in to the test provider',
            `<form method="post" action="/interaction/${uid}">
              <label>Login <input name="login" autocomplete="username" autofocus></label>
              <label>Password <input name="password" type="password" autocomplete="current-password"></label>
              <button type="submit" name="action" value="login">Sign in</button>
            </form>`,
          ),
        );
      } else {
        res.end(
          html(
            'Allow Tessera to know who you are?',
            `<form method="post" action="/interaction/${uid}">
              <button type="submit" name="action" value="allow">Allow</button>
              <button type="submit" name="action" value="deny">Deny</button>
            </form>`,
          ),
        );
      }
      return;
    }
    const form = await readForm(req);
    const action = form.get('action');
    if (prompt === 'login' && action === 'login') {
      const login = form.get('login') ?? '';
      const account = accounts[login];
      if (!account || account.password !== form.get('password')) {
        res.statusCode = 401;
        res.setHeader('content-type', 'text/html; charset=utf-8');
        res.end(html('Wrong login or password', `<a href="/interaction/${uid}">Try again</a>`));
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
      return;
    }
    if (prompt === 'consent' && action === 'deny') {
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User denied consent' }, { mergeWithLastSubmission: false });
      return;
    }
    if (prompt === 'consent' && action === 'allow') {
      const accountId = details.session?.accountId;
      if (!accountId) throw new Error('consent without a login');
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId, clientId: String(details.params.client_id) });
      if (!grant) throw new Error('grant not found');
      const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    res.statusCode = 400;
    res.end('bad interaction');
  }

  /** Rewrites the ID token of a token response according to `idp.tamper`. */
  async function tamperedBody(body: string): Promise<string> {
    const json = JSON.parse(body) as { id_token?: string };
    if (typeof json.id_token !== 'string') return body;
    const [h, p, s] = json.id_token.split('.') as [string, string, string];
    if (idp.tamper === 'signature') {
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
      // A claim nothing else looks at: only the signature check can notice.
      claims.acr = 'tampered';
      json.id_token = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
    } else if (idp.tamper === 'nonce') {
      const claims = decodeJwt(json.id_token);
      const header = decodeProtectedHeader(json.id_token);
      json.id_token = await new SignJWT({ ...claims, nonce: 'not-the-nonce-tessera-sent' })
        .setProtectedHeader({ alg: 'RS256', kid: header.kid ?? 'idp-key-1' })
        .sign(signingKey);
    }
    return JSON.stringify(json);
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', issuer);
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(\/abort)?$/.exec(url.pathname);
    if (m) {
      interaction(req, res, m[1] as string, m[2] !== undefined).catch((err: unknown) => {
        res.statusCode = 500;
        res.end(String(err));
      });
      return;
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      idp.tokenRequests += 1;
      if (idp.tamper !== 'none') {
        // Koa answers with one res.end(body): rewrite that body before it leaves.
        const end = res.end.bind(res) as (chunk?: unknown) => ServerResponse;
        (res as { end: unknown }).end = (chunk?: unknown) => {
          if (chunk === undefined || res.statusCode !== 200) return end(chunk);
          void tamperedBody(Buffer.isBuffer(chunk) ? chunk.toString('utf8') : typeof chunk === 'string' ? chunk : '').then((b) => {
            res.setHeader('content-length', Buffer.byteLength(b));
            end(b);
          });
          return res;
        };
      }
    }
    void callback(req, res);
  });
  return idp;
}
