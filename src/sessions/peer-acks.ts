// Acknowledgements from the other Tessera processes on one store: an explicit end (logout,
// revocation, admin) answers only once every other live process has said that it will refuse the
// ended sessions — or after a bounded wait (FEED_ECHO_TIMEOUT_MS in app-sessions.ts).
//
// The race it closes. Every process caches sessions and drops them when the store's feed of ends
// tells it (session-cache.ts). An end used to answer once it came back through this process's own
// subscription to that feed, on the assumption that the others heard it at the same moment. On
// Redis one PUBLISH writes to every subscriber at once, so that held in practice; on PostgreSQL
// each LISTEN connection reads the notification queue on its own schedule, and on a SQLite file
// shared by several processes the others poll the log of ends every 20 ms — so process B could
// still answer the ended session from memory to a request made after the end had answered on A
// (seen in CI: once in 20 trials on PostgreSQL). Now A also asks every process it knows of, over
// the store's channel between the processes (Coordination.publishToPeers), to forget the ended
// sessions, and each of them answers only after it has dropped them from its cache: when A has
// every answer, no other process serves them from memory any more.
//
// The messages (text, fields separated by one space; `<id>` a process's random id):
//   hello <id>                  I am here: at start (before serving), every PEER_HEARTBEAT_MS,
//                               and at once in reply to a hello from a process not known yet
//   bye <id>                    I stop (or can no longer hear this channel): do not wait for me
//   end <id> <n> <handle>...    request n: forget these ended sessions and acknowledge
//   ack <id> <to>.<n>...        I have forgotten the sessions of request n of process <to>
// Only a hello makes a process known (an end or ack from an unknown id is handled but does not
// add it: a process that said bye is not brought back by what it still publishes). Hellos and
// byes go out in the order said, each after the one before was published.
// A process not heard from for PEER_FORGET_AFTER_MS is forgotten (it died without a bye). The
// channel is fire-and-forget: a lost request or answer costs the waiting end its bounded wait.
//
// What is not guaranteed, and why it is small: a process that started a moment ago may not be
// known yet to a process ending sessions (its hello is on its way); it has cached only what it
// served since, and the end is still on its feed. A process that cannot hear this channel says
// bye and serves nothing from memory until it hears again (its session cache counts the channel
// as one of its feeds), so nobody needs its answer meanwhile.

import { randomBytes } from 'node:crypto';
import { PEER_MESSAGE_MAX_BYTES, type Coordination, type FeedChange } from '../store/coordination-port.ts';

/** How often a process says hello (and forgets the processes it has not heard from). */
export const PEER_HEARTBEAT_MS = 2_000;
/** A process not heard from for this long (three heartbeats) is no longer waited for. */
export const PEER_FORGET_AFTER_MS = 3 * PEER_HEARTBEAT_MS;
/** At most this many other processes are known at once (a bound against a flood of ids). */
const MAX_PEERS = 1_000;

const ID = /^[0-9a-f]{16}$/;
const REQUEST = /^[0-9]{1,15}$/;

/** What of the session cache the channel needs: dropping ended sessions, and being a feed of it. */
export interface PeerCache {
  forget(handles: Iterable<string>): void;
  feedChanged(feed: string, change: FeedChange): void;
}

export interface PeerAcksOptions {
  heartbeatMs?: number;
  forgetAfterMs?: number;
  /** A monotonic clock, ms (default performance.now): liveness, not session time. */
  now?: () => number;
  /** Publishing failed (the store is down): the waits concerned run into their timeout. */
  onError?: (err: unknown) => void;
  /**
   * A wait ran into its timeout: the end answered before these processes acknowledged it, so
   * for them "refused by the very next request" was not proven (a lost message, a process that
   * died without bye or too loaded to answer in time).
   */
  onUnanswered?: (peers: string[]) => void;
}

interface Request {
  /** The processes that have not acknowledged yet. */
  awaiting: Set<string>;
  /** Everyone asked has acknowledged (or left). */
  done: () => void;
  /** The process stops: the wait ends unanswered. */
  abandon: () => void;
}

