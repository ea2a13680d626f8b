// The TPP side of the Berlin Group NextGenPSD2 XS2A framework, v1.3, redirect approach: the
// subset Tessera uses (AIS consents, PIS SEPA credit transfers, their status, accounts through a
// consent, termination). Every call carries a fresh X-Request-ID; starts carry PSU-IP-Address.
// Answers are checked against the protocol's shapes; anything else is a BankCallError.

import { randomUUID } from 'node:crypto';
import type { ConsentDecision, Payment } from '../domain/consent.ts';
import { BankCallError, callBank, type BankEndpoint, type OutboundPolicy } from './bank-http.ts';

export interface BankAccount {
  iban: string;
  name: string;
  currency: string;
  /** Decimal string; the closing booked (or first) balance the bank gives, "" when none. */
  balance: string;
}

export interface StartedAtBank {
  /** The bank's consentId (AIS) or paymentId (PIS). */
  bankConsentId: string;
  /** `_links.scaRedirect.href`: where the user approves. */
  scaRedirect: string;
}

export interface RedirectUris {
  /** TPP-Redirect-URI */
  ok: string;
  /** TPP-Nok-Redirect-URI */
  nok: string;
}

/** What a bank reports of a consent or payment, in Tessera's terms. */
export type BankVerdict = ConsentDecision | 'pending';

/** consentStatus (v1.3) → Tessera. `received` and `partiallyAuthorised` are not final. */
export function aisVerdict(consentStatus: string): BankVerdict {
  switch (consentStatus) {
    case 'valid':
      return 'confirmed';
    case 'rejected':
      return 'rejected';
    case 'revokedByPsu':
    case 'terminatedByTpp':
      return 'revoked';
    case 'expired':
      return 'expired';
    default:
      return 'pending';
  }
}

const PIS_CONFIRMED = new Set(['ACTC', 'ACCP', 'ACFC', 'ACWC', 'ACSP', 'ACSC']);
const PIS_REJECTED = new Set(['RJCT', 'CANC']);

/** transactionStatus (ISO 20022) → Tessera. `RCVD`, `PDNG`, `PATC`, `PART` are not final. */
export function pisVerdict(transactionStatus: string): BankVerdict {
  if (PIS_CONFIRMED.has(transactionStatus)) return 'confirmed';
  if (PIS_REJECTED.has(transactionStatus)) return 'rejected';
  return 'pending';
}

/** The bank refused a call made with a consent (401/403): the consent is no longer honoured. */
export class ConsentRefusedByBank extends Error {}

const PAYMENTS = '/v1/payments/sepa-credit-transfers';

export class BerlinGroupClient {
  readonly #endpoint: BankEndpoint;
  readonly #policy: OutboundPolicy;

  constructor(endpoint: BankEndpoint, policy: OutboundPolicy) {
    this.#endpoint = endpoint;
    this.#policy = policy;
  }

