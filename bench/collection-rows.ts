// node bench/collection-rows.ts — what the bench's full collection (bench/gc-on-signal.ts) does to
// the row measured next on the same server, and what an unmeasured load after it changes.
//
// One `tessera start` (its own young-generation flag, the gc-on-signal preload, log lines at info to
// a file, pinned to core 0; the load generator, bench/load.ts, on core 1), a token and a cookie
// login, BENCH_WARMUP requests of each mode. Then CR_ROUNDS rounds, each as a quick run's check
// meets a Tessera process: CR_IDLE s idle, one full collection (collectGarbage, as `collectAll`;
// none with CR_COLLECT=0), CR_GAP s (the rows of the servers before it), then two windows of
// CR_SECONDS on this server, 0.2 s apart — token first in even rounds, cookie first in odd ones —
// and in round pairs 1, 3, … CR_AFTER requests (not measured) to the first window's mode first, as
// bench/run.ts's `afterCollection` does. Per window: the server's CPU per request (all threads),
// the CPU-time latency of bench/cpu-latency-probe.ts (CL_SERIES: every response) — its p99 over
// its mean, and the mean of its first 0.5 s over the window's —, the wall p99 (loaded machines:
// the neighbours' figure), and with CR_TRACE_OPT=1 the functions V8 marked for optimisation in the
// window (--trace-opt, placed by the request lines' times). At the end, per variant, the first
// window against the second of the same round.
// Environment: CR_STORE (sqlite, or a Redis URL), CR_ROUNDS (8), CR_IDLE (6), CR_GAP (4),
// CR_SECONDS (3), CR_AFTER (15000), CR_COLLECT (1), CR_TRACE_OPT, BENCH_WARMUP (40000),
// BENCH_CONNECTIONS (50).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchTenant, collectGarbage, cpuSeconds, freePort, GC_ON_SIGNAL_ARGS, pinned, pinNow, stopChild, tesseraEnv, unlinkPrefixes, waitFor } from './server-process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const STORE = process.env.CR_STORE ?? 'sqlite';
const [ROUNDS, IDLE, GAP, SECONDS, AFTER] = [env('CR_ROUNDS', 8), env('CR_IDLE', 6), env('CR_GAP', 4), env('CR_SECONDS', 3), env('CR_AFTER', 15_000)];
const COLLECT = process.env.CR_COLLECT !== '0';
const TRACE_OPT = process.env.CR_TRACE_OPT === '1';
const WARMUP = env('BENCH_WARMUP', 40_000);
const CONNECTIONS = env('BENCH_CONNECTIONS', 50);
type Mode = 'token' | 'cookie';

interface Window {
  round: number;
  first: boolean;
  mode: Mode;
  after: number;
  t0: number;
  t1: number;
  cpuUs: number;
  wallP99: number;
}

