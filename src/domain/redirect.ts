// Consent redirects (docs/api.md §Consent redirects): the `redirect` child session that carries one
// consent to the bank and back, and the rule for the session a return leaves the browser with.
// Pure: the secrets are passed in (the HTTP layer derives them), the time is `now`.

import { hashSecret, newHandle } from './secrets.ts';
import { issueSession, type Device, type Lifetime, type Session } from './session.ts';

/** The path prefix of every return; the redirect's own cookie is scoped to `<prefix>/<redirectId>`. */
export const REDIRECTS_PATH = '/api/v1/redirects';

/** The `Path` of a redirect's `__Secure-rid` cookie: only that redirect's return ever sees it. */
export function redirectCookiePath(redirectId: string): string {
  return `${REDIRECTS_PATH}/${redirectId}`;
}

export function redirectReturnPath(redirectId: string): string {
  return `${redirectCookiePath(redirectId)}/return`;
}

export interface NewRedirectInput {
  /** The `app` session that starts the redirect; it becomes the parent. */
  parent: Session;
  lifetime: Lifetime;
  consentId: string;
  device: Device;
  /**
   * SHA-256 of the starting browser's `__Host-rb` binding. `__Secure-` cookies may carry a Domain,
   * so a sibling subdomain could plant its own redirect cookie; a `__Host-` cookie cannot be
   * planted, and the return requires the matching one.
   */
  browserBinding: string;
}

/**
 * The `redirect` session of one consent. Its lifetime is its own (docs/api.md §Sessions: 20 min
 * absolute), not capped by the parent's short idle expiry: the user may stay at the bank longer
 * than the app session lives, and the return must still be recognised. Ending the parent (logout,
 * revocation) still ends it, because ending a session ends its subtree.
 */
export function issueRedirectSession(input: NewRedirectInput, now: number) {
  const { parent } = input;
  if (parent.userId === null) throw new TypeError('a redirect needs a user session as its parent');
  return issueSession(
    {
      tenantId: parent.tenantId,
      userId: parent.userId,
      kind: 'redirect',
      parentHandle: parent.handle,
      lifetime: { idle: null, absolute: input.lifetime.absolute },
      authMethod: 'redirect',
      clientId: parent.clientId,
      device: input.device,
      data: { consentId: input.consentId, browserBinding: input.browserBinding },
    },
    now,
  );
}

export interface SuccessorInput {
  /** The app session that started the redirect and has since expired. */
  predecessor: Session;
  /**
   * The successor's secret, derived from the predecessor (HMAC with a server key), so that every
   * racing return computes the same one and sets the same cookie.
   */
  secret: string;
  /** Idle lifetime of a cookie session of the tenant, seconds. */
  idleSeconds: number;
  device: Device;
  /** Extra session data, e.g. the XSRF hash (which depends on the successor's handle). */
  data?: (handle: string) => Record<string, unknown>;
}

/**
 * The session that replaces an expired app session after a consent return (docs/api.md §Consent
 * redirects, "The session after a return"), or null when the predecessor must not be renewed: it
 * was revoked, or its absolute lifetime is over (a renewal bridges an idle expiry while the user
 * was at the bank; it never extends the absolute lifetime of the original login, so the successor
 * is capped at the predecessor's absolute expiry).
 */
export function buildSuccessorSession(input: SuccessorInput, now: number): Session | null {
  const p = input.predecessor;
  if (p.status === 'revoked' || p.userId === null || now >= p.absoluteExpiresAt) return null;
  const handle = newHandle(p.tenantId, p.userId);
  const base = issueSession(
    {
      tenantId: p.tenantId,
      userId: p.userId,
      kind: 'app',
      parentHandle: p.parentHandle,
      lifetime: { idle: input.idleSeconds, absolute: Math.ceil((p.absoluteExpiresAt - now) / 1000) },
      authMethod: 'renewed',
      clientId: p.clientId,
      device: input.device,
      notAfter: p.absoluteExpiresAt,
    },
    now,
  ).session;
  return {
    ...base,
    handle,
    secretHash: hashSecret(input.secret),
    data: {
      mode: p.data.mode ?? 'cookie',
      renewedFrom: p.handle,
      // A renewal bridges an idle lapse; it never washes away what the predecessor carried: a
      // pending re-authentication (anomaly policy) or an admin-login marker stay on.
      ...(p.data.reauth !== undefined ? { reauth: p.data.reauth } : {}),
      ...(p.data.adminLogin !== undefined ? { adminLogin: p.data.adminLogin } : {}),
      ...(input.data ? input.data(handle) : {}),
    },
  };
}
