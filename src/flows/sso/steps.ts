// The small, mostly pure steps that the SSO actions (start-login.ts, finish-login.ts,
// redeem-token.ts) are composed of, in the manner of node-oidc-provider's actions: each one
// checks or derives one thing and says so in its name.

import { createHash } from 'node:crypto';
import * as oidc from 'openid-client';
import { judgeUrl } from '../../auth/federation/url-policy.ts';
import type { Config } from '../../config/config.ts';
import { BadRequest, Forbidden, NotFound, TesseraError, TooManyRequests } from '../../domain/errors.ts';
import type { FederationProtocol, Organization } from '../../domain/organization.ts';
import { hashSecret } from '../../domain/secrets.ts';
import { issueSession, type Device, type Lifetime } from '../../domain/session.ts';
import type { Tenant } from '../../domain/tenant.ts';
import type { Coordination } from '../../store/coordination.ts';
import type { FlowData, FlowRecord } from '../../store/federation-port.ts';

/** SPEC 8.3: the one-time token lives 60 s and is used once. */
export const SSO_TOKEN_LIFETIME_S = 60;
/** SPEC 8.1: a flow lives 10 minutes; a tenant may shorten it, never lengthen it. */
export const MAX_FLOW_LIFETIME_S = 600;

/**
 * Every login start stores a flow for up to 10 minutes; unbounded starts from one address would
 * fill the store. Generous, since a whole office may sign in from behind one address.
 */
export const FLOW_STARTS_PER_IP_PER_MINUTE = 120;

export const CALLBACK_PORT_MIN = 1024;
export const CALLBACK_PORT_MAX = 65535;

/** A command-line login's port: an integer 1024–65535, or absent. */
export function checkCallbackPort(raw: string | undefined): number | null {
  if (raw === undefined || raw === '') return null;
  if (!/^\d{1,5}$/.test(raw) || Number(raw) < CALLBACK_PORT_MIN || Number(raw) > CALLBACK_PORT_MAX) {
    throw new BadRequest('invalid_callback_port', `callbackPort must be an integer from ${CALLBACK_PORT_MIN} to ${CALLBACK_PORT_MAX}.`, {
      field: 'callbackPort',
    });
  }
  return Number(raw);
}

/**
 * Where a finished login sends the browser. A command-line login's listener is always on
 * 127.0.0.1 (RFC 8252 loopback redirect): only the port comes from the request, never a host.
 */
export function loginTarget(callbackPort: number | null, token: string): string {
  if (callbackPort !== null) return `http://127.0.0.1:${callbackPort}/callback?token=${encodeURIComponent(token)}`;
  return `/login/sso?token=${encodeURIComponent(token)}`;
}

/** A failed command-line login tells its listener why, so the command can say so and exit. */
export function loginErrorTarget(callbackPort: number, code: string, detail: string): string {
  const q = new URLSearchParams({ error: code, error_description: detail.slice(0, 300) });
  return `http://127.0.0.1:${callbackPort}/callback?${q.toString()}`;
}

/** The redirect URI registered at the provider: Tessera's own callback for the protocol. */
export function redirectUriOf(publicUrl: string, protocol: FederationProtocol, provider: string | null): string {
  return protocol === 'oidc'
    ? `${publicUrl}/api/v1/sso/oidc/callback`
    : `${publicUrl}/api/v1/sso/oauth/${encodeURIComponent(provider ?? '')}/callback`;
}

/** Tessera's own redirect URI must be HTTPS, or loopback HTTP in development. */
export function checkOwnRedirectUri(config: Pick<Config, 'publicUrl' | 'devAllowHttpLoopback'>, redirectUri: string): void {
  const v = judgeUrl(redirectUri, "Tessera's SSO redirect URI (from TESSERA_PUBLIC_URL)", config.devAllowHttpLoopback);
  if (!v.ok) throw new TesseraError(500, 'insecure_redirect_uri', `${v.reason}; serve Tessera over HTTPS.`);
}

