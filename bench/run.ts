// npm run bench [-- --quick] [-- --only=check,rotation,sso,argon2,memory,size,remote,revocation,drivers] [-- --runs=N]
// npm run bench:three [-- --quick]   (= --runs=3: three runs in a row, each one's goals, "met in k of 3")
//
// Tessera and its baselines measured in the same run, on the same machine and the same Node:
// every server alone on core 0, the load generator on core 1 (taskset), every ratio taken
// against a Fastify hello world measured in the same run. Sections:
//   check       GET /api/v1/session: hello world, one Redis GET, one jose verify (these two not
//               in --quick), @fastify/session + connect-redis (the usual Node stack), Tessera
//               token and cookie on SQLite, Redis and PostgreSQL — interleaved rounds, medians.
//   rotation    POST /api/v1/auth/token/refresh (rotation) on Redis, 50 chains, warmed up first;
//               the Redis commands sent vs run inside scripts counted by MONITOR after the run.
//   sso         POST /api/v1/sso/token: one-time tokens of finished SSO logins exchanged on Redis.
//   argon2      the cost of one password check, and what that caps logins at per core.
//   memory      Redis bytes per idle token-mode session, every key of the prefix included.
//   size        the check again with 1,000,000 (quick: 20,000) more sessions stored, beside a
//               control server per store (Redis, SQLite) left at 1,000 and measured in the same
//               rounds: goal 4 compares the filled server's req/s over its control's at both sizes.
//   remote      Redis behind a TCP proxy adding 0.5 ms and 2 ms each way: Tessera vs the peer.
//   revocation  two Tessera processes on one Redis; the check at full speed on B while A ends
//               sessions one by one (200 trials, full 500): time from the logout's start until B
//               refuses every request sent to it (an open loop of probes, one every ms).
//   drivers     node-postgres vs postgres.js on the PostgreSQL adapter (bench/pg-drivers.ts): the
//               session check on the store, and the PostgreSQL conformance suite on each (not in
//               --quick unless --only names it).
// PostgreSQL (BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432) is measured in
// `check` on a database made for the run and dropped after; it is left out of `size` (a million
// sessions through the port's transactions take too long for a bench run). When it does not
// answer, its rows are skipped and the run says so.
// Redis: the bench starts a redis-server of its own (free port, no persistence, stopped at the end)
// pinned to core 1 beside the load generator, used by every section (bench/bench-redis.ts);
// BENCH_REDIS_CORE=0|1|none places it (none: unpinned), BENCH_REDIS_URL uses another Redis instead
// (unpinned and shared, as before). Each row gives Redis's CPU per request beside the server's; the
// rotation and SSO rows say how busy the load core was (load generator + Redis over the wall time).
// Environment: BENCH_SECONDS, BENCH_CONNECTIONS, BENCH_ROUNDS, BENCH_WARMUP (requests per scenario before
// `check` and `size` measure, and rotations before `rotation` does, default 40,000), BENCH_SSO_WARM
// (SSO exchanges before `sso` measures, default 14,000), BENCH_REDIS_URL,
// BENCH_REDIS_CORE, BENCH_POSTGRES_URL; TESSERA_REDIS_HOT_WRITES is passed on to the Tessera servers;
// BENCH_GC_TRACE=<dir>: every server's V8 GC trace and the run's measured windows there (`collectAll`).
// BENCH_PHASES=1: where the wall time went, per section and kind of step, printed after the run
// (`timed`); BENCH_WARMUP_TRACE=N: each warm-up in N parts, the server's CPU µs per request of
// each printed.
// Every long-lived Node process of the run is given a full collection outside the measured windows
// (bench/gc-on-signal.ts; `collectAll` and `collectStale` below): V8's memory reducer's own falls
// 100 s after a process's last one otherwise, in whichever row is measured then.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { printGoals, runMany, type Goal } from './goals.ts';
import { createBenchDatabase, type BenchDatabase } from './pg-database.ts';
import { COLLECT_TIMEOUT_MS, collectGarbage, freePort, GC_ON_SIGNAL_ARGS, waitFor, cpuSeconds, hasTaskset, helperThreadSeconds, pinNow, pinned, reapedChildrenCpuSeconds, stopChild, tesseraEnv, unlinkPrefixes, waitSeconds } from './server-process.ts';
import { coreBusy, describePlacement, loadCoreShare, parseRedisInfo, readProcStat, redisPlacement, startOwnRedis, topCommands, type OwnRedis } from './bench-redis.ts';
import { createClient } from 'redis';
import { DEFAULT_SEMI_SPACE_MB } from '../src/config/config.ts';
import { startFlags } from '../src/config/node-flags.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
/** `--runs=N`: the whole benchmark N times in a row, then a summary (bench/goals.ts). */
const RUNS = Number(arg('runs') ?? 1);
if (RUNS > 1) process.exit(runMany(RUNS, process.argv.slice(2).filter((a) => !a.startsWith('--runs=')), fileURLToPath(import.meta.url)));
/** Where a run of --runs writes its goals (JSON). */
const GOALS_OUT = arg('goals-out');
const QUICK = process.argv.includes('--quick');
/** BENCH_SSO_WARM: SSO exchanges before the `sso` section measures (default 14,000). */
const SSO_WARM = Number(process.env.BENCH_SSO_WARM ?? 14_000);
/**
 * The sections to run. `--quick` leaves out `drivers` (a comparison of two PostgreSQL drivers, no
 * goal of issue 13) unless `--only` names it, to keep within its 3-minute budget.
 */
const ONLY = new Set(
  (process.argv.find((a) => a.startsWith('--only='))?.slice(7) ?? `check,rotation,sso,argon2,memory,size,remote,revocation${QUICK ? '' : ',drivers'}`).split(','),
);
/**
 * The check section's reference servers beside hello world: the full run measures a bare Fastify +
 * one Redis GET and a jose JWT verification too; `--quick` keeps only @fastify/session +
 * connect-redis (the stack Tessera replaces), as neither of the other two is a goal's yardstick
 * (the jose one alone cost the quick run about 5 s: its warm-up runs at 6,500 req/s).
 */
const CHECK_REFERENCES = QUICK ? (['session'] as const) : (['redis-get', 'jose', 'session'] as const);
const SECONDS = Number(process.env.BENCH_SECONDS ?? (QUICK ? 3 : 10));
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 3));
/** The remote section's seconds per run: quick mode trims its eight runs to 2 s each (latency and throughput, no ratio goal). */
const REMOTE_SECONDS = QUICK ? Math.min(2, SECONDS) : SECONDS;
/** Sessions added for the size comparison (goal 4): `--large=N`, else a million (quick: 20,000). */
const LARGE = Number(process.argv.find((a) => a.startsWith('--large='))?.slice(8) ?? (QUICK ? 20_000 : 1_000_000));
const FILL_TIMEOUT_S = Number(process.env.BENCH_FILL_TIMEOUT_S ?? 1800);
/** Where Redis runs (bench/bench-redis.ts); REDIS_URL is set once the bench's own is up. */
const PLACEMENT = redisPlacement(process.env);
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432';
const NODE = process.execPath;
/**
 * Node's compile cache (the V8 code of every module, TypeScript's stripped output included) for
 * every process the run starts — servers, fills, load generators: a process whose modules were
 * compiled before (earlier in the run, or by an earlier run) starts on about two thirds of the CPU
 * (a Tessera server ~1.3 instead of ~2.0 s on a loaded machine). Only the start-up changes: what
 * a warmed-up server runs is compiled and optimised at run time as before. Node's own default
 * place (os.tmpdir()/node-compile-cache), kept between runs; a NODE_COMPILE_CACHE of the caller's
 * is kept, NODE_DISABLE_COMPILE_CACHE=1 turns it off.
 */
process.env.NODE_COMPILE_CACHE ??= join(tmpdir(), 'node-compile-cache');
/** The environment variables of Node's that every started process is given. */
const NODE_ENV_PASS = Object.fromEntries(['NODE_COMPILE_CACHE', 'NODE_DISABLE_COMPILE_CACHE'].flatMap((k) => (process.env[k] === undefined ? [] : [[k, process.env[k]]])));
// A server is started on any core (servers started together share both cores while they load
// their modules; nothing is measured then) and pinned, every thread of it, to its core once it
// answers (pinNow), before any request of the run. Threads it makes later inherit the pinning.

/** fetch, once more on a connection the server had just closed (keep-alive race after a long pause). */
async function fetchRetry(url: string, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch {
    return fetch(url, init);
  }
}

/**
 * `count` calls of `fn`, at most four at a time. The harness's fetches keep their connections
 * open for a few seconds; fifty logins at once would leave fifty of them, which with the load
 * generator's own pass TESSERA_MAX_CONNECTIONS_PER_IP (100), and the server drops the excess
 * (the "socket hang up" errors of the rotation section).
 */
