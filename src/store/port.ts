// The storage port: the whole store an adapter provides, composed of one port per aggregate
// (as Ory Kratos's persister is): each names the atomic operations the domain needs — not
// get/set — and every adapter (SQLite, Redis standalone / Sentinel / Cluster) implements each
// atomically and passes the conformance matrix (test/store/targets.ts).
//
//   sessions-port.ts      sessions and refresh tokens (one unit: rotation revokes a subtree)
//   accounts-port.ts      tenants and users
//   meta-port.ts          server metadata (signing keys)
//   coordination-port.ts  counters (throttling) and the feed of session ends
//   consent-port.ts       consents (docs/api.md §Consent redirects), reached as `store.consents`
//   federation-port.ts    organizations, linked identities, SSO flows, as `store.federation`
//   oidc-port.ts          applications and oidc-provider records, as `store.oidc`
//   audit-port.ts         audit log, live feed, gauges, anomaly history, as `store.audit`
//   page.ts               Page, the one cursor codec and the limit check
//
// Conventions shared by every port are written at the top of sessions-port.ts.

import type { AccountsStore } from './accounts-port.ts';
import type { AuditStore } from './audit-port.ts';
import type { BankStore } from './bank-port.ts';
import type { ConsentStore } from './consent-port.ts';
import type { Coordination } from './coordination-port.ts';
import type { FederationStore } from './federation-port.ts';
import type { MetaStore } from './meta-port.ts';
import type { OidcStore } from './oidc-port.ts';
import type { SessionsStore } from './sessions-port.ts';

export type { Page } from './page.ts';
export type { ListUsersQuery } from './accounts-port.ts';
export type {
  CreateLimit,
  CreateSessionResult,
  ListSessionsQuery,
  RefreshToken,
  RenewResult,
  RotateResult,
} from './sessions-port.ts';

export interface SessionStore extends SessionsStore, AccountsStore, MetaStore {
  /** Which adapter, for /readyz and logs: `sqlite`, `redis`, `redis-sentinel`, `redis-cluster`. */
  readonly kind: string;
  /** The audit log, its live feed, the active-session gauge and anomaly history: see audit-port.ts. */
  readonly audit: AuditStore;
  /** Consents of users: see consent-port.ts. */
  readonly consents: ConsentStore;
  /** Banks of tenants and the work queued for them (issue 15): see bank-port.ts. */
  readonly banks: BankStore;
  /** Organizations, linked identities and SSO flows (docs/api.md §Single sign-on): see federation-port.ts. */
  readonly federation: FederationStore;
  /** Applications, oidc-provider's records, external-session index (docs/sessions.md): see oidc-port.ts. */
  readonly oidc: OidcStore;

  /** Resolves when the store answers; rejects with StoreUnavailable otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** What a Tessera process opens: the store and the coordination between processes. */
export type Store = SessionStore & Coordination;
