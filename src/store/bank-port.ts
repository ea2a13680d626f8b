// The bank part of the storage port (issue 15), reached as `SessionStore.banks`: each tenant's
// registered banks, and the queue of work that must reach a bank later (asking the status of a
// pending consent, terminating a withdrawn one when the bank was down) or that ends a consent's
// life (its purge after the retention period).
//
// Conventions as in port.ts: times are passed in; records hold sealed secrets only.

import type { Bank } from '../domain/bank.ts';

export const BANK_WORK_KINDS = ['check', 'terminate', 'purge'] as const;

export type BankWorkKind =
  /** Ask the bank for the status of a pending consent. */
  | 'check'
  /** Tell the bank a consent is withdrawn (DELETE), retried until the bank takes it. */
  | 'terminate'
  /** Delete an ended consent after the retention period. */
  | 'purge';

export interface BankWork {
  kind: BankWorkKind;
  tenantId: string;
  userId: string;
  consentId: string;
}

export interface ClaimedWork extends BankWork {
  /** How many times it was claimed before (0 the first time). */
  attempts: number;
}

export interface BankStore {
  /** Creates or replaces the tenant's bank `bank.bankId`; `created` says which. */
  putBank(bank: Bank): Promise<{ bank: Bank; created: boolean }>;
  getBank(tenantId: string, bankId: string): Promise<Bank | null>;
  /** The tenant's banks, by bank id. */
  listBanks(tenantId: string): Promise<Bank[]>;
  /** Returns whether it existed. */
  deleteBank(tenantId: string, bankId: string): Promise<boolean>;

  /**
   * Schedules `work` at `dueAt` (epoch ms). Scheduling the same work again moves it to the new
   * time and keeps its attempt count.
   */
  scheduleWork(work: BankWork, dueAt: number): Promise<void>;
  /**
   * Up to `max` items due at `now`, each moved to `now + leaseMs` and its attempt count raised in
   * the same atomic step: of several workers in several processes exactly one gets an item until
   * its lease runs out (then it is due again, for a worker that died holding it).
   */
  claimWork(now: number, max: number, leaseMs: number): Promise<ClaimedWork[]>;
  /** Removes the work (done, or no longer needed). */
  finishWork(work: BankWork): Promise<void>;
  /**
   * Removes every queued item of the tenant, due or not, claimed or not (deleting a tenant:
   * src/flows/tenant-delete.ts). Resolves to how many there were. Items of other tenants stay,
   * whatever their ids share with this one.
   */
  dropTenantWork(tenantId: string): Promise<number>;
}

/** One stable text per work item (the queue's member / primary key). */
export function workKey(w: BankWork): string {
  return JSON.stringify([w.kind, w.tenantId, w.userId, w.consentId]);
}

/**
 * The beginnings of the keys of a tenant's items, one per kind: every key of the tenant starts
 * with one of them and no key of another tenant does (the tenant id is a whole JSON string,
 * closed by its quote and the comma).
 */
export function tenantWorkPrefixes(tenantId: string): string[] {
  return BANK_WORK_KINDS.map((kind) => `${JSON.stringify([kind, tenantId]).slice(0, -1)},`);
}

export function workFromKey(key: string): BankWork | null {
  try {
    const v = JSON.parse(key) as unknown;
    if (Array.isArray(v) && v.length === 4 && v.every((x) => typeof x === 'string') && (BANK_WORK_KINDS as readonly string[]).includes(v[0] as string)) {
      return { kind: v[0] as BankWorkKind, tenantId: v[1] as string, userId: v[2] as string, consentId: v[3] as string };
    }
  } catch {
    // fall through
  }
  return null;
}