async function pooled<T>(count: number, fn: (i: number) => Promise<T>, width = 4): Promise<T[]> {
  const out = new Array<T>(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, count) }, async () => {
      while (next < count) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

const stop = (child: ChildProcess) => stopChild(child);

interface Figures {
  /** Commands Redis processed per request (INFO's total_commands_processed): those run inside scripts included. */
  redisPerRequest?: number;
  /** Of those, the commands the server sent (round trips), where counted (redisCommandsBySource). */
  redisSentPerRequest?: number;
  /** load-refresh.ts: each chain's token to go on with. */
  tokens?: string[];
  /** CPU time the server process spent per request (user + system), from /proc: robust to load on the other core. */
  cpuUsPerRequest?: number;
  /** Redis's own CPU per request (INFO cpu): on an external Redis, every client's work counts. */
  redisCpuUsPerRequest?: number;
  /**
   * The load generator's CPU seconds and wall seconds of its load, as bench/load-refresh.ts and
   * load-sso.ts report them (their start-up left out); other runs: the long-lived generator's CPU
   * (or the process started for the run, start-up included) over the run's wall time here.
   */
  loadCpuS?: number;
  loadWallS?: number;
  /** The load generator's CPU per request. */
  loadCpuUsPerRequest?: number;
  /** The load core's share busy with the load generator (and Redis, when pinned there) over the run's wall time. */
  loadCore?: { share: number; bound: boolean };
  /** Each core's busy share over the run, every process on it (neighbours included): /proc/stat. */
  coresBusy?: Map<number, number>;
  /** Per request, the time the server's and Redis's main threads were runnable but waited for a core (schedstat). */
  serverWaitUsPerRequest?: number;
  redisWaitUsPerRequest?: number;
  /** Per request, the CPU of the server's threads other than its main thread (V8's GC and compilers, libuv's pool; part of cpuUsPerRequest). */
  serverHelpersUsPerRequest?: number;
  /** The commands that took Redis the most time over the run, per request (INFO commandstats). */
  redisTop?: string;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

/**
 * Redis's own CPU seconds so far (INFO cpu: used_cpu_user + used_cpu_sys of the redis-server
 * process) and the commands it processed (INFO stats), in one INFO call (itself one command).
 * Every client of that Redis counts: on a shared Redis, others' work is in it.
 */
function redisInfo(): ReturnType<typeof parseRedisInfo> {
  return parseRedisInfo(spawnSync('redis-cli', ['-u', REDIS_URL, 'INFO', 'cpu', 'stats', 'commandstats'], { encoding: 'utf8' }).stdout ?? '');
}

/** The counters a measured run is framed by (the server's CPU, Redis's, the load generator's, each core's). */
interface Snapshot {
  t: number;
  server: number;
  redis: ReturnType<typeof parseRedisInfo>;
  load: number;
  stat: ReturnType<typeof readProcStat>;
  /** Seconds the server's and Redis's main threads waited for a core so far. */
  serverWait: number;
  redisWait: number;
  /** CPU seconds of the server's threads other than its main thread so far. */
  serverHelpers: number;
}

/** The load generator's CPU so far: the long-lived one's and every exited child's (the per-run generators). */
const loadCpuSeconds = () => (loadServerPid === undefined ? 0 : cpuSeconds(loadServerPid)) + reapedChildrenCpuSeconds();

/** Before a run: INFO first, so that its redis-cli is not counted as load. */
function before(pid: number | undefined): Snapshot {
  const redis = redisInfo();
  return { t: performance.now(), server: cpuSeconds(pid), redis, load: loadCpuSeconds(), stat: readProcStat(), serverWait: waitSeconds(pid), redisWait: waitSeconds(ownRedis?.child.pid), serverHelpers: helperThreadSeconds(pid) };
}

/** After a run: INFO last. Sets the figures' per-request CPU (server, Redis, load), commands and the load core's share. */
function after(f: Figures, pid: number | undefined, a: Snapshot): Figures {
  const [t, server, load, stat, serverWait, redisWait, serverHelpers] = [performance.now(), cpuSeconds(pid), loadCpuSeconds(), readProcStat(), waitSeconds(pid), waitSeconds(ownRedis?.child.pid), helperThreadSeconds(pid)];
  const redis = redisInfo();
  const n = Math.max(1, f.requests);
  f.cpuUsPerRequest = ((server - a.server) * 1e6) / n;
  f.redisCpuUsPerRequest = ((redis.cpuS - a.redis.cpuS) * 1e6) / n;
  const [loadCpuS, wallS] = f.loadCpuS !== undefined && f.loadWallS !== undefined ? [f.loadCpuS, f.loadWallS] : [load - a.load, (t - a.t) / 1000];
  f.loadCpuUsPerRequest = (loadCpuS * 1e6) / n;
  // The first INFO call counts one command.
  f.redisPerRequest = (redis.commands - a.redis.commands - 1) / n;
  // Redis's CPU over the whole window against the load's wall time: nothing but the load's requests keeps it busy meanwhile.
  f.loadCore = loadCoreShare({ loadCpuS, redisCpuS: redis.cpuS - a.redis.cpuS, wallS, redisOnLoadCore: REDIS_ON_LOAD_CORE });
  f.coresBusy = coreBusy(a.stat, stat);
  f.serverWaitUsPerRequest = ((serverWait - a.serverWait) * 1e6) / n;
  f.redisWaitUsPerRequest = ((redisWait - a.redisWait) * 1e6) / n;
  f.serverHelpersUsPerRequest = ((serverHelpers - a.serverHelpers) * 1e6) / n;
  f.redisTop = topCommands(a.redis.commandstats, redis.commandstats, f.requests);
  return f;
}

/**
 * A goal-2 row's costs: the server's and Redis's CPU per operation, and whether the load core was
 * saturated (load generator + Redis, when pinned there, ≥ 90 % of the run's wall time: the load
 * side may have bound the figure).
 */
function costs(f: Figures): string {
  const us = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(0));
  const lc = f.loadCore;
  const share = lc === undefined || Number.isNaN(lc.share) ? 'n/a' : `${(lc.share * 100).toFixed(0)} %`;
  const cores = f.coresBusy && f.coresBusy.size > 0 ? ` (all processes: ${[...f.coresBusy].map(([c, b]) => `core ${c} ${(b * 100).toFixed(0)} %`).join(', ')})` : '';
  const waited = ownRedis === null ? `server ${us(f.serverWaitUsPerRequest)}` : `server ${us(f.serverWaitUsPerRequest)}, Redis ${us(f.redisWaitUsPerRequest)}`;
  return `server ${us(f.cpuUsPerRequest)} µs/op (threads other than the main one ${us(f.serverHelpersUsPerRequest)}), Redis ${us(f.redisCpuUsPerRequest)} µs/op, load ${us(f.loadCpuUsPerRequest)} µs/op; waiting for a core ${waited} µs/op; core 1 ${share} busy with load${REDIS_ON_LOAD_CORE ? ' + Redis' : ''}${cores}${lc?.bound ? ' — core 1 saturated: the load side bound the figure' : ''}`;
}

/**
 * The commands Redis processed during `work`, by where they came from: `sent` by a client over its
 * connection (one round trip each, pipelined or not) and `inScripts`, run by the Lua scripts those
 * clients called (`redis.call`: no round trip). INFO's total_commands_processed (the tables'
 * "Redis cmds/req") counts both, so a server that does its work in scripts shows every command of
 * every script there: a refresh rotation sends Redis one script call and the script runs about ten
 * commands. MONITOR tells the two apart (a script's commands are shown as from "lua"), but it costs
 * Redis time on every command, so it watches a short run made for counting after the measured one,
 * never a measured run. Only lines naming `prefix` are counted — every key and channel of that
 * server is under it — so other clients of a shared Redis stay out.
 */
async function redisCommandsBySource(prefix: string, work: () => Figures): Promise<{ f: Figures; sent: number; inScripts: number }> {
  const file = join(dir, `monitor-${randomBytes(3).toString('hex')}.txt`);
  const fd = openSync(file, 'w');
  const monitor = spawn('redis-cli', ['-u', REDIS_URL, 'monitor'], { stdio: ['ignore', fd, 'ignore'] });
  closeSync(fd);
  // MONITOR answers OK once it watches.
  for (let i = 0; i < 250 && !readFileSync(file, 'utf8').startsWith('OK'); i++) await new Promise((r) => setTimeout(r, 20));
  const f = work();
  // The audit appends of the last requests are queued for the next turn of the server's loop.
  await new Promise((r) => setTimeout(r, 500));
  await stop(monitor);
  let sent = 0;
  let inScripts = 0;
  const mark = `"${prefix}`;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.includes(mark)) continue;
    if (/^[\d.]+ \[\d+ lua\]/.test(line)) inScripts++;
    else sent++;
  }
  rmSync(file, { force: true });
  return { f, sent, inScripts };
}

/**
 * One load-generator run. Its errors are counted in its figures (bench/load-errors.ts); should the
 * process die all the same, the row reports it (no requests, one error) and the run goes on.
 */
function runLoad(script: string, opts: unknown): Figures {
  const [cmd, args] =
    script === 'bench/load.ts' && loadSocket !== null
      ? ['curl', ['-sS', '--unix-socket', loadSocket, '-H', 'content-type: application/json', '--data-binary', JSON.stringify(opts), 'http://load/']]
      : pinned(1, [NODE, join(ROOT, script), JSON.stringify(opts)]);
  if (cmd === 'curl') loadRuns++;
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: (SECONDS + 60) * 1000 });
  if (cmd === 'curl' && r.status !== 0) {
    // The long-lived generator is gone or did not answer: this run and the rest the old way.
    console.log(`(the long-lived load generator did not answer (curl: ${r.stderr.trim() || `exit ${r.status ?? r.signal}`}): bench/load.ts is started for each run from here on)`);
    loadSocket = null;
    return runLoad(script, opts);
  }
  const lines = r.stderr.trim() === '' ? [] : r.stderr.trim().split('\n');
  if (lines.length > 0) console.log(`(${script}: ${lines.slice(0, 20).join('\n')}${lines.length > 20 ? `\n… ${lines.length - 20} more lines` : ''})`);
  try {
    if (r.status !== 0) throw new Error(`exit ${r.status ?? r.signal}`);
    return JSON.parse(r.stdout.trim().split('\n').pop() as string) as Figures;
  } catch (err) {
    console.log(`(${script} gave no figures (${(err as Error).message}): its row counts one error and no requests)`);
    return { requests: 0, rps: 0, p50: 0, p99: 0, non2xx: 0, errors: 1 };
  }
}

/**
 * The Unix socket of the long-lived load generator (bench/load-server.ts, on the load core), once
 * started: runLoad then asks it through curl instead of starting bench/load.ts for every run.
 * Null until then, or where curl is missing.
 */
let loadSocket: string | null = null;
/** Load runs made through it (printed with the wall time). */
let loadRuns = 0;
const hasCurl = spawnSync('curl', ['--version']).status === 0;
/** The long-lived load generator's pid (its CPU is the load side's). */
let loadServerPid: number | undefined;

async function startLoadServer(): Promise<void> {
  if (!hasCurl) return;
  const path = join(dir, 'load.sock');
  // Collected with the servers (its reducer would take core 1 from a row's load), and traced with
  // them under BENCH_GC_TRACE (a review's finding: its mark-compacts fall in rows too). Ready once
  // it says so on its standard output, or — traced, that output going to its trace file — once its
  // socket exists (load-server.ts prints its line in listen's callback, when the socket is there).
  const gc = gcReady('load-generator');
  const [cmd, args] = pinned(1, [NODE, ...gc.args, join(ROOT, 'bench/load-server.ts'), path]);
  const traced = gc.stdout !== 'ignore';
  const child = gc.register(started(spawn(cmd, args, { env: { ...process.env, ...gc.env }, stdio: ['ignore', traced ? gc.stdout : 'pipe', 'inherit'] })));
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (c) => reject(new Error(`load generator exited ${c}`)));
    if (!traced) child.stdout?.once('data', () => resolve());
    else {
      const poll = setInterval(() => {
        if (existsSync(path)) {
          clearInterval(poll);
          resolve();
        }
      }, 20);
      child.once('exit', () => clearInterval(poll));
    }
  });
  loadSocket = path;
  loadServerPid = child.pid;
}

const serverPids = new Map<string, number | undefined>();
/** What the run calls each server (origin → the name of its rows, without the mode), for `neighbours`. */
const serverNames = new Map<string, string>();

function load(url: string, headers: Record<string, string>, seconds = SECONDS, row = url): Figures {
  const u = new URL(url);
  const pid = serverPids.get(u.origin);
  // The window plus 10 s: the requests after a collection and their settle come before it.
  timed('collect', () => collectStale(seconds + 10));
  // A server (or the load generator) collected since it last served: re-optimised first, as after
  // `collectAll` — else its window opens deoptimised.
  if (collectedSince(pid) || collectedSince(loadServerPid)) afterCollection([[row, u.origin, headers]], u.pathname + u.search);
  served(pid, loadServerPid);
  const others = othersCpu(pid);
  const opened = Date.now();
  const a = before(pid);
  const f = timed('measured', () => after(runLoad('bench/load.ts', { url, connections: CONNECTIONS, duration: seconds, headers }), pid, a));
  traceWindow(`${row} @${new URL(url).port}`, opened);
  neighbours(row, others, (performance.now() - a.t) / 1000);
  timed('settle', () => settle(pid));
  return f;
}

/** Every server's CPU seconds so far but `except`'s (the one about to be measured). */
function othersCpu(except: number | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const [origin, pid] of serverPids) if (pid !== undefined && pid !== except) out.set(origin, cpuSeconds(pid));
  return out;
}

/**
 * Every server of the run is on core 0: one that works while another's row is measured — after
 * its own row (the @fastify/session peer did for ~5 s, hence `settle`), or on its own timers,
 * collections, a checkpoint — takes that core from the row. When the other servers together used
 * more than 10 % of a row's wall time, the row is followed by a line naming them (from /proc; what
 * other processes of the machine did is not in it). The same for every row, filled or control.
 * Idle, they use 2–5 % together in a quick check,size run (a SQLite server's feed polls ~10–14 ms
 * of CPU a second, a Redis one's probes ~7: docs/performance.md, "Goal 4's size cost on SQLite").
 */
function neighbours(row: string, start: Map<string, number>, wallS: number): void {
  const used: Array<[string, number]> = [];
  for (const [origin, cpu] of start) {
    const d = cpuSeconds(serverPids.get(origin)) - cpu;
    if (d > 0) used.push([serverNames.get(origin) ?? origin, d]);
  }
  const total = used.reduce((t, [, d]) => t + d, 0);
  if (!(total > 0.1 * wallS)) return;
  used.sort((x, y) => y[1] - x[1]);
  const ms = (d: number) => `${(d * 1000).toFixed(0)} ms`;
  console.log(`(during ${row}: the run's other servers used ${ms(total)} of CPU in its ${wallS.toFixed(1)} s (${((total / wallS) * 100).toFixed(0)} %): ${used.filter(([, d]) => d >= 0.005).map(([n, d]) => `${n} ${ms(d)}`).join(', ')})`);
}

