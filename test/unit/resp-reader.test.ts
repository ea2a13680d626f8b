// RespReader (src/store/redis/resp.ts): replies cut by the end of a read anywhere, and the parse
// work a large reply costs when it arrives in many reads — each element parsed about once, not
// the whole reply again on each read (the reader resumes a cut reply where it was cut).

import { SimpleError } from 'redis';
import { describe, expect, it, vi } from 'vitest';
import { INCOMPLETE, PUSH, RespReader } from '../../src/store/redis/resp.ts';
import { rng } from '../support/rng.ts';

/** A RESP value to encode, and what the reader answers for it (text mode). */
type Gen = { bytes: string; value: unknown; elements: number };


/** A nested reply of about `budget` elements: arrays, maps and sets of every leaf type. */
function nested(rand: () => number, depth: number, budget: { left: number }): Gen {
  const r = rand();
  if (depth > 0 && r < 0.3 && budget.left > 0) {
    const n = 1 + Math.floor(rand() * 12);
    const kind = rand();
    const items: Gen[] = [];
    budget.left--;
    const pairs = kind < 0.15;
    const count = pairs ? n * 2 : n;
    for (let i = 0; i < count && budget.left > 0; i++) items.push(nested(rand, depth - 1, budget));
    const m = pairs ? items.length - (items.length % 2) : items.length;
    const used = items.slice(0, m);
    const head = pairs ? `%${m / 2}\r\n` : kind < 0.25 ? `~${m}\r\n` : `*${m}\r\n`;
    return { bytes: head + used.map((g) => g.bytes).join(''), value: used.map((g) => g.value), elements: 1 + used.reduce((a, g) => a + g.elements, 0) };
  }
  budget.left--;
  const leaf = Math.floor(rand() * 9);
  switch (leaf) {
    case 0: {
      const s = 'x'.repeat(Math.floor(rand() * 40)) + '\r\né';
      return { bytes: `$${Buffer.byteLength(s)}\r\n${s}\r\n`, value: s, elements: 1 };
    }
    case 1: {
      const s = 'long:'.repeat(200 + Math.floor(rand() * 400)); // 1-3 KB: a bulk string over many reads
      return { bytes: `$${s.length}\r\n${s}\r\n`, value: s, elements: 1 };
    }
    case 2: {
      const n = Math.floor(rand() * 2e9) - 1e9;
      return { bytes: `:${n}\r\n`, value: n, elements: 1 };
    }
    case 3:
      return { bytes: '+simple string\r\n', value: 'simple string', elements: 1 };
    case 4:
      return { bytes: '$-1\r\n', value: null, elements: 1 };
    case 5:
      return { bytes: '-ERR inside an array\r\n', value: new SimpleError('ERR inside an array'), elements: 1 };
    case 6:
      return { bytes: '_\r\n', value: null, elements: 1 };
    case 7:
      return rand() < 0.5 ? { bytes: '#t\r\n', value: true, elements: 1 } : { bytes: '#f\r\n', value: false, elements: 1 };
    default:
      return { bytes: ',2.5\r\n', value: 2.5, elements: 1 };
  }
}

/** A reply of `elements` elements or so, nested 4 deep under one array. */
function largeReply(seed: number, elements: number): Gen {
  const rand = rng(seed);
  const budget = { left: elements };
  const items: Gen[] = [];
  while (budget.left > 0) items.push(nested(rand, 4, budget));
  return { bytes: `*${items.length}\r\n${items.map((g) => g.bytes).join('')}`, value: items.map((g) => g.value), elements: 1 + items.reduce((a, g) => a + g.elements, 0) };
}

/** Feeds `bytes` in reads of `size` bytes; the replies read, and how many reads there were. */
function feed(reader: RespReader, bytes: Buffer, size: number, binary = false): { replies: unknown[]; reads: number } {
  const replies: unknown[] = [];
  let reads = 0;
  for (let at = 0; at < bytes.length; at += size) {
    reads++;
    reader.push(bytes.subarray(at, Math.min(at + size, bytes.length)));
    while (!reader.idle) {
      const v = reader.next(binary);
      if (v === INCOMPLETE) break;
      replies.push(v);
    }
  }
  return { replies, reads };
}

