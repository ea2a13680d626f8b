// RESP for a lean connection: commands encoded into a slab (RespWriter), replies parsed from the
// bytes a socket read (RespReader: RESP2, and the RESP3 types a script can answer). Shared by
// the lean connection for the hot calls (hot-connection.ts) and the bench's lean client
// (bench/lean-resp.ts). Bulk strings are Buffers (views of the read) for a binary call, UTF-8 text
// otherwise; integers numbers; nil null; an error reply node-redis's SimpleError (an ErrorReply), so
// lua.ts's fallbacks and connection.ts's toStoreError see what node-redis gives them. A reply cut
// between two reads answers INCOMPLETE and is resumed where it was cut once more bytes arrived.

import { SimpleError } from 'redis';

/** The parse ran past the bytes read so far: wait for more. */
export const INCOMPLETE = Symbol('incomplete');
/** A RESP3 push, not an answer to a command. */
export const PUSH = Symbol('push');

const SLAB = 64 * 1024;

/** An array whose elements were cut by the end of a read: resumed at element `i` of `n`. */
interface Frame {
  out: unknown[];
  i: number;
  n: number;
  /** A RESP3 push: read and dropped (PUSH) once whole. */
  push: boolean;
}

export class RespReader {
  /** Where the next reply (or the cut element of a reply) starts in #b. */
  #pos = 0;
  /** Elements parsed, cut ones included (each value() entered): the parse work, for the tests. */
  steps = 0;
  /** The bytes being read. */
  #b: Buffer = Buffer.alloc(0);
  /** A reply cut by the end of a read: the bytes from its cut element on, and the reads after. */
  #parts: Buffer[] | null = null;
  #have = 0;
  /** Bytes (from the cut element's start) needed before a parse can get further. */
  #need = 0;
  /** The arrays of a cut reply, innermost first (next() resumes them). */
  #frames: Frame[] = [];
  /** Where the element that ran past the read started, and the bytes it needs from there. */
  #cutAt = 0;
  #cutNeed = 0;
  /** The cut element is a line not all there (no CR then LF yet): only a CR lets it get further. */
  #cutLine = false;

  /** Nothing read is left unparsed, and no reply is cut. */
  get idle(): boolean {
    return this.#parts === null && this.#pos >= this.#b.length;
  }

