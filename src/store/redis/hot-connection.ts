// A lean second connection for the hot Function calls (the refresh-token rotation's FCALL and the
// SSO exchange's look-up-and-redeem: LuaScript.hot), beside node-redis on a standalone Redis
// (connection.ts). Why: node-redis writes the commands of an event-loop turn in one write at
// setImmediate, so a server that parsed a clump of HTTP requests sends their calls only after the
// whole clump, Redis answers them together, and the server's core then idles
// (docs/performance.md, "A lean connection for the hot Function calls"). Writing each command at
// the end of its task closes that idle; through node-redis it cost a writev of five chunks per
// command, here one write of one encoded command, and the client's own work per call is smaller
// (no per-argument strings or chunk arrays, no per-command objects but the promise).
//
// What it does, and what it leaves to node-redis:
// - One socket (TCP, or TLS for rediss://), RESP2 like the node-redis connection; on connect AUTH
//   (username and password, or the password alone) and SELECT (a database other than 0), then
//   `ready`. Until then, and while it reconnects, `ready` is false and connection.ts sends the hot
//   calls through node-redis: this connection is never the only way to Redis.
// - Commands are encoded straight into a slab (never written over while a write may hold a view
//   of it: a new one when it is full); replies are matched to commands in order (a ring of
//   resolve/reject/binary in parallel arrays) and parsed from the socket's reads: RESP2, and the
//   RESP3 types a script can answer. Bulk strings are Buffers for a binary call (views of the
//   read), UTF-8 text otherwise; integers numbers; nil null — node-redis's RESP2 defaults. An error
//   reply rejects with node-redis's SimpleError (an ErrorReply), so lua.ts's load-and-retry and
//   EVALSHA fallbacks and connection.ts's toStoreError see exactly what node-redis gives them.
// - When written (`writes`): 'task' — at the end of the task that sent it (queueMicrotask: the
//   commands of one task in one write, each HTTP request's call as soon as its handler reached
//   it); 'turn' — at the end of the event-loop turn (setImmediate), as node-redis writes. A
//   socket that wants draining holds the writes until 'drain'.
// - A disconnect fails every command written or waiting with node-redis's
//   SocketClosedUnexpectedlyError (toStoreError: StoreUnavailable, a 503); the connection is made
//   again in the background, 100 ms doubling to 2 s with jitter (connection.ts's strategy).
//   Deadlines stay connection.ts's (the caller's `deadline` around every send): no timers here but
//   the connect timeout.
// - Past `maxQueued` commands awaiting their reply a new one fails at once (node-redis's
//   commandsQueueMaxLength, connection.ts COMMAND_QUEUE_MAX).
// - close(): no new command; the socket ends once every command sent has its reply (connection.ts
//   bounds the wait, then destroy()).
// No pub/sub, no Sentinel or Cluster (those keep node-redis for every command).

import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { SimpleError, SocketClosedUnexpectedlyError } from 'redis';

/** When a hot call is written: at the end of its task, or of the event-loop turn (node-redis's). */
export type HotWrites = 'task' | 'turn';

export interface HotConnectionOptions {
  host: string;
  port: number;
  tls: boolean;
  username?: string;
  password?: string;
  database: number;
  /** Bound on each connection attempt (connect and AUTH/SELECT). */
  connectTimeoutMs: number;
  writes: HotWrites;
  /** Commands awaiting their reply, at most; past it a new one fails at once. */
  maxQueued: number;
  /** Background connection errors (they never reach a request). */
  onError?: (err: unknown) => void;
}

const SLAB = 64 * 1024;
/** The parse ran past the bytes read so far: wait for more. */
const INCOMPLETE = Symbol('incomplete');
/** A RESP3 push, not an answer to a command. */
const PUSH = Symbol('push');

type Resolve = (v: unknown) => void;
type Reject = (e: Error) => void;

/** Backoff between connection attempts: 100 ms doubling to 2 s, half of it jitter. */
function backoff(attempt: number): number {
  const base = Math.min(100 * 2 ** Math.min(attempt, 5), 2000);
  return Math.round(base / 2 + Math.random() * (base / 2));
}

