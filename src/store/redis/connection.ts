// One small seam over the three node-redis topologies (client, Sentinel, Cluster): the store
// sends raw commands and scripts through it and never needs to know which one it talks to.
//
// Failure policy (docs/api.md §Storage and scale: fail fast with 503, never a hang, resume by
// itself):
// - Opening: the first connection must succeed within `connectTimeoutMs`, otherwise
//   openRedisStore rejects with StoreUnavailable (no endless retry loop at start).
// - Afterwards the client reconnects by itself in the background (capped exponential backoff),
//   and while it is disconnected commands are rejected at once (`disableOfflineQueue`), not
//   queued behind a connection that may never come back.
// - Every command has a deadline (`commandTimeoutMs`). node-redis' own `timeout` option only
//   covers a command that has not been written yet, so the deadline is enforced here: the caller
//   gets StoreUnavailable in time even if a server accepted the command and then hung. (A write
//   that times out may still have happened; the caller was told 503 and retries.) node-redis'
//   own per-command timeout is switched off: it armed an `AbortSignal.timeout` for every command
//   (5 s by default), each of which fired later and built a DOMException — about 5 % of a
//   refresh-token rotation's CPU — for a deadline this one already enforces. What it also did,
//   bound how long an unwritten command waits in node-redis' queue (a socket that accepts no
//   more data), is done by `commandsQueueMaxLength`: past COMMAND_QUEUE_MAX waiting commands a
//   new one fails at once (503) instead of queueing behind a server that does not read.
//   The deadlines of one connection are all `commandTimeoutMs` long, so they expire in the order
//   the commands were sent: one timer for the oldest (Deadlines) instead of a timer and a
//   Promise.race per command. Deadlines are kept on the monotonic clock (performance.now), so a
//   wall clock stepped back or forward neither holds them off nor fires them early.
// - RESP2 is used on these connections: replies (HGETALL, script tables) are flat arrays.

import { randomBytes } from 'node:crypto';
import { createClient, createCluster, createSentinel, ErrorReply, RESP_TYPES } from 'redis';
import { StoreUnavailable, TesseraError } from '../../domain/errors.ts';
import type { FeedChange } from '../coordination-port.ts';
import { HotConnection, type HotWrites } from './hot-connection.ts';
import type { RedisHost, RedisTarget } from './url.ts';

export type RedisStoreKind = 'redis' | 'redis-sentinel' | 'redis-cluster';

export interface ConnectionOptions {
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  /** Called with background connection errors (they never reach a request). */
  onError?: (err: unknown) => void;
  /**
   * Standalone only: the hot Function calls (LuaScript.hot) through a lean connection of their own
   * (hot-connection.ts), written at the end of their task ('task') or turn ('turn'); 'off' or
   * absent: through node-redis like every other command.
   */
  hotWrites?: HotWrites | 'off';
}

/** A command's words; a Buffer is sent as its bytes (a script's packed hash, lua-codec.ts). */
export type CommandArgs = Array<string | Buffer>;

export type Send = (args: string[]) => Promise<unknown>;

export interface RedisConnection {
  readonly kind: RedisStoreKind;
  /**
   * Sends one command. `routingKey` picks the node in a cluster; elsewhere it is ignored.
   * `binary`: the reply's bulk strings as Buffers, not UTF-8 text (a packed record, slot-lua.ts).
   */
  send(routingKey: string | undefined, args: CommandArgs, readonly?: boolean, binary?: boolean): Promise<unknown>;
  /**
   * Sends a hot Function call (an FCALL of a LuaScript.hot script) through the lean connection
   * when it is ready, else as `send`. Present only where the lean connection is on (standalone,
   * `hotWrites` 'task' or 'turn'). Its commands are not ordered with `send`'s: only calls whose
   * callers await nothing sent before them on the other connection come here.
   */
  sendHot?(routingKey: string, args: CommandArgs, binary: boolean): Promise<unknown>;
  /** A sender for every master (one for standalone and Sentinel, all masters of a cluster). */
  masters(): Promise<Send[]>;
  /**
   * In a cluster, an object that stands for the master `routingKey`'s slot is on now (the same
   * object for every key of that master, while the topology stays); absent elsewhere (one node).
   */
  nodeOf?(routingKey: string): Promise<object>;
  /**
   * Through Sentinel, an object that stands for the master commands go to now: a new one once
   * node-redis reports a master at another address (MASTER_CHANGE: a failover); absent elsewhere.
   * What is known of one master (lua.ts: its libraries checked) is not taken for the next.
   */
  currentNode?(): object;
  /**
   * Subscribes a dedicated connection to `channel`. `onReset('down')` is called when messages
   * may be lost from then on (the subscriber's connection failed, the topology changed, or its
   * own probes stopped coming back); `onReset('up')` once a probe published after that arrives.
   */
  subscribe(channel: string, onMessage: (message: string) => void, onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void> }>;
  close(): Promise<void>;
}