describe('RespReader', () => {
  const reply = largeReply(13, 4000);
  const bytes = Buffer.from(reply.bytes);

  it('reads a large nested reply whole, element by element once', () => {
    expect(reply.elements).toBeGreaterThan(3000);
    expect(bytes.length).toBeGreaterThan(800_000);
    const reader = new RespReader();
    const { replies } = feed(reader, bytes, bytes.length);
    expect(replies).toEqual([reply.value]);
    expect(reader.steps).toBe(reply.elements);
    expect(reader.idle).toBe(true);
  });

  for (const size of [1, 3, 16, 1000, 65_536]) {
    it(`reads it in reads of ${size} byte(s): the same reply, each element parsed once plus at most one cut attempt per read`, () => {
      const reader = new RespReader();
      const { replies, reads } = feed(reader, bytes, size);
      expect(replies).toEqual([reply.value]);
      // Parsed again from its start on each read (the reader before), it cost about
      // elements × reads / 2 steps: 1.6 million in reads of 1 KB (and 332 MB copied), some 1.6
      // billion byte by byte (4,001 elements, 823 KB).
      expect(reader.steps).toBeLessThanOrEqual(reply.elements + reads);
      expect(reader.idle).toBe(true);
    });
  }

  it('waits for a bulk string whole once its length is read: a 4 MB one in 1 KB reads is parsed twice', () => {
    const big = 'b'.repeat(4 * 1024 * 1024);
    const reader = new RespReader();
    const { replies, reads } = feed(reader, Buffer.from(`$${big.length}\r\n${big}\r\n+after\r\n`), 1024);
    expect(reads).toBeGreaterThan(4000);
    expect(replies).toEqual([big, 'after']);
    // The cut bulk string (once), the whole one, '+after'.
    expect(reader.steps).toBe(3);
  });

  it('answers replies cut at every byte, in order: every type, Buffers for a binary reply, a RESP3 push as PUSH', () => {
    const all = Buffer.from('*5\r\n$7\r\nrotated\r\n$4\r\na\r\nb\r\n:-42\r\n$-1\r\n*2\r\n+ok\r\n*0\r\n>2\r\n$3\r\npub\r\n*1\r\n$1\r\nx\r\n%1\r\n$1\r\nk\r\n,1.5\r\n-ERR Function not found\r\n_\r\n#t\r\n*-1\r\n');
    for (let cut = 1; cut < all.length; cut++) {
      for (const second of [cut + 1, all.length]) {
        const reader = new RespReader();
        const got: unknown[] = [];
        let n = 0;
        for (const part of [all.subarray(0, cut), all.subarray(cut, second), all.subarray(second)]) {
          if (part.length === 0) continue;
          reader.push(part);
          while (!reader.idle) {
            const v = reader.next(n === 0); // the first reply's strings as Buffers
            if (v === INCOMPLETE) break;
            got.push(v);
            n++;
          }
        }
        expect(got).toEqual([[Buffer.from('rotated'), Buffer.from('a\r\nb'), -42, null, ['ok', []]], PUSH, ['k', 1.5], new SimpleError('ERR Function not found'), null, true, null]);
        expect(reader.idle).toBe(true);
      }
    }
  });

  it('keeps bytes the caller did not read yet for the next read, and forgets everything on reset()', () => {
    const reader = new RespReader();
    reader.push(Buffer.from('+one\r\n+tw'));
    expect(reader.next(false)).toBe('one');
    // The caller stops here (no command awaits): the rest stays.
    reader.push(Buffer.from('o\r\n'));
    expect(reader.next(false)).toBe('two');
    expect(reader.idle).toBe(true);
    reader.push(Buffer.from('*2\r\n:1\r\n:'));
    expect(reader.next(false)).toBe(INCOMPLETE);
    expect(reader.idle).toBe(false);
    reader.reset();
    expect(reader.idle).toBe(true);
    reader.push(Buffer.from(':7\r\n'));
    expect(reader.next(false)).toBe(7);
  });

  it('scans a long cut line once, not again on each read that brings no CR', () => {
    const reader = new RespReader();
    const line = 'x'.repeat(20_000);
    const all = Buffer.from(`+${line}\r\n:5\r\n`);
    const concat = vi.spyOn(Buffer, 'concat');
    try {
      const got: unknown[] = [];
      for (let at = 0; at < all.length; at += 10) {
        reader.push(all.subarray(at, at + 10));
        for (let v = reader.next(false); v !== INCOMPLETE; v = reader.idle ? INCOMPLETE : reader.next(false)) got.push(v);
      }
      expect(got).toEqual([line, 5]);
      // The reads joined (and the line scanned again) once its CR came, not on each of 2,000 reads.
      expect(concat.mock.calls.length).toBeLessThan(5);
    } finally {
      concat.mockRestore();
    }
  });

  it('resumes a small cut rest of a large read (copied, not a view keeping the read alive) and a large one (a view)', () => {
    const reader = new RespReader();
    const big = Buffer.from(`$10000\r\n${'y'.repeat(10_000)}\r\n$5\r\nab`);
    reader.push(big);
    expect(reader.next(false)).toBe('y'.repeat(10_000));
    expect(reader.next(false)).toBe(INCOMPLETE);
    reader.push(Buffer.from('cde\r\n'));
    expect(reader.next(false)).toBe('abcde');
    // A rest most of the read is kept as a view (no copy of a large cut reply).
    const r2 = new RespReader();
    const part = Buffer.from(`$10000\r\n${'z'.repeat(5000)}`);
    r2.push(part);
    expect(r2.next(true)).toBe(INCOMPLETE);
    r2.push(Buffer.from(`${'z'.repeat(5000)}\r\n`));
    expect((r2.next(true) as Buffer).toString()).toBe('z'.repeat(10_000));
  });

  it("reads a RESP3 push's cut inner array as text for a binary call, as a whole-buffer parse does", () => {
    // The push is dropped (PUSH), so count the texts made: its strings are text, not Buffer views.
    const all = Buffer.from('>2\r\n$7\r\nmessage\r\n*2\r\n$3\r\nabc\r\n$3\r\ndef\r\n$2\r\nok\r\n');
    const texts = (parts: Buffer[]): number => {
      const reader = new RespReader();
      const toString = vi.spyOn(Buffer.prototype, 'toString');
      const got: unknown[] = [];
      try {
        for (const part of parts) {
          reader.push(part);
          while (!reader.idle) {
            const v = reader.next(true);
            if (v === INCOMPLETE) break;
            got.push(v);
          }
        }
        return toString.mock.calls.length;
      } finally {
        toString.mockRestore();
        expect(got).toEqual([PUSH, Buffer.from('ok')]);
      }
    };
    const whole = texts([all]);
    expect(whole).toBe(3);
    const inner = all.indexOf('def');
    for (let cut = all.indexOf('*2'); cut <= inner + 2; cut++) expect(texts([all.subarray(0, cut), all.subarray(cut)])).toBe(whole);
  });
});
