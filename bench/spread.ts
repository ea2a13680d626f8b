// node bench/spread.ts — how much one fresh `tessera start` differs from the next of the same
// build, and whether a Node flag changes that (docs/performance.md, "Process-to-process spread").
// For each of SPREAD_PROCESSES (default 8) pairs, one fresh server per variant — the order
// alternated pair by pair (A B, B A, A B, …) — started as operators run it (`src/cli.ts start`,
// log level `info`, its lines to /dev/null, the flags `tessera start` gives itself) plus the
// variant's own Node flags (kept through the self-replacement, as any flag on the command line),
// pinned to core 0 after it answers; the load generator and this run's own redis-server on core 1.
// Then, per process, as bench/run.ts does: SPREAD_WARMUP (15,000) requests of warm-up, and
// SPREAD_WINDOWS (3) measured windows of SPREAD_REQUESTS (20,000 checks; rotations: half) each.
// Per window: server CPU µs per request (all threads, /proc/<pid>/stat), the part not on the main
// thread (V8's GC and compiler threads: /proc/<pid>/task/<pid>/stat subtracted), the growth of
// the resident memory, and per request the main thread's voluntary context switches (waits in
// epoll with nothing to do) and the process's read/write system calls (/proc/<pid>/io), the main
// thread's involuntary context switches per 1,000 requests, and the CPU time core 0 gave to
// other processes during the window, per request (/proc/stat less the server's own), and the
// window's throughput (requests over the load generator's own wall time, first request to last
// answer). Printed: every process's windows, then per variant min / median / max of each
// process's median window (CPU per request, and req/s), and per variant after the first the
// pairs in which it was lower (CPU) or higher (req/s) than the first variant's process of the pair.
// Environment: SPREAD_MODE (rotation | cookie-sqlite | token-sqlite | cookie-redis; default
// rotation), SPREAD_VARIANTS (`;`-separated variants, each a space-separated list of Node flags,
// the empty string for the default; default ";--no-allocation-site-pretenuring"),
// SPREAD_PROCESSES, SPREAD_WARMUP, SPREAD_WINDOWS, SPREAD_REQUESTS, BENCH_CONNECTIONS (50),
// SPREAD_PIN_AT_START=1 (each server started under `taskset -c 0` rather than pinned once it
// answers: it sees one core from its first instruction, `os.availableParallelism()` 1, as in a
// one-CPU container — what src/config/node-flags.ts decides on),
// A variant's word of the form NAME=value (an upper-case name) is set in that server's environment
// instead of passed as a flag (e.g. `TESSERA_REDIS_HOT_WRITES=turn`), and a word `@<checkout>`
// starts that checkout's src/cli.ts instead of this one's (an A/B of two builds, e.g. `;@/work/main`).
// SPREAD_OUT_DIR (each server's standard output — its log lines, and what `--trace-gc` and the
// like print — to `<dir>/<n>.out` there instead of /dev/null: for traces, not for figures).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startOwnRedis } from './bench-redis.ts';
import { freePort, hasTaskset, pinned, pinNow, stopChild, waitFor } from './server-process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NODE = process.execPath;
const MODE = process.env.SPREAD_MODE ?? 'rotation';
const VARIANTS = (process.env.SPREAD_VARIANTS ?? ';--no-allocation-site-pretenuring').split(';').map((v) => v.split(/\s+/).filter(Boolean));
const PROCESSES = Number(process.env.SPREAD_PROCESSES ?? 8);
const WARMUP = Number(process.env.SPREAD_WARMUP ?? 15_000);
const WINDOWS = Number(process.env.SPREAD_WINDOWS ?? 3);
const REQUESTS = Number(process.env.SPREAD_REQUESTS ?? (MODE === 'rotation' ? 10_000 : 20_000));
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const OUT_DIR = process.env.SPREAD_OUT_DIR ?? null;
const SIDE_BY_SIDE = process.env.SPREAD_SIDE_BY_SIDE === '1';
const PIN_AT_START = process.env.SPREAD_PIN_AT_START === '1';
if (!['rotation', 'cookie-sqlite', 'token-sqlite', 'cookie-redis'].includes(MODE)) throw new Error(`SPREAD_MODE: ${MODE}?`);

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
/** CPU seconds of a process (all threads) and of its main thread. */
function cpu(pid: number): { all: number; main: number } {
  const ticks = (path: string) => {
    const f = readFileSync(path, 'utf8').replace(/^.*\) /, '').split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  };
  return { all: ticks(`/proc/${pid}/stat`), main: ticks(`/proc/${pid}/task/${pid}/stat`) };
}
/** Seconds core 0 has been busy (user, nice, system, irq, softirq, steal) since boot. */
function core0BusySeconds(): number {
  const f = (/^cpu0 (.*)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? '').split(' ').map(Number);
  return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0)) / CLOCK_TICKS;
}