/** Events after which a subscriber may have missed messages (client, cluster and Sentinel names). */
const SUBSCRIBER_TROUBLE = ['error', 'reconnecting', 'end', 'node-error', 'node-reconnecting', 'topology-change', 'client-error'];

/**
 * A subscriber proves it hears the channel by hearing its own probes: every `FEED_PROBE_EVERY_MS`
 * it publishes one (through the command connection) and expects it back. A probe not heard
 * within `FEED_PROBE_TIMEOUT_MS` means the subscription is silent (a half-open connection, a
 * partition that only the subscriber's socket is on), which no connection event would report.
 * Probes start with a byte no handle or JSON record starts with, and never reach `onMessage`.
 */
export const FEED_PROBE_EVERY_MS = 500;
export const FEED_PROBE_TIMEOUT_MS = 3000;
const PROBE_MARK = '\u0001probe ';

interface Subscribable {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  connect(): Promise<unknown>;
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  close(): Promise<void>;
  destroy(): unknown;
}

/**
 * The feed is 'down' from the first sign of trouble (a connection event, or a probe not heard
 * back in time) until a probe published after that sign is heard: only then is it certain that
 * the subscription is in place again and messages published from then on arrive. Reporting 'up'
 * at node-redis' 'ready' would be too early — the SUBSCRIBE is sent again after it.
 */
async function subscribeOn(
  sub: Subscribable,
  channel: string,
  publish: (message: string) => Promise<unknown>,
  onMessage: (message: string) => void,
  onReset: (change: FeedChange) => void,
  opts: ConnectionOptions,
): Promise<{ close(): Promise<void> }> {
  let open = true;
  let up = true;
  const id = randomBytes(8).toString('hex');
  const mine = `${PROBE_MARK}${id} `;
  let sent = 0; // number of the last probe published
  let heard = 0; // number of the last own probe heard back
  const pending = new Map<number, number>(); // probes not heard back yet → when published
  let firstAfterDown = 0; // a probe numbered at least this proves the feed is up again
  const down = () => {
    if (!open || !up) return;
    up = false;
    firstAfterDown = sent + 1;
    onReset('down');
  };
  for (const event of SUBSCRIBER_TROUBLE) {
    sub.on(event, (err: unknown) => {
      if (!open) return;
      if (event.endsWith('error')) opts.onError?.(err);
      down();
    });
  }
  const receive = (message: string) => {
    if (!message.startsWith(PROBE_MARK)) {
      onMessage(message);
      return;
    }
    if (!message.startsWith(mine)) return; // another process's probe
    const n = Number(message.slice(mine.length));
    if (!(n > heard)) return;
    heard = n;
    for (const k of pending.keys()) if (k <= n) pending.delete(k);
    if (open && !up && n >= firstAfterDown) {
      up = true;
      onReset('up');
    }
  };
  try {
    await withDeadline(sub.connect(), opts.connectTimeoutMs + 500, 'the subscriber connection');
    await withDeadline(sub.subscribe(channel, receive), opts.commandTimeoutMs, 'SUBSCRIBE');
  } catch (err) {
    open = false;
    await Promise.resolve(sub.destroy()).catch(() => undefined);
    throw toStoreError(err);
  }
  const probe = setInterval(() => {
    if (!open) return;
    const now = Date.now();
    const oldest = pending.values().next();
    if (!oldest.done && now - oldest.value > FEED_PROBE_TIMEOUT_MS) {
      down();
      pending.clear(); // start timing again from the next probe
    }
    sent += 1;
    pending.set(sent, now);
    publish(`${mine}${sent}`).catch(() => undefined); // an unanswered probe is noticed above
  }, FEED_PROBE_EVERY_MS);
  probe.unref();
  return {
    close: async () => {
      open = false;
      clearInterval(probe);
      await closeGracefully(() => sub.close(), () => void Promise.resolve(sub.destroy()).catch(() => undefined));
    },
  };
}

