// node bench/tail.ts — where the session check's p99 comes from (issue 13, goal 1's tail).
//
// Hello world and Tessera (SQLite, Redis; token, cookie), started as bench/run.ts starts them,
// pinned to core 0, each with bench/tail-probe.ts preloaded (its GC pauses, event-loop stalls
// over 1 ms and timer callbacks over 0.2 ms, with times); the load generator (bench/tail-load.ts,
// autocannon keeping each response's latency in µs and its arrival time, the same probe loaded)
// on core 1. After BENCH_WARMUP requests per scenario, TAIL_ROUNDS interleaved rounds of
// TAIL_SECONDS each. Per run: autocannon's whole-ms p50/p99 beside the exact ones, and which of
// the slowest 1 % of responses were in flight during a server GC, a server stall, a load-generator
// GC or stall; then each scenario's distribution over the rounds.
// Environment: TAIL_ROUNDS (6), TAIL_SECONDS (3), TAIL_STORES (sqlite,redis), TAIL_MODES
// (cookie,token), TAIL_VARIANTS (JSON list, one Tessera server per entry and store: extra node
// flags and NAME=value environment variables, e.g. '["TESSERA_SEMI_SPACE_MB=0", ""]' — V8's own
// young-generation sizing beside the default), BENCH_WARMUP (15000), BENCH_CONNECTIONS (50),
// BENCH_REDIS_URL, TAIL_JSON (a file for every run's figures).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchTenant, freePort, waitFor, cpuSeconds, pinNow, pinned, stopChild, tesseraEnv, unlinkPrefixes } from './server-process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ROUNDS = Number(process.env.TAIL_ROUNDS ?? 6);
const SECONDS = Number(process.env.TAIL_SECONDS ?? 3);
const STORES = (process.env.TAIL_STORES ?? 'sqlite,redis').split(',');
const MODES = (process.env.TAIL_MODES ?? 'cookie,token').split(',') as ('token' | 'cookie')[];
const VARIANTS = JSON.parse(process.env.TAIL_VARIANTS ?? '[""]') as string[];
const WARMUP = Number(process.env.BENCH_WARMUP ?? 15_000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const NODE = process.execPath;
const PROBE = join(ROOT, 'bench/tail-probe.ts');
const run = randomBytes(4).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'tessera-tail-'));
const children: ChildProcess[] = [];
const prefixes: string[] = [];

const probeEnv = (name: string) => ({ TAIL_PROBE_OUT: join(dir, `probe-${name}`) });

interface Server {
  name: string;
  url: string;
  pid: number | undefined;
  probe: string;
}

