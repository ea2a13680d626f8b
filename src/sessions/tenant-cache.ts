// Tenants change rarely; each process keeps the ones it reads for a few seconds, so the session
// check, refresh-token rotation and the SSO token exchange need no store read for them. An update or deletion through
// this process forgets the entry at once (the admin routes call forgetTenant); another process's
// change is seen within TENANT_CACHE_MS. Requests that need a tenant while it is being read share
// that one read.

import type { Tenant } from '../domain/tenant.ts';

export const TENANT_CACHE_MS = 5000;

interface TenantReader {
  store: { getTenant(id: string): Promise<Tenant | null> };
}

/** Per runtime (its Deps object), so that servers in one process (tests) keep their own. */
const caches = new WeakMap<object, Map<string, { tenant: Tenant; until: number }>>();

/** The tenant when this process read it within the last few seconds, else undefined (no store read). */
export function cachedTenant(deps: object, id: string, now: number): Tenant | undefined {
  const hit = caches.get(deps)?.get(id);
  return hit !== undefined && hit.until > now ? hit.tenant : undefined;
}

/**
 * The store reads under way, per runtime and tenant. When the entry runs out, every request in
 * flight at that moment needs the tenant: they share one read instead of sending one each (50
 * connections made 50 reads of one row every TENANT_CACHE_MS on Redis and PostgreSQL).
 */
const reads = new WeakMap<object, Map<string, Promise<Tenant | null>>>();

export function loadTenant(deps: TenantReader, id: string, now: number): Promise<Tenant | null> {
  const cached = cachedTenant(deps, id, now);
  if (cached !== undefined) return Promise.resolve(cached);
  let underWay = reads.get(deps);
  if (underWay === undefined) reads.set(deps, (underWay = new Map<string, Promise<Tenant | null>>()));
  const joined = underWay.get(id);
  if (joined !== undefined) return joined;
  const own = underWay;
  let read: Promise<Tenant | null> | undefined = undefined;
  read = (async () => {
    const t = await deps.store.getTenant(id);
    // Cached only while this read is still the current one: a forgetTenant meanwhile (an update
    // or deletion through this process) leaves the entry to the next read.
    if (own.get(id) === read) {
      let m = caches.get(deps);
      if (!m) caches.set(deps, (m = new Map<string, { tenant: Tenant; until: number }>()));
      if (t) m.set(id, { tenant: t, until: now + TENANT_CACHE_MS });
      else m.delete(id);
    }
    return t;
  })();
  own.set(id, read);
  const done = () => {
    if (own.get(id) === read) own.delete(id);
  };
  read.then(done, done);
  return read;
}

/** The tenant as this process last read it, however long ago (the degradation policy only). */
export function lastKnownTenant(deps: object, id: string): Tenant | null {
  return caches.get(deps)?.get(id)?.tenant ?? null;
}

export function forgetTenant(deps: object, id: string): void {
  caches.get(deps)?.delete(id);
  reads.get(deps)?.delete(id);
}