/**
 * A hash slot being moved between masters (CLUSTER SETSLOT MIGRATING/IMPORTING + MIGRATE, as
 * `redis-cli --cluster reshard` does). Plain commands follow node-redis's ASK and MOVED
 * redirects. A script (FCALL/EVALSHA/EVAL) must not: it reads and writes more keys of its slot than
 * the routing key it declares, so run on the importing node it would miss the keys still on the
 * source, and run on the source it fails on a key already moved ("non local key"). So a script
 * goes to the slot's owner only; an ASK, a TRYAGAIN or a "non local key" error means the slot is
 * half-moved, and the script is sent again after a short pause (5 ms doubling to 50 ms) until the
 * move is over — the owner then answers MOVED, the slot map is read again, and it runs on the new
 * owner with the whole slot — or until the command's deadline. TRYAGAIN of other commands
 * (several keys of a half-moved slot) is retried the same way.
 */
const SLOT_MOVING = /^(TRYAGAIN|ASK)\b|non local key/;

/** The command options of a `binary` send: bulk strings as Buffers. */
const BINARY = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };

interface ClusterClient {
  sendCommand(key: string | undefined, readonly: boolean, args: CommandArgs, options?: typeof BINARY): Promise<unknown>;
  getNodeClientForKey(key: string): Promise<{ sendCommand(args: CommandArgs, options?: typeof BINARY): Promise<unknown> }>;
}

async function sendThroughSlotMoves(cluster: ClusterClient, key: string | undefined, args: CommandArgs, readonly: boolean, until: number, binary = false): Promise<unknown> {
  const script = key !== undefined && (args[0] === 'FCALL' || args[0] === 'EVALSHA' || args[0] === 'EVAL');
  for (let attempt = 0; ; attempt++) {
    try {
      if (!script) return await (binary ? cluster.sendCommand(key, readonly, args, BINARY) : cluster.sendCommand(key, readonly, args));
      const owner = await cluster.getNodeClientForKey(key);
      try {
        return await (binary ? owner.sendCommand(args, BINARY) : owner.sendCommand(args));
      } catch (err) {
        if (!(err instanceof ErrorReply) || !err.message.startsWith('MOVED') || performance.now() >= until) throw err;
        // The move is over: a keyed command through the cluster client follows the MOVED and
        // reads the slot map again; the script then goes to the new owner.
        await cluster.sendCommand(key, true, ['PTTL', key]);
        continue;
      }
    } catch (err) {
      if (!(err instanceof ErrorReply) || !SLOT_MOVING.test(err.message) || performance.now() >= until) throw err;
      await new Promise((r) => setTimeout(r, Math.min(50, 5 * 2 ** attempt)));
    }
  }
}

/**
 * Server replies that mean "not now" rather than "your command is wrong". MISCONF: writes are
 * refused until an RDB save succeeds again (stop-writes-on-bgsave-error) — an operator's disk
 * problem, which ends by itself once a save works.
 */
const TRANSIENT_REPLY = /^(CLUSTERDOWN|LOADING|READONLY|MASTERDOWN|TRYAGAIN|BUSY|NOREPLICAS|MISCONF|OOM|MOVED|ASK|NOAUTH|WRONGPASS|NOPERM)\b/;

/**
 * Maps anything a command can throw to the error the caller should see: connection trouble and
 * transient server states become StoreUnavailable (503 + Retry-After); a reply error that says the
 * command itself is wrong (a bug here) stays an ordinary Error.
 */
