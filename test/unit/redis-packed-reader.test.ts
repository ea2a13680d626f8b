// The strict MessagePack reader of the packed record replies (src/store/redis/codec.ts,
// packedFromReply): 64-bit integers are read exactly from their two 32-bit halves, and one beyond
// 2^53 - 1 either way is refused with a clear error, never rounded into a wrong value.

import { describe, expect, it } from 'vitest';
import { packedFromReply } from '../../src/store/redis/codec.ts';

type V = string | Buffer | number | boolean | null | V[] | { i64: bigint } | { u64: bigint };

/** MessagePack as cmsgpack writes it, for the types a record uses; 64-bit integers on request. */
function mp(v: V): Buffer {
  if (v === null) return Buffer.from([0xc0]);
  if (v === false) return Buffer.from([0xc2]);
  if (v === true) return Buffer.from([0xc3]);
  if (typeof v === 'string') v = Buffer.from(v, 'latin1');
  if (Buffer.isBuffer(v)) return Buffer.concat([Buffer.from([0xd9, v.length]), v]);
  if (typeof v === 'number') {
    if (v >= 0 && v < 128) return Buffer.from([v]);
    const b = Buffer.alloc(9);
    b[0] = 0xd3;
    b.writeBigInt64BE(BigInt(v), 1);
    return b;
  }
  if (Array.isArray(v)) return Buffer.concat([Buffer.from([0x90 | v.length]), ...v.map(mp)]);
  const b = Buffer.alloc(9);
  if ('i64' in v) {
    b[0] = 0xd3;
    b.writeBigInt64BE(v.i64, 1);
  } else {
    b[0] = 0xcf;
    b.writeBigUInt64BE(v.u64, 1);
  }
  return b;
}

/** A packed reply (tag, r, record, token position) whose lastSeenAt is `seen`. */
function reply(seen: V): Buffer {
  const record: V = ['t1', 'u1', 1, 1_700_000_000_000, seen, false, 1_700_000_900_000, 0, false, 0, Buffer.alloc(32, 7), false, false, false];
  return Buffer.concat([mp('tag1'), mp(Buffer.alloc(16, 1)), mp(record), mp(0)]);
}

describe('packedFromReply, 64-bit integers', () => {
  it('reads every 64-bit integer within 2^53 exactly, negative ones included', () => {
    for (const n of [0n, 1n, 2n ** 31n, 2n ** 32n + 5n, 1_700_000_000_123n, 2n ** 53n - 1n, -1n, -(2n ** 31n) - 1n, -(2n ** 32n) - 1n, -(2n ** 53n) + 1n]) {
      expect(packedFromReply(reply({ i64: n })).session.lastSeenAt, String(n)).toBe(Number(n));
      if (n >= 0n) expect(packedFromReply(reply({ u64: n })).session.lastSeenAt, `u${n}`).toBe(Number(n));
    }
  });

  it('refuses one beyond 2^53 - 1 either way instead of rounding it', () => {
    for (const v of [{ i64: 2n ** 53n }, { i64: -(2n ** 53n) - 1n }, { i64: -(2n ** 63n) }, { u64: 2n ** 53n + 1n }, { u64: 2n ** 64n - 1n }]) {
      expect(() => packedFromReply(reply(v)), JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? String(x) : x))).toThrow(/beyond 2\^53/);
    }
  });
});