/**
 * Waits, after a server's load, until that server has settled: at most 10 ms of its CPU over
 * 100 ms, twice in a row (or 5 s at most; at once for a process without /proc). Every server is
 * on core 0, so a server that goes on working once its load has stopped — the @fastify/session
 * peer went on for ~5 s after its row, ~15–40 % of the core — would take that core from the next
 * row measured (it made the `check` section's second Tessera row, whichever server it was, the
 * slow one: docs/performance.md, "Three quick runs at the end of the 2026-12-07 evening session").
 * Not counted in any figure: the next row's `before` comes after it. With several processes
 * (after the bench's collections): until all of them together use at most 10 ms and 2 ms more per
 * process beyond the first (an idle server's timers: 0.5–1.6 ms per 100 ms) over 100 ms, twice.
 * (Half of that over 50 ms, read to the nanosecond, was tried on 2026-12-08 and not kept: the
 * peer's work after its row showed in a later row once; docs/performance.md, "The quick run's wall
 * time, 2026-12-08 session".)
 */
function settle(...pids: Array<number | undefined>): void {
  settleWithin(5000, ...pids);
}

/** Every thread's CPU seconds of a process so far, to the nanosecond (each thread's schedstat), or NaN. */
function threadsCpu(pid: number | undefined): number {
  try {
    return helperThreadSeconds(pid) + Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
  } catch {
    return NaN;
  }
}

/** `settle`, waiting at most `maxMs`. */
function settleWithin(maxMs: number, ...pids: Array<number | undefined>): void {
  const known = pids.filter((p) => p !== undefined);
  if (known.length === 0) return;
  const cpu = () => known.reduce((t, p) => t + (cpuSeconds(p) || 0), 0);
  const quietS = 0.01 + 0.002 * (known.length - 1);
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  let last = cpu();
  let quiet = 0;
  for (let waited = 0; waited < maxMs && quiet < 2; waited += 100) {
    Atomics.wait(sleeper, 0, 0, 100);
    const now = cpu();
    quiet = now - last > quietS ? 0 : quiet + 1;
    last = now;
  }
}

/**
 * V8's memory reducer runs a full collection, a `Mark-Compact (reduce)`, in a process whose last
 * mark-compact is more than 100 s old (its watchdog, kWatchdogDelayMs in V8's
 * src/heap/memory-reducer.cc), checked by a timer every 8 s — in every server of the run, idle or
 * loaded: its other trigger, a low allocation rate, never held in them (`--trace-memory-reducer`
 * says "high alloc" every 8 s, idle servers included). That is each server's one full collection
 * after its start-up, 100–108 s after the last, a pause of 30–160 ms and as much again in marking
 * steps; servers started together do it
 * together, and in a quick run it fell inside the size section's last row, whichever that was
 * (docs/performance.md, "V8's memory reducer and the measured rows"). Any mark-compact resets the
 * watchdog, so the bench collects its long-lived Node processes itself (bench/gc-on-signal.ts:
 * SIGUSR2), outside every measured window: all of them before each round of `check` and `size`
 * (both sizes of goal 4 start from a collected heap), and before any measured window those whose
 * last collection — the bench's, or their start — is more than 100 s − the window − 10 s old, so
 * that the watchdog cannot come due within it.
 */
const WATCHDOG_S = 100;
interface GcTarget {
  name: string;
  ack: string;
  /** performance.now() of the bench's last collection of it (its start until then). */
  last: number;
  /** Collected by the bench since it last served requests (`served`): its hot code deoptimised. */
  collected?: boolean;
}
const gcTargets = new Map<ChildProcess, GcTarget>();
const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;
/** The collections made, printed with the wall time. */
const collections = { events: 0, processes: 0, ms: 0 };
/** BENCH_GC_TRACE=<dir>: each server's V8 GC trace (--trace-gc, its standard output) to a file there, and every measured window and collection to windows.txt (wall-clock ms). */
const GC_TRACE = process.env.BENCH_GC_TRACE;

/** Flags, environment and standard output for a long-lived process of the run, collectable on SIGUSR2; `register` it once spawned. */
function gcReady(name: string, trace = GC_TRACE !== undefined): { args: readonly string[]; env: Record<string, string>; stdout: 'ignore' | number; register(child: ChildProcess): ChildProcess } {
  const ack = join(dir, `gc-${randomBytes(4).toString('hex')}.ack`);
  const last = performance.now();
  const fd = trace && GC_TRACE ? openSync(join(GC_TRACE, `${name.replace(/[^\w.-]+/g, '_')}-${randomBytes(2).toString('hex')}.log`), 'a') : null;
  return {
    args: fd === null ? GC_ON_SIGNAL_ARGS : [...GC_ON_SIGNAL_ARGS, '--trace-gc'],
    env: { BENCH_GC_ACK: ack, ...(fd === null ? {} : { BENCH_GC_TRACE: '1' }) },
    stdout: fd ?? 'ignore',
    register(child) {
      gcTargets.set(child, { name, ack, last });
      if (fd !== null) closeSync(fd);
      return child;
    },
  };
}

/** Under BENCH_GC_TRACE: a measured window (or a collection) from `opened` to now, in wall-clock ms. */
function traceWindow(row: string, opened: number): void {
  if (GC_TRACE) appendFileSync(join(GC_TRACE, 'windows.txt'), `${opened} ${Date.now()} ${row}\n`);
}

/** One full collection in each of these processes (the live ones), then a wait until they are quiet again. */
function collect(targets: Array<[ChildProcess, GcTarget]>): void {
  const live = targets.filter(([c]) => alive(c));
  if (live.length === 0) return;
  const [t0, opened] = [performance.now(), Date.now()];
  const missed = collectGarbage(live.map(([child, t]) => ({ child, ack: t.ack })));
  for (const [, t] of live) {
    t.last = t0;
    t.collected = true;
  }
  // Capped at 2 s (a review's finding: 5 s, the cap after one server's load, was too long a worst
  // case for a wait made up to ~4 times a quick run).
  settleWithin(2000, ...live.map(([c]) => c.pid));
  collections.events++;
  collections.processes += live.length;
  collections.ms += performance.now() - t0;
  traceWindow(`(full collection: ${live.map(([, t]) => t.name).join(', ')})`, opened);
  if (missed.length > 0) console.log(`(no full collection answered within ${COLLECT_TIMEOUT_MS / 1000} s by ${missed.map((m) => gcTargets.get(m.child)?.name).join(', ')})`);
}

/** Whether the bench collected the process `pid` since it last served requests (a full collection deoptimises a warmed server's hot path: `afterCollection`). */
function collectedSince(pid: number | undefined): boolean {
  for (const [c, t] of gcTargets) if (c.pid === pid) return t.collected === true;
  return false;
}

/** These processes served requests (a warm-up, or the requests after a collection): warm again. */
function served(...pids: Array<number | undefined>): void {
  for (const [c, t] of gcTargets) if (pids.includes(c.pid)) t.collected = false;
}

/** Every long-lived process of the run collected: before each round of `check` and `size`. */
function collectAll(): void {
  collect([...gcTargets]);
}

/** The processes whose watchdog could come due within the next `windowS` seconds (or within 10 s after). */
function staleWithin(windowS: number): Array<[ChildProcess, GcTarget]> {
  const due = performance.now() - (WATCHDOG_S - windowS - 10) * 1000;
  return [...gcTargets].filter(([c, t]) => alive(c) && t.last < due);
}

/** Whether any process of the run is `staleWithin` these seconds. */
function dueWithin(windowS: number): boolean {
  return staleWithin(windowS).length > 0;
}

/** Before a measured window of `windowS` seconds: those whose watchdog could come due within it (or within 10 s after) collected. */
function collectStale(windowS: number): void {
  collect(staleWithin(windowS));
}

/** A database of its own for the run's PostgreSQL server, or null when PostgreSQL does not answer. */
async function benchDatabase(): Promise<BenchDatabase | null> {
  try {
    return await timed('postgres database', () => createBenchDatabase(POSTGRES_URL, `tessera_bench_${run}`));
  } catch (err) {
    console.log(`\n(PostgreSQL at ${POSTGRES_URL} does not answer — ${(err as Error).message}: its rows are skipped)`);
    return null;
  }
}
// (Assigned in the start-up's promise chain: typed by the assertion, so that it is not narrowed to null.)
let pgDatabase = null as BenchDatabase | null;

const children: ChildProcess[] = [];
const prefixes: string[] = [];
const run = randomBytes(4).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'tessera-bench-'));

/** The delay proxies: stopped after every server (a server whose Redis vanished first logs resets). */
const proxies = new Set<ChildProcess>();

function started(child: ChildProcess): ChildProcess {
  children.push(child);
  return child;
}

/** Stops these children (servers before proxies) and forgets them. */
async function stopAll(list: ChildProcess[]): Promise<void> {
  await Promise.all(list.filter((c) => !proxies.has(c)).map(stop));
  await Promise.all(list.filter((c) => proxies.has(c)).map(stop));
  for (const c of list) {
    const i = children.indexOf(c);
    if (i >= 0) children.splice(i, 1);
    proxies.delete(c);
  }
}

interface Tessera {
  child: ChildProcess;
  url: string;
  admin: string;
  store: string;
  prefix: string;
  login(mode: 'token' | 'cookie', email?: string): Promise<{ token: string; refreshToken: string; cookie: string; sessionId: string }>;
}

const COOKIE_KEY = randomBytes(32).toString('base64url');
/**
 * The Node flags `tessera start` gives itself (src/config/node-flags.ts: the young generation kept
 * at TESSERA_SEMI_SPACE_MB, 16, which the bench leaves at its default), given on its command line
 * instead: a server started without them replaces itself with the same command plus them
 * (`process.execve`) once its modules are loaded, and so loads them twice — ~0.6 s more CPU per
 * start (1.51–1.83 s against 0.98–1.04 s, 4 starts each way, alternated), nine starts in a quick
 * run. Given by the operator, the flag stops the replacement (`startFlags` returns none); the
 * server then runs with exactly the flags it would have given itself.
 */
const SERVER_FLAGS = startFlags(DEFAULT_SEMI_SPACE_MB, []);

/** `core`: where the server is pinned once it answers (0); null: not pinned here (its caller pins it before it is measured). */
async function startTessera(store: string, opts: { prefix?: string; core?: number | null; publicUrl?: string } = {}): Promise<Tessera> {
  const admin = randomBytes(24).toString('hex');
  const prefix = opts.prefix ?? `bench-tessera-${run}-${randomBytes(3).toString('hex')}:`;
  if (!prefixes.includes(prefix)) prefixes.push(prefix);
  let url: string;
  let child: ChildProcess;
  // A server that exits while starting (a busy shared store not answering its first connection
  // within the start-up deadline, or its port taken by another process between freePort and its
  // listen) is started again, on a fresh port, twice at most.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const gc = gcReady(`tessera-${store.split(':')[0]}-${port}`);
    child = started(
      spawn(NODE, [...SERVER_FLAGS, ...gc.args, join(ROOT, 'src/cli.ts'), 'start'], {
        cwd: dir,
        env: {
          ...tesseraEnv({ port, store, prefix, admin, cookieKey: COOKIE_KEY }),
          ...NODE_ENV_PASS,
          ...gc.env,
          // Processes that share a store must agree on the issuer of their tokens.
          ...(opts.publicUrl ? { TESSERA_PUBLIC_URL: opts.publicUrl } : {}),
          // A/B of how the hot Redis calls are sent (src/store/redis/hot-connection.ts).
          ...(process.env.TESSERA_REDIS_HOT_WRITES ? { TESSERA_REDIS_HOT_WRITES: process.env.TESSERA_REDIS_HOT_WRITES } : {}),
        },
        stdio: ['ignore', gc.stdout, 'inherit'],
      }),
    );
    gc.register(child);
    serverPids.set(url, child.pid);
    serverNames.set(url, `tessera (${store.split(':')[0]}) on :${port}`);
    try {
      await timed(`tessera ${store.split(':')[0]} up`, () => waitFor(`${url}/healthz`, child));
      if (opts.core !== null) pinNow(child.pid, opts.core ?? 0);
      break;
    } catch (err) {
      if (child.exitCode === null || attempt === 3) throw err;
      console.log(`(a Tessera server on ${store.split(':')[0]} exited while starting; started again)`);
    }
  }
  const h = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
  await timed('tenant', () => fetch(`${url}/api/v1/admin/tenants/bench`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' }).then(async (r) => {
    if (!r.ok) throw new Error(`tenant: ${r.status} ${await r.text()}`);
  }));
  const users = new Set<string>();
  const login = (mode: 'token' | 'cookie', email = 'bench@example.com') => timed('login', () => loginOnce(mode, email));
  const loginOnce = async (mode: 'token' | 'cookie', email: string) => {
    if (!users.has(email)) {
      const r = await fetchRetry(`${url}/api/v1/admin/users`, { method: 'POST', headers: h, body: JSON.stringify({ tenantId: 'bench', email, password: 'bench password' }) });
      if (!r.ok && r.status !== 409) throw new Error(`user: ${r.status} ${await r.text()}`);
      users.add(email);
    }
    const res = await fetchRetry(`${url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json', 'x-auth-mode': mode },
      body: JSON.stringify({ email, password: 'bench password' }),
    });
    if (!res.ok) throw new Error(`login: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as { userSessionToken?: string; refreshToken?: string; sessionId: string };
    return { token: body.userSessionToken ?? '', refreshToken: body.refreshToken ?? '', sessionId: body.sessionId, cookie: (res.headers.get('set-cookie') ?? '').split(';')[0] as string };
  };
  return { child, url, admin, store, prefix, login };
}

