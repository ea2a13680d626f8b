// Single sign-on through an organization's external identity provider (docs/api.md §Single
// sign-on):
//
//   GET  /api/v1/sso/oidc/login?orgSlug=&callbackPort=&isAdminLogin=
//   GET  /api/v1/sso/oidc/callback
//   GET  /api/v1/sso/oauth/{provider}/login?orgSlug=&callbackPort=&isAdminLogin=
//   GET  /api/v1/sso/oauth/{provider}/callback
//   POST /api/v1/sso/token                      { token } (+ X-Auth-Mode: cookie)
//   GET  /login/sso?token=                      the page that redeems the token in a browser
//
// Logins and callbacks are top-level browser navigations (exempt from the header rule,
// docs/api.md §Request headers);
// their errors are an HTML page for a browser and problem+json otherwise. The flows themselves
// live in src/flows/sso.

import { createHash } from 'node:crypto';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { TesseraError } from '../../domain/errors.ts';
import { ORG_SLUG_PATTERN, PROVIDER_NAME_PATTERN, type FederationProtocol } from '../../domain/organization.ts';
import type { Device } from '../../domain/session.ts';
import { finishSsoLogin } from '../../flows/sso/finish-login.ts';
import { redeemSsoToken } from '../../flows/sso/redeem-token.ts';
import { startSsoLogin } from '../../flows/sso/start-login.ts';
import { checkCallbackPort, checkCliLogin, MAX_FLOW_LIFETIME_S } from '../../flows/sso/steps.ts';
import type { AuthMode } from '../../sessions/app-sessions.ts';
import { checkRequestOrigin, originOf } from '../authenticate.ts';
import { readCookie, setCookie } from '../cookies.ts';
import type { App, Deps } from '../deps.ts';
import { problems } from '../schemas.ts';
import { CookieLoginSchema, TokenPairSchema } from './auth-login.ts';

const LoginQuery = Type.Object(
  {
    orgSlug: Type.String({ pattern: ORG_SLUG_PATTERN, description: 'The organization whose identity provider to use' }),
    callbackPort: Type.Optional(
      Type.String({ maxLength: 16, description: 'A command-line login: the port of its listener on 127.0.0.1 (1024–65535)' }),
    ),
    codeChallenge: Type.Optional(
      Type.String({ maxLength: 128, description: 'A command-line login: base64url SHA-256 of its verifier (required with callbackPort); the token is then redeemed only with the verifier' }),
    ),
    cliState: Type.Optional(
      Type.String({ maxLength: 128, description: "A command-line login: its listener's state (required with callbackPort), sent back with the token or error" }),
    ),
    isAdminLogin: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')], { description: 'Admin sign-in: refused unless the user has the admin role' })),
  },
  { additionalProperties: false },
);

const ProviderParams = Type.Object({ provider: Type.String({ pattern: PROVIDER_NAME_PATTERN }) });

