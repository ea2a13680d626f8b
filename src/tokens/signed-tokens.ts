// The tokens this process signed, recognised on their first check by the SHA-256 of their exact
// text — so that check needs no Ed25519 verification — kept as 32 bytes each in typed arrays.
//
// Signing used to remember each token as verified (its text and claims, session-token.ts's map of
// verified tokens) for that purpose. That kept ~0.8 kB per refresh-token rotation alive on the
// JavaScript heap, for tokens that many clients never present to this process, and copying it
// out of the young generation and into the old one was most of a rotation's garbage-collection
// work (docs/performance.md, "Signed tokens off the heap"). A typed array's memory is outside
// V8's heap: no collection copies or marks it.

import { hash } from 'node:crypto';

const DIGEST_BYTES = 32;
/** The first table's size; it doubles when half full, up to what a generation needs (the next generations start there). */
const FIRST_SLOTS = 1024;

/** An open-addressing (linear probing) set of SHA-256 digests. */
class DigestTable {
  readonly mask: number;
  readonly bytes: Uint8Array;
  /** 1 where a slot holds a digest. */
  readonly used: Uint8Array;
  count = 0;

  constructor(slots: number) {
    this.mask = slots - 1;
    this.bytes = new Uint8Array(slots * DIGEST_BYTES);
    this.used = new Uint8Array(slots);
  }

  get slots(): number {
    return this.mask + 1;
  }

  /**
   * The slot that holds `d`, or the empty one where it would go. The start slot comes from the
   * digest's first bytes; each comparison looks at all 32 bytes whatever they hold (what is
   * stored is derived from bearer tokens: no early exit on the first differing byte).
   */
  slotOf(d: string): number {
    let i = (d.charCodeAt(0) | (d.charCodeAt(1) << 8) | (d.charCodeAt(2) << 16) | (d.charCodeAt(3) << 24)) & this.mask;
    while (this.used[i] === 1 && !sameDigest(this.bytes, i * DIGEST_BYTES, d)) i = (i + 1) & this.mask;
    return i;
  }

  has(d: string): boolean {
    return this.used[this.slotOf(d)] === 1;
  }

  /** Stores `d` in the empty slot `i` (slotOf's answer for it). */
  put(i: number, d: string): void {
    const at = i * DIGEST_BYTES;
    for (let k = 0; k < DIGEST_BYTES; k++) this.bytes[at + k] = d.charCodeAt(k);
    this.used[i] = 1;
    this.count += 1;
  }

  /** This table's digests in a table of `slots` slots. */
  grown(slots: number): DigestTable {
    const next = new DigestTable(slots);
    const bytes = Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    for (let i = 0; i <= this.mask; i++) {
      if (this.used[i] !== 1) continue;
      const d = bytes.toString('latin1', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
      next.put(next.slotOf(d), d);
    }
    return next;
  }
}

function sameDigest(bytes: Uint8Array, offset: number, d: string): boolean {
  let diff = 0;
  for (let k = 0; k < DIGEST_BYTES; k++) diff |= (bytes[offset + k] as number) ^ d.charCodeAt(k);
  return diff === 0;
}

/**
 * The digests of the last `generation` to 2 × `generation` tokens added: two tables, the current
 * one and the one before; when the current one holds `generation` digests, the one before is
 * dropped and a new one started. At most 2 × 33 bytes × the power of two ≥ 2 × `generation` slots
 * (8.6 MB for 50,000): the first table grows to that size as it fills, each later one is made at
 * that size.
 */
export class SignedTokens {
  readonly #generation: number;
  #current = new DigestTable(FIRST_SLOTS);
  #previous: DigestTable | null = null;

  constructor(generation: number) {
    this.#generation = generation;
  }

  add(token: string): void {
    const d = digestOf(token);
    if (this.#previous?.has(d) === true) return;
    let t = this.#current;
    let i = t.slotOf(d);
    if (t.used[i] === 1) return; // signed again (the grace window's answer): the same text
    if (t.count >= this.#generation) {
      // The next generation starts at the size this one grew to (the size a full generation
      // needs), not at FIRST_SLOTS: growing it again, doubling by doubling, re-inserted about
      // two digests per token added and made ~4 MB of tables to throw away per generation.
      this.#previous = t;
      this.#current = t = new DigestTable(t.slots);
      i = t.slotOf(d);
    } else if ((t.count + 1) * 2 > t.slots) {
      this.#current = t = t.grown(t.slots * 2);
      i = t.slotOf(d);
    }
    t.put(i, d);
  }

  /** The current table's size in slots (what the tests look at). */
  get tableSlots(): number {
    return this.#current.slots;
  }

  /** Whether `token` is, byte for byte, one of the tokens added (and not dropped since). */
  has(token: string): boolean {
    const d = digestOf(token);
    return this.#current.has(d) || this.#previous?.has(d) === true;
  }
}

/**
 * SHA-256 of the token's UTF-8 bytes as a string of 32 characters, one per byte ('binary', that
 * is latin1: character code = byte). The tokens added are ASCII (base64url and dots), and a
 * string with any other character has other bytes: a presented string with these bytes is the
 * token's very text. A string rather than a Buffer: `hash`'s Buffer output costs ~0.4 µs more
 * per call (a rotation adds one, a token's first check in a process asks one; docs/performance.md,
 * "Where the rotation server's CPU goes").
 */
function digestOf(token: string): string {
  return hash('sha256', token, 'binary');
}
