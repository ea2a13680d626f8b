// What the A/B benches (rotation-direct.ts, sso-ab.ts) share for looking inside their own process:
// CPU time by thread, and node:inspector's samplers as AB_PROFILE / AB_HEAP_PROFILE ask.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

/** This process's CPU by thread name (main, V8's compiler and GC helpers, libuv's pool), ms; Linux only (clock ticks of 10 ms). */
export function threadCpu(): Map<string, number> {
  const tick = 10; // ms per clock tick (USER_HZ 100)
  const byName = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    byName.set(comm, (byName.get(comm) ?? 0) + (Number(f[11]) + Number(f[12])) * tick);
  }
  return byName;
}

/**
 * The sampler the environment asks for, connected: AB_HEAP_PROFILE — the heap sampler, started
 * (AB_HEAP_LIVE=1: only what is still alive at the end; =old: what was promoted to the old
 * generation); AB_PROFILE — the CPU sampler, enabled at
 * AB_PROFILE_US µs (default 100) and not started (the caller starts it around what it measures).
 * Null when neither is set.
 */
export async function openProfiler(): Promise<Session | null> {
  if (!process.env.AB_PROFILE && !process.env.AB_HEAP_PROFILE) return null;
  const profiler = new Session();
  profiler.connect();
  if (process.env.AB_HEAP_PROFILE) {
    // AB_HEAP_LIVE=old: what the young generation's collections did not take — promoted to the
    // old generation, even if a full collection took it later.
    const live = process.env.AB_HEAP_LIVE;
    await profiler.post('HeapProfiler.enable');
    await profiler.post('HeapProfiler.startSampling', {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: live !== '1',
      includeObjectsCollectedByMinorGC: live !== '1' && live !== 'old',
    });
  } else {
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.setSamplingInterval', { interval: Number(process.env.AB_PROFILE_US ?? 100) });
  }
  return profiler;
}

/** Ends openProfiler's session: the heap profile to AB_HEAP_PROFILE, or `cpu` (the CPU profile or profiles taken) to AB_PROFILE. */
export async function closeProfiler(profiler: Session | null, cpu: () => Promise<unknown>): Promise<void> {
  if (profiler === null) return;
  if (process.env.AB_HEAP_PROFILE) {
    const { profile } = await profiler.post('HeapProfiler.stopSampling');
    writeFileSync(process.env.AB_HEAP_PROFILE, JSON.stringify(profile));
  } else {
    writeFileSync(process.env.AB_PROFILE as string, JSON.stringify(await cpu()));
  }
  profiler.disconnect();
}
