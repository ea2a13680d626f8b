// Tessera's OpenID provider for the platform's own applications (docs/api.md §Platform
// applications): the `oidc-provider` package is the protocol engine (discovery, authorization code
// + PKCE, token, userinfo, JWKS, RP-initiated logout); Tessera supplies what it stands on:
//
// - storage: the adapter below, over `SessionStore.oidc` (SQLite, Redis or PostgreSQL) — records
//   under keyed hashes of their ids, payloads sealed (records.ts) — and the `Client` model read
//   from the applications registered by PUT /api/v1/admin/apps/{clientId};
// - accounts: `findAccount` reads Tessera's users, in the tenant of the asking application;
// - who is signed in: a login check makes Tessera's `idp` session (cookie `__Host-idp`) decide.
//   oidc-provider's own browser session only remembers which applications were authorized;
//   without a valid `idp` session of the same user the login prompt comes back, and the
//   interaction (http/routes/oidc.ts) either finishes at once from the `idp` session or sends the
//   browser through the organization's external provider (flows/sso);
// - the session tree: every authorization response with a code creates (or refreshes) the
//   application's `app` session under the `idp` session, with oidc-provider's per-client `sid`;
// - logout: RP-initiated logout ends the `idp` session and its subtree, and the applications
//   hear of it by back-channel logout tokens that Tessera sends itself (backchannel.ts: retries,
//   an audit event per delivery), so oidc-provider's own single-attempt sender is switched off.

import { randomBytes } from 'node:crypto';
import Provider, { errors, interactionPolicy, type Adapter, type AdapterPayload, type ClientMetadata, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import { unsealClientSecret } from '../../auth/federation/relying-party.ts';
import { judgeUrl } from '../../auth/federation/url-policy.ts';
import type { Origin } from '../../events/bus.ts';
import type { Clock } from '../../domain/clock.ts';
import type { PlatformApp } from '../../store/oidc-port.ts';
import type { User } from '../../domain/user.ts';
import { keyedDigest, deriveKey } from '../../tokens/sealing.ts';
import { followSessionEnds, registerLogoutSigner, type BackchannelDeps } from './backchannel.ts';
import { DEFAULT_OIDC_SIGNING_ALG, loadOidcSigningKeys, OIDC_SIGNING_ALGS } from './keys.ts';
import { openRecord, recordKeys, sealRecord, storedGrantId, storedId, storedUid } from './records.ts';
import { cookieName } from '../../tokens/cookies.ts';
import { endSessionsAndNotify, ensureAppSession, touchIdpSession, validIdpSession, type OidcLevelsDeps } from './levels.ts';

/** What the OpenID provider uses, declared here (src/runtime.ts's `Deps` has all of it). */
export interface OidcProviderDeps extends OidcLevelsDeps, Omit<BackchannelDeps, 'config' | 'store'> {
  config: OidcLevelsDeps['config'] & BackchannelDeps['config'];
  clock: Clock;
}

type Deps = OidcProviderDeps;

export const OIDC_PREFIX = '/oidc';

/** The issuer of Tessera's provider: the public URL and /oidc. */
export function oidcIssuer(publicUrl: string): string {
  return `${publicUrl}${OIDC_PREFIX}`;
}

/** How oidc-provider sees an application. */
export function clientMetadataOf(deps: Pick<Deps, 'keys'>, app: PlatformApp): ClientMetadata {
  const secret = app.sealedClientSecret === null ? null : unsealClientSecret(deps.keys.clientSecrets, app.sealedClientSecret);
  return {
    client_id: app.clientId,
    // oidc-provider takes a secret by HTTP Basic or in the form alike (client_secret_basic and
    // client_secret_post).
    ...(secret !== null ? { client_secret: secret, token_endpoint_auth_method: 'client_secret_basic' } : { token_endpoint_auth_method: 'none' }),
    redirect_uris: app.redirectUris,
    post_logout_redirect_uris: app.postLogoutRedirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    id_token_signed_response_alg: app.idTokenSignedResponseAlg ?? DEFAULT_OIDC_SIGNING_ALG,
    // Declared so that ID tokens carry `sid` and discovery says so; the tokens are sent by
    // Tessera (backchannel.ts), not by oidc-provider.
    ...(app.backchannelLogoutUri !== null ? { backchannel_logout_uri: app.backchannelLogoutUri, backchannel_logout_session_required: true } : {}),
  };
}

function originOfKoa(ctx: KoaContextWithOIDC): Origin {
  return { headers: {}, ip: ctx.ip, userAgent: ctx.get('user-agent') || null };
}

function adapterFactory(deps: Deps) {
  const oidc = deps.store.oidc;
  // Records are stored under keyed hashes of their ids, payloads sealed (records.ts, item 11).
  const keys = recordKeys(deps.config.cookieSecret);
  // oidc-provider decides expiry by the wall clock (its own `exp`s), so its records do too.
  return class TesseraAdapter implements Adapter {
    readonly name: string;
    constructor(name: string) {
      this.name = name;
    }
    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      const now = Date.now();
      const expiresAt = now + (expiresIn > 0 ? expiresIn : 14 * 86400) * 1000;
      await oidc.upsertModel(this.name, storedId(keys, this.name, id), sealRecord(keys, this.name, payload), expiresAt, now);
    }
    async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.name === 'Client') {
        const app = await oidc.getApp(id);
        return app ? (clientMetadataOf(deps, app)) : undefined;
      }
      const stored = await oidc.findModel(this.name, storedId(keys, this.name, id), Date.now());
      return openRecord(keys, this.name, stored, { id }) ?? undefined;
    }
    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      const stored = await oidc.findModelByUid(this.name, storedUid(keys, this.name, uid), Date.now());
      return openRecord(keys, this.name, stored, { uid }) ?? undefined;
    }
    async findByUserCode(): Promise<AdapterPayload | undefined> {
      return undefined; // no device flow (features.deviceFlow is off): oidc-provider never asks
    }
    async consume(id: string): Promise<void> {
      await oidc.consumeModel(this.name, storedId(keys, this.name, id), Date.now());
    }
    async destroy(id: string): Promise<void> {
      await oidc.destroyModel(this.name, storedId(keys, this.name, id));
    }
    async revokeByGrantId(grantId: string): Promise<void> {
      await oidc.revokeByGrantId(storedGrantId(keys, grantId));
    }
  };
}