export class HotConnection {
  readonly #opts: HotConnectionOptions;
  #socket: Socket | null = null;
  /** Connected, AUTH and SELECT answered: hot calls may come here. */
  #ready = false;
  #closing = false;
  #attempt = 0;
  #retry: NodeJS.Timeout | null = null;
  /** Resolved once the socket has ended after close(). */
  #closed: (() => void) | null = null;
  #slab = Buffer.allocUnsafe(SLAB);
  /** Encoded bytes [#start, #off) of #slab not written yet. */
  #start = 0;
  #off = 0;
  #scheduled = false;
  #draining = false;
  readonly #flushNow = () => {
    this.#scheduled = false;
    this.#flush();
  };
  // The commands awaiting a reply, in the order sent: a ring in parallel arrays.
  #resolve = new Array<Resolve | undefined>(1024);
  #reject = new Array<Reject | undefined>(1024);
  #binary: boolean[] = new Array<boolean>(1024).fill(false);
  #head = 0;
  #count = 0;
  /** Bytes of a reply cut by the end of a read. */
  #rest: Buffer | null = null;
  #pos = 0;

  constructor(opts: HotConnectionOptions) {
    this.#opts = opts;
  }

  /** Whether hot calls may be sent here now (else through node-redis). */
  get ready(): boolean {
    return this.#ready;
  }

  /** The first connection: resolves ready or not (false: it goes on trying in the background). */
  start(): Promise<boolean> {
    return new Promise((resolve) => this.#connect(resolve));
  }

  /** One command; `binary`: its reply's bulk strings as Buffers. Only while `ready`. */
  send(args: ReadonlyArray<string | Buffer>, binary = false): Promise<unknown> {
    if (!this.#ready) return Promise.reject(new SocketClosedUnexpectedlyError());
    return this.#send(args, binary);
  }

  close(): Promise<void> {
    this.#closing = true;
    this.#ready = false;
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#retry = null;
    const socket = this.#socket;
    if (socket === null) return Promise.resolve();
    this.#flush();
    return new Promise((resolve) => {
      this.#closed = resolve;
      if (this.#count === 0) socket.end();
    });
  }

  /** Tears the socket down at once (connection.ts, when close() took too long). */
  destroy(): void {
    this.#closing = true;
    this.#ready = false;
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#retry = null;
    this.#socket?.destroy();
  }

  // ---- the connection ----

  #connect(started?: (ready: boolean) => void): void {
    this.#retry = null;
    const o = this.#opts;
    const socket = o.tls ? tlsConnect({ host: o.host, port: o.port, ...(isIpAddress(o.host) ? {} : { servername: o.host }) }) : netConnect({ host: o.host, port: o.port });
    socket.setNoDelay(true);
    this.#socket = socket;
    let settled = false;
    const done = (ready: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      started?.(ready);
    };
    const timer = setTimeout(() => {
      o.onError?.(new Error('the hot Redis connection did not open in time'));
      socket.destroy();
    }, o.connectTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.#read(chunk));
    socket.on('drain', () => {
      this.#draining = false;
      this.#flush();
    });
    socket.on('error', (err) => o.onError?.(err)); // 'close' follows
    socket.once(o.tls ? 'secureConnect' : 'connect', () => {
      const hello: Array<Promise<unknown>> = [];
      if (o.password !== undefined) hello.push(this.#send(o.username !== undefined ? ['AUTH', o.username, o.password] : ['AUTH', o.password], false));
      if (o.database !== 0) hello.push(this.#send(['SELECT', String(o.database)], false));
      Promise.all(hello).then(
        () => {
          if (this.#socket !== socket || this.#closing) return done(false);
          this.#attempt = 0;
          this.#ready = true;
          done(true);
        },
        (err: unknown) => {
          o.onError?.(err);
          socket.destroy();
        },
      );
    });
    socket.once('close', () => {
      this.#ready = false;
      this.#socket = null;
      this.#failAll(new SocketClosedUnexpectedlyError());
      this.#rest = null;
      this.#slab = Buffer.allocUnsafe(SLAB);
      this.#start = this.#off = 0;
      this.#draining = false;
      done(false);
      if (this.#closing) {
        this.#closed?.();
        this.#closed = null;
        return;
      }
      this.#retry = setTimeout(() => this.#connect(), backoff(this.#attempt++));
      this.#retry.unref();
    });
  }

  #send(args: ReadonlyArray<string | Buffer>, binary: boolean): Promise<unknown> {
    if (this.#count >= this.#opts.maxQueued) return Promise.reject(new Error('The hot Redis connection has too many commands awaiting their reply'));
    this.#encode(args);
    const p = new Promise<unknown>((resolve, reject) => this.#push(resolve, reject, binary));
    if (!this.#scheduled) {
      this.#scheduled = true;
      if (this.#opts.writes === 'task') queueMicrotask(this.#flushNow);
      else setImmediate(this.#flushNow);
    }
    return p;
  }

  #flush(): void {
    const socket = this.#socket;
    if (this.#off === this.#start || socket === null || this.#draining) return;
    if (!socket.write(this.#slab.subarray(this.#start, this.#off))) this.#draining = true;
    this.#start = this.#off;
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

  // ---- the ring of commands awaiting a reply ----

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
    const order = <T>(xs: T[]): T[] => [...xs.slice(this.#head), ...xs.slice(0, this.#head)];
    this.#resolve = [...order(this.#resolve), ...new Array<undefined>(n)];
    this.#reject = [...order(this.#reject), ...new Array<undefined>(n)];
    this.#binary = [...order(this.#binary), ...new Array<boolean>(n).fill(false)];
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
    if (v instanceof SimpleError) reject?.(v);
    else resolve?.(v);
  }

  #failAll(err: Error): void {
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

  // ---- decoding ----

  #read(chunk: Buffer): void {
    let b = chunk;
    if (this.#rest !== null) {
      b = Buffer.concat([this.#rest, chunk]);
      this.#rest = null;
    }
    let start = 0;
    while (start < b.length) {
      if (this.#count === 0) {
        // Bytes no command asked for: the stream is out of step; start again on a new connection.
        this.#opts.onError?.(new Error('the hot Redis connection received a reply no command awaited'));
        this.#socket?.destroy();
        return;
      }
      this.#pos = start;
      let v: unknown;
      try {
        v = this.#value(b, this.#binary[this.#head] as boolean);
      } catch (err) {
        this.#opts.onError?.(err);
        this.#socket?.destroy();
        return;
      }
      if (v === INCOMPLETE) break;
      start = this.#pos;
      // A RESP3 push (out-of-band) is not an answer: dropped.
      if (v !== PUSH) this.#settle(v);
    }
    if (start < b.length) this.#rest = b.subarray(start);
    else if (this.#closing && this.#count === 0) this.#socket?.end();
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
        return m === null ? INCOMPLETE : new SimpleError(m);
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
        throw new Error(`the hot Redis connection read an unknown reply type ${String(type)}`);
    }
  }
}

function isIpAddress(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
