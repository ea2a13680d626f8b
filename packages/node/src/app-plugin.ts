// A Fastify plugin for the platform's applications: signs users in through Tessera's OpenID
// provider (/oidc) and keeps the application's own session (Tessera's docs/sessions.md).
//
// - `requireLogin` (a preHandler): with a valid application session the request goes on and
//   `request.appSession` holds it (docs/sessions.md, flow 4: nothing happens). Without one the
//   browser is sent to Tessera (authorization code + PKCE, state, nonce); Tessera decides whether
//   credentials are needed (its idp session, the external provider's session).
// - GET  <callback>            the code exchange by openid-client, with the ID token's signature
//                              checked against Tessera's JWKS (openid-client v6 only does that for
//                              token-endpoint responses with enableNonRepudiationChecks)
// - POST <backchannel>         OpenID Connect Back-Channel Logout: a logout token from Tessera
//                              (signature, issuer, audience, typ logout+jwt, the event, no nonce,
//                              at most 2 minutes old, jti not seen before) ends the application
//                              sessions it names (by sid, else by sub)
// - POST <logout>              ends this application's session only (and Tessera's `app` session
//                              of it, via POST /api/v1/oidc/app-logout); Tessera's idp session stays
// - GET  <logoutEverywhere>    RP-initiated logout at Tessera: the idp session and every application
//
// The application's session lives in an `AppSessionStore` (in memory by default; give a shared
// one when the application runs several processes). Its cookie holds a random id, signed with
// `cookieSecret`. A client of Tessera: it speaks HTTP to it and imports nothing of the server.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as oidc from 'openid-client';

export interface AppSession {
  id: string;
  sub: string;
  /** Tessera's `sid` for this application's session (back-channel logout names it). */
  sid: string | null;
  email: string | null;
  idToken: string;
  createdAt: number;
  lastSeenAt: number;
}

export interface AppSessionStore {
  get(id: string): Promise<AppSession | null>;
  set(session: AppSession): Promise<void>;
  delete(id: string): Promise<void>;
  /** Deletes the sessions with this sid (or, without a sid, of this sub); returns how many. */
  deleteMatching(match: { sid: string | null; sub: string | null }): Promise<number>;
}

export class MemoryAppSessionStore implements AppSessionStore {
  readonly sessions = new Map<string, AppSession>();
  async get(id: string): Promise<AppSession | null> {
    return this.sessions.get(id) ?? null;
  }
  async set(session: AppSession): Promise<void> {
    this.sessions.set(session.id, session);
  }
  async delete(id: string): Promise<void> {
    this.sessions.delete(id);
  }
  async deleteMatching(match: { sid: string | null; sub: string | null }): Promise<number> {
    let n = 0;
    for (const [id, s] of this.sessions) {
      const hit = match.sid !== null ? s.sid === match.sid : match.sub !== null && s.sub === match.sub;
      if (hit) {
        this.sessions.delete(id);
        n += 1;
      }
    }
    return n;
  }
}

export interface TesseraAppOptions {
  /** Tessera's issuer: its public URL and /oidc. */
  issuer: string;
  clientId: string;
  /** A confidential application's secret; omitted for a public client (PKCE only). */
  clientSecret?: string;
  /** The application's public origin, e.g. https://reports.example.com */
  baseUrl: string;
  /** Signs the application's cookies (at least 32 characters). */
  cookieSecret: string;
  /** The organization whose external provider signs users in; default: the application's at Tessera. */
  orgSlug?: string;
  /** The application session's idle and absolute lifetimes (seconds); defaults 900 / 43200, as Tessera's `app` sessions. */
  idleSeconds?: number;
  absoluteSeconds?: number;
  /** Plain HTTP to a loopback Tessera (development and tests only). */
  allowInsecureHttp?: boolean;
  /** Registered post-logout redirect URI for RP-initiated logout; without it Tessera shows its own page. */
  postLogoutRedirectUri?: string;
  paths?: { callback?: string; backchannel?: string; logout?: string; logoutEverywhere?: string };
  /** Where the browser goes after the application-only logout (a page that does not need a login). */
  afterLogoutPath?: string;
  sessions?: AppSessionStore;
  /** Cookie names end with the client id, so that applications on one host do not clash. */
  cookiePrefix?: string;
  /** The clock (ms), for tests. */
  now?: () => number;
}

declare module 'fastify' {
  interface FastifyRequest {
    appSession: AppSession | null;
  }
  interface FastifyInstance {
    requireLogin: preHandlerAsyncHookHandler;
  }
}

const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const TX_MAX_AGE_S = 600;

interface Transaction {
  state: string;
  nonce: string;
  verifier: string;
  returnTo: string;
}

function sign(secret: string, value: string): string {
  return `${value}.${createHmac('sha256', secret).update(value).digest('base64url')}`;
}

