// OpenID Connect Back-Channel Logout 1.0, as the provider: whenever an `app` session that signed
// in through /oidc ends — below an idp session that ended (RP-initiated logout, the external
// provider's back-channel logout, an administrator, "log out everywhere", a password change) or on
// its own by an administrator, an eviction or an anomaly — but not when the application itself
// ended it (reason `logout`), the application, if it registered a `backchannelLogoutUri`, receives a logout token
// (`typ: logout+jwt`, `events`, `sid` and `sub`, a `jti`, no `nonce`, valid 2 minutes) by POST,
// with up to 3 attempts (0 s, 0.5 s, 2 s apart). Every delivery ends in one audit event:
// `sso.backchannel_logout_delivered` or `sso.backchannel_logout_failed` (attempts, last status).

import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { judgeUrl } from '../../auth/federation/url-policy.ts';
import { UNREACHABLE, type OutboundPolicy } from '../../net/outbound-policy.ts';
import type { Session } from '../../domain/session.ts';
import { emit, type EventBus, type Origin } from '../../events/bus.ts';
import type { Config } from '../../config/config.ts';
import type { Store } from '../../store/port.ts';
import { DEFAULT_OIDC_SIGNING_ALG, signingKeyFor, type OidcSigningKey } from './keys.ts';

export const LOGOUT_TOKEN_LIFETIME_S = 120;
export const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
/** What back-channel logout uses, declared here (src/runtime.ts's `Deps` has all of it). */
export interface BackchannelDeps {
  config: Pick<Config, 'devAllowHttpLoopback'>;
  /** Also the key under which the provider registers its signer (one per runtime). */
  store: Pick<Store, 'oidc' | 'getSessionByHandle'>;
  bus: EventBus;
  outbound: Pick<OutboundPolicy, 'fetch'>;
}

type Deps = BackchannelDeps;

const RETRY_DELAYS_MS = [0, 500, 2000];
const ATTEMPT_TIMEOUT_MS = 5000;

/** Set by the provider when it starts (src/flows/oidc/provider.ts): issuer and signing keys. */
const signers = new WeakMap<object, { issuer: string; keys: readonly OidcSigningKey[] }>();

export function registerLogoutSigner(deps: Pick<Deps, 'store'>, issuer: string, keys: readonly OidcSigningKey[]): void {
  signers.set(deps.store, { issuer, keys });
}

export async function logoutToken(issuer: string, key: OidcSigningKey, clientId: string, sub: string, sid: string | null, now: number): Promise<string> {
  const iat = Math.floor(now / 1000);
  return new SignJWT({ events: { [BACKCHANNEL_EVENT]: {} }, ...(sid !== null ? { sid } : {}) })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'logout+jwt' })
    .setIssuer(issuer)
    .setAudience(clientId)
    .setSubject(sub)
    .setIssuedAt(iat)
    .setExpirationTime(iat + LOGOUT_TOKEN_LIFETIME_S)
    .setJti(randomUUID())
    .sign(key.privateKey);
}

/**
 * Follows the event bus: every `session.revoked` of an `app` session leads to a delivery (see
 * above). One subscription per runtime; returns the unsubscribe function.
 */
export function followSessionEnds(deps: Deps): () => void {
  return deps.bus.subscribe((e) => {
    if (e.type !== 'session.revoked' || e.kind !== 'app' || e.sessionHandle === null || e.details.reason === 'logout') return;
    const origin: Origin | undefined = e.headers ? { headers: e.headers, ip: e.ip ?? null, userAgent: e.userAgent ?? null } : undefined;
    void deps.store
      .getSessionByHandle(e.sessionHandle)
      // A session that had already idled out when it was revoked (revocations end those too, so
      // that they stay ended) was over for the application before: nothing was sent when it idled
      // out, and its successor under the same sid, if any, is told on its own.
      .then((s) => (s && !(s.idleExpiresAt !== null && s.idleExpiresAt <= e.time) ? sendBackchannelLogouts(deps, [s], e.time, origin) : undefined))
      .catch(() => undefined);
  });
}

export async function sendBackchannelLogouts(deps: Deps, ended: readonly Session[], now: number, origin?: Origin): Promise<void> {
  const signer = signers.get(deps.store);
  if (!signer) return;
  const jobs: Promise<void>[] = [];
  for (const s of ended) {
    if (s.kind !== 'app' || s.clientId === null || s.userId === null || typeof s.data.oidcSid !== 'string') continue;
    jobs.push(deliverOne(deps, signer, s, now, origin));
  }
  await Promise.all(jobs);
}

async function deliverOne(deps: Deps, signer: { issuer: string; keys: readonly OidcSigningKey[] }, s: Session, now: number, origin?: Origin): Promise<void> {
  const clientId = s.clientId as string;
  const app = await deps.store.oidc.getApp(clientId).catch(() => null);
  if (!app || app.backchannelLogoutUri === null) return;
  const base = { type: 'sso.backchannel_logout_failed' as const, time: now, tenantId: s.tenantId, userId: s.userId, sessionHandle: s.handle, kind: 'app' };
  const verdict = judgeUrl(app.backchannelLogoutUri, 'the back-channel logout URI', deps.config.devAllowHttpLoopback);
  if (!verdict.ok) {
    emit(deps, { ...base, details: { clientId, attempts: 0, error: verdict.reason } }, origin);
    return;
  }
  // Signed like the application's ID tokens: one key set and one algorithm to verify both.
  const key = signingKeyFor(signer.keys, app.idTokenSignedResponseAlg ?? DEFAULT_OIDC_SIGNING_ALG);
  const token = await logoutToken(signer.issuer, key, clientId, s.userId as string, s.data.oidcSid as string, now);
  let lastError = '';
  for (let attempt = 1; attempt <= RETRY_DELAYS_MS.length; attempt++) {
    const delay = RETRY_DELAYS_MS[attempt - 1] ?? 0;
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    try {
      // Through the outbound policy: the address of this connection is checked (no loopback,
      // private or link-local target, even if the name now resolves to one).
      const r = await deps.outbound.fetch(verdict.url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ logout_token: token }).toString(),
        redirect: 'manual',
        signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
      });
      await r.body?.cancel();
      if (r.status === 200 || r.status === 204) {
        emit(deps, { ...base, type: 'sso.backchannel_logout_delivered', details: { clientId, attempts: attempt, status: r.status } }, origin);
        return;
      }
      lastError = `answered ${r.status}`;
    } catch {
      // Never the connection error itself (refused, TLS, timeout): the tenant reads this.
      lastError = UNREACHABLE;
    }
  }
  emit(deps, { ...base, details: { clientId, attempts: RETRY_DELAYS_MS.length, error: lastError } }, origin);
}