/** Why /oidc gives this user nothing (no code, no token, no claims), or null when it may: a user gone or disabled. */
export function accountRefusal(user: User | null): string | null {
  if (user === null) return 'This account no longer exists.';
  return user.disabled === true ? 'This account is disabled; ask an administrator.' : null;
}

/**
 * The application's `app` session under the valid idp session of the person who is being given a
 * code; throws an oidc-provider error (sent to the application) when there is none.
 */
async function bindAppSession(deps: Deps, ctx: KoaContextWithOIDC): Promise<void> {
  const { client, session } = ctx.oidc;
  const now = deps.clock.now();
  const app = client ? await deps.store.oidc.getApp(client.clientId) : null;
  const idp = app ? await validIdpSession(deps, ctx.get('cookie'), now, app.tenantId) : null;
  const sid = client ? session?.sidFor(client.clientId) : undefined;
  if (!client || !idp || idp.userId !== session?.accountId || !sid) throw new errors.LoginRequired('the idp session ended during the sign-in');
  try {
    await ensureAppSession(deps, idp, client.clientId, sid, now, originOfKoa(ctx));
  } catch (err) {
    throw new errors.AccessDenied(err instanceof Error ? err.message : 'the sign-in failed');
  }
}

const LOGOUT_PAGE = (form: string) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signing out…</title></head>
<body><h1>Signing out of every application…</h1>${form.replace('</form>', '<input type="hidden" name="logout" value="yes"/><noscript><button type="submit">Sign out</button></noscript></form>')}
<script>document.forms[0].submit()</script></body></html>`;

/**
 * Without a valid id_token_hint the request may come from any site (logout CSRF): the person is
 * asked, and nothing is submitted for them.
 */
const LOGOUT_QUESTION = (form: string) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign out?</title></head>
<body><h1>Sign out of every application?</h1>${form.replace('</form>', '<button type="submit" name="logout" value="yes" id="confirm-logout">Sign out</button></form>')}
<p>If you did not ask to sign out, close this page.</p></body></html>`;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export interface OidcProvider {
  provider: Provider;
  issuer: string;
  /** Stops following session ends (back-channel logout). */
  stop: () => void;
}