export function toStoreError(err: unknown): Error {
  if (err instanceof TesseraError) return err;
  if (err instanceof ErrorReply) {
    if (TRANSIENT_REPLY.test(err.message) || SLOT_MOVING.test(err.message)) return new StoreUnavailable(`The session store is unavailable: ${err.message}`, err);
    return err;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new StoreUnavailable(`The session store is unavailable: ${message}`, err);
}

/** Commands waiting in node-redis' queue (unwritten or unanswered) per connection, at most. */
export const COMMAND_QUEUE_MAX = 100_000;

/** node-redis' own per-command timeout off (see the top: the deadline is enforced here). */
const NO_CLIENT_TIMEOUT = { timeout: 0 };

interface Pending {
  until: number;
  what: string;
  /** The deadline was moved once already because this process stalled (see Deadlines). */
  extended: boolean;
  /** Where it waits in Deadlines' ring; -1 once taken out (answered, or its deadline passed). */
  slot: number;
  /** Fails the caller's promise; null once that promise is settled (see Deadlines: what a settled command keeps). */
  reject: ((err: Error) => void) | null;
}

/**
 * A deadline timer that fires this much later than it was due shows that this process was held
 * (a busy loop, a GC pause, no core for it): see Deadlines. Any lateness counts: with a threshold
 * of 25 ms a command sent just before a stall of 5–25 ms past its deadline was still failed
 * against a healthy Redis (a review probe: 1 of 3 to 3 of 8 PINGs across stalls of 305–324 ms with
 * a 300 ms deadline), because node-redis writes it in the same check phase the rejection ran in.
 */
const STALL_MS = 1;

/**
 * Deadlines of one length for many commands. Deadlines of equal length expire in the order they
 * were set, so the pending ones are kept in that order (a ring, oldest first) and one timer waits
 * for the oldest: per command a slot instead of a timer, a Promise.race and a finally.
 *
 * What a settled command keeps: nothing. Its slot is emptied when it settles, and its Pending
 * drops `reject` (which holds the caller's promise, and so the reply). These commands were kept in
 * a Set; V8 rebuilds a Set's table every few dozen additions once deletions fill it, and the old
 * table — garbage, but in the old generation, where the Set lives — still held the commands in
 * flight when it was replaced. A young-generation collection cannot tell a dead old object from a
 * live one, so each of those Pendings, and through `reject` its reply, stayed alive until the next
 * full collection: most replies survived two scavenges and were promoted (docs/performance.md,
 * "The command deadline's promotion"). The ring's slots are emptied in place (no stale copy is left
 * behind but on growth, which empties the old array too), and a settled Pending holds nothing.
 *
 * A deadline bounds how long Redis takes to answer, not this process's own stalls. Two things
 * make a stall look like a silent Redis, and both are handled:
 * - In an event-loop turn, timers run before the poll phase that reads the sockets: after a stall
 *   the deadline timer would fire before the reply that arrived during the stall is read. So when
 *   the timer fires late at all (over 1 ms), an expired command is rejected only in the check
 *   phase (setImmediate), after that poll phase, and not if its reply was read meanwhile. (On
 *   time, the loop was waiting for I/O until then: nothing arrived unread.)
 * - node-redis writes a command in the check phase after it was sent (setImmediate): a command
 *   sent just before a stall goes out only after it, when its deadline may already have passed.
 *   So when the timer fires late at all (more than STALL_MS), the deadlines it finds passed are not
 *   enforced then: those commands get `ms` again from the end of the stall (once each; a second
 *   stall does not move them again), and are rejected only when that passes without an answer.
 * A Redis that does not answer is still found `ms` after the command (plus the stall, plus `ms`
 * once when the process stalled past the deadline); a command is not failed because this process
 * could not read the answer in time (left: a stall that ends within STALL_MS of the deadline, when
 * the timer cannot tell it from firing on time).
 */
export class Deadlines {
  readonly #ms: number;
  /**
   * The commands waiting for an answer in the order they were sent, from `#head` for `#used`
   * slots (a power of two long, wrapping around); an answered command's slot is null. The slot at
   * `#head` is never null while `#used` > 0. It never shrinks; it grows when the slots from the
   * oldest waiting command on are all used, so at most to about twice the commands sent within one
   * deadline (two after a stall); one Redis answers in order, so empty slots behind the oldest
   * waiting command are few outside a cluster.
   */
  #ring: Array<Pending | null> = new Array<Pending | null>(64).fill(null);
  #head = 0;
  #used = 0;
  #count = 0;
  #timer: NodeJS.Timeout | null = null;
  /** When the timer is due (performance.now). */
  #due = 0;

  constructor(ms: number) {
    this.#ms = ms;
  }

  /** How many commands are waiting for an answer (for tests). */
  get pending(): number {
    return this.#count;
  }

  /** `promise`, or StoreUnavailable once `ms` passed without it settling. */
  track<T>(promise: Promise<T>, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const p: Pending = { until: performance.now() + this.#ms, what, extended: false, slot: -1, reject };
      this.#add(p);
      if (this.#timer === null) this.#arm(this.#ms);
      promise.then(
        (v) => {
          if (p.reject === null) return;
          p.reject = null;
          this.#remove(p);
          resolve(v);
        },
        (err: Error) => {
          const fail = p.reject;
          if (fail === null) return;
          p.reject = null;
          this.#remove(p);
          fail(err);
        },
      );
    });
  }

  #add(p: Pending): void {
    if (this.#used === this.#ring.length) this.#grow();
    const slot = (this.#head + this.#used) & (this.#ring.length - 1);
    this.#ring[slot] = p;
    p.slot = slot;
    this.#used++;
    this.#count++;
  }

  /** Twice the slots, the waiting commands moved to its start in order (answered ones left out). */
  #grow(): void {
    const old = this.#ring;
    const ring = new Array<Pending | null>(old.length * 2).fill(null);
    let n = 0;
    for (let i = 0; i < this.#used; i++) {
      const p = old[(this.#head + i) & (old.length - 1)] ?? null;
      if (p === null) continue;
      ring[n] = p;
      p.slot = n++;
    }
    old.fill(null); // the old array may be in the old generation: leave it holding nothing (above)
    this.#ring = ring;
    this.#head = 0;
    this.#used = n;
  }

  /** Takes `p` out of the ring if it is still there; the oldest slots left empty go with it. */
  #remove(p: Pending): void {
    if (p.slot < 0) return;
    this.#ring[p.slot] = null;
    p.slot = -1;
    this.#count--;
    const mask = this.#ring.length - 1;
    while (this.#used > 0 && this.#ring[this.#head] === null) {
      this.#head = (this.#head + 1) & mask;
      this.#used--;
    }
  }

  #arm(ms: number): void {
    const wait = Math.max(1, ms);
    this.#due = performance.now() + wait;
    // Unreferenced: it only bounds commands whose connection keeps the process alive anyway, and
    // a process that has closed its store (a fill, a command-line tool) exits at once rather than
    // when the last deadline's timer fires (up to the command timeout later).
    this.#timer = setTimeout(() => this.#expire(), wait).unref();
  }

  #expire(): void {
    this.#timer = null;
    const now = performance.now();
    const stalled = now - this.#due > STALL_MS;
    let expired: Pending[] | null = null;
    let moved: Pending[] | null = null;
    while (this.#used > 0) {
      const p = this.#ring[this.#head]!;
      if (p.until > now) break;
      this.#remove(p);
      if (stalled && !p.extended) {
        // The process was held past this deadline: the command's time starts again now.
        p.extended = true;
        p.until = now + this.#ms;
        (moved ??= []).push(p);
      } else {
        (expired ??= []).push(p);
      }
    }
    // Moved ones go to the end: their new deadline is the latest (ring order = deadline order).
    if (moved !== null) for (const p of moved) this.#add(p);
    if (this.#used > 0) this.#arm(this.#ring[this.#head]!.until - now);
    if (expired === null) return;
    // On time, the loop was waiting for I/O until now: nothing arrived unread. Late, a reply may
    // wait unread: reject after the poll phase of this turn, which reads it first.
    const out = expired;
    if (now - this.#due <= 1) this.#reject(out);
    else setImmediate(() => this.#reject(out));
  }

  #reject(expired: Pending[]): void {
    for (const p of expired) {
      const fail = p.reject;
      if (fail === null) continue;
      p.reject = null;
      fail(new StoreUnavailable(`The session store did not answer ${p.what} within ${this.#ms} ms.`));
    }
  }
}

export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreUnavailable(`The session store did not answer ${what} within ${ms} ms.`)), ms);
  });
  // The losing side must never surface as an unhandled rejection.
  promise.catch(() => undefined);
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Backoff for background reconnects once the store has been reached: 100 ms doubling to 2 s, with
 * jitter so a fleet of servers does not reconnect in lockstep. Before the first successful
 * connection it tries a few times (under a second in all, for a server that is just starting)
 * and then gives up, so that opening fails fast instead.
 */
