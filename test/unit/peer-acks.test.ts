// The channel between the Tessera processes (src/sessions/peer-acks.ts) on a channel whose
// deliveries the test makes one by one, so every interleaving is chosen, none timed: presence
// (hello, the reply to a newcomer, bye, forgetting the silent), a request answered only after the
// cache forgot the sessions, long requests in several messages, and a process that cannot hear
// the channel saying bye and serving nothing from memory.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { PEER_HEARTBEAT_MS, PEER_LOG_INTERVAL_MS, PeerAcks, SQLITE_PEER_HEARTBEAT_MS, peerTiming, type PeerCache } from '../../src/sessions/peer-acks.ts';
import { PEER_MESSAGE_MAX_BYTES, checkPeerMessages, type FeedChange } from '../../src/store/coordination-port.ts';

interface Subscriber {
  listener: (m: string) => void;
  onReset: (c: FeedChange) => void;
  inbox: string[];
}

/** A broadcast channel that queues each message for each subscriber until `deliver`. */
class ManualChannel {
  readonly subscribers = new Set<Subscriber>();
  readonly published: string[] = [];
  /** While set, a publish is held (in flight) until `release` — a commit on another connection. */
  hold = false;
  readonly held: (() => void)[] = [];

  publishToPeers(messages: readonly string[]): Promise<void> {
    checkPeerMessages(messages);
    if (this.hold) {
      return new Promise((resolve) => {
        this.held.push(() => {
          this.#broadcast(messages);
          resolve();
        });
      });
    }
    this.#broadcast(messages);
    return Promise.resolve();
  }

  /** Lets the held publish `i` (in the order made) commit. */
  release(i: number): void {
    const [commit] = this.held.splice(i, 1);
    commit?.();
  }

  #broadcast(messages: readonly string[]): void {
    for (const m of messages) {
      this.published.push(m);
      for (const s of this.subscribers) s.inbox.push(m);
    }
  }

  subscribePeers(listener: (m: string) => void, onReset: (c: FeedChange) => void): Promise<{ close(): Promise<void> }> {
    const sub: Subscriber = { listener, onReset, inbox: [] };
    this.subscribers.add(sub);
    return Promise.resolve({ close: () => Promise.resolve(void this.subscribers.delete(sub)) });
  }

  /** Hands every queued message to its subscriber (those the handling publishes, too). */
  async deliverAll(): Promise<void> {
    for (let rounds = 0; rounds < 100; rounds++) {
      let any = false;
      for (const s of this.subscribers) {
        for (const m of s.inbox.splice(0)) {
          any = true;
          s.listener(m);
        }
      }
      // Acknowledgements are sent after the current delivery (setImmediate).
      await new Promise((r) => setImmediate(r));
      if (!any && [...this.subscribers].every((s) => s.inbox.length === 0)) return;
    }
  }
}

/** A cache that records what it was told, in order. */
function recordingCache(log: string[]): PeerCache & { forgotten: Set<string> } {
  const forgotten = new Set<string>();
  return {
    forgotten,
    forget(handles) {
      for (const h of handles) {
        forgotten.add(h);
        log.push(`forget ${h}`);
      }
    },
    feedChanged(feed, change) {
      log.push(`${feed} ${change}`);
    },
  };
}

async function twoProcesses(channel = new ManualChannel(), clock = { t: 0 }) {
  const logA: string[] = [];
  const logB: string[] = [];
  const cacheA = recordingCache(logA);
  const cacheB = recordingCache(logB);
  const opts = { now: () => clock.t, heartbeatMs: 3_600_000, settleMs: 0 };
  const a = new PeerAcks(channel, cacheA, opts);
  const b = new PeerAcks(channel, cacheB, opts);
  await started(channel, a);
  await started(channel, b);
  await channel.deliverAll();
  return { channel, clock, a, b, cacheA, cacheB, logA, logB };
}

/** A heartbeat (its work runs in the check phase, after the I/O already waiting). */
async function beat(p: PeerAcks): Promise<void> {
  p.heartbeat();
  await new Promise((r) => setImmediate(r));
}

/** Starts `p` while the channel delivers (start waits for its own hello to come back). */
async function started(channel: ManualChannel, p: PeerAcks): Promise<void> {
  const starting = p.start();
  await channel.deliverAll();
  await starting;
}

