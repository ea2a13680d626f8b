// Consent redirects in several tabs of one browser (docs/api.md §Consent redirects).
//
// Start: a cookie session asks for a consent. Tessera asks the bank first (Berlin Group: POST
// /v1/consents or /v1/payments/sepa-credit-transfers, with the return URL as TPP-Redirect-URI);
// only when the bank has answered does it store the consent (pending, under the user, with the
// bank's id) and a `redirect` child session whose secret becomes the `__Secure-rid` cookie of that
// redirect's own return path. The session cookie is not touched, so other tabs keep working
// and any number of redirects run side by side.
//
// Return: the browser comes back from the bank by a top-level cross-site navigation, which does
// not carry the SameSite=Strict session cookie but does carry the Lax redirect cookie. The
// return consumes the redirect session (single use), settles the consent with the status the bank
// reports (never the query string; asked again a few times while not final), and then applies
// the rule of docs/api.md §Consent redirects ("The session after a return") to the session that
// started it: still valid → nothing to do; expired → one successor,
// the same for every return from that predecessor (renewAfterExpiry, with the successor's secret
// derived from the predecessor's handle so that every racing return sets the same cookie).

import { aisValidUntil, effectiveConsentStatus, newConsent, newConsentId, type Consent, type ConsentType, type Payment } from '../domain/consent.ts';
import { Conflict, Forbidden, TesseraError, Unauthorized } from '../domain/errors.ts';
import { buildSuccessorSession, issueRedirectSession, redirectReturnPath } from '../domain/redirect.ts';
import { constantTimeEqual, hashSecret } from '../domain/secrets.ts';
import { isValid, type Device, type Session } from '../domain/session.ts';
import { consentReturnTarget, lifetimeOf, type Tenant } from '../domain/tenant.ts';
import type { Config } from '../config/config.ts';
import { sessionEvent, emit, type Origin } from '../events/bus.ts';
import type { Clock } from '../domain/clock.ts';
import { announceEnded, appSessionLimit, idleSecondsOf, xsrfTokenOf, type SessionDeps } from '../sessions/app-sessions.ts';
import { keyedDigest } from '../tokens/sealing.ts';
import { atBank, requireBank } from './banks.ts';
import { askBankForStatus, consentEvent, scheduleStatusCheck, type ConsentLifecycleDeps } from './consent-lifecycle.ts';

/** What consent redirects use, declared here (src/runtime.ts's `Deps` has all of it). */
export interface ConsentRedirectDeps extends Omit<SessionDeps, 'config'>, Omit<ConsentLifecycleDeps, 'config' | 'store' | 'keys'> {
  config: SessionDeps['config'] & ConsentLifecycleDeps['config'] & Pick<Config, 'demo'>;
  clock: Clock;
}

type Deps = ConsentRedirectDeps;

/** How long a new AIS consent is asked for (its `validUntil`), days. */
export const AIS_CONSENT_DAYS = 90;
/** How often a return asks the bank again while the status is not final (within 5 s in all). */
const RETURN_REASKS = 3;

export interface StartRedirectInput {
  tenant: Tenant;
  /** The valid cookie-mode app session that asks. */
  session: Session;
  type: ConsentType;
  bankId: string;
  payment: Payment | null;
  device: Device;
  /** SHA-256 of the browser's `__Host-rb` binding cookie. */
  browserBinding: string;
}

export interface StartedRedirect {
  consent: Consent;
  redirect: Session;
  /** The redirect session's secret: the value of its `__Secure-rid` cookie. Never stored. */
  secret: string;
  /** The bank's consent UI. */
  location: string;
}


