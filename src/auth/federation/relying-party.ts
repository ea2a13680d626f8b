// Tessera as a relying party of an organization's identity provider, through openid-client v6:
// discovery (OIDC) or configured endpoints (plain OAuth 2.0), the authorization URL (PKCE S256,
// state, nonce), the code exchange and ID token validation (signature against the provider's
// JWKS — switched on explicitly, openid-client skips it by default — issuer, audience, expiry,
// nonce), and the user document of an OAuth 2.0 provider. Provider failures become TesseraErrors
// with stable codes; nothing here knows about HTTP.

import type { KeyObject } from 'node:crypto';
import * as oidc from 'openid-client';
import { TesseraError } from '../../domain/errors.ts';
import {
  InvalidProfile,
  profileFromClaims,
  profileFromUserinfo,
  type ExternalProfile,
  type Organization,
  type TokenEndpointAuthMethod,
} from '../../domain/organization.ts';
import { seal, unseal } from '../../tokens/sealing.ts';
import { UNREACHABLE, type OutboundPolicy } from '../../net/outbound-policy.ts';
import { judgeUrl } from './url-policy.ts';

/** Seconds openid-client waits for any one request to a provider. */
export const PROVIDER_TIMEOUT_S = 10;
/** How long a discovered configuration is reused by this process (wall clock). */
const CONFIG_TTL_MS = 10 * 60_000;
const CONFIG_CACHE_MAX = 1000;

export function sealClientSecret(key: KeyObject, secret: string): string {
  return seal(key, secret);
}

export function unsealClientSecret(key: KeyObject, sealed: string): string {
  try {
    return unseal(key, sealed);
  } catch {
    throw new TesseraError(
      500,
      'client_secret_unreadable',
      "The organization's client secret cannot be unsealed: COOKIE_SECRET_SIGN_KEY differs from the one it was stored with. Store the secret again (PUT /api/v1/admin/orgs/{slug}).",
    );
  }
}

/** A provider that did not answer, or answered something unusable: 502. */
export class ProviderUnavailable extends TesseraError {
  constructor(message: string) {
    super(502, 'sso_provider_unavailable', message);
  }
}

function clientAuth(secret: string | null, method: TokenEndpointAuthMethod): oidc.ClientAuth {
  if (secret === null) return oidc.None();
  return method === 'client_secret_post' ? oidc.ClientSecretPost(secret) : oidc.ClientSecretBasic(secret);
}

/** Every URL of the provider that Tessera will call or send browsers to must pass the policy. */
function checkProviderUrls(urls: Array<[string, string | undefined]>, allowHttpLoopback: boolean): boolean {
  let insecure = false;
  for (const [what, value] of urls) {
    if (value === undefined) continue;
    const v = judgeUrl(value, what, allowHttpLoopback);
    if (!v.ok) throw new TesseraError(400, 'insecure_url', v.reason);
    insecure ||= v.insecure;
  }
  return insecure;
}

/**
 * Every request to a provider goes through the outbound policy's guarded fetch: the address of
 * each connection is checked (no loopback, private or link-local targets; DNS rebinding), and
 * redirects are not followed.
 */
function guardedFetch(outbound: OutboundPolicy): oidc.CustomFetch {
  return (url, options) => outbound.fetch(url, options);
}

/**
 * Discovery of an OIDC issuer, refused unless every URL it names passes the URL policy. A
 * failure says "could not reach the provider" and, for an answer that is not a usable discovery
 * document, openid-client's error code — never the connection error (refused, TLS, timeout),
 * which would make a port scanner of the admin API.
 */
export async function discoverOidc(
  settings: { issuer: string; clientId: string; tokenEndpointAuthMethod: TokenEndpointAuthMethod },
  clientSecret: string | null,
  outbound: OutboundPolicy,
): Promise<oidc.Configuration> {
  const insecure = checkProviderUrls([['the issuer', settings.issuer]], outbound.devAllowHttpLoopback);
  let config: oidc.Configuration;
  try {
    config = await oidc.discovery(new URL(settings.issuer), settings.clientId, undefined, clientAuth(clientSecret, settings.tokenEndpointAuthMethod), {
      // openid-client trusts an ID token from the token endpoint on the strength of TLS alone;
      // docs/api.md §Single sign-on (step 2) asks for its signature to be checked (and in
      // development there is no TLS).
      execute: insecure ? [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks] : [oidc.enableNonRepudiationChecks],
      timeout: PROVIDER_TIMEOUT_S,
      [oidc.customFetch]: guardedFetch(outbound),
    });
  } catch (err) {
    const code = err instanceof oidc.ClientError && typeof err.code === 'string' && err.code !== 'OAUTH_RESPONSE_IS_NOT_CONFORM' ? err.code : null;
    throw new TesseraError(502, 'oidc_discovery_failed', code === null ? UNREACHABLE : `${UNREACHABLE} Its discovery document is not usable (${code}).`);
  }
  const m = config.serverMetadata();
  checkProviderUrls(
    [
      ['the authorization endpoint', m.authorization_endpoint],
      ['the token endpoint', m.token_endpoint],
      ['the JWKS URI', m.jwks_uri],
      ['the userinfo endpoint', m.userinfo_endpoint],
    ],
    outbound.devAllowHttpLoopback,
  );
  if (!m.authorization_endpoint || !m.token_endpoint || !m.jwks_uri) {
    throw new TesseraError(502, 'oidc_discovery_failed', `The discovery document of ${settings.issuer} lacks an authorization endpoint, token endpoint or JWKS URI.`);
  }
  // The endpoints Tessera itself calls must lead to public addresses too (checked again on
  // every connection).
  for (const [what, value] of [
    ['the token endpoint', m.token_endpoint],
    ['the JWKS URI', m.jwks_uri],
    ['the userinfo endpoint', m.userinfo_endpoint],
  ] as const) {
    if (value !== undefined) await outbound.check(value, what);
  }
  return config;
}