  async createConsent(input: { redirect: RedirectUris; validUntil: string; psuIp: string }): Promise<StartedAtBank> {
    const res = await this.#call('POST', '/v1/consents', { ...this.#startHeaders(input.redirect, input.psuIp) }, {
      access: { allPsd2: 'allAccounts' },
      recurringIndicator: true,
      validUntil: input.validUntil,
      frequencyPerDay: 4,
      combinedServiceIndicator: false,
    });
    expectStatus(res.status, [201]);
    return started(res.body, 'consentId', 'consentStatus');
  }

  async createPayment(input: { redirect: RedirectUris; payment: Payment; psuIp: string }): Promise<StartedAtBank> {
    const p = input.payment;
    const res = await this.#call('POST', PAYMENTS, this.#startHeaders(input.redirect, input.psuIp), {
      instructedAmount: { currency: p.currency, amount: p.amount },
      creditorAccount: { iban: p.creditorIban },
      creditorName: p.creditorName,
    });
    expectStatus(res.status, [201]);
    return started(res.body, 'paymentId', 'transactionStatus');
  }

  async consentStatus(bankConsentId: string): Promise<BankVerdict> {
    const res = await this.#call('GET', `/v1/consents/${encodeURIComponent(bankConsentId)}/status`, {});
    expectStatus(res.status, [200]);
    return aisVerdict(stringField(res.body, 'consentStatus'));
  }

  async paymentStatus(bankPaymentId: string): Promise<BankVerdict> {
    const res = await this.#call('GET', `${PAYMENTS}/${encodeURIComponent(bankPaymentId)}/status`, {});
    expectStatus(res.status, [200]);
    return pisVerdict(stringField(res.body, 'transactionStatus'));
  }

  /**
   * Terminates an AIS consent (DELETE /v1/consents/{id}) or asks to cancel a payment (DELETE on
   * the payment). `done`: the bank took it or no longer knows the resource; `refused`: the bank
   * answered that it will not (a payment past cancellation); network or 5xx failures throw.
   */
  async terminate(kind: 'ais' | 'pis', bankConsentId: string): Promise<'done' | 'refused'> {
    const path = kind === 'ais' ? `/v1/consents/${encodeURIComponent(bankConsentId)}` : `${PAYMENTS}/${encodeURIComponent(bankConsentId)}`;
    const res = await this.#call('DELETE', path, {});
    if (res.status === 200 || res.status === 202 || res.status === 204 || res.status === 404) return 'done';
    if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) return 'refused';
    throw new BankCallError('bad_status', `DELETE answered ${res.status}`, res.status);
  }

  async accounts(bankConsentId: string): Promise<BankAccount[]> {
    const res = await this.#call('GET', '/v1/accounts?withBalance=true', { 'Consent-ID': bankConsentId });
    if (res.status === 401 || res.status === 403) throw new ConsentRefusedByBank(`the bank answered ${res.status} to the consent`);
    expectStatus(res.status, [200]);
    const list = isObject(res.body) ? res.body.accounts : undefined;
    if (!Array.isArray(list)) throw new BankCallError('malformed', 'the accounts answer has no "accounts" array');
    return list.map((a: unknown) => {
      if (!isObject(a) || typeof a.iban !== 'string' || typeof a.currency !== 'string') {
        throw new BankCallError('malformed', 'an account without "iban" or "currency"');
      }
      return { iban: a.iban, name: typeof a.name === 'string' ? a.name : (typeof a.product === 'string' ? a.product : ''), currency: a.currency, balance: balanceOf(a.balances) };
    });
  }

  #startHeaders(redirect: RedirectUris, psuIp: string): Record<string, string> {
    return { 'PSU-IP-Address': psuIp, 'TPP-Redirect-Preferred': 'true', 'TPP-Redirect-URI': redirect.ok, 'TPP-Nok-Redirect-URI': redirect.nok };
  }

  #call(method: 'GET' | 'POST' | 'DELETE', path: string, headers: Record<string, string>, body?: unknown) {
    return callBank(this.#endpoint, this.#policy, method, path, { 'X-Request-ID': randomUUID(), ...headers }, body);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function expectStatus(status: number, ok: number[]): void {
  if (!ok.includes(status)) throw new BankCallError('bad_status', `the bank answered HTTP ${status}`, status);
}

function stringField(body: unknown, field: string): string {
  const v = isObject(body) ? body[field] : undefined;
  if (typeof v !== 'string' || v === '') throw new BankCallError('malformed', `the answer has no "${field}"`);
  return v;
}

function started(body: unknown, idField: string, statusField: string): StartedAtBank {
  stringField(body, statusField);
  const id = stringField(body, idField);
  const links = isObject(body) ? body._links : undefined;
  const sca = isObject(links) ? links.scaRedirect : undefined;
  const href = isObject(sca) ? sca.href : undefined;
  if (typeof href !== 'string') throw new BankCallError('malformed', 'the answer has no _links.scaRedirect.href');
  let url: URL;
  try {
    url = new URL(href);
  } catch {
    throw new BankCallError('malformed', 'scaRedirect.href is not an absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new BankCallError('malformed', 'scaRedirect.href is not an http(s) URL');
  if (id.length > 256) throw new BankCallError('malformed', `${idField} is too long`);
  return { bankConsentId: id, scaRedirect: url.toString() };
}

function balanceOf(balances: unknown): string {
  if (!Array.isArray(balances) || balances.length === 0) return '';
  const list = balances as unknown[];
  const pick: unknown = list.find((b) => isObject(b) && b.balanceType === 'closingBooked') ?? list[0];
  const amount = isObject(pick) && isObject(pick.balanceAmount) ? pick.balanceAmount.amount : undefined;
  return typeof amount === 'string' ? amount : '';
}
