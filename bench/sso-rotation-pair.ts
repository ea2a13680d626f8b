// node bench/sso-rotation-pair.ts [<checkout> ...] — the SSO token exchange (POST /api/v1/sso/token)
// beside refresh-token rotation (POST /api/v1/auth/token/refresh) through HTTP on the same server
// process: what an exchange costs beyond a rotation, on each side. Each checkout (this one when
// none is given) gets a Tessera server of its own on Redis (pinned to core 0, the load generators
// to core 1, as bench/run.ts has them); each round runs, per server, PAIR_REQUESTS rotations of 50
// chains (bench/load-refresh.ts) and as many exchanges of one-time tokens that another process
// stored just before (bench/fill-sso-tokens.ts, not measured; bench/load-sso.ts), servers and
// operations alternated round by round. Per operation: the server's CPU (/proc, user + system),
// Redis's (INFO cpu: every client of that Redis counts, so give it a redis-server of its own), the
// load generator's, the req/s; with PAIR_PERF=1 also the server's system calls, its event loop's
// waits for I/O (epoll: about one per turn of the loop, so 1 / waits is the operations per turn)
// and its context switches (`perf stat` on its pid over the load alone). Medians over the rounds, every round's
// server CPU, and per server the exchange's server CPU against the rotation's round by round.
// Environment: PAIR_ROUNDS (default 5), PAIR_REQUESTS (default 6000), PAIR_WARM_ROTATIONS (default
// 5000) and PAIR_WARM_EXCHANGES (3000): each server's warm-up, PAIR_OPS (default
// rotation,exchange; one of them alone), PAIR_CONNECTIONS (default 50: chains, exchange workers), BENCH_REDIS_URL (default redis://127.0.0.1:6379), PAIR_PERF=1, PAIR_REDIS_STATS=1 (the commands that took Redis the most
// time per operation, scripts' inner commands included, printed per load), PAIR_PERF_RECORD=<folder>
// (a `perf record` of the server over each measured load instead of `perf stat`), PAIR_NODE_FLAGS
// (extra Node flags for the servers, space-separated, e.g. --perf-basic-prof for perf's names),
// PAIR_THREADS=1 (the server's CPU per operation by thread — main, V8's helpers, libuv's pool —
// and how long its main thread was runnable but waited for its core: /proc/<pid>/task/*/schedstat,
// nanoseconds), PAIR_TRACE_GC=1 (the server started with --trace-gc: its scavenges and
// mark-compacts per 1,000 operations, and their pauses, over each measured load).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseRedisInfo, topCommands } from './bench-redis.ts';
import { cpuSeconds, freePort, pinned, stopChild, unlinkPrefixes, waitFor } from './server-process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ROUNDS = Number(process.env.PAIR_ROUNDS ?? 5);
const REQUESTS = Number(process.env.PAIR_REQUESTS ?? 6000);
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PERF = process.env.PAIR_PERF === '1';
/** PAIR_PERF_RECORD=<folder>: a `perf record` of the server over each measured load, <label>-<op>-<round>.data (with PAIR_NODE_FLAGS=--perf-basic-prof for JavaScript's names). */
const RECORD = process.env.PAIR_PERF_RECORD ?? null;
/** PAIR_REDIS_STATS=1: also the commands that took Redis the most time per operation over each measured load. */
const REDIS_STATS = process.env.PAIR_REDIS_STATS === '1';
const THREADS = process.env.PAIR_THREADS === '1';
const TRACE_GC = process.env.PAIR_TRACE_GC === '1';
/** PAIR_TRACE_JIT=1: the server started with --trace-opt --trace-deopt, its compilations and deoptimisations counted per load. */
const TRACE_JIT = process.env.PAIR_TRACE_JIT === '1';
const NODE_FLAGS = [...(process.env.PAIR_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean), ...(TRACE_GC ? ['--trace-gc'] : []), ...(TRACE_JIT ? ['--trace-opt', '--trace-deopt'] : [])];
/** Each server's warm-up before the first measured round: rotations, then exchanges. */
const WARM_ROTATIONS = Number(process.env.PAIR_WARM_ROTATIONS ?? 5000);
const WARM_EXCHANGES = Number(process.env.PAIR_WARM_EXCHANGES ?? 3000);
/** Connections of the load (rotation chains, exchange workers): at most 50, the chains logged in. */
const CONNECTIONS = Math.min(50, Number(process.env.PAIR_CONNECTIONS ?? 50));
/** The operations measured, in the order of the even rounds. */
const OPS = (process.env.PAIR_OPS ?? 'rotation,exchange').split(',') as ('rotation' | 'exchange')[];
const NODE = process.execPath;
const dir = mkdtempSync(join(tmpdir(), 'tessera-pair-'));
const children: ChildProcess[] = [];
const prefixes: string[] = [];