/** Per outbound policy (one per runtime): a configuration carries that policy's fetch. */
const caches = new WeakMap<OutboundPolicy, Map<string, { config: oidc.Configuration; until: number }>>();

/**
 * The openid-client Configuration of an organization's provider. Reused for a few minutes per
 * process; any change of the organization (its `updatedAt`) makes a new one.
 */
export async function relyingParty(org: Organization, secretsKey: KeyObject, outbound: OutboundPolicy): Promise<oidc.Configuration> {
  const allowHttpLoopback = outbound.devAllowHttpLoopback;
  let cache = caches.get(outbound);
  if (cache === undefined) {
    cache = new Map<string, { config: oidc.Configuration; until: number }>();
    caches.set(outbound, cache);
  }
  const key = `${org.slug}\u0000${org.updatedAt}\u0000${allowHttpLoopback ? 1 : 0}`;
  const hit = cache.get(key);
  const wallNow = Date.now();
  if (hit && hit.until > wallNow) return hit.config;

  let config: oidc.Configuration;
  if (org.oidc) {
    const s = org.oidc;
    const secret = s.sealedClientSecret === null ? null : unsealClientSecret(secretsKey, s.sealedClientSecret);
    config = await discoverOidc(s, secret, outbound);
  } else if (org.oauth) {
    const s = org.oauth;
    const insecure = checkProviderUrls(
      [
        ['the authorization endpoint', s.authorizationEndpoint],
        ['the token endpoint', s.tokenEndpoint],
        ['the userinfo endpoint', s.userinfoEndpoint],
      ],
      allowHttpLoopback,
    );
    const secret = s.sealedClientSecret === null ? null : unsealClientSecret(secretsKey, s.sealedClientSecret);
    config = new oidc.Configuration(
      {
        issuer: s.identityIssuer,
        authorization_endpoint: s.authorizationEndpoint,
        token_endpoint: s.tokenEndpoint,
        userinfo_endpoint: s.userinfoEndpoint,
      },
      s.clientId,
      undefined,
      clientAuth(secret, s.tokenEndpointAuthMethod),
    );
    if (insecure) oidc.allowInsecureRequests(config);
    config.timeout = PROVIDER_TIMEOUT_S;
    config[oidc.customFetch] = guardedFetch(outbound);
  } else {
    throw new Error(`organization ${org.slug} has no provider`);
  }
  if (cache.size >= CONFIG_CACHE_MAX) cache.clear();
  for (const k of cache.keys()) if (k.startsWith(`${org.slug}\u0000`)) cache.delete(k);
  cache.set(key, { config, until: wallNow + CONFIG_TTL_MS });
  return config;
}

export interface AuthorizationRequest {
  redirectUri: string;
  scopes: string[];
  state: string;
  nonce: string | null;
  codeVerifier: string | null;
  /** `login` when the person must authenticate again (an application asked for it through /oidc). */
  prompt?: 'login';
}

/** The URL the browser is sent to. PKCE S256 whenever a verifier is given. */
export async function authorizationUrl(config: oidc.Configuration, req: AuthorizationRequest): Promise<URL> {
  const params: Record<string, string> = {
    redirect_uri: req.redirectUri,
    scope: req.scopes.join(' '),
    state: req.state,
  };
  if (req.nonce !== null) params.nonce = req.nonce;
  if (req.prompt !== undefined) params.prompt = req.prompt;
  if (req.codeVerifier !== null) {
    params.code_challenge = await oidc.calculatePKCECodeChallenge(req.codeVerifier);
    params.code_challenge_method = 'S256';
  }
  return oidc.buildAuthorizationUrl(config, params);
}

export interface CallbackChecks {
  state: string;
  nonce: string | null;
  codeVerifier: string | null;
}

/**
 * OIDC: validates the authorization response (state, `iss` when the provider sends it, error
 * responses), exchanges the code with the PKCE verifier, validates the ID token (signature with
 * the provider's JWKS, issuer, audience, expiry, nonce), and reads the userinfo for an email the
 * ID token lacks.
 */
