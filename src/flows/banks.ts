// The banks Tessera can send a consent redirect to, and how each one's consent UI is addressed.
// Only the demo's stub bank exists so far (SPEC 7.3: id `stub-bank`), and only in demo mode
// (TESSERA_DEMO=1): its "consent UI" is a page Tessera serves itself (web/demo/bank.html), and
// confirming there confirms nothing at a real bank. Real bank connectors would add entries here.

import type { Config } from '../config/config.ts';
import type { ConsentType, Payment } from '../domain/consent.ts';

export interface ConsentUiRequest {
  consentId: string;
  type: ConsentType;
  payment: Payment | null;
  /** Absolute URL of the return endpoint; the bank appends `?result=ok|nok`. */
  returnUrl: string;
}

export interface Bank {
  id: string;
  name: string;
  /** Where the browser goes for the user's approval (the `location` of a started redirect). */
  consentUiUrl(request: ConsentUiRequest): string;
}

export const STUB_BANK_ID = 'stub-bank';

export function stubBank(config: Pick<Config, 'demoBankUrl'>): Bank {
  return {
    id: STUB_BANK_ID,
    name: 'Stub Bank',
    consentUiUrl(r) {
      const url = new URL('/demo/bank/', config.demoBankUrl);
      url.searchParams.set('consentId', r.consentId);
      url.searchParams.set('type', r.type);
      if (r.payment) {
        url.searchParams.set('amount', r.payment.amount);
        url.searchParams.set('currency', r.payment.currency);
        url.searchParams.set('creditorName', r.payment.creditorName);
        url.searchParams.set('creditorIban', r.payment.creditorIban);
      }
      url.searchParams.set('return', r.returnUrl);
      return url.toString();
    },
  };
}

/** The banks available under this configuration. */
export function availableBanks(config: Pick<Config, 'demo' | 'demoBankUrl'>): Bank[] {
  return config.demo ? [stubBank(config)] : [];
}

export function findBank(config: Pick<Config, 'demo' | 'demoBankUrl'>, bankId: string): Bank | null {
  return availableBanks(config).find((b) => b.id === bankId) ?? null;
}