export async function startConsentRedirect(deps: Deps, input: StartRedirectInput, now: number, origin?: Origin): Promise<StartedRedirect> {
  const { tenant, session } = input;
  const bank = await requireBank(deps, session.tenantId, input.bankId);
  // The return must have somewhere to send the browser: refused before the bank is asked or
  // anything is written, not discovered after the user has been to the bank.
  requireReturnTarget(deps, tenant);
  const consentId = newConsentId();
  const issued = issueRedirectSession(
    { parent: session, lifetime: lifetimeOf(tenant, 'redirect'), consentId, device: input.device, browserBinding: input.browserBinding },
    now,
  );
  const validity = input.type === 'ais' ? aisValidUntil(now, AIS_CONSENT_DAYS) : null;
  // Validates the payment before the bank is asked and before anything is written.
  const draft = newConsent(
    {
      tenantId: session.tenantId,
      userId: session.userId as string,
      type: input.type,
      bankId: bank.bankId,
      expiresAt: issued.session.absoluteExpiresAt,
      redirectHandle: issued.session.handle,
      startedBy: session.handle,
      payment: input.payment,
      validUntil: validity?.endsAt ?? null,
    },
    now,
    consentId,
  );
  // The bank first: if it fails, nothing has been written (no consent, no redirect, no cookie).
  const returnUrl = new URL(redirectReturnPath(issued.session.handle), deps.config.publicUrl).toString();
  const redirectUris = { ok: returnUrl, nok: `${returnUrl}?result=nok` };
  const ctx = { tenantId: session.tenantId, userId: draft.userId, sessionHandle: session.handle, operation: `${input.type}.start`, consentId };
  const atTheBank = await atBank(
    deps,
    bank,
    ctx,
    (client) =>
      draft.type === 'ais'
        ? client.createConsent({ redirect: redirectUris, validUntil: (validity as { date: string }).date, psuIp: input.device.ip ?? '0.0.0.0' })
        : client.createPayment({ redirect: redirectUris, payment: draft.payment as Payment, psuIp: input.device.ip ?? '0.0.0.0' }),
    origin,
  );
  const consent: Consent = { ...draft, bankConsentId: atTheBank.bankConsentId };
  await deps.store.consents.createConsent(consent);
  let redirect: Session;
  try {
    const created = await deps.store.createSession(issued.session, now);
    if (!created.ok) throw new Error('a redirect session is created without a limit');
    redirect = created.session;
    // On Redis, room made under the per-user cap (sessions the cap ended).
    announceEnded(deps, created.evicted, now, origin);
  } catch (err) {
    // The app session ended between authentication and here (a logout in another tab). The
    // consent stays pending and expires with the redirect that never was.
    if (err instanceof TesseraError && err.code === 'invalid_parent') throw new Unauthorized('session_ended', 'The session has ended.');
    throw err;
  }
  // The background re-check asks the bank until the consent is final or its redirect has lapsed.
  await scheduleStatusCheck(deps, consent, now);
  emit(deps, consentEvent('created', consent, now, session.handle, { redirectId: redirect.handle }), origin);
  emit(deps, sessionEvent('session.created', redirect, now, { consentId }), origin);
  emit(deps, sessionEvent('redirect.started', redirect, now, { consentId, consentType: consent.type, bankId: consent.bankId, parent: session.handle }), origin);
  return { consent, redirect, secret: issued.secret, location: atTheBank.scaRedirect };
}

/** Where this tenant's bank returns go (docs/api.md §Consent redirects), or 409 `consent_return_url_unset`. */
export function requireReturnTarget(deps: Pick<Deps, 'config'>, tenant: Tenant | null, extra: Record<string, unknown> = {}): string {
  const target = consentReturnTarget(tenant, deps.config.demo);
  if (target === null) {
    throw new TesseraError(
      409,
      'consent_return_url_unset',
      `Tenant ${tenant?.id ?? '(deleted)'} has no consentReturnUrl: an administrator sets it (PUT /api/v1/admin/tenants/{id}) before consent redirects can run.`,
      extra,
    );
  }
  return target;
}

export type SessionAfterReturn =
  /** The session that started the redirect is still valid: the browser keeps its cookie. */
  | { outcome: 'still_valid'; session: Session }
  /** The browser gets this session's cookie; `created` when this return made it. */
  | { outcome: 'renewed'; session: Session; secret: string; created: boolean }
  /** No session: the starting session was revoked or its absolute lifetime is over. */
  | { outcome: 'none'; reason: string };

export interface RedirectReturn {
  tenant: Tenant | null;
  consent: Consent;
  superseded: Consent[];
  redirect: Session;
  session: SessionAfterReturn;
}

export interface ReturnInput {
  redirectId: string;
  /** The value of the `__Secure-rid` cookie sent with the return, or null. */
  secret: string | null;
  /** The value of the browser's `__Host-rb` binding cookie, or null. */
  binding: string | null;
  /** What the query string claims (`?result=`); recorded, never believed. */
  result: 'ok' | 'nok' | null;
  device: Device;
}

