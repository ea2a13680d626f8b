// node bench/cpu-latency.ts — the session check's latency distribution in the server's own CPU time
// (bench/cpu-latency-probe.ts), token and cookie mode, on a machine shared with other work.
//
// Wall-time p99s measured beside other sessions' builds are the waits for a core (tens of ms);
// the probe counts, per response, the server thread's CPU between the previous response on the
// same connection and this one — in the closed loop of the check (50 connections, the server the
// bottleneck) the work that request waited for — so its p50/p99/p99.9 compare two modes or two
// builds while the neighbours come and go. What it leaves out: the client and the network, the
// first response of each connection, the server's idle time (see the probe's header).
//
// Per round and per checkout (this one, and CL_REF's sources beside it, alternated round by
// round): a fresh `tessera start` (as bench/run.ts starts it: its own flags, log level info, lines
// to /dev/null, pinned to core 0; the load generator, bench/load.ts, on core 1), a token and a
// cookie login, BENCH_WARMUP requests of each, then a token window and a cookie window of CL_AMOUNT
// requests, in that order (the bench's). CL_SLIDE=1 gives the tenant a 100 s idle lifetime and
// waits until the cookie session's sliding write is due, so that the cookie window begins with the
// process's first slide (as in a quick run, where the SQLite and PostgreSQL cookie rows are measured
// over 45 s after their login; docs/performance.md, "Cookie mode's p99: the first slide, the Cookie
// header and the CPU-time latency").
// Environment: CL_ROUNDS (5), CL_AMOUNT (100000), CL_STORE (sqlite, or a Redis or PostgreSQL URL),
// CL_SLIDE, CL_REF, BENCH_WARMUP (40000), BENCH_CONNECTIONS (50).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchTenant, cpuSeconds, freePort, pinned, pinNow, stopChild, tesseraEnv, unlinkPrefixes, waitFor } from './server-process.ts';

