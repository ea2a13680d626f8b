// Random (version 4) UUIDs for the ids a request is given when it sends none (request and
// correlation ids, docs/api.md §Request headers). The same values node:crypto's randomUUID gives —
// 122 bits from the CSPRNG, a batch of them drawn at a time as randomUUID does — written as text
// into one buffer and read out as one string: randomUUID joins its string from twenty pieces,
// about 580 bytes of short-lived strings per id, which was a twelfth of everything the session
// check allocated (two ids per request) and so of its young-generation collections
// (docs/performance.md, "The check's p99 tail").

import { randomFillSync } from 'node:crypto';

/** UUIDs' worth of random bytes drawn at once. */
const BATCH = 256;
const pool = Buffer.alloc(16 * BATCH);
let next = BATCH;
const text = Buffer.alloc(36, '-');
const HEX = Buffer.from('0123456789abcdef', 'latin1');
/** Where the two hex digits of each of the 16 bytes go in `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`. */
const AT = Uint8Array.of(0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34);

/** A random UUID (RFC 9562 version 4), lower-case. */
export function randomRequestId(): string {
  if (next === BATCH) {
    randomFillSync(pool);
    next = 0;
  }
  const o = 16 * next++;
  // The version (4) and variant (10xx) bits.
  pool[o + 6] = ((pool[o + 6] as number) & 0x0f) | 0x40;
  pool[o + 8] = ((pool[o + 8] as number) & 0x3f) | 0x80;
  for (let i = 0; i < 16; i++) {
    const b = pool[o + i] as number;
    const at = AT[i] as number;
    text[at] = HEX[b >> 4] as number;
    text[at + 1] = HEX[b & 15] as number;
  }
  return text.toString('latin1', 0, 36);
}
