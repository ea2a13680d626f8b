// The banks a consent redirect can go to: each tenant's registered banks (PUT
// /api/v1/admin/banks/{bankId}), reached with the Berlin Group NextGenPSD2 protocol. Every call
// to a bank goes through `atBank`, which turns a failure into the one problem a client sees
// (`bank_unavailable`, naming nothing low-level) and the audit event `bank.call_failed`.

import { emit, type Origin, type TesseraEvent } from '../events/bus.ts';
import { BankCallError, type OutboundPolicy } from '../banks/bank-http.ts';
import { bankOutboundPolicy } from '../banks/bank-outbound.ts';
import { BerlinGroupClient } from '../banks/berlin-group.ts';
import type { Bank } from '../domain/bank.ts';
import { BadRequest, TesseraError } from '../domain/errors.ts';
import type { Clock } from '../domain/clock.ts';
import type { EventBus } from '../events/bus.ts';
import type { OutboundPolicy as UrlPolicy } from '../net/outbound-policy.ts';
import type { Store } from '../store/port.ts';
import type { DerivedKeys } from '../tokens/derived-keys.ts';
import { unseal } from '../tokens/sealing.ts';

/** What calls to banks use, declared here (src/runtime.ts's `Deps` has all of it). */
export interface BankDeps {
  store: Pick<Store, 'banks'>;
  /** The outbound URL rules, which a bank connection narrows (banks/bank-outbound.ts). */
  outbound: UrlPolicy;
  keys: Pick<DerivedKeys, 'bankKeys'>;
  bus: EventBus;
  clock: Clock;
}

/** 502 (the bank failed or answered nonsense) or 504 (it did not answer in time). */
export class BankUnavailable extends TesseraError {
  constructor(timeout: boolean) {
    super(timeout ? 504 : 502, 'bank_unavailable', timeout ? 'The bank did not answer in time; try again later.' : 'The bank could not be used just now; try again later.');
  }
}

export async function findBank(deps: Pick<BankDeps, 'store'>, tenantId: string, bankId: string): Promise<Bank | null> {
  return deps.store.banks.getBank(tenantId, bankId);
}

/** The tenant's bank, or 400 `unknown_bank` (another tenant's bank is unknown here too). */
export async function requireBank(deps: Pick<BankDeps, 'store'>, tenantId: string, bankId: string): Promise<Bank> {
  const bank = await findBank(deps, tenantId, bankId);
  if (bank === null) throw new BadRequest('unknown_bank', `No bank "${bankId}" is registered for this tenant.`, { field: 'bankId' });
  return bank;
}

/**
 * A bank's base URL as an administrator registers it: the shared outbound rules (scheme, and the
 * addresses its host resolves to now) and no query or fragment. The bank itself is not called.
 */
export async function checkBankUrl(deps: Pick<BankDeps, 'outbound'>, value: string, field: string): Promise<URL> {
  const url = await deps.outbound.check(value, field);
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new BadRequest('insecure_url', `${field} must not carry a query, fragment or credentials.`, { field });
  }
  return url;
}

export function bankClient(deps: Pick<BankDeps, 'outbound' | 'keys'>, bank: Bank, policy: OutboundPolicy = bankOutboundPolicy(deps.outbound)): BerlinGroupClient {
  const tls = bank.tls;
  return new BerlinGroupClient(
    {
      baseUrl: bank.baseUrl,
      timeoutMs: bank.timeoutMs,
      tls:
        tls === null
          ? null
          : {
              ...(tls.clientCertificate !== null ? { cert: tls.clientCertificate } : {}),
              ...(tls.sealedClientKey !== null ? { key: unseal(deps.keys.bankKeys, tls.sealedClientKey) } : {}),
              ...(tls.caCertificate !== null ? { ca: tls.caCertificate } : {}),
            },
    },
    policy,
  );
}

export interface BankCallContext {
  tenantId: string;
  userId: string | null;
  sessionHandle: string | null;
  /** What was being done: `consent.start`, `payment.start`, `consent.status`, ... */
  operation: string;
  consentId?: string;
}

/** The audit event of a failed bank call: the bank, the operation and a short code, nothing low-level. */
export function bankCallFailed(bank: Bank, ctx: BankCallContext, failure: string, now: number): TesseraEvent {
  return {
    type: 'bank.call_failed',
    time: now,
    tenantId: ctx.tenantId,
    userId: ctx.userId,
    sessionHandle: ctx.sessionHandle,
    details: { bankId: bank.bankId, operation: ctx.operation, code: failure, ...(ctx.consentId ? { consentId: ctx.consentId } : {}) },
  };
}

/**
 * Runs one bank call. A BankCallError becomes `bank.call_failed` (audited, logged with its
 * low-level message) and a BankUnavailable for the client; other errors pass through.
 */
export async function atBank<T>(deps: BankDeps, bank: Bank, ctx: BankCallContext, call: (client: BerlinGroupClient) => Promise<T>, origin?: Origin): Promise<T> {
  try {
    return await call(bankClient(deps, bank));
  } catch (err) {
    if (!(err instanceof BankCallError)) throw err;
    emit(deps, bankCallFailed(bank, ctx, err.failure === 'bad_status' ? `http_${err.status ?? 0}` : err.failure, deps.clock.now()), origin);
    throw new BankUnavailable(err.failure === 'timeout');
  }
}
