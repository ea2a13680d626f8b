// Bank consents (docs/api.md §Consent redirects, "Consent rules"): pure data and pure rules. A
// consent belongs to the user, not to the session that asked for it, so it outlives that session
// and every tab sees it.
//
// Rules:
// - AIS (account information): at most one valid (`confirmed`) consent per user and bank.
//   Confirming a new one marks the previous one `superseded`. Any number may be `pending` at once
//   (several tabs may each be at the bank).
// - PIS (payment initiation): one consent per payment; confirming one never touches another.
// - A `pending` consent lives as long as the redirect that carries it; past that it reads as
//   `expired` and can no longer be settled.
// - A `confirmed` AIS consent lives until its `validUntil` (the date agreed with the bank); past
//   that it reads as `expired`.
// - The bank has the last word (issue 15): a pending consent is settled with the status the bank
//   reports (confirmed, rejected, revoked, expired); a confirmed one ends as `revoked` (the user
//   withdrew it, or the bank says so) or `expired` (the bank refuses it).
//
// The stores run `settleConsent` atomically (SQLite: one IMMEDIATE transaction; Redis: one Lua
// script on the user's hash slot that mirrors it).

import { randomBytes } from 'node:crypto';
import { BadRequest } from './errors.ts';

export const CONSENT_TYPES = ['ais', 'pis'] as const;
export type ConsentType = (typeof CONSENT_TYPES)[number];

/**
 * What a store holds. A consent may also *read* `expired` without being stored so: a pending one
 * past its deadline, a confirmed one past its `validUntil` (see effectiveConsentStatus).
 */
export const STORED_CONSENT_STATUSES = ['pending', 'confirmed', 'rejected', 'superseded', 'revoked', 'expired'] as const;
export type StoredConsentStatus = (typeof STORED_CONSENT_STATUSES)[number];

export const CONSENT_STATUSES = STORED_CONSENT_STATUSES;
export type ConsentStatus = StoredConsentStatus;

/** The statuses after which nothing changes any more (and the retention purge counts from `endedAt`). */
export const ENDED_CONSENT_STATUSES: readonly ConsentStatus[] = ['rejected', 'superseded', 'revoked', 'expired'];

/** How a pending consent is settled: with the status its bank reports. */
export type ConsentDecision = 'confirmed' | 'rejected' | 'revoked' | 'expired';

export interface Payment {
  /** Decimal string with at most two fraction digits, greater than zero: "12.50". */
  amount: string;
  /** ISO 4217, upper case: "EUR". */
  currency: string;
  /** Electronic form (no spaces, upper case), checksum verified. */
  creditorIban: string;
  creditorName: string;
}

export interface Consent {
  id: string;
  tenantId: string;
  userId: string;
  type: ConsentType;
  bankId: string;
  status: StoredConsentStatus;
  createdAt: number;
  /** Until when a pending consent may be confirmed or rejected (its redirect's absolute expiry). */
  expiresAt: number;
  confirmedAt: number | null;
  /** When it was rejected or superseded. */
  endedAt: number | null;
  /** The `redirect` session that carries it to the bank and back. */
  redirectHandle: string | null;
  /** The `app` session that started it (for audit; the consent does not depend on it). */
  startedBy: string | null;
  /** The AIS consent whose confirmation superseded this one. */
  supersededBy: string | null;
  /** PIS only. */
  payment: Payment | null;
  /** The bank's id of this consent (AIS `consentId`) or payment (PIS `paymentId`); null for none yet. */
  bankConsentId: string | null;
  /** AIS: until when the bank agreed to it (end of the `validUntil` day, UTC); null for PIS. */
  validUntil: number | null;
}

export interface NewConsentInput {
  tenantId: string;
  userId: string;
  type: ConsentType;
  bankId: string;
  expiresAt: number;
  redirectHandle?: string | null;
  startedBy?: string | null;
  payment?: Payment | null;
  bankConsentId?: string | null;
  validUntil?: number | null;
}

/** A consent id: 128 bits from the CSPRNG, base64url (22 characters). Not a secret. */
export function newConsentId(): string {
  return randomBytes(16).toString('base64url');
}

export const CONSENT_ID_PATTERN = '^[A-Za-z0-9_-]{22}$';
export const BANK_ID_PATTERN = '^[a-z0-9][a-z0-9-]{0,63}$';

/** A new pending consent. A PIS consent needs a payment; an AIS consent must not have one. */
export function newConsent(input: NewConsentInput, now: number, id: string = newConsentId()): Consent {
  if (input.type === 'pis' && !input.payment) throw new BadRequest('invalid_payment', 'A PIS consent needs a payment.');
  if (input.type === 'ais' && input.payment) {
    throw new BadRequest('invalid_request', 'An AIS consent has no payment; start a payment with type "pis".');
  }
  return {
    id,
    tenantId: input.tenantId,
    userId: input.userId,
    type: input.type,
    bankId: input.bankId,
    status: 'pending',
    createdAt: now,
    expiresAt: input.expiresAt,
    confirmedAt: null,
    endedAt: null,
    redirectHandle: input.redirectHandle ?? null,
    startedBy: input.startedBy ?? null,
    supersededBy: null,
    payment: input.type === 'pis' ? normalisePayment(input.payment as Payment) : null,
    bankConsentId: input.bankConsentId ?? null,
    validUntil: input.validUntil ?? null,
  };
}

