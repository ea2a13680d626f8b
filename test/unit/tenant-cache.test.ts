// The per-process tenant cache (src/sessions/tenant-cache.ts): the requests that need a tenant
// while it is being read share one store read; an update through this process (forgetTenant)
// during a read is not undone by that read's answer.

import { describe, expect, it } from 'vitest';
import { buildTenant, type Tenant } from '../../src/domain/tenant.ts';
import { cachedTenant, forgetTenant, loadTenant, TENANT_CACHE_MS } from '../../src/sessions/tenant-cache.ts';

/** A store whose getTenant answers only when told to, counting the reads. */
function heldStore(tenant: Tenant | null) {
  const pending: (() => void)[] = [];
  let current = tenant;
  const deps = {
    reads: 0,
    store: {
      getTenant: (_id: string) => {
        deps.reads += 1;
        const answer = current;
        return new Promise<Tenant | null>((resolve) => pending.push(() => resolve(answer)));
      },
    },
  };
  return {
    deps,
    set: (t: Tenant | null) => (current = t),
    /** Answers the reads under way, the newest first when `newestFirst`. */
    release: (newestFirst = false) => {
      const all = pending.splice(0);
      for (const p of newestFirst ? all.reverse() : all) p();
    },
  };
}

describe('tenant cache', () => {
  const now = 1_000_000;
  const t1 = buildTenant('t1', { profile: 'integration' }, now);

  it('shares one store read between the requests that need the tenant while it is read', async () => {
    const h = heldStore(t1);
    const answers = Array.from({ length: 50 }, () => loadTenant(h.deps, 't1', now));
    expect(h.deps.reads).toBe(1);
    h.release();
    expect(await Promise.all(answers)).toEqual(Array(50).fill(t1));
    // Cached from then on; read again once the entry has run out, once for all again.
    expect(cachedTenant(h.deps, 't1', now + TENANT_CACHE_MS - 1)).toBe(t1);
    const later = [loadTenant(h.deps, 't1', now + TENANT_CACHE_MS), loadTenant(h.deps, 't1', now + TENANT_CACHE_MS)];
    expect(h.deps.reads).toBe(2);
    h.release();
    expect(await Promise.all(later)).toEqual([t1, t1]);
  });

  it('shares a failed read too, and reads again after it', async () => {
    let reads = 0;
    const deps = {
      store: {
        getTenant: () => {
          reads += 1;
          return reads === 1 ? Promise.reject(new Error('store down')) : Promise.resolve(t1);
        },
      },
    };
    const both = await Promise.allSettled([loadTenant(deps, 't1', now), loadTenant(deps, 't1', now)]);
    expect(both.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(await loadTenant(deps, 't1', now)).toBe(t1);
    expect(reads).toBe(2);
  });

  it('does not cache the answer of a read that an update through this process overtook', async () => {
    const h = heldStore(t1);
    const before = loadTenant(h.deps, 't1', now);
    const t2 = buildTenant('t1', { profile: 'production' }, now, t1);
    h.set(t2);
    forgetTenant(h.deps, 't1');
    // A request after the update reads the store again rather than joining the older read.
    const after = loadTenant(h.deps, 't1', now);
    expect(h.deps.reads).toBe(2);
    // The older read's answer comes back last.
    h.release(true);
    expect(await before).toBe(t1);
    expect(await after).toBe(t2);
    expect(cachedTenant(h.deps, 't1', now)).toBe(t2);
  });
});
