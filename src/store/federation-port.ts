// The federation part of the storage port (docs/api.md §Single sign-on): organizations, the
// identities that link an external account to a user, and the pre-login `flow` sessions that carry
// OIDC/OAuth state across the round trip to an identity provider. `SessionStore.federation` holds
// one.
//
// A flow is stored under `oidc-session:<id>` or `oauth-session:<id>` (after the store's own key
// prefix), where <id> is the SHA-256 of the flow's `state`: one record per login attempt, so
// several tabs of one browser never overwrite each other's flows. Each record is bound to the
// browser that started it by the hash of a secret held in that browser's `flow` cookie.
//
// Conventions as in sessions-port.ts: times are epoch ms passed in; secrets arrive hashed; refusals are
// TesseraErrors with stable codes (flow_exists).

import type { FederatedIdentity, FederationProtocol, Organization } from '../domain/organization.ts';
import type { Session } from '../domain/session.ts';

/** The key prefixes of flows, by protocol (docs/api.md §Single sign-on). */
export const FLOW_KEY_PREFIX: Record<FederationProtocol, string> = {
  oidc: 'oidc-session:',
  oauth: 'oauth-session:',
};

/** The state a login keeps until the provider sends the browser back (a `flow`, docs/api.md §Sessions). */
export interface FlowData {
  orgSlug: string;
  /** The `{provider}` path segment of an OAuth 2.0 flow; null for OIDC. */
  provider: string | null;
  /** A command-line login's local port (1024–65535), or null for a browser login. */
  callbackPort: number | null;
  /**
   * A command-line login's S256 challenge (base64url SHA-256 of a verifier the command holds):
   * copied to the one-time token, which is then redeemed only with the verifier. Absent or null
   * for a browser login (and for flows stored before it existed).
   */
  cliCodeChallenge?: string | null;
  /** A command-line login's listener state, sent back to its listener with the token or error. */
  cliState?: string | null;
  isAdminLogin: boolean;
  nonce: string | null;
  codeVerifier: string | null;
  redirectUri: string;
  /**
   * The uid of an interaction of Tessera's own OpenID provider that waits for this login
   * (docs/sessions.md): the callback then makes only the `idp` session and returns the
   * browser to /oidc/interaction/<uid>. Absent or null for a direct SSO login.
   */
  oidcInteraction?: string | null;
}

export interface FlowRecord {
  protocol: FederationProtocol;
  /** SHA-256 of the browser's binding secret (the value of its `flow` cookie). */
  bindingHash: string;
  /** kind `flow`, userId null; secretHash is the SHA-256 of the flow's `state`. */
  session: Session;
  data: FlowData;
}

export type ConsumeFlowResult =
  /** The flow was this browser's and valid: it is gone now, and this caller alone has it. */
  | { outcome: 'consumed'; flow: FlowRecord }
  /** It was this browser's but past its expiry; it is gone now. */
  | { outcome: 'expired'; flow: FlowRecord }
  /**
   * It belongs to another browser: refused and left in place for its owner. The flow's tenant and
   * handle are given so that the refusal can be audited where the flow belongs.
   */
  | { outcome: 'foreign'; tenantId: string; handle: string }
  /** No such flow: never started, already used, or dropped after expiry. */
  | { outcome: 'missing' };

export interface FederationStore {
  /**
   * Creates or replaces the organization with this slug, only if the stored one still belongs to
   * `expectedTenantId` (null: only if there is none yet) — a compare-and-set, so two tenant
   * administrators claiming one new slug at once cannot both win. Otherwise throws
   * Conflict('org_changed').
   */
  putOrganization(org: Organization, expectedTenantId: string | null): Promise<Organization>;
  getOrganization(slug: string): Promise<Organization | null>;
  /** The tenant's organizations, ordered by slug (deleting a tenant, export). */
  listOrganizations(tenantId: string): Promise<Organization[]>;
  /** Removes the organization if it belongs to `tenantId`; returns whether it did. */
  deleteOrganization(slug: string, tenantId: string): Promise<boolean>;

  findIdentity(tenantId: string, issuer: string, subject: string): Promise<FederatedIdentity | null>;
  /**
   * Links (tenantId, issuer, subject) to `identity.userId` unless it is linked already; returns
   * the link now stored (this one, or the one an earlier or concurrent caller stored).
   */
  linkIdentity(identity: FederatedIdentity): Promise<FederatedIdentity>;
  /** The tenant's linked identities, ordered by (issuer, subject) (export). */
  listIdentities(tenantId: string): Promise<FederatedIdentity[]>;
  /** Removes every identity link of the tenant (deleting a tenant); returns how many went. */
  deleteIdentities(tenantId: string): Promise<number>;

  /**
   * Stores a flow until its absolute expiry (the Redis key gets that TTL). Refuses with
   * Conflict('flow_exists') when a flow with this state exists.
   */
  putFlow(flow: FlowRecord, now: number): Promise<void>;
  /**
   * Single use: takes the flow whose state hashes to `stateHash` if `bindingHash` matches (see
   * ConsumeFlowResult). Of many concurrent callers with the right binding exactly one gets
   * `consumed`; the others get `missing`.
   */
  consumeFlow(protocol: FederationProtocol, stateHash: string, bindingHash: string, now: number): Promise<ConsumeFlowResult>;
}
