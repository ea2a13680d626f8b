// PUT/GET /api/v1/admin/orgs/{slug} (docs/api.md §Single sign-on): an organization, its tenant, and
// its external identity provider — OpenID Connect (issuer, client id and secret; the issuer is
// discovered when the organization is stored) or a plain OAuth 2.0 provider (endpoints and a
// mapping of its user document). The client secret is sealed (AES-256-GCM, key
// `seal-client-secrets`) before it is stored and never returned.

import { Type, type Static } from 'typebox';
import { discoverOidc, sealClientSecret } from '../../auth/federation/relying-party.ts';
import { requireAllowedUrl } from '../../auth/federation/url-policy.ts';
import { BadRequest, NotFound } from '../../domain/errors.ts';
import {
  ORG_SLUG_PATTERN,
  PROVIDER_NAME_PATTERN,
  type ClaimMapping,
  type OAuthSettings,
  type OidcSettings,
  type Organization,
} from '../../domain/organization.ts';
import { redirectUriOf } from '../../flows/sso/steps.ts';
import { assertAdminOf, requireAdmin } from '../admin-auth.ts';
import type { App, Deps } from '../deps.ts';
import { BearerSecurity, problems, TenantId } from '../schemas.ts';

const Url = Type.String({ minLength: 8, maxLength: 2048 });
const Secret = Type.Union([Type.String({ minLength: 1, maxLength: 1024 }), Type.Null()], {
  description:
    'Omitted: the stored secret is kept when the client id, issuer and every endpoint are unchanged (otherwise 400 client_secret_required). null: none (a public client, PKCE only).',
});
const Scopes = Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5b\\x5d-\\x7e]{1,128}$' }), { minItems: 1, maxItems: 20, uniqueItems: true });
const AuthMethod = Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post')]);
const JsonPath = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}(\\.[A-Za-z0-9_-]{1,64}){0,7}$' });

const OidcInput = Type.Object(
  {
    issuer: Url,
    clientId: Type.String({ minLength: 1, maxLength: 255 }),
    clientSecret: Type.Optional(Secret),
    scopes: Type.Optional(Scopes),
    tokenEndpointAuthMethod: Type.Optional(AuthMethod),
  },
  { additionalProperties: false },
);