interface Server {
  label: string;
  root: string;
  url: string;
  pid: number;
  prefix: string;
  cookieKey: string;
  /** Each chain's refresh token to go on with. */
  tokens: string[];
  /** PAIR_TRACE_GC: the file the server's --trace-gc lines go to. */
  gcLog: string | null;
}

async function start(root: string, label: string): Promise<Server> {
  const port = await freePort();
  const admin = randomBytes(24).toString('hex');
  const prefix = `bench-pair-${randomBytes(4).toString('hex')}:`;
  prefixes.push(prefix);
  const cookieKey = randomBytes(32).toString('base64url');
  const [cmd, args] = pinned(0, [NODE, ...NODE_FLAGS, join(root, 'src/cli.ts'), 'start']);
  const gcLog = TRACE_GC || TRACE_JIT ? join(dir, `gc-${port}.log`) : null;
  const child = spawn(cmd, args, {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', TESSERA_PORT: String(port), TESSERA_STORE: REDIS_URL, TESSERA_REDIS_PREFIX: prefix, TESSERA_ADMIN_TOKEN: admin, COOKIE_SECRET_SIGN_KEY: cookieKey, TESSERA_LOG_LEVEL: 'info' },
    // --trace-gc's lines to a file, not a pipe: this process blocks in spawnSync during each load
    // and would not drain one.
    stdio: ['ignore', gcLog === null ? 'ignore' : openSync(gcLog, 'w'), 'inherit'],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/healthz`, child, 600);
  // taskset execs the server in its own process: the pid to read is the child's.
  const pid = child.pid as number;
  const h = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
  const ok = async (r: Response) => {
    if (!r.ok && r.status !== 409) throw new Error(`${r.url}: ${r.status} ${await r.text()}`);
    return r;
  };
  await ok(await fetch(`${url}/api/v1/admin/tenants/bench`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' }));
  const tokens: string[] = [];
  for (let i = 0; i < 50; i += 5) {
    const batch = [0, 1, 2, 3, 4].map(async (j) => {
      const email = `pair${i + j}@example.com`;
      await ok(await fetch(`${url}/api/v1/admin/users`, { method: 'POST', headers: h, body: JSON.stringify({ tenantId: 'bench', email, password: 'bench password' }) }));
      const res = await ok(await fetch(`${url}/api/v1/auth/login`, { method: 'POST', headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json' }, body: JSON.stringify({ email, password: 'bench password' }) }));
      return ((await res.json()) as { refreshToken: string }).refreshToken;
    });
    tokens.push(...(await Promise.all(batch)));
  }
  return { label, root, url, pid, prefix, cookieKey, tokens, gcLog };
}

/** PAIR_THREADS: a process's threads by name — [ns on a core, ns runnable but waiting for one] summed — and its main thread's wait. */
function threadTimes(pid: number): { byName: Map<string, [number, number]>; mainWait: number } {
  const byName = new Map<string, [number, number]>();
  let mainWait = NaN;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number) as [number, number];
      const name = tid === String(pid) ? 'main' : comm;
      const [r0, w0] = byName.get(name) ?? [0, 0];
      byName.set(name, [r0 + run, w0 + wait]);
      if (tid === String(pid)) mainWait = wait;
    } catch {
      // a thread that ended meanwhile
    }
  }
  return { byName, mainWait };
}

/** The --trace-gc (and --trace-opt) lines in the server's log so far. */
function gcLines(s: Server): string[] {
  return s.gcLog === null ? [] : readFileSync(s.gcLog, 'utf8').split('\n').filter((l) => /: (Scavenge|Mark-Compact|Mark-Sweep|Minor Mark)|^\[(completed compiling|bailout)/.test(l));
}

/** --trace-opt/--trace-deopt lines: compilations by tier (with their compile ms, mostly off the main thread) and deoptimisations. */
function jitSummary(lines: string[], n: number): string {
  const by = new Map<string, [number, number]>();
  for (const l of lines) {
    const c = /^\[completed compiling .*\(target (\w+)\).* - took [\d.]+, ([\d.]+), [\d.]+ ms\]/.exec(l);
    const kind = c ? (c[1] as string) : l.startsWith('[bailout') ? 'deopt' : null;
    if (kind === null) continue;
    const [k, ms] = by.get(kind) ?? [0, 0];
    by.set(kind, [k + 1, ms + Number(c?.[2] ?? 0)]);
  }
  return [...by].map(([k, [c, ms]]) => `${k} ${c}${ms > 0 ? ` (${((ms * 1000) / n).toFixed(1)} µs/op compiling)` : ''}`).join(', ') || 'none';
}

/** --trace-gc lines: counts and pause ms by kind ("Scavenge", "Mark-Compact", …). */
function gcSummary(lines: string[], n: number): string {
  const by = new Map<string, [number, number]>();
  for (const l of lines) {
    if (l.startsWith('[completed') || l.startsWith('[bailout')) continue;
    const m = /: (Scavenge|Mark-Compact|Mark-Sweep|Minor Mark-Sweep)\b.*? MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \//.exec(l);
    const kind = m?.[1] ?? 'other';
    const [c, ms] = by.get(kind) ?? [0, 0];
    by.set(kind, [c + 1, ms + Number(m?.[2] ?? 0)]);
  }
  return [...by].map(([k, [c, ms]]) => `${k} ${((c * 1000) / n).toFixed(2)} per 1,000 ops (${((ms * 1000) / n).toFixed(1)} µs/op of pauses)`).join(', ') || 'none';
}

interface Figures {
  us: number;
  /** Redis's CPU per operation (INFO cpu: every client of that Redis counted). */
  redisUs: number;
  /** The load generator's CPU per operation (its own process.cpuUsage over the load). */
  loadUs: number;
  rps: number;
  syscalls: number;
  /** The event loop's waits for I/O (epoll_wait, epoll_pwait, epoll_pwait2): about one per turn. */
  waits: number;
  switches: number;
}

/** `perf stat` on the server's pid for as long as `run` takes; its counts per operation. */
async function perfAround<T>(pid: number, run: () => T, record: string | null): Promise<{ result: T; counts: Map<string, number> }> {
  if (!PERF && record === null) return { result: run(), counts: new Map() };
  const out = join(dir, `perf-${randomBytes(3).toString('hex')}.txt`);
  const perf =
    record !== null
      ? spawn('perf', ['record', '-q', '-F', '4999', '-o', record, '-p', String(pid)], { stdio: 'ignore' })
      : spawn('perf', ['stat', '-x', ',', '-o', out, '-e', 'raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_pwait2,context-switches', '-p', String(pid)], { stdio: 'ignore' });
  const exited = new Promise((res) => perf.once('exit', res));
  await new Promise((res) => setTimeout(res, 200));
  const result = run();
  perf.kill('SIGINT');
  await exited;
  const counts = new Map<string, number>();
  if (record !== null) return { result, counts };
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const f = line.split(',');
    if (f.length > 3 && /^\d+$/.test(f[0] as string)) counts.set(f[2] as string, Number(f[0]));
  }
  return { result, counts };
}

function redisInfo(): ReturnType<typeof parseRedisInfo> {
  return parseRedisInfo(spawnSync('redis-cli', ['-u', REDIS_URL, 'info', 'everything'], { encoding: 'utf8' }).stdout);
}

function load(s: Server, script: string, opts: object): { requests: number; rps: number; non2xx: number; errors: number; loadCpuS: number; tokens?: string[] } {
  const [cmd, args] = pinned(1, [NODE, join(ROOT, script), JSON.stringify(opts)]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 700_000 });
  if (r.status !== 0) throw new Error(`${script} failed: ${r.stderr}`);
  const f = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { requests: number; rps: number; non2xx: number; errors: number; loadCpuS: number; tokens?: string[] };
  if (f.non2xx + f.errors > 0) console.log(`(${s.label} ${script}: ${f.non2xx} non-2xx, ${f.errors} errors; ${r.stderr.trim()})`);
  return f;
}

async function measure(s: Server, op: 'rotation' | 'exchange', amount: number, record: string | null = null): Promise<Figures> {
  let run: () => ReturnType<typeof load>;
  if (op === 'rotation') {
    // The first CONNECTIONS chains; the others keep their tokens for the next round.
    run = () => {
      const f = load(s, 'bench/load-refresh.ts', { url: `${s.url}/api/v1/auth/token/refresh`, seconds: 600, tokens: s.tokens.slice(0, CONNECTIONS), amount });
      return { ...f, tokens: f.tokens === undefined ? undefined : [...f.tokens, ...s.tokens.slice(CONNECTIONS)] };
    };
  } else {
    const out = join(dir, `sso-${randomBytes(3).toString('hex')}.txt`);
    const fill = spawnSync(NODE, [join(s.root, 'bench/fill-sso-tokens.ts'), JSON.stringify({ store: REDIS_URL, prefix: s.prefix, cookieKey: s.cookieKey, tenantId: 'bench', count: amount, budgetS: 30, out })], { encoding: 'utf8', cwd: dir, timeout: 120_000 });
    if (fill.status !== 0) throw new Error(`SSO fill failed: ${fill.stderr}`);
    // Let the server take in what the fill published (its audit records) before measuring.
    spawnSync('sleep', ['0.5']);
    run = () => load(s, 'bench/load-sso.ts', { url: `${s.url}/api/v1/sso/token`, connections: CONNECTIONS, seconds: 600, tokens: out });
  }
  const r0 = redisInfo();
  const g0 = TRACE_GC || TRACE_JIT ? gcLines(s).length : 0;
  const logBytes0 = s.gcLog === null ? 0 : statSync(s.gcLog).size;
  const t0 = THREADS ? threadTimes(s.pid) : null;
  const c0 = cpuSeconds(s.pid);
  const { result: f, counts } = await perfAround(s.pid, run, record);
  const c1 = cpuSeconds(s.pid);
  const t1 = THREADS ? threadTimes(s.pid) : null;
  const r1 = redisInfo();
  const n = Math.max(1, f.requests);
  if (t0 !== null && t1 !== null) {
    const rows = [...t1.byName].map(([name, [run, wait]]) => [name, (run - (t0.byName.get(name)?.[0] ?? 0)) / 1000 / n, (wait - (t0.byName.get(name)?.[1] ?? 0)) / 1000 / n] as const).filter(([, run]) => run > 0.05);
    rows.sort((a, b) => b[1] - a[1]);
    console.log(`(${s.label} ${op}: µs/op by thread on a core [waiting for one] ${rows.map(([name, run, wait]) => `${name} ${run.toFixed(1)} [${wait.toFixed(1)}]`).join(', ')}; main thread waited ${((t1.mainWait - t0.mainWait) / 1000 / n).toFixed(1)})`);
  }
  if (TRACE_GC || TRACE_JIT) {
    const lines = gcLines(s).slice(g0);
    console.log(`(${s.label} ${op}, log ${s.gcLog} bytes ${logBytes0}–${statSync(s.gcLog as string).size}:${TRACE_GC ? ` GC ${gcSummary(lines, n)}` : ''}${TRACE_JIT ? ` JIT ${jitSummary(lines, n)}` : ''})`);
  }
  if (REDIS_STATS) console.log(`(${s.label} ${op}: Redis by command per operation, ${topCommands(r0.commandstats, r1.commandstats, n, 12)})`);
  if (f.tokens) s.tokens = f.tokens;
  return {
    us: ((c1 - c0) * 1e6) / n,
    redisUs: ((r1.cpuS - r0.cpuS) * 1e6) / n,
    loadUs: (f.loadCpuS * 1e6) / n,
    rps: f.rps,
    syscalls: (counts.get('raw_syscalls:sys_enter') ?? NaN) / n,
    waits: ((counts.get('syscalls:sys_enter_epoll_wait') ?? 0) + (counts.get('syscalls:sys_enter_epoll_pwait') ?? 0) + (counts.get('syscalls:sys_enter_epoll_pwait2') ?? 0)) / (PERF ? n : NaN),
    switches: (counts.get('context-switches') ?? NaN) / n,
  };
}

const roots = process.argv.slice(2).map((r) => resolve(r));
const servers: Server[] = [];
try {
  if (roots.length === 0) servers.push(await start(ROOT, 'this'));
  for (const [i, r] of roots.entries()) servers.push(await start(r, r === resolve(ROOT) ? 'this' : `#${i + 1} ${r}`));
  for (const s of servers) {
    if (WARM_ROTATIONS > 0) await measure(s, 'rotation', WARM_ROTATIONS);
    if (WARM_EXCHANGES > 0) await measure(s, 'exchange', WARM_EXCHANGES);
  }
  const rows = new Map<string, Figures[]>();
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? servers : [...servers].reverse();
    const ops = round % 2 === 0 ? OPS : [...OPS].reverse();
    for (const s of order) {
      for (const op of ops) {
        const key = `${s.label} ${op}`;
        rows.set(key, [...(rows.get(key) ?? []), await measure(s, op, REQUESTS, RECORD === null ? null : join(RECORD, `${s.label.replace(/\W+/g, '_')}-${op}-${round}.data`))]);
      }
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  console.log(`\n# bench/sso-rotation-pair.ts — ${new Date().toISOString()}, Node ${process.version}, ${ROUNDS} rounds × ${REQUESTS} operations, ${CONNECTIONS} connections\n`);
  console.log('| server, operation | server CPU µs/op (median) | rounds | Redis CPU µs/op | load generator CPU µs/op | req/s | server syscalls/op | event-loop waits/op | server context switches/op |');
  console.log('|---|---:|---|---:|---:|---:|---:|---:|---:|');
  for (const [key, fs] of rows) {
    const m = (pick: (f: Figures) => number, digits = 1) => median(fs.map(pick)).toFixed(digits);
    console.log(`| ${key} | ${m((f) => f.us)} | ${fs.map((f) => f.us.toFixed(0)).join(' / ')} | ${m((f) => f.redisUs)} | ${m((f) => f.loadUs)} | ${m((f) => f.rps, 0)} | ${m((f) => f.syscalls, 2)} | ${m((f) => f.waits, 3)} | ${m((f) => f.switches, 2)} |`);
  }
  for (const s of OPS.length === 2 ? servers : []) {
    const [rot, ex] = (['rotation', 'exchange'] as const).map((op) => rows.get(`${s.label} ${op}`)!.map((f) => f.us)) as [number[], number[]];
    console.log(`\n${s.label}: the exchange's server CPU above the rotation's in ${ex.filter((x, i) => x > (rot[i] as number)).length} of ${ex.length} rounds; median of the differences per round ${median(ex.map((x, i) => x - (rot[i] as number))).toFixed(1)} µs`);
  }
  if (servers.length === 2) {
    for (const op of ['rotation', 'exchange']) {
      const [a, b] = servers.map((s) => rows.get(`${s.label} ${op}`)!.map((f) => f.us)) as [number[], number[]];
      console.log(`\n${op}: ${servers[0]!.label} lower than ${servers[1]!.label} in ${a.filter((x, i) => x < (b[i] as number)).length} of ${a.length} rounds`);
    }
  }
} finally {
  await Promise.all(children.map((c) => stopChild(c)));
  unlinkPrefixes(REDIS_URL, prefixes);
  // PAIR_KEEP=1: the folder (the servers' logs) is left, and named.
  if (process.env.PAIR_KEEP === '1') console.log(`(kept ${dir})`);
  else rmSync(dir, { recursive: true, force: true });
}