async function startHello(): Promise<Server> {
  const port = await freePort();
  const child = spawn(NODE, ['--import', PROBE, join(ROOT, 'bench/peer-baselines.ts')], {
    env: { PATH: process.env.PATH ?? '', PORT: String(port), PEER: 'hello', ...probeEnv('hello') },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/api/v1/session`, child, 600);
  pinNow(child.pid, 0);
  return { name: 'hello', url, pid: child.pid, probe: `probe-hello.${child.pid}.json` };
}

async function startTessera(store: string, label: string, flags: string): Promise<Server & { login(mode: 'token' | 'cookie'): Promise<Record<string, string>> }> {
  const port = await freePort();
  const admin = randomBytes(24).toString('hex');
  const prefix = `bench-tail-${run}-${randomBytes(3).toString('hex')}:`;
  prefixes.push(prefix);
  const name = `${label}${flags ? ` ${flags}` : ''}`;
  const tag = randomBytes(3).toString('hex');
  const tokens = flags.split(' ').filter(Boolean);
  const variantEnv = Object.fromEntries(tokens.filter((t) => /^[A-Z_]+=/.test(t)).map((t) => [t.slice(0, t.indexOf('=')), t.slice(t.indexOf('=') + 1)]));
  const child = spawn(NODE, [...tokens.filter((t) => !/^[A-Z_]+=/.test(t)), '--import', PROBE, join(ROOT, 'src/cli.ts'), 'start'], {
    cwd: dir,
    env: { ...tesseraEnv({ port, store, prefix, admin }), ...probeEnv(tag), ...variantEnv },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/healthz`, child, 600);
  pinNow(child.pid, 0);
  const login = await benchTenant(url, admin);
  return { name, url, pid: child.pid, probe: `probe-${tag}.${child.pid}.json`, login };
}

interface Probe {
  gc: [number, number, string][];
  stalls: [number, number, number][];
  timers: [number, number, string][];
  windows: { start: number; end: number; allocated: number; gcs: Record<string, number> }[];
}

interface RunFigures {
  scenario: string;
  round: number;
  t0: number;
  t1: number;
  rps: number;
  acP50: number;
  acP99: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  cpuUs: number;
  requests: number;
  /** The run's slow responses and the load generator's own probe, kept for the analysis. */
  slow: [end: number, ms: number][];
  loadProbe: Probe;
  server: Server;
}

const q = (sorted: ArrayLike<number>, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;

function load(server: Server, headers: Record<string, string>, opts: { amount?: number; duration?: number }): Omit<RunFigures, 'scenario' | 'round' | 'server'> {
  const out = join(dir, `load-${randomBytes(4).toString('hex')}.json`);
  const args = [NODE, '--import', PROBE, join(ROOT, 'bench/tail-load.ts'), JSON.stringify({ url: `${server.url}/api/v1/session`, connections: CONNECTIONS, headers, out, ...opts })];
  const [cmd, argv] = pinned(1, args);
  const c0 = cpuSeconds(server.pid);
  // The server's probe counts the bytes it allocates from one signal to the next; each is given
  // a moment to arrive, so that two do not merge into one (the server is idle then).
  const mark = () => {
    if (server.pid === undefined) return;
    process.kill(server.pid, 'SIGUSR2');
    spawnSync('sleep', ['0.2']);
  };
  mark();
  const t0 = performance.timeOrigin + performance.now();
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, TAIL_PROBE_OUT: `${out}.probe` } });
  const t1 = performance.timeOrigin + performance.now();
  mark();
  if (r.status !== 0) throw new Error(`load generator: ${r.stderr}`);
  const f = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { requests: number; rps: number; p50: number; p99: number };
  const raw = JSON.parse(readFileSync(out, 'utf8')) as { ends: number[]; lat: number[] };
  const probeFile = readdirSync(dir).find((x) => x.startsWith(`${out.split('/').pop()}.probe.`));
  const loadProbe = JSON.parse(readFileSync(join(dir, probeFile as string), 'utf8')) as Probe;
  const sorted = Float64Array.from(raw.lat).sort();
  const p99 = q(sorted, 0.99);
  const slow: [number, number][] = [];
  raw.lat.forEach((ms, i) => {
    if (ms >= p99) slow.push([raw.ends[i] as number, ms]);
  });
  return {
    t0,
    t1,
    rps: f.rps,
    acP50: f.p50,
    acP99: f.p99,
    p50: q(sorted, 0.5),
    p99,
    p999: q(sorted, 0.999),
    max: sorted[sorted.length - 1] as number,
    cpuUs: ((cpuSeconds(server.pid) - c0) * 1e6) / Math.max(1, f.requests),
    requests: f.requests,
    slow,
    loadProbe,
  };
}

/** Whether [a0, a1] overlaps any [s, s + ms] of `events` (sorted by start). */
function overlaps(events: [number, number, ...unknown[]][], a0: number, a1: number): boolean {
  let lo = 0;
  let hi = events.length;
  // the first event starting after a1
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((events[mid] as [number, number])[0] <= a1) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo - 1; i >= 0 && i >= lo - 50; i--) {
    const [s, ms] = events[i] as [number, number];
    if (s + ms >= a0) return true;
  }
  return false;
}

const within = <T extends [number, number, ...unknown[]]>(events: T[], t0: number, t1: number) => events.filter(([s]) => s >= t0 && s <= t1);
const pct = (x: number) => `${(100 * x).toFixed(0)} %`;
const f1 = (x: number) => x.toFixed(1);

