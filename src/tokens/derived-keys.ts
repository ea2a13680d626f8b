// The keys derived from the cookie secret, one per purpose (src/runtime.ts derives them).

import type { KeyObject } from 'node:crypto';

export interface DerivedKeys {
  /** Derives a refresh token's successor from it (same successor for every racing caller). */
  refresh: KeyObject;
  /** Derives the session that renews an expired one after a consent redirect. */
  renew: KeyObject;
  /** Derives a cookie session's XSRF token from its handle. */
  xsrf: KeyObject;
  /** Seals the client secrets of organizations' identity providers (AES-256-GCM). */
  clientSecrets: KeyObject;
  /** Derives an SSO login's app-session secret from its one-time token. */
  ssoSession: KeyObject;
  /** Seals the TLS client keys of tenants' banks (AES-256-GCM). */
  bankKeys: KeyObject;
}
