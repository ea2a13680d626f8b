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
import { INCOMPLETE, PUSH, RespReader, RespWriter } from '../src/store/redis/resp.ts';

export type WritePolicy = 'turn' | 'idle' | 'micro' | `k${number}`;


type Resolve = (v: unknown) => void;
type Reject = (e: Error) => void;

export class LeanResp {
  readonly #socket: Socket;
  readonly #policy: WritePolicy;
  readonly #k: number;
  /** Commands encoded and not written yet. */
  readonly #writer = new RespWriter();
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
  readonly #reader = new RespReader();
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
    this.#writer.encode(args);
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
    if (this.#writer.empty) return;
    this.#socket.write(this.#writer.take());
    this.writes++;
    this.#inFlight += this.#unwritten;
    this.#unwritten = 0;
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
      this.#reader.pos = start;
      const v = this.#reader.value(b, this.#binary[this.#head] as boolean);
      if (v === INCOMPLETE) break;
      start = this.#reader.pos;
      // A RESP3 push (out-of-band) is not an answer: dropped.
      if (v !== PUSH) this.#settle(v);
    }
    if (start < b.length) this.#rest = b.subarray(start);
  }

}