function reconnectStrategy(state: { ready: boolean; startedAt: number }, connectTimeoutMs: number) {
  return (retries: number): number | false => {
    if (!state.ready && (retries >= 3 || Date.now() - state.startedAt >= connectTimeoutMs)) return false;
    const base = Math.min(100 * 2 ** Math.min(retries, 5), 2000);
    return Math.round(base / 2 + Math.random() * (base / 2));
  };
}

export async function openConnection(target: RedisTarget, opts: ConnectionOptions): Promise<RedisConnection> {
  const onError = opts.onError ?? (() => undefined);
  const state = { ready: false, startedAt: Date.now() };
  const socket = {
    connectTimeout: opts.connectTimeoutMs,
    reconnectStrategy: reconnectStrategy(state, opts.connectTimeoutMs),
  };
  const creds = {
    ...(target.username !== undefined ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
  };
  const deadlines = new Deadlines(opts.commandTimeoutMs);
  const deadline = <T>(p: Promise<T>, what: string) => deadlines.track(p, what);
  const queue = { commandsQueueMaxLength: COMMAND_QUEUE_MAX, commandOptions: NO_CLIENT_TIMEOUT };

  let conn: RedisConnection;
  let connect: () => Promise<unknown>;
  let destroy: () => void;

  switch (target.mode) {
    case 'standalone': {
      const client = createClient({
        RESP: 2,
        socket: { host: target.host.host, port: target.host.port, ...socket, ...(target.tls ? { tls: true as const } : {}) },
        database: target.database,
        disableOfflineQueue: true,
        ...queue,
        ...creds,
      });
      client.on('error', onError);
      const sendPlain = (args: CommandArgs, binary?: boolean) => (binary === true ? client.sendCommand(args, BINARY) : client.sendCommand(args));
      const hot =
        opts.hotWrites === undefined || opts.hotWrites === 'off'
          ? null
          : new HotConnection({
              host: target.host.host,
              port: target.host.port,
              tls: target.tls,
              database: target.database,
              ...creds,
              // Half the store's bound: a lean connection that hangs gives up (and goes on trying in
              // the background) before the store's own open does, which then opens on node-redis alone.
              connectTimeoutMs: Math.max(50, Math.floor(opts.connectTimeoutMs / 2)),
              writes: opts.hotWrites,
              maxQueued: COMMAND_QUEUE_MAX,
              onError,
              // A hot call its socket closed before it was written never ran: node-redis sends it.
              fallback: sendPlain,
            });
      // The lean connection opens beside node-redis; a store whose lean connection does not open
      // works through node-redis alone while it keeps trying.
      connect = hot === null ? () => client.connect() : () => Promise.all([client.connect(), hot.start()]);
      destroy = () => {
        hot?.destroy();
        client.destroy();
      };
      conn = {
        kind: 'redis',
        send: (_key, args, _readonly, binary) => deadline(sendPlain(args, binary), args[0] as string),
        ...(hot === null ? {} : { sendHot: (_key: string, args: CommandArgs, binary: boolean) => deadline(hot.ready ? hot.send(args, binary) : sendPlain(args, binary), args[0] as string) }),
        masters: () => Promise.resolve([(args: string[]) => deadline(client.sendCommand(args), args[0] as string)]),
        subscribe: (channel, onMessage, onReset) =>
          subscribeOn(client.duplicate(), channel, (m) => deadline(client.sendCommand(['PUBLISH', channel, m]), 'PUBLISH'), onMessage, onReset, opts),
        close: () =>
          closeGracefully(
            () => Promise.all([client.close(), hot?.close()]).then(() => undefined),
            destroy,
          ),
      };
      break;
    }
    case 'cluster': {
      const sendOnCluster = (key: string | undefined, args: CommandArgs, readonly: boolean, binary?: boolean) =>
        sendThroughSlotMoves(cluster, key, args, readonly, performance.now() + opts.commandTimeoutMs - 50, binary);
      const cluster = createCluster({
        RESP: 2,
        rootNodes: target.seeds.map((h: RedisHost) => ({ socket: { host: h.host, port: h.port, connectTimeout: opts.connectTimeoutMs } })),
        defaults: { socket, disableOfflineQueue: true, ...queue, ...creds },
        commandOptions: NO_CLIENT_TIMEOUT,
        useReplicas: false,
      });
      cluster.on('error', onError);
      cluster.on('node-error', onError);
      connect = () => cluster.connect();
      destroy = () => cluster.destroy();
      conn = {
        kind: 'redis-cluster',
        send: (key, args, readonly = false, binary) => deadline(sendOnCluster(key, args, readonly, binary), args[0] as string),
        nodeOf: (key) => deadline(cluster.getNodeClientForKey(key), 'the node of a key'),
        masters: async () => {
          const clients = await Promise.all(cluster.masters.map((m) => cluster.nodeClient(m)));
          return clients.map((c) => (args: string[]) => deadline(c.sendCommand(args), args[0] as string));
        },
        // Classic PUBLISH is broadcast to every node of a cluster, so one subscription anywhere
        // hears the whole cluster; node-redis moves it to another node if that one fails.
        subscribe: (channel, onMessage, onReset) =>
          subscribeOn(
            cluster.duplicate({ minimizeConnections: true }),
            channel,
            (m) => deadline(cluster.sendCommand(channel, false, ['PUBLISH', channel, m]), 'PUBLISH'),
            onMessage,
            onReset,
            opts,
          ),
        close: () => closeGracefully(() => cluster.close(), destroy),
      };
      break;
    }
    case 'sentinel': {
      const sentinel = createSentinel({
        RESP: 2,
        name: target.masterName,
        sentinelRootNodes: target.sentinels,
        nodeClientOptions: { socket, disableOfflineQueue: true, ...queue, ...creds },
        commandOptions: NO_CLIENT_TIMEOUT,
        sentinelClientOptions: { socket },
        masterPoolSize: 1,
        passthroughClientErrorEvents: true,
      });
      sentinel.on('error', onError);
      let master: object = {};
      let masterAddress = '';
      sentinel.on('topology-change', (event: { type: string; node?: { host: string; port: number } }) => {
        if (event.type !== 'MASTER_CHANGE' || event.node === undefined) return;
        const address = `${event.node.host}:${event.node.port}`;
        if (address === masterAddress) return;
        masterAddress = address;
        master = {};
      });
      connect = () => sentinel.connect();
      destroy = () => void sentinel.destroy().catch(onError);
      conn = {
        kind: 'redis-sentinel',
        send: (_key, args, readonly = false, binary) =>
          deadline(binary === true ? sentinel.sendCommand(readonly, args, BINARY) : sentinel.sendCommand(readonly, args), args[0] as string),
        masters: () => Promise.resolve([(args: string[]) => deadline(sentinel.sendCommand(false, args), args[0] as string)]),
        currentNode: () => master,
        subscribe: (channel, onMessage, onReset) =>
          subscribeOn(sentinel.duplicate(), channel, (m) => deadline(sentinel.sendCommand(false, ['PUBLISH', channel, m]), 'PUBLISH'), onMessage, onReset, opts),
        close: () => closeGracefully(() => sentinel.close(), destroy),
      };
      break;
    }
  }

  try {
    await withDeadline(connect(), opts.connectTimeoutMs, 'the connection');
    state.ready = true;
  } catch (err) {
    try {
      destroy();
    } catch {
      // already torn down
    }
    throw new StoreUnavailable(`Could not connect to the session store: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  return conn;
}

/** close() waits for pending replies; if the server is gone it may never settle, so bound it. */
async function closeGracefully(close: () => Promise<void>, destroy: () => void): Promise<void> {
  try {
    await withDeadline(close(), 2000, 'close');
  } catch {
    try {
      destroy();
    } catch {
      // already closed
    }
  }
}