function unsign(secret: string, signed: string): string | null {
  const dot = signed.lastIndexOf('.');
  if (dot <= 0) return null;
  const value = signed.slice(0, dot);
  const expected = Buffer.from(createHmac('sha256', secret).update(value).digest('base64url'));
  const given = Buffer.from(signed.slice(dot + 1));
  return given.length === expected.length && timingSafeEqual(given, expected) ? value : null;
}

function readCookie(request: FastifyRequest, name: string): string | null {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return null;
}

export async function tesseraApp(fastify: FastifyInstance, opts: TesseraAppOptions): Promise<void> {
  if (opts.cookieSecret.length < 32) throw new Error('tesseraApp: cookieSecret must have at least 32 characters');
  const paths = { callback: '/auth/callback', backchannel: '/auth/backchannel-logout', logout: '/auth/logout', logoutEverywhere: '/auth/logout/everywhere', ...opts.paths };
  const sessions = opts.sessions ?? new MemoryAppSessionStore();
  const now = opts.now ?? (() => Date.now());
  const idleMs = (opts.idleSeconds ?? 900) * 1000;
  const absoluteMs = (opts.absoluteSeconds ?? 43200) * 1000;
  const issuerUrl = new URL(opts.issuer);
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(issuerUrl.hostname);
  const insecure = issuerUrl.protocol === 'http:';
  if (insecure && !(opts.allowInsecureHttp === true && loopback)) {
    throw new Error(`tesseraApp: the issuer ${opts.issuer} must be https:// (plain HTTP only for a loopback issuer with allowInsecureHttp)`);
  }
  const secureCookies = new URL(opts.baseUrl).protocol === 'https:';
  const suffix = opts.clientId.replace(/[^A-Za-z0-9_-]/g, '_');
  const sessionCookie = `${opts.cookiePrefix ?? 'tessera_app'}_${suffix}`;
  const txCookie = `${opts.cookiePrefix ?? 'tessera_app'}_tx_${suffix}`;
  const redirectUri = new URL(paths.callback, opts.baseUrl).href;
  const seenJti = new Map<string, number>();

  let configPromise: Promise<oidc.Configuration> | null = null;
  const config = () => {
    configPromise ??= oidc
      .discovery(issuerUrl, opts.clientId, undefined, opts.clientSecret ? oidc.ClientSecretBasic(opts.clientSecret) : oidc.None(), {
        execute: insecure ? [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks] : [oidc.enableNonRepudiationChecks],
      })
      .catch((err: unknown) => {
        configPromise = null;
        throw err;
      });
    return configPromise;
  };
  let jwks: ReturnType<typeof createRemoteJWKSet> | null = null;

  const cookie = (name: string, value: string, maxAge: number, path = '/') =>
    `${name}=${encodeURIComponent(value)}; Path=${path}; Max-Age=${maxAge}; HttpOnly; SameSite=Lax${secureCookies ? '; Secure' : ''}`;

  async function currentSession(request: FastifyRequest): Promise<AppSession | null> {
    const raw = readCookie(request, sessionCookie);
    const id = raw === null ? null : unsign(opts.cookieSecret, raw);
    if (id === null) return null;
    const s = await sessions.get(id);
    const t = now();
    if (!s || t - s.lastSeenAt >= idleMs || t - s.createdAt >= absoluteMs) {
      if (s) await sessions.delete(s.id);
      return null;
    }
    if (t - s.lastSeenAt > 30_000) await sessions.set({ ...s, lastSeenAt: t });
    return s;
  }

  async function startLogin(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const c = await config();
    const tx: Transaction = { state: oidc.randomState(), nonce: oidc.randomNonce(), verifier: oidc.randomPKCECodeVerifier(), returnTo: request.url.startsWith('/') && !request.url.startsWith('//') ? request.url : '/' };
    const params: Record<string, string> = {
      redirect_uri: redirectUri,
      scope: 'openid email',
      state: tx.state,
      nonce: tx.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(tx.verifier),
      code_challenge_method: 'S256',
    };
    if (opts.orgSlug) params.orgSlug = opts.orgSlug;
    const target = oidc.buildAuthorizationUrl(c, params);
    void reply.header('set-cookie', cookie(txCookie, sign(opts.cookieSecret, Buffer.from(JSON.stringify(tx)).toString('base64url')), TX_MAX_AGE_S, paths.callback));
    return reply.header('cache-control', 'no-store').redirect(target.href, 302);
  }

  const requireLogin: preHandlerAsyncHookHandler = async function requireLogin(request, reply) {
    const s = await currentSession(request);
    if (s) {
      request.appSession = s;
      return;
    }
    await startLogin(request, reply);
    return reply;
  };

  fastify.decorateRequest('appSession', null);
  fastify.decorate('requireLogin', requireLogin);

  await fastify.register(async (scope) => {
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });

    scope.get(paths.callback, async (request, reply) => {
      const raw = readCookie(request, txCookie);
      const value = raw === null ? null : unsign(opts.cookieSecret, raw);
      void reply.header('set-cookie', cookie(txCookie, '', 0, paths.callback)).header('cache-control', 'no-store');
      if (value === null) return reply.code(400).send({ error: 'no_transaction', detail: 'This sign-in did not start here, or took too long; start again.' });
      const tx = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as Transaction;
      let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
      try {
        tokens = await oidc.authorizationCodeGrant(await config(), new URL(request.url, opts.baseUrl), {
          pkceCodeVerifier: tx.verifier,
          expectedState: tx.state,
          expectedNonce: tx.nonce,
          idTokenExpected: true,
        });
      } catch (err) {
        request.log.warn({ err }, 'sign-in through Tessera failed');
        return reply.code(401).send({ error: 'sign_in_failed', detail: err instanceof Error ? err.message : String(err) });
      }
      const claims = tokens.claims()!;
      let email = typeof claims.email === 'string' ? claims.email : null;
      if (email === null) {
        // The email is a userinfo claim unless the request asked for it in the ID token.
        const info = await oidc.fetchUserInfo(await config(), tokens.access_token, claims.sub).catch(() => null);
        email = typeof info?.email === 'string' ? info.email : null;
      }
      const t = now();
      const s: AppSession = {
        id: randomBytes(32).toString('base64url'),
        sub: claims.sub,
        sid: typeof claims.sid === 'string' ? claims.sid : null,
        email,
        idToken: tokens.id_token!,
        createdAt: t,
        lastSeenAt: t,
      };
      await sessions.set(s);
      void reply.header('set-cookie', [cookie(txCookie, '', 0, paths.callback), cookie(sessionCookie, sign(opts.cookieSecret, s.id), Math.floor(absoluteMs / 1000))]);
      return reply.redirect(tx.returnTo, 302);
    });

    scope.post(paths.backchannel, async (request, reply) => {
      void reply.header('cache-control', 'no-store');
      const token = (request.body as Record<string, unknown> | undefined)?.logout_token;
      if (typeof token !== 'string') return reply.code(400).send({ error: 'invalid_request', error_description: 'logout_token is required' });
      const c = await config();
      jwks ??= createRemoteJWKSet(new URL(c.serverMetadata().jwks_uri as string));
      try {
        const { payload } = await jwtVerify(token, jwks, { issuer: c.serverMetadata().issuer, audience: opts.clientId, typ: 'logout+jwt', maxTokenAge: '2m', requiredClaims: ['iat', 'jti'] });
        const events = payload.events as Record<string, unknown> | undefined;
        if (!events || typeof events !== 'object' || !(BACKCHANNEL_EVENT in events)) throw new Error('no back-channel logout event');
        if ('nonce' in payload) throw new Error('a logout token must not carry a nonce');
        const sid = typeof payload.sid === 'string' ? payload.sid : null;
        const sub = typeof payload.sub === 'string' ? payload.sub : null;
        if (sid === null && sub === null) throw new Error('neither sid nor sub');
        const t = now();
        for (const [j, until] of seenJti) if (until < t) seenJti.delete(j);
        if (seenJti.has(payload.jti as string)) throw new Error('this logout token was used before');
        seenJti.set(payload.jti as string, t + 5 * 60_000);
        await sessions.deleteMatching({ sid, sub });
        return reply.code(200).send();
      } catch (err) {
        return reply.code(400).send({ error: 'invalid_request', error_description: err instanceof Error ? err.message : String(err) });
      }
    });

    scope.post(paths.logout, async (request, reply) => {
      const s = await currentSession(request);
      void reply.header('set-cookie', cookie(sessionCookie, '', 0)).header('cache-control', 'no-store');
      if (s) {
        await sessions.delete(s.id);
        // Tessera's app session of this application ends too; the idp session stays.
        const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
        if (opts.clientSecret) headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(opts.clientId)}:${encodeURIComponent(opts.clientSecret)}`).toString('base64')}`;
        const base = opts.issuer.replace(/\/oidc\/?$/, '');
        const r = await fetch(`${base}/api/v1/oidc/app-logout`, { method: 'POST', headers, body: new URLSearchParams({ id_token_hint: s.idToken, client_id: opts.clientId }).toString() }).catch(
          (err: unknown) => err as Error,
        );
        if (r instanceof Error || r.status !== 204) request.log.warn({ status: r instanceof Error ? r.message : r.status }, 'Tessera did not confirm the app logout');
      }
      return reply.redirect(opts.afterLogoutPath ?? '/', 303);
    });

    scope.get(paths.logoutEverywhere, async (request, reply) => {
      const s = await currentSession(request);
      void reply.header('set-cookie', cookie(sessionCookie, '', 0)).header('cache-control', 'no-store');
      if (!s) return reply.redirect('/', 302);
      await sessions.delete(s.id);
      const params: Record<string, string> = { id_token_hint: s.idToken, client_id: opts.clientId };
      if (opts.postLogoutRedirectUri) params.post_logout_redirect_uri = opts.postLogoutRedirectUri;
      return reply.redirect(oidc.buildEndSessionUrl(await config(), params).href, 302);
    });
  });
}

// Registered like fastify-plugin would: the decorators reach the application that registers it.
(tesseraApp as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;
