// Monitoring's two bounded collections (src/sessions/monitoring-caches.ts): the request counter of
// the request_rate rule and the tenants remembered for the audit pipeline stay within their bounds,
// forget the oldest first, and what they answer stays right: a count is never more than the
// session's requests in its window, and exact while the sessions counted fit the bound.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RequestCounts, TenantPresence } from '../../src/sessions/monitoring-caches.ts';

describe('RequestCounts', () => {
  it('counts a session’s requests per window, again from 1 in the next window', () => {
    const c = new RequestCounts(10);
    expect([c.add('a', 1), c.add('a', 1), c.add('b', 1), c.add('a', 1)]).toEqual([1, 2, 1, 3]);
    expect([c.add('a', 2), c.add('a', 2), c.add('b', 2)]).toEqual([1, 2, 1]);
    expect(c.size).toBe(2);
  });

  it('stays within its bound, holding at least 15/16 of it once full', () => {
    const c = new RequestCounts(1000);
    for (let i = 0; i < 10_000; i++) {
      c.add(`s${i}`, 7);
      expect(c.size).toBeLessThanOrEqual(1000);
      if (i >= 1000) expect(c.size).toBeGreaterThanOrEqual(1000 - 1000 / 16);
    }
  });

  it('forgets first the sessions whose window began longest ago; a forgotten one counts again from 1', () => {
    const c = new RequestCounts(32);
    for (let i = 0; i < 32; i++) c.add(`s${i}`, 1);
    c.add('s0', 1); // same window: its place is unchanged, s0 is still the oldest
    c.add('s1', 2); // a new window: s1 is now the newest
    c.add('new', 2); // full: the two oldest go (32 / 16)
    expect(c.size).toBe(31);
    expect(c.add('s2', 2)).toBe(1); // s2 was forgotten (and counts again from 1)…
    expect(c.add('s1', 2)).toBe(2); // …s1, moved to the end by its new window, was not
    expect(c.add('s3', 1)).toBe(2); // s3 is kept: its count goes on
  });

  it('never counts more than the requests made in the window, and exactly while the sessions fit', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 3 })), { maxLength: 1500 }), (max, reqs) => {
        const c = new RequestCounts(max);
        const truth = new Map<number, { window: number; count: number }>();
        let window = 0;
        for (const [s, step] of reqs) {
          if (step === 0) window += 1; // the clock moves on now and then
          const t = truth.get(s);
          const n = t !== undefined && t.window === window ? t.count + 1 : 1;
          truth.set(s, { window, count: n });
          const counted = c.add(`s${s}`, window);
          expect(counted).toBeGreaterThanOrEqual(1);
          expect(counted).toBeLessThanOrEqual(n);
          if (truth.size <= max) expect(counted).toBe(n);
          expect(c.size).toBeLessThanOrEqual(max);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('TenantPresence', () => {
  function presence(max: number) {
    let now = 1_000;
    const asked: string[] = [];
    const p = new TenantPresence(max, 5_000, () => now, (id) => {
      asked.push(id);
      return Promise.resolve(!id.startsWith('gone'));
    });
    return { p, asked, advance: (ms: number) => (now += ms) };
  }

  it('asks the store once for a tenant found, again for one not found after the negative time', async () => {
    const { p, asked, advance } = presence(10);
    expect(p.knownNow('t1')).toBeUndefined();
    expect(await p.exists('t1')).toBe(true);
    expect(await p.exists('gone1')).toBe(false);
    advance(4_999);
    expect([await p.exists('t1'), await p.exists('gone1'), p.knownNow('gone1')]).toEqual([true, false, false]);
    advance(1);
    expect(p.knownNow('gone1')).toBeUndefined();
    expect(await p.exists('gone1')).toBe(false);
    advance(60_000);
    expect(p.knownNow('t1')).toBe(true);
    expect(asked).toEqual(['t1', 'gone1', 'gone1']);
    expect(p.size).toBe(2);
  });

  it('stays within its bound, the oldest remembered going first (a sixteenth at once)', async () => {
    const { p, asked } = presence(32);
    for (let i = 0; i < 32; i++) await p.exists(`t${i}`);
    expect(p.size).toBe(32);
    await p.exists('t-new');
    expect(p.size).toBe(31);
    expect([p.knownNow('t0'), p.knownNow('t1'), p.knownNow('t2'), p.knownNow('t-new')]).toEqual([undefined, undefined, true, true]);
    for (let i = 0; i < 1000; i++) {
      await p.exists(`u${i}`);
      expect(p.size).toBeLessThanOrEqual(32);
    }
    expect(asked.length).toBe(33 + 1000);
  });
});