async function startBaseline(peer: 'hello' | 'redis-get' | 'jose' | 'session', redisUrl = REDIS_URL): Promise<{ child: ChildProcess; url: string; headers: Record<string, string> }> {
  const port = await freePort();
  const prefix = `bench-peer-${run}-${peer}:`;
  if (!prefixes.includes(prefix)) prefixes.push(prefix);
  const script = peer === 'session' ? 'bench/peer-fastify-session.ts' : 'bench/peer-baselines.ts';
  const gc = gcReady(`${peer}-${port}`);
  const child = gc.register(
    started(spawn(NODE, [...gc.args, join(ROOT, script)], { env: { PATH: process.env.PATH ?? '', PORT: String(port), PREFIX: prefix, REDIS_URL: redisUrl, PEER: peer, ...NODE_ENV_PASS, ...gc.env }, stdio: ['ignore', gc.stdout, 'inherit'] })),
  );
  const url = `http://127.0.0.1:${port}`;
  serverPids.set(url, child.pid);
  serverNames.set(url, peer === 'hello' ? 'fastify hello world' : peer === 'session' ? '@fastify/session + connect-redis' : peer);
  await timed(`${peer} up`, () => waitFor(`${url}/api/v1/session`, child));
  pinNow(child.pid, 0);
  const res = await fetch(`${url}/login`, { method: 'POST' });
  const body = (await res.json()) as { token?: string };
  const headers: Record<string, string> = body.token ? { authorization: `Bearer ${body.token}` } : {};
  const cookie = res.headers.get('set-cookie');
  if (cookie) headers.cookie = cookie.split(';')[0] as string;
  return { child, url, headers };
}

async function startDelayProxy(delayMs: number): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const target = new URL(REDIS_URL);
  // A long-lived Node process in the Redis path of the remote rows: collected with the others
  // (its reducer's pause would delay every reply it carries), never traced — its standard output
  // is the pipe that says it is ready.
  const gc = gcReady(`delay-proxy-${port}`, false);
  const [cmd, args] = pinned(1, [NODE, ...gc.args, join(ROOT, 'bench/delay-proxy.ts'), String(port), target.hostname, target.port || '6379', String(delayMs)]);
  const child = gc.register(started(spawn(cmd, args, { env: { ...process.env, ...gc.env }, stdio: ['ignore', 'pipe', 'inherit'] })));
  proxies.add(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (c) => reject(new Error(`delay proxy exited ${c}`)));
  });
  return { child, url: `redis://127.0.0.1:${port}` };
}

/**
 * Stores `count` idle token-mode sessions in `t`'s store (bench/fill-sessions.ts, its own process,
 * through the store port); resolves with the seconds it took. Several fills run at once when
 * nothing is being measured. Its progress lines (large fills) are printed as they come.
 */
function fill(t: Tessera, count: number, firstUser = 0): Promise<number> {
  return timed(`fill ${count} ${t.store.split(':')[0]}`, () => new Promise<number>((resolve, reject) => {
    const child = spawn(NODE, [join(ROOT, 'bench/fill-sessions.ts'), JSON.stringify({ store: t.store, prefix: t.prefix, tenantId: 'bench', count, firstUser })], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      err += c;
      if (c.startsWith('fill ')) process.stdout.write(`(${c.trim()})\n`);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), FILL_TIMEOUT_S * 1000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') return reject(new Error(`fill of ${count.toLocaleString('en')} sessions did not finish within BENCH_FILL_TIMEOUT_S=${FILL_TIMEOUT_S}`));
      if (code !== 0) return reject(new Error(`fill failed: ${err}`));
      resolve((JSON.parse(out.trim().split('\n').pop() as string) as { seconds: number }).seconds);
    });
  }));
}

/**
 * Redis bytes per session under `prefix`: `MEMORY USAGE … SAMPLES 0` summed over every key of the
 * prefix, divided by `n`; prints the table by kind of key under `title`.
 */
function redisMemory(prefix: string, n: number, title: string): Promise<number> {
  return timed('memory walk', () => redisMemoryWalk(prefix, n, title));
}
async function redisMemoryWalk(prefix: string, n: number, title: string): Promise<number> {
  const groups = new Map<string, { keys: number; bytes: number }>();
  let total = 0;
  for await (const keys of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
    const batch = keys;
    const sizes = await Promise.all(batch.map((k) => redis.memoryUsage(k, { SAMPLES: 0 })));
    batch.forEach((k, i) => {
      // `{tag}:s:<handle>` → `{…}:s:…`: one row per kind of key.
      // `r:<2 chars>` route buckets and `{due}:<2 chars>` due buckets: one row each.
      const g = k
        .slice(prefix.length)
        .replace(/\{[^}]*\}/g, '{…}')
        .replace(/:[^:{}]{12,}$/, ':…')
        .replace(/^(\w+):[^:{}]+:/, '$1:…:')
        .replace(/^r:[^:]{2}$/, 'r:<bucket>')
        .replace(/^\{…\}:[^:]{2}$/, '{due}:<bucket>');
      const e = groups.get(g) ?? { keys: 0, bytes: 0 };
      e.keys++;
      e.bytes += Number(sizes[i] ?? 0);
      groups.set(g, e);
      total += Number(sizes[i] ?? 0);
    });
  }
  console.log(`\n### ${title}\n`);
  console.log('| key pattern | keys | bytes per session |');
  console.log('|---|---:|---:|');
  // Kinds of key under half a byte per session (the tenant's own records, its audit) as one row.
  const rest = { kinds: 0, keys: 0, bytes: 0 };
  for (const [g, e] of [...groups].sort((a, b) => b[1].bytes - a[1].bytes)) {
    if (e.bytes / n >= 0.5) console.log(`| \`${g}\` | ${e.keys} | ${(e.bytes / n).toFixed(0)} |`);
    else Object.assign(rest, { kinds: rest.kinds + 1, keys: rest.keys + e.keys, bytes: rest.bytes + e.bytes });
  }
  if (rest.kinds > 0) console.log(`| ${rest.kinds} other kind${rest.kinds === 1 ? '' : 's'} of key | ${rest.keys} | ${(rest.bytes / n).toFixed(1)} |`);
  console.log(`| **total** | | **${(total / n).toFixed(0)}** |`);
  return total / n;
}

type Scenario = [name: string, url: string, headers: Record<string, string>];

/**
 * Requests every scenario is given before its first measured round, the same number for every
 * server (hello world included). One request each, as before, left the JIT, the young
 * generation's size and the caches cold: in a 3-second round a server still warming up used
 * up to half again as much CPU per request, and the first scenario measured on each Tessera
 * process (token mode) paid for the one after it.
 */
// 40,000: a server of the check was still getting cheaper after 15,000 (docs/performance.md,
// "Process-to-process spread" and "Warm-up 40,000").
const WARM_UP = Number(process.env.BENCH_WARMUP ?? 40_000);
const WARMUP_TRACE = Number(process.env.BENCH_WARMUP_TRACE ?? 0);
/**
 * The size section's warm-up, of servers the check section warmed and measured already, after
 * the collection before it (`collectAndWarmUp`): 25,000. Traced in 5,000-request parts
 * (BENCH_WARMUP_TRACE=8, 2026-12-08): the token rows came back to their plateau in the fourth
 * part (≈100, 82, 95, then 51–59 µs per check on a slowed machine), the cookie rows and hello world
 * were flat from the first; parts four to eight of every row within each other's noise. Two parts
 * beyond that knee (one trace, on a slowed machine: a review's finding).
 */
const REWARM = Number(process.env.BENCH_REWARM ?? 25_000);
function warmUp(scenarios: Scenario[], path = '/api/v1/session', amount = WARM_UP): void {
  for (const [name, url, headers] of scenarios) {
    if (WARMUP_TRACE > 1) {
      // Diagnostic: the warm-up in WARMUP_TRACE equal parts, the server's CPU µs per request of each.
      const pid = serverPids.get(new URL(url).origin);
      const parts: string[] = [];
      for (let i = 0; i < WARMUP_TRACE; i++) {
        const c0 = threadsCpu(pid);
        const r = timed('warm-up', () => runLoad('bench/load.ts', { url: `${url}${path}`, connections: CONNECTIONS, amount: Math.round(amount / WARMUP_TRACE), headers }));
        parts.push((((threadsCpu(pid) - c0) * 1e6) / Math.max(1, r.requests)).toFixed(1));
      }
      console.log(`(warm-up trace, ${phaseSection}, ${name}: server CPU µs/req per ${Math.round(amount / WARMUP_TRACE)}: ${parts.join(', ')})`);
    } else timed('warm-up', () => runLoad('bench/load.ts', { url: `${url}${path}`, connections: CONNECTIONS, amount, headers }));
  }
  served(...scenarios.map(([, url]) => serverPids.get(new URL(url).origin)), loadServerPid);
  // One settle after the last warm-up, of every server warmed up: nothing is measured between two
  // warm-ups, and each is a count of requests, so a server still busy with its own (its compiler
  // threads) while the next one's runs changes neither; the first measured row waits for all of
  // them. (Until 2026-12-08 each warm-up had its own settle, ≥ 0.2 s each: ~4 s of a quick run.)
  timed('settle', () => settle(...new Set(scenarios.map(([, url]) => serverPids.get(new URL(url).origin)))));
}

/**
 * The first round's collection, then the warm-up: the warm-up re-optimises what the collection
 * deoptimised (`afterCollection`'s second reason) and moves the load generator past its first
 * mark-compact after it (the first), so the first round needs no requests of its own after its
 * collection (until 2026-12-08 it was collected after the warm-up and given 15,000 requests per
 * server: 8–13 s of a quick run). A window that opens more than ~87 s after this collection (the
 * full run's first round) is collected again by `load` first, and re-optimised there.
 */
function collectAndWarmUp(scenarios: Scenario[], amount = WARM_UP): void {
  timed('collect', () => collectAll());
  warmUp(scenarios, undefined, amount);
}

