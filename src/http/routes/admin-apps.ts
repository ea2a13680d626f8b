// PUT/GET /api/v1/admin/apps/{clientId} (docs/api.md §Platform applications): a platform
// application, an OpenID Connect client of Tessera's own provider (/oidc). Redirect URIs,
// post-logout redirect URIs and the back-channel logout URI must be HTTPS (plain HTTP only on
// loopback with TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1). The client secret is sealed (AES-256-GCM, key
// `seal-client-secrets`: oidc-provider must compare it) and never returned. Without one the
// application is a public client (PKCE only, which /oidc requires of every client anyway).

import { Type, type Static } from 'typebox';
import { sealClientSecret } from '../../auth/federation/relying-party.ts';
import { requireAllowedUrl } from '../../auth/federation/url-policy.ts';
import { BadRequest, NotFound } from '../../domain/errors.ts';
import { ORG_SLUG_PATTERN } from '../../domain/organization.ts';
import { DEFAULT_OIDC_SIGNING_ALG } from '../../flows/oidc/keys.ts';
import { oidcIssuer } from '../../flows/oidc/provider.ts';
import type { PlatformApp } from '../../store/oidc-port.ts';
import { assertAdminOf, requireAdmin } from '../admin-auth.ts';
import type { App, Deps } from '../deps.ts';
import { BearerSecurity, problems, TenantId } from '../schemas.ts';

export const CLIENT_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';

const Uri = Type.String({ minLength: 8, maxLength: 2048 });

const AppInput = Type.Object(
  {
    tenantId: TenantId,
    redirectUris: Type.Array(Uri, { minItems: 1, maxItems: 20, uniqueItems: true }),
    postLogoutRedirectUris: Type.Optional(Type.Array(Uri, { maxItems: 20, uniqueItems: true })),
    orgSlug: Type.Optional(Type.Union([Type.String({ pattern: ORG_SLUG_PATTERN }), Type.Null()], { description: 'Default organization (external provider) when an authorization request names none' })),
    backchannelLogoutUri: Type.Optional(Type.Union([Uri, Type.Null()])),
    clientSecret: Type.Optional(
      Type.Union([Type.String({ minLength: 32, maxLength: 512 }), Type.Null()], {
        description: 'At least 32 characters. Omitted: the stored secret is kept. null: a public client.',
      }),
    ),
    idTokenSignedResponseAlg: Type.Optional(
      Type.Union([Type.Literal('RS256'), Type.Literal('ES256')], { description: 'How ID tokens and back-channel logout tokens for this application are signed. Default RS256.' }),
    ),
  },
  { additionalProperties: false },
);

const AppSchema = Type.Object({
  clientId: Type.String(),
  tenantId: Type.String(),
  redirectUris: Type.Array(Type.String()),
  postLogoutRedirectUris: Type.Array(Type.String()),
  orgSlug: Type.Union([Type.String(), Type.Null()]),
  backchannelLogoutUri: Type.Union([Type.String(), Type.Null()]),
  hasClientSecret: Type.Boolean(),
  idTokenSignedResponseAlg: Type.Union([Type.Literal('RS256'), Type.Literal('ES256')]),
  tokenEndpointAuthMethod: Type.Union([Type.Literal('client_secret_basic'), Type.Literal('none')], {
    description: 'client_secret_basic: the application sends its secret by HTTP Basic or (client_secret_post) in the form; none: a public client (PKCE)',
  }),
  issuer: Type.String({ description: "Tessera's OpenID provider: discovery at <issuer>/.well-known/openid-configuration" }),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});

function appJson(app: PlatformApp, publicUrl: string) {
  return {
    clientId: app.clientId,
    tenantId: app.tenantId,
    redirectUris: app.redirectUris,
    postLogoutRedirectUris: app.postLogoutRedirectUris,
    orgSlug: app.orgSlug,
    backchannelLogoutUri: app.backchannelLogoutUri,
    hasClientSecret: app.sealedClientSecret !== null,
    idTokenSignedResponseAlg: app.idTokenSignedResponseAlg ?? DEFAULT_OIDC_SIGNING_ALG,
    tokenEndpointAuthMethod: app.sealedClientSecret === null ? ('none' as const) : ('client_secret_basic' as const),
    issuer: oidcIssuer(publicUrl),
    createdAt: new Date(app.createdAt).toISOString(),
    updatedAt: new Date(app.updatedAt).toISOString(),
  };
}