/** Resident MB, and the main thread's voluntary context switches (each a wait in epoll with nothing to do) and read/write system calls so far. */
function counters(pid: number): { rssMb: number; sleeps: number; preempted: number; core0Busy: number; syscalls: number } {
  const num = (re: RegExp, text: string) => Number(re.exec(text)?.[1] ?? NaN);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return {
    rssMb: num(/VmRSS:\s+(\d+)/, status) / 1024,
    sleeps: num(/\bvoluntary_ctxt_switches:\s+(\d+)/, readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8')),
    preempted: num(/nonvoluntary_ctxt_switches:\s+(\d+)/, readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8')),
    core0Busy: core0BusySeconds(),
    syscalls: num(/syscr:\s+(\d+)/, io) + num(/syscw:\s+(\d+)/, io),
  };
}

function load(script: string, opts: unknown): { requests: number; non2xx: number; errors: number; loadWallS: number; tokens?: string[] } {
  const [cmd, args] = pinned(1, [NODE, join(ROOT, script), JSON.stringify(opts)]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`${script}: exit ${r.status ?? r.signal}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as { requests: number; non2xx: number; errors: number; loadWallS: number; tokens?: string[] };
}

const dir = mkdtempSync(join(tmpdir(), 'tessera-spread-'));
const run = randomBytes(4).toString('hex');
const redis = await startOwnRedis(1, hasTaskset, dir);
const cookieKey = randomBytes(32).toString('base64url');

interface Window { us: number; rps: number; threadsUs: number; rssMb: number; sleeps: number; syscalls: number; preempted: number; othersUs: number; bad: number }

interface Server { pid: number; window(): Window; stop(): Promise<void> }

/** A fresh server of `flags`, warmed up; `window()` measures one window of it. */
async function startServer(words: string[], n: number): Promise<Server> {
  const flags = words.filter((w) => !/^[A-Z][A-Z0-9_]*=/.test(w) && !w.startsWith('@'));
  const env = Object.fromEntries(words.filter((w) => /^[A-Z][A-Z0-9_]*=/.test(w)).map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]));
  const root = words.find((w) => w.startsWith('@'))?.slice(1) ?? ROOT;
  const port = await freePort();
  const admin = randomBytes(24).toString('hex');
  const store = MODE.endsWith('sqlite') ? `sqlite:${join(dir, `s${n}.db`)}` : redis.url;
  const out = OUT_DIR === null ? 'ignore' : openSync(join(OUT_DIR, `${n}.out`), 'w');
  const [command, args] = PIN_AT_START ? pinned(0, [NODE, ...flags, join(root, 'src/cli.ts'), 'start']) : [NODE, [...flags, join(root, 'src/cli.ts'), 'start']];
  const child: ChildProcess = spawn(command, args, {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      TESSERA_PORT: String(port),
      TESSERA_STORE: store,
      TESSERA_REDIS_PREFIX: `bench-spread-${run}-${n}:`,
      TESSERA_ADMIN_TOKEN: admin,
      COOKIE_SECRET_SIGN_KEY: cookieKey,
      TESSERA_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', out, 'inherit'],
  });
  if (typeof out === 'number') closeSync(out);
  try {
    const url = `http://127.0.0.1:${port}`;
    await waitFor(`${url}/healthz`, child, 2400); // up to 2 min: a start-up on a loaded machine took more than 20 s
    const pid = child.pid as number;
    pinNow(pid, 0);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    for (const f of flags) if (!cmdline.includes(f)) throw new Error(`flag ${f} missing from the server's command line: ${cmdline.join(' ')}`);
    const h = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
    const ok = async (r: Response) => {
      if (!r.ok && r.status !== 409) throw new Error(`${r.url}: ${r.status} ${await r.text()}`);
      return r;
    };
    await ok(await fetch(`${url}/api/v1/admin/tenants/bench`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' }));
    const login = async (email: string, mode: 'token' | 'cookie') => {
      await ok(await fetch(`${url}/api/v1/admin/users`, { method: 'POST', headers: h, body: JSON.stringify({ tenantId: 'bench', email, password: 'bench password' }) }));
      return ok(
        await fetch(`${url}/api/v1/auth/login`, {
          method: 'POST',
          headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json', 'x-auth-mode': mode },
          body: JSON.stringify({ email, password: 'bench password' }),
        }),
      );
    };
    let next: (amount: number) => { requests: number; non2xx: number; errors: number; loadWallS: number };
    if (MODE === 'rotation') {
      // 50 chains, logged in five at a time (bench/run.ts), going on from where each run ended.
      let tokens: string[] = [];
      for (let i = 0; i < CONNECTIONS; i += 5) {
        const batch = [0, 1, 2, 3, 4].slice(0, CONNECTIONS - i).map(async (j) => ((await (await login(`r${i + j}@example.com`, 'token')).json()) as { refreshToken: string }).refreshToken);
        tokens.push(...(await Promise.all(batch)));
      }
      next = (amount) => {
        const f = load('bench/load-refresh.ts', { url: `${url}/api/v1/auth/token/refresh`, seconds: 120, tokens, amount });
        tokens = f.tokens ?? tokens;
        return f;
      };
    } else {
      const mode = MODE.startsWith('cookie') ? 'cookie' : 'token';
      const res = await login('b@example.com', mode);
      const headers =
        mode === 'cookie' ? { cookie: (res.headers.get('set-cookie') ?? '').split(';')[0] as string } : { authorization: `Bearer ${((await res.json()) as { userSessionToken: string }).userSessionToken}` };
      next = (amount) => load('bench/load.ts', { url: `${url}/api/v1/session`, connections: CONNECTIONS, amount, headers });
    }
    next(WARMUP);
    const window = (): Window => {
      const [c0, k0] = [cpu(pid), counters(pid)];
      const f = next(REQUESTS);
      const [c1, k1] = [cpu(pid), counters(pid)];
      const n = Math.max(1, f.requests);
      return {
        us: ((c1.all - c0.all) * 1e6) / n,
        rps: f.requests / f.loadWallS,
        threadsUs: ((c1.all - c1.main - (c0.all - c0.main)) * 1e6) / n,
        rssMb: k1.rssMb - k0.rssMb,
        sleeps: (k1.sleeps - k0.sleeps) / n,
        syscalls: (k1.syscalls - k0.syscalls) / n,
        preempted: ((k1.preempted - k0.preempted) * 1000) / n,
        othersUs: ((k1.core0Busy - k0.core0Busy - (c1.all - c0.all)) * 1e6) / n,
        bad: f.non2xx + f.errors + Math.max(0, REQUESTS - f.requests),
      };
    };
    return { pid, window, stop: () => stopChild(child) };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const names = VARIANTS.map((v) => (v.length === 0 ? 'default' : v.join(' ')));
const results = new Map<string, number[]>(names.map((n) => [n, []]));
const throughputs = new Map<string, number[]>(names.map((n) => [n, []]));
console.log(`# node bench/spread.ts — ${new Date().toISOString()}, Node ${process.version}, ${MODE}, ${PROCESSES} process(es) per variant, warm-up ${WARMUP}, ${WINDOWS} × ${REQUESTS} measured${PIN_AT_START ? ', pinned from the start' : ''}\n`);
console.log('| pid | variant | µs per request, each window (V8 worker threads; RSS growth MB; main thread\'s sleeps and read/write syscalls per request; its preemptions per 1,000 requests; µs of core 0 used by other processes per request; req/s) | median µs | median req/s |');
console.log('|---:|---|---|---:|---:|');
try {
  let n = 0;
  for (let i = 0; i < PROCESSES; i++) {
    const order = VARIANTS.map((_, k) => k);
    if (i % 2 === 1) order.reverse();
    // One process at a time, or (SPREAD_SIDE_BY_SIDE=1) the pair's processes started and warmed
    // up together and their windows alternated: whether a slow process stays slow beside a fast
    // one measured in the same seconds, or the seconds were slow.
    const servers = new Map<number, Server>();
    const windows = new Map<number, Window[]>(order.map((k) => [k, []]));
    const measureAll = async (ks: number[]) => {
      for (const k of ks) servers.set(k, await startServer(VARIANTS[k] as string[], n++));
      for (let w = 0; w < WINDOWS; w++) for (const k of ks) windows.get(k)!.push(servers.get(k)!.window());
      for (const k of ks) await servers.get(k)!.stop();
    };
    try {
      if (SIDE_BY_SIDE) await measureAll(order);
      else for (const k of order) await measureAll([k]);
    } finally {
      for (const sv of servers.values()) await sv.stop();
    }
    for (const k of order) {
      const ws = windows.get(k)!;
      const m = median(ws.map((w) => w.us));
      const rps = median(ws.map((w) => w.rps));
      results.get(names[k] as string)!.push(m);
      throughputs.get(names[k] as string)!.push(rps);
      const bad = ws.reduce((a, w) => a + w.bad, 0);
      console.log(`| ${servers.get(k)!.pid} | ${names[k]} | ${ws.map((w) => `${w.us.toFixed(1)} (${w.threadsUs.toFixed(1)}; ${w.rssMb >= 0 ? '+' : ''}${w.rssMb.toFixed(0)}; ${w.sleeps.toFixed(2)}, ${w.syscalls.toFixed(2)}; ${w.preempted.toFixed(1)}; ${w.othersUs.toFixed(0)}; ${w.rps.toFixed(0)})`).join(' / ')}${bad ? ` — ${bad} failed or missing` : ''} | ${m.toFixed(1)} | ${rps.toFixed(0)} |`);
    }
  }
} finally {
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}
const first = names[0] as string;
/** In how many pairs `xs` was below (or, `higher`, above) the first variant's process of the pair. */
const wins = (xs: number[], base: number[], higher: boolean) => xs.filter((x, i) => (higher ? x > (base[i] as number) : x < (base[i] as number))).length;
for (const [what, table, higher, digits] of [
  ['µs per request', results, false, 1],
  ['req/s', throughputs, true, 0],
] as const) {
  console.log(`\n| variant | processes | ${what}: min | median | max | each process (median window), in order | ${higher ? 'higher' : 'lower'} than ${first} in the pair |`);
  console.log('|---|---:|---:|---:|---:|---|---:|');
  for (const [name, xs] of table) {
    const s = [...xs].sort((a, b) => a - b);
    const vs = name === first ? '' : `${wins(xs, table.get(first)!, higher)} of ${xs.length}`;
    console.log(`| ${name} | ${xs.length} | ${s[0]?.toFixed(digits)} | ${median(xs).toFixed(digits)} | ${s[s.length - 1]?.toFixed(digits)} | ${xs.map((x) => x.toFixed(0)).join(', ')} | ${vs} |`);
  }
}
