// The sessions a finished SSO login creates (docs/api.md §Single sign-on, §Sessions): an `idp`
// session (the platform identity-provider session), an `app` session below it, and a one-time token
// (a single-use `flow` session, 60 s) that the browser or the command line exchanges for the app
// session.
//
// The app session's secret is derived from the one-time token (HMAC with the `sso-session` key),
// so redeeming the token in cookie mode can hand the browser that secret as its cookie without
// Tessera ever storing it. Until redeemed the app session's mode is `pending`: no cookie, bearer
// token or refresh token exists for it yet, so it cannot be used.

import { Conflict, Unauthorized } from '../../domain/errors.ts';
import type { ExternalProfile, Organization } from '../../domain/organization.ts';
import { hashSecret, newSecret } from '../../domain/secrets.ts';
import { issueSession, type Device, type Session } from '../../domain/session.ts';
import { lifetimeOf, type Tenant } from '../../domain/tenant.ts';
import type { User } from '../../domain/user.ts';
import { sessionEvent, emit, type Origin } from '../../events/bus.ts';
import { announceEnded, idleSecondsOf, type SessionDeps } from '../../sessions/app-sessions.ts';
import { keyedDigest } from '../../tokens/sealing.ts';
import { externalSessionKeys } from '../oidc/levels.ts';
import { SSO_TOKEN_LIFETIME_S } from './steps.ts';

/** What the SSO sessions use, declared here (src/runtime.ts's `Deps` has all of it). */
export type SsoSessionDeps = Pick<SessionDeps, 'store' | 'bus' | 'keys' | 'sessionCache' | 'monitor'>;

type Deps = SsoSessionDeps;

export const SSO_TOKEN_PURPOSE = 'sso_token';

export interface SsoSessions {
  idp: Session;
  app: Session;
  /** The one-time token (raw; only its hash is stored). */
  token: string;
}

/** The app session's secret (its cookie, in cookie mode) for a one-time token. */
export function appSecretOf(deps: Pick<Deps, 'keys'>, token: string): string {
  return keyedDigest(deps.keys.ssoSession, token);
}

/**
 * The `idp` session of a finished SSO login (docs/api.md §Sessions: 1 h idle / 12 h absolute by
 * default), and the index from the external provider's session (issuer + sid, issuer + subject) to
 * it, so that a back-channel logout from that provider can end it. `secret` is its cookie value
 * (`__Host-idp`) when the login was for Tessera's own OpenID provider.
 */
export async function createIdpSession(
  deps: Deps,
  input: { tenant: Tenant; user: User; org: Organization; profile: ExternalProfile; device: Device; oidcInteraction?: string },
  now: number,
  origin: Origin,
): Promise<{ session: Session; secret: string }> {
  const { tenant, user, org, profile } = input;
  const authMethod = org.protocol;
  const issued = issueSession(
    {
      tenantId: tenant.id,
      userId: user.id,
      kind: 'idp',
      lifetime: lifetimeOf(tenant, 'idp'),
      authMethod,
      device: input.device,
      data: { orgSlug: org.slug, issuer: profile.issuer, subject: profile.subject, ...(profile.sessionId ? { externalSid: profile.sessionId } : {}), ...(input.oidcInteraction !== undefined ? { oidcInteraction: input.oidcInteraction } : {}) },
    },
    now,
  );
  const storedIdp = await deps.store.createSession(issued.session, now);
  if (!storedIdp.ok) throw new Error('an idp session without a limit was refused');
  // On Redis, room made under the per-user cap (sessions the cap ended).
  announceEnded(deps, storedIdp.evicted, now, origin);
  emit(deps, sessionEvent('session.created', storedIdp.session, now, { authMethod, orgSlug: org.slug }), origin);
  for (const key of externalSessionKeys(profile.subject, profile.sessionId ?? null)) {
    await deps.store.oidc.linkExternalSession(
      { issuer: profile.issuer, key, tenantId: tenant.id, idpHandle: issued.session.handle, expiresAt: issued.session.absoluteExpiresAt },
      now,
    );
  }
  return { session: storedIdp.session, secret: issued.secret };
}

