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
//   hello <id> <k>              I am here: at start (before serving), every PEER_HEARTBEAT_MS,
//                               and at once in reply to a hello from a process not known yet
//   probe <id> <k>              (instead of hello while this process's channel is down) ignored
//                               by the others
//   bye <id>                    I stop (or can no longer hear this channel): do not wait for me
//   end <id> <n> <handle>...    request n: forget these ended sessions and acknowledge
//   ack <id> <to>.<n>...        I have forgotten the sessions of request n of process <to>
// Only a hello makes a process known (an end or ack from an unknown id is handled but does not
// add it: a process that said bye is not brought back by what it still publishes). Hellos and
// byes go out in the order said, each after the one before was published.
// A process not heard from for PEER_FORGET_AFTER_MS is forgotten (it died without a bye).
//
// Self-echo: each process must hear its own hellos come back (k numbers them; a process of an
// older release ignores it). If one cannot be published, or the one of a heartbeat is not back by
// the next heartbeat (PEER_HEARTBEAT_MS, well within the PEER_FORGET_AFTER_MS after which the
// others forget it), the channel counts as down for this process exactly as when the store
// reports it down: it serves nothing from memory, says bye, and probes (`probe`, which makes it
// known to nobody) until one published after the trouble comes back — then hello. Without that,
// a process that can hear but not publish (PostgreSQL pool exhausted, SQLITE_BUSY) would be
// forgotten by the others while it still served from memory, and a SQLite reader whose reads
// fail (the adapter reports no 'down') would miss requests to forget. The
// channel is fire-and-forget: a lost request or answer costs the waiting end its bounded wait.
//
// What is not guaranteed, and why it is small: a process starts serving once its own hello came
// back and PEER_START_SETTLE_MS more passed for the others' replies (start); one whose reply
// takes longer is not waited for by its ends until the reply arrives (nor waits for it, if it
// has not heard the hello yet) — the newcomer
// has cached only what it served since, and the end is still on its feed. A process that cannot hear this channel says
// bye and serves nothing from memory until it hears again (its session cache counts the channel
// as one of its feeds), so nobody needs its answer meanwhile.

import { randomBytes } from 'node:crypto';
import { PEER_MESSAGE_MAX_BYTES, type Coordination, type FeedChange } from '../store/coordination-port.ts';

/** How often a process says hello (and forgets the processes it has not heard from). */
export const PEER_HEARTBEAT_MS = 2_000;
/** A process not heard from for this long (three heartbeats) is no longer waited for. */
export const PEER_FORGET_AFTER_MS = 3 * PEER_HEARTBEAT_MS;
/**
 * On a SQLite file each hello is a write (BEGIN IMMEDIATE): every 10 s there, not every 2 s, so an
 * idle server does not write its file every 2 s. The price: a process killed without bye is
 * waited for (FEED_ECHO_TIMEOUT_MS per explicit end) for up to 30 s instead of 6 s, and one that
 * stops hearing its own hellos is found out within 10–20 s.
 */
export const SQLITE_PEER_HEARTBEAT_MS = 10_000;

/** The heartbeat and the forget-after bound for a store (`SessionStore.kind`). */
export function peerTiming(storeKind: string): { heartbeatMs: number; forgetAfterMs: number } {
  const heartbeatMs = storeKind === 'sqlite' ? SQLITE_PEER_HEARTBEAT_MS : PEER_HEARTBEAT_MS;
  return { heartbeatMs, forgetAfterMs: 3 * heartbeatMs };
}
/**
 * At start, after its own hello has come back, a process waits this long for the others' replies
 * before it serves: they heard the hello about when it did (one Redis PUBLISH reaches every
 * subscriber at once; PostgreSQL LISTEN connections read it within a round trip; other processes
 * on a SQLite file within a 20 ms poll), and each answers with one publish, which reaches it
 * within one more delivery (SQLite: 2 × FEED_POLL_MS and a write, with margin).
 */
export const PEER_START_SETTLE_MS = 100;
/** At most this many other processes are known at once (a bound against a flood of ids). */
const MAX_PEERS = 1_000;

const ID = /^[0-9a-f]{16}$/;
const REQUEST = /^[0-9]{1,15}$/;
/** A failure of the channel is logged at most once in this long (with how many were not). */
export const PEER_LOG_INTERVAL_MS = 60_000;

/** What of the session cache the channel needs: dropping ended sessions, and being a feed of it. */
export interface PeerCache {
  forget(handles: Iterable<string>): void;
  feedChanged(feed: string, change: FeedChange): void;
}