export class PeerAcks {
  /** This process's id on the channel. */
  readonly id = randomBytes(8).toString('hex');
  readonly #channel: Pick<Coordination, 'publishToPeers' | 'subscribePeers'>;
  readonly #cache: PeerCache;
  readonly #heartbeatMs: number;
  readonly #forgetAfterMs: number;
  readonly #now: () => number;
  readonly #onError: (err: unknown) => void;
  readonly #onUnanswered: (peers: string[]) => void;
  /** Other processes → when last heard from. */
  readonly #peers = new Map<string, number>();
  readonly #requests = new Map<number, Request>();
  #nextRequest = 0;
  #subscription: { close(): Promise<void> } | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** Acknowledgements not sent yet (`<to>.<n>`), sent together once the current delivery is handled. */
  #acks: string[] = [];
  #hearing = true;
  /** stop() began: no hello and no acknowledgement goes out any more (the bye is the last word). */
  #left = false;
  /**
   * The hellos and byes, published one after the other in the order said: a hello still in
   * flight (on PostgreSQL, on another pool connection) cannot commit after the bye that followed
   * it and bring a process that left back for PEER_FORGET_AFTER_MS.
   */
  #presence: Promise<void> = Promise.resolve();

  constructor(channel: Pick<Coordination, 'publishToPeers' | 'subscribePeers'>, cache: PeerCache, opts: PeerAcksOptions = {}) {
    this.#channel = channel;
    this.#cache = cache;
    this.#heartbeatMs = opts.heartbeatMs ?? PEER_HEARTBEAT_MS;
    this.#forgetAfterMs = opts.forgetAfterMs ?? PEER_FORGET_AFTER_MS;
    this.#now = opts.now ?? (() => performance.now());
    this.#onError = opts.onError ?? (() => undefined);
    this.#onUnanswered = opts.onUnanswered ?? (() => undefined);
  }

  /** Subscribes and says hello (published before this resolves, so before the process serves). */
  async start(): Promise<void> {
    if (this.#subscription !== null) return;
    this.#left = false;
    this.#subscription = await this.#channel.subscribePeers(
      (message) => this.#receive(message),
      (change) => this.#changed(change),
    );
    await this.#say('hello');
    this.#timer = setInterval(() => this.heartbeat(), this.#heartbeatMs);
    this.#timer.unref();
  }

