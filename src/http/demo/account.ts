// Demo mode (TESSERA_DEMO=1, docs/api.md §Configuration and operation): a ready-made tenant, user
// and bank (the bank simulator at TESSERA_DEMO_BANK_URL, `npx tessera bank-simulator`) so that a
// person can try the consent flow in a browser right after start. Nothing here runs unless demo
// mode is on (src/http/app.ts registers ./routes.ts only then); never turn it on in production.

import { randomUUID } from 'node:crypto';
import { hashPassword } from '../../auth/password.ts';
import { DEFAULT_BANK_TIMEOUT_MS } from '../../domain/bank.ts';
import { TesseraError } from '../../domain/errors.ts';
import { buildTenant } from '../../domain/tenant.ts';
import type { Deps } from '../deps.ts';

export const DEMO_TENANT = 'demo';
export const DEMO_EMAIL = 'demo@example.com';
export const DEMO_PASSWORD = 'demo-password';
/** The demo tenant's bank: the simulator. */
export const DEMO_BANK_ID = 'demo-bank';
/** Short, so that a person sees the session lapse while at the bank and the return renew it. */
export const DEMO_APP_IDLE_SECONDS = 60;

/**
 * Creates the demo tenant (integration profile, 60 s app idle lifetime) and the demo user when
 * they do not exist yet (an existing tenant or user is left as it is), and registers the bank
 * simulator at TESSERA_DEMO_BANK_URL as the demo tenant's bank `demo-bank`.
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
  const previous = await deps.store.banks.getBank(DEMO_TENANT, DEMO_BANK_ID);
  await deps.store.banks.putBank({
    tenantId: DEMO_TENANT,
    bankId: DEMO_BANK_ID,
    name: 'Demo Bank (simulator)',
    protocol: 'berlin-group',
    baseUrl: new URL('/', deps.config.demoBankUrl).toString(),
    timeoutMs: DEFAULT_BANK_TIMEOUT_MS,
    tls: null,
    createdAt: previous?.createdAt ?? now,
    updatedAt: now,
  });
}