export async function createOidcProvider(deps: Deps): Promise<OidcProvider> {
  const issuer = oidcIssuer(deps.config.publicUrl);
  const keys = await loadOidcSigningKeys(deps.store, deps.config.cookieSecret, deps.clock.now());
  registerLogoutSigner(deps, issuer, keys);
  const cookieKey = keyedDigest(deriveKey(deps.config.cookieSecret, 'cookie-signing'), 'oidc-provider-cookies');

  const policy = interactionPolicy.base();
  // Tessera's idp session decides whether the person is signed in (docs/sessions.md):
  // oidc-provider's own session counts only while an idp session of the same user is valid.
  policy.get('login')!.checks.add(
    new interactionPolicy.Check('tessera_idp_session', 'Tessera has no valid idp session for this user', async (ctx) => {
      const app = ctx.oidc.client ? await deps.store.oidc.getApp(ctx.oidc.client.clientId) : null;
      const now = deps.clock.now();
      const idp = app ? await validIdpSession(deps, ctx.get('cookie'), now, app.tenantId) : null;
      if (!idp) return interactionPolicy.Check.REQUEST_PROMPT;
      // A user disabled (or deleted) whose idp session was not ended yet gets no code: the
      // application is told access_denied at its redirect URI, as an identity provider answers
      // for an account it will not sign in (docs/api.md). Decided before anything else about
      // the request — whether oidc-provider has a session of its own (none yet: prompt=none
      // would otherwise be login_required, and an interaction would follow), prompt=login or
      // max_age (an interaction that would send the person to the external provider) — and
      // before the idp session is touched. oidc-provider runs the login checks together, so
      // this refusal wins over whichever of them asks for a prompt.
      const refusal = accountRefusal(await deps.store.getUser(idp.tenantId, idp.userId as string));
      if (refusal !== null) throw new errors.AccessDenied(refusal);
      if (idp.userId !== ctx.oidc.session?.accountId) return interactionPolicy.Check.REQUEST_PROMPT;
      await touchIdpSession(deps, idp, now);
      return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    }),
  );

  const configuration: Configuration = {
    adapter: adapterFactory(deps),
    jwks: { keys: keys.map((k) => k.privateJwk) },
    cookies: {
      keys: [cookieKey],
      names: { session: 'tessera_oidc_session', interaction: 'tessera_oidc_interaction', resume: 'tessera_oidc_resume' },
    },
    // What discovery advertises is what works for every registered application: the code flow
    // (PKCE) with the query, fragment or form_post response mode; scopes `openid` and `email`
    // (no `offline_access`, so no refresh tokens: an application signs in again from the idp
    // session, silently while it is valid); ID tokens RS256 or ES256, as each application
    // registered; client authentication by secret (HTTP Basic or in the form) or none (public).
    scopes: ['openid'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'none'],
    clientDefaults: { id_token_signed_response_alg: DEFAULT_OIDC_SIGNING_ALG, grant_types: ['authorization_code'], response_types: ['code'] },
    enabledJWA: { idTokenSigningAlgValues: [...OIDC_SIGNING_ALGS] },
    // The granted scope's claims go into the ID token too (`email` with the email scope), as
    // relying parties that read only the ID token (express-openid-connect, Auth.js) expect.
    conformIdTokenClaims: false,
    extraParams: ['orgSlug'],
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      revocation: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // RP-initiated logout is the idp-level logout of every application. With an
        // id_token_hint (validated by oidc-provider before this is called) the application asked
        // for it: no second question. Without one, anyone could have sent the browser here.
        logoutSource: async (ctx, form) => {
          ctx.type = 'html';
          ctx.body = ctx.oidc.entities.IdTokenHint ? LOGOUT_PAGE(form) : LOGOUT_QUESTION(form);
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.type = 'html';
          ctx.body = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head><body><h1 id="signed-out">You are signed out of every application.</h1></body></html>';
        },
      },
    },
    pkce: { required: () => true },
    // Called by oidc-provider for every authorization code it issues, before the code is saved
    // and before any response (redirect, form_post) is written: the application's app session
    // under the idp session is made here, and a failure becomes an authorization error response
    // sent to the application the way its response mode says. Codes end with the provider's
    // session (no offline access).
    expiresWithSession: async (ctx, token) => {
      if (token.kind === 'AuthorizationCode') await bindAppSession(deps, ctx);
      return true;
    },
    interactions: { url: (_ctx, interaction) => `${OIDC_PREFIX}/interaction/${interaction.uid}`, policy },
    // Applications registered with Tessera are the platform's own: no consent screen.
    loadExistingGrant: async (ctx) => {
      const clientId = ctx.oidc.client!.clientId;
      const accountId = ctx.oidc.session!.accountId!;
      const grantId = ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session!.grantIdFor(clientId);
      if (grantId) {
        const found = await ctx.oidc.provider.Grant.find(grantId);
        if (found && found.accountId === accountId) return found;
      }
      const grant = new ctx.oidc.provider.Grant({ clientId, accountId });
      grant.addOIDCScope('openid email');
      await grant.save();
      return grant;
    },
    findAccount: async (ctx, sub) => {
      const app = ctx.oidc.client ? await deps.store.oidc.getApp(ctx.oidc.client.clientId) : null;
      const user = app ? await deps.store.getUser(app.tenantId, sub) : null;
      // No account for a disabled user: a code issued before is refused at the token endpoint
      // (invalid_grant), an access token issued before at userinfo (invalid_token).
      if (!user || accountRefusal(user) !== null) return undefined;
      const realEmail = !user.email.endsWith('.invalid');
      return {
        accountId: sub,
        claims: () => ({ sub, ...(realEmail ? { email: user.email, email_verified: true } : {}) }),
      };
    },
    ttl: { AuthorizationCode: 60, AccessToken: 600, IdToken: 600, Interaction: 600, Grant: 14 * 86400, Session: 14 * 86400 },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign-in failed</title></head><body><h1>Sign-in failed</h1><p>Error <code id="code">${escapeHtml(String(out.error))}</code></p><p id="detail">${escapeHtml(String(out.error_description ?? ''))}</p></body></html>`;
    },
  };

  const provider = new Provider(issuer, configuration);
  // Host, scheme and client address come from routes/oidc.ts (asPublicRequest): the public URL
  // and the address Fastify decided, never what the client claims.
  provider.proxy = true;
  // Tessera sends back-channel logout tokens itself (retries, audit); oidc-provider's sender
  // would send a second, unretried copy.
  provider.Client.prototype.backchannelLogout = async () => undefined;
  provider.on('server_error', (_ctx, err) => {
    process.stderr.write(`oidc-provider server_error: ${err instanceof Error ? err.stack : String(err)}\n`);
  });

  provider.use(async (ctx, next) => {
    const route = () => (ctx as KoaContextWithOIDC).oidc?.route;
    const cookieHeader = ctx.get('cookie');
    await next();
    // Discovery and the key set may be cached a while (keys are added well before they sign);
    // everything else is per request.
    if ((route() === 'discovery' || route() === 'jwks') && ctx.status === 200) ctx.set('cache-control', 'public, max-age=300');
    else if (!ctx.response.get('cache-control')) ctx.set('cache-control', 'no-store');
    ctx.set('x-content-type-options', 'nosniff');
    const oc = (ctx as KoaContextWithOIDC).oidc;
    if (!oc) return;
    const now = deps.clock.now();
    // RP-initiated logout, confirmed: the idp level (every application).
    if (route() === 'end_session_confirm' && (ctx.status === 302 || ctx.status === 303) && oc.params?.logout) {
      const idp = await validIdpSession(deps, cookieHeader, now);
      if (idp) await endSessionsAndNotify(deps, idp.handle, 'logout', now, originOfKoa(ctx as KoaContextWithOIDC));
      const secure = !deps.config.insecureCookies;
      ctx.append('set-cookie', `${cookieName(deps.config, 'idp')}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`);
    }
  });

  return { provider, issuer, stop: followSessionEnds(deps) };
}

/** Plain HTTP for the issuer only on loopback with TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1. */
export function issuerVerdict(publicUrl: string, allowHttpLoopback: boolean): string | null {
  const v = judgeUrl(oidcIssuer(publicUrl), "Tessera's OpenID provider issuer (from TESSERA_PUBLIC_URL)", allowHttpLoopback);
  return v.ok ? null : `${v.reason}; serve Tessera over HTTPS.`;
}

export function newClientSecret(): string {
  return randomBytes(32).toString('base64url');
}
