// Starting an SSO login (docs/api.md §Single sign-on, steps 1 and 4): GET /api/v1/sso/oidc/login
// and GET /api/v1/sso/oauth/{provider}/login.
//
// One flow session per login attempt, keyed by its state, so that several logins in several tabs
// of one browser never clobber each other (the "state mismatch with two tabs" bug of a flow kept
// in one per-browser session). The browser holds one binding secret in its `flow` cookie; every
// flow it starts is bound to that secret's hash. A browser without the cookie gets a new secret.

import { relyingParty, authorizationUrl } from '../../auth/federation/relying-party.ts';
import { NotFound } from '../../domain/errors.ts';
import type { FederationProtocol } from '../../domain/organization.ts';
import { hashSecret, newSecret } from '../../domain/secrets.ts';
import type { Device } from '../../domain/session.ts';
import { emit, type Origin } from '../../events/bus.ts';
import type { Config } from '../../config/config.ts';
import type { EventBus } from '../../events/bus.ts';
import type { OutboundPolicy } from '../../net/outbound-policy.ts';
import type { Store } from '../../store/port.ts';
import type { DerivedKeys } from '../../tokens/derived-keys.ts';
import type { FlowRecord } from '../../store/federation-port.ts';
import { checkCliLogin, checkFlowRate, checkOwnRedirectUri, checkProtocol, loadOrganization, MAX_FLOW_LIFETIME_S, newFlow, redirectUriOf } from './steps.ts';

/** What starting an SSO login uses, declared here (src/runtime.ts's `Deps` has all of it). */
export interface SsoStartDeps {
  config: Pick<Config, 'publicUrl' | 'devAllowHttpLoopback'>;
  store: Pick<Store, 'federation' | 'getTenant' | 'hitCounter'>;
  keys: Pick<DerivedKeys, 'clientSecrets'>;
  outbound: OutboundPolicy;
  bus: EventBus;
}

type Deps = SsoStartDeps;

export interface StartLogin {
  protocol: FederationProtocol;
  orgSlug: string;
  /** The `{provider}` of an OAuth 2.0 route; null for OIDC. */
  provider: string | null;
  callbackPort: number | null;
  /** A command-line login's S256 challenge and listener state: required with callbackPort (checkCliLogin). */
  codeChallenge?: string | null;
  cliState?: string | null;
  isAdminLogin: boolean;
  /** The browser's binding secret from its `flow` cookie, when it sent a valid one. */
  binding: string | null;
  device: Device;
  /** An interaction of Tessera's OpenID provider that waits for this login (flows/oidc). */
  oidcInteraction?: string | null;
  /** The person must authenticate again at the provider (prompt=login or max_age at /oidc). */
  reauthenticate?: boolean;
}

export interface StartedLogin {
  /** The provider's authorization URL (302 target). */
  location: string;
  /** The binding secret for the `flow` cookie (the browser's own, or a new one). */
  binding: string;
  /** Max-Age of the `flow` cookie: it outlives every flow bound to it. */
  cookieMaxAge: number;
  flow: FlowRecord;
}

export async function startSsoLogin(deps: Deps, input: StartLogin, now: number, origin: Origin): Promise<StartedLogin> {
  const cli = checkCliLogin(input.callbackPort, input.codeChallenge ?? undefined, input.cliState ?? undefined);
  const org = await loadOrganization(deps.store, input.orgSlug);
  checkProtocol(org, input.protocol, input.provider);
  const redirectUri = redirectUriOf(deps.config.publicUrl, input.protocol, input.provider);
  checkOwnRedirectUri(deps.config, redirectUri);
  const tenant = await deps.store.getTenant(org.tenantId);
  if (!tenant) throw new NotFound('tenant_not_found', `The tenant of organization "${org.slug}" does not exist.`);
  await checkFlowRate(deps.store, input.device.ip, now);
  const rp = await relyingParty(org, deps.keys.clientSecrets, deps.outbound);

  const binding = input.binding ?? newSecret();
  const { flow, state } = newFlow(
    {
      tenant,
      protocol: input.protocol,
      bindingHash: hashSecret(binding),
      device: input.device,
      pkce: org.oauth?.pkce ?? true,
      data: {
        orgSlug: org.slug,
        provider: input.provider,
        callbackPort: input.callbackPort,
        cliCodeChallenge: cli?.codeChallenge ?? null,
        cliState: cli?.cliState ?? null,
        isAdminLogin: input.isAdminLogin,
        redirectUri,
        oidcInteraction: input.oidcInteraction ?? null,
      },
    },
    now,
  );
  const scopes = org.oidc?.scopes ?? org.oauth?.scopes ?? [];
  const url = await authorizationUrl(rp, {
    redirectUri,
    scopes,
    state,
    nonce: flow.data.nonce,
    codeVerifier: flow.data.codeVerifier,
    ...(input.reauthenticate === true ? { prompt: 'login' as const } : {}),
  });
  await deps.store.federation.putFlow(flow, now);
  emit(
    deps,
    {
      type: 'sso.started',
      time: now,
      tenantId: tenant.id,
      userId: null,
      sessionHandle: flow.session.handle,
      kind: 'flow',
      details: {
        protocol: input.protocol,
        orgSlug: org.slug,
        ...(input.provider !== null ? { provider: input.provider } : {}),
        cli: input.callbackPort !== null,
        isAdminLogin: input.isAdminLogin,
        expiresAt: flow.session.absoluteExpiresAt,
      },
    },
    origin,
  );
  return { location: url.href, binding, cookieMaxAge: MAX_FLOW_LIFETIME_S, flow };
}