try {
  const servers: Server[] = [];
  const scenarios: [string, Server, Record<string, string>][] = [];
  const hello = await startHello();
  servers.push(hello);
  scenarios.push(['hello', hello, {}]);
  for (const flags of VARIANTS) {
    for (const store of STORES) {
      const spec = store === 'sqlite' ? `sqlite:${join(dir, `tail-${randomBytes(3).toString('hex')}.db`)}` : REDIS_URL;
      const t = await startTessera(spec, store, flags);
      servers.push(t);
      for (const mode of MODES) scenarios.push([`${mode} ${t.name}`, t, await t.login(mode)]);
    }
  }
  for (const [, s, h] of scenarios) load(s, h, { amount: WARMUP });
  const runs: RunFigures[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const [scenario, s, h] of scenarios) {
      const r = { scenario, round, server: s, ...load(s, h, { duration: SECONDS }) };
      runs.push(r);
      process.stderr.write(`${scenario} round ${round}: p99 ${r.acP99} ms (exact ${f1(r.p99)}), ${Math.round(r.rps)} req/s\n`);
    }
  }
  // Stop the servers: their probes write on exit.
  await Promise.all(children.map((c) => stopChild(c, 8000)));
  const probes = new Map<Server, Probe>();
  for (const s of servers) probes.set(s, JSON.parse(readFileSync(join(dir, s.probe), 'utf8')) as Probe);

  console.log(`\n# bench/tail.ts — ${new Date().toISOString()}, Node ${process.version}, ${CONNECTIONS} connections, ${SECONDS} s × ${ROUNDS} interleaved rounds after ${WARMUP} requests of warm-up; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n`);
  console.log('Per run. "slowest 1 % in flight during": the share of the responses at or above the exact p99 whose time in flight overlapped a server GC pause, a server event-loop stall (> 1 ms late 1 ms timer), the load generator\'s GC or stall; "none" overlapped none of these.\n');
  console.log('| scenario | round | req/s | CPU µs/req | heap bytes allocated/req | autocannon p50 / p99 ms | exact p50 / p99 / p99.9 / max ms | server scavenges/s (median, max ms) | server other GC | server stalls > 1 ms of its own work /s (> 3 ms, max); waiting for the core /s (max) | timers > 0.2 ms | load-gen GC /s (max ms), stalls > 1 ms /s (max) | slowest 1 % in flight during: server GC / server own stall / server waiting for the core / load GC / load stall / none |');
  console.log('|---|---:|---:|---:|---:|---|---|---|---|---|---|---|---|');
  const json: unknown[] = [];
  /** The probe's window of a run: the last one opened before the run began (and closed after it ended). */
  const windowOf = (r: RunFigures) => (probes.get(r.server) as Probe).windows.filter((x) => x.start <= r.t0 && x.end >= r.t1).pop();
  for (const r of runs) {
    const p = probes.get(r.server) as Probe;
    const w = windowOf(r);
    const perReq = w === undefined ? NaN : w.allocated / Math.max(1, r.requests);
    const secs = (r.t1 - r.t0) / 1000;
    const gc = within(p.gc, r.t0, r.t1);
    const scav = gc.filter((g) => g[2] === 'scavenge').map((g) => g[1]).sort((a, b) => a - b);
    const other = gc.filter((g) => g[2] !== 'scavenge');
    const allStalls = within(p.stalls, r.t0, r.t1);
    // A stall in which the thread ran for at least half its length was the server's own work;
    // otherwise the process was waiting for the core (another process ran on it).
    const stalls = allStalls.filter((s) => s[2] >= s[1] / 2);
    const preempted = allStalls.filter((s) => s[2] < s[1] / 2);
    const timers = within(p.timers, r.t0, r.t1);
    const lgc = within(r.loadProbe.gc, r.t0, r.t1);
    const lst = within(r.loadProbe.stalls, r.t0, r.t1);
    const share = { serverGc: 0, serverStall: 0, serverPreempted: 0, loadGc: 0, loadStall: 0, none: 0 };
    for (const [end, ms] of r.slow) {
      const a0 = end - ms;
      const hits = [overlaps(gc, a0, end), overlaps(stalls, a0, end), overlaps(lgc, a0, end), overlaps(lst, a0, end), overlaps(preempted, a0, end)];
      if (hits[0]) share.serverGc++;
      if (hits[1]) share.serverStall++;
      if (hits[2]) share.loadGc++;
      if (hits[3]) share.loadStall++;
      if (hits[4]) share.serverPreempted++;
      if (!hits.some(Boolean)) share.none++;
    }
    const n = Math.max(1, r.slow.length);
    const timerGroups = new Map<string, [number, number]>();
    for (const [, ms, where] of timers) {
      const g = timerGroups.get(where) ?? [0, 0];
      timerGroups.set(where, [g[0] + 1, Math.max(g[1], ms)]);
    }
    const maxOf = (xs: number[]) => (xs.length ? Math.max(...xs) : 0);
    console.log(
      `| ${r.scenario} | ${r.round} | ${Math.round(r.rps)} | ${f1(r.cpuUs)} | ${perReq.toFixed(0)} | ${r.acP50} / ${r.acP99} | ${f1(r.p50)} / ${f1(r.p99)} / ${f1(r.p999)} / ${f1(r.max)} | ${f1(scav.length / secs)} (${f1(q(scav, 0.5) ?? 0)}, ${f1(maxOf(scav))}) | ${other.length ? other.map((g) => `${g[2]} ${f1(g[1])}`).join(', ') : '–'} | ${f1(stalls.length / secs)} (${stalls.filter((s) => s[1] > 3).length}, ${f1(maxOf(stalls.map((s) => s[1])))}); ${f1(preempted.length / secs)} (${f1(maxOf(preempted.map((s) => s[1])))}) | ${[...timerGroups].map(([w, [c, m]]) => `${c}× ≤ ${f1(m)} ms ${w.replace(/^at /, '').replace(ROOT, '').slice(0, 60)}`).join('; ') || '–'} | ${f1(lgc.length / secs)} (${f1(maxOf(lgc.map((g) => g[1])))}), ${f1(lst.length / secs)} (${f1(maxOf(lst.map((s) => s[1])))}) | ${pct(share.serverGc / n)} / ${pct(share.serverStall / n)} / ${pct(share.serverPreempted / n)} / ${pct(share.loadGc / n)} / ${pct(share.loadStall / n)} / ${pct(share.none / n)} |`,
    );
    json.push({ scenario: r.scenario, round: r.round, rps: r.rps, cpuUs: r.cpuUs, allocatedPerRequest: perReq, acP50: r.acP50, acP99: r.acP99, p50: r.p50, p99: r.p99, p999: r.p999, max: r.max, scavengesPerS: scav.length / secs, scavengeMedian: q(scav, 0.5), scavengeMax: maxOf(scav), otherGc: other, stallsPerS: stalls.length / secs, preemptedPerS: preempted.length / secs, stallsOver3: stalls.filter((s) => s[1] > 3).length, stallMax: maxOf(stalls.map((s) => s[1])), timers: [...timerGroups], loadGcPerS: lgc.length / secs, loadStallsPerS: lst.length / secs, share: Object.fromEntries(Object.entries(share).map(([k, v]) => [k, v / n])) });
  }
  console.log('\nPer scenario over the rounds:\n');
  console.log('| scenario | autocannon p99 ms, each round | exact p99 ms (min / median / max) | p99 / hello p99 (autocannon, each round) | exact p99 / hello exact p99 (median) | CPU µs/req (median) | heap bytes allocated/req (median) | scavenges per 10,000 requests (each round) |');
  console.log('|---|---|---|---|---|---:|---:|---|');
  const byScenario = new Map<string, RunFigures[]>();
  for (const r of runs) byScenario.set(r.scenario, [...(byScenario.get(r.scenario) ?? []), r]);
  const helloRuns = byScenario.get('hello') as RunFigures[];
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  for (const [scenario, rs] of byScenario) {
    const exact = rs.map((r) => r.p99).sort((a, b) => a - b);
    const ratios = rs.map((r, i) => r.acP99 / Math.max(1, (helloRuns[i] as RunFigures).acP99));
    const exactRatios = rs.map((r, i) => r.p99 / (helloRuns[i] as RunFigures).p99);
    const alloc = rs.map((r) => (windowOf(r)?.allocated ?? NaN) / Math.max(1, r.requests));
    const scavenges = rs.map((r) => ((windowOf(r)?.gcs.Scavenge ?? 0) * 10_000) / Math.max(1, r.requests));
    console.log(`| ${scenario} | ${rs.map((r) => r.acP99).join(' / ')} | ${f1(exact[0] as number)} / ${f1(med(exact))} / ${f1(exact[exact.length - 1] as number)} | ${ratios.map((x) => f1(x)).join(' / ')} | ${med(exactRatios).toFixed(2)} | ${f1(med(rs.map((r) => r.cpuUs)))} | ${med(alloc).toFixed(0)} | ${scavenges.map((x) => f1(x)).join(' / ')} |`);
  }
  if (process.env.TAIL_JSON) writeFileSync(process.env.TAIL_JSON, JSON.stringify(json));
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  unlinkPrefixes(REDIS_URL, prefixes);
  rmSync(dir, { recursive: true, force: true });
}