const HERE = fileURLToPath(new URL('..', import.meta.url));
const ROOTS = [HERE, ...(process.env.CL_REF ? [resolve(process.env.CL_REF)] : [])];
const ROUNDS = Number(process.env.CL_ROUNDS ?? 5);
const AMOUNT = Number(process.env.CL_AMOUNT ?? 100_000);
const STORE = process.env.CL_STORE ?? 'sqlite';
const SLIDE = process.env.CL_SLIDE === '1';
const WARMUP = Number(process.env.BENCH_WARMUP ?? 40_000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const NODE = process.execPath;
const PROBE = join(HERE, 'bench/cpu-latency-probe.ts');
/** The tenant's idle lifetime (s): with CL_SLIDE the sliding write is due every 5 s (idle/20). */
const IDLE = SLIDE ? 100 : 900;
const dir = mkdtempSync(join(tmpdir(), 'tessera-cpu-latency-'));
const out = join(dir, 'figures');
const prefixes: string[] = [];

interface Figures {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}
interface Window extends Figures {
  cpuUs: number;
  wallP99: number;
  rps: number;
}
interface Server {
  child: ChildProcess;
  url: string;
  pid: number;
  login(mode: 'token' | 'cookie'): Promise<Record<string, string>>;
}

async function startTessera(root: string): Promise<Server> {
  const port = await freePort();
  const admin = randomBytes(24).toString('hex');
  const prefix = `bench-cpu-latency-${randomBytes(4).toString('hex')}:`;
  prefixes.push(prefix);
  const child = spawn(NODE, ['--import', PROBE, join(root, 'src/cli.ts'), 'start'], {
    cwd: dir,
    env: { ...tesseraEnv({ port, store: STORE === 'sqlite' ? `sqlite:${join(dir, `${port}.db`)}` : STORE, prefix, admin }), CL_OUT: out },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/healthz`, child, 600);
  pinNow(child.pid, 0);
  const login = await benchTenant(url, admin, { lifetimes: { appIdle: IDLE } });
  return { child, url, pid: child.pid as number, login };
}

/** A window of `amount` requests; with `measure`, the probe's figures for it. */
function load(s: Server, headers: Record<string, string>, amount: number, measure: boolean): Window | null {
  const signal = () => {
    process.kill(s.pid, 'SIGUSR2');
    spawnSync('sleep', ['0.2']);
  };
  if (measure) signal();
  const [cmd, argv] = pinned(1, [NODE, join(HERE, 'bench/load.ts'), JSON.stringify({ url: `${s.url}/api/v1/session`, connections: CONNECTIONS, headers, amount })]);
  const c0 = cpuSeconds(s.pid);
  const r = spawnSync(cmd, argv, { encoding: 'utf8' });
  const cpuUs = ((cpuSeconds(s.pid) - c0) * 1e6) / amount;
  if (r.status !== 0) throw new Error(`load generator: ${r.stderr}`);
  if (!measure) return null;
  signal();
  const lines = readFileSync(`${out}.${s.pid}`, 'utf8').trim().split('\n');
  const f = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { p99: number; rps: number };
  return { ...(JSON.parse(lines[lines.length - 1] as string) as Figures), cpuUs, wallP99: f.p99, rps: f.rps };
}

const label = (root: string) => (ROOTS.length > 1 ? (root === HERE ? ' (this)' : ' (ref)') : '');
const samples = new Map<string, Window[]>();
try {
  console.log(`# bench/cpu-latency.ts — ${new Date().toISOString()}, ${STORE.split(':')[0]}, ${CONNECTIONS} connections, ${ROUNDS} rounds × ${AMOUNT} requests per window after ${WARMUP} per mode; ${SLIDE ? 'the cookie window begins with the first slide' : 'no slide in the windows'}; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n`);
  console.log('| round | server | mode | CPU-time latency µs: p50 / p90 / p99 / p99.9 / max (mean) | process CPU µs/req | wall p99 ms (loaded) | req/s |');
  console.log('|---:|---|---|---|---:|---:|---:|');
  for (let round = 0; round < ROUNDS; round++) {
    for (const root of round % 2 === 0 ? ROOTS : [...ROOTS].reverse()) {
      const s = await startTessera(root);
      try {
        const [token, cookie] = [await s.login('token'), await s.login('cookie')];
        const loggedIn = Date.now();
        load(s, token, WARMUP, false);
        load(s, cookie, WARMUP, false);
        const windows: Array<['token' | 'cookie', Record<string, string>]> = [['token', token], ['cookie', cookie]];
        for (const [mode, headers] of windows) {
          // The slide is due min(60 s, idle/20) after the login.
          const due = loggedIn + Math.min(60_000, IDLE * 50) + 300;
          if (SLIDE && mode === 'cookie' && Date.now() < due) spawnSync('sleep', [String((due - Date.now()) / 1000)]);
          const w = load(s, headers, AMOUNT, true) as Window;
          const key = `${mode}${label(root)}`;
          samples.set(key, [...(samples.get(key) ?? []), w]);
          const us = (x: number) => x.toFixed(0);
          console.log(`| ${round} | ${label(root).trim() || 'this'} | ${mode} | ${us(w.p50)} / ${us(w.p90)} / ${us(w.p99)} / ${us(w.p999)} / ${us(w.max)} (${us(w.mean)}) | ${w.cpuUs.toFixed(1)} | ${w.wallP99} | ${Math.round(w.rps)} |`);
        }
      } finally {
        await stopChild(s.child, 5000);
      }
    }
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  console.log('\n| server, mode | p99 µs, each round | median p99 / p99.9 / mean µs | median process CPU µs/req |');
  console.log('|---|---|---|---:|');
  for (const [key, ws] of samples) {
    console.log(`| ${key} | ${ws.map((w) => w.p99.toFixed(0)).join(' / ')} | ${med(ws.map((w) => w.p99)).toFixed(0)} / ${med(ws.map((w) => w.p999)).toFixed(0)} / ${med(ws.map((w) => w.mean)).toFixed(0)} | ${med(ws.map((w) => w.cpuUs)).toFixed(1)} |`);
  }
  const diff = (a: string, b: string, of: (w: Window) => number) => {
    const [x, y] = [samples.get(a) ?? [], samples.get(b) ?? []];
    const d = x.map((w, i) => of(w) - of(y[i] as Window));
    return `${d.map((v) => v.toFixed(0)).join(' / ')} (median ${med(d).toFixed(0)}; lower in ${d.filter((v) => v < 0).length} of ${d.length})`;
  };
  console.log('');
  for (const root of ROOTS) console.log(`cookie − token${label(root)}, p99 µs per round: ${diff(`cookie${label(root)}`, `token${label(root)}`, (w) => w.p99)}`);
  if (ROOTS.length > 1) {
    for (const mode of ['token', 'cookie']) {
      console.log(`${mode}: this − ref, p99 µs per round: ${diff(`${mode} (this)`, `${mode} (ref)`, (w) => w.p99)}; mean: ${diff(`${mode} (this)`, `${mode} (ref)`, (w) => w.mean)}`);
    }
  }
} finally {
  if (STORE.startsWith('redis')) unlinkPrefixes(STORE, prefixes);
  rmSync(dir, { recursive: true, force: true });
}
