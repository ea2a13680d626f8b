// bearerToken (src/http/bearer.ts) accepts exactly what `^Bearer ([\x21-\x7e]{1,4096})$`
// (case-insensitive, after trimming) accepts.

import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { bearerToken } from '../../src/http/bearer.ts';

const reference = (h: string) => /^Bearer ([\x21-\x7e]{1,4096})$/i.exec(h.trim())?.[1] ?? null;
const req = (authorization: unknown) => ({ headers: { authorization } }) as unknown as FastifyRequest;

describe('bearerToken', () => {
  it('agrees with the reference pattern on edge cases and random headers', () => {
    const cases = [
      'Bearer abc',
      'bearer abc',
      'BEARER abc',
      'BeArEr a.b.c',
      '  Bearer abc  ',
      '\tBearer abc\n',
      'Bearer  abc',
      'Bearer',
      'Bearer ',
      'Bearerabc',
      'Basic abc',
      'Bearer a b',
      'Bearer ab\u00e9',
      'Bearer \u007f',
      'Bearer ~!',
      `Bearer ${'x'.repeat(4096)}`,
      `Bearer ${'x'.repeat(4097)}`,
      'Be\u0130rer abc',
      'Bearer\u00a0abc',
      '\u00a0Bearer abc\u00a0',
    ];
    const alphabet = ['B', 'b', 'e', 'E', 'a', 'r', 'R', ' ', '\t', 'x', '.', '~', '\u007f', '\u00e9', '-', '\u0000'];
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let i = 0; i < 3000; i++) {
      const prefix = rnd(3) === 0 ? '' : ['Bearer ', 'bearer ', ' Bearer ', 'BEARER  '][rnd(4)];
      cases.push(prefix + Array.from({ length: rnd(12) }, () => alphabet[rnd(alphabet.length)]).join(''));
    }
    for (const h of cases) expect([h, bearerToken(req(h))]).toEqual([h, reference(h)]);
    expect(bearerToken(req(undefined))).toBeNull();
    expect(bearerToken(req(['Bearer a', 'Bearer b']))).toBeNull();
  });
});
