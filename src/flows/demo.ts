// Demo mode (TESSERA_DEMO=1): the account data the demo AIS resource shows, and a ready-made
// tenant and user so that a person can try the consent flow in a browser right after start.
// Nothing here runs unless demo mode is on; never turn it on in production.

import { createHash, randomUUID } from 'node:crypto';
import { hashPassword } from '../auth/password.ts';
import { TesseraError } from '../domain/errors.ts';
import { buildTenant } from '../domain/tenant.ts';
import type { Deps } from '../runtime.ts';

export interface DemoAccount {
  iban: string;
  name: string;
  currency: string;
  /** Decimal string. */
  balance: string;
}

/** Two accounts per user and bank, always the same for the same pair (derived, not stored). */
export function demoAccounts(userId: string, bankId: string): DemoAccount[] {
  const h = createHash('sha256').update(`${bankId}\u0000${userId}`).digest();
  const accountNumber = (i: number) => String(h.readUInt32BE(i * 4)).padStart(10, '0');
  const cents = (i: number) => h.readUInt32BE(8 + i * 4) % 500_000;
  return [
    { iban: germanIban('37040044', accountNumber(0)), name: 'Everyday account', currency: 'EUR', balance: (cents(0) / 100).toFixed(2) },
    { iban: germanIban('37040044', accountNumber(1)), name: 'Savings', currency: 'EUR', balance: ((cents(1) * 7) / 100).toFixed(2) },
  ];
}

/** A German IBAN with correct check digits (ISO 13616 mod 97). */
function germanIban(bankCode: string, account: string): string {
  const bban = bankCode + account;
  const numeric = `${bban}131400`; // DE = 13 14, check digits 00
  let r = 0;
  for (const d of numeric) r = (r * 10 + Number(d)) % 97;
  return `DE${String(98 - r).padStart(2, '0')}${bban}`;
}

export const DEMO_TENANT = 'demo';
export const DEMO_EMAIL = 'demo@example.com';
export const DEMO_PASSWORD = 'demo-password';
/** Short, so that a person sees the session lapse while at the bank and the return renew it. */
export const DEMO_APP_IDLE_SECONDS = 60;

/**
 * Creates the demo tenant (integration profile, 60 s app idle lifetime) and the demo user when
 * they do not exist yet; an existing tenant or user is left as it is.
 */
export async function ensureDemoAccount(deps: Deps, now: number): Promise<void> {
  if ((await deps.store.getTenant(DEMO_TENANT)) === null) {
    await deps.store.putTenant(buildTenant(DEMO_TENANT, { profile: 'integration', lifetimes: { appIdle: DEMO_APP_IDLE_SECONDS } }, now));
  }
  if ((await deps.store.findUserByEmail(DEMO_TENANT, DEMO_EMAIL)) === null) {
    try {
      await deps.store.createUser({
        id: randomUUID(),
        tenantId: DEMO_TENANT,
        email: DEMO_EMAIL,
        passwordHash: await hashPassword(DEMO_PASSWORD),
        roles: [],
        createdAt: now,
        updatedAt: now,
      });
    } catch (err) {
      // Another server created it at the same moment.
      if (!(err instanceof TesseraError && err.code === 'user_exists')) throw err;
    }
  }
}