export async function loadOrganization(
  store: { federation: { getOrganization(slug: string): Promise<Organization | null> } },
  slug: string,
): Promise<Organization> {
  const org = await store.federation.getOrganization(slug);
  if (!org) throw new NotFound('org_not_found', `No organization "${slug}".`);
  return org;
}

/** The organization's provider must speak the protocol of the route (and be its `{provider}`). */
export function checkProtocol(org: Organization, protocol: FederationProtocol, provider: string | null): void {
  if (protocol === 'oidc' && org.oidc === null) {
    throw new BadRequest('wrong_protocol', `Organization "${org.slug}" signs in through OAuth 2.0: use /api/v1/sso/oauth/${org.oauth?.provider ?? '…'}/login.`);
  }
  if (protocol === 'oauth' && (org.oauth === null || org.oauth.provider !== provider)) {
    throw new BadRequest(
      'wrong_protocol',
      org.oauth === null
        ? `Organization "${org.slug}" signs in through OpenID Connect: use /api/v1/sso/oidc/login.`
        : `Organization "${org.slug}" signs in through the OAuth 2.0 provider "${org.oauth.provider}".`,
    );
  }
}

export function flowLifetimeOf(tenant: Tenant): Lifetime {
  return { idle: null, absolute: Math.min(tenant.lifetimes.flow, MAX_FLOW_LIFETIME_S) };
}

/**
 * A new flow session for one login attempt, bound to the browser's binding secret. Its `state`
 * is 256 bits from the CSPRNG (openid-client's randomState) and the session's secret: only its
 * SHA-256 is stored, and it names the record (`oidc-session:<sha256(state)>`).
 */
export function newFlow(
  input: {
    tenant: Tenant;
    protocol: FederationProtocol;
    bindingHash: string;
    device: Device;
    /** Send PKCE: always for OIDC; per organization for OAuth 2.0. */
    pkce: boolean;
    data: Omit<FlowData, 'nonce' | 'codeVerifier'>;
  },
  now: number,
): { flow: FlowRecord; state: string } {
  const state = oidc.randomState();
  const { session } = issueSession(
    {
      tenantId: input.tenant.id,
      userId: null,
      kind: 'flow',
      lifetime: flowLifetimeOf(input.tenant),
      authMethod: input.protocol,
      device: input.device,
    },
    now,
  );
  session.secretHash = hashSecret(state);
  const data: FlowData = {
    orgSlug: input.data.orgSlug,
    provider: input.data.provider,
    callbackPort: input.data.callbackPort,
    isAdminLogin: input.data.isAdminLogin,
    redirectUri: input.data.redirectUri,
    oidcInteraction: input.data.oidcInteraction ?? null,
    nonce: input.protocol === 'oidc' ? oidc.randomNonce() : null,
    codeVerifier: input.protocol === 'oidc' || input.pkce ? oidc.randomPKCECodeVerifier() : null,
  };
  return { flow: { protocol: input.protocol, bindingHash: input.bindingHash, session, data }, state };
}

/** The `state` of a callback: present and shaped like the states Tessera makes. */
export function checkStateParameter(state: string | undefined): string {
  if (state === undefined || !/^[A-Za-z0-9_-]{16,128}$/.test(state)) {
    throw new BadRequest('sso_invalid_callback', 'The callback has no valid state parameter.');
  }
  return state;
}

export function stateMismatch(detail: string): Forbidden {
  return new Forbidden('sso_state_mismatch', detail);
}

/** check_rate: at most FLOW_STARTS_PER_IP_PER_MINUTE new flows per client address (shared counter). */
export async function checkFlowRate(store: Coordination, ip: string | undefined, now: number): Promise<void> {
  const key = `sso:start:${createHash('sha256').update(ip ?? '').digest('base64url').slice(0, 32)}`;
  const c = await store.hitCounter(key, 60_000, now);
  if (c.count > FLOW_STARTS_PER_IP_PER_MINUTE) {
    throw new TooManyRequests(Math.max(1, Math.ceil((c.resetAt - now) / 1000)), 'sso_throttled', 'Too many sign-ins were started from this address; try again shortly.');
  }
}