export async function completeOidc(config: oidc.Configuration, currentUrl: URL, checks: CallbackChecks): Promise<ExternalProfile> {
  let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
  try {
    tokens = await oidc.authorizationCodeGrant(config, currentUrl, {
      expectedState: checks.state,
      ...(checks.nonce !== null ? { expectedNonce: checks.nonce } : {}),
      ...(checks.codeVerifier !== null ? { pkceCodeVerifier: checks.codeVerifier } : {}),
      idTokenExpected: true,
    });
  } catch (err) {
    throw providerError(err);
  }
  const claims = tokens.claims();
  if (!claims) throw new TesseraError(401, 'sso_id_token_invalid', 'The identity provider returned no ID token.');
  let profile: ExternalProfile;
  try {
    profile = profileFromClaims(config.serverMetadata().issuer, claims);
  } catch (err) {
    throw new TesseraError(401, 'sso_id_token_invalid', (err as Error).message);
  }
  if (profile.email === null && config.serverMetadata().userinfo_endpoint && typeof tokens.access_token === 'string') {
    try {
      const info = await oidc.fetchUserInfo(config, tokens.access_token, profile.subject);
      const more = profileFromClaims(profile.issuer, info);
      profile = { ...profile, email: more.email, emailVerified: more.emailVerified };
    } catch (err) {
      throw providerError(err);
    }
  }
  return profile;
}

/** Plain OAuth 2.0: the code exchange, then the provider's user document through the mapping. */
export async function completeOAuth(config: oidc.Configuration, org: Organization, currentUrl: URL, checks: CallbackChecks): Promise<ExternalProfile> {
  const s = org.oauth;
  if (!s) throw new Error(`organization ${org.slug} is not an OAuth 2.0 organization`);
  let doc: unknown;
  try {
    const tokens = await oidc.authorizationCodeGrant(config, currentUrl, {
      expectedState: checks.state,
      ...(checks.codeVerifier !== null ? { pkceCodeVerifier: checks.codeVerifier } : {}),
    });
    const res = await oidc.fetchProtectedResource(
      config,
      tokens.access_token,
      new URL(s.userinfoEndpoint),
      'GET',
      undefined,
      new Headers({ accept: 'application/json' }),
    );
    if (!res.ok) throw new ProviderUnavailable(`The identity provider's user endpoint answered ${res.status}.`);
    doc = await res.json();
  } catch (err) {
    throw providerError(err);
  }
  try {
    return profileFromUserinfo(s.identityIssuer, s.mapping, doc);
  } catch (err) {
    if (err instanceof InvalidProfile) throw new ProviderUnavailable(err.message);
    throw err;
  }
}

/**
 * A provider's refusal or failure as a TesseraError with a stable code. The text is built from
 * codes only: an `error` parameter is reduced to an RFC 6749 error code, an `error_description`
 * (free text of whoever sent the browser to the callback) is dropped, and a transport failure is
 * "could not reach the provider", never the connection error itself.
 */
export function providerError(err: unknown): TesseraError {
  if (err instanceof TesseraError) return err;
  if (err instanceof oidc.AuthorizationResponseError) {
    // The provider sent the browser back with ?error=… (RFC 6749 4.1.2.1).
    const code = errorCode(err.error);
    if (code === 'access_denied') return new TesseraError(403, 'sso_access_denied', 'The sign-in was refused at the identity provider (access_denied).');
    return new TesseraError(400, 'sso_provider_error', `The identity provider answered with an error (${code}).`);
  }
  if (err instanceof oidc.ResponseBodyError) {
    // The token endpoint refused the exchange: a bad, used or expired code, a wrong verifier.
    return new TesseraError(400, 'sso_code_rejected', `The identity provider refused the authorization code (${errorCode(err.error)}).`);
  }
  if (err instanceof oidc.ClientError) {
    const code = errorCode(err.code ?? '');
    switch (err.code) {
      case 'OAUTH_JWT_CLAIM_COMPARISON_FAILED':
      case 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED':
      case 'OAUTH_KEY_SELECTION_FAILED':
      case 'OAUTH_INVALID_RESPONSE':
      case 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED':
        return new TesseraError(401, 'sso_id_token_invalid', `The identity provider's answer failed validation (${code}).`);
      case 'OAUTH_INVALID_REQUEST':
        // e.g. a callback without code, or with a state that does not match.
        return new TesseraError(400, 'sso_invalid_callback', `The callback is not a valid authorization response (${code}).`);
      default:
        return new ProviderUnavailable(`${UNREACHABLE} (${code})`);
    }
  }
  return new ProviderUnavailable(UNREACHABLE);
}

/** An error code from a provider or a library, as a token of at most 64 safe characters. */
export function errorCode(value: unknown): string {
  return typeof value === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(value) ? value : 'unrecognised_error';
}
