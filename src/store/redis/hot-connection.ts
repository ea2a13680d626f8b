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
//   resolve/reject/binary in parallel arrays) and parsed from the socket's reads (a reply cut by
//   the end of a read resumed where it was cut: RespReader): RESP2, and the
//   RESP3 types a script can answer. Bulk strings are Buffers for a binary call (views of the
//   read), UTF-8 text otherwise; integers numbers; nil null — node-redis's RESP2 defaults. An error
//   reply rejects with node-redis's SimpleError (an ErrorReply), so lua.ts's load-and-retry and
//   EVALSHA fallbacks and connection.ts's toStoreError see exactly what node-redis gives them.
// - When written (`writes`): 'task' — at the end of the task that sent it (queueMicrotask: the
//   commands of one task in one write, each HTTP request's call as soon as its handler reached
//   it); 'turn' — at the end of the event-loop turn (setImmediate), as node-redis writes. A
//   socket that wants draining holds the writes until 'drain'.
// - A disconnect fails every command written with node-redis's SocketClosedUnexpectedlyError
//   (toStoreError: StoreUnavailable, a 503): it may have run, its reply is lost. A command sent but
//   never written (its write still to come, or held for 'drain', when the socket closed) provably
//   did not run: it goes to `fallback` (connection.ts: node-redis) and answers from there. From the
//   server's end of the socket ('end') on, `ready` is false and nothing more is written to it. The
//   connection is made again in the background, 100 ms doubling to 2 s with jitter (connection.ts's
//   strategy).
//   Deadlines stay connection.ts's (the caller's `deadline` around every send): no timers here but
//   the connect timeout.
// - Past `maxQueued` commands awaiting their reply a new one fails at once (node-redis's
//   commandsQueueMaxLength, connection.ts COMMAND_QUEUE_MAX).
// - close(): no new command; the socket ends once every command sent has its reply (connection.ts
//   bounds the wait, then destroy()).
// No pub/sub, no Sentinel or Cluster (those keep node-redis for every command).

