// Tessera's OpenID provider for platform applications (docs/api.md §Platform applications,
// docs/sessions.md):
//
//   ALL  /oidc/*                       oidc-provider (discovery, auth, token, userinfo, jwks,
//                                      session/end, revocation), mounted as a raw route
//   GET  /oidc/interaction/{uid}       login: from the idp session, or through the external provider
//   POST /api/v1/oidc/app-logout       an application ends its own app session (id_token_hint)
//   POST /api/v1/sso/oidc/backchannel-logout/{orgSlug}
//                                      back-channel logout from an organization's external provider
//
// oidc-provider is a Koa application: the /oidc/* route hands it the raw request and response
// (reply.hijack) with the /oidc prefix moved to `originalUrl`, which is how oidc-provider finds
// its mount path. Its scope has no body parsers, so oidc-provider reads the bodies itself.

import type { IncomingMessage } from 'node:http';
import type { FastifyRequest } from 'fastify';
import { createHash } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, customFetch, jwtVerify, type JWTPayload } from 'jose';
import { Type } from 'typebox';
import { relyingParty, unsealClientSecret } from '../../auth/federation/relying-party.ts';
import { BadRequest, NotFound, TesseraError, Unauthorized } from '../../domain/errors.ts';
import { ORG_SLUG_PATTERN } from '../../domain/organization.ts';
import { constantTimeEqual, hashSecret } from '../../domain/secrets.ts';
import type { Device } from '../../domain/session.ts';
import { emit } from '../../events/bus.ts';
import { BACKCHANNEL_EVENT } from '../../flows/oidc/backchannel.ts';
import { endSessionsAndNotify, validIdpSession, touchIdpSession } from '../../flows/oidc/levels.ts';
import { accountRefusal, createOidcProvider, issuerVerdict, OIDC_PREFIX } from '../../flows/oidc/provider.ts';
import { startSsoLogin } from '../../flows/sso/start-login.ts';
import { checkFlowRate } from '../../flows/sso/steps.ts';
import { loadOidcSigningKeys } from '../../flows/oidc/keys.ts';
import { endSession } from '../../sessions/app-sessions.ts';
import { originOf } from '../authenticate.ts';
import { readCookie, setCookie } from '../cookies.ts';
import type { App, Deps } from '../deps.ts';
import { problemDocument } from '../problem.ts';
import { problems } from '../schemas.ts';
import { parseBasic } from '../token-client-auth.ts';

function deviceOf(request: FastifyRequest): Device {
  return { ip: request.ip, ...(request.ctx.userAgent ? { userAgent: request.ctx.userAgent } : {}) };
}

/**
 * The raw request as oidc-provider (Koa, with `proxy` on) must see it: host and scheme of
 * TESSERA_PUBLIC_URL, whatever Host or X-Forwarded-* the client sent, so that every URL it builds
 * (discovery, redirects, cookie security) comes from the configuration; the client address as
 * Fastify decided it (TESSERA_TRUSTED_PROXIES).
 */
function asPublicRequest(request: FastifyRequest, publicUrl: URL): IncomingMessage {
  const req = request.raw;
  req.headers.host = publicUrl.host;
  req.headers['x-forwarded-proto'] = publicUrl.protocol.slice(0, -1);
  req.headers['x-forwarded-for'] = request.ip;
  delete req.headers['x-forwarded-host'];
  delete req.headers.forwarded;
  return req;
}

/**
 * Whether oidc-provider will route this request to its authorization endpoint `/auth` (not
 * `/auth/<uid>`, the resume). Matched as its router matches (oidc-provider's
 * lib/helpers/router.js): the path without the query or fragment, case-insensitively, and,
 * failing that, without one trailing slash — so `/oidc/auth/`, `/oidc/AUTH`, `/oidc/Auth/` and
 * `/oidc/auth#…` count too.
 * (Its case folding leaves every non-ASCII character that would fold to ASCII as it is, so an
 * ASCII comparison of the upper-cased path finds every path it routes there.)
 */
