// The consent part of the storage port (SPEC 7.4), reached as `SessionStore.consents`. Consents
// belong to a user: every operation names (tenantId, userId), and an adapter keeps all of one
// user's consents together (SQLite: rows keyed by user; Redis: the user's hash slot `{userTag}`),
// so that confirming one and superseding another is one atomic step.
//
// Conventions as in port.ts: times are passed in; refusals are TesseraErrors with stable codes
// (consent_exists, invalid_cursor, invalid_limit).

import type { Consent, ConsentDecision, Settlement } from '../domain/consent.ts';
import type { Page } from './port.ts';

export type SettleResult = Settlement | { outcome: 'missing' };

export interface ListConsentsQuery {
  tenantId: string;
  userId: string;
  cursor?: string | null;
  /** 1..500 */
  limit: number;
}

export interface ConsentStore {
  /** Stores a new consent. Throws Conflict('consent_exists') when the user has one with this id. */
  createConsent(consent: Consent): Promise<Consent>;

  /** One of the user's consents, whatever its status; null when the user has none with this id. */
  getConsent(tenantId: string, userId: string, id: string): Promise<Consent | null>;

  /** The user's consents, newest first: sorted by (createdAt, id) descending. */
  listConsents(query: ListConsentsQuery): Promise<Page<Consent>>;

  /** The user's valid (confirmed) AIS consent for this bank, or null. At most one exists. */
  validAisConsent(tenantId: string, userId: string, bankId: string): Promise<Consent | null>;

  /**
   * Confirms or rejects a pending consent that has not expired at `now` (domain/consent.ts
   * `settleConsent`). Confirming an AIS consent supersedes the user's confirmed AIS consent for
   * the same bank in the same atomic step, so at most one stays valid however many confirmations
   * race. Of concurrent settlements of one consent exactly one gets `settled`.
   */
  settleConsent(tenantId: string, userId: string, id: string, decision: ConsentDecision, now: number): Promise<SettleResult>;
}

/** Listing cursor: opaque base64url of the last item's (createdAt, id). */
export interface ConsentPosition {
  createdAt: number;
  id: string;
}

export function encodeConsentCursor(p: ConsentPosition): string {
  return Buffer.from(JSON.stringify([p.createdAt, p.id]), 'utf8').toString('base64url');
}

export function decodeConsentCursor(cursor: string): ConsentPosition | null {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && Number.isSafeInteger(v[0]) && typeof v[1] === 'string' && v[1].length <= 64) {
      return { createdAt: v[0] as number, id: v[1] };
    }
  } catch {
    // fall through
  }
  return null;
}