/**
 * After `collectAll`, before the round's rows: a short load not measured to every server of the
 * round (with its first row's headers, in the round's order), then one settle of them all. Two
 * reasons:
 * - The load generator is collected too, and after a full collection V8 sets its next
 *   old-generation limit near its live size: its next ordinary mark-compact came ~2–3 thousand
 *   requests later once in three (and ~13,000 later, its steady cadence, in the other two;
 *   docs/performance.md, "A review's findings on the late session's bench changes") — without
 *   this, inside the first row, hello world's, the denominator of goals 1 and 4.
 * - A full collection deoptimises much of a warmed server's hot path: optimised code that embeds
 *   objects which died with the earlier loads' connections is thrown away ("embedded weak objects
 *   cleared" under --trace-deopt: ~110–180 code objects of Node's HTTP, Fastify's and Tessera's
 *   in a Tessera server), and the next requests run unoptimised while it is compiled again on
 *   the server's core. Only hello world was given requests after the collection; each Tessera
 *   process's first row — token mode — paid for its recompilation inside the measured window
 *   (docs/performance.md, "The token rows' p99 and the full collection").
 * 15,000 requests per server: the re-optimisation left the first row's window with it (5,000
 * left a third of it there); about a third of a second per server at the check's rates.
 */
const AFTER_COLLECTION = Number(process.env.BENCH_AFTER_COLLECTION ?? 15_000);
/**
 * Goal 2's warm-ups come between their collection and their window: each is bounded to this many
 * seconds (the rotation's 40,000 take ~4–7 s, the SSO exchange's 14,000 ~3 s); the collection
 * before it allows for it and 10 s more (the collection's wait, the settle).
 */
const GOAL2_WARM_UP_S = 30;
function afterCollection(scenarios: Scenario[], path: string): void {
  if (AFTER_COLLECTION <= 0) return;
  const firstRows = new Map<string, Scenario>();
  for (const s of scenarios) {
    const origin = new URL(s[1]).origin;
    if (!firstRows.has(origin)) firstRows.set(origin, s);
  }
  timed('after-collection', () => {
    for (const [, url, headers] of firstRows.values()) runLoad('bench/load.ts', { url: `${url}${path}`, connections: CONNECTIONS, amount: AFTER_COLLECTION, headers });
  });
  const pids = [...firstRows.keys()].map((origin) => serverPids.get(origin));
  served(...pids, loadServerPid);
  timed('settle', () => settle(...pids));
}

/** A scenario's rounds: the median round (`f`), every round's req/s rounded (`all`), and every round's figures in round order. */
interface Measured {
  f: Figures;
  all: number[];
  rounds: Figures[];
}

/**
 * Interleaved rounds; the round with the median throughput stands for each scenario. `collected`:
 * every long-lived process of the run gets a full collection before each round (collectAll) —
 * before the first round's warm-up (`collectAndWarmUp`, by the caller), before each later round
 * here, followed by `afterCollection`.
 */
function measure(scenarios: Scenario[], path = '/api/v1/session', seconds = SECONDS, collected = false): Map<string, Measured> {
  const samples = new Map<string, Figures[]>();
  for (let round = 0; round < ROUNDS; round++) {
    if (collected && round > 0) {
      timed('collect', () => collectAll());
      afterCollection(scenarios, path);
    }
    for (const [name, url, headers] of scenarios) {
      // A process whose watchdog could come due within this row and the next (its control) — the
      // full run's first round, or a slow machine's: the whole round's processes collected and
      // re-optimised here, at a row that is not a control, so that a filled row and its control,
      // measured back to back, are never on the two sides of a collection (a review's finding).
      if (collected && !name.endsWith(' [control]') && dueWithin(2 * (seconds + 5))) {
        timed('collect', () => collectAll());
        afterCollection(scenarios, path);
      }
      samples.set(name, [...(samples.get(name) ?? []), load(`${url}${path}`, headers, seconds, name)]);
    }
  }
  const out = new Map<string, Measured>();
  for (const [name, fs] of samples) {
    out.set(name, { f: [...fs].sort((a, b) => a.rps - b.rps)[Math.floor(fs.length / 2)] as Figures, all: fs.map((x) => Math.round(x.rps)), rounds: fs });
  }
  return out;
}

function table(title: string, rows: Map<string, { f: Figures; all: number[] }>, hello: Figures | null): void {
  console.log(`\n### ${title}\n`);
  console.log('| server | req/s (median) | runs | p50 ms | p99 ms | non-2xx / errors | Redis cmds/req | server CPU µs/req | Redis CPU µs/req | × hello req/s | p99 / hello p99 | hello CPU / CPU |');
  console.log('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const [name, { f, all }] of rows) {
    const perReq =
      f.redisPerRequest === undefined || Number.isNaN(f.redisPerRequest)
        ? 'n/a'
        : `${f.redisPerRequest.toFixed(3)}${f.redisSentPerRequest === undefined ? '' : ` (${f.redisSentPerRequest.toFixed(2)} sent)`}`;
    const ratio = hello ? `${(f.rps / hello.rps).toFixed(2)}×` : 'n/a';
    const p99 = hello && hello.p99 > 0 ? `${(f.p99 / hello.p99).toFixed(2)}×` : 'n/a';
    const cpu = f.cpuUsPerRequest === undefined || Number.isNaN(f.cpuUsPerRequest) ? 'n/a' : f.cpuUsPerRequest.toFixed(0);
    const cpuRatio = hello?.cpuUsPerRequest && f.cpuUsPerRequest ? `${(hello.cpuUsPerRequest / f.cpuUsPerRequest).toFixed(2)}×` : 'n/a';
    const redisCpu = f.redisCpuUsPerRequest === undefined || Number.isNaN(f.redisCpuUsPerRequest) ? 'n/a' : f.redisCpuUsPerRequest.toFixed(0);
    console.log(`| ${name} | ${Math.round(f.rps)} | ${all.join(' / ')} | ${f.p50} | ${f.p99} | ${f.non2xx} / ${f.errors} | ${perReq} | ${cpu} | ${redisCpu} | ${ratio} | ${p99} | ${cpuRatio} |`);
  }
}

/** The goals of issue 13 as this run measured them: printed as one table, and written to --goals-out for --runs. */
const summary: Goal[] = [];
/** Wall time per section, printed at the end (the --quick budget is 3 minutes). */
const sectionTimes: Array<[string, number]> = [];
const runStarted = performance.now();
function section(name: string): void {
  sectionTimes.push([name, performance.now()]);
  phaseSection = name;
}

/**
 * BENCH_PHASES=1: where the wall time went, printed after the run — per section, the time in each
 * kind of step (measured windows, warm-ups, settles, collections, fills, logins, start-ups…) and
 * how many, so that a run's wall time can be attributed without timing it again. Steps that run
 * at once (the start-up's servers, two fills) each count their own wall time: such a line can
 * exceed its section's. Costs nothing measured: the clock is read around the steps, outside the
 * windows' own counters.
 */
const PHASES = process.env.BENCH_PHASES !== undefined && process.env.BENCH_PHASES !== '0';
let phaseSection = 'start-up';
const phaseTotals = new Map<string, { ms: number; n: number; first: number; last: number }>();
function phaseAdd(kind: string, t0: number, section = phaseSection): void {
  const t1 = performance.now();
  const key = `${section}\u0000${kind}`;
  const e = phaseTotals.get(key) ?? { ms: 0, n: 0, first: t0, last: t1 };
  phaseTotals.set(key, { ms: e.ms + (t1 - t0), n: e.n + 1, first: Math.min(e.first, t0), last: Math.max(e.last, t1) });
}
/** `fn`'s wall time (a promise's until it settles) counted under `kind` in the current section. */
function timed<T>(kind: string, fn: () => T): T {
  const [t0, section] = [performance.now(), phaseSection];
  const out = fn();
  if (out instanceof Promise) void out.then(() => phaseAdd(kind, t0, section), () => phaseAdd(kind, t0, section));
  else phaseAdd(kind, t0, section);
  return out;
}
function printPhases(): void {
  if (!PHASES) return;
  const s = (ms: number) => (ms / 1000).toFixed(1);
  console.log('\n| section | step | s | count | from – to (s since the run began) |\n|---|---|---:|---:|---|');
  for (const [key, e] of phaseTotals) {
    const [section, kind] = key.split('\u0000');
    console.log(`| ${section} | ${kind} | ${s(e.ms)} | ${e.n} | ${s(e.first - runStarted)} – ${s(e.last - runStarted)} |`);
  }
}
/**
 * One line of the goals table. `id` names the goal the same way in every run (for --runs);
 * `measured` is this run's figure; `ok` null when this run cannot judge it (the verdict says why).
 */
function goal(n: number, id: string, measured: string, ok: boolean | null, verdict = ok === null ? 'not judged' : ok ? 'met' : 'NOT met', data?: Goal['data']): void {
  summary.push({ n, id, measured, ok, verdict, ...(data ? { data } : {}) });
}

const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

