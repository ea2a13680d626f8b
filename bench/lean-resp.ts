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
import { INCOMPLETE, PUSH, ReplyRing, RespReader, RespWriter } from '../src/store/redis/resp.ts';

export type WritePolicy = 'turn' | 'idle' | 'micro' | `k${number}`;


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
  /** The commands written and awaiting their reply. */
  readonly #ring = new ReplyRing();
  /** Written and not answered (the 'idle' policy). */
  #inFlight = 0;
  readonly #reader = new RespReader();
  /** Commands sent and writes to the socket so far (for the bench). */
  sent = 0;
  writes = 0;

  private constructor(socket: Socket, policy: WritePolicy) {
    this.#socket = socket;
    this.#policy = policy;
    this.#k = policy.startsWith('k') ? Number(policy.slice(1)) : 0;
    socket.on('data', (chunk: Buffer) => this.#read(chunk));
    socket.on('close', () => this.#ring.failAll(new Error('the lean RESP connection closed')));
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
    const p = new Promise<unknown>((resolve, reject) => this.#ring.push(resolve, reject, binary));
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

  // ---- decoding ----

  #read(chunk: Buffer): void {
    const r = this.#reader;
    r.push(chunk);
    while (!r.idle && this.#ring.count > 0) {
      const v = r.next(this.#ring.headBinary);
      if (v === INCOMPLETE) break;
      // A RESP3 push (out-of-band) is not an answer: dropped.
      if (v !== PUSH) {
        this.#inFlight--;
        this.#ring.settle(v);
      }
    }
  }

}
