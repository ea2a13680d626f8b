import { describe, expect, it } from 'vitest';
import { RespWriter } from '../../src/store/redis/resp.ts';
import { rng } from '../support/rng.ts';

// src/store/redis/resp.ts RespWriter: every argument a bulk string of its UTF-8 bytes, the byte
// count written in front of the text after the text was written (one encoder call per string).

/** The RESP array of `args` as RESP defines it, built the plain way. */
function reference(args: ReadonlyArray<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const bytes = typeof a === 'string' ? Buffer.from(a, 'utf8') : a;
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

describe('RespWriter', () => {
  it('writes each text as its UTF-8 bytes behind their count, whether or not the count has more digits than the text has characters', () => {
    const texts = [
      '',
      'x',
      'FCALL',
      'x'.repeat(9),
      'x'.repeat(10),
      'x'.repeat(99),
      'x'.repeat(100),
      'x'.repeat(1000),
      'x'.repeat(12_345),
      'é', // 1 unit, 2 bytes
      'é'.repeat(5), // 5 units, 10 bytes: one digit more
      'é'.repeat(50), // 50 units, 100 bytes: one digit more
      '€'.repeat(4), // 4 units, 12 bytes
      '€'.repeat(34), // 34 units, 102 bytes
      '😀'.repeat(3), // 6 units (surrogate pairs), 12 bytes
      '\ud800x', // a lone surrogate: 3 bytes (U+FFFD) and 1
      'ü'.repeat(3333), // 3,333 units, 6,666 bytes
      'ü'.repeat(5000), // 5,000 units, 10,000 bytes: one digit more past the fast paths
      `tessera:{${'a'.repeat(12)}}:s`,
    ];
    const buffers = [Buffer.alloc(0), Buffer.from([0, 13, 10, 255]), Buffer.alloc(32, 7)];
    const w = new RespWriter();
    const commands: Array<Array<string | Buffer>> = [
      ...texts.map((t) => ['SET', t, buffers[1] as Buffer]),
      [...texts, ...buffers],
      // Mixed in one command, the multi-byte texts next to ASCII ones and Buffers.
      ['FCALL', 'é'.repeat(5), buffers[2] as Buffer, 'x'.repeat(9), '€'.repeat(34), '', buffers[0] as Buffer],
    ];
    for (const c of commands) w.encode(c);
    expect(w.take().equals(Buffer.concat(commands.map(reference)))).toBe(true);
    expect(w.empty).toBe(true);
  });

  it('starts a new slab when a command does not fit, keeping what was not taken', () => {
    const w = new RespWriter();
    const commands = Array.from({ length: 40 }, (_, i) => ['SET', `k${i}`, 'é'.repeat(1000 + i), 'v'.repeat(2000)]);
    for (const c of commands) w.encode(c);
    expect(w.take().equals(Buffer.concat(commands.map(reference)))).toBe(true);
  });

  it('writes what a plain encoder writes for 3,000 seeded random commands, taken at random points', () => {
    const rand = rng(20261207);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
    // Pieces of one unit to four bytes, lone surrogates among them; lengths at the digit boundaries.
    const pieces = ['a', 'Z', '0', '\r', '\n', '\0', 'é', 'ü', '€', '😀', '\ud800', '\udc00', '\udbff', 'Ł'];
    const lengths = [0, 1, 8, 9, 10, 11, 33, 49, 50, 98, 99, 100, 101, 333, 499, 500, 998, 999, 1000, 1001, 3333, 4999, 5000, 9999, 10_000, 10_001];
    const text = (): string => {
      const n = pick(lengths);
      const ascii = rand() < 0.5;
      let t = '';
      while (t.length < n) t += ascii ? pick(['a', 'Z', '0', '\r']) : pick(pieces);
      return t.slice(0, n + (rand() < 0.3 ? 1 : 0)); // at times a surrogate pair cut in two
    };
    const buffer = (): Buffer => {
      const b = Buffer.alloc(pick(lengths));
      for (let i = 0; i < b.length; i++) b[i] = Math.floor(rand() * 256);
      return b;
    };
    const w = new RespWriter();
    const taken: Buffer[] = [];
    const expected: Buffer[] = [];
    for (let c = 0; c < 3000; c++) {
      const args = Array.from({ length: 1 + Math.floor(rand() * 6) }, () => (rand() < 0.25 ? buffer() : text()));
      w.encode(args);
      expected.push(reference(args));
      // Taken now and then: the slab fills to its end and goes on in a new one, keeping the rest.
      if (rand() < 0.1) taken.push(Buffer.from(w.take()));
      if (rand() < 0.01) {
        w.reset();
        expected.length = 0;
        taken.length = 0;
      }
    }
    taken.push(w.take());
    expect(Buffer.concat(taken).equals(Buffer.concat(expected))).toBe(true);
  });
});
