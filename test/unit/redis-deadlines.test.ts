// The Redis command deadlines (src/store/redis/connection.ts, Deadlines) run on the monotonic
// clock: a wall clock stepped back or forward (NTP, a VM resumed) neither holds a command's
// deadline off nor fires it early.

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
});