const CSP_PAGE_BASE = ["default-src 'none'", "style-src 'unsafe-inline'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"];

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, body: string, script?: string): { html: string; csp: string } {
  const csp = [...CSP_PAGE_BASE];
  let tag = '';
  if (script !== undefined) {
    csp.push(`script-src 'sha256-${createHash('sha256').update(script).digest('base64')}'`, "connect-src 'self'");
    tag = `<script>${script}</script>`;
  }
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${escapeHtml(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1a1a1a}code{background:#f2f2f2;padding:0 .25rem}</style>
</head><body>${body}${tag}</body></html>`;
  return { html, csp: csp.join('; ') };
}

function sendPage(reply: FastifyReply, status: number, p: { html: string; csp: string }): FastifyReply {
  return reply
    .code(status)
    .header('content-type', 'text/html; charset=utf-8')
    .header('content-security-policy', p.csp)
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-store')
    .send(p.html);
}

/** A browser navigation (it prefers HTML) rather than an API client. */
function wantsHtml(request: FastifyRequest): boolean {
  const accept = request.headers.accept ?? '';
  return request.method === 'GET' && accept.includes('text/html');
}

function errorPage(request: FastifyRequest, err: { status: number; code: string; detail: string }) {
  return page(
    'Sign-in failed',
    `<h1>Sign-in failed</h1>
<p id="detail">${escapeHtml(err.detail)}</p>
<p>Error <code id="code">${escapeHtml(err.code)}</code> · request <code>${escapeHtml(request.ctx.requestId)}</code></p>
<p>Close this tab and start the sign-in again from your application.</p>`,
  );
}

/** The redemption page's script: exchanges the token for the session cookie, then drops it from the URL. */
const REDEEM_SCRIPT = `(async () => {
  const out = document.getElementById('status');
  const token = new URLSearchParams(location.search).get('token');
  history.replaceState(null, '', location.pathname);
  if (!token) { document.body.dataset.state = 'failed'; out.textContent = 'This page needs a sign-in token.'; return; }
  try {
    const r = await fetch('/api/v1/sso/token', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-auth-mode': 'cookie' },
      body: JSON.stringify({ token }),
    });
    const body = await r.json();
    if (r.ok) {
      document.body.dataset.state = 'ok';
      document.body.dataset.sessionId = body.sessionId;
      out.textContent = 'You are signed in.';
    } else {
      document.body.dataset.state = 'failed';
      document.body.dataset.code = body.code;
      out.textContent = 'Sign-in failed: ' + body.detail;
    }
  } catch (e) {
    document.body.dataset.state = 'failed';
    out.textContent = 'Sign-in failed: ' + e;
  }
})();`;

const REDEEM_PAGE = page('Signing in…', '<h1>Single sign-on</h1><p id="status">Signing in…</p>', REDEEM_SCRIPT);

type Serialise = (body: unknown) => string;

/** A 200 body's serialiser, made by the route's serialiser compiler (as its response schemas are). */
function serialiserOf(reply: { compileSerializationSchema: FastifyReply['compileSerializationSchema'] }, schema: object): Serialise {
  return reply.compileSerializationSchema(schema as Record<string, unknown>, '200') as Serialise;
}

function deviceOf(request: FastifyRequest): Device {
  return { ip: request.ip, ...(request.ctx.userAgent ? { userAgent: request.ctx.userAgent } : {}) };
}

export async function ssoRoutes(app: App, deps: Deps): Promise<void> {
  // Browser navigations get a page; API clients (and every non-GET) the usual problem+json, from
  // the parent handler this one rethrows to.
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (!wantsHtml(request)) throw err;
    if (err instanceof TesseraError) {
      if (err.status >= 500) request.log.warn({ code: err.code, err: err.message }, 'sso failed');
      return sendPage(reply, err.status, errorPage(request, { status: err.status, code: err.code, detail: err.message }));
    }
    if (err.validation) {
      return sendPage(reply, 400, errorPage(request, { status: 400, code: 'invalid_request', detail: `The sign-in link is malformed: ${err.message}` }));
    }
    throw err;
  });

  async function login(
    protocol: FederationProtocol,
    provider: string | null,
    request: FastifyRequest,
    reply: FastifyReply,
    q: { orgSlug: string; callbackPort?: string; codeChallenge?: string; cliState?: string; isAdminLogin?: 'true' | 'false' },
  ) {
    const now = deps.clock.now();
    const callbackPort = checkCallbackPort(q.callbackPort);
    const cli = checkCliLogin(callbackPort, q.codeChallenge, q.cliState);
    const started = await startSsoLogin(
      deps,
      {
        protocol,
        orgSlug: q.orgSlug,
        provider,
        callbackPort,
        codeChallenge: cli?.codeChallenge ?? null,
        cliState: cli?.cliState ?? null,
        isAdminLogin: q.isAdminLogin === 'true',
        binding: readCookie(request, deps.config, 'flow'),
        device: deviceOf(request),
      },
      now,
      originOf(request),
    );
    // One binding secret per browser, shared by all its flows; Lax, so the provider's top-level
    // redirect back brings it along.
    setCookie(reply, deps.config, { name: 'flow', value: started.binding, maxAgeSeconds: started.cookieMaxAge, sameSite: 'lax' });
    return reply.header('referrer-policy', 'no-referrer').redirect(started.location, 302);
  }

  async function callback(protocol: FederationProtocol, provider: string | null, request: FastifyRequest, reply: FastifyReply) {
    const now = deps.clock.now();
    const query = request.query as Record<string, unknown>;
    const binding = readCookie(request, deps.config, 'flow');
    const result = await finishSsoLogin(
      deps,
      {
        protocol,
        provider,
        binding,
        state: typeof query.state === 'string' ? query.state : undefined,
        // Concatenated, not resolved: a path starting with // must not become another host.
        currentUrl: new URL(deps.config.publicUrl + request.url),
        device: deviceOf(request),
      },
      now,
      originOf(request),
    );
    void reply.header('referrer-policy', 'no-referrer');
    if (result.ok && result.idpSecret !== undefined) {
      // Lax: the applications' top-level redirects to /oidc/auth must carry it.
      setCookie(reply, deps.config, { name: 'idp', value: result.idpSecret, maxAgeSeconds: result.idpMaxAge ?? 0, sameSite: 'lax' });
    }
    if (result.ok && binding !== null && result.flow.data.callbackPort === null) {
      // The one-time token is redeemed in cookie mode only with this cookie: keep it alive for
      // the redemption even when the login took most of the flow's lifetime.
      setCookie(reply, deps.config, { name: 'flow', value: binding, maxAgeSeconds: MAX_FLOW_LIFETIME_S, sameSite: 'lax' });
    }
    if (result.ok) return reply.redirect(result.location, 302);
    if (result.location !== null) return reply.redirect(result.location, 302);
    throw result.error;
  }

  const loginSchema = (protocol: FederationProtocol) => ({
    tags: ['sso'],
    summary: protocol === 'oidc' ? 'Start an OpenID Connect sign-in' : 'Start a plain OAuth 2.0 sign-in',
    description:
      'A browser navigation. Creates a flow session for this login (cookie `__Host-flow`, SameSite=Lax, 10 minutes; one flow per state, so logins in several tabs do not clobber each other) and redirects (302) to the organization\'s identity provider.',
    querystring: LoginQuery,
    response: { 302: Type.Null(), ...problems(400, 404, 502) },
  });
  const callbackSchema = (protocol: FederationProtocol) => ({
    tags: ['sso'],
    summary: protocol === 'oidc' ? 'Return from the OpenID Connect provider' : 'Return from the OAuth 2.0 provider',
    description:
      "The provider's redirect back (code, state). The state must name a flow of this browser; the flow is used once. Redirects (302) to `/login/sso?token=` or, for a command-line login, to `http://127.0.0.1:<callbackPort>/callback?token=`.",
    response: { 302: Type.Null(), ...problems(400, 401, 403, 404, 409, 502) },
  });

  app.get('/api/v1/sso/oidc/login', { schema: loginSchema('oidc') }, async (request, reply) => login('oidc', null, request, reply, request.query));
  app.get('/api/v1/sso/oidc/callback', { schema: callbackSchema('oidc') }, async (request, reply) => callback('oidc', null, request, reply));
  app.get(
    '/api/v1/sso/oauth/:provider/login',
    { schema: { ...loginSchema('oauth'), params: ProviderParams } },
    async (request, reply) => login('oauth', request.params.provider, request, reply, request.query),
  );
  app.get(
    '/api/v1/sso/oauth/:provider/callback',
    { schema: { ...callbackSchema('oauth'), params: ProviderParams } },
    async (request, reply) => callback('oauth', request.params.provider, request, reply),
  );

  /** The exchange's 200 bodies, one serialiser per mode (compiled by the route's compiler on first use). */
  let tokenPairText: Serialise | undefined;
  let cookieLoginText: Serialise | undefined;
  app.post(
    '/api/v1/sso/token',
    {
      schema: {
        tags: ['sso'],
        summary: 'Exchange the one-time sign-in token for a session',
        description:
          'Single use, within 60 s. Token mode by default (a token pair as from /api/v1/auth/login); with `X-Auth-Mode: cookie` the `__Host-sid` cookie is set instead. A browser sign-in\'s token is redeemed, in either mode, only by the browser that started the sign-in (its `__Host-flow` cookie); the token of a command-line sign-in needs `codeVerifier`, the verifier of the `codeChallenge` it started with. A user disabled since the callback gets no session: 403 `user_disabled`, the token spent and the sign-in\'s sessions ended.',
        headers: Type.Object({ 'x-auth-mode': Type.Optional(Type.Union([Type.Literal('token'), Type.Literal('cookie')])) }),
        body: Type.Object(
          {
            token: Type.String({ minLength: 1, maxLength: 128 }),
            codeVerifier: Type.Optional(Type.String({ minLength: 43, maxLength: 128, pattern: '^[A-Za-z0-9._~-]+$', description: 'A command-line sign-in: the verifier of its codeChallenge' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Union([TokenPairSchema, CookieLoginSchema]), ...problems(400, 401, 403) },
      },
    },
    // Not an async function: the exchange's promise, continued by one callback that sends the
    // answer (one promise and one await fewer per exchange; a synchronous refusal, the origin
    // check, reaches the error handler as a rejection would). `Cache-Control: no-store` is on
    // every answer (the request-context hook).
    (request, reply) => {
      const mode: AuthMode = request.headers['x-auth-mode'] === 'cookie' ? 'cookie' : 'token';
      if (mode === 'cookie') checkRequestOrigin(deps, request);
      return redeemSsoToken(
        deps,
        { token: request.body.token, codeVerifier: request.body.codeVerifier ?? null, binding: readCookie(request, deps.config, 'flow') },
        mode,
        request.ctx.tenantId,
        deps.clock.now(),
        originOf(request),
      ).then((r) => {
        // The 200 schema is a union of the two modes' bodies, which fast-json-stringify serialises
        // by validating the body against each (ajv) on every response; the mode is known here, so
        // its own schema's serialiser writes the same text, sent as it is (JSON content type).
        let text: string;
        if (r.mode === 'token') {
          text = (tokenPairText ??= serialiserOf(reply, TokenPairSchema))(r.pair);
        } else {
          setCookie(reply, deps.config, { name: 'sid', value: r.cookieSecret, maxAgeSeconds: r.expiresIn, sameSite: 'strict' });
          text = (cookieLoginText ??= serialiserOf(reply, CookieLoginSchema))({
            sessionId: r.session.handle,
            customerId: r.user.id,
            tenantId: r.tenant.id,
            xsrfToken: r.xsrfToken,
            expires_in: r.expiresIn,
          });
        }
        void (reply as unknown as FastifyReply).header('content-type', 'application/json; charset=utf-8').send(text);
      });
    },
  );

  app.get('/login/sso', { schema: { hide: true } }, async (_request, reply) => sendPage(reply, 200, REDEEM_PAGE));
}
