// Shared by the benchmark scripts that start servers as child processes (bench/run.ts, cpu.ts,
// tail.ts, cpu-latency.ts): a free port, a wait until the server answers (or has exited), the
// pinning to a core, stopping, a prefix's keys removed, a process's CPU from /proc, the bench
// tenant with its user and logins, and a full garbage collection on demand (bench/gc-on-signal.ts).
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/**
 * The environment the bench tools start `tessera start` with: its port, store, Redis prefix and
 * admin token, a cookie signing key (a fresh one unless given), log level `info` (as operators run
 * it; the lines go to /dev/null), and nothing else of the calling shell but PATH.
 */
export function tesseraEnv(o: { port: number; store: string; prefix: string; admin: string; cookieKey?: string }): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    TESSERA_PORT: String(o.port),
    TESSERA_STORE: o.store,
    TESSERA_REDIS_PREFIX: o.prefix,
    TESSERA_ADMIN_TOKEN: o.admin,
    COOKIE_SECRET_SIGN_KEY: o.cookieKey ?? randomBytes(32).toString('base64url'),
    TESSERA_LOG_LEVEL: 'info',
  };
}

/** Whether `taskset` is there to pin processes to a core (without it nothing is pinned). */
export const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

/** `args` (a command and its arguments) as started on `core`: under `taskset -c`, where it is there. */
export function pinned(core: number, args: string[]): [string, string[]] {
  return hasTaskset ? ['taskset', ['-c', String(core), ...args]] : [args[0] as string, args.slice(1)];
}

/** Pins a running process, every thread of it, to `core` (threads it makes later inherit it). */
export function pinNow(pid: number | undefined, core: number): void {
  if (hasTaskset && pid !== undefined) spawnSync('taskset', ['-a', '-p', '-c', String(core), String(pid)], { stdio: 'ignore' });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited. */
export function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), graceMs).unref();
  });
}

/** Removes every key under each of `prefixes` from the Redis at `redisUrl` (SCAN, then UNLINK in batches). */
export function unlinkPrefixes(redisUrl: string, prefixes: Iterable<string>): void {
  for (const p of prefixes) spawnSync('sh', ['-c', `redis-cli -u ${redisUrl} --scan --pattern '${p}*' | xargs -r -n 500 redis-cli -u ${redisUrl} unlink >/dev/null`]);
}

/** `r` when it is 2xx or 409 (already there); otherwise an error with its status and text. */
export async function okOr409(r: Response): Promise<Response> {
  if (!r.ok && r.status !== 409) throw new Error(`${r.url}: ${r.status} ${await r.text()}`);
  return r;
}

/**
 * Makes the `bench` tenant (the integration profile, plus `tenant`'s fields, e.g. its lifetimes)
 * and its user b@example.com through the admin API of the Tessera at `url`; resolves with a login
 * of that user in either mode, which resolves with the header that presents the new session: its
 * bearer token, or its session cookie.
 */