export interface PeerAcksOptions {
  heartbeatMs?: number;
  /** The wait for the others' replies at start (PEER_START_SETTLE_MS). */
  settleMs?: number;
  /** How the start waits `settleMs` (tests make it a step of their own). */
  sleep?: (ms: number) => Promise<void>;
  forgetAfterMs?: number;
  /** A monotonic clock, ms (default performance.now): liveness, not session time. */
  now?: () => number;
  /**
   * Publishing failed (the store is down): the waits concerned run into their timeout. At most
   * once per PEER_LOG_INTERVAL_MS; `suppressed` failures were not reported since the last call.
   */
  onError?: (err: unknown, suppressed: number) => void;
  /**
   * The channel went down or came back for this process (store report or self-echo); `reason`
   * says which. Down is reported at most once per PEER_LOG_INTERVAL_MS (up after a reported down).
   */
  onChannel?: (change: FeedChange, reason: string, suppressed: number) => void;
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
  readonly #settleMs: number;
  readonly #sleep: (ms: number) => Promise<void>;
  /** start() waits for its own hello to come back: resolved by #echoHeard. */
  #echoWait: { k: number; resolve: () => void } | null = null;
  readonly #forgetAfterMs: number;
  readonly #now: () => number;
  readonly #onError: (err: unknown, suppressed: number) => void;
  readonly #onChannel: (change: FeedChange, reason: string, suppressed: number) => void;
  readonly #errorLog: RateLimit;
  readonly #downLog: RateLimit;
  /** The last down was reported (so its up is too). */
  #downReported = false;
  readonly #onUnanswered: (peers: string[]) => void;
  /** Other processes → when last heard from. */
  readonly #peers = new Map<string, number>();
  readonly #requests = new Map<number, Request>();
  #nextRequest = 0;
  #subscription: { close(): Promise<void> } | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** Acknowledgements not sent yet (`<to>.<n>`), sent together once the current delivery is handled. */
  #acks: string[] = [];
  /** The store reports the channel up (onReset). */
  #hearing = true;
  /** This process's own hellos come back (self-echo). */
  #echoing = true;
  /** hearing && echoing, as last told to the cache and the others. */
  #live = true;
  /** The number of the last hello or probe sent, and the highest of them heard back. */
  #probeSent = 0;
  #probeHeard = 0;
  /** The probe of the last heartbeat, to be heard back by the next one (0: none; -1: not published yet). */
  #probeDue = 0;
  #beats = 0;
  /** Probes up to this number were sent before the channel was found down: they do not bring it up. */
  #probeDownAt = 0;
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
    this.#settleMs = opts.settleMs ?? PEER_START_SETTLE_MS;
    this.#sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.#forgetAfterMs = opts.forgetAfterMs ?? PEER_FORGET_AFTER_MS;
    this.#now = opts.now ?? (() => performance.now());
    this.#onError = opts.onError ?? (() => undefined);
    this.#onChannel = opts.onChannel ?? (() => undefined);
    this.#errorLog = new RateLimit(PEER_LOG_INTERVAL_MS, this.#now);
    this.#downLog = new RateLimit(PEER_LOG_INTERVAL_MS, this.#now);
    this.#onUnanswered = opts.onUnanswered ?? (() => undefined);
  }

  /**
   * Subscribes, says hello, and resolves — so the process serves — once the others have had the
   * time to answer: its own hello has come back (bounded by one heartbeat, at most
   * PEER_HEARTBEAT_MS; not back by then, the channel counts as down for this process, see
   * heartbeat) and PEER_START_SETTLE_MS more have passed. Each process whose reply arrived by then knows this one (it answered after adding
   * it), and this one waits for it in its explicit ends; without the wait, the ends of a process
   * that had just started waited for nobody.
   */
  async start(): Promise<void> {
    if (this.#subscription !== null) return;
    this.#left = false;
    this.#subscription = await this.#channel.subscribePeers(
      (message) => this.#receive(message),
      (change) => this.#changed(change),
    );
    const k = await this.#say('hello');
    this.#probeDue = k;
    if (k > 0 && this.#probeHeard < k && this.#live) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#echoWait = { k, resolve };
        // Not unref'd: bounded, and the start must not be left hanging when nothing else holds
        // the event loop (the SQLite poll timer is unref'd).
        timer = setTimeout(resolve, Math.min(this.#heartbeatMs, PEER_HEARTBEAT_MS));
      });
      clearTimeout(timer);
      this.#echoWait = null;
      if (this.#left) return; // stopped meanwhile
      if (this.#probeHeard < k) this.#echoLost('own hello not heard back at start');
    }
    if (this.#live) await this.#sleep(this.#settleMs);
    if (this.#left) return;
    this.#timer = setInterval(() => this.heartbeat(), this.#heartbeatMs);
    this.#timer.unref();
  }

  /** Says bye and unsubscribes; waits in progress resolve (false) at once. */
  async stop(): Promise<void> {
    if (this.#subscription === null) return;
    this.#left = true;
    this.#echoWait?.resolve(); // a start still waiting for its hello ends (and starts nothing)
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

  /**
   * Forgets the processes not heard from for a while; finds the channel down if the last
   * heartbeat's hello has not come back; says hello (probe while down). The work runs in the
   * check phase (setImmediate), after the I/O already waiting: a heartbeat that fires late after
   * a busy event loop (timers run before the sockets are read) first hears what arrived meanwhile
   * — its own hello, the others' — instead of finding it missing.
   */
  heartbeat(): void {
    setImmediate(() => this.#beat());
  }

  #beat(): void {
    const now = this.#now();
    for (const [peer, heard] of this.#peers) {
      if (now - heard > this.#forgetAfterMs) this.#drop(peer);
    }
    if (!this.#hearing || this.#left) return;
    if (this.#probeDue === -1) this.#echoLost('own hello not published within a heartbeat');
    else if (this.#probeDue > this.#probeHeard) this.#echoLost('own hello not heard back within a heartbeat');
    const beat = ++this.#beats;
    this.#probeDue = -1;
    void this.#say('hello').then((k) => {
      if (this.#beats === beat) this.#probeDue = k;
    });
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
    if (!this.#live || this.#left) {
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
    if (from === undefined || !ID.test(from)) return;
    if (from === this.id) {
      if ((kind === 'hello' || kind === 'probe') && REQUEST.test(parts[2] ?? '')) this.#echoHeard(Number(parts[2]));
      return;
    }
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
    if (!known && this.#live && !this.#left) void this.#say('hello');
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

  /** The store reports the channel down or back: while it is down this process is deaf to requests. */
  #changed(change: FeedChange): void {
    this.#hearing = change === 'up';
    if (change === 'up') this.#probeDue = 0; // its own probes (Redis) proved it delivers again
    this.#update(change === 'up' ? 'the store reports the channel up' : 'the store reports the channel down');
  }

  /** A hello or probe of this process's came back. */
  #echoHeard(k: number): void {
    if (k > this.#probeHeard) this.#probeHeard = k;
    if (this.#echoWait !== null && k >= this.#echoWait.k) this.#echoWait.resolve();
    if (!this.#echoing && k > this.#probeDownAt) {
      this.#echoing = true;
      this.#update('own probe heard back');
    }
  }

  /** A hello or probe could not be published, or did not come back in time. */
  #echoLost(reason: string): void {
    if (!this.#echoing) return;
    this.#echoing = false;
    this.#probeDownAt = this.#probeSent;
    this.#update(reason);
  }

  /** Tells the cache and the others when the channel went down or came back for this process. */
  #update(reason: string): void {
    const live = this.#hearing && this.#echoing;
    if (live === this.#live) return;
    this.#live = live;
    // Nothing from memory while requests to forget may be missed (session-cache.ts).
    this.#cache.feedChanged('peers', live ? 'up' : 'down');
    if (!live) {
      const suppressed = this.#downLog.take();
      this.#downReported = suppressed !== null;
      if (suppressed !== null) this.#onChannel('down', reason, suppressed);
    } else if (this.#downReported) {
      this.#downReported = false;
      this.#onChannel('up', reason, 0);
    }
    // Down: the others need not wait for this process (it serves nothing from memory); if the bye
    // is lost they wait until they forget it. Up: known again at once.
    if (!this.#left) void this.#say(live ? 'hello' : 'bye');
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
   * Says hello or bye after what was said before has been published (or failed); resolves to
   * the number of the hello (0: none sent). By its turn, a hello is dropped if this process left
   * or the store reports the channel down, and goes as a probe while its own hellos do not come
   * back; one that cannot be published finds the channel down.
   */
  #say(kind: 'hello' | 'bye'): Promise<number> {
    const said = this.#presence.then(async () => {
      if (kind === 'bye') {
        await this.#publish([`bye ${this.id}`]);
        return 0;
      }
      if (this.#left || !this.#hearing) return 0;
      const k = ++this.#probeSent;
      if (!(await this.#publish([`${this.#live ? 'hello' : 'probe'} ${this.id} ${k}`]))) this.#echoLost('own hello could not be published');
      return k;
    });
    this.#presence = said.then(() => undefined);
    return said;
  }

  /** Publishes; false (reported, rate-limited) if the store refused. */
  async #publish(messages: string[]): Promise<boolean> {
    try {
      await this.#channel.publishToPeers(messages);
      return true;
    } catch (err) {
      const suppressed = this.#errorLog.take();
      if (suppressed !== null) this.#onError(err, suppressed);
      return false;
    }
  }
}

/** At most one report per interval; counts the others. */
class RateLimit {
  readonly #intervalMs: number;
  readonly #now: () => number;
  #last = -Infinity;
  #suppressed = 0;

  constructor(intervalMs: number, now: () => number) {
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** How many were suppressed since the last report, if this one may be reported; else null. */
  take(): number | null {
    const now = this.#now();
    if (now - this.#last < this.#intervalMs) {
      this.#suppressed += 1;
      return null;
    }
    this.#last = now;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    return suppressed;
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
