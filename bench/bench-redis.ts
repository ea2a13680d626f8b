// Where `npm run bench` (bench/run.ts) keeps its Redis, and what the load core was doing.
//
// The bench starts a redis-server of its own (a free port, no persistence, stopped at the end)
// pinned to the load core (1), beside the load generator and never on the measured server's core
// (0): Redis's work for a request (the rotation and SSO scripts run ~120–250 µs of it) is then the
// store's cost, not time taken from the server under test — the deployment Tessera is built for
// has its store on another host. BENCH_REDIS_CORE=0|1|none chooses its core (none: unpinned, as
// the shared Redis was); BENCH_REDIS_URL uses that Redis instead, unpinned and shared with
// whatever else uses it (the bench before this file). docs/performance.md, "Where Redis runs".

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { freePort } from './server-process.ts';

/** The bench's own Redis on core 0 or 1, unpinned (null), or an external one (`url`). */
export type RedisPlacement = { kind: 'own'; core: 0 | 1 | null } | { kind: 'external'; url: string };

/** From BENCH_REDIS_URL and BENCH_REDIS_CORE; throws on a core other than 0, 1 or none, or a core given with a URL. */
export function redisPlacement(env: { BENCH_REDIS_URL?: string | undefined; BENCH_REDIS_CORE?: string | undefined }): RedisPlacement {
  const core = env.BENCH_REDIS_CORE?.trim();
  if (env.BENCH_REDIS_URL) {
    if (core) throw new Error('BENCH_REDIS_CORE places the bench\'s own redis-server: it does not apply with BENCH_REDIS_URL');
    return { kind: 'external', url: env.BENCH_REDIS_URL };
  }
  if (core === undefined || core === '' || core === '1') return { kind: 'own', core: 1 };
  if (core === '0') return { kind: 'own', core: 0 };
  if (core === 'none') return { kind: 'own', core: null };
  throw new Error(`BENCH_REDIS_CORE=${core}: expected 0, 1 or none`);
}

/** The run header's words for where Redis runs. */
export function describePlacement(p: RedisPlacement, pinned: boolean, port?: number): string {
  if (p.kind === 'external') return `Redis external (BENCH_REDIS_URL), unpinned and shared: its CPU figures count every client of it`;
  const where = !pinned || p.core === null ? 'unpinned (either core)' : p.core === 1 ? 'on core 1 beside the load' : 'on core 0 WITH the measured server';
  return `Redis: the bench's own redis-server${port ? ` (port ${port})` : ''}, ${where}${p.core !== null && !pinned ? ' — taskset missing' : ''}`;
}

/**
 * How busy the load core was over a run, from the load generator's CPU seconds and Redis's, over
 * the run's wall seconds: Redis counts only where it is pinned to core 1. At ≥ 90 % (`bound`) the
 * load side, not the server, may have set the figure.
 */
export function loadCoreShare(x: { loadCpuS: number; redisCpuS: number; wallS: number; redisOnLoadCore: boolean }): { share: number; bound: boolean } {
  const share = (x.loadCpuS + (x.redisOnLoadCore ? x.redisCpuS : 0)) / x.wallS;
  return { share, bound: share >= 0.9 };
}

export type CommandStats = Map<string, { calls: number; usec: number }>;

/**
 * used_cpu_user + used_cpu_sys, total_commands_processed and the per-command calls and µs from the
 * text of `INFO cpu stats commandstats` (commandstats empty when the section is missing).
 */
export function parseRedisInfo(text: string): { cpuS: number; commands: number; commandstats: CommandStats } {
  const n = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(text)?.[1] ?? NaN);
  const commandstats: CommandStats = new Map();
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) commandstats.set(m[1] as string, { calls: Number(m[2]), usec: Number(m[3]) });
  return { cpuS: n('used_cpu_user') + n('used_cpu_sys'), commands: n('total_commands_processed'), commandstats };
}

/**
 * The `n` commands that took Redis the most time between two `commandstats`, per operation of
 * `ops`: "fcall 1.00/op × 52 µs". A script's (FCALL, EVALSHA) time includes the commands it runs,
 * which are counted under their own names too.
 */
export function topCommands(a: CommandStats, b: CommandStats, ops: number, n = 3): string {
  const rows = [...b]
    .map(([cmd, x]) => ({ cmd, calls: x.calls - (a.get(cmd)?.calls ?? 0), usec: x.usec - (a.get(cmd)?.usec ?? 0) }))
    .filter((r) => r.calls > 0 && r.cmd !== 'info')
    .sort((x, y) => y.usec - x.usec)
    .slice(0, n);
  return rows.map((r) => `${r.cmd} ${(r.calls / Math.max(1, ops)).toFixed(2)}/op × ${(r.usec / r.calls).toFixed(0)} µs`).join(', ');
}

/** Per-core busy and total jiffies from /proc/stat's text (`cpuN` lines; busy = all but idle and iowait). */
export function parseProcStat(text: string): Map<number, { busy: number; total: number }> {
  const out = new Map<number, { busy: number; total: number }>();
  for (const line of text.split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const v = (m[2] as string).trim().split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal (guest, guest_nice are inside user, nice)
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    out.set(Number(m[1]), { busy: total - (v[3] ?? 0) - (v[4] ?? 0), total });
  }
  return out;
}

/** Each core's busy share (every process on it, neighbours included) between two /proc/stat readings. */
export function coreBusy(a: Map<number, { busy: number; total: number }>, b: Map<number, { busy: number; total: number }>): Map<number, number> {
  const out = new Map<number, number>();
  for (const [core, x] of b) {
    const y = a.get(core);
    if (y && x.total > y.total) out.set(core, (x.busy - y.busy) / (x.total - y.total));
  }
  return out;
}

export function readProcStat(): Map<number, { busy: number; total: number }> {
  try {
    return parseProcStat(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return new Map();
  }
}

export interface OwnRedis {
  url: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * A redis-server of the bench's own on a free port (no RDB, no AOF), on `core` when taskset is
 * there (null: unpinned); resolves once it answers PING. Its threads all start under the pinning.
 */
export async function startOwnRedis(core: 0 | 1 | null, hasTaskset: boolean, cwd: string): Promise<OwnRedis> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const args = ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning'];
    const [cmd, argv] = hasTaskset && core !== null ? ['taskset', ['-c', String(core), ...args]] : [args[0] as string, args.slice(1)];
    const child = spawn(cmd, argv, { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
    const stop = () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      });
    for (let i = 0; i < 100 && child.exitCode === null; i++) {
      if (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout?.trim() === 'PONG') return { url: `redis://127.0.0.1:${port}`, port, child, stop };
      await new Promise((r) => setTimeout(r, 50));
    }
    await stop();
    // The port taken between freePort and the listen: another port, twice more.
    if (attempt === 3) throw new Error(`the bench's redis-server did not answer on port ${port}`);
  }
}