const dir = mkdtempSync(join(tmpdir(), 'tessera-collection-rows-'));
const prefix = `bench-collection-rows-${randomBytes(4).toString('hex')}:`;
const sleep = (s: number) => spawnSync('sleep', [String(s)]);
const quantile = (xs: Float64Array, p: number) => xs[Math.min(xs.length - 1, Math.ceil(p * xs.length) - 1)] ?? NaN;
const mean = (xs: ArrayLike<number>) => {
  let sum = 0;
  for (let i = 0; i < xs.length; i++) sum += xs[i] as number;
  return sum / xs.length;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

try {
  const port = await freePort();
  const admin = randomBytes(24).toString('hex');
  const ack = join(dir, 'gc-ack');
  const log = join(dir, 'server.log');
  const child = spawn(process.execPath, [...(TRACE_OPT ? ['--trace-opt'] : []), ...GC_ON_SIGNAL_ARGS, '--import', join(ROOT, 'bench/cpu-latency-probe.ts'), join(ROOT, 'src/cli.ts'), 'start'], {
    cwd: dir,
    env: { ...tesseraEnv({ port, store: STORE === 'sqlite' ? `sqlite:${join(dir, 'bench.db')}` : STORE, prefix, admin }), BENCH_GC_ACK: ack, CL_SERIES: join(dir, 'series') },
    stdio: ['ignore', openSync(log, 'w'), 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/healthz`, child, 600);
  pinNow(child.pid, 0);
  const login = await benchTenant(url, admin);
  const headers: Record<Mode, Record<string, string>> = { token: await login('token'), cookie: await login('cookie') };
  const load = (mode: Mode, o: { amount?: number; duration?: number }) => {
    const [cmd, argv] = pinned(1, [process.execPath, join(ROOT, 'bench/load.ts'), JSON.stringify({ url: `${url}/api/v1/session`, connections: CONNECTIONS, headers: headers[mode], ...o })]);
    const [t0, c0] = [Date.now(), cpuSeconds(child.pid)];
    const r = spawnSync(cmd, argv, { encoding: 'utf8' });
    const [t1, c1] = [Date.now(), cpuSeconds(child.pid)];
    const f = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { requests: number; p99: number };
    return { t0, t1, cpuUs: ((c1 - c0) * 1e6) / f.requests, wallP99: f.p99 };
  };
  for (const mode of ['token', 'cookie'] as const) load(mode, { amount: WARMUP });

  console.log(`# bench/collection-rows.ts — ${new Date().toISOString()}, ${STORE.split(':')[0]}, ${ROUNDS} rounds, idle ${IDLE} s, ${COLLECT ? 'a full collection' : 'no collection'}, ${GAP} s, two windows of ${SECONDS} s; ${AFTER} requests after the collection in round pairs 1, 3, …; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n`);
  const windows: Window[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    sleep(IDLE);
    if (COLLECT) collectGarbage([{ child, ack }]);
    sleep(GAP);
    const order: Mode[] = round % 2 === 0 ? ['token', 'cookie'] : ['cookie', 'token'];
    const after = Math.floor(round / 2) % 2 === 1 ? AFTER : 0;
    if (after > 0) {
      load(order[0] as Mode, { amount: after });
      sleep(0.5);
    }
    order.forEach((mode, i) => {
      if (i > 0) sleep(0.2);
      windows.push({ round, first: i === 0, mode, after, ...load(mode, { duration: SECONDS }) });
    });
  }
  await stopChild(child, 10_000);

  // The probe's series (times, then latencies) and the optimisations marked, placed by the request lines' times.
  const raw = readFileSync(join(dir, readdirSync(dir).find((f) => f.startsWith('series.')) as string));
  const all = new Float64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8);
  const [times, lats] = [all.subarray(0, all.length / 2), all.subarray(all.length / 2)];
  const marks: number[] = [];
  if (TRACE_OPT) {
    let now = 0;
    for (const line of readFileSync(log, 'utf8').split('\n')) {
      if (line.startsWith('{')) now = Date.parse(/"time":"([^"]+)"/.exec(line)?.[1] ?? '') || now;
      else if (line.startsWith('[marking 0x') && line.includes('for optimization')) marks.push(now);
    }
  }
  const figures = windows.map((w) => {
    // The first half second from the window's first response (the load generator takes a while to start).
    const inW: number[] = [];
    const firstHalf: number[] = [];
    let first = NaN;
    for (let k = 0; k < times.length; k++) {
      const t = times[k] as number;
      if (t < w.t0 || t > w.t1) continue;
      if (Number.isNaN(first)) first = t;
      inW.push(lats[k] as number);
      if (t - first < 500) firstHalf.push(lats[k] as number);
    }
    const sorted = Float64Array.from(inW).sort();
    const m = mean(sorted);
    const opt = marks.filter((t) => t >= w.t0 && t <= w.t1).length;
    const optFirst = marks.filter((t) => t >= w.t0 && t < w.t0 + 1000).length;
    return { ...w, p99OverMean: quantile(sorted, 0.99) / m, firstHalfOverMean: mean(firstHalf) / m, opt, optFirst, n: sorted.length };
  });
  console.log('| round | after the collection | window | mode | CPU µs/req | CPU-time p99 / mean | first 0.5 s mean / mean | optimisations marked (first 1 s) | wall p99 ms | responses |');
  console.log('|---:|---:|---|---|---:|---:|---:|---:|---:|---:|');
  for (const f of figures) {
    console.log(`| ${f.round} | ${f.after} | ${f.first ? 'first' : 'second'} | ${f.mode} | ${f.cpuUs.toFixed(1)} | ${f.p99OverMean.toFixed(2)} | ${f.firstHalfOverMean.toFixed(2)} | ${TRACE_OPT ? `${f.opt} (${f.optFirst})` : 'n/a'} | ${f.wallP99} | ${f.n} |`);
  }
  console.log('\n| after the collection | figure | first window − second, each round | first higher in | median |');
  console.log('|---:|---|---|---:|---:|');
  for (const after of [...new Set(figures.map((f) => f.after))]) {
    const rounds = [...new Set(figures.filter((f) => f.after === after).map((f) => f.round))];
    for (const [label, of] of [
      ['CPU µs/req', (f: (typeof figures)[number]) => f.cpuUs],
      ['CPU-time p99 / mean', (f: (typeof figures)[number]) => f.p99OverMean],
      ['first 0.5 s mean / mean', (f: (typeof figures)[number]) => f.firstHalfOverMean],
      ...(TRACE_OPT ? [['optimisations marked', (f: (typeof figures)[number]) => f.opt] as const] : []),
    ] as const) {
      const d = rounds.map((r) => of(figures.find((f) => f.round === r && f.first)!) - of(figures.find((f) => f.round === r && !f.first)!));
      console.log(`| ${after} | ${label} | ${d.map((x) => x.toFixed(2)).join(' / ')} | ${d.filter((x) => x > 0).length} of ${d.length} | ${median(d).toFixed(2)} |`);
    }
  }
} finally {
  if (STORE.startsWith('redis')) unlinkPrefixes(STORE, [prefix]);
  rmSync(dir, { recursive: true, force: true });
}
