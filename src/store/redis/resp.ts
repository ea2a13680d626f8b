// RESP for a lean connection: commands encoded into a slab (RespWriter), replies parsed from the
// bytes a socket read (RespReader: RESP2, and the RESP3 types a script can answer). Shared by
// the lean connection for the hot calls (hot-connection.ts) and the bench's lean client
// (bench/lean-resp.ts). Bulk strings are Buffers (views of the read) for a binary call, UTF-8 text
// otherwise; integers numbers; nil null; an error reply node-redis's SimpleError (an ErrorReply), so
// lua.ts's fallbacks and connection.ts's toStoreError see what node-redis gives them. A reply cut
// between two reads answers INCOMPLETE and is parsed again once the rest arrived.

import { SimpleError } from 'redis';

/** The parse ran past the bytes read so far: wait for more. */
export const INCOMPLETE = Symbol('incomplete');
/** A RESP3 push, not an answer to a command. */
export const PUSH = Symbol('push');

const SLAB = 64 * 1024;

export class RespReader {
  /** Where the next reply starts in the buffer being read. */
  pos = 0;
  /** Bytes of a reply cut by the end of a read. */
  #rest: Buffer | null = null;

  /** The bytes to read: `chunk` after what the last read left (a reply cut short), if any. */
  join(chunk: Buffer): Buffer {
    if (this.#rest === null) return chunk;
    const b = Buffer.concat([this.#rest, chunk]);
    this.#rest = null;
    return b;
  }

  /** Keeps `b` from `start` on (a reply not all there yet) for the next join(). */
  keep(b: Buffer, start: number): void {
    this.#rest = start < b.length ? b.subarray(start) : null;
  }

  /** Forgets a cut reply (the connection it came on is gone). */
  reset(): void {
    this.#rest = null;
  }

  /** The integer at pos up to CRLF (moving pos past it), or NaN when the line is not all there. */
  #line(b: Buffer): number {
    let i = this.pos;
    let neg = false;
    if (b[i] === 45) {
      neg = true;
      i++;
    }
    let n = 0;
    for (; i < b.length; i++) {
      const c = b[i] as number;
      if (c === 13) {
        if (i + 1 >= b.length) return NaN;
        this.pos = i + 2;
        return neg ? -n : n;
      }
      n = n * 10 + (c - 48);
    }
    return NaN;
  }

  /** The text of the line at pos (moving pos past its CRLF), or null when it is not all there. */
  #text(b: Buffer): string | null {
    const end = b.indexOf(13, this.pos);
    if (end < 0 || end + 1 >= b.length) return null;
    const s = b.toString('utf8', this.pos, end);
    this.pos = end + 2;
    return s;
  }

  /** The reply at `pos` (moving `pos` past it), INCOMPLETE when it is not all there yet, PUSH for a RESP3 push. */
  value(b: Buffer, binary: boolean): unknown {
    if (this.pos >= b.length) return INCOMPLETE;
    const type = b[this.pos++];
    switch (type) {
      case 36: {
        // $ bulk string
        const n = this.#line(b);
        if (Number.isNaN(n)) return INCOMPLETE;
        if (n < 0) return null;
        const s = this.pos;
        if (s + n + 2 > b.length) return INCOMPLETE;
        this.pos = s + n + 2;
        return binary ? b.subarray(s, s + n) : b.toString('utf8', s, s + n);
      }
      case 42: // * array
      case 126: // ~ set (RESP3)
      case 37: {
        // % map (RESP3): as a flat list of keys and values, as RESP2 answers
        let n = this.#line(b);
        if (Number.isNaN(n)) return INCOMPLETE;
        if (n < 0) return null;
        if (type === 37) n *= 2;
        const out = new Array<unknown>(n);
        for (let i = 0; i < n; i++) {
          const v = this.value(b, binary);
          if (v === INCOMPLETE) return INCOMPLETE;
          out[i] = v;
        }
        return out;
      }
      case 58: {
        // : integer
        const n = this.#line(b);
        return Number.isNaN(n) ? INCOMPLETE : n;
      }
      case 43: // + simple string
        return this.#text(b) ?? INCOMPLETE;
      case 45: {
        // - error
        const m = this.#text(b);
        return m === null ? INCOMPLETE : new SimpleError(m);
      }
      case 95: // _ null (RESP3)
        if (this.pos + 2 > b.length) return INCOMPLETE;
        this.pos += 2;
        return null;
      case 35: {
        // # boolean (RESP3)
        if (this.pos + 3 > b.length) return INCOMPLETE;
        const t = b[this.pos] === 116;
        this.pos += 3;
        return t;
      }
      case 44: {
        // , double (RESP3)
        const t = this.#text(b);
        return t === null ? INCOMPLETE : Number(t);
      }
      case 62: {
        // > push (RESP3): out-of-band, read and dropped
        const n = this.#line(b);
        if (Number.isNaN(n)) return INCOMPLETE;
        for (let i = 0; i < n; i++) if (this.value(b, false) === INCOMPLETE) return INCOMPLETE;
        return PUSH;
      }
      default:
        throw new Error(`RESP: unknown reply type ${String(type)}`);
    }
  }
}

/** How many decimal digits `n` (≥ 0) is written with: what RespWriter's #int writes before its CRLF. */
function digits(n: number): number {
  return n < 10 ? 1 : n < 100 ? 2 : n < 1000 ? 3 : n < 10_000 ? 4 : String(n).length;
}

/** Commands encoded into a slab; take() hands out the bytes not written yet. */
export class RespWriter {
  #slab = Buffer.allocUnsafe(SLAB);
  /** Encoded bytes [#start, #off) of #slab not taken yet. */
  #start = 0;
  #off = 0;