async function buildApp(deps: Deps, clientId: string, body: Static<typeof AppInput>, previous: PlatformApp | null, now: number): Promise<PlatformApp> {
  const allowHttp = deps.config.devAllowHttpLoopback;
  body.redirectUris.forEach((u, i) => requireAllowedUrl(u, `redirectUris[${i}]`, allowHttp, `redirectUris[${i}]`));
  (body.postLogoutRedirectUris ?? []).forEach((u, i) => requireAllowedUrl(u, `postLogoutRedirectUris[${i}]`, allowHttp, `postLogoutRedirectUris[${i}]`));
  const backchannel = body.backchannelLogoutUri ?? null;
  if (backchannel !== null) {
    requireAllowedUrl(backchannel, 'backchannelLogoutUri', allowHttp, 'backchannelLogoutUri');
    await deps.outbound.check(backchannel, 'backchannelLogoutUri');
  }
  const orgSlug = body.orgSlug ?? null;
  if (orgSlug !== null) {
    const org = await deps.store.federation.getOrganization(orgSlug);
    if (!org || org.tenantId !== body.tenantId) {
      throw new BadRequest('invalid_app', `No organization "${orgSlug}" in tenant "${body.tenantId}".`, { field: 'orgSlug' });
    }
  }
  let sealed: string | null;
  if (body.clientSecret === null) sealed = null;
  else if (body.clientSecret !== undefined) sealed = sealClientSecret(deps.keys.clientSecrets, body.clientSecret);
  else sealed = previous?.sealedClientSecret ?? null;
  return {
    clientId,
    tenantId: body.tenantId,
    redirectUris: body.redirectUris,
    postLogoutRedirectUris: body.postLogoutRedirectUris ?? [],
    orgSlug,
    backchannelLogoutUri: backchannel,
    sealedClientSecret: sealed,
    ...(body.idTokenSignedResponseAlg !== undefined ? { idTokenSignedResponseAlg: body.idTokenSignedResponseAlg } : {}),
    createdAt: previous?.createdAt ?? now,
    updatedAt: now,
  };
}

export async function adminAppRoutes(app: App, deps: Deps): Promise<void> {
  const params = Type.Object({ clientId: Type.String({ pattern: CLIENT_ID_PATTERN, description: 'The OIDC client id' }) });

  app.put(
    '/api/v1/admin/apps/:clientId',
    {
      preHandler: requireAdmin(deps),
      schema: {
        tags: ['admin', 'oidc'],
        summary: 'Register or replace a platform application (an OIDC client of /oidc)',
        description:
          'Redirect URIs, post-logout redirect URIs and the back-channel logout URI must be https:// (plain-HTTP loopback only with TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1). `orgSlug`: the organization whose external provider signs users in when the authorization request names none. The client secret is stored sealed and never returned.',
        security: BearerSecurity,
        params,
        body: AppInput,
        response: { 200: AppSchema, ...problems(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const { clientId } = request.params;
      assertAdminOf(request, request.body.tenantId);
      const previous = await deps.store.oidc.getApp(clientId);
      // A tenant administrator may not take over another tenant's application.
      if (previous) assertAdminOf(request, previous.tenantId);
      if (!(await deps.store.getTenant(request.body.tenantId))) {
        throw new NotFound('tenant_not_found', `No tenant "${request.body.tenantId}"; create it first with PUT /api/v1/admin/tenants/${request.body.tenantId}.`);
      }
      const built = await buildApp(deps, clientId, request.body, previous, deps.clock.now());
      return appJson(await deps.store.oidc.putApp(built), deps.config.publicUrl);
    },
  );

  app.get(
    '/api/v1/admin/apps/:clientId',
    {
      preHandler: requireAdmin(deps),
      schema: {
        tags: ['admin', 'oidc'],
        summary: 'A platform application (without its client secret)',
        security: BearerSecurity,
        params,
        response: { 200: AppSchema, ...problems(401, 403, 404) },
      },
    },
    async (request) => {
      const found = await deps.store.oidc.getApp(request.params.clientId);
      if (!found) throw new NotFound('app_not_found', `No application "${request.params.clientId}".`);
      assertAdminOf(request, found.tenantId);
      return appJson(found, deps.config.publicUrl);
    },
  );
}
