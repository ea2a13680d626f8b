// The OpenID-provider part of the storage port (docs/api.md §Platform applications):
// Tessera's own OIDC provider for the platform's applications (oidc-provider, src/flows/oidc).
// `SessionStore.oidc` holds one. Three things:
//
// - applications (OIDC clients of Tessera), registered by PUT /api/v1/admin/apps/{clientId};
// - oidc-provider's own records (grants, codes, tokens, its browser sessions, interactions):
//   the adapter interface of oidc-provider (`upsert`, `find`, `findByUid`, `consume`, `destroy`,
//   `revokeByGrantId`), keyed by (model, id), knowing nothing of the domain;
// - the index from an external provider's session (issuer + `sid:<sid>` or `sub:<sub>`) to the
//   Tessera `idp` sessions it started, so that a back-channel logout from that provider ends them.
//
// Conventions as in sessions-port.ts: times are epoch ms passed in; client secrets arrive sealed.

export interface PlatformApp {
  clientId: string;
  tenantId: string;
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  /** The organization whose external provider signs users in when a request names none. */
  orgSlug: string | null;
  backchannelLogoutUri: string | null;
  /** AES-256-GCM under `seal-client-secrets`; null for a public client (PKCE only). */
  sealedClientSecret: string | null;
  /** How its ID tokens (and back-channel logout tokens) are signed; absent = RS256. */
  idTokenSignedResponseAlg?: 'RS256' | 'ES256';
  createdAt: number;
  updatedAt: number;
}

export interface ExternalSessionLink {
  issuer: string;
  /** `sid:<the provider's sid>` or `sub:<the provider's subject>`. */
  key: string;
  tenantId: string;
  idpHandle: string;
  /** The idp session's absolute expiry: the link is useless after it. */
  expiresAt: number;
}

export interface OidcStore {
  putApp(app: PlatformApp): Promise<PlatformApp>;
  getApp(clientId: string): Promise<PlatformApp | null>;
  /** The tenant's applications, ordered by client id (deleting a tenant, export). */
  listApps(tenantId: string): Promise<PlatformApp[]>;
  /** Removes the application if it belongs to `tenantId`; returns whether it did. */
  deleteApp(clientId: string, tenantId: string): Promise<boolean>;

  /** Creates or replaces a record of oidc-provider's `model` until `expiresAt`. */
  upsertModel(model: string, id: string, payload: Record<string, unknown>, expiresAt: number, now: number): Promise<void>;
  /** The record, or null when absent or past its expiry at `now`. */
  findModel(model: string, id: string, now: number): Promise<Record<string, unknown> | null>;
  /** The record whose payload has this `uid` (oidc-provider's Session model). */
  findModelByUid(model: string, uid: string, now: number): Promise<Record<string, unknown> | null>;
  /** Marks the record consumed (`payload.consumed` = epoch seconds), keeping its expiry. */
  consumeModel(model: string, id: string, now: number): Promise<void>;
  destroyModel(model: string, id: string): Promise<void>;
  /** Deletes every record (of any model) that carries this `grantId`. */
  revokeByGrantId(grantId: string): Promise<void>;

  linkExternalSession(link: ExternalSessionLink, now: number): Promise<void>;
  /** The links of (issuer, key) whose idp session may still be valid at `now`. */
  findExternalSessions(issuer: string, key: string, now: number): Promise<ExternalSessionLink[]>;
}
