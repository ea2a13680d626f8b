// The Redis command deadlines (src/store/redis/connection.ts, Deadlines) run on the monotonic
// clock: a wall clock stepped back or forward (NTP, a VM resumed) neither holds a command's
// deadline off nor fires it early. And a command that was answered leaves nothing behind that a
// young-generation collection keeps: its reply dies young. Nor does their timer keep a process up.

import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StoreUnavailable } from '../../src/domain/errors.ts';
import { Deadlines } from '../../src/store/redis/connection.ts';

const never = () => new Promise<never>(() => undefined);

describe('Redis command deadlines', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
  });

  it('expire after their length whatever the wall clock does meanwhile', async () => {
    // Timers and the monotonic clock are faked; Date.now is not part of the fake and jumps on its own.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    let wall = 1_000_000_000_000;
    vi.spyOn(Date, 'now').mockImplementation(() => wall);
    const d = new Deadlines(100);

    const early = d.track(never(), 'GET');
    let earlyOutcome: unknown = null;
    early.catch((err: unknown) => (earlyOutcome = err));
    wall -= 3_600_000; // the wall clock steps back an hour
    await vi.advanceTimersByTimeAsync(100);
    expect(earlyOutcome).toBeInstanceOf(StoreUnavailable);

    const late = d.track(never(), 'SET');
    let lateOutcome: unknown = null;
    late.catch((err: unknown) => (lateOutcome = err));
    wall += 7_200_000; // and forward two hours
    await vi.advanceTimersByTimeAsync(99);
    expect(lateOutcome).toBeNull();
    expect(d.pending).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(lateOutcome).toBeInstanceOf(StoreUnavailable);
    expect(d.pending).toBe(0);
  });

  it('expire only the unanswered, in the order sent, however many wait and in whatever order they are answered', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const d = new Deadlines(100);
    type Call = { answer: (v: string) => void; outcome: unknown };
    const send = (n: number): Call[] =>
      Array.from({ length: n }, (_, i) => {
        let answer: (v: string) => void = () => undefined;
        const call: Call = { answer: (v) => answer(v), outcome: null };
        void d
          .track(new Promise<string>((resolve) => (answer = resolve)), `CMD${i}`)
          .then((v) => (call.outcome = v), (err: unknown) => (call.outcome = err));
        return call;
      });
    // 40 sent and answered: the oldest waiting ones are not at the start of the slots any more.
    for (const c of send(40)) c.answer('early');
    await vi.advanceTimersByTimeAsync(0);
    expect(d.pending).toBe(0);
    // 150 at t=0 (past the first slots' end and their number) and 150 at t=50, each batch answered
    // every other one, last first.
    const first = send(150);
    await vi.advanceTimersByTimeAsync(50);
    const second = send(150);
    for (const batch of [first, second]) for (let i = batch.length - 1; i >= 0; i -= 2) batch[i]!.answer(`ok${i}`);
    await vi.advanceTimersByTimeAsync(0);
    expect(d.pending).toBe(150);
    await vi.advanceTimersByTimeAsync(49);
    expect(first.filter((c) => c.outcome === null)).toHaveLength(75);
    await vi.advanceTimersByTimeAsync(1);
    first.forEach((c, i) => (i % 2 === 1 ? expect(c.outcome).toBe(`ok${i}`) : expect(c.outcome).toBeInstanceOf(StoreUnavailable)));
    expect(second.filter((c) => c.outcome === null)).toHaveLength(75);
    expect(d.pending).toBe(75);
    await vi.advanceTimersByTimeAsync(50);
    second.forEach((c, i) => (i % 2 === 1 ? expect(c.outcome).toBe(`ok${i}`) : expect(c.outcome).toBeInstanceOf(StoreUnavailable)));
    expect(d.pending).toBe(0);
  });

  it('leave no timer holding the process open: one that has closed its store exits at once, not when the last deadline comes', async () => {
    // A fill or a command-line tool that closed its Redis store waited up to the command timeout
    // (1 s by default) for the deadline timer before its process ended (docs/performance.md,
    // "The quick run's wall time, 2026-12-08 session"). Unreferenced timers are not counted here.
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const d = new Deadlines(60_000);
    let answer: (v: string) => void = () => undefined;
    const call = d.track(new Promise<string>((resolve) => (answer = resolve)), 'GET');
    expect(d.pending).toBe(1);
    expect(timers()).toBe(before);
    answer('OK');
    await expect(call).resolves.toBe('OK');
    expect(d.pending).toBe(0);
    expect(timers()).toBe(before);
  });

  it('keep nothing of an answered command that a young-generation collection would keep alive', async () => {
    // The deadlines were a Set: V8 replaces a Set's table every few dozen additions, and the old
    // table, garbage in the old generation, still held the commands in flight then; a scavenge
    // takes an old object's slots as roots whether that object is alive or not, so each of those
    // commands, and through it the caller's promise and its reply, survived the scavenges until
    // a full collection: every reply here was promoted (~2x its size grown in the old space).
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as (opts?: { type: 'minor' | 'major' }) => void;
    const oldSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_used_size;
    const immediate = () => new Promise((resolve) => setImmediate(resolve));
    const d = new Deadlines(60_000);
    // 50 commands in flight at a time (as under load), each answered with `size` small objects.
    const answerRounds = async (rounds: number, size: number) => {
      for (let round = 0; round < rounds; round++) {
        const answers: Array<(reply: unknown) => void> = [];
        const calls: Array<Promise<unknown>> = [];
        for (let i = 0; i < 50; i++) calls.push(d.track(new Promise((resolve) => answers.push(resolve)), 'FCALL'));
        for (const answer of answers) answer(Array.from({ length: size }, (_, k) => ({ k })));
        await Promise.all(calls);
      }
    };
    await answerRounds(20, 1);
    gc();
    gc(); // the Deadlines and what it holds in the old generation, as in a long-running server
    await immediate();
    const before = oldSpace();
    await answerRounds(20, 100); // 1,000 replies of 100 objects: well over 2 MB
    await immediate();
    gc({ type: 'minor' });
    await immediate();
    gc({ type: 'minor' }); // anything still held now has survived two scavenges: promoted
    const grown = oldSpace() - before;
    expect(d.pending).toBe(0);
    expect(grown).toBeLessThan(256 * 1024);
  });
});