export async function benchTenant(url: string, admin: string, tenant: Record<string, unknown> = {}): Promise<(mode: 'token' | 'cookie') => Promise<Record<string, string>>> {
  const h = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
  await okOr409(await fetch(`${url}/api/v1/admin/tenants/bench`, { method: 'PUT', headers: h, body: JSON.stringify({ profile: 'integration', ...tenant }) }));
  await okOr409(await fetch(`${url}/api/v1/admin/users`, { method: 'POST', headers: h, body: JSON.stringify({ tenantId: 'bench', email: 'b@example.com', password: 'bench password' }) }));
  return async (mode): Promise<Record<string, string>> => {
    const res = await okOr409(
      await fetch(`${url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json', 'x-auth-mode': mode },
        body: JSON.stringify({ email: 'b@example.com', password: 'bench password' }),
      }),
    );
    return mode === 'token'
      ? { authorization: `Bearer ${((await res.json()) as { userSessionToken: string }).userSessionToken}` }
      : { cookie: (res.headers.get('set-cookie') ?? '').split(';')[0] as string };
  };
}

/** Polls `url` every 50 ms until it answers, for at most `attempts` polls. */
export async function waitFor(url: string, child: ChildProcess, attempts = 400): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (child.exitCode !== null) throw new Error(`${url}: server exited ${child.exitCode}`);
    try {
      await fetch(url);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`${url} did not come up`);
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** The fields of /proc/<pid>/stat after the command's name (the first is the state), or null. */
function statFields(pid: number | 'self' | undefined): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) a process has used so far, or NaN where /proc is missing. */
export function cpuSeconds(pid: number | undefined): number {
  const fields = statFields(pid);
  return fields === null ? NaN : (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/**
 * Seconds a process's main thread has spent runnable but waiting for a core so far
 * (/proc/<pid>/task/<pid>/schedstat's second field), or NaN where it is missing.
 */
export function waitSeconds(pid: number | undefined): number {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
  } catch {
    return NaN;
  }
}

/**
 * CPU seconds a process's threads other than its main thread have used so far — V8's helpers
 * (GC, the optimising compilers), libuv's pool — from each /proc/<pid>/task/<tid>/schedstat (nanoseconds);
 * NaN where it is missing. On a server pinned to one core these take that core from the main
 * thread: its wait for a core (waitSeconds) is theirs when no other process is pinned there.
 */
export function helperThreadSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      if (tid === String(pid)) continue;
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // a thread that ended meanwhile (its time is lost with it)
      }
    }
    return ns / 1e9;
  } catch {
    return NaN;
  }
}

/**
 * CPU seconds (user + system) of this process's children that have exited and been waited for
 * (/proc/self/stat's cutime + cstime): a spawnSync'd process is counted once it returns.
 */
export function reapedChildrenCpuSeconds(): number {
  const fields = statFields('self');
  return fields === null ? NaN : (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS;
}

/**
 * Node's flags that give a process the bench's full collection on demand: `gc()` exposed, and the
 * preload bench/gc-on-signal.ts, which runs it on SIGUSR2 and then writes its count to the file
 * named by the process's BENCH_GC_ACK (collectGarbage waits for that). Put before the script.
 */
export const GC_ON_SIGNAL_ARGS: readonly string[] = ['--expose-gc', '--import', new URL('./gc-on-signal.ts', import.meta.url).href];

/**
 * How long collectGarbage waits for one process's answer by default: a mark-compact of a bench
 * server took 30–340 ms of pause on the loaded machine, so 2 s is ample; one that does not answer
 * (no --expose-gc, or stuck) costs a run 2 s, not 10 (a review's finding).
 */
export const COLLECT_TIMEOUT_MS = 2000;

/** The file a process started with GC_ON_SIGNAL_ARGS writes its count of collections to (0 before the first). */
function collectionsDone(ack: string): number {
  try {
    return Number(readFileSync(ack, 'utf8')) || 0;
  } catch {
    return 0;
  }
}

/**
 * One full collection (a mark-compact) in each of `targets`, processes started with
 * GC_ON_SIGNAL_ARGS and BENCH_GC_ACK=`ack`, one process after the other: SIGUSR2, then a wait
 * (synchronous, at most `timeoutMs` of wall time each, 2 s by default) until it has written its next count. One at a time, so
 * that no collection shares its core with another's (V8 sizes the old generation's next limit
 * partly from how fast its mark-compacts ran, in wall time; all at once, each took several times
 * as long: docs/performance.md, "V8's memory reducer and the measured rows"). Processes that have
 * exited are left out. Returns the targets that did not answer in time.
 */
export function collectGarbage(targets: Iterable<{ child: ChildProcess; ack: string }>, timeoutMs = COLLECT_TIMEOUT_MS): Array<{ child: ChildProcess; ack: string }> {
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const missed: Array<{ child: ChildProcess; ack: string }> = [];
  for (const t of targets) {
    if (t.child.exitCode !== null || t.child.signalCode !== null) continue;
    const before = collectionsDone(t.ack);
    if (!t.child.kill('SIGUSR2')) continue;
    const deadline = performance.now() + timeoutMs;
    while (collectionsDone(t.ack) <= before && performance.now() < deadline) Atomics.wait(sleeper, 0, 0, 2);
    if (collectionsDone(t.ack) <= before) missed.push(t);
  }
  return missed;
}