/**
 * How a consent reads at `now`: a pending consent past its deadline, and a confirmed one past its
 * `validUntil`, are `expired`.
 */
export function effectiveConsentStatus(c: Pick<Consent, 'status' | 'expiresAt' | 'validUntil'>, now: number): ConsentStatus {
  if (c.status === 'pending' && now >= c.expiresAt) return 'expired';
  if (c.status === 'confirmed' && c.validUntil !== null && now >= c.validUntil) return 'expired';
  return c.status;
}

/** The consent an AIS call for this bank uses: the confirmed AIS consent, if any. */
export function validAisConsent(consents: readonly Consent[], bankId: string): Consent | null {
  return consents.find((c) => c.type === 'ais' && c.bankId === bankId && c.status === 'confirmed') ?? null;
}

/** The `validUntil` date (YYYY-MM-DD, UTC) of a new AIS consent, and the moment it ends. */
export function aisValidUntil(now: number, days: number): { date: string; endsAt: number } {
  const d = new Date(now + days * 86_400_000);
  const date = d.toISOString().slice(0, 10);
  return { date, endsAt: Date.parse(`${date}T00:00:00Z`) + 86_400_000 };
}

export type ConsentEnding =
  | { outcome: 'ended'; consent: Consent; before: Consent }
  /** Already rejected, superseded, revoked or expired: nothing changes. */
  | { outcome: 'not_active'; consent: Consent };

/**
 * Ends a pending or confirmed consent: `revoked` (withdrawn by the user, or by the bank) or
 * `expired` (the bank no longer honours it). Pure; the store writes the result atomically.
 */
export function endConsent(consent: Consent, status: 'revoked' | 'expired', now: number): ConsentEnding {
  if (consent.status !== 'pending' && consent.status !== 'confirmed') return { outcome: 'not_active', consent };
  return { outcome: 'ended', consent: { ...consent, status, endedAt: now }, before: consent };
}

export type Settlement =
  /** `consent` now has the decision; `superseded` are the AIS consents it replaced (confirmed ones). */
  | { outcome: 'settled'; consent: Consent; superseded: Consent[] }
  /** Already confirmed, rejected or superseded: nothing changes. */
  | { outcome: 'not_pending'; consent: Consent }
  /** Pending but past its deadline: nothing changes. */
  | { outcome: 'expired'; consent: Consent };

/**
 * Settles a pending consent (docs/api.md §Consent redirects). `current` are the user's other
 * consents that the decision may affect (a store passes at least the confirmed AIS consent for the
 * same bank). Pure: returns the new records; the store writes them in one atomic step.
 */
export function settleConsent(
  consent: Consent,
  decision: ConsentDecision,
  current: readonly Consent[],
  now: number,
): Settlement {
  if (consent.status !== 'pending') return { outcome: 'not_pending', consent };
  // The bank saying "expired" is itself the end; any other decision comes too late past the deadline.
  if (now >= consent.expiresAt && decision !== 'expired') return { outcome: 'expired', consent };
  if (decision !== 'confirmed') {
    return { outcome: 'settled', consent: { ...consent, status: decision, endedAt: now }, superseded: [] };
  }
  const superseded =
    consent.type === 'ais'
      ? current
          .filter((c) => c.id !== consent.id && c.type === 'ais' && c.bankId === consent.bankId && c.status === 'confirmed')
          .map((c): Consent => ({ ...c, status: 'superseded', endedAt: now, supersededBy: consent.id }))
      : [];
  return { outcome: 'settled', consent: { ...consent, status: 'confirmed', confirmedAt: now }, superseded };
}

// ---- payments ---------------------------------------------------------------------------------

const AMOUNT = /^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$/;
const CURRENCY = /^[A-Z]{3}$/;

/** Validates and normalises a payment; throws BadRequest('invalid_payment') naming the field. */
export function normalisePayment(p: Payment): Payment {
  const amount = p.amount.trim();
  if (!AMOUNT.test(amount) || Number(amount) <= 0) {
    throw new BadRequest('invalid_payment', 'payment.amount must be a decimal greater than zero with at most two fraction digits, e.g. "12.50".', { field: 'amount' });
  }
  const currency = p.currency.trim();
  if (!CURRENCY.test(currency)) {
    throw new BadRequest('invalid_payment', 'payment.currency must be an ISO 4217 code in upper case, e.g. "EUR".', { field: 'currency' });
  }
  const iban = p.creditorIban.replace(/\s+/g, '').toUpperCase();
  if (!isValidIban(iban)) {
    throw new BadRequest('invalid_payment', 'payment.creditorIban is not a valid IBAN (its check digits do not match).', { field: 'creditorIban' });
  }
  const name = p.creditorName.trim();
  if (name.length === 0 || name.length > 70) {
    throw new BadRequest('invalid_payment', 'payment.creditorName must be 1 to 70 characters.', { field: 'creditorName' });
  }
  return { amount, currency, creditorIban: iban, creditorName: name };
}

/** ISO 13616: country code, two check digits, up to 30 alphanumerics; mod 97 of the rearranged number is 1. */
export function isValidIban(iban: string): boolean {
  if (!/^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$/.test(iban)) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (const ch of rearranged) {
    const digits = ch >= 'A' && ch <= 'Z' ? String(ch.charCodeAt(0) - 55) : ch;
    for (const d of digits) remainder = (remainder * 10 + Number(d)) % 97;
  }
  return remainder === 1;
}
