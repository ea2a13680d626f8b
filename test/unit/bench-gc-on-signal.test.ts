import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseTrace, parseWindows, placed } from '../../bench/gc-windows.ts';
import { collectGarbage, GC_ON_SIGNAL_ARGS, stopChild } from '../../bench/server-process.ts';

// The bench's full collection on demand (bench/gc-on-signal.ts, collectGarbage in
// bench/server-process.ts): what bench/run.ts does to every server before a measured window so
// that V8's memory reducer does not run its own inside it. The child below reports every major
// collection it sees (PerformanceObserver 'gc' entries of kind major) on its standard output.
const CHILD = `
const { PerformanceObserver, constants } = require('node:perf_hooks');
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) process.stdout.write('major ' + ((e.detail.flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) ? 'forced' : 'other') + '\\n');
}).observe({ entryTypes: ['gc'] });
setInterval(() => {}, 1000);
process.stdout.write('ready\\n');
`;

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => stopChild(c, 1000)));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A child with the preload (BENCH_GC_ACK in a fresh directory), once it is ready; `out()` is what it has written so far. */
async function child(args: readonly string[] = GC_ON_SIGNAL_ARGS): Promise<{ child: ChildProcess; ack: string; out: () => string; err: () => string }> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-gc-'));
  dirs.push(dir);
  const ack = join(dir, 'gc.ack');
  const c = spawn(process.execPath, [...args, '-e', CHILD], { env: { PATH: process.env.PATH ?? '', BENCH_GC_ACK: ack }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(c);
  let out = '';
  let err = '';
  c.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  c.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  await new Promise<void>((resolve, reject) => {
    c.stdout!.on('data', () => out.includes('ready\n') && resolve());
    c.once('exit', (code) => reject(new Error(`child exited ${code}`)));
  });
  return { child: c, ack, out: () => out, err: () => err };
}

/** Until the child's output has `n` lines of major collections (the observer reports them a turn of its loop later). */
async function majors(out: () => string, n: number): Promise<string[]> {
  for (let i = 0; i < 200; i++) {
    const lines = out().split('\n').filter((l) => l.startsWith('major'));
    if (lines.length >= n) return lines;
    await new Promise((r) => setTimeout(r, 25));
  }
  return out().split('\n').filter((l) => l.startsWith('major'));
}

describe('bench full collection on SIGUSR2', () => {
  it('runs one forced major collection per signal and counts it in the ack file', async () => {
    const c = await child();
    expect(collectGarbage([c])).toEqual([]);
    expect(readFileSync(c.ack, 'utf8')).toBe('1');
    expect(await majors(c.out, 1)).toContain('major forced');
    expect(collectGarbage([c])).toEqual([]);
    expect(readFileSync(c.ack, 'utf8')).toBe('2');
    expect((await majors(c.out, 2)).filter((l) => l === 'major forced').length).toBeGreaterThanOrEqual(2);
    expect(c.child.exitCode).toBeNull();
  });

  it('collects several processes, one after the other', async () => {
    const [a, b] = await Promise.all([child(), child()]);
    expect(collectGarbage([a, b])).toEqual([]);
    expect([readFileSync(a.ack, 'utf8'), readFileSync(b.ack, 'utf8')]).toEqual(['1', '1']);
  });

  it('never signals a process that has exited', async () => {
    const gone = await child();
    await stopChild(gone.child, 1000);
    const kill = vi.spyOn(gone.child, 'kill');
    expect(collectGarbage([gone])).toEqual([]);
    expect(kill).not.toHaveBeenCalled();
  });

  it('without --expose-gc the preload still takes SIGUSR2: the process lives on, says so, and is returned as not answering within 2 s', async () => {
    // No listener of the test's own: without the preload's, SIGUSR2's default action ends the process.
    const deaf = await child(['--import', GC_ON_SIGNAL_ARGS[2]!]);
    const t0 = performance.now();
    const missed = collectGarbage([deaf]);
    const waited = performance.now() - t0;
    expect(missed.map((m) => m.child)).toEqual([deaf.child]);
    // The default wait for an answer is 2 s (a quick run's worst case per process), not 10.
    expect(waited).toBeGreaterThanOrEqual(1900);
    expect(waited).toBeLessThan(3000);
    await new Promise((r) => setTimeout(r, 200));
    expect([deaf.child.exitCode, deaf.child.signalCode]).toEqual([null, null]);
    expect(deaf.err()).toMatch(/without --expose-gc/);
  });
});

// bench/gc-windows.ts: a BENCH_GC_TRACE run's mark-compacts set against its measured windows.
describe('bench GC trace against the measured windows', () => {
  const trace = [
    '[7:0x1000]     5100 ms: Mark-Compact 36.1 (89.6) -> 27.3 (94.6) MB, pooled: 0 MB, 48.50 / 0.02 ms  (+ 0.6 ms in 11 steps) finalize incremental marking via stack guard; GC in old space requested',
    '[7:0x2000]     4000 ms: Mark-Compact 35.8 (88.8) -> 27.2 (95.3) MB, pooled: 0 MB, 44.58 / 0.02 ms  finalize incremental marking via stack guard; GC in old space requested',
    '[7:0x2000]     9000 ms: Scavenge 40.0 (95.0) -> 30.0 (95.0) MB, pooled: 0 MB, 2.00 / 0.00 ms  allocation failure; ',
    '[7:0x2000]    40000 ms: Mark-Compact 54.1 (114.7) -> 45.0 (66.7) MB, pooled: 48 MB, 175.11 / 0.01 ms  (average mu = 0.994) testing; GC in old space requested',
    'bench-gc 1000040010',
    '{"level":30,"msg":"a log line"}',
    '[7:0x2000:0]   112923 ms: Memory reducer: started GC #1',
    '[7:0x2000]   113250 ms: Mark-Compact (reduce) 61.6 (114.7) -> 45.1 (65.5) MB, pooled: 0 MB, 160.04 / 30.73 ms  (+ 115.2 ms in 103 steps) finalize incremental marking via task; GC in old space requested',
  ].join('\n');

  it("reads the last isolate's mark-compacts, tells the bench's apart, and ties V8's clock to the wall clock", () => {
    const t = parseTrace(trace);
    expect(t.markCompacts.map((m) => [m.t, m.kind, m.pauseMs, m.bench])).toEqual([
      [4000, 'Mark-Compact', 44.58, false],
      [40000, 'Mark-Compact', 175.11, true],
      [113250, 'Mark-Compact (reduce)', 160.04, false],
    ]);
    expect(t.scavenges).toBe(1);
    expect(t.offset).toBe(1000000010);
    expect(parseTrace(trace.split('\n').filter((l) => !l.startsWith('bench-gc')).join('\n')).offset).toBeNaN();
  });

  it('places a collection in the windows its pause overlaps', () => {
    const windows = parseWindows('100 200 fastify hello world @4001\n300 400 tessera token (redis) @4002\n');
    expect(windows[1]).toEqual({ start: 300, end: 400, row: 'tessera token (redis) @4002' });
    expect(placed(250, 10, windows)).toEqual([]);
    // Ended after the window opened, or began before it closed.
    expect(placed(310, 5, windows).map((w) => w.row)).toEqual(['tessera token (redis) @4002']);
    expect(placed(420, 30, windows).map((w) => w.row)).toEqual(['tessera token (redis) @4002']);
    expect(placed(420, 10, windows)).toEqual([]);
  });
});