import { isIP, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { SocketClosedUnexpectedlyError } from 'redis';
import { INCOMPLETE, PUSH, ReplyRing, RespReader, RespWriter } from './resp.ts';

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
  /**
   * Where a command goes that was sent here but never written to the socket when the socket
   * closed (node-redis: it provably did not run). Without it, such a command fails as a written one.
   */
  fallback?: (args: Array<string | Buffer>, binary: boolean) => Promise<unknown>;
}


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
  /** close()'s promise: a second call gets the first's. */
  #closingDone: Promise<void> | null = null;
  /** Commands encoded and not written yet. */
  readonly #writer = new RespWriter();
  /** Their arguments, oldest first (the newest entries of #ring): for opts.fallback at a close. */
  #unwritten: Array<Array<string | Buffer>> = [];
  #scheduled = false;
  #draining = false;
  readonly #flushNow = () => {
    this.#scheduled = false;
    this.#flush();
  };
  // The commands awaiting a reply, in the order sent: a ring in parallel arrays.
  /** The commands written and awaiting their reply. */
  readonly #ring = new ReplyRing();
  readonly #reader = new RespReader();

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
  send(args: Array<string | Buffer>, binary = false): Promise<unknown> {
    if (!this.#ready) return Promise.reject(new SocketClosedUnexpectedlyError());
    return this.#send(args, binary);
  }

  close(): Promise<void> {
    this.#closingDone ??= this.#close();
    return this.#closingDone;
  }

  #close(): Promise<void> {
    this.#closing = true;
    this.#ready = false;
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#retry = null;
    const socket = this.#socket;
    if (socket === null) return Promise.resolve();
    this.#flush();
    return new Promise((resolve) => {
      this.#closed = resolve;
      if (this.#ring.count === 0) socket.end();
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
    const socket = o.tls ? tlsConnect({ host: o.host, port: o.port, ...(isIP(o.host) !== 0 ? {} : { servername: o.host }) }) : netConnect({ host: o.host, port: o.port });
    socket.setNoDelay(true);
    // Keepalive as node-redis's socket has it: outside rotations and exchanges this connection is
    // idle, and a NAT or load balancer that drops idle flows would otherwise leave it `ready` on a
    // dead path (every hot call a deadline's 503) until the kernel gives up retransmitting.
    socket.setKeepAlive(true, 30_000);
    this.#socket = socket;
    let settled = false;
    /** AUTH and SELECT answered on this socket: the commands sent on it since were hot calls. */
    let opened = false;
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
    // The server closed it (or a proxy did): nothing can be written from now on, so new hot calls
    // go through node-redis at once rather than wait here for 'close' and fail.
    socket.on('end', () => {
      this.#ready = false;
    });
    socket.once(o.tls ? 'secureConnect' : 'connect', () => {
      const hello: Array<Promise<unknown>> = [];
      if (o.password !== undefined) hello.push(this.#send(o.username !== undefined ? ['AUTH', o.username, o.password] : ['AUTH', o.password], false));
      if (o.database !== 0) hello.push(this.#send(['SELECT', String(o.database)], false));
      Promise.all(hello).then(
        () => {
          if (this.#socket !== socket || this.#closing || !socket.writable) return done(false);
          this.#attempt = 0;
          opened = true;
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
      // Commands written may have run (their replies are lost): they fail. Commands never written
      // did not: node-redis sends them (not AUTH or SELECT, sent before the connection was ready).
      // Not during close() or destroy() either: connection.ts closes node-redis with this one, so
      // a fallback would race its close; they fail as written ones do (the store's 503), which a
      // shutdown's last requests may get anyway.
      const unwritten = this.#unwritten;
      this.#unwritten = [];
      const fallback = opened && !this.#closing ? o.fallback : undefined;
      this.#ring.failAll(new SocketClosedUnexpectedlyError(), fallback === undefined ? 0 : unwritten.length);
      if (fallback !== undefined) for (const args of unwritten) this.#ring.settle(sendAnotherWay(fallback, args, this.#ring.headBinary));
      this.#reader.reset();
      this.#writer.reset();
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

  #send(args: Array<string | Buffer>, binary: boolean): Promise<unknown> {
    if (this.#ring.count >= this.#opts.maxQueued) return Promise.reject(new Error('The hot Redis connection has too many commands awaiting their reply'));
    try {
      // Throws for an argument neither a string nor a Buffer (before it wrote anything): the
      // call's promise rejects, as every other failure of a hot call does.
      this.#writer.encode(args);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.#unwritten.push(args);
    const p = new Promise<unknown>((resolve, reject) => this.#ring.push(resolve, reject, binary));
    if (!this.#scheduled) {
      this.#scheduled = true;
      if (this.#opts.writes === 'task') queueMicrotask(this.#flushNow);
      else setImmediate(this.#flushNow);
    }
    return p;
  }

  #flush(): void {
    const socket = this.#socket;
    // A socket ended or destroyed (its 'close' not there yet) takes nothing: what waits here was
    // never written, and goes to node-redis at the close (opts.fallback).
    if (this.#writer.empty || socket === null || this.#draining || !socket.writable) return;
    this.#unwritten.length = 0;
    if (!socket.write(this.#writer.take())) this.#draining = true;
  }

  // ---- decoding ----

  #read(chunk: Buffer): void {
    const r = this.#reader;
    r.push(chunk);
    while (!r.idle) {
      if (this.#ring.count === 0) {
        // Bytes no command asked for: the stream is out of step; start again on a new connection.
        this.#opts.onError?.(new Error('the hot Redis connection received a reply no command awaited'));
        this.#socket?.destroy();
        return;
      }
      let v: unknown;
      try {
        v = r.next(this.#ring.headBinary);
      } catch (err) {
        this.#opts.onError?.(err);
        this.#socket?.destroy();
        return;
      }
      if (v === INCOMPLETE) break;
      // A RESP3 push (out-of-band) is not an answer: dropped.
      if (v !== PUSH) this.#ring.settle(v);
    }
    if (r.idle && this.#closing && this.#ring.count === 0) this.#socket?.end();
  }
}

/** `fallback`'s promise for the command, a rejected one if it throws. */
function sendAnotherWay(fallback: NonNullable<HotConnectionOptions['fallback']>, args: Array<string | Buffer>, binary: boolean): Promise<unknown> {
  try {
    return fallback(args, binary);
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}
