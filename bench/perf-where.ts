// node bench/perf-where.ts — one real server under the bench's own load, after a long warm-up,
// recorded by perf and strace, so that its CPU per request can be split by where it goes
// (docs/performance.md, "Where the rotation server's CPU goes"). PW_MODE=rotation (default):
// `tessera start` on a redis-server of its own, token mode, POST /api/v1/auth/token/refresh by
// bench/load-refresh.ts's 50 chains, started as bench/spread.ts starts it; PW_MODE=hello: the
// Fastify hello world (bench/peer-baselines.ts) under autocannon (bench/load.ts), 50
// connections; PW_MODE=sso: `tessera start` as for rotation, POST /api/v1/sso/token (token mode)
// by bench/load-sso.ts's 50 workers, each one-time token exchanged once, the tokens made by
// bench/fill-sso-tokens.ts in another process in batches of at most PW_SSO_BATCH (15,000; the
// tokens live 60 s) right before each batch's exchanges — the fill outside every window (its
// audit records heard on the server's feed included: the windows open after it). The server
// pinned to core 0 once it answers, the load and Redis on core 1. Then:
// PW_WARMUP requests (40,000); one plain window of PW_REQUESTS (20,000: CPU per request, all
// threads and the main thread, read/write system calls per request from /proc); with
// PW_PERF=<file> one window under `perf record -k mono -g -e cpu-clock -F PW_FREQ (999) -p <pid>`;
// with PW_STRACE=1 one window of a quarter of that under `strace -c -f -p <pid>` (calls per
// request printed); with PW_HEAP_OLD=<file> one window under the sampling heap profiler through
// the server's inspector (PW_FLAGS must hold `--inspect=127.0.0.1:<PW_INSPECT_PORT, 9239>`),
// keeping only what the young generation's collections did not take: the profile is written
// there and its largest sites printed per request. PW_FLAGS: the server's Node flags (default
// `--perf-prof --interpreted-frames-native-stack`: V8 writes its code's names to a jitdump file
// in the server's folder, PW_CWD, else PW_PERF's folder, else a temporary one, for
// `perf inject --jit -i <PW_PERF> -o <out>` run in that folder; `--perf-basic-prof`'s map file
// named moved code wrongly); PW_OUT=<file>: the server's standard output (its log lines, what
// `--trace-gc` prints). Read the injected recording with bench/perf-categories.ts. The perf
// window records only while a batch's load runs (perf's `--control`); with PW_MODE=sso the
// strace and heap windows also see the fills' audit records the server hears on its feed.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startOwnRedis } from './bench-redis.ts';
import { freePort, hasTaskset, pinned, pinNow, stopChild, waitFor } from './server-process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NODE = process.execPath;
const MODE = process.env.PW_MODE ?? 'rotation';
const FLAGS = (process.env.PW_FLAGS ?? '--perf-prof --interpreted-frames-native-stack').split(/\s+/).filter(Boolean);
const WARMUP = Number(process.env.PW_WARMUP ?? 40_000);
const REQUESTS = Number(process.env.PW_REQUESTS ?? 20_000);
const PERF = process.env.PW_PERF ?? null;
const FREQ = process.env.PW_FREQ ?? '999';
const STRACE = process.env.PW_STRACE === '1';
const CWD = process.env.PW_CWD ?? (PERF === null ? null : dirname(resolve(PERF)));
const OUT = process.env.PW_OUT ?? null;
const HEAP_OLD = process.env.PW_HEAP_OLD ?? null;
const INSPECT_PORT = process.env.PW_INSPECT_PORT ?? '9239';
const SSO_BATCH = Number(process.env.PW_SSO_BATCH ?? 15_000);
if (!['rotation', 'hello', 'sso'].includes(MODE)) throw new Error(`PW_MODE: ${MODE}?`);

const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const ticks = (path: string) => {
  const f = readFileSync(path, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(f[11]) + Number(f[12])) / TICKS;
};
const syscalls = (pid: number) => {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return Number(/syscr:\s+(\d+)/.exec(io)?.[1]) + Number(/syscw:\s+(\d+)/.exec(io)?.[1]);
};

interface Figures { requests: number; non2xx: number; errors: number; loadWallS: number }

interface HeapNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: HeapNode[] }

