// A consent's life after its start (issue 15): the bank has the last word on its status, a
// withdrawn or superseded AIS consent is terminated at the bank, and ended consents are purged
// after the retention period (TESSERA_CONSENT_RETENTION).
//
// What cannot be done at once goes to the store's bank work queue (bank-port.ts) and is done by
// `runBankWork`, which the server runs periodically in every process (claims are exclusive):
//   check      ask the bank for a pending consent's status, until final or its redirect lapsed
//   terminate  DELETE at the bank, retried while the bank is down
//   purge      delete an ended consent once its retention is over

import { emit, type Origin, type TesseraEvent } from '../events/bus.ts';
import type { BankVerdict } from '../banks/berlin-group.ts';
import { ConsentRefusedByBank, type BankAccount } from '../banks/berlin-group.ts';
import { effectiveConsentStatus, type Consent } from '../domain/consent.ts';
import { Conflict, Forbidden, NotFound } from '../domain/errors.ts';
import type { Config } from '../config/config.ts';
import type { BankWork, ClaimedWork } from '../store/bank-port.ts';
import type { Store } from '../store/port.ts';
import { atBank, BankUnavailable, findBank, requireBank, type BankDeps } from './banks.ts';

/** What a consent's life uses, declared here (src/runtime.ts's `Deps` has all of it). */
export interface ConsentLifecycleDeps extends BankDeps {
  store: Pick<Store, 'banks' | 'consents'>;
  config: Pick<Config, 'consentRetentionSeconds'>;
}

type Deps = ConsentLifecycleDeps;

/** How often the background re-check asks the bank about a pending consent. */
export const STATUS_CHECK_INTERVAL_MS = 30_000;
/** Pauses between the re-asks of a return (3 re-asks, 4.5 s in all: within 5 s). */
const REASK_PAUSES_MS = [1000, 1500, 2000];
/** First retry of a termination the bank did not take; doubled per attempt up to an hour. */
const TERMINATE_RETRY_MS = 60_000;
const TERMINATE_RETRY_MAX_MS = 3_600_000;
/** How long a claimed work item is held by one worker before it is due again. */
const WORK_LEASE_MS = 120_000;

export function consentEvent(type: string, c: Consent, time: number, sessionHandle: string | null, details: Record<string, unknown> = {}): TesseraEvent {
  return {
    type: `consent.${type}`,
    time,
    tenantId: c.tenantId,
    userId: c.userId,
    sessionHandle,
    details: { consentId: c.id, consentType: c.type, bankId: c.bankId, ...details },
  };
}

const work = (kind: BankWork['kind'], c: Consent): BankWork => ({ kind, tenantId: c.tenantId, userId: c.userId, consentId: c.id });

export async function scheduleStatusCheck(deps: Deps, c: Consent, now: number): Promise<void> {
  await deps.store.banks.scheduleWork(work('check', c), Math.min(now + STATUS_CHECK_INTERVAL_MS, c.expiresAt));
}

/** When an ended (or confirmed, past its validUntil) consent is purged. */
async function schedulePurge(deps: Deps, c: Consent): Promise<void> {
  const endedAt = c.status === 'confirmed' ? c.validUntil : c.endedAt;
  if (endedAt === null) return;
  await deps.store.banks.scheduleWork(work('purge', c), endedAt + deps.config.consentRetentionSeconds * 1000);
}

export interface AskContext {
  /** How many times to ask again while the status is not final (with pauses in between). */
  reasks: number;
  sessionHandle: string | null;
  operation: string;
}

