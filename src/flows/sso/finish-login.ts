// Finishing an SSO login (docs/api.md §Single sign-on, steps 2 and 4): GET
// /api/v1/sso/oidc/callback and GET /api/v1/sso/oauth/{provider}/callback. The steps, in order:
//
//   check_state      the state names a flow bound to this browser's `flow` cookie; the flow is
//                    consumed in the same atomic step (single use: of two racing callbacks one
//                    wins; a replay finds nothing), so every later failure has destroyed it too
//   check_route      an OAuth 2.0 flow comes back to its own `{provider}` callback
//   load_org         the organization still exists and still belongs to the flow's tenant
//   exchange_code    openid-client: the authorization response (an `error` from the provider,
//                    `iss`), the code exchange with the PKCE verifier, ID token validation
//                    (signature, issuer, audience, expiry, nonce), userinfo
//   resolve_user     find the user by (issuer, subject) in the tenant, or create one
//   check_admin      an admin login (isAdminLogin) needs the admin role
//   create_sessions  `idp`, `app` below it, and the one-time token
//   choose_target    /login/sso?token=… or the command line's http://127.0.0.1:<port>/callback

import { completeOAuth, completeOidc, relyingParty } from '../../auth/federation/relying-party.ts';
import { Conflict, Forbidden, NotFound, TesseraError } from '../../domain/errors.ts';
import {
  federatedUserId,
  placeholderEmail,
  type ExternalProfile,
  type FederationProtocol,
  type Organization,
} from '../../domain/organization.ts';
import { hashSecret } from '../../domain/secrets.ts';
import type { Device } from '../../domain/session.ts';
import { emailFromVerifiedSource, type User } from '../../domain/user.ts';
import { emit, type Origin } from '../../events/bus.ts';
import type { OutboundPolicy } from '../../net/outbound-policy.ts';
import type { FlowRecord } from '../../store/federation-port.ts';
import { createIdpSession, createSsoSessions, type SsoSessionDeps } from './sessions.ts';
import { checkStateParameter, loadOrganization, loginErrorTarget, loginTarget, stateMismatch } from './steps.ts';

/** What finishing an SSO login uses, declared here (src/runtime.ts's `Deps` has all of it). */
export interface SsoFinishDeps extends SsoSessionDeps {
  outbound: OutboundPolicy;
}

type Deps = SsoFinishDeps;

export interface FinishLogin {
  protocol: FederationProtocol;
  provider: string | null;
  /** The browser's binding secret from its `flow` cookie, or null when it sent none (valid). */
  binding: string | null;
  /** The callback's query parameters (code, state, iss, error, error_description). */
  state: string | undefined;
  /** The callback URL as the provider sent the browser to it (Tessera's public URL + path + query). */
  currentUrl: URL;
  device: Device;
}

export type FinishResult =
  /** `idpSecret`: set the `__Host-idp` cookie to it (a login for Tessera's own OpenID provider). */
  | { ok: true; location: string; flow: FlowRecord; user: User; idpSecret?: string; idpMaxAge?: number }
  /**
   * Refused. `location` is set for a command-line login whose flow was found: its listener
   * hears of the failure. Otherwise the caller shows `error`.
   */
  | { ok: false; error: TesseraError; location: string | null };