export async function returnFromRedirect(
  deps: Deps,
  input: ReturnInput,
  loadTenant: (id: string) => Promise<Tenant | null>,
  now: number,
  origin?: Origin,
): Promise<RedirectReturn> {
  if (input.secret === null) {
    throw new Forbidden('redirect_cookie_missing', 'This browser holds no cookie for this redirect: it was started elsewhere, already used, or has expired.');
  }
  const secretHash = hashSecret(input.secret);
  // Look first, consume second: a cookie of another redirect shown at this path must not burn
  // that other redirect.
  const found = await deps.store.getSessionBySecretHash(secretHash);
  if (found === null || found.kind !== 'redirect' || found.handle !== input.redirectId) {
    throw new Forbidden('redirect_invalid', 'The cookie sent does not belong to this redirect.');
  }
  // The redirect cookie alone could have been planted (see NewRedirectInput.browserBinding): the
  // browser that started the redirect must come back. Checked before anything is consumed.
  const bound = typeof found.data.browserBinding === 'string' ? found.data.browserBinding : null;
  if (bound !== null && (input.binding === null || !constantTimeEqual(hashSecret(input.binding), bound))) {
    throw new Forbidden('redirect_other_browser', 'This redirect was started in another browser.');
  }
  const redirect = await deps.store.consumeSession(secretHash, now);
  if (redirect === null) {
    throw new Forbidden('redirect_invalid', 'This redirect was already used, has expired, or its session was ended.');
  }
  announceEnded(deps, [redirect], now, origin);

  const tenantId = redirect.tenantId;
  const userId = redirect.userId as string;
  const consentId = typeof redirect.data.consentId === 'string' ? redirect.data.consentId : '';
  const stored = await deps.store.consents.getConsent(tenantId, userId, consentId);
  if (stored === null) throw new Conflict('consent_not_pending', 'The consent of this redirect no longer exists.');
  // The query string says nothing: the bank is asked (and asked again while it is not final).
  const asked =
    stored.status === 'pending'
      ? await askBankForStatus(deps, stored, { reasks: RETURN_REASKS, sessionHandle: redirect.handle, operation: 'return' }, origin)
      : { consent: stored, superseded: [] };
  const consent = asked.consent;

  const tenant = await loadTenant(tenantId);
  const session =
    redirect.parentHandle === null || tenant === null
      ? ({ outcome: 'none', reason: 'no_parent' } as const)
      : await sessionAfterReturn(deps, tenant, redirect.parentHandle, input.device, now, origin);
  emit(
    deps,
    sessionEvent('redirect.returned', redirect, now, {
      consentId,
      result: input.result,
      consentStatus: effectiveConsentStatus(consent, deps.clock.now()),
      session: session.outcome,
      ...(session.outcome === 'none' ? {} : { sessionId: session.session.handle }),
    }),
    origin,
  );
  return { tenant, consent, superseded: asked.superseded, redirect, session };
}

/** How many expired successors in a row a return follows (each one renewed once) before giving up. */
const MAX_RENEWAL_CHAIN = 5;

/**
 * docs/api.md §Consent redirects, "The session after a return": the session the browser is left
 * with after a return whose redirect was started by `parentHandle`. If that session expired and was
 * already renewed, the renewal is followed (and, should the successor have expired in turn, renewed
 * once more in the same way).
 */
async function sessionAfterReturn(
  deps: Deps,
  tenant: Tenant,
  parentHandle: string,
  device: Device,
  now: number,
  origin?: Origin,
): Promise<SessionAfterReturn> {
  let predecessor = await deps.store.getSessionByHandle(parentHandle);
  /** The secret of `predecessor` when it is itself a successor (derived from its own predecessor). */
  let predecessorSecret: string | null = null;
  for (let i = 0; i < MAX_RENEWAL_CHAIN && predecessor !== null; i++) {
    if (predecessor.data.mode !== 'cookie') return { outcome: 'none', reason: 'not_a_cookie_session' };
    const secret = keyedDigest(deps.keys.renew, predecessor.handle);
    const successor = buildSuccessorSession(
      {
        predecessor,
        secret,
        idleSeconds: idleSecondsOf(tenant, 'cookie'),
        device,
        data: (handle) => ({ xsrfHash: hashSecret(xsrfTokenOf(deps, handle)) }),
      },
      now,
    );
    if (successor === null) {
      // Revoked, or past its absolute expiry: never renewed (and therefore not valid either).
      return { outcome: 'none', reason: predecessor.status === 'revoked' ? 'revoked' : 'absolute_lifetime_over' };
    }
    let r;
    try {
      // The successor is a new session of the user: the tenant's limit applies as at a login.
      r = await deps.store.renewAfterExpiry(predecessor.handle, successor, now, appSessionLimit(tenant));
    } catch (err) {
      // The successor would sit under an ended idp session: the user must log in again.
      if (err instanceof TesseraError && err.code === 'invalid_parent') return { outcome: 'none', reason: 'parent_ended' };
      throw err;
    }
    switch (r.outcome) {
      case 'still_valid':
        return predecessorSecret === null
          ? { outcome: 'still_valid', session: r.session }
          : { outcome: 'renewed', session: r.session, secret: predecessorSecret, created: false };
      case 'revoked':
        return { outcome: 'none', reason: 'revoked' };
      case 'missing':
        return { outcome: 'none', reason: 'missing' };
      case 'limit_reached':
        // reject_new: the user already has the most sessions allowed; they log in again.
        return { outcome: 'none', reason: 'session_limit_reached' };
      case 'renewed': {
        const s = r.session;
        if (r.created) {
          deps.sessionCache.remember(s);
          announceEnded(deps, r.evicted, now, origin);
          emit(deps, sessionEvent('session.created', s, now, { mode: 'cookie', authMethod: 'renewed', renewedFrom: predecessor.handle }), origin);
        }
        if (isValid(s, now)) return { outcome: 'renewed', session: s, secret, created: r.created };
        if (s.status === 'revoked') return { outcome: 'none', reason: 'revoked' };
        // The successor expired as well (a return long after the first one): renew it in turn.
        predecessor = s;
        predecessorSecret = secret;
        break;
      }
    }
  }
  return { outcome: 'none', reason: predecessor === null ? 'missing' : 'renewal_chain_too_long' };
}