function load(script: string, opts: unknown): { requests: number; non2xx: number; errors: number; loadWallS: number; tokens?: string[] } {
  const [cmd, args] = pinned(1, [NODE, join(ROOT, script), JSON.stringify(opts)]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${script}: exit ${r.status ?? r.signal}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as { requests: number; non2xx: number; errors: number; loadWallS: number; tokens?: string[] };
}

/** Runs `tool` (its argv) attached to the server while `work` runs, then stops it with SIGINT. */
async function attached(tool: string[], work: () => number): Promise<number> {
  const child = spawn(tool[0] as string, tool.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
  await new Promise((r) => setTimeout(r, 1000));
  const n = work();
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  await exited;
  return n;
}

const dir = mkdtempSync(join(tmpdir(), 'tessera-perf-where-'));
const redis = await startOwnRedis(1, hasTaskset, dir);
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
let child: ChildProcess;
const out = OUT === null ? 'ignore' : openSync(OUT, 'w');
/**
 * Readies `amount` requests (SSO: their tokens made, in batches) and returns what runs them, batch
 * by batch: `measured(run)` is called around each batch's load alone, so that CPU, perf and the
 * rest see the requests and not the preparation.
 */
let prepare: (amount: number) => (measured: <T>(run: () => T) => T) => Figures;
/** The requests of `amount` (prepared, then run whole inside `measured`). */
const simple = (run: (amount: number) => Figures) => (amount: number) => (measured: <T>(f: () => T) => T) => measured(() => run(amount));
try {
  if (MODE === 'rotation' || MODE === 'sso') {
    const admin = randomBytes(24).toString('hex');
    const prefix = 'tessera:';
    const cookieKey = randomBytes(32).toString('base64url');
    child = spawn(NODE, [...FLAGS, join(ROOT, 'src/cli.ts'), 'start'], {
      cwd: CWD ?? dir,
      env: { PATH: process.env.PATH ?? '', TESSERA_PORT: String(port), TESSERA_STORE: redis.url, TESSERA_REDIS_PREFIX: prefix, TESSERA_ADMIN_TOKEN: admin, COOKIE_SECRET_SIGN_KEY: cookieKey, TESSERA_LOG_LEVEL: 'info' },
      stdio: ['ignore', out, 'inherit'],
    });
    await waitFor(`${url}/healthz`, child);
    const h = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
    await fetch(`${url}/api/v1/admin/tenants/bench`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' });
    if (MODE === 'sso') {
      let batch = 0;
      prepare = (amount) => {
        const files: string[] = [];
        const runs = (measured: <T>(run: () => T) => T): Figures => {
          const total: Figures = { requests: 0, non2xx: 0, errors: 0, loadWallS: 0 };
          for (let left = amount; left > 0; ) {
            const file = join(dir, `sso-${batch++}.txt`);
            const fill = spawnSync(NODE, [join(ROOT, 'bench/fill-sso-tokens.ts'), JSON.stringify({ store: redis.url, prefix, cookieKey, tenantId: 'bench', count: Math.min(left, SSO_BATCH), budgetS: 30, out: file })], { encoding: 'utf8', cwd: dir, timeout: 120_000 });
            if (fill.status !== 0) throw new Error(`bench/fill-sso-tokens.ts: exit ${fill.status ?? fill.signal}: ${fill.stderr}`);
            const made = readFileSync(file, 'utf8').split('\n').filter(Boolean).length;
            files.push(file);
            const f = measured(() => load('bench/load-sso.ts', { url: `${url}/api/v1/sso/token`, connections: 50, seconds: 300, tokens: file }));
            total.requests += f.requests;
            total.non2xx += f.non2xx;
            total.errors += f.errors;
            total.loadWallS += f.loadWallS;
            left -= made;
          }
          for (const file of files) rmSync(file, { force: true });
          return total;
        };
        return runs;
      };
    } else {
    let tokens: string[] = [];
    for (let i = 0; i < 50; i++) {
      const email = `r${i}@example.com`;
      await fetch(`${url}/api/v1/admin/users`, { method: 'POST', headers: h, body: JSON.stringify({ tenantId: 'bench', email, password: 'bench password' }) });
      const res = await fetch(`${url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json', 'x-auth-mode': 'token' },
        body: JSON.stringify({ email, password: 'bench password' }),
      });
      tokens.push(((await res.json()) as { refreshToken: string }).refreshToken);
    }
    prepare = simple((amount) => {
      const f = load('bench/load-refresh.ts', { url: `${url}/api/v1/auth/token/refresh`, seconds: 300, tokens, amount });
      tokens = f.tokens ?? tokens;
      return f;
    });
    }
  } else {
    child = spawn(NODE, [...FLAGS, join(ROOT, 'bench/peer-baselines.ts')], { cwd: CWD ?? dir, env: { PATH: process.env.PATH ?? '', PORT: String(port), PEER: 'hello' }, stdio: ['ignore', out, 'inherit'] });
    await waitFor(`${url}/api/v1/session`, child);
    prepare = simple((amount) => load('bench/load.ts', { url: `${url}/api/v1/session`, connections: 50, amount }));
  }
  if (typeof out === 'number') closeSync(out);
  const pid = child.pid as number;
  pinNow(pid, 0);
  const whole = <T>(run: () => T): T => run();
  prepare(WARMUP)(whole);
  const c = [0, 0, 0];
  const counted = <T>(run: () => T): T => {
    const c0 = [ticks(`/proc/${pid}/stat`), ticks(`/proc/${pid}/task/${pid}/stat`), syscalls(pid)];
    const r = run();
    const c1 = [ticks(`/proc/${pid}/stat`), ticks(`/proc/${pid}/task/${pid}/stat`), syscalls(pid)];
    for (let i = 0; i < 3; i++) c[i]! += (c1[i] as number) - (c0[i] as number);
    return r;
  };
  const f = prepare(REQUESTS)(counted);
  const per = (i: number, scale = 1e6) => ((c[i] as number) * scale) / f.requests;
  console.log(`${MODE} pid ${pid}: ${f.requests} requests (${f.non2xx + f.errors} bad), ${(f.requests / f.loadWallS).toFixed(0)}/s, CPU ${per(0).toFixed(1)} µs per request (main thread ${per(1).toFixed(1)}), read/write syscalls ${per(2, 1).toFixed(2)} per request`);
  if (PERF !== null) {
    // Started with its events off (-D -1) and switched on around each batch's load only
    // (--control), so that an SSO fill between batches is not recorded.
    const ctl = join(dir, 'perf-ctl');
    const ack = join(dir, 'perf-ack');
    spawnSync('mkfifo', [ctl, ack]);
    let cpu = 0;
    const n = await attached(['perf', 'record', '-D', '-1', '--control', `fifo:${ctl},${ack}`, '-k', 'mono', '-g', '-e', 'cpu-clock', '-F', FREQ, '-p', String(pid), '-o', PERF], () => {
      const ctlFd = openSync(ctl, 'w');
      const ackFd = openSync(ack, 'r');
      const command = (what: string) => {
        writeSync(ctlFd, `${what}\n`);
        readSync(ackFd, Buffer.alloc(16));
      };
      const r = prepare(REQUESTS)((run) => {
        command('enable');
        const p0 = ticks(`/proc/${pid}/stat`);
        const x = run();
        cpu += ticks(`/proc/${pid}/stat`) - p0;
        command('disable');
        return x;
      });
      closeSync(ctlFd);
      closeSync(ackFd);
      return r.requests;
    });
    console.log(`perf window: ${n} requests, CPU ${((cpu * 1e6) / n).toFixed(1)} µs per request`);
  }
  if (STRACE) {
    const out = join(dir, 'strace.txt');
    const n = await attached(['strace', '-c', '-f', '-p', String(pid), '-o', out], () => prepare(Math.round(REQUESTS / 4))(whole).requests);
    console.log(`strace -c -f window: ${n} requests; calls per request:`);
    for (const line of readFileSync(out, 'utf8').split('\n')) {
      const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/.exec(line);
      if (m && m[2] !== 'total') console.log(`  ${m[2]} ${(Number(m[1]) / n).toFixed(3)}`);
    }
  }
  if (HEAP_OLD !== null) {
    const targets = (await (await fetch(`http://127.0.0.1:${INSPECT_PORT}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
    const ws = new WebSocket(targets[0]!.webSocketDebuggerUrl);
    await new Promise((r, j) => ((ws.onopen = r), (ws.onerror = j)));
    let id = 0;
    const pending = new Map<number, (v: unknown) => void>();
    ws.onmessage = (m) => {
      const msg = JSON.parse(String(m.data)) as { id?: number; result?: unknown };
      if (msg.id !== undefined) pending.get(msg.id)?.(msg.result);
    };
    const call = (method: string, params: object = {}) => new Promise<unknown>((r) => (pending.set(++id, r), ws.send(JSON.stringify({ id, method, params }))));
    await call('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: false });
    // The load runs in a child process while this one waits for it (spawnSync): the profile is
    // stopped once the window is over, so nothing of this process's needs to run meanwhile.
    const n = prepare(REQUESTS)(whole).requests;
    const { profile } = (await call('HeapProfiler.stopSampling')) as { profile: { head: HeapNode } };
    ws.close();
    writeFileSync(HEAP_OLD, JSON.stringify(profile));
    const sites = new Map<string, number>();
    const walk = (node: HeapNode, stack: string[]) => {
      const f = node.callFrame;
      const here = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|src)\//, '$1/')}:${f.lineNumber + 1}`;
      const self = node.selfSize;
      if (self > 0) {
        const key = [here, ...stack.slice(0, 3)].join(' <- ');
        sites.set(key, (sites.get(key) ?? 0) + self);
      }
      for (const c of node.children) walk(c, [here, ...stack]);
    };
    walk(profile.head, []);
    const total = [...sites.values()].reduce((a, b) => a + b, 0);
    console.log(`promoted (not taken by a scavenge) over ${n} requests: ${(total / n).toFixed(0)} B per request; largest sites:`);
    for (const [k, v] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${(v / n).toFixed(0)} B  ${k}`);
  }
  await stopChild(child);
} finally {
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}
