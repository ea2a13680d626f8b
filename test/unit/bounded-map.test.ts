// makeRoom: the bound of the per-process caches (verified tokens, token owners, Redis routes,
// XSRF tokens) — never more than the bound, the oldest insertions go first, the newest stay.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { makeRoom } from '../../src/domain/bounded-map.ts';

describe('makeRoom', () => {
  it('leaves a map below its bound alone', () => {
    const m = new Map([['a', 1], ['b', 2]]);
    makeRoom(m, 3);
    expect([...m.keys()]).toEqual(['a', 'b']);
  });

  it('drops the oldest sixteenth of the bound (at least one) when the map is full', () => {
    const full = new Map(Array.from({ length: 32 }, (_, i) => [i, i] as const));
    makeRoom(full, 32);
    expect([...full.keys()]).toEqual(Array.from({ length: 30 }, (_, i) => i + 2));
    const small = new Map([['a', 1], ['b', 2], ['c', 3]]);
    makeRoom(small, 3);
    expect([...small.keys()]).toEqual(['b', 'c']);
    // A map already over its bound (a bound lowered) comes back under it.
    const over = new Map(Array.from({ length: 40 }, (_, i) => [i, i] as const));
    makeRoom(over, 32);
    expect(over.size).toBe(30);
    expect(over.has(39)).toBe(true);
  });

  it('keeps any sequence of insertions within the bound, newest kept, in insertion order', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 2000 }), (max, keys) => {
        const m = new Map<number, number>();
        const order: number[] = []; // a model: insertion order of the keys present
        for (const k of keys) {
          if (!m.has(k)) makeRoom(m, max);
          m.set(k, k);
          expect(m.size).toBeLessThanOrEqual(max);
          if (!order.includes(k)) order.push(k);
          // What the map holds is always the newest insertions, oldest first.
          const kept = [...m.keys()];
          expect(kept).toEqual(order.slice(order.length - kept.length));
          order.splice(0, order.length - kept.length);
        }
        if (keys.length > 0) expect(m.get(keys[keys.length - 1]!)).toBe(keys[keys.length - 1]);
      }),
      { numRuns: 300 },
    );
  });

  it('holds at least 15/16 of the bound once filled', () => {
    const m = new Map<number, number>();
    for (let i = 0; i < 10_000; i++) {
      makeRoom(m, 1000);
      m.set(i, i);
      if (i >= 1000) expect(m.size).toBeGreaterThanOrEqual(1000 - 1000 / 16);
    }
    expect(m.has(9999)).toBe(true);
    expect(m.has(8999 - 1000)).toBe(false);
  });
});
