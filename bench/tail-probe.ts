// A diagnostic preload for bench/tail.ts (`node --import ./bench/tail-probe.ts …`): records, with
// absolute times (ms since the epoch, performance.timeOrigin + now), what can hold the event loop
// of the process it is loaded into:
//   gc      every garbage collection (PerformanceObserver 'gc': start, duration, kind)
//   stalls  a 1 ms interval's lateness above 1 ms (the loop turn that held it up; start, length,
//           and the CPU time this thread used meanwhile: a stall with little CPU was the process
//           waiting for the core — another process ran — not the process's own work)
//   timers  every timer callback (setTimeout / setInterval) that ran for more than 0.2 ms, with
//           where the timer was made
//   windows the bytes allocated on the JS heap between one SIGUSR2 and the next (bench/tail.ts
//           sends one before and one after each measured run): v8.GCProfiler's heap use before each
//           collection less the use after the one before, and the collections by type
// and writes them as JSON to `${TAIL_PROBE_OUT}.<pid>.json` when the process exits. Nothing of
// this is loaded by a server that is not started with it.
import { writeFileSync } from 'node:fs';
import { PerformanceObserver, performance, constants } from 'node:perf_hooks';
import v8 from 'node:v8';

const out = process.env.TAIL_PROBE_OUT;
const origin = performance.timeOrigin;
const now = () => origin + performance.now();
const gc: [start: number, ms: number, kind: string][] = [];
const stalls: [start: number, ms: number, cpuMs: number][] = [];
const timers: [start: number, ms: number, where: string][] = [];

const KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
};
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? -1;
    gc.push([origin + e.startTime, e.duration, KINDS[kind] ?? String(kind)]);
  }
}).observe({ entryTypes: ['gc'] });

const realSetTimeout = globalThis.setTimeout;
const realSetInterval = globalThis.setInterval;
function wrap(fn: unknown, where: () => string): unknown {
  if (typeof fn !== 'function') return fn;
  return function (this: unknown, ...args: unknown[]) {
    const t0 = performance.now();
    try {
      return (fn as (...a: unknown[]) => unknown).apply(this, args);
    } finally {
      const ms = performance.now() - t0;
      if (ms > 0.2) timers.push([origin + t0, ms, where()]);
    }
  };
}
/** Where a timer was made: the first stack frame outside this file and node's internals. */
function maker(): () => string {
  const stack = new Error().stack ?? '';
  return () =>
    stack
      .split('\n')
      .slice(2)
      .map((l) => l.trim())
      .filter((l) => !l.includes('tail-probe') && !l.includes('node:internal'))
      .slice(0, 2)
      .join(' < ');
}
globalThis.setTimeout = ((fn: unknown, ...rest: unknown[]) => (realSetTimeout as (...a: unknown[]) => unknown)(wrap(fn, maker()), ...rest)) as typeof setTimeout;
globalThis.setInterval = ((fn: unknown, ...rest: unknown[]) => (realSetInterval as (...a: unknown[]) => unknown)(wrap(fn, maker()), ...rest)) as typeof setInterval;

let expected = performance.now() + 1;
let cpu0 = process.threadCpuUsage();
realSetInterval(() => {
  const t = performance.now();
  const cpu = process.threadCpuUsage();
  const late = t - expected;
  if (late > 1) stalls.push([origin + expected, late, (cpu.user - cpu0.user + cpu.system - cpu0.system) / 1000 - 1]);
  expected = t + 1;
  cpu0 = cpu;
}, 1).unref();

const windows: { start: number; end: number; allocated: number; gcs: Record<string, number> }[] = [];
let open: { profiler: v8.GCProfiler; start: number; used: number } | null = null;
// Each SIGUSR2 closes the window under way (if any) and opens the next: two signals that arrive
// together count as one (POSIX merges them), which must not turn the windows inside out.
process.on('SIGUSR2', () => {
  const used = v8.getHeapStatistics().used_heap_size;
  if (open !== null) {
    const r = open.profiler.stop() as unknown as { statistics: { gcType: string; beforeGC: { heapStatistics: { usedHeapSize: number } }; afterGC: { heapStatistics: { usedHeapSize: number } } }[] };
    let last = open.used;
    let allocated = 0;
    const gcs: Record<string, number> = {};
    for (const g of r.statistics) {
      allocated += g.beforeGC.heapStatistics.usedHeapSize - last;
      last = g.afterGC.heapStatistics.usedHeapSize;
      gcs[g.gcType] = (gcs[g.gcType] ?? 0) + 1;
    }
    windows.push({ start: open.start, end: now(), allocated: allocated + used - last, gcs });
  }
  const profiler = new v8.GCProfiler();
  profiler.start();
  open = { profiler, start: now(), used: v8.getHeapStatistics().used_heap_size };
});

process.once('exit', () => {
  if (out) writeFileSync(`${out}.${process.pid}.json`, JSON.stringify({ pid: process.pid, end: now(), gc, stalls, timers, windows }));
});