export async function finishSsoLogin(deps: Deps, input: FinishLogin, now: number, origin: Origin): Promise<FinishResult> {
  let flow: FlowRecord | null = null;
  try {
    const checked = await checkState(deps, input, now, origin);
    flow = checked.flow;
    const f = flow;
    if (checked.expired) throw new TesseraError(400, 'sso_flow_expired', 'The sign-in took longer than its flow lifetime (10 minutes by default); start again.');
    checkRoute(f, input);
    const org = await loadOrg(deps, f);
    const profile = await exchangeCode(deps, org, f, input);
    const tenant = await deps.store.getTenant(org.tenantId);
    if (!tenant) throw new NotFound('tenant_not_found', `The tenant of organization "${org.slug}" does not exist.`);
    const { user, created } = await resolveUser(deps, org, profile, now);
    checkAdmin(f, user);
    if (typeof f.data.oidcInteraction === 'string') {
      // A platform application's sign-in through /oidc: only the idp session here; the waiting
      // interaction creates the application's app session under it.
      const idp = await createIdpSession(deps, { tenant, user, org, profile, device: input.device, oidcInteraction: f.data.oidcInteraction }, now, origin);
      emit(
        deps,
        {
          type: 'sso.completed',
          time: now,
          tenantId: tenant.id,
          userId: user.id,
          sessionHandle: idp.session.handle,
          kind: 'idp',
          details: { protocol: f.protocol, orgSlug: org.slug, issuer: profile.issuer, flow: f.session.handle, userCreated: created, oidcInteraction: true },
        },
        origin,
      );
      return {
        ok: true,
        location: `/oidc/interaction/${encodeURIComponent(f.data.oidcInteraction)}`,
        flow: f,
        user,
        idpSecret: idp.secret,
        idpMaxAge: Math.floor((idp.session.absoluteExpiresAt - now) / 1000),
      };
    }
    const sessions = await createSsoSessions(
      deps,
      {
        tenant,
        user,
        org,
        profile,
        device: input.device,
        adminLogin: f.data.isAdminLogin,
        binding: { flowBindingHash: f.bindingHash, codeChallenge: f.data.cliCodeChallenge ?? null },
      },
      now,
      origin,
    );
    emit(
      deps,
      {
        type: 'sso.completed',
        time: now,
        tenantId: tenant.id,
        userId: user.id,
        sessionHandle: sessions.app.handle,
        kind: 'app',
        details: {
          protocol: f.protocol,
          orgSlug: org.slug,
          issuer: profile.issuer,
          flow: f.session.handle,
          idp: sessions.idp.handle,
          userCreated: created,
          cli: f.data.callbackPort !== null,
          isAdminLogin: f.data.isAdminLogin,
        },
      },
      origin,
    );
    return { ok: true, location: loginTarget(cliOf(f), sessions.token), flow: f, user };
  } catch (err) {
    if (!(err instanceof TesseraError)) throw err;
    if (flow !== null) failed(deps, flow.session.tenantId, flow.session.handle, flow, err, now, origin);
    const cli = flow === null ? null : cliOf(flow);
    return { ok: false, error: err, location: cli === null ? null : loginErrorTarget(cli, err.code, err.message) };
  }
}

/** A command-line flow's listener: its port and the state it waits for. */
function cliOf(flow: FlowRecord): { callbackPort: number; cliState: string | null } | null {
  return flow.data.callbackPort === null ? null : { callbackPort: flow.data.callbackPort, cliState: flow.data.cliState ?? null };
}

function failed(
  deps: Deps,
  tenantId: string,
  flowHandle: string,
  flow: FlowRecord | null,
  err: TesseraError,
  now: number,
  origin: Origin,
): void {
  emit(
    deps,
    {
      type: 'sso.failed',
      time: now,
      tenantId,
      userId: null,
      sessionHandle: flowHandle,
      kind: 'flow',
      details: {
        reason: err.code,
        detail: err.message,
        ...(flow ? { protocol: flow.protocol, orgSlug: flow.data.orgSlug, cli: flow.data.callbackPort !== null } : {}),
      },
    },
    origin,
  );
}

/**
 * check_state: consume this browser's flow for the state (single use, atomic). An expired flow
 * is consumed too and reported by the caller as the flow's own failure.
 */
async function checkState(deps: Deps, input: FinishLogin, now: number, origin: Origin): Promise<{ flow: FlowRecord; expired: boolean }> {
  const state = checkStateParameter(input.state);
  if (input.binding === null) {
    throw stateMismatch('This sign-in did not start in this browser (no sign-in cookie was sent); start again.');
  }
  const r = await deps.store.federation.consumeFlow(input.protocol, hashSecret(state), hashSecret(input.binding), now);
  switch (r.outcome) {
    case 'consumed':
      return { flow: r.flow, expired: false };
    case 'expired':
      return { flow: r.flow, expired: true };
    case 'foreign': {
      // Audited in the tenant of the flow that someone tried to finish from another browser.
      const err = stateMismatch('This sign-in was started in another browser; start again here.');
      failed(deps, r.tenantId, r.handle, null, err, now, origin);
      throw err;
    }
    case 'missing':
      throw stateMismatch('This sign-in is unknown, was already used, or has expired; start again.');
  }
}

/** check_route: an OAuth 2.0 flow returns to the callback of its own provider. */
function checkRoute(flow: FlowRecord, input: FinishLogin): void {
  if (flow.data.provider !== input.provider) {
    throw new TesseraError(400, 'sso_invalid_callback', 'The sign-in came back to the callback of another provider.');
  }
}

