// A bench-only preload (`node --expose-gc --import <this file> …`): on SIGUSR2 the process runs
// one full garbage collection (V8's `gc()`, a mark-compact) and then writes how many it has run to
// the file named by BENCH_GC_ACK, so that the bench knows it is done (with BENCH_GC_TRACE set, it
// also writes `bench-gc <wall-clock ms>` to its standard output, after V8's own --trace-gc line for
// that collection: what ties V8's clock to the wall clock). Nothing else: no timer, no handle that
// keeps the process up (Node's signal watchers are unreferenced), no cost until the signal comes.
// Without --expose-gc the signal is taken and nothing is collected (see below).
//
// Why (docs/performance.md, "V8's memory reducer and the measured rows"): V8's memory reducer runs a `Mark-Compact (reduce)` in a busy process 100 s
// (kWatchdogDelayMs) after its last mark-compact, its watchdog. Servers started together reach
// that moment together, and it fell inside whichever row the run measured then. Every mark-compact
// resets the watchdog, so the bench collects every server of the run — hello world, the peers and
// Tessera alike — outside any measured window, before the watchdog could come due inside the next
// row (bench/run.ts, `collectAll` and `collectStale`).
import { writeFileSync, writeSync } from 'node:fs';

const collect = (globalThis as { gc?: () => void }).gc;
const ack = process.env.BENCH_GC_ACK;
const trace = process.env.BENCH_GC_TRACE !== undefined;
let collections = 0;

// Installed whether or not gc() is exposed: without the listener SIGUSR2's default action would
// end the process. Without gc() (the preload imported without --expose-gc) it collects nothing,
// says so once on standard error and leaves the ack file unwritten, so that the bench reports the
// process as not answering instead of losing it.
process.on('SIGUSR2', () => {
  if (typeof collect !== 'function') {
    if (collections++ === 0) process.stderr.write('bench/gc-on-signal.ts: SIGUSR2 without --expose-gc: no collection\n');
    return;
  }
  collect();
  collections++;
  if (trace) writeSync(1, `bench-gc ${Date.now()}\n`);
  if (ack) writeFileSync(ack, String(collections));
});
