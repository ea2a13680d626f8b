// A lean pipelined Redis client for one hot call (the rotate FCALL), for bench/lean-resp-ab.ts only:
// how much of node-redis's per-command CPU (encoding, its write queue, its RESP decoder, the
// promise plumbing) a client that does only this would save. Not production code: one socket,
// no reconnect, no AUTH/SELECT/TLS, no Sentinel or Cluster, no pub/sub, no timeouts of its own
// (the caller's Deadlines bound it, as they bound node-redis in connection.ts).
//
// - Commands are encoded straight into a slab (no per-argument strings or arrays); a write takes a
//   view of the encoded bytes, and the slab is never written over (a new one when it is full).
// - Replies are matched to commands in order (a FIFO of resolve/reject/binary in parallel arrays).
// - Replies are parsed from the socket's chunks: RESP2 (+ - : $ *) and the RESP3 types a script
//   can answer (_ # , %); a reply cut between two reads is parsed again once the rest arrived.
//   Bulk strings are Buffers (views of the read) for a binary command, UTF-8 text otherwise; an
//   error reply is node-redis's ErrorReply, so lua.ts's fallbacks see what they expect.
// - When a command is written (WritePolicy): 'turn' — at the end of the event-loop turn
//   (setImmediate, as node-redis does); 'idle' — at once when no reply is awaited, else with the
//   turn's others; 'k<N>' — at once when N commands wait, else at the turn's end; 'micro' — at the
//   end of the task that sent it (queueMicrotask).

import { connect, type Socket } from 'node:net';
import { ErrorReply } from 'redis';

export type WritePolicy = 'turn' | 'idle' | 'micro' | `k${number}`;

const SLAB = 64 * 1024;
/** The parse ran past the bytes read so far: wait for more. */
const INCOMPLETE = Symbol('incomplete');
/** A RESP3 push, not an answer to a command. */
const PUSH = Symbol('push');

type Resolve = (v: unknown) => void;
type Reject = (e: Error) => void;

