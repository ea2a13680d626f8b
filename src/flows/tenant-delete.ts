// Deleting a tenant and everything of it (DELETE /api/v1/admin/tenants/{id}): its sessions are
// ended through the session manager (announced, dropped from every process's cache), then its
// users with their consents, its queued bank work (status checks, terminations, purges of those
// consents), its identity links, organizations, applications and banks go; the caller removes
// the tenant record last (`store.deleteTenant`), once the deletion is audited. Audit records stay
// (the chain of a deleted tenant still verifies).
//
// Each step is idempotent: a delete that fails half-way (store unavailable) is finished by
// calling it again — the tenant record, gone last, keeps the tenant findable until then.

import type { Origin } from '../events/bus.ts';
import { endTenantSessions, type SessionDeps } from '../sessions/app-sessions.ts';

export interface TenantRemoval {
  revoked: number;
  usersDeleted: number;
  consentsDeleted: number;
  organizationsDeleted: number;
  appsDeleted: number;
  banksDeleted: number;
  identitiesDeleted: number;
  /** Queued bank work items of the tenant that were dropped. */
  bankWorkDropped: number;
}

const PAGE = 200;

/** What removing a tenant uses, declared here (src/runtime.ts's `Deps` has all of it): the session manager's. */
type Deps = SessionDeps;

/** Everything of the tenant but its record (see the top). */
export async function removeTenant(deps: Deps, tenantId: string, now: number, origin?: Origin): Promise<TenantRemoval> {
  const store = deps.store;
  const ended = await endTenantSessions(deps, tenantId, 'tenant_deleted', now, origin);
  const out: TenantRemoval = {
    revoked: ended.length,
    usersDeleted: 0,
    consentsDeleted: 0,
    organizationsDeleted: 0,
    appsDeleted: 0,
    banksDeleted: 0,
    identitiesDeleted: 0,
    bankWorkDropped: 0,
  };
  // Always the first page: what was deleted is no longer in it.
  for (;;) {
    const page = await store.listUsers({ tenantId, limit: PAGE });
    let removed = 0;
    for (const u of page.items) {
      for (;;) {
        const consents = await store.consents.listConsents({ tenantId, userId: u.id, limit: PAGE });
        for (const c of consents.items) {
          if (await store.consents.deleteConsent(tenantId, u.id, c.id)) out.consentsDeleted += 1;
        }
        if (consents.nextCursor === null) break;
      }
      if (await store.deleteUser(tenantId, u.id)) removed += 1;
    }
    out.usersDeleted += removed;
    if (page.nextCursor === null || removed === 0) break;
  }
  // After the consents: nothing is left for the work to act on, and no bank of the tenant to ask.
  // (An item a worker holds at this moment and puts back finds no consent and ends when due.)
  out.bankWorkDropped = await store.banks.dropTenantWork(tenantId);
  out.identitiesDeleted = await store.federation.deleteIdentities(tenantId);
  for (const org of await store.federation.listOrganizations(tenantId)) {
    if (await store.federation.deleteOrganization(org.slug, tenantId)) out.organizationsDeleted += 1;
  }
  for (const app of await store.oidc.listApps(tenantId)) {
    if (await store.oidc.deleteApp(app.clientId, tenantId)) out.appsDeleted += 1;
  }
  for (const bank of await store.banks.listBanks(tenantId)) {
    if (await store.banks.deleteBank(tenantId, bank.bankId)) out.banksDeleted += 1;
  }
  return out;
}