/** Whether the promise has settled, and with what, without waiting on any timer. */
async function settled<T>(p: Promise<T>): Promise<{ done: boolean; value?: T }> {
  const marker = Symbol('pending');
  const v = await Promise.race([p, new Promise<typeof marker>((r) => setImmediate(() => r(marker)))]);
  return v === marker ? { done: false } : { done: true, value: v as T };
}

describe('PeerAcks: presence', () => {
  it('a newcomer knows the processes already there once its hello is answered, and they know it', async () => {
    const { channel, a, b } = await twoProcesses();
    expect(a.peers).toStrictEqual([b.id]);
    expect(b.peers).toStrictEqual([a.id]);
    // A was there first: it heard B's hello and answered at once, not at its next heartbeat.
    expect(channel.published.filter((m) => m.startsWith(`hello ${a.id} `))).toHaveLength(2);
    await a.stop();
    await b.stop();
  });

  it('bye: the process is forgotten at once, and a wait for it ends', async () => {
    const { channel, a, b } = await twoProcesses();
    const waiting = a.confirmEnded(['h1'], 3_600_000);
    await b.stop();
    await channel.deliverAll();
    expect(a.peers).toStrictEqual([]);
    // B said bye without having read A's request: nobody is left to wait for.
    expect(await settled(waiting)).toStrictEqual({ done: true, value: true });
    await a.stop();
  });

  it('a process not heard from for PEER_FORGET_AFTER_MS is forgotten by the next heartbeat; one that speaks stays', async () => {
    const { channel, clock, a, b } = await twoProcesses();
    clock.t += 5_000;
    await beat(b); // B says hello
    await channel.deliverAll();
    clock.t += 5_000;
    await beat(a);
    expect(a.peers).toStrictEqual([b.id]); // heard 5 s ago
    await channel.deliverAll(); // B does not speak, A hears its own hello
    clock.t += 1_001;
    await beat(a);
    expect(a.peers).toStrictEqual([]); // 6.001 s of silence
    await a.stop();
    await b.stop();
  });
});