/**
 * What the one-time token is bound to, so that only whoever started the login can redeem it
 * (against login CSRF): the hash of the starting browser's `flow` binding secret (required to
 * redeem in cookie mode), and a command-line login's S256 challenge (its verifier is required to
 * redeem at all).
 */
export interface TokenBinding {
  flowBindingHash: string;
  codeChallenge: string | null;
}

export async function createSsoSessions(
  deps: Deps,
  input: { tenant: Tenant; user: User; org: Organization; profile: ExternalProfile; device: Device; adminLogin: boolean; binding: TokenBinding },
  now: number,
  origin: Origin,
): Promise<SsoSessions> {
  const { tenant, user, org } = input;
  const authMethod = org.protocol;
  const { session: idp } = await createIdpSession(deps, input, now, origin);

  const token = newSecret();
  const app = issueSession(
    {
      tenantId: tenant.id,
      userId: user.id,
      kind: 'app',
      parentHandle: idp.handle,
      lifetime: { idle: idleSecondsOf(tenant, 'cookie'), absolute: lifetimeOf(tenant, 'app').absolute },
      authMethod,
      device: input.device,
      data: { mode: 'pending', orgSlug: org.slug, ...(input.adminLogin ? { adminLogin: true } : {}) },
      notAfter: idp.absoluteExpiresAt,
    },
    now,
  ).session;
  app.secretHash = hashSecret(appSecretOf(deps, token));
  const limit = tenant.sessionLimit.max === null ? undefined : { kind: 'app' as const, max: tenant.sessionLimit.max, policy: tenant.sessionLimit.policy };
  const storedApp = await deps.store.createSession(app, now, limit);
  if (!storedApp.ok) {
    // The login cannot get an app session; its idp session must not outlive the refusal.
    announceEnded(deps, await deps.store.revokeSession(idp.handle, 'limit_evicted', now), now, origin);
    throw new Conflict(
      'session_limit_reached',
      `This account already has ${storedApp.active} active sessions, the most the tenant allows; end one first.`,
    );
  }
  // Not remembered: a pending app session is kept by no session cache (SessionCache.remember).
  announceEnded(deps, storedApp.evicted, now, origin);
  emit(deps, sessionEvent('session.created', storedApp.session, now, { authMethod, orgSlug: org.slug, mode: 'pending' }), origin);
  // The same anomaly rules and tenant policy as a password login, before any credential exists.
  const screened = await deps.monitor.screenNewSession(storedApp.session, tenant, now, origin);
  if (screened === null) {
    announceEnded(deps, await deps.store.revokeSession(idp.handle, 'anomaly', now), now, origin);
    throw new Unauthorized('anomaly_detected', 'This login was refused: it does not match how this account is normally used.');
  }

  const oneTime = issueSession(
    {
      tenantId: tenant.id,
      userId: user.id,
      kind: 'flow',
      lifetime: { idle: null, absolute: SSO_TOKEN_LIFETIME_S },
      authMethod,
      device: input.device,
      data: {
        purpose: SSO_TOKEN_PURPOSE,
        appHandle: app.handle,
        flowBinding: input.binding.flowBindingHash,
        ...(input.binding.codeChallenge !== null ? { codeChallenge: input.binding.codeChallenge } : {}),
      },
      notAfter: app.absoluteExpiresAt,
    },
    now,
  ).session;
  oneTime.secretHash = hashSecret(token);
  const storedToken = await deps.store.createSession(oneTime, now);
  if (!storedToken.ok) throw new Error('a one-time token session without a limit was refused');
  announceEnded(deps, storedToken.evicted, now, origin);
  return { idp, app: storedApp.session, token };
}