function isAuthorizationRequest(url: string): boolean {
  // The path ends at the first '?' or '#', as Koa's (parseurl's) ctx.path does.
  const end = url.search(/[?#]/);
  const path = (end === -1 ? url : url.slice(0, end)).slice(OIDC_PREFIX.length);
  const is = (p: string) => p.length === 5 && p.toUpperCase() === '/AUTH';
  return is(path) || (path.length > 1 && path.endsWith('/') && is(path.slice(0, -1)));
}

/** Per runtime (its outbound policy): organizations' JWKS, fetched through the policy. */
const remoteJwksOf = new WeakMap<object, Map<string, ReturnType<typeof createRemoteJWKSet>>>();

export async function oidcRoutes(app: App, deps: Deps): Promise<void> {
  const refusal = issuerVerdict(deps.config.publicUrl, deps.config.devAllowHttpLoopback);
  if (refusal !== null) {
    // Not served over plain HTTP (except loopback in development): say why on every /oidc path.
    // A configuration state, not a server fault: 404, the provider is not here.
    app.all('/oidc/*', { schema: { hide: true } }, async () => {
      throw new TesseraError(404, 'insecure_issuer', refusal);
    });
    return;
  }
  const { provider, issuer, stop } = await createOidcProvider(deps);
  const publicUrl = new URL(deps.config.publicUrl);
  app.addHook('onClose', async () => stop());
  // A path or method oidc-provider has no route for: a problem document, not Koa's text "Not Found".
  provider.use(async (ctx, next) => {
    await next();
    if ((ctx as { oidc?: { route?: string } }).oidc?.route === undefined && (ctx.status === 404 || ctx.status === 405) && !ctx.headerSent) {
      const status = ctx.status;
      ctx.body = problemDocument(status, 'not_found', `No OpenID provider endpoint for ${ctx.method} ${ctx.path}.`, '-');
      ctx.status = status;
      ctx.type = 'application/problem+json';
    }
  });
  const handle = provider.callback();

  await app.register(async (raw) => {
    raw.removeAllContentTypeParsers();
    // Leave every body unread: oidc-provider parses its own (and refuses what it must).
    raw.addContentTypeParser('*', (_request, _payload, done) => done(null));
    // No HEAD: some GETs (the resume of an interaction) consume single-use state.
    raw.route({ method: ['GET', 'POST', 'OPTIONS'], url: `${OIDC_PREFIX}/*`, schema: { hide: true }, handler: async (request, reply) => {
      // An authorization request stores an interaction record (600 s) before anyone has signed
      // in: limited per client address like every SSO start (docs/security.md, Decisions), and
      // refused with a problem document before oidc-provider sees it.
      if (request.method !== 'OPTIONS' && isAuthorizationRequest(request.url)) {
        await checkFlowRate(deps.store, request.ip, deps.clock.now(), 'oidc-auth');
      }
      reply.hijack();
      const req = asPublicRequest(request, publicUrl) as IncomingMessage & { originalUrl?: string };
      req.originalUrl = req.url;
      req.url = (req.url ?? '/').slice(OIDC_PREFIX.length) || '/';
      await handle(req, reply.raw);
    } });
  });

  app.get(
    `${OIDC_PREFIX}/interaction/:uid`,
    { schema: { hide: true, params: Type.Object({ uid: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) }) } },
    async (request, reply) => {
      const now = deps.clock.now();
      let details: Awaited<ReturnType<typeof provider.interactionDetails>>;
      try {
        details = await provider.interactionDetails(asPublicRequest(request, publicUrl), reply.raw);
      } catch {
        throw new BadRequest('oidc_interaction_expired', 'This sign-in is unknown or has expired; go back to the application and start again.');
      }
      if (details.uid !== request.params.uid) throw new BadRequest('oidc_interaction_expired', 'This sign-in belongs to another interaction; start again.');
      const clientId = String(details.params.client_id);
      const platformApp = await deps.store.oidc.getApp(clientId);
      if (!platformApp) throw new NotFound('app_not_found', `No application "${clientId}".`);
      const idp = await validIdpSession(deps, request.headers.cookie, now, platformApp.tenantId);
      if (idp) {
        // The user was disabled (or deleted) after this interaction began (the authorization
        // endpoint refuses such a user before any interaction): access_denied to the
        // application's redirect URI — not a touch of the idp session, not a trip to the
        // external provider (docs/api.md). Disabled after this read: the policy check that runs
        // again when the authorization resumes refuses it, and findAccount has no account.
        const refusal = accountRefusal(await deps.store.getUser(idp.tenantId, idp.userId as string));
        if (refusal !== null) {
          reply.hijack();
          await provider.interactionFinished(asPublicRequest(request, publicUrl), reply.raw, { error: 'access_denied', error_description: refusal }, { mergeWithLastSubmission: false });
          return;
        }
      }
      // prompt=login or an exceeded max_age: only an authentication made for this very
      // interaction counts (the idp session the external provider's login created for it).
      const reasons = details.prompt.name === 'login' ? details.prompt.reasons : [];
      const reauthenticate = reasons.includes('login_prompt') || reasons.includes('max_age');
      if (idp && (!reauthenticate || idp.data.oidcInteraction === details.uid)) {
        // Flow 3 of docs/sessions.md: signed in at Tessera already; the application gets its
        // session without the browser leaving Tessera.
        await touchIdpSession(deps, idp, now);
        reply.hijack();
        await provider.interactionFinished(
          asPublicRequest(request, publicUrl),
          reply.raw,
          { login: { accountId: idp.userId as string, amr: [idp.authMethod], ts: Math.floor(idp.createdAt / 1000) } },
          { mergeWithLastSubmission: false },
        );
        return;
      }
      // Flows 1 and 2: through the organization's external provider, then back here.
      const requested = typeof details.params.orgSlug === 'string' && new RegExp(ORG_SLUG_PATTERN).test(details.params.orgSlug) ? details.params.orgSlug : null;
      const orgSlug = requested ?? platformApp.orgSlug;
      if (orgSlug === null) throw new BadRequest('org_required', 'This application has no default organization; the sign-in request must name one with orgSlug.');
      const org = await deps.store.federation.getOrganization(orgSlug);
      if (!org || org.tenantId !== platformApp.tenantId) throw new NotFound('org_not_found', `No organization "${orgSlug}" for this application.`);
      const started = await startSsoLogin(
        deps,
        {
          protocol: org.protocol,
          orgSlug,
          provider: org.oauth?.provider ?? null,
          callbackPort: null,
          isAdminLogin: false,
          binding: readCookie(request, deps.config, 'flow'),
          device: deviceOf(request),
          oidcInteraction: details.uid,
          reauthenticate,
        },
        now,
        originOf(request),
      );
      setCookie(reply, deps.config, { name: 'flow', value: started.binding, maxAgeSeconds: started.cookieMaxAge, sameSite: 'lax' });
      return reply.header('referrer-policy', 'no-referrer').redirect(started.location, 302);
    },
  );

  const keys = await loadOidcSigningKeys(deps.store, deps.config.cookieSecret, deps.clock.now());
  const ownJwks = createLocalJWKSet({
    keys: keys.map((k) => {
      const { d: _d, ...pub } = k.privateJwk;
      return pub;
    }),
  });

  app.post(
    '/api/v1/oidc/app-logout',
    {
      schema: {
        tags: ['oidc'],
        summary: 'An application ends its own app session (the idp session and other applications stay)',
        description:
          'Form or JSON `{ id_token_hint, client_id }`: an ID token Tessera issued to this application (expired ones are accepted). A confidential application authenticates with HTTP Basic (client id and secret). Answers 204.',
        body: Type.Object({ id_token_hint: Type.String({ minLength: 10, maxLength: 8192 }), client_id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false }),
        response: { 204: Type.Null(), ...problems(400, 401) },
      },
    },
    async (request, reply) => {
      const now = deps.clock.now();
      const { id_token_hint: hint, client_id: clientId } = request.body;
      const platformApp = await deps.store.oidc.getApp(clientId);
      if (!platformApp) throw new Unauthorized('invalid_client', 'Unknown application.');
      if (platformApp.sealedClientSecret !== null) {
        // A malformed credential (e.g. a broken percent-escape) is a 401 like a wrong one.
        const basic = parseBasic(request.headers.authorization ?? '');
        const [id, secret] = basic ? [basic.id, basic.secret] : [];
        const expected = unsealClientSecret(deps.keys.clientSecrets, platformApp.sealedClientSecret);
        if (id !== clientId || secret === undefined || !constantTimeEqual(hashSecret(secret), hashSecret(expected))) {
          throw new Unauthorized('invalid_client', 'The application must authenticate with its client secret (HTTP Basic).');
        }
      }
      let claims: JWTPayload;
      try {
        // An app may log out after its ID token expired: lifetime is not checked, everything else is.
        ({ payload: claims } = await jwtVerify(hint, ownJwks, { issuer, audience: clientId, clockTolerance: 14 * 86400 }));
      } catch {
        throw new BadRequest('invalid_id_token_hint', 'id_token_hint is not an ID token Tessera issued to this application.');
      }
      if (typeof claims.sub !== 'string' || typeof claims.sid !== 'string') throw new BadRequest('invalid_id_token_hint', 'id_token_hint has no sub or sid.');
      const page = await deps.store.listSessions({ tenantId: platformApp.tenantId, userId: claims.sub, kind: 'app', status: 'active', now, limit: 500 });
      for (const s of page.items) {
        if (s.clientId === clientId && s.data.oidcSid === claims.sid) await endSession(deps, s.handle, 'logout', now, originOf(request));
      }
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/api/v1/sso/oidc/backchannel-logout/:orgSlug',
    {
      schema: {
        tags: ['sso'],
        summary: "Back-channel logout from an organization's external identity provider",
        description:
          "OpenID Connect Back-Channel Logout 1.0, received: form `logout_token`, signed by the organization's provider (its JWKS), audience Tessera's client id there, with the back-channel event, no nonce, `sid` and/or `sub`. Ends the Tessera idp sessions that this external session started (by `sid`, else by `sub`) and every app session under them; applications hear of it by back-channel logout. Register `<public URL>/api/v1/sso/oidc/backchannel-logout/<orgSlug>` at the provider.",
        params: Type.Object({ orgSlug: Type.String({ pattern: ORG_SLUG_PATTERN }) }),
        body: Type.Object({ logout_token: Type.String({ minLength: 10, maxLength: 8192 }) }, { additionalProperties: false }),
        response: { 200: Type.Null(), ...problems(400, 404) },
      },
    },
    async (request, reply) => {
      const now = deps.clock.now();
      const org = await deps.store.federation.getOrganization(request.params.orgSlug);
      if (!org || !org.oidc) throw new NotFound('org_not_found', `No OpenID Connect organization "${request.params.orgSlug}".`);
      const rp = await relyingParty(org, deps.keys.clientSecrets, deps.outbound);
      const jwksUri = rp.serverMetadata().jwks_uri as string;
      let remoteJwks = remoteJwksOf.get(deps.outbound);
      if (!remoteJwks) remoteJwksOf.set(deps.outbound, (remoteJwks = new Map<string, ReturnType<typeof createRemoteJWKSet>>()));
      let jwks = remoteJwks.get(jwksUri);
      if (!jwks) {
        // Through the outbound policy like every call to a provider (no private targets).
        jwks = createRemoteJWKSet(new URL(jwksUri), { [customFetch]: (url, init) => deps.outbound.fetch(url, init) });
        remoteJwks.set(jwksUri, jwks);
      }
      let claims: JWTPayload;
      try {
        ({ payload: claims } = await jwtVerify(request.body.logout_token, jwks, {
          issuer: org.oidc.issuer,
          audience: org.oidc.clientId,
          maxTokenAge: '5m',
          requiredClaims: ['iat', 'jti'],
        }));
      } catch (err) {
        throw new BadRequest('invalid_logout_token', `The logout token is not valid: ${err instanceof Error ? err.message : String(err)}`);
      }
      const events = claims.events as Record<string, unknown> | undefined;
      if (!events || typeof events !== 'object' || !(BACKCHANNEL_EVENT in events)) throw new BadRequest('invalid_logout_token', 'The logout token has no back-channel logout event.');
      if ('nonce' in claims) throw new BadRequest('invalid_logout_token', 'A logout token must not carry a nonce.');
      const sid = typeof claims.sid === 'string' ? claims.sid : null;
      const sub = typeof claims.sub === 'string' ? claims.sub : null;
      if (sid === null && sub === null) throw new BadRequest('invalid_logout_token', 'The logout token names neither sid nor sub.');
      // Single use: the jti is remembered (shared by every process) for as long as the token could
      // still pass the checks above — until its exp, at least until its iat is 5 minutes old — so
      // a replayed token cannot end the sessions the user made since.
      const iat = claims.iat as number;
      const until = Math.max(typeof claims.exp === 'number' ? claims.exp : 0, iat + 300) * 1000 + 60_000;
      const jtiKey = `bcl-jti:${createHash('sha256').update(`${org.slug}\u0000${String(claims.jti)}`).digest('base64url')}`;
      const seen = await deps.store.hitCounter(jtiKey, Math.max(60_000, until - Date.now()), now);
      if (seen.count > 1) throw new BadRequest('invalid_logout_token', 'This logout token was already used.');
      const links = await deps.store.oidc.findExternalSessions(org.oidc.issuer, sid !== null ? `sid:${sid}` : `sub:${sub}`, now);
      const origin = originOf(request);
      let ended = 0;
      for (const link of links) {
        if (link.tenantId !== org.tenantId) continue;
        const r = await endSessionsAndNotify(deps, link.idpHandle, 'logout', now, origin);
        ended += r.ended.length;
      }
      emit(
        deps,
        { type: 'sso.backchannel_logout_received', time: now, tenantId: org.tenantId, userId: null, sessionHandle: null, details: { orgSlug: org.slug, bySid: sid !== null, idpSessions: links.length, ended } },
        origin,
      );
      return reply.code(200).header('cache-control', 'no-store').send(null);
    },
  );
}