export class LeanResp {
  readonly #socket: Socket;
  readonly #policy: WritePolicy;
  readonly #k: number;
  #slab = Buffer.allocUnsafe(SLAB);
  /** Encoded bytes [#start, #off) of #slab not written yet. */
  #start = 0;
  #off = 0;
  #unwritten = 0;
  #scheduled = false;
  readonly #flushNow = () => {
    this.#scheduled = false;
    this.#flush();
  };
  // The FIFO of commands awaiting a reply, a ring in parallel arrays.
  #resolve = new Array<Resolve | undefined>(1024);
  #reject = new Array<Reject | undefined>(1024);
  #binary: boolean[] = new Array<boolean>(1024).fill(false);
  #head = 0;
  #count = 0;
  /** Written and not answered (the 'idle' policy). */
  #inFlight = 0;
  /** Bytes of a reply cut by the end of a read. */
  #rest: Buffer | null = null;
  #pos = 0;
  /** Commands sent and writes to the socket so far (for the bench). */
  sent = 0;
  writes = 0;

  private constructor(socket: Socket, policy: WritePolicy) {
    this.#socket = socket;
    this.#policy = policy;
    this.#k = policy.startsWith('k') ? Number(policy.slice(1)) : 0;
    socket.on('data', (chunk: Buffer) => this.#read(chunk));
    socket.on('close', () => this.#failAll(new Error('the lean RESP connection closed')));
    socket.on('error', () => undefined); // 'close' follows
  }

  static open(host: string, port: number, policy: WritePolicy): Promise<LeanResp> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port, noDelay: true });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new LeanResp(socket, policy));
      });
    });
  }

  /** One command; `binary`: its reply's bulk strings as Buffers. */
  send(args: ReadonlyArray<string | Buffer>, binary = false): Promise<unknown> {
    this.#encode(args);
    this.sent++;
    const p = new Promise<unknown>((resolve, reject) => this.#push(resolve, reject, binary));
    this.#unwritten++;
    switch (this.#policy) {
      case 'turn':
        this.#schedule();
        break;
      case 'idle':
        if (this.#inFlight === 0) this.#flush();
        else this.#schedule();
        break;
      case 'micro':
        if (!this.#scheduled) {
          this.#scheduled = true;
          queueMicrotask(this.#flushNow);
        }
        break;
      default:
        if (this.#unwritten >= this.#k) this.#flush();
        else this.#schedule();
    }
    return p;
  }

  close(): Promise<void> {
    this.#flush();
    return new Promise((resolve) => this.#socket.end(resolve));
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#flushNow);
  }

  #flush(): void {
    if (this.#off === this.#start) return;
    this.#socket.write(this.#slab.subarray(this.#start, this.#off));
    this.writes++;
    this.#start = this.#off;
    this.#inFlight += this.#unwritten;
    this.#unwritten = 0;
  }

  // ---- encoding ----

  #encode(args: ReadonlyArray<string | Buffer>): void {
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
        o = this.#int(Buffer.byteLength(a), o);
        o += b.write(a, o, 'utf8');
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

  // ---- the FIFO ----

  #push(resolve: Resolve, reject: Reject, binary: boolean): void {
    if (this.#count === this.#resolve.length) this.#grow();
    const i = (this.#head + this.#count) & (this.#resolve.length - 1);
    this.#resolve[i] = resolve;
    this.#reject[i] = reject;
    this.#binary[i] = binary;
    this.#count++;
  }

  #grow(): void {
    const n = this.#resolve.length;
    const order = (xs: unknown[]) => [...xs.slice(this.#head), ...xs.slice(0, this.#head)];
    this.#resolve = [...order(this.#resolve), ...new Array<undefined>(n)] as Array<Resolve | undefined>;
    this.#reject = [...order(this.#reject), ...new Array<undefined>(n)] as Array<Reject | undefined>;
    this.#binary = [...(order(this.#binary) as boolean[]), ...new Array<boolean>(n).fill(false)];
    this.#head = 0;
  }

  #settle(v: unknown): void {
    const i = this.#head;
    const resolve = this.#resolve[i];
    const reject = this.#reject[i];
    this.#resolve[i] = undefined;
    this.#reject[i] = undefined;
    this.#head = (i + 1) & (this.#resolve.length - 1);
    this.#count--;
    this.#inFlight--;
    if (v instanceof ErrorReply) reject?.(v);
    else resolve?.(v);
  }

  #failAll(err: Error): void {
    while (this.#count > 0) {
      const i = this.#head;
      this.#reject[i]?.(err);
      this.#resolve[i] = undefined;
      this.#reject[i] = undefined;
      this.#head = (i + 1) & (this.#resolve.length - 1);
      this.#count--;
    }
  }

  // ---- decoding ----

  #read(chunk: Buffer): void {
    let b = chunk;
    if (this.#rest !== null) {
      b = Buffer.concat([this.#rest, chunk]);
      this.#rest = null;
    }
    let start = 0;
    while (start < b.length && this.#count > 0) {
      this.#pos = start;
      const v = this.#value(b, this.#binary[this.#head] as boolean);
      if (v === INCOMPLETE) break;
      start = this.#pos;
      // A RESP3 push (out-of-band) is not an answer: dropped.
      if (v !== PUSH) this.#settle(v);
    }
    if (start < b.length) this.#rest = b.subarray(start);
  }

  /** The integer at #pos up to CRLF (moving #pos past it), or NaN when the line is not all there. */
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

  /** The text of the line at #pos (moving #pos past its CRLF), or null when it is not all there. */
  #text(b: Buffer): string | null {
    const end = b.indexOf(13, this.#pos);
    if (end < 0 || end + 1 >= b.length) return null;
    const s = b.toString('utf8', this.#pos, end);
    this.#pos = end + 2;
    return s;
  }

  #value(b: Buffer, binary: boolean): unknown {
    if (this.#pos >= b.length) return INCOMPLETE;
    const type = b[this.#pos++];
    switch (type) {
      case 36: {
        // $ bulk string
        const n = this.#line(b);
        if (Number.isNaN(n)) return INCOMPLETE;
        if (n < 0) return null;
        const s = this.#pos;
        if (s + n + 2 > b.length) return INCOMPLETE;
        this.#pos = s + n + 2;
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
          const v = this.#value(b, binary);
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
        return m === null ? INCOMPLETE : new ErrorReply(m);
      }
      case 95: // _ null (RESP3)
        if (this.#pos + 2 > b.length) return INCOMPLETE;
        this.#pos += 2;
        return null;
      case 35: {
        // # boolean (RESP3)
        if (this.#pos + 3 > b.length) return INCOMPLETE;
        const t = b[this.#pos] === 116;
        this.#pos += 3;
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
        for (let i = 0; i < n; i++) if (this.#value(b, false) === INCOMPLETE) return INCOMPLETE;
        return PUSH;
      }
      default:
        throw new Error(`lean RESP: unknown reply type ${String(type)}`);
    }
  }
}