  /** Says bye and unsubscribes; waits in progress resolve (false) at once. */
  async stop(): Promise<void> {
    if (this.#subscription === null) return;
    this.#left = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#say('bye');
    const sub = this.#subscription;
    this.#subscription = null;
    await sub.close();
    this.#peers.clear();
    for (const r of [...this.#requests.values()]) r.abandon();
    this.#requests.clear();
  }

  /** The other processes known now. */
  get peers(): string[] {
    return [...this.#peers.keys()];
  }

  /** Forgets the processes not heard from for a while, and says hello. */
  heartbeat(): void {
    const now = this.#now();
    for (const [peer, heard] of this.#peers) {
      if (now - heard > this.#forgetAfterMs) this.#drop(peer);
    }
    if (this.#hearing && !this.#left) void this.#say('hello');
  }

  /**
   * Asks every other live process to forget `handles` (sessions this process has just ended) and
   * resolves once each has acknowledged all of them (true), or after `timeoutMs` (false). With no
   * other process known it resolves at once. While this process cannot hear the channel (or is
   * stopping) it resolves false at once: no answer could reach it, the others are asked all the
   * same (best effort), and it serves nothing from memory meanwhile (its cache counts the channel
   * as a feed).
   */
  confirmEnded(handles: readonly string[], timeoutMs: number): Promise<boolean> {
    if (this.#subscription === null || handles.length === 0) return Promise.resolve(true);
    if (!this.#hearing || this.#left) {
      if (!this.#left) void this.#publish(chunks(handles, (n) => `end ${this.id} ${n}`, () => this.#nextRequest++).map((c) => c.message));
      return Promise.resolve(false);
    }
    const now = this.#now();
    for (const [peer, heard] of this.#peers) {
      if (now - heard > this.#forgetAfterMs) this.#drop(peer);
    }
    if (this.#peers.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const pending = new Set<number>();
      const giveUp = () => {
        clearTimeout(timer);
        for (const n of pending) this.#requests.delete(n);
        pending.clear();
        resolve(false);
      };
      const timer = setTimeout(() => {
        const silent = new Set<string>();
        for (const n of pending) for (const peer of this.#requests.get(n)?.awaiting ?? []) silent.add(peer);
        giveUp();
        if (silent.size > 0) this.#onUnanswered([...silent]);
      }, timeoutMs);
      const messages: string[] = [];
      for (const chunk of chunks(handles, (n) => `end ${this.id} ${n}`, () => this.#nextRequest++)) {
        pending.add(chunk.n);
        this.#requests.set(chunk.n, {
          awaiting: new Set(this.#peers.keys()),
          done: () => {
            this.#requests.delete(chunk.n);
            pending.delete(chunk.n);
            if (pending.size > 0) return;
            clearTimeout(timer);
            resolve(true);
          },
          abandon: giveUp,
        });
        messages.push(chunk.message);
      }
      void this.#publish(messages);
    });
  }

  #receive(message: string): void {
    const parts = message.split(' ');
    const kind = parts[0];
    const from = parts[1];
    if (from === undefined || from === this.id || !ID.test(from)) return;
    if (kind === 'bye') {
      this.#drop(from);
      return;
    }
    if (kind === 'end' && !REQUEST.test(parts[2] ?? '')) return;
    if (kind !== 'hello' && kind !== 'end' && kind !== 'ack') return;
    const known = this.#peers.has(from);
    // Only a hello makes a process known: an end or ack from one that said bye (it can still
    // publish but no longer hear, or the message was in flight when it left) must not bring it
    // back to be waited for. From a known process any message says it is alive.
    if (known || (kind === 'hello' && this.#peers.size < MAX_PEERS)) this.#peers.set(from, this.#now());
    switch (kind) {
      case 'hello':
        // A newcomer learns of this process at once, not at its next heartbeat.
        if (!known && this.#hearing && !this.#left) void this.#say('hello');
        return;
      case 'end':
        // Forgotten first: the acknowledgement means "this process refuses them from now on".
        this.#cache.forget(parts.slice(3).filter((h) => h !== ''));
        if (this.#acks.length === 0) setImmediate(() => this.#sendAcks());
        this.#acks.push(`${from}.${parts[2]}`);
        return;
      case 'ack':
        for (const key of parts.slice(2)) {
          const dot = key.indexOf('.');
          if (dot < 0 || key.slice(0, dot) !== this.id) continue;
          const request = this.#requests.get(Number(key.slice(dot + 1)));
          if (request === undefined) continue;
          request.awaiting.delete(from);
          if (request.awaiting.size === 0) request.done();
        }
        return;
    }
  }

  /** The channel went down or came back: while it is down this process is deaf to requests. */
  #changed(change: FeedChange): void {
    this.#hearing = change === 'up';
    // Nothing from memory while requests to forget may be missed (session-cache.ts).
    this.#cache.feedChanged('peers', change);
    // Down: the others need not wait for this process (it serves nothing from memory); if the bye
    // is lost they wait until they forget it. Up: known again at once.
    if (!this.#left) void this.#say(change === 'up' ? 'hello' : 'bye');
  }

  #sendAcks(): void {
    const acks = this.#acks;
    this.#acks = [];
    if (acks.length === 0 || this.#subscription === null || this.#left) return;
    void this.#publish(chunks(acks, () => `ack ${this.id}`, () => 0).map((c) => c.message));
  }

  /** A process that left (bye) or went silent: no wait waits for it any more. */
  #drop(peer: string): void {
    if (!this.#peers.delete(peer)) return;
    for (const r of [...this.#requests.values()]) {
      if (r.awaiting.delete(peer) && r.awaiting.size === 0) r.done();
    }
  }

  /**
   * Says hello or bye after what was said before has been published (or failed). A hello is
   * dropped if, by its turn, this process left or cannot hear.
   */
  #say(kind: 'hello' | 'bye'): Promise<void> {
    this.#presence = this.#presence.then(() => {
      if (kind === 'hello' && (this.#left || !this.#hearing)) return;
      return this.#publish([`${kind} ${this.id}`]);
    });
    return this.#presence;
  }

  async #publish(messages: string[]): Promise<void> {
    try {
      await this.#channel.publishToPeers(messages);
    } catch (err) {
      this.#onError(err);
    }
  }
}

/** `items` after a head, in messages of at most PEER_MESSAGE_MAX_BYTES (each a request `n`). */
function chunks(items: readonly string[], head: (n: number) => string, next: () => number): { n: number; message: string }[] {
  const out: { n: number; message: string }[] = [];
  let n = next();
  let message = head(n);
  let bytes = Buffer.byteLength(message);
  let count = 0;
  for (const item of items) {
    const size = 1 + Buffer.byteLength(item);
    if (count > 0 && bytes + size > PEER_MESSAGE_MAX_BYTES) {
      out.push({ n, message });
      n = next();
      message = head(n);
      bytes = Buffer.byteLength(message);
      count = 0;
    }
    message += ` ${item}`;
    bytes += size;
    count += 1;
  }
  if (count > 0) out.push({ n, message });
  return out;
}
