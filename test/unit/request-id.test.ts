import { describe, expect, it } from 'vitest';
import { randomRequestId } from '../../src/http/request-id.ts';

// The ids a request is given when it sends none (src/http/request-id.ts): random version-4 UUIDs,
// as node:crypto's randomUUID makes them, written without its twenty intermediate strings.
const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('request ids', () => {
  it('are lower-case version-4 UUIDs (RFC 9562: version 4, variant 10xx)', () => {
    for (let i = 0; i < 2000; i++) expect(randomRequestId()).toMatch(V4);
  });

  it('are all different, across many refills of the random batch', () => {
    const n = 20_000; // 78 batches of 256
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) seen.add(randomRequestId());
    expect(seen.size).toBe(n);
  });

  it('are strings of their own: an id does not change when the next one is made', () => {
    const a = randomRequestId();
    const copy = `${a}`;
    const b = randomRequestId();
    expect(a).toBe(copy);
    expect(b).not.toBe(a);
  });

  it('use every hex digit in each random position (the bytes are random, not a counter or a constant)', () => {
    const ids = Array.from({ length: 4000 }, () => randomRequestId().replaceAll('-', ''));
    for (let pos = 0; pos < 32; pos++) {
      const digits = new Set(ids.map((id) => id[pos]));
      // The version digit is always 4; the variant digit is one of 8, 9, a, b.
      if (pos === 12) expect([...digits]).toEqual(['4']);
      else if (pos === 16) expect([...digits].sort()).toEqual(['8', '9', 'a', 'b']);
      else expect(digits.size).toBe(16);
    }
  });
});
