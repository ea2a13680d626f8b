// Tessera emits `session.expired` itself (no store keyspace notifications): a sweeper asks the
// store for sessions past their expiry. The store marks each one expired exactly once, so
// several Tessera processes may sweep the same store without duplicate events.

import type { Clock } from '../domain/clock.ts';
import { type EventBus, sessionEvent } from '../events/bus.ts';
import type { SessionStore } from '../store/port.ts';

export interface Sweeper {
  /** Runs one sweep now (also used by tests); resolves to the number of sessions expired. */
  sweepOnce(): Promise<number>;
  stop(): Promise<void>;
}

export function startExpirySweeper(
  store: SessionStore,
  bus: EventBus,
  clock: Clock,
  intervalMs: number,
  onError: (err: unknown) => void,
): Sweeper {
  let running: Promise<number> | null = null;
  let stopped = false;

  async function sweep(): Promise<number> {
    let total = 0;
    // Drain in batches so a backlog does not become one huge store call.
    for (let i = 0; i < 50; i++) {
      const now = clock.now();
      const expired = await store.sweepExpired(now, 200);
      for (const s of expired) {
        bus.emit(sessionEvent('session.expired', s, now, { expiredAt: s.endedAt ?? now }));
      }
      total += expired.length;
      if (expired.length < 200) break;
    }
    return total;
  }

  function sweepOnce(): Promise<number> {
    running ??= sweep().finally(() => {
      running = null;
    });
    return running;
  }

  const timer = setInterval(() => {
    if (stopped) return;
    sweepOnce().catch(onError);
  }, intervalMs);
  timer.unref();

  return {
    sweepOnce,
    async stop() {
      stopped = true;
      clearInterval(timer);
      if (running) await running.catch(() => 0);
    },
  };
}
