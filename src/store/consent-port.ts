// The consent part of the storage port (docs/api.md §Consent redirects), reached as
// `SessionStore.consents`. Consents belong to a user: every operation names (tenantId, userId), and
// an adapter keeps all of one user's consents together (SQLite: rows keyed by user; Redis: the
// user's hash slot `{userTag}`), so that confirming one and superseding another is one atomic step.
//
// Conventions as in port.ts: times are passed in; refusals are TesseraErrors with stable codes
// (consent_exists, invalid_cursor, invalid_limit).

import type { Consent, ConsentDecision, ConsentEnding, Settlement } from '../domain/consent.ts';
import type { Page } from './page.ts';

export type SettleResult = Settlement | { outcome: 'missing' };
export type EndResult = ConsentEnding | { outcome: 'missing' };

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

  /**
   * Ends a pending or confirmed consent as `revoked` or `expired` (domain/consent.ts `endConsent`);
   * a confirmed AIS consent stops being the valid one in the same step. Of concurrent ends of
   * one consent exactly one gets `ended`.
   */
  endConsent(tenantId: string, userId: string, id: string, status: 'revoked' | 'expired', now: number): Promise<EndResult>;

  /** Deletes a consent for good (the retention purge). Returns whether it existed. */
  deleteConsent(tenantId: string, userId: string, id: string): Promise<boolean>;
}

/** Maximum `limit` of listConsents. */
export const CONSENT_LIST_MAX = 500;