describe('PeerAcks: an end waits for every other process to forget the sessions', () => {
  it('resolves true only after each other process forgot the handles and acknowledged', async () => {
    const channel = new ManualChannel();
    const { a, b, cacheB, logB } = await twoProcesses(channel);
    const logC: string[] = [];
    const cacheC = recordingCache(logC);
    const c = new PeerAcks(channel, cacheC, { heartbeatMs: 3_600_000, settleMs: 0 });
    await started(channel, c);
    await channel.deliverAll();
    expect(new Set(a.peers)).toStrictEqual(new Set([b.id, c.id]));

    const waiting = a.confirmEnded(['h1', 'h2'], 3_600_000);
    expect(await settled(waiting)).toStrictEqual({ done: false });
    // Only B reads the request: B forgets and answers; A still waits for C.
    const [aSub, bSub] = [...channel.subscribers] as [Subscriber, Subscriber, Subscriber];
    for (const m of bSub.inbox.splice(0)) bSub.listener(m);
    expect(cacheB.forgotten).toStrictEqual(new Set(['h1', 'h2']));
    // Forgotten before the answer went out: the answer is sent after the delivery is handled.
    expect(channel.published.some((m) => m.startsWith(`ack ${b.id} `))).toBe(false);
    expect(logB.filter((l) => l.startsWith('forget'))).toStrictEqual(['forget h1', 'forget h2']);
    await new Promise((r) => setImmediate(r));
    expect(channel.published.filter((m) => m.startsWith(`ack ${b.id} `))).toStrictEqual([`ack ${b.id} ${a.id}.0`]);
    // A reads its inbox (its own request, B's answer); C has not read the request.
    for (const m of aSub.inbox.splice(0)) aSub.listener(m);
    expect(await settled(waiting)).toStrictEqual({ done: false });
    expect(cacheC.forgotten.size).toBe(0);

    await channel.deliverAll(); // C reads the request, forgets, answers; A hears it
    expect(cacheC.forgotten).toStrictEqual(new Set(['h1', 'h2']));
    expect(await settled(waiting)).toStrictEqual({ done: true, value: true });
    await Promise.all([a.stop(), b.stop(), c.stop()]);
  });

  it('a request too long for one message goes in several, each within the limit, and all must be acknowledged', async () => {
    const { channel, a, b, cacheB } = await twoProcesses();
    const handles = Array.from({ length: 1000 }, (_, i) => `handle-${String(i).padStart(4, '0')}-${'x'.repeat(30)}`);
    const waiting = a.confirmEnded(handles, 3_600_000);
    const requests = channel.published.filter((m) => m.startsWith(`end ${a.id} `));
    expect(requests.length).toBeGreaterThan(1);
    for (const m of requests) expect(Buffer.byteLength(m)).toBeLessThanOrEqual(PEER_MESSAGE_MAX_BYTES);
    expect(requests.flatMap((m) => m.split(' ').slice(3))).toStrictEqual(handles);
    // All but the last request read and acknowledged: still waiting.
    const bSub = [...channel.subscribers][1]!;
    const last = bSub.inbox.splice(bSub.inbox.indexOf(requests.at(-1)!), 1);
    await channel.deliverAll();
    expect(await settled(waiting)).toStrictEqual({ done: false });
    bSub.inbox.push(...last);
    await channel.deliverAll();
    expect(cacheB.forgotten).toStrictEqual(new Set(handles));
    expect(await settled(waiting)).toStrictEqual({ done: true, value: true });
    await Promise.all([a.stop(), b.stop()]);
  });

  it('with no other process it resolves at once, and a lost answer costs the timeout (false)', async () => {
    const channel = new ManualChannel();
    const alone = new PeerAcks(channel, recordingCache([]), { heartbeatMs: 3_600_000, settleMs: 0 });
    await started(channel, alone);
    await channel.deliverAll();
    expect(await settled(alone.confirmEnded(['h'], 3_600_000))).toStrictEqual({ done: true, value: true });
    await alone.stop();

    const unanswered: string[][] = [];
    const a = new PeerAcks(channel, recordingCache([]), { heartbeatMs: 3_600_000, settleMs: 0, onUnanswered: (peers) => unanswered.push(peers) });
    const b = new PeerAcks(channel, recordingCache([]), { heartbeatMs: 3_600_000, settleMs: 0 });
    await started(channel, a);
    await started(channel, b);
    await channel.deliverAll();
    // B never reads A's request: the wait gives up after its timeout, and says who did not answer.
    expect(await a.confirmEnded(['h'], 20)).toBe(false);
    expect(unanswered).toStrictEqual([[b.id]]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a process whose channel goes down serves nothing from memory and says bye; back up, it says hello', async () => {
    const { channel, a, b, logB } = await twoProcesses();
    const bSub = [...channel.subscribers][1]!; // A subscribed first
    bSub.onReset('down');
    expect(logB.at(-1)).toBe('peers down');
    await channel.deliverAll();
    expect(a.peers).toStrictEqual([]); // nobody waits for a process that cannot hear
    expect(await settled(a.confirmEnded(['h'], 3_600_000))).toStrictEqual({ done: true, value: true });
    bSub.onReset('up');
    expect(logB.at(-1)).toBe('peers up');
    await channel.deliverAll();
    expect(a.peers).toStrictEqual([b.id]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a wait in progress when the process stops ends unanswered (false)', async () => {
    const { a, b } = await twoProcesses();
    const waiting = a.confirmEnded(['h'], 3_600_000);
    expect(await settled(waiting)).toStrictEqual({ done: false });
    await a.stop();
    expect(await settled(waiting)).toStrictEqual({ done: true, value: false });
    await b.stop();
  });

  it('ignores what is not a message of the protocol, and its own messages', async () => {
    const { channel, a, b, cacheB } = await twoProcesses();
    await channel.publishToPeers(['hello', 'hello not-an-id', `end ${'f'.repeat(16)} x h`, `ack ${b.id}`, 'junk', `end ${b.id} 1 mine`]);
    await channel.deliverAll();
    expect(cacheB.forgotten.size).toBe(0);
    expect(new Set(a.peers)).toStrictEqual(new Set([b.id]));
    await Promise.all([a.stop(), b.stop()]);
  });
});

describe('PeerAcks: a process that left stays gone', () => {
  it('an end or ack from a process that said bye does not bring it back to be waited for; its hello does', async () => {
    const { channel, a, b, cacheA } = await twoProcesses();
    const bSub = [...channel.subscribers][1]!;
    bSub.onReset('down'); // B can no longer hear: it says bye
    await channel.deliverAll();
    expect(a.peers).toStrictEqual([]);
    // What B can still publish: an end of its own and an answer. A forgets the sessions all the same.
    await channel.publishToPeers([`end ${b.id} 7 h-from-b`, `ack ${b.id} ${a.id}.0`]);
    await channel.deliverAll();
    expect(cacheA.forgotten).toStrictEqual(new Set(['h-from-b']));
    expect(a.peers).toStrictEqual([]);
    expect(await settled(a.confirmEnded(['h'], 3_600_000))).toStrictEqual({ done: true, value: true });
    bSub.onReset('up'); // hello
    await channel.deliverAll();
    expect(a.peers).toStrictEqual([b.id]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a process that cannot hear resolves its own ends false at once (nobody could answer it), and still asks the others', async () => {
    const { channel, a, b, cacheA } = await twoProcesses();
    [...channel.subscribers][1]!.onReset('down');
    await channel.deliverAll();
    expect(await settled(b.confirmEnded(['h1'], 3_600_000))).toStrictEqual({ done: true, value: false });
    await channel.deliverAll();
    expect(cacheA.forgotten).toStrictEqual(new Set(['h1']));
    expect(a.peers).toStrictEqual([]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a hello still in flight when the process stops is published before its bye, and nothing follows the bye', async () => {
    const { channel, a, b } = await twoProcesses();
    channel.hold = true;
    await beat(b); // B's hello, in flight (e.g. on another PostgreSQL pool connection)
    await new Promise((r) => setImmediate(r));
    expect(channel.held).toHaveLength(1);
    const stopping = b.stop();
    await new Promise((r) => setImmediate(r));
    expect(channel.held).toHaveLength(1); // the bye waits for the hello
    channel.release(0);
    await new Promise((r) => setImmediate(r));
    expect(channel.held).toHaveLength(1);
    channel.release(0);
    channel.hold = false;
    await stopping;
    expect(channel.published.slice(-2).map((m) => m.replace(/ [0-9]+$/, ''))).toStrictEqual([`hello ${b.id}`, `bye ${b.id}`]);
    await channel.deliverAll();
    expect(a.peers).toStrictEqual([]);
    await beat(b);
    await channel.publishToPeers([`end ${a.id} 5 h`]);
    await channel.deliverAll();
    expect(channel.published.at(-1)).toBe(`end ${a.id} 5 h`); // no hello, no ack from B after its bye
    expect(a.peers).toStrictEqual([]);
    await a.stop();
  });
});

describe('PeerAcks: a process must hear its own hellos (self-echo)', () => {
  /** A and B on one channel; B publishes through a switch that can make its publishes fail. */
  async function withFailingB() {
    const channel = new ManualChannel();
    const clock = { t: 0 };
    const logA: string[] = [];
    const logB: string[] = [];
    const errors: { err: unknown; suppressed: number }[] = [];
    const reports: string[] = [];
    const b_ = { fail: false };
    const bChannel = {
      publishToPeers: (m: readonly string[]) => (b_.fail ? Promise.reject(new Error('pool exhausted')) : channel.publishToPeers(m)),
      subscribePeers: channel.subscribePeers.bind(channel),
    };
    const opts = { now: () => clock.t, heartbeatMs: 3_600_000, settleMs: 0 };
    const a = new PeerAcks(channel, recordingCache(logA), opts);
    await started(channel, a);
    const b = new PeerAcks(bChannel, recordingCache(logB), {
      ...opts,
      onError: (err, suppressed) => errors.push({ err, suppressed }),
      onChannel: (change, reason, suppressed) => reports.push(`${change} ${suppressed}: ${reason}`),
    });
    await started(channel, b);
    await channel.deliverAll();
    return { channel, clock, a, b, logB, errors, reports, b_ };
  }

  it('a hello that cannot be published takes the channel down for that process at once; a probe heard back brings it up', async () => {
    const { channel, clock, a, b, logB, errors, reports, b_ } = await withFailingB();
    expect(a.peers).toStrictEqual([b.id]);
    b_.fail = true;
    clock.t += 2_000;
    await beat(b);
    await channel.deliverAll();
    expect(logB.at(-1)).toBe('peers down'); // serves nothing from memory: the others will forget it
    expect(reports).toStrictEqual(['down 0: own hello could not be published']);
    expect(errors).toHaveLength(1);
    // Its own ends cannot be answered either.
    expect(await settled(b.confirmEnded(['h'], 3_600_000))).toStrictEqual({ done: true, value: false });
    b_.fail = false;
    clock.t += 2_000;
    await beat(b); // a probe: not a hello, so nobody starts waiting for B before it is back
    await new Promise((r) => setImmediate(r));
    expect(channel.published.at(-1)).toMatch(new RegExp(`^probe ${b.id} [0-9]+$`));
    expect(logB.at(-1)).toBe('peers down');
    await channel.deliverAll();
    expect(logB.at(-1)).toBe('peers up');
    expect(reports.at(-1)).toBe('up 0: own probe heard back');
    expect(a.peers).toStrictEqual([b.id]); // B said hello once back
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a process that publishes but does not hear its own hello by the next heartbeat says bye and serves nothing from memory', async () => {
    const { channel, clock, a, b, logB, reports } = await withFailingB();
    const bSub = [...channel.subscribers][1]!;
    clock.t += 2_000;
    await beat(b);
    // B's subscriber reads nothing (a SQLite read that keeps failing; a silent connection).
    const deaf = bSub.listener;
    bSub.listener = () => undefined;
    await channel.deliverAll();
    expect(logB).toStrictEqual([]); // not down yet: the hello has until the next heartbeat
    expect(a.peers).toStrictEqual([b.id]);
    clock.t += 2_000;
    await beat(b);
    expect(logB.at(-1)).toBe('peers down');
    expect(reports).toStrictEqual(['down 0: own hello not heard back within a heartbeat']);
    await channel.deliverAll();
    expect(a.peers).toStrictEqual([]); // its bye
    expect(channel.published.filter((m) => m.startsWith(`probe ${b.id} `))).toHaveLength(1); // its probes make it known to nobody
    expect(await settled(a.confirmEnded(['h'], 3_600_000))).toStrictEqual({ done: true, value: true });
    // Deaf for another heartbeat: still down, still not known; a down already reported is not reported again.
    clock.t += 2_000;
    await beat(b);
    await channel.deliverAll();
    expect(a.peers).toStrictEqual([]);
    expect(reports).toHaveLength(1);
    // It hears again: the next probe comes back, and it is known again.
    bSub.listener = deaf;
    clock.t += 2_000;
    await beat(b);
    await channel.deliverAll();
    expect(logB.at(-1)).toBe('peers up');
    expect(a.peers).toStrictEqual([b.id]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a heartbeat that comes while its own hello waits to be read hears it first (no false down after a busy event loop)', async () => {
    const { channel, clock, a, b, logB } = await withFailingB();
    const bSub = [...channel.subscribers][1]!;
    clock.t += 2_000;
    await beat(b); // B's hello, published; B has not read it yet
    expect(bSub.inbox.some((m) => m.startsWith(`hello ${b.id} `))).toBe(true);
    // Its delivery is I/O already waiting when the late heartbeat's timer fires.
    setImmediate(() => {
      for (const m of bSub.inbox.splice(0)) bSub.listener(m);
    });
    clock.t += 2_000;
    await beat(b);
    expect(logB).toStrictEqual([]);
    await channel.deliverAll();
    await Promise.all([a.stop(), b.stop()]);
  });

  it('failures to publish are reported at most once per PEER_LOG_INTERVAL_MS, with the count of those not reported', async () => {
    const { channel, clock, a, b, errors, b_ } = await withFailingB();
    b_.fail = true;
    for (let i = 0; i < 5; i++) {
      clock.t += 2_000;
      await beat(b);
      await channel.deliverAll();
    }
    expect(errors.map((e) => e.suppressed)).toStrictEqual([0]);
    const before = errors.length;
    clock.t += PEER_LOG_INTERVAL_MS;
    await beat(b);
    await channel.deliverAll();
    expect(errors.length).toBe(before + 1);
    expect(errors.at(-1)!.suppressed).toBeGreaterThan(0);
    b_.fail = false;
    await Promise.all([a.stop(), b.stop()]);
  });
});

describe('PeerAcks: a process that starts serves only once the others could answer its hello', () => {
  it('start resolves only after its own hello came back and the settle wait for replies; by then it knows who answered', async () => {
    const channel = new ManualChannel();
    const a = new PeerAcks(channel, recordingCache([]), { heartbeatMs: 3_600_000, settleMs: 0 });
    await started(channel, a);
    const naps: (() => void)[] = [];
    const n = new PeerAcks(channel, recordingCache([]), { heartbeatMs: 3_600_000, settleMs: 100, sleep: () => new Promise((r) => naps.push(() => r())) });
    const starting = n.start();
    await new Promise((r) => setImmediate(r)); // its hello is published
    expect(channel.published.at(-1)).toMatch(new RegExp(`^hello ${n.id} `));
    expect(await settled(starting)).toStrictEqual({ done: false }); // its own hello is not back
    const [aSub, nSub] = [...channel.subscribers] as [Subscriber, Subscriber];
    for (const m of nSub.inbox.splice(0)) nSub.listener(m);
    await new Promise((r) => setImmediate(r));
    expect(naps).toHaveLength(1); // back: now the wait for the replies
    expect(await settled(starting)).toStrictEqual({ done: false });
    for (const m of aSub.inbox.splice(0)) aSub.listener(m); // A hears the newcomer and answers
    await new Promise((r) => setImmediate(r));
    for (const m of nSub.inbox.splice(0)) nSub.listener(m);
    naps[0]!();
    await starting;
    expect(n.peers).toStrictEqual([a.id]);
    expect(a.peers).toStrictEqual([n.id]);
    // Its first explicit end waits for A.
    expect(await settled(n.confirmEnded(['h'], 3_600_000))).toStrictEqual({ done: false });
    await Promise.all([a.stop(), n.stop()]);
  });

  it('a stop while the start waits for its own hello ends the start at once, which then starts nothing', async () => {
    const channel = new ManualChannel();
    const log: string[] = [];
    const n = new PeerAcks(channel, recordingCache(log), { heartbeatMs: 3_600_000, settleMs: 0 });
    const starting = n.start();
    await new Promise((r) => setImmediate(r)); // hello published, not delivered
    await n.stop();
    expect(await settled(starting)).toStrictEqual({ done: true, value: undefined });
    expect(log).toStrictEqual([]); // not taken down after its stop
    await beat(n);
    await new Promise((r) => setImmediate(r));
    expect(channel.published.map((m) => m.split(' ')[0])).toStrictEqual(['hello', 'bye']);
  });

  it('the bounded wait for its own hello holds the process open: a start with nothing else alive still finishes', () => {
    // A channel that never delivers and holds nothing open (like a SQLite store, whose poll timer is unref'd).
    const script = `
      import { PeerAcks } from ${JSON.stringify(new URL('../../src/sessions/peer-acks.ts', import.meta.url).href)};
      const channel = { publishToPeers: async () => {}, subscribePeers: async () => ({ close: async () => {} }) };
      const peers = new PeerAcks(channel, { forget() {}, feedChanged: (f, c) => console.log(f, c) }, { heartbeatMs: 50, settleMs: 0 });
      await peers.start();
      console.log('started');
      await peers.stop();`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(child.stdout.trim().split('\n')).toStrictEqual(['peers down', 'started']);
    expect(child.status).toBe(0);
  });

  it('a process whose own hello does not come back at start starts with the channel down (nothing from memory)', async () => {
    const channel = new ManualChannel();
    const log: string[] = [];
    const n = new PeerAcks(channel, recordingCache(log), { heartbeatMs: 3_600_000, settleMs: 0 });
    const original = channel.subscribePeers.bind(channel);
    // Subscribed, but this subscriber never delivers (reads that fail): the wait is bounded by a heartbeat.
    const deaf = { subscribePeers: (_l: (m: string) => void, r: (c: FeedChange) => void) => original(() => undefined, r), publishToPeers: channel.publishToPeers.bind(channel) };
    const m = new PeerAcks(deaf, recordingCache(log), { heartbeatMs: 1, settleMs: 0 });
    await started(channel, n);
    await m.start();
    expect(log).toStrictEqual(['peers down']);
    await channel.deliverAll();
    expect(n.peers).toStrictEqual([]); // M said bye and probes only
    await Promise.all([m.stop(), n.stop()]);
  });
});

describe('PeerAcks: timing per store', () => {
  it('SQLite says hello less often (each is a write of the file), and forgets after three of its heartbeats', () => {
    expect(peerTiming('sqlite')).toStrictEqual({ heartbeatMs: SQLITE_PEER_HEARTBEAT_MS, forgetAfterMs: 3 * SQLITE_PEER_HEARTBEAT_MS });
    expect(SQLITE_PEER_HEARTBEAT_MS).toBeGreaterThan(PEER_HEARTBEAT_MS);
    for (const kind of ['redis', 'redis-sentinel', 'redis-cluster', 'postgres']) {
      expect(peerTiming(kind)).toStrictEqual({ heartbeatMs: PEER_HEARTBEAT_MS, forgetAfterMs: 3 * PEER_HEARTBEAT_MS });
    }
    // A process that stops hearing itself finds out within two heartbeats: before the others forget it.
    for (const kind of ['sqlite', 'redis']) {
      const t = peerTiming(kind);
      expect(2 * t.heartbeatMs).toBeLessThan(t.forgetAfterMs);
    }
  });
});