const OAuthInput = Type.Object(
  {
    provider: Type.String({ pattern: PROVIDER_NAME_PATTERN, description: 'The {provider} of /api/v1/sso/oauth/{provider}/…' }),
    authorizationEndpoint: Url,
    tokenEndpoint: Url,
    userinfoEndpoint: Url,
    clientId: Type.String({ minLength: 1, maxLength: 255 }),
    clientSecret: Type.Optional(Secret),
    scopes: Type.Optional(Scopes),
    issuer: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, description: "Namespace of the provider's subjects; default: the authorization endpoint's origin" })),
    mapping: Type.Optional(
      Type.Object(
        {
          subject: Type.Optional(JsonPath),
          email: Type.Optional(Type.Union([JsonPath, Type.Null()])),
          emailVerified: Type.Optional(Type.Union([JsonPath, Type.Null()])),
        },
        { additionalProperties: false },
      ),
    ),
    tokenEndpointAuthMethod: Type.Optional(AuthMethod),
    pkce: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const OrgInput = Type.Object(
  {
    tenantId: TenantId,
    oidc: Type.Optional(OidcInput),
    oauth: Type.Optional(OAuthInput),
    linkVerifiedEmail: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const OrgSchema = Type.Object({
  slug: Type.String(),
  tenantId: Type.String(),
  protocol: Type.Union([Type.Literal('oidc'), Type.Literal('oauth')]),
  oidc: Type.Union([
    Type.Object({ issuer: Type.String(), clientId: Type.String(), hasClientSecret: Type.Boolean(), scopes: Type.Array(Type.String()), tokenEndpointAuthMethod: Type.String() }),
    Type.Null(),
  ]),
  oauth: Type.Union([
    Type.Object({
      provider: Type.String(),
      authorizationEndpoint: Type.String(),
      tokenEndpoint: Type.String(),
      userinfoEndpoint: Type.String(),
      clientId: Type.String(),
      hasClientSecret: Type.Boolean(),
      scopes: Type.Array(Type.String()),
      issuer: Type.String(),
      mapping: Type.Object({ subject: Type.String(), email: Type.Union([Type.String(), Type.Null()]), emailVerified: Type.Union([Type.String(), Type.Null()]) }),
      tokenEndpointAuthMethod: Type.String(),
      pkce: Type.Boolean(),
    }),
    Type.Null(),
  ]),
  linkVerifiedEmail: Type.Boolean(),
  redirectUri: Type.String({ description: 'Register this redirect URI at the identity provider.' }),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});

export function orgJson(org: Organization, publicUrl: string) {
  const { oidc, oauth } = org;
  return {
    slug: org.slug,
    tenantId: org.tenantId,
    protocol: org.protocol,
    oidc: oidc && {
      issuer: oidc.issuer,
      clientId: oidc.clientId,
      hasClientSecret: oidc.sealedClientSecret !== null,
      scopes: oidc.scopes,
      tokenEndpointAuthMethod: oidc.tokenEndpointAuthMethod,
    },
    oauth: oauth && {
      provider: oauth.provider,
      authorizationEndpoint: oauth.authorizationEndpoint,
      tokenEndpoint: oauth.tokenEndpoint,
      userinfoEndpoint: oauth.userinfoEndpoint,
      clientId: oauth.clientId,
      hasClientSecret: oauth.sealedClientSecret !== null,
      scopes: oauth.scopes,
      issuer: oauth.identityIssuer,
      mapping: oauth.mapping,
      tokenEndpointAuthMethod: oauth.tokenEndpointAuthMethod,
      pkce: oauth.pkce,
    },
    linkVerifiedEmail: org.linkVerifiedEmail,
    redirectUri: redirectUriOf(publicUrl, org.protocol, oauth?.provider ?? null),
    createdAt: new Date(org.createdAt).toISOString(),
    updatedAt: new Date(org.updatedAt).toISOString(),
  };
}

/**
 * The secret to store: the new one sealed, none, or (omitted) the stored one — only when the
 * client id and everything that decides where the secret is sent (`sameProvider`: the issuer and
 * every endpoint) are unchanged. Otherwise a stored secret, which the platform may have set,
 * would follow an administrator's edit to a server of their choosing: the caller must give the
 * secret again (or `null`).
 */
function secretFor(
  deps: Deps,
  field: 'oidc.clientSecret' | 'oauth.clientSecret',
  given: string | null | undefined,
  previous: { clientId: string; sealedClientSecret: string | null } | null,
  clientId: string,
  sameProvider: boolean,
): string | null {
  if (given === null) return null;
  if (given !== undefined) return sealClientSecret(deps.keys.clientSecrets, given);
  if (previous === null || previous.sealedClientSecret === null) return null;
  if (previous.clientId === clientId && sameProvider) return previous.sealedClientSecret;
  throw new BadRequest(
    'client_secret_required',
    `The client id, issuer or an endpoint changed: give ${field} again (or null for a public client); the stored secret is kept only for the same provider.`,
    { field },
  );
}

async function buildOrganization(deps: Deps, slug: string, body: Static<typeof OrgInput>, previous: Organization | null, now: number): Promise<Organization> {
  const allowHttp = deps.config.devAllowHttpLoopback;
  if ((body.oidc === undefined) === (body.oauth === undefined)) {
    throw new BadRequest('invalid_org', 'Give exactly one provider: "oidc" (OpenID Connect) or "oauth" (plain OAuth 2.0).');
  }
  let oidc: OidcSettings | null = null;
  let oauth: OAuthSettings | null = null;
  if (body.oidc) {
    const i = body.oidc;
    requireAllowedUrl(i.issuer, 'oidc.issuer', allowHttp, 'oidc.issuer');
    await deps.outbound.check(i.issuer, 'oidc.issuer');
    // Every endpoint of an OpenID provider comes from its issuer's discovery document.
    const sealed = secretFor(deps, 'oidc.clientSecret', i.clientSecret, previous?.oidc ?? null, i.clientId, previous?.oidc?.issuer === i.issuer);
    oidc = {
      issuer: i.issuer,
      clientId: i.clientId,
      sealedClientSecret: sealed,
      scopes: i.scopes ?? ['openid', 'email'],
      tokenEndpointAuthMethod: i.tokenEndpointAuthMethod ?? 'client_secret_basic',
    };
    if (!oidc.scopes.includes('openid')) throw new BadRequest('invalid_org', 'oidc.scopes must include "openid".', { field: 'oidc.scopes' });
    // Discovery now, so that a wrong issuer is found by whoever configures it, not by a user.
    await discoverOidc(oidc, i.clientSecret ?? null, deps.outbound);
  } else if (body.oauth) {
    const i = body.oauth;
    const authorization = requireAllowedUrl(i.authorizationEndpoint, 'oauth.authorizationEndpoint', allowHttp, 'oauth.authorizationEndpoint');
    requireAllowedUrl(i.tokenEndpoint, 'oauth.tokenEndpoint', allowHttp, 'oauth.tokenEndpoint');
    requireAllowedUrl(i.userinfoEndpoint, 'oauth.userinfoEndpoint', allowHttp, 'oauth.userinfoEndpoint');
    // Tessera itself calls these two (the browser alone goes to the authorization endpoint).
    await deps.outbound.check(i.tokenEndpoint, 'oauth.tokenEndpoint');
    await deps.outbound.check(i.userinfoEndpoint, 'oauth.userinfoEndpoint');
    const mapping: ClaimMapping = {
      subject: i.mapping?.subject ?? 'id',
      email: i.mapping?.email === undefined ? 'email' : i.mapping.email,
      emailVerified: i.mapping?.emailVerified ?? null,
    };
    const identityIssuer = i.issuer ?? authorization.url.origin;
    const p = previous?.oauth ?? null;
    const sameProvider =
      p !== null &&
      p.authorizationEndpoint === i.authorizationEndpoint &&
      p.tokenEndpoint === i.tokenEndpoint &&
      p.userinfoEndpoint === i.userinfoEndpoint &&
      p.identityIssuer === identityIssuer;
    oauth = {
      provider: i.provider,
      authorizationEndpoint: i.authorizationEndpoint,
      tokenEndpoint: i.tokenEndpoint,
      userinfoEndpoint: i.userinfoEndpoint,
      clientId: i.clientId,
      sealedClientSecret: secretFor(deps, 'oauth.clientSecret', i.clientSecret, p, i.clientId, sameProvider),
      scopes: i.scopes ?? [],
      identityIssuer,
      mapping,
      tokenEndpointAuthMethod: i.tokenEndpointAuthMethod ?? 'client_secret_basic',
      pkce: i.pkce ?? true,
    };
  }
  return {
    slug,
    tenantId: body.tenantId,
    protocol: oidc ? 'oidc' : 'oauth',
    oidc,
    oauth,
    linkVerifiedEmail: body.linkVerifiedEmail ?? false,
    createdAt: previous?.createdAt ?? now,
    // Strictly increasing, so that every process's cached provider configuration is replaced.
    updatedAt: previous !== null && previous.updatedAt >= now ? previous.updatedAt + 1 : now,
  };
}

export async function adminOrgRoutes(app: App, deps: Deps): Promise<void> {
  const params = Type.Object({ slug: Type.String({ pattern: ORG_SLUG_PATTERN, description: 'Organization slug' }) });

  app.put(
    '/api/v1/admin/orgs/:slug',
    {
      preHandler: requireAdmin(deps),
      schema: {
        tags: ['admin', 'sso'],
        summary: 'Create or replace an organization and its identity provider',
        description:
          'Exactly one of `oidc` (OpenID Connect: discovered from the issuer when stored) or `oauth` (plain OAuth 2.0 endpoints and a mapping of the user document: `subject` default `id`, `email` default `email`, `emailVerified` default none). Plain-HTTP URLs are refused, except loopback ones with TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1. The client secret is stored sealed and never returned.',
        security: BearerSecurity,
        params,
        body: OrgInput,
        response: { 200: OrgSchema, ...problems(400, 401, 403, 404, 502) },
      },
    },
    async (request) => {
      const { slug } = request.params;
      assertAdminOf(request, request.body.tenantId);
      const previous = await deps.store.federation.getOrganization(slug);
      // A tenant administrator may not take over another tenant's slug.
      if (previous) assertAdminOf(request, previous.tenantId);
      if (!(await deps.store.getTenant(request.body.tenantId))) {
        throw new NotFound('tenant_not_found', `No tenant "${request.body.tenantId}"; create it first with PUT /api/v1/admin/tenants/${request.body.tenantId}.`);
      }
      const org = await buildOrganization(deps, slug, request.body, previous, deps.clock.now());
      return orgJson(await deps.store.federation.putOrganization(org, previous?.tenantId ?? null), deps.config.publicUrl);
    },
  );

  app.get(
    '/api/v1/admin/orgs/:slug',
    {
      preHandler: requireAdmin(deps),
      schema: {
        tags: ['admin', 'sso'],
        summary: 'An organization (without its client secret)',
        security: BearerSecurity,
        params,
        response: { 200: OrgSchema, ...problems(401, 403, 404) },
      },
    },
    async (request) => {
      const org = await deps.store.federation.getOrganization(request.params.slug);
      if (!org) throw new NotFound('org_not_found', `No organization "${request.params.slug}".`);
      assertAdminOf(request, org.tenantId);
      return orgJson(org, deps.config.publicUrl);
    },
  );
}