export interface Asked {
  consent: Consent;
  superseded: Consent[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Asks the bank for a pending consent's status and settles the consent with it when it is final.
 * A bank that fails or is not final yet leaves the consent pending (the background re-check
 * goes on); never throws for the bank's sake.
 */
export async function askBankForStatus(deps: Deps, consent: Consent, ctx: AskContext, origin?: Origin): Promise<Asked> {
  const bank = await findBank(deps, consent.tenantId, consent.bankId);
  const bankConsentId = consent.bankConsentId;
  if (bank === null || bankConsentId === null) return { consent, superseded: [] };
  for (let i = 0; ; i++) {
    let verdict: BankVerdict;
    try {
      verdict = await atBank(
        deps,
        bank,
        { tenantId: consent.tenantId, userId: consent.userId, sessionHandle: ctx.sessionHandle, operation: `${consent.type}.status`, consentId: consent.id },
        (client) => (consent.type === 'ais' ? client.consentStatus(bankConsentId) : client.paymentStatus(bankConsentId)),
        origin,
      );
    } catch (err) {
      if (err instanceof BankUnavailable) return { consent, superseded: [] };
      throw err;
    }
    if (verdict !== 'pending') return applyVerdict(deps, consent, verdict, ctx, origin);
    if (i >= ctx.reasks) return { consent, superseded: [] };
    await sleep(REASK_PAUSES_MS[i] ?? 2000);
  }
}

async function applyVerdict(deps: Deps, consent: Consent, verdict: Exclude<BankVerdict, 'pending'>, ctx: AskContext, origin?: Origin): Promise<Asked> {
  const now = deps.clock.now();
  const settled = await deps.store.consents.settleConsent(consent.tenantId, consent.userId, consent.id, verdict, now);
  if (settled.outcome === 'missing') return { consent, superseded: [] };
  if (settled.outcome !== 'settled') return { consent: settled.consent, superseded: [] };
  const c = settled.consent;
  emit(deps, consentEvent(verdict, c, now, ctx.sessionHandle, { bankStatus: verdict, via: ctx.operation }), origin);
  await deps.store.banks.finishWork(work('check', c));
  await schedulePurge(deps, c);
  for (const old of settled.superseded) {
    emit(deps, consentEvent('superseded', old, now, ctx.sessionHandle, { supersededBy: c.id }), origin);
    await schedulePurge(deps, old);
    // One valid AIS consent per user and bank: the old one is terminated at the bank too.
    await terminateAtBank(deps, old, ctx.sessionHandle, origin);
  }
  return { consent: c, superseded: settled.superseded };
}

/**
 * DELETE at the bank (AIS consent) or a cancellation (payment). When the bank cannot be reached
 * the termination is queued and retried later.
 */
export async function terminateAtBank(deps: Deps, c: Consent, sessionHandle: string | null, origin?: Origin): Promise<'done' | 'refused' | 'deferred' | 'nothing'> {
  const bank = await findBank(deps, c.tenantId, c.bankId);
  const bankConsentId = c.bankConsentId;
  if (bank === null || bankConsentId === null) return 'nothing';
  try {
    const r = await atBank(
      deps,
      bank,
      { tenantId: c.tenantId, userId: c.userId, sessionHandle, operation: `${c.type}.terminate`, consentId: c.id },
      (client) => client.terminate(c.type, bankConsentId),
      origin,
    );
    emit(deps, consentEvent(r === 'done' ? 'terminated_at_bank' : 'termination_refused', c, deps.clock.now(), sessionHandle), origin);
    return r;
  } catch (err) {
    if (!(err instanceof BankUnavailable)) throw err;
    const now = deps.clock.now();
    await deps.store.banks.scheduleWork(work('terminate', c), now + TERMINATE_RETRY_MS);
    emit(deps, consentEvent('termination_deferred', c, now, sessionHandle), origin);
    return 'deferred';
  }
}

/** DELETE /api/v1/consents/{id}: the user withdraws one of its consents; the bank is told. */
export async function withdrawConsent(deps: Deps, tenantId: string, userId: string, id: string, sessionHandle: string, origin?: Origin): Promise<Consent> {
  const now = deps.clock.now();
  const ended = await deps.store.consents.endConsent(tenantId, userId, id, 'revoked', now);
  if (ended.outcome === 'missing') throw new NotFound('consent_not_found', 'No such consent.');
  if (ended.outcome === 'not_active') throw new Conflict('consent_ended', `The consent has already ended (${ended.consent.status}).`);
  const c = ended.consent;
  emit(deps, consentEvent('revoked', c, now, sessionHandle, { by: 'user' }), origin);
  await deps.store.banks.finishWork(work('check', c));
  await schedulePurge(deps, c);
  await terminateAtBank(deps, c, sessionHandle, origin);
  return c;
}

/** GET /api/v1/accounts?bankId=: the bank's accounts, read with the user's valid AIS consent. */
export async function readAccounts(
  deps: Deps,
  tenantId: string,
  userId: string,
  bankId: string,
  sessionHandle: string,
  origin?: Origin,
): Promise<{ consent: Consent; accounts: BankAccount[] }> {
  const bank = await requireBank(deps, tenantId, bankId);
  const consent = await deps.store.consents.validAisConsent(tenantId, userId, bankId);
  const noConsent = () => new Forbidden('consent_required', `No valid account-information consent for "${bankId}": start one with POST /api/v1/consents.`);
  if (consent === null || consent.bankConsentId === null || effectiveConsentStatus(consent, deps.clock.now()) !== 'confirmed') throw noConsent();
  const bankConsentId = consent.bankConsentId;
  try {
    const accounts = await atBank(
      deps,
      bank,
      { tenantId, userId, sessionHandle, operation: 'ais.accounts', consentId: consent.id },
      (client) => client.accounts(bankConsentId),
      origin,
    );
    return { consent, accounts };
  } catch (err) {
    if (!(err instanceof ConsentRefusedByBank)) throw err;
    // The bank no longer honours the consent: it has expired for Tessera too.
    const now = deps.clock.now();
    const ended = await deps.store.consents.endConsent(tenantId, userId, consent.id, 'expired', now);
    if (ended.outcome === 'ended') {
      emit(deps, consentEvent('expired', ended.consent, now, sessionHandle, { by: 'bank' }), origin);
      await schedulePurge(deps, ended.consent);
    }
    throw noConsent();
  }
}

/**
 * One round of the bank work queue: at most `max` due items. Returns how many were handled.
 * Every process runs it; a claimed item belongs to one worker until its lease ends.
 */
export async function runBankWork(deps: Deps, max = 50): Promise<number> {
  const now = deps.clock.now();
  const items = await deps.store.banks.claimWork(now, max, WORK_LEASE_MS);
  for (const item of items) await handleWork(deps, item);
  return items.length;
}

async function handleWork(deps: Deps, item: ClaimedWork): Promise<void> {
  const { tenantId, userId, consentId } = item;
  const c = await deps.store.consents.getConsent(tenantId, userId, consentId);
  const done = () => deps.store.banks.finishWork(item);
  if (item.kind === 'purge') {
    if (c !== null) {
      const status = effectiveConsentStatus(c, deps.clock.now());
      // Still running (a confirmed consent whose validUntil moved, say): not yet.
      if (status === 'pending' || status === 'confirmed') return void (await schedulePurge(deps, c));
      await deps.store.consents.deleteConsent(tenantId, userId, consentId);
      emit(deps, consentEvent('purged', c, deps.clock.now(), null));
    }
    return done();
  }
  if (c === null) return done();
  if (item.kind === 'terminate') {
    const r = await terminateAtBank(deps, c, null);
    if (r !== 'deferred') return done();
    const wait = Math.min(TERMINATE_RETRY_MS * 2 ** Math.min(item.attempts, 10), TERMINATE_RETRY_MAX_MS);
    return deps.store.banks.scheduleWork(item, deps.clock.now() + wait);
  }
  // check
  if (c.status !== 'pending') return done();
  const now = deps.clock.now();
  if (now >= c.expiresAt) {
    // Its redirect lapsed without a final answer: expired, and the bank is told to forget it.
    const settled = await deps.store.consents.settleConsent(tenantId, userId, consentId, 'expired', now);
    if (settled.outcome === 'settled') {
      emit(deps, consentEvent('expired', settled.consent, now, null, { by: 'redirect_lifetime' }));
      await schedulePurge(deps, settled.consent);
      if (c.type === 'ais') await terminateAtBank(deps, settled.consent, null);
    }
    return done();
  }
  const asked = await askBankForStatus(deps, c, { reasks: 0, sessionHandle: null, operation: 'background' });
  if (asked.consent.status === 'pending') await scheduleStatusCheck(deps, asked.consent, deps.clock.now());
}

export interface BankWorker {
  stop(): Promise<void>;
}

/** Runs `runBankWork` every `intervalMs` (one round at a time) until stopped. */
export function startBankWorker(deps: Deps, intervalMs: number, onError: (err: unknown) => void): BankWorker {
  let running: Promise<unknown> | null = null;
  let stopped = false;
  const timer = setInterval(() => {
    if (stopped || running) return;
    running = runBankWork(deps)
      .catch(onError)
      .finally(() => {
        running = null;
      });
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      if (running) await running;
    },
  };
}