// The bench's own Redis (unless BENCH_REDIS_URL names one): stopped at the end, on an error, and on
// SIGINT/SIGTERM, which stop the run's other children too and drop its PostgreSQL database (a
// signal that arrives while a load run is waited for synchronously is handled once it returns).
const ownRedis: OwnRedis | null = PLACEMENT.kind === 'own' ? await startOwnRedis(PLACEMENT.core, hasTaskset, dir) : null;
const REDIS_URL = ownRedis?.url ?? (PLACEMENT.kind === 'external' ? PLACEMENT.url : '');
/** Whether Redis's CPU is the load core's (pinned there): counted in the load core's share. */
const REDIS_ON_LOAD_CORE = hasTaskset && PLACEMENT.kind === 'own' && PLACEMENT.core === 1;
process.once('exit', () => {
  if (ownRedis && ownRedis.child.exitCode === null) ownRedis.child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(signal, () => {
    console.log(`\n(${signal}: the run's servers and its Redis stopped, its database dropped)`);
    for (const c of children) c.kill('SIGTERM');
    ownRedis?.child.kill('SIGTERM');
    setTimeout(() => process.exit(code), 5000).unref();
    void (pgDatabase?.drop() ?? Promise.resolve()).catch(() => undefined).finally(() => process.exit(code));
  });
}

console.log(
  `# npm run bench${QUICK ? ' --quick' : ''} — ${new Date().toISOString()}, Node ${process.version}, ${CONNECTIONS} connections, ${SECONDS} s per run, ${ROUNDS} interleaved round(s); server on core 0, load on core 1${hasTaskset ? '' : ' (taskset missing: NOT pinned)'}; ${describePlacement(PLACEMENT, hasTaskset, ownRedis?.port)}`,
);

let helloFigures: Figures | null = null;
/**
 * Goal 2's hello world: measured once, right after the rotation's measured run and its command count (before the SSO
 * section's fill), and both goal-2 rows are divided by it. The check section's hello world is
 * measured up to two minutes earlier, and on this shared machine a single 3-second figure drifts
 * by a quarter over that time (the 2026-12-07 night's three runs: 83.7k, 68.1k, 58.3k req/s in the
 * check section while rotation stayed at 12.0–12.8k), so the ratio followed the drift rather than
 * the rotation. One run of the same length as the rows it divides (rotation and exchange are one
 * run each, in a full run too). The server is warmed up first when the check section did not run
 * (`--only=rotation`), as every scenario of the check is; before this, such a run divided by a cold
 * hello world. The check section's hello world still divides goal 1's rows (same rounds).
 */
let goal2HelloFigures: Figures | null = null;
function goal2Hello(hello: { url: string; headers: Record<string, string> }): Figures {
  if (goal2HelloFigures) return goal2HelloFigures;
  const scenario: Scenario = ['fastify hello world', hello.url, hello.headers];
  if (!helloFigures) warmUp([scenario]);
  goal2HelloFigures = load(`${hello.url}/api/v1/session`, hello.headers, SECONDS, 'fastify hello world (beside goal 2)');
  console.log(
    `\nHello world measured beside goal 2's rows: ${Math.round(goal2HelloFigures.rps)} req/s, p99 ${goal2HelloFigures.p99} ms, ${goal2HelloFigures.cpuUsPerRequest?.toFixed(0) ?? 'n/a'} µs CPU per request${helloFigures ? ` (the check section's: ${Math.round(helloFigures.rps)} req/s)` : ''}; goal 2's ratios divide by it.`,
  );
  return goal2HelloFigures;
}
/** Goal 2's figure: × the hello world beside it, and × the check section's (when it ran). */
function goal2Ratio(f: Figures, beside: Figures): string {
  return `${(f.rps / beside.rps).toFixed(2)}× (${Math.round(f.rps)} / ${Math.round(beside.rps)} req/s${helloFigures ? `; × the check's hello ${(f.rps / helloFigures.rps).toFixed(2)}` : ''})`;
}
const redis = createClient({ url: REDIS_URL });
await redis.connect();
try {
  // The servers every section uses, and the load generator, start at once.
  // `size` adds a control server per store (its own Redis prefix, its own SQLite file) that stays
  // at 1,000 sessions while the other is filled: goal 4 compares the filled server with it in the
  // same rounds (see the size section).
  // The check's servers are each given their 1,000 sessions (the "small" size; bench/fill-sessions.ts)
  // as soon as each one is up, and the check's reference servers start here too: set-up, nothing
  // is measured before the check section's first warm-up.
  const small = ONLY.has('check') || ONLY.has('size');
  const filled = <T extends Tessera | null>(started: Promise<T>, when = small): Promise<T> =>
    started.then(async (t) => {
      if (t !== null && when) await fill(t, 1000);
      return t;
    });
  const [tr, ts, tp, hello, , trc, tsc, references = []] = await Promise.all([
    filled(startTessera(REDIS_URL)),
    filled(startTessera(`sqlite:${join(dir, 'bench.db')}`)),
    filled(
      benchDatabase().then((db) => {
        pgDatabase = db;
        return db === null ? null : startTessera(db.url);
      }),
      ONLY.has('check'),
    ),
    startBaseline('hello'),
    timed('load generator up', () => startLoadServer()),
    ONLY.has('size') ? filled(startTessera(REDIS_URL)) : null,
    ONLY.has('size') ? filled(startTessera(`sqlite:${join(dir, 'control.db')}`)) : null,
    ONLY.has('check') ? Promise.all(CHECK_REFERENCES.map(async (peer) => [peer, await startBaseline(peer)] as const)) : undefined,
  ]);
  /** A server's token and cookie rows (a new login of each mode), named `tessera <mode> (<store>)<suffix>`. */
  const rowsOf = async (t: Tessera, store: string, suffix = ''): Promise<Scenario[]> => {
    const [tok, ck] = [await t.login('token'), await t.login('cookie')];
    serverNames.set(t.url, `tessera (${store})${suffix}`);
    return [
      [`tessera token (${store})${suffix}`, t.url, { authorization: `Bearer ${tok.token}` }],
      [`tessera cookie (${store})${suffix}`, t.url, { cookie: ck.cookie }],
    ];
  };
  const checkScenarios = async (withPostgres = true): Promise<Scenario[]> => {
    const out: Scenario[] = [...(await rowsOf(tr, 'redis')), ...(await rowsOf(ts, 'sqlite'))];
    if (tp !== null && withPostgres) out.push(...(await rowsOf(tp, 'postgres')));
    return out;
  };
  const CONTROL = ' [control]';
  /** The control servers' rows, in the order of `checkScenarios`' Redis and SQLite rows. */
  const controlScenarios = async (): Promise<Scenario[]> => (trc && tsc ? [...(await rowsOf(trc, 'redis', CONTROL)), ...(await rowsOf(tsc, 'sqlite', CONTROL))] : []);
  /** Each row followed by its control's (when it has one): a pair is measured back to back in every round. */
  const paired = (rows: Scenario[], controls: Scenario[]): Scenario[] =>
    rows.flatMap((r) => {
      const c = controls.find(([n]) => n === `${r[0]}${CONTROL}`);
      return c ? [r, c] : [r];
    });

  if (ONLY.has('check') || ONLY.has('size')) {
    section(ONLY.has('check') ? 'check' : 'size');
    // 1,000 sessions stored in each before the first measurement (the "small" size): filled, and
    // the reference servers started, with the start-up above.
    const tessera = await checkScenarios(ONLY.has('check'));
    const controls = await controlScenarios();
    // `--only=size` (goal 4 on its own): hello world and Tessera's rows only.
    const referenceNames = { 'redis-get': 'fastify + one Redis GET', jose: 'fastify + jose JWT verify', session: '@fastify/session + connect-redis' } as const;
    const baselines: Scenario[] = references.map(([peer, b]) => [referenceNames[peer], b.url, b.headers]);
    const scenarios: Scenario[] = [['fastify hello world', hello.url, hello.headers], ...baselines, ...paired(tessera, controls)];
    for (const [, url, headers] of scenarios) await fetchRetry(`${url}/api/v1/session`, { headers }).then((r) => r.arrayBuffer());
    collectAndWarmUp(scenarios);
    const rows = measure(scenarios, undefined, undefined, true);
    helloFigures = rows.get('fastify hello world')!.f;
    table(`The session check (GET /api/v1/session), 1,000 sessions stored${controls.length > 0 ? ' (the [control] rows: the size section\'s servers that stay at 1,000)' : ''}`, rows, helloFigures);
    if (ONLY.has('check')) {
      for (const [name] of tessera) {
        const f = rows.get(name)!.f;
        const errs = f.errors + f.non2xx > 0 ? `; ${f.non2xx} non-2xx / ${f.errors} errors` : '';
        goal(1, `${name}: ≥ 0.5× hello`, `${(f.rps / helloFigures.rps).toFixed(2)}×${errs}`, f.rps >= 0.5 * helloFigures.rps && f.errors === 0);
        // Both p99s to 0.01 ms, by the same method (bench/latency.ts): a hello world without
        // responses (p99 0) fails the row rather than passing it.
        goal(1, `${name}: p99 ≤ 2× hello's`, `${f.p99} vs ${helloFigures.p99} ms (${helloFigures.p99 > 0 ? (f.p99 / helloFigures.p99).toFixed(2) : 'n/a'}×)`, helloFigures.p99 > 0 && f.p99 <= 2 * helloFigures.p99);
      }
    }

    if (ONLY.has('size')) {
      if (ONLY.has('check')) section('size');
      // Goal 4: the same check after LARGE more sessions were stored (bench/fill-sessions.ts,
      // through the store port; bounded by BENCH_FILL_TIMEOUT_S; the keys and the database go
      // with the run's clean-up), beside a control server per store left at 1,000 sessions and
      // measured in the same rounds, back to back with the filled one, at both sizes. Throughput
      // on a shared machine moves between the two measurements by more than the store size could
      // explain (hello world itself, and an untouched server); the filled server's req/s over its
      // control's in the same round does not carry that drift, and comparing that ratio at the
      // two sizes also cancels what differs between the two processes.
      const [redisSecs, sqliteSecs] = await Promise.all([fill(tr, LARGE, 1000), fill(ts, LARGE, 1000)]);
      console.log(`\n(filled ${LARGE.toLocaleString('en')} more sessions, the two fills at once: Redis ${redisSecs.toFixed(0)} s, SQLite ${sqliteSecs.toFixed(0)} s; the control servers stay at 1,000)`);
      // Redis memory per session at this size too (goal 3's measure at goal 4's size): every
      // key of the server's prefix, its 1,000 small-size sessions, logins and tenant included.
      await redisMemory(tr.prefix, LARGE + 1000, `Redis memory at the large size, ${(LARGE + 1000).toLocaleString('en')} sessions (every key of the Redis server's prefix: the fill's idle token-mode sessions, the 1,000 of the small size, the bench's logins, the tenant and its audit)`);
      const big = await checkScenarios(false);
      const bigControls = await controlScenarios();
      const bigScenarios: Scenario[] = [['fastify hello world', hello.url, hello.headers], ...paired(big, bigControls)];
      for (const [, url, headers] of bigScenarios) await fetchRetry(`${url}/api/v1/session`, { headers }).then((r) => r.arrayBuffer());
      collectAndWarmUp(bigScenarios, REWARM);
      const rowsBig = measure(bigScenarios, undefined, undefined, true);
      table(`The session check with ${(LARGE + 1000).toLocaleString('en')} sessions stored (the [control] rows: servers left at 1,000)`, rowsBig, rowsBig.get('fastify hello world')!.f);
      console.log(
        `\n| scenario | × hello at 1,000 / large (control: 1,000 / 1,000) | filled ÷ control req/s per round, at 1,000 | at ${(LARGE + 1000).toLocaleString('en')} | change | spread between rounds (1,000 / large) | CPU µs/req at 1,000 / large (control) | CPU per request filled ÷ control, 1,000 → large (change) |`,
      );
      console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
      const hBig = rowsBig.get('fastify hello world')!.f;
      const spread = (xs: number[]) => (xs.length < 2 ? NaN : (Math.max(...xs) - Math.min(...xs)) / ((Math.max(...xs) + Math.min(...xs)) / 2));
      const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;
      const pct = (x: number) => (Number.isNaN(x) ? 'n/a' : `${(x * 100).toFixed(0)} %`);
      /** The filled row's req/s over its control's, round by round (NaN for a round the control served nothing). */
      const perRound = (at: Map<string, Measured>, name: string, of: (f: Figures) => number = (f) => f.rps) => {
        const [f, c] = [at.get(name)!.rounds, at.get(`${name}${CONTROL}`)!.rounds];
        return f.map((x, i) => (of(c[i]!) > 0 ? of(x) / of(c[i]!) : NaN));
      };
      /** The same for the server CPU per request (beside the verdict: the figure least disturbed by neighbours). */
      const cpuRatio = (at: Map<string, Measured>, name: string) => median(perRound(at, name, (f) => f.cpuUsPerRequest ?? NaN));
      const cpu = (m: Measured) => m.f.cpuUsPerRequest?.toFixed(0) ?? 'n/a';
      for (const [name] of big) {
        const x = (at: Map<string, Measured>, n: string, h: Figures) => `${(at.get(n)!.f.rps / h.rps).toFixed(2)}×`;
        const [rs, rl] = [perRound(rows, name), perRound(rowsBig, name)];
        const [small, large] = [median(rs), median(rl)];
        const change = (large - small) / small;
        const noise = Math.max(spread(rs), spread(rl));
        const list = (xs: number[]) => xs.map((v) => v.toFixed(2)).join(' / ');
        console.log(
          `| ${name} | ${x(rows, name, helloFigures)} / ${x(rowsBig, name, hBig)} (${x(rows, name + CONTROL, helloFigures)} / ${x(rowsBig, name + CONTROL, hBig)}) | ${list(rs)} | ${list(rl)} | ${pct(change)} | ${pct(spread(rs))} / ${pct(spread(rl))} | ${cpu(rows.get(name)!)} / ${cpu(rowsBig.get(name)!)} (${cpu(rows.get(name + CONTROL)!)} / ${cpu(rowsBig.get(name + CONTROL)!)}) | ${cpuRatio(rows, name).toFixed(2)} → ${cpuRatio(rowsBig, name).toFixed(2)} (${pct((cpuRatio(rowsBig, name) - cpuRatio(rows, name)) / cpuRatio(rows, name))}) |`,
        );
        // One round (--quick) has no spread to compare with: not judged in the run; --runs=N
        // judges it across the runs (bench/goals.ts), from each run's two ratios to the control.
        goal(
          4,
          `${name}: 1,000 vs ${(LARGE + 1000).toLocaleString('en')} stored, against a 1,000-session control in the same rounds, change within the noise`,
          `÷ control ${small.toFixed(2)} → ${large.toFixed(2)}: ${pct(change)} vs noise ${pct(noise)} (× hello ${x(rows, name, helloFigures)} → ${x(rowsBig, name, hBig)}, control ${x(rows, name + CONTROL, helloFigures)} → ${x(rowsBig, name + CONTROL, hBig)})`,
          Number.isNaN(noise) ? null : Math.abs(change) <= noise,
          Number.isNaN(noise) ? 'not judged: one round, no spread (--runs=N judges across runs)' : undefined,
          { small, large },
        );
      }
    }
    // The controls' work is done: stopped, so that no idle server beyond the usual ones shares
    // core 0 with the sections after this one.
    await stopAll([trc, tsc].flatMap((t) => (t ? [t.child] : [])));
  }

  if (ONLY.has('rotation')) {
    section('rotation');
    // Logged in five at a time: every connection this process leaves open (fetch keeps them
    // alive for a few seconds) counts against the server's per-address cap
    // (TESSERA_MAX_CONNECTIONS_PER_IP, 100) beside the load generator's 50, and 50 logins at once
    // left enough open for the server to refuse a few of the chains' first connections.
    const chains: { refreshToken: string }[] = [];
    for (let i = 0; i < 50; i += 5) chains.push(...(await Promise.all([0, 1, 2, 3, 4].map((j) => tr.login('token', `rot${i + j}@example.com`)))));
    const pid = serverPids.get(tr.url);
    const url = `${tr.url}/api/v1/auth/token/refresh`;
    // Collected (those whose watchdog could come due by the window's end) before the warm-up, not
    // after it: a full collection deoptimises the warmed hot path, and the window would open on
    // its recompilation (docs/performance.md, "The token rows' p99 and the full collection").
    timed('collect', () => collectStale(SECONDS + GOAL2_WARM_UP_S + 10));
    // Warmed up as every scenario of `check` is (WARM_UP requests; the server has served the
    // check, not this route): the same chains, going on with the tokens the warm-up ended on.
    const warm = timed('warm-up', () => runLoad('bench/load-refresh.ts', { url, seconds: GOAL2_WARM_UP_S, amount: WARM_UP, tokens: chains.map((c) => c.refreshToken) }));
    // (Its load generator is a process of its own, not the long-lived one.)
    served(pid);
    timed('settle', () => settle(pid));
    const opened = Date.now();
    const a = before(pid);
    const f = timed('measured', () => after(runLoad('bench/load-refresh.ts', { url, seconds: SECONDS, tokens: warm.tokens ?? chains.map((c) => c.refreshToken) }), pid, a));
    traceWindow('tessera refresh rotation (redis)', opened);
    // Which of those commands the server sent, and which ran inside its scripts: counted on 1,000
    // further rotations of the same chains (redisCommandsBySource).
    const counted = f.tokens ? await timed('monitor count', () => redisCommandsBySource(tr.prefix, () => runLoad('bench/load-refresh.ts', { url, seconds: 60, amount: 1000, tokens: f.tokens }))) : null;
    if (counted && counted.f.requests > 0) f.redisSentPerRequest = counted.sent / counted.f.requests;
    const rows = new Map([['tessera refresh rotation (redis)', { f, all: [Math.round(f.rps)] }]]);
    // The rotation server's work after the count (GC, compilations) ends before hello world's run
    // on the same core: a busy neighbour would lower the denominator (a review's finding).
    timed('settle', () => settle(pid));
    const beside = timed('goal-2 hello', () => goal2Hello(hello));
    table('Refresh-token rotation (POST /api/v1/auth/token/refresh), 50 chains (× the hello world measured beside it)', rows, beside);
    console.log(`\nWarmed up with ${warm.requests.toLocaleString('en')} rotations first (${warm.non2xx} non-2xx / ${warm.errors} errors).`);
    console.log(`CPU per rotation over the measured run: ${costs(f)}. (Redis's from INFO cpu: every client of this Redis counted.)`);
    console.log(`Redis's time by command over the measured run (INFO commandstats; a script's time includes the commands it runs, counted under their own names too): ${f.redisTop || 'n/a'}.`);
    if (counted && counted.f.requests > 0) {
      console.log(
        `Redis commands per rotation by source (MONITOR over ${counted.f.requests.toLocaleString('en')} further rotations): ${(counted.sent / counted.f.requests).toFixed(2)} sent by the server (round trips: the rotate script, a share of a batched audit append), ${(counted.inScripts / counted.f.requests).toFixed(2)} run inside its scripts; "Redis cmds/req" counts both.`,
      );
    }
    goal(2, 'rotation on Redis ≥ 0.2× hello, no non-2xx or socket errors', `${goal2Ratio(f, beside)}, ${f.non2xx} non-2xx / ${f.errors} errors; ${costs(f)}`, f.rps >= 0.2 * beside.rps && f.non2xx + f.errors === 0);
  }

  if (ONLY.has('sso')) {
    section('sso');
    // Finished SSO logins made through Tessera's own createSsoSessions (bench/fill-sso-tokens.ts:
    // no identity provider in the loop), each of a user of its own, then each one-time token
    // exchanged once, in token mode. The tokens live 60 s, so they are made right before the
    // measurement: a fixed number, or as many as the fill's budget allows on a slow machine.
    // The first `warm` of them are exchanged before the measurement (JIT, caches), as every
    // other section warms its servers up: the exchange's own code paths (the look-up, the
    // redeem script's reply, the flow) are not run by any earlier section. 14,000 (BENCH_SSO_WARM):
    // with 1,000, V8 was still optimising the exchange's own functions (and re-optimising the
    // HTTP shell's, which the exchange's route made polymorphic) through the measured window —
    // its helper threads ~16–20 µs per exchange against ~5 at steady state, on the server's one
    // core (docs/performance.md, "The SSO exchange's warm-up"). The fill's
    // budget covers both parts; the measured part keeps its `n` when the fill falls short.
    const [n, budgetS, warm] = QUICK ? [12_000, 16, SSO_WARM] : [40_000, 30, SSO_WARM];
    const all = join(dir, 'sso-tokens-all.txt');
    const r = timed('sso fill', () => spawnSync(NODE, [join(ROOT, 'bench/fill-sso-tokens.ts'), JSON.stringify({ store: tr.store, prefix: tr.prefix, cookieKey: COOKIE_KEY, tenantId: 'bench', count: n + warm, budgetS, out: all })], {
      encoding: 'utf8',
      cwd: dir,
      timeout: 10 * 60 * 1000,
    }));
    if (r.status !== 0) throw new Error(`SSO fill failed: ${r.stderr}`);
    const filled = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { stored: number; failed: number; seconds: number };
    if (filled.failed > 0) console.log(`\n(${filled.failed} SSO logins of the fill failed and were left out: ${r.stderr.trim()})`);
    const made = readFileSync(all, 'utf8').split('\n').filter(Boolean);
    const warmed = Math.min(warm, Math.max(made.length - n, Math.floor(made.length / 4)));
    const [warmFile, out] = [join(dir, 'sso-tokens-warm.txt'), join(dir, 'sso-tokens.txt')];
    writeFileSync(warmFile, made.slice(0, warmed).join('\n') + '\n');
    writeFileSync(out, made.slice(warmed).join('\n') + '\n');
    const pid = serverPids.get(tr.url);
    // Collected before the warm-up, as in the rotation section.
    timed('collect', () => collectStale((QUICK ? 10 : 35) + GOAL2_WARM_UP_S + 10));
    if (warmed > 0) timed('warm-up', () => runLoad('bench/load-sso.ts', { url: `${tr.url}/api/v1/sso/token`, connections: CONNECTIONS, seconds: GOAL2_WARM_UP_S, tokens: warmFile }));
    served(pid);
    // The compilations the warm-up queued finish before the window opens.
    timed('settle', () => settle(pid));
    const opened = Date.now();
    const a = before(pid);
    const f = timed('measured', () => after(runLoad('bench/load-sso.ts', { url: `${tr.url}/api/v1/sso/token`, connections: CONNECTIONS, seconds: QUICK ? 10 : 35, tokens: out }), pid, a));
    traceWindow('tessera SSO token exchange (redis)', opened);
    timed('settle', () => settle(pid));
    const beside = timed('goal-2 hello', () => goal2Hello(hello));
    table(
      `SSO token exchange (POST /api/v1/sso/token, token mode), ${filled.stored.toLocaleString('en')} one-time tokens of as many users made in ${filled.seconds.toFixed(0)} s by another process (not measured), ${warmed.toLocaleString('en')} exchanged to warm up, the other ${(made.length - warmed).toLocaleString('en')} measured, each exchanged once`,
      new Map([['tessera SSO token exchange (redis)', { f, all: [Math.round(f.rps)] }]]),
      beside,
    );
    console.log('\n(Redis cmds/req counts every command Redis ran in the window, those the Lua scripts run included — `INFO stats` counts them too; the commands a client sends are fewer: docs/performance.md.)');
    console.log(`CPU per exchange over the measured run: ${costs(f)}.`);
    console.log(`Redis's time by command over the measured run (INFO commandstats; a script's time includes the commands it runs, counted under their own names too): ${f.redisTop || 'n/a'}.`);
    goal(2, 'SSO token exchange on Redis ≥ 0.2× hello, no non-2xx', `${goal2Ratio(f, beside)}, ${f.non2xx} non-2xx / ${f.errors} errors; ${costs(f)}`, f.rps >= 0.2 * beside.rps && f.non2xx === 0);
  }

  /** The remote section's proxies and servers, per delay (started by the memory section, when it runs). */
  let remoteSetups: ReturnType<typeof remoteSetUp> | null = null;
  function remoteSetUp() {
    return Promise.all(
      [0.5, 2].map(async (delay) => {
        const proxy = await startDelayProxy(delay);
        const [t, peer, rg] = await Promise.all([startTessera(proxy.url), startBaseline('session', proxy.url), startBaseline('redis-get', proxy.url)]);
        const [tok, ck] = [await t.login('token'), await t.login('cookie')];
        const scenarios: Scenario[] = [
          ['fastify + one Redis GET', rg.url, rg.headers],
          ['@fastify/session + connect-redis', peer.url, peer.headers],
          ['tessera token (redis)', t.url, { authorization: `Bearer ${tok.token}` }],
          ['tessera cookie (redis)', t.url, { cookie: ck.cookie }],
        ];
        return { delay, scenarios, children: [t.child, peer.child, rg.child, proxy.child] };
      }),
    );
  }

  if (ONLY.has('argon2')) {
    section('argon2');
    const script = `
      import { hashPassword, verifyPassword } from '${join(ROOT, 'src/auth/password.ts')}';
      const h = await hashPassword('bench password');
      const n = 20; const t0 = performance.now();
      for (let i = 0; i < n; i++) await verifyPassword(h, 'bench password');
      console.log(JSON.stringify({ ms: (performance.now() - t0) / n }));`;
    const [cmd, args] = pinned(0, [NODE, '--input-type=module', '-e', script]);
    const r = timed('argon2 run', () => spawnSync(cmd, args, { encoding: 'utf8' }));
    const { ms } = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{"ms":null}') as { ms: number };
    console.log(`\n### Password login\n\nOne argon2id verification: ${ms.toFixed(1)} ms on one core → at most ${Math.floor(1000 / ms)} password checks per second per core.`);
    goal(2, 'password login bounded by argon2: its cost and the cap per core stated', `${ms.toFixed(1)} ms per verification → at most ${Math.floor(1000 / ms)} logins/s per core`, Number.isFinite(ms), Number.isFinite(ms) ? 'stated' : 'not measured');
  }

  if (ONLY.has('memory')) {
    section('memory');
    // The remote section's servers start now, beside this section's fill and MEMORY USAGE calls
    // (a count of bytes, not a timing; the next timed row is the remote section's first).
    if (ONLY.has('remote')) {
      remoteSetups = remoteSetUp();
      // Awaited in the remote section; a failure meanwhile is not left unhandled.
      remoteSetups.catch(() => undefined);
    }
    const n = QUICK ? 10_000 : 100_000;
    const t = { ...tr, prefix: `bench-mem-${run}:` };
    prefixes.push(t.prefix);
    await fill(t, n);
    const perSession = await redisMemory(t.prefix, n, `Redis memory, ${n.toLocaleString('en')} idle token-mode sessions (MEMORY USAGE … SAMPLES 0 over every key of the prefix)`);
    goal(3, `Redis bytes per idle token-mode session ≤ 600, at ${n.toLocaleString('en')} sessions${QUICK ? ' (quick; the goal is stated at 100,000: the full run)' : ''}`, `${perSession.toFixed(0)} B`, perSession <= 600);
    goal(3, 'audit and anomaly streams bounded per tenant, configurable', 'TESSERA_AUDIT_RETENTION_DAYS / TESSERA_AUDIT_RETENTION_RECORDS', null, 'configuration, not measured here');
  }

  if (ONLY.has('remote')) {
    section('remote');
    // Both delays' proxies and servers start at once (start-up is not measured), then each
    // delay is measured in turn; the lot is stopped before the next section (servers first).
    // Started during the `memory` section when it runs (remoteSetUp).
    const setups = await timed('set-up wait', () => remoteSetups ?? remoteSetUp());
    for (const { delay, scenarios } of setups) {
      for (const [, url, headers] of scenarios) await fetchRetry(`${url}/api/v1/session`, { headers }).then((r) => r.arrayBuffer());
      const rows = measure(scenarios, '/api/v1/session', REMOTE_SECONDS);
      table(`Redis ${delay} ms away each way (TCP delay proxy)${REMOTE_SECONDS !== SECONDS ? `, ${REMOTE_SECONDS} s per run` : ''}`, rows, helloFigures);
      const show = (name: string) => {
        const f = rows.get(name)!.f;
        return `${name.replace('(redis)', '').trim()} ${Math.round(f.rps)} req/s, p50 ${f.p50} / p99 ${f.p99} ms${f.errors + f.non2xx > 0 ? `, ${f.non2xx} non-2xx / ${f.errors} errors` : ''}`;
      };
      const names = ['tessera token (redis)', 'tessera cookie (redis)', '@fastify/session + connect-redis'];
      const clean = names.every((n) => rows.get(n)!.f.requests > 0 && rows.get(n)!.f.errors + rows.get(n)!.f.non2xx === 0);
      goal(5, `remote store ${delay} ms each way: latency and throughput of Tessera and the peer`, names.map(show).join('; '), clean, clean ? 'measured' : 'errors in the rows');
    }
    await timed('stop', () => stopAll(setups.flatMap((x) => x.children)));
  }

  if (ONLY.has('revocation')) {
    section('revocation');
    const prefix = `bench-rev-${run}:`;
    // Both servers on the server core, the load on the other (as in every section): A's logouts
    // compete with B's full-speed check for core 0, which is the stricter case (docs/performance.md,
    // "Revocation under load": on core 1 A would compete with the load generator instead, and
    // take CPU from the load rather than from the server under test).
    // Both started at once; A pinned only once its victims are logged in (their argon2 hashes
    // and checks, ~12 ms each, on both cores while nothing is measured).
    const [a, b] = await Promise.all([startTessera(REDIS_URL, { prefix, core: null, publicUrl: 'http://localhost:8080' }), startTessera(REDIS_URL, { prefix, core: 0, publicUrl: 'http://localhost:8080' })]);
    const busy = await b.login('token', 'busy@example.com');
    // At least 200 trials, so that the p99 is not simply the largest of a few.
    const trials = QUICK ? 200 : 500;
    const victims = await timed('victims', () => pooled(trials, (i) => a.login('token', `victim${i}@example.com`)));
    pinNow(a.child.pid, 0);
    // Its trials take 5–20 s (quick; the full run's 500 up to a minute).
    timed('collect', () => collectStale(QUICK ? 30 : 60));
    const opened = Date.now();
    const trialsStarted = performance.now();
    // Full-speed checks on B for the whole measurement, from the load core.
    const [cmd, args] = pinned(1, [NODE, join(ROOT, 'bench/load.ts'), JSON.stringify({ url: `${b.url}/api/v1/session`, connections: CONNECTIONS, duration: 600, headers: { authorization: `Bearer ${busy.token}` } })]);
    const loadChild = started(spawn(cmd, args, { stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, 1000));
    // The probes: an open loop, one check of the victim's token on B every PROBE_EVERY_MS on
    // kept-alive connections (at most PROBE_WIDTH in flight), whatever the earlier ones answered,
    // until refusals are read. A trial's figure is the send time of the first probe from which on
    // every probe was refused: any request sent to B from then on is refused. A closed loop (the
    // next probe only once the last one answered) would add up to two of B's response times under
    // the load to the figure — when the refusal is read, not when B started refusing.
    const PROBE_EVERY_MS = 1;
    const PROBE_WIDTH = 16;
    const probeAgent = new HttpAgent({ keepAlive: true, maxSockets: PROBE_WIDTH });
    /** The status of one GET of B's session check (null: the request failed). */
    const check = (headers: Record<string, string>) =>
      new Promise<number | null>((resolve) => {
        const req = httpRequest(`${b.url}/api/v1/session`, { agent: probeAgent, headers }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? null));
          res.on('error', () => resolve(null));
        });
        req.on('error', () => resolve(null));
        req.end();
      });
    /** Per trial: from the logout's start until B refused every probe sent. */
    const times: number[] = [];
    /** Per trial: from the logout's start until the first refusal was read (the former figure). */
    const readTimes: number[] = [];
    let served = 0;
    /** Probes served although sent after one that B refused (B answered them before reading the feed). */
    let servedAfterRefusal = 0;
    // A probe or a logout that fails (a connection reset under load) is counted, never fatal; a
    // trial whose logout failed is left out of the distribution.
    let pollErrors = 0;
    /** Trials whose session B did not accept before the logout (each skipped, the first printed). */
    const notValid: string[] = [];
    /** Trials in which B still served the session 5 s after the logout began (counted at 5 s). */
    let unrefused = 0;
    for (const v of victims) {
      const hdr = { authorization: `Bearer ${v.token}` };
      const first = await check(hdr);
      if (first === null) {
        pollErrors++;
        continue;
      }
      if (first !== 200) {
        notValid.push(String(first));
        continue;
      }
      const t0 = performance.now();
      const out = fetch(`${a.url}/api/v1/auth/logout`, { method: 'POST', headers: hdr }).then((r) => r.arrayBuffer().then(() => r.ok), () => false);
      const probes: { sent: number; status: number | null }[] = [];
      const pending: Promise<void>[] = [];
      let inflight = 0;
      let firstRefusalRead = Infinity;
      // Probes go out until the last one sent of those answered was refused, then the ones in
      // flight are awaited; should one of them have been served after all (B answered it before
      // reading the feed), on again.
      while (performance.now() - t0 < 5000) {
        const latest = probes.length === 0 ? null : probes.reduce((x, p) => (p.sent > x.sent ? p : x));
        const refusing = latest?.status === 401;
        if (refusing && inflight === 0) break;
        if (!refusing && inflight < PROBE_WIDTH) {
          inflight++;
          const sent = performance.now();
          pending.push(
            check(hdr).then((status) => {
              inflight--;
              probes.push({ sent, status });
              if (status === 401) firstRefusalRead = Math.min(firstRefusalRead, performance.now());
            }),
          );
        }
        await new Promise((r) => setTimeout(r, PROBE_EVERY_MS));
      }
      await Promise.all(pending);
      const loggedOut = await out;
      pollErrors += probes.filter((p) => p.status === null).length;
      if (!loggedOut) {
        pollErrors++;
        continue;
      }
      const servedAt = probes.filter((p) => p.status === 200).map((p) => p.sent);
      const refusedAt = probes.filter((p) => p.status === 401).map((p) => p.sent);
      const lastServed = Math.max(-Infinity, ...servedAt);
      const refusedFrom = Math.min(Infinity, ...refusedAt.filter((t) => t > lastServed));
      served += servedAt.length;
      servedAfterRefusal += servedAt.filter((t) => t > Math.min(Infinity, ...refusedAt)).length;
      if (refusedFrom === Infinity) {
        unrefused++;
        times.push(5000);
        readTimes.push(5000);
        continue;
      }
      times.push(refusedFrom - t0);
      readTimes.push(firstRefusalRead - t0);
    }
    loadChild.kill('SIGTERM');
    phaseAdd('trials (measured)', trialsStarted);
    traceWindow('revocation', opened);
    probeAgent.destroy();
    const fmt = (x: number) => x.toFixed(1);
    const buckets = [5, 10, 20, 30, 50, 100, 5000];
    const histogram = buckets.map((hi, i) => `${i ? `${buckets[i - 1]}–` : '≤ '}${hi} ms: ${times.filter((t) => t <= hi && (i === 0 || t > (buckets[i - 1] as number))).length}`).join(', ');
    const summary6 = (xs: number[]) => `p50 ${fmt(percentile(xs, 50))} ms, p90 ${fmt(percentile(xs, 90))} ms, p99 ${fmt(percentile(xs, 99))} ms, max ${fmt(Math.max(...xs))} ms`;
    console.log(
      `\n### Revocation across processes under load\n\n${times.length} logouts on A while B serves the check at full speed (A and B on core 0, the load on core 1; a probe of the session on B every ${PROBE_EVERY_MS} ms): from the logout's start until B refuses every request sent — ${summary6(times)} (${served} probes answered 200 by B during the propagation windows, across all trials${servedAfterRefusal ? `, ${servedAfterRefusal} of them sent after a probe B had refused` : ''}${pollErrors ? `; ${pollErrors} failed probes or logouts, counted` : ''}${notValid.length ? `; ${notValid.length} sessions not valid on B before the logout, skipped (first: ${notValid[0]})` : ''}${unrefused ? `; ${unrefused} still served 5 s after the logout, counted at 5 s` : ''}).\n\nDistribution: ${histogram.replace('100–5000 ms', '> 100 ms')}.\n\nUntil the first refusal was read by the client (B's response time under the load included): ${summary6(readTimes)}.`,
    );
    goal(6, 'revocation A→B p99 ≤ 50 ms under load', `p99 ${fmt(percentile(times, 99))} ms (p50 ${fmt(percentile(times, 50))}, p90 ${fmt(percentile(times, 90))}, max ${fmt(Math.max(...times))}; ${times.length} trials${pollErrors ? `, ${pollErrors} probe errors` : ''}; refusal read: p99 ${fmt(percentile(readTimes, 99))})`, percentile(times, 99) <= 50);
  }
  if (ONLY.has('drivers')) {
    section('drivers');
    if (pgDatabase === null) {
      console.log('\n(PostgreSQL does not answer: the driver comparison is skipped)');
    } else {
      const r = spawnSync(NODE, [join(ROOT, 'bench/pg-drivers.ts'), JSON.stringify({ server: POSTGRES_URL, seconds: QUICK ? Math.min(2, SECONDS) : SECONDS, connections: CONNECTIONS, suite: !QUICK, rounds: QUICK ? 1 : 2 })], {
        encoding: 'utf8',
        cwd: ROOT,
        timeout: 30 * 60 * 1000,
      });
      process.stdout.write(r.stdout);
      if (r.status !== 0) console.log(`(the driver comparison failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')})`);
    }
  }
} finally {
  phaseSection = 'clean-up';
  await stopAll([...children]);
  if (pgDatabase !== null) await pgDatabase.drop().catch(() => undefined);
  // The bench's own Redis goes with its keys; on an external one, the run's prefixes are removed.
  if (ownRedis === null) unlinkPrefixes(REDIS_URL, prefixes);
  await redis.quit();
  await ownRedis?.stop();
  rmSync(dir, { recursive: true, force: true });
}

const ends = [...sectionTimes.slice(1).map(([, t]) => t), performance.now()];
console.log(
  `\n(wall time ${((performance.now() - runStarted) / 1000).toFixed(0)} s: start-up ${(((sectionTimes[0]?.[1] ?? performance.now()) - runStarted) / 1000).toFixed(0)} s, ${sectionTimes.map(([n, t], i) => `${n} ${(((ends[i] as number) - t) / 1000).toFixed(0)} s`).join(', ')}; clean-up included in the last; ${loadRuns} load runs through the long-lived load generator; ${collections.processes} full collections of the run's servers and load generator outside the measured windows, in ${collections.events} goes, ${(collections.ms / 1000).toFixed(1)} s with the wait until they were quiet)`,
);
printPhases();
printGoals(summary);
if (GOALS_OUT) writeFileSync(GOALS_OUT, JSON.stringify({ wallSeconds: (performance.now() - runStarted) / 1000, goals: summary }));