  /** Nothing encoded since the last take(). */
  get empty(): boolean {
    return this.#off === this.#start;
  }

  /** The bytes encoded since the last take(): a view of the slab, never written over afterwards. */
  take(): Buffer {
    const bytes = this.#slab.subarray(this.#start, this.#off);
    this.#start = this.#off;
    return bytes;
  }

  /** Drops what was not taken, in a fresh slab (a write of the old one may still hold a view). */
  reset(): void {
    this.#slab = Buffer.allocUnsafe(SLAB);
    this.#start = this.#off = 0;
  }

  /** Appends the command `args` (an array of bulk strings). */
  encode(args: ReadonlyArray<string | Buffer>): void {
    // At most: each argument's bytes (3 per UTF-16 unit) and its header, and the array's header.
    let need = 16;
    for (let i = 0; i < args.length; i++) {
      const a = args[i] as string | Buffer;
      need += (typeof a === 'string' ? a.length * 3 : a.length) + 16;
    }
    if (this.#off + need > this.#slab.length) this.#newSlab(need);
    const b = this.#slab;
    let o = this.#off;
    b[o++] = 42; // *
    o = this.#int(args.length, o);
    for (let i = 0; i < args.length; i++) {
      const a = args[i] as string | Buffer;
      b[o++] = 36; // $
      if (typeof a === 'string') {
        // The text first, behind room for the digits of its length in UTF-16 units (its byte
        // count when it is ASCII, the usual case), then the byte count in front of it — one call
        // into the encoder instead of Buffer.byteLength's and the write's. A text of more bytes
        // than units may need a digit more: then it moves up (a UTF-8 text never has fewer bytes
        // than UTF-16 units, and `need` allows 16 bytes of header per argument).
        const d = digits(a.length);
        const n = b.write(a, o + d + 2, 'utf8');
        const dn = digits(n);
        if (dn !== d) b.copyWithin(o + dn + 2, o + d + 2, o + d + 2 + n);
        o = this.#int(n, o) + n;
      } else {
        o = this.#int(a.length, o);
        o += a.copy(b, o);
      }
      b[o++] = 13;
      b[o++] = 10;
    }
    this.#off = o;
  }

  /** Writes n's digits and CRLF at o; the offset after them. */
  #int(n: number, o: number): number {
    const b = this.#slab;
    if (n < 10) b[o++] = 48 + n;
    else if (n < 100) {
      b[o++] = 48 + ((n / 10) | 0);
      b[o++] = 48 + (n % 10);
    } else o += b.write(String(n), o, 'latin1');
    b[o++] = 13;
    b[o++] = 10;
    return o;
  }

  /** A new slab with the unwritten bytes at its start (the old one may still be in a write). */
  #newSlab(need: number): void {
    const pending = this.#off - this.#start;
    const slab = Buffer.allocUnsafe(Math.max(SLAB, pending + need));
    this.#slab.copy(slab, 0, this.#start, this.#off);
    this.#slab = slab;
    this.#start = 0;
    this.#off = pending;
  }
}

type Resolve = (v: unknown) => void;
type Reject = (e: Error) => void;

/**
 * The commands written and awaiting their reply, oldest first (RESP answers in order): each one's
 * resolve, reject and whether its reply's bulk strings are read as Buffers, in parallel arrays.
 */
export class ReplyRing {
  #resolve = new Array<Resolve | undefined>(1024);
  #reject = new Array<Reject | undefined>(1024);
  #binary: boolean[] = new Array<boolean>(1024).fill(false);
  #head = 0;
  #count = 0;

  /** How many replies are awaited. */
  get count(): number {
    return this.#count;
  }

  /** Whether the oldest awaited reply's bulk strings are read as Buffers. */
  get headBinary(): boolean {
    return this.#binary[this.#head] as boolean;
  }

  push(resolve: Resolve, reject: Reject, binary: boolean): void {
    if (this.#count === this.#resolve.length) this.#grow();
    const i = (this.#head + this.#count) & (this.#resolve.length - 1);
    this.#resolve[i] = resolve;
    this.#reject[i] = reject;
    this.#binary[i] = binary;
    this.#count++;
  }

  /** Settles the oldest with the reply `v`: an error reply rejects it, anything else resolves it. */
  settle(v: unknown): void {
    const i = this.#head;
    const resolve = this.#resolve[i];
    const reject = this.#reject[i];
    this.#resolve[i] = undefined;
    this.#reject[i] = undefined;
    this.#head = (i + 1) & (this.#resolve.length - 1);
    this.#count--;
    if (v instanceof SimpleError) reject?.(v);
    else resolve?.(v);
  }

  /** Rejects every awaited reply with `err`, oldest first. */
  failAll(err: Error): void {
    while (this.#count > 0) {
      const i = this.#head;
      const reject = this.#reject[i];
      this.#resolve[i] = undefined;
      this.#reject[i] = undefined;
      this.#head = (i + 1) & (this.#resolve.length - 1);
      this.#count--;
      reject?.(err);
    }
  }

  #grow(): void {
    const n = this.#resolve.length;
    const order = <T>(xs: T[]): T[] => [...xs.slice(this.#head), ...xs.slice(0, this.#head)];
    this.#resolve = [...order(this.#resolve), ...new Array<undefined>(n)];
    this.#reject = [...order(this.#reject), ...new Array<undefined>(n)];
    this.#binary = [...order(this.#binary), ...new Array<boolean>(n).fill(false)];
    this.#head = 0;
  }
}