/** load_org: still there, and still in the flow's tenant. */
async function loadOrg(deps: Deps, flow: FlowRecord): Promise<Organization> {
  const org = await loadOrganization(deps.store, flow.data.orgSlug);
  if (org.tenantId !== flow.session.tenantId || org.protocol !== flow.protocol) {
    throw new Conflict('org_changed', `Organization "${org.slug}" changed during the sign-in; start again.`);
  }
  return org;
}

/** exchange_code: everything the provider says, validated by openid-client. */
async function exchangeCode(deps: Deps, org: Organization, flow: FlowRecord, input: FinishLogin): Promise<ExternalProfile> {
  const rp = await relyingParty(org, deps.keys.clientSecrets, deps.outbound);
  const checks = { state: input.state as string, nonce: flow.data.nonce, codeVerifier: flow.data.codeVerifier };
  return flow.protocol === 'oidc' ? completeOidc(rp, input.currentUrl, checks) : completeOAuth(rp, org, input.currentUrl, checks);
}

/**
 * resolve_user: the user linked to (issuer, subject); else, when the organization allows it, the
 * tenant's user with the same verified email; else a new user. A new user's id is derived from
 * (tenant, issuer, subject), so two first logins racing each other create one user, and the
 * identity link (first writer wins) settles who is who.
 */
export async function resolveUser(deps: Deps, org: Organization, profile: ExternalProfile, now: number): Promise<{ user: User; created: boolean }> {
  const fed = deps.store.federation;
  const tenantId = org.tenantId;
  const known = await fed.findIdentity(tenantId, profile.issuer, profile.subject);
  if (known) return { user: await mustUser(deps, tenantId, known.userId), created: false };

  // A verified address is linked only to a user whose own address came from a verified source:
  // otherwise whoever planted the address first (an unverified first login) would get the account.
  if (org.linkVerifiedEmail && profile.email !== null && profile.emailVerified) {
    const existing = await deps.store.findUserByEmail(tenantId, profile.email);
    if (existing && emailFromVerifiedSource(existing)) {
      const link = await fed.linkIdentity({ tenantId, issuer: profile.issuer, subject: profile.subject, userId: existing.id, createdAt: now });
      return { user: await mustUser(deps, tenantId, link.userId), created: false };
    }
  }

  const userId = federatedUserId(tenantId, profile.issuer, profile.subject);
  let user: User | null = null;
  let created = false;
  // Only a verified address is stored: an unverified one would let its claimant hold the address
  // (and, through linking, the account) before its owner arrives. Otherwise a placeholder.
  const verifiedEmail = profile.email !== null && profile.emailVerified ? profile.email : null;
  try {
    user = await deps.store.createUser({
      id: userId,
      tenantId,
      email: verifiedEmail ?? placeholderEmail(org.slug, userId),
      emailVerified: verifiedEmail !== null,
      passwordHash: null,
      roles: [],
      createdAt: now,
      updatedAt: now,
    });
    created = true;
  } catch (err) {
    if (!(err instanceof TesseraError) || err.code !== 'user_exists') throw err;
    // Either a concurrent first login of this same account created this user (its record may
    // trail its email claim by a moment), or another user of the tenant has this email.
    for (let i = 0; i < 5 && user === null; i++) {
      user = await deps.store.getUser(tenantId, userId);
      if (user === null) await new Promise((r) => setTimeout(r, 20));
    }
    if (user === null) {
      throw new Conflict(
        'sso_email_conflict',
        'Another account of this tenant already uses the email address that the identity provider gave; ask an administrator to link the accounts.',
      );
    }
  }
  const link = await fed.linkIdentity({ tenantId, issuer: profile.issuer, subject: profile.subject, userId: user.id, createdAt: now });
  if (link.userId !== user.id) return { user: await mustUser(deps, tenantId, link.userId), created: false };
  return { user, created };
}

async function mustUser(deps: Deps, tenantId: string, userId: string): Promise<User> {
  const u = await deps.store.getUser(tenantId, userId);
  if (!u) throw new TesseraError(409, 'sso_user_missing', 'The account linked to this identity no longer exists; ask an administrator.');
  return u;
}

/** check_admin: an admin login (`isAdminLogin`) is for admins only; a disabled user signs in nowhere. */
function checkAdmin(flow: FlowRecord, user: User): void {
  if (user.disabled === true) throw new Forbidden('user_disabled', 'This account is disabled; ask an administrator.');
  if (flow.data.isAdminLogin && !user.roles.includes('admin')) {
    throw new Forbidden('sso_admin_required', 'This is an administrator sign-in, and this account is not an administrator.');
  }
}
