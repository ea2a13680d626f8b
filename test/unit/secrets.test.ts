import { describe, expect, it } from 'vitest';
import { isHandle, newHandle, newSecret, tagOfHandle, userTag } from '../../src/domain/secrets.ts';

// newSecret and newHandle draw their bytes from a pool refilled from the CSPRNG (secrets.ts).
describe('secrets from the pooled CSPRNG', () => {
  it('gives 43-character base64url secrets, every one different, across many refills of the pool', () => {
    // 4 KB hold 128 secrets: 5,000 cross the refill about 39 times, at every offset.
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const s = newSecret();
      expect(s).toMatch(/^[A-Za-z0-9_-]{43}$/);
      seen.add(s);
    }
    expect(seen.size).toBe(5000);
  });

  it('never hands out the zeroed bytes of a slice already given (no secret of all-zero bytes, no run of them)', () => {
    // 32 zero bytes are "AAAA…A" in base64url; a reused, zeroed slice would show as a long run of A.
    for (let i = 0; i < 2000; i++) expect(newSecret()).not.toMatch(/A{16}/);
    for (let i = 0; i < 2000; i++) expect(newHandle('t', null)).not.toMatch(/A{12}/);
  });

  it('mixes handle and secret draws without overlap: handles keep their shape, flow tags are random', () => {
    const tags = new Set<string>();
    const all = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const h = newHandle('t', i % 2 === 0 ? null : 'u');
      expect(isHandle(h)).toBe(true);
      if (i % 2 === 0) tags.add(tagOfHandle(h) as string);
      else expect(tagOfHandle(h)).toBe(userTag('t', 'u'));
      all.add(h.slice(13));
      all.add(newSecret());
    }
    expect(tags.size).toBe(1500);
    expect(all.size).toBe(6000);
  });
});
