// node bench/size-probe.ts — does the session check cost more with more sessions stored (issue 13,
// goal 4), in the server's own CPU rather than in req/s (docs/performance.md, "Goal 4's size cost
// on SQLite").
//
// Per pair (SP_PAIRS): two fresh `tessera start` servers (as bench/run.ts starts them: log level
// info, lines to /dev/null, pinned to core 0 once they answer; the load generator, bench/load.ts,
// on core 1), each on a store of its own (a SQLite file, or a Redis prefix with SP_STORE=<redis
// URL>), both given 1,000 sessions by bench/fill-sessions.ts. One of them, the filled server (the
// first of the pair in even pairs, the second in odd ones), is then given SP_LARGE more by the
// same fill, the other (the control) nothing. At each size: BENCH_WARMUP requests per mode and
// server, then SP_WINDOWS rounds of one window of SP_REQUESTS checks per mode and server, the two
// servers' order turned round by round. Every window has logins of its own, made just before it
// (one argon2 verification each, outside the window), so that no window holds a cookie session's
// sliding write (due 45 s after a login with the default tenant) — which the bench's windows meet
// at a time set by their place in the round, not by the store's size.
// Per window: the server's CPU µs per check (every thread's run time, /proc/<pid>/task/<tid>/schedstat), its read and write
// system calls per check (/proc/<pid>/io: one of each is the request and its answer; SQLite's own
// reads of pages not in its cache are more), and req/s. Per size: the server's CPU while idle for
// SP_IDLE_S seconds (its timers: the SQLite feed poll, the expiry sweeper), in ms per second.
// Printed: every window, then per mode and pair the median CPU per check of filled ÷ control at
// 1,000 and at the large size, the change, and in how many pairs the ratio rose.
// Environment: SP_PAIRS (3), SP_LARGE (20000), SP_REQUESTS (30000), SP_WINDOWS (3), SP_IDLE_S (3),
// SP_STORE (sqlite | redis://…), SP_MODES (token,cookie), BENCH_WARMUP (40000), BENCH_CONNECTIONS (50).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchTenant, freePort, helperThreadSeconds, pinned, pinNow, stopChild, tesseraEnv, unlinkPrefixes, waitFor } from './server-process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PAIRS = Number(process.env.SP_PAIRS ?? 3);
const LARGE = Number(process.env.SP_LARGE ?? 20_000);
const REQUESTS = Number(process.env.SP_REQUESTS ?? 30_000);
const WINDOWS = Number(process.env.SP_WINDOWS ?? 3);
const IDLE_S = Number(process.env.SP_IDLE_S ?? 3);
const STORE = process.env.SP_STORE ?? 'sqlite';
const MODES = (process.env.SP_MODES ?? 'token,cookie').split(',') as Array<'token' | 'cookie'>;
const WARMUP = Number(process.env.BENCH_WARMUP ?? 40_000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const NODE = process.execPath;
const dir = mkdtempSync(join(tmpdir(), 'tessera-size-probe-'));
const prefixes: string[] = [];

interface Server {
  child: ChildProcess;
  url: string;
  pid: number;
  store: string;
  prefix: string;
  login(mode: 'token' | 'cookie'): Promise<Record<string, string>>;
}

async function startTessera(): Promise<Server> {
  const port = await freePort();
  const admin = randomBytes(24).toString('hex');
  const prefix = `bench-size-probe-${randomBytes(4).toString('hex')}:`;
  prefixes.push(prefix);
  const store = STORE === 'sqlite' ? `sqlite:${join(dir, `${port}.db`)}` : STORE;
  const child = spawn(NODE, [join(ROOT, 'src/cli.ts'), 'start'], {
    cwd: dir,
    env: tesseraEnv({ port, store, prefix, admin }),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/healthz`, child, 600);
  pinNow(child.pid, 0);
  const first = await benchTenant(url, admin);
  // Once more on a connection the server had just closed (fetch's keep-alive race after a pause).
  const login = (mode: 'token' | 'cookie') => first(mode).catch(() => first(mode));
  return { child, url, pid: child.pid as number, store, prefix, login };
}

/** Stores `count` idle token-mode sessions through the store port, in a process of its own (as bench/run.ts's fill). */
function fill(s: Server, count: number, firstUser: number): number {
  const t = performance.now();
  const r = spawnSync(NODE, [join(ROOT, 'bench/fill-sessions.ts'), JSON.stringify({ store: s.store, prefix: s.prefix, tenantId: 'bench', count, firstUser })], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`fill: ${r.stderr}`);
  return (performance.now() - t) / 1000;
}

/**
 * CPU seconds the process's threads have run so far, to the nanosecond: the main thread's
 * /proc/<pid>/task/<pid>/schedstat and its other threads' (helperThreadSeconds) — /proc/<pid>/stat
 * counts 10 ms ticks, 8 % of a 5,000-check window.
 */
function cpuNs(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e9 + helperThreadSeconds(pid);
}

/** The process's read and write system calls so far (every thread), from /proc/<pid>/io. */
function syscalls(pid: number): number {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (name: string) => Number(/^(\w+): (\d+)$/m.exec(io.split('\n').find((l) => l.startsWith(`${name}:`)) ?? '')?.[2] ?? NaN);
  return field('syscr') + field('syscw');
}

interface Window {
  cpuUs: number;
  sysPerReq: number;
  rps: number;
  errors: number;
}

function load(s: Server, headers: Record<string, string>, amount: number): Window {
  const [cmd, argv] = pinned(1, [NODE, join(ROOT, 'bench/load.ts'), JSON.stringify({ url: `${s.url}/api/v1/session`, connections: CONNECTIONS, headers, amount })]);
  const [c0, s0] = [cpuNs(s.pid), syscalls(s.pid)];
  const r = spawnSync(cmd, argv, { encoding: 'utf8' });
  const [c1, s1] = [cpuNs(s.pid), syscalls(s.pid)];
  if (r.status !== 0) throw new Error(`load generator: ${r.stderr}`);
  const f = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { requests: number; rps: number; non2xx: number; errors: number; loadWallS?: number };
  const n = Math.max(1, f.requests);
  return { cpuUs: ((c1 - c0) * 1e6) / n, sysPerReq: (s1 - s0) / n, rps: f.loadWallS ? f.requests / f.loadWallS : f.rps, errors: f.non2xx + f.errors };
}

/** The server's CPU over `seconds` with no load, in ms per second. */
function idle(s: Server, seconds: number): number {
  const c0 = cpuNs(s.pid);
  spawnSync('sleep', [String(seconds)]);
  return ((cpuNs(s.pid) - c0) * 1000) / seconds;
}

const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
/** Per pair, size and mode: the windows of the filled server and of its control, round by round. */
const results: Array<{ pair: number; size: 'small' | 'large'; mode: string; filled: Window[]; control: Window[]; idle: [number, number] }> = [];

try {
  console.log(`# bench/size-probe.ts — ${new Date().toISOString()}, ${STORE.split(':')[0]}, ${PAIRS} pairs, 1,000 and ${(LARGE + 1000).toLocaleString('en')} sessions, ${WINDOWS} rounds × ${REQUESTS} checks per window after ${WARMUP} per mode, ${CONNECTIONS} connections; load average ${loadavg()}\n`);
  console.log('| pair | size | round | mode | filled: CPU µs/check, syscalls/check, req/s | control: the same | filled ÷ control CPU |');
  console.log('|---:|---|---:|---|---|---|---:|');
  for (let pair = 0; pair < PAIRS; pair++) {
    const two = [await startTessera(), await startTessera()] as [Server, Server];
    const [filled, control] = pair % 2 === 0 ? two : ([two[1], two[0]] as [Server, Server]);
    try {
      fill(filled, 1000, 0);
      fill(control, 1000, 0);
      for (const size of ['small', 'large'] as const) {
        if (size === 'large') {
          const secs = fill(filled, LARGE, 1000);
          console.log(`(pair ${pair}: filled ${LARGE.toLocaleString('en')} more in ${secs.toFixed(1)} s; load average ${loadavg()})`);
        }
        const idleFigures: [number, number] = [idle(filled, IDLE_S), idle(control, IDLE_S)];
        for (const s of [filled, control]) for (const mode of MODES) load(s, await s.login(mode), WARMUP);
        const per = new Map<string, { filled: Window[]; control: Window[] }>(MODES.map((m) => [m, { filled: [], control: [] }]));
        for (let round = 0; round < WINDOWS; round++) {
          const order = round % 2 === 0 ? [filled, control] : [control, filled];
          for (const mode of MODES) {
            const logins = new Map<Server, Record<string, string>>();
            for (const s of order) logins.set(s, await s.login(mode));
            const w = new Map<Server, Window>();
            for (const s of order) w.set(s, load(s, logins.get(s) as Record<string, string>, REQUESTS));
            const [f, c] = [w.get(filled) as Window, w.get(control) as Window];
            per.get(mode)?.filled.push(f);
            per.get(mode)?.control.push(c);
            const cell = (x: Window) => `${x.cpuUs.toFixed(1)}, ${x.sysPerReq.toFixed(2)}, ${Math.round(x.rps)}${x.errors > 0 ? ` (${x.errors} errors)` : ''}`;
            console.log(`| ${pair} | ${size} | ${round} | ${mode} | ${cell(f)} | ${cell(c)} | ${(f.cpuUs / c.cpuUs).toFixed(2)} |`);
          }
        }
        console.log(`(pair ${pair}, ${size}: idle CPU filled ${idleFigures[0].toFixed(2)} ms/s, control ${idleFigures[1].toFixed(2)} ms/s; load average ${loadavg()})`);
        for (const [mode, { filled: fw, control: cw }] of per) results.push({ pair, size, mode, filled: fw, control: cw, idle: idleFigures });
      }
    } finally {
      await Promise.all(two.map((s) => stopChild(s.child, 5000)));
    }
  }
  console.log('\n| mode | pair | CPU filled ÷ control, median of the rounds: 1,000 → large (change) | CPU µs/check filled / control, medians: 1,000 → large | syscalls/check filled / control: 1,000 → large | idle ms/s filled / control: 1,000 → large |');
  console.log('|---|---:|---|---|---|---|');
  const summary: string[] = [];
  for (const mode of MODES) {
    const changes: number[] = [];
    for (let pair = 0; pair < PAIRS; pair++) {
      const [s, l] = (['small', 'large'] as const).map((size) => results.find((r) => r.pair === pair && r.size === size && r.mode === mode)) as [(typeof results)[0], (typeof results)[0]];
      const ratio = (r: (typeof results)[0]) => med(r.filled.map((f, i) => f.cpuUs / (r.control[i] as Window).cpuUs));
      const change = (ratio(l) - ratio(s)) / ratio(s);
      changes.push(change);
      const m = (ws: Window[], of: (w: Window) => number, d = 1) => med(ws.map(of)).toFixed(d);
      console.log(
        `| ${mode} | ${pair} | ${ratio(s).toFixed(3)} → ${ratio(l).toFixed(3)} (${(change * 100).toFixed(1)} %) | ${m(s.filled, (w) => w.cpuUs)} / ${m(s.control, (w) => w.cpuUs)} → ${m(l.filled, (w) => w.cpuUs)} / ${m(l.control, (w) => w.cpuUs)} | ${m(s.filled, (w) => w.sysPerReq, 2)} / ${m(s.control, (w) => w.sysPerReq, 2)} → ${m(l.filled, (w) => w.sysPerReq, 2)} / ${m(l.control, (w) => w.sysPerReq, 2)} | ${s.idle[0].toFixed(2)} / ${s.idle[1].toFixed(2)} → ${l.idle[0].toFixed(2)} / ${l.idle[1].toFixed(2)} |`,
      );
    }
    summary.push(`${mode}: filled ÷ control rose in ${changes.filter((c) => c > 0).length} of ${changes.length} pairs; median change ${(med(changes) * 100).toFixed(1)} %`);
  }
  console.log(`\n${summary.join('\n')}`);
  console.log(`\n(load average at the end ${loadavg()})`);
} finally {
  if (STORE.startsWith('redis')) unlinkPrefixes(STORE, prefixes);
  rmSync(dir, { recursive: true, force: true });
}