  /** Adds the bytes of a read. */
  push(chunk: Buffer): void {
    const parts = this.#parts;
    if (parts === null) {
      // Everything before was parsed: the read alone; else what the caller left unread, then it.
      this.#b = this.#pos >= this.#b.length ? chunk : Buffer.concat([this.#b.subarray(this.#pos), chunk]);
      this.#pos = 0;
      return;
    }
    parts.push(chunk);
    this.#have += chunk.length;
    if (this.#have < this.#need) return; // still short of what the cut element needs: no parse
    if (this.#cutLine && chunk.indexOf(13) < 0 && (parts[parts.length - 2] as Buffer).at(-1) !== 13) {
      // A cut line still without its CR: no parse (a long line over many reads is scanned once).
      this.#need = this.#have + 1;
      return;
    }
    this.#b = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, this.#have);
    this.#pos = 0;
    this.#parts = null;
  }

  /** Forgets what was read (the connection it came on is gone). */
  reset(): void {
    this.#b = Buffer.alloc(0);
    this.#pos = 0;
    this.#parts = null;
    this.#frames = [];
  }

  /**
   * The next reply, INCOMPLETE when it is not all there yet, PUSH for a RESP3 push. A cut reply
   * keeps the elements it has (and only the bytes from its cut element on): the reads after it
   * resume there, and are not parsed at all until the cut element can get further (a bulk
   * string's whole length; a line's CR, then its next byte), so a large reply over many reads costs
   * about one parse of its bytes.
   */
  next(binary: boolean): unknown {
    if (this.#parts !== null) return INCOMPLETE;
    const b = this.#b;
    if (this.#frames.length === 0 && this.#pos >= b.length) return INCOMPLETE; // idle
    let v: unknown;
    if (this.#frames.length === 0) v = this.#value(b, binary);
    else {
      const frames = this.#frames;
      this.#frames = [];
      v = this.#resume(b, binary, frames, frames.length - 1);
    }
    if (v === INCOMPLETE) {
      // A small rest of a large read is copied: a view would keep the whole read alive.
      const rest = (b.length - this.#cutAt) * 4 < b.length ? Buffer.from(b.subarray(this.#cutAt)) : b.subarray(this.#cutAt);
      this.#parts = [rest];
      this.#have = rest.length;
      this.#need = this.#cutNeed;
      this.#b = rest;
      this.#pos = rest.length;
    }
    return v;
  }

  /** Goes on with the cut array frames[d] (frames[d - 1] its cut element, ... frames[0] the innermost). */
  #resume(b: Buffer, binary: boolean, frames: Frame[], d: number): unknown {
    const f = frames[d] as Frame;
    for (let i = f.i; i < f.n; i++) {
      const bin = f.push ? false : binary;
      const v = i === f.i ? (d > 0 ? this.#resume(b, bin, frames, d - 1) : this.#value(b, bin)) : this.#value(b, bin);
      if (v === INCOMPLETE) {
        f.i = i;
        this.#frames.push(f);
        return INCOMPLETE;
      }
      f.out[i] = v;
    }
    return f.push ? PUSH : f.out;
  }

  /** The element starting at `at` ran past the read; it needs `need` bytes from `at` to get further. */
  #cut(at: number, need: number, line = false): typeof INCOMPLETE {
    this.#cutAt = at;
    this.#cutNeed = need;
    this.#cutLine = line;
    return INCOMPLETE;
  }

  /** The integer at pos up to CRLF (moving pos past it), or NaN when the line is not all there. */
  #line(b: Buffer): number {
    let i = this.#pos;
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
        this.#pos = i + 2;
        return neg ? -n : n;
      }
      n = n * 10 + (c - 48);
    }
    return NaN;
  }

  /** The text of the line at pos (moving pos past its CRLF), or null when it is not all there. */
  #text(b: Buffer): string | null {
    const end = b.indexOf(13, this.#pos);
    if (end < 0 || end + 1 >= b.length) return null;
    const s = b.toString('utf8', this.#pos, end);
    this.#pos = end + 2;
    return s;
  }

  /**
   * The element at `pos` (moving `pos` past it), INCOMPLETE when it is not all there yet (the cut
   * element and the arrays around it kept for next()), PUSH for a RESP3 push.
   */
  #value(b: Buffer, binary: boolean): unknown {
    this.steps++;
    const at = this.#pos;
    // An element that ran past the read needs one more byte than it had, unless it knows better.
    if (at >= b.length) return this.#cut(at, 1);
    const type = b[this.#pos++];
    switch (type) {
      case 36: {
        // $ bulk string
        const n = this.#line(b);
        if (Number.isNaN(n)) return this.#cut(at, b.length - at + 1, true);
        if (n < 0) return null;
        const s = this.#pos;
        if (s + n + 2 > b.length) return this.#cut(at, s - at + n + 2);
        this.#pos = s + n + 2;
        return binary ? b.subarray(s, s + n) : b.toString('utf8', s, s + n);
      }
      case 42: // * array
      case 126: // ~ set (RESP3)
      case 37: // % map (RESP3): as a flat list of keys and values, as RESP2 answers
      case 62: {
        // > push (RESP3): out-of-band, read and dropped
        let n = this.#line(b);
        if (Number.isNaN(n)) return this.#cut(at, b.length - at + 1, true);
        if (n < 0) return null;
        if (type === 37) n *= 2;
        const out = new Array<unknown>(n);
        const bin = type === 62 ? false : binary;
        for (let i = 0; i < n; i++) {
          const v = this.#value(b, bin);
          if (v === INCOMPLETE) {
            this.#frames.push({ out, i, n, push: type === 62 });
            return INCOMPLETE;
          }
          out[i] = v;
        }
        return type === 62 ? PUSH : out;
      }
      case 58: {
        // : integer
        const n = this.#line(b);
        return Number.isNaN(n) ? this.#cut(at, b.length - at + 1, true) : n;
      }
      case 43: {
        // + simple string
        const t = this.#text(b);
        return t === null ? this.#cut(at, b.length - at + 1, true) : t;
      }
      case 45: {
        // - error
        const m = this.#text(b);
        return m === null ? this.#cut(at, b.length - at + 1, true) : new SimpleError(m);
      }
      case 95: // _ null (RESP3)
        if (this.#pos + 2 > b.length) return this.#cut(at, 3);
        this.#pos += 2;
        return null;
      case 35: {
        // # boolean (RESP3)
        if (this.#pos + 3 > b.length) return this.#cut(at, 4);
        const t = b[this.#pos] === 116;
        this.#pos += 3;
        return t;
      }
      case 44: {
        // , double (RESP3)
        const t = this.#text(b);
        return t === null ? this.#cut(at, b.length - at + 1, true) : Number(t);
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

  /**
   * Settles the oldest with the reply `v`: an error reply rejects it, anything else resolves it (a
   * promise, as it settles: a command sent again another way).
   */
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

  /** Rejects every awaited reply but the newest `keep` with `err`, oldest first. */
  failAll(err: Error, keep = 0): void {
    while (this.#count > keep) {
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
