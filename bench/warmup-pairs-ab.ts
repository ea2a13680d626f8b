// Does warming two servers up at once, on both cores, leave them as warm as bench/run.ts's `warmUp`,
// one at a time on core 0? (A way tried on 2026-12-08 to shorten the quick run, not landed:
// docs/performance.md, "The quick run's wall time, 2026-12-08 session".) Per round two fresh Tessera servers on one Redis, a
// token and a cookie login on each, the same requests of warm-up either way — sequential: each
// server pinned to core 0, A token, B token, A cookie, B cookie in turn; paired: both on cores 0–1,
// (A token ∥ B token), then (A cookie ∥ B cookie), both pinned back to core 0 — then, as in the
// bench, both collected, and the four rows measured one after the other (3 s each, every server on
// core 0, the load on core 1): the server's CPU µs per request of each row. The variants alternate
// round by round (sequential first).
//
// node bench/warmup-pairs-ab.ts [rounds=8]   (AB_REDIS: the Redis URL, default redis://127.0.0.1:6379;
// AB_WARMUP: requests per row of warm-up, default 40,000; AB_SECONDS: seconds per measured row, 3)

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SEMI_SPACE_MB } from '../src/config/config.ts';
import { startFlags } from '../src/config/node-flags.ts';
import { benchTenant, collectGarbage, cpuSeconds, freePort, GC_ON_SIGNAL_ARGS, pinned, pinNow, stopChild, tesseraEnv, unlinkPrefixes, waitFor } from './server-process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ROUNDS = Number(process.argv[2] ?? 8);
const REDIS = process.env.AB_REDIS ?? 'redis://127.0.0.1:6379';
const WARMUP = Number(process.env.AB_WARMUP ?? 40_000);
const SECONDS = Number(process.env.AB_SECONDS ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'warmup-pairs-ab-'));

interface Server {
  child: ChildProcess;
  url: string;
  ack: string;
  prefix: string;
  rows: Array<[mode: 'token' | 'cookie', headers: Record<string, string>]>;
}

async function start(): Promise<Server> {
  const port = await freePort();
  const admin = randomBytes(24).toString('hex');
  const prefix = `warmup-ab-${randomBytes(4).toString('hex')}:`;
  const ack = join(dir, `${port}.ack`);
  const child = spawn(process.execPath, [...startFlags(DEFAULT_SEMI_SPACE_MB, []), ...GC_ON_SIGNAL_ARGS, join(ROOT, 'src/cli.ts'), 'start'], {
    cwd: dir,
    env: { ...tesseraEnv({ port, store: REDIS, prefix, admin }), BENCH_GC_ACK: ack },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/healthz`, child);
  pinNow(child.pid, 0);
  const login = await benchTenant(url, admin);
  return { child, url, ack, prefix, rows: [['token', await login('token')], ['cookie', await login('cookie')]] };
}

/** One load run from the load core (bench/load.ts): its figures. */
function load(url: string, headers: Record<string, string>, o: { amount?: number; duration?: number }): Promise<{ requests: number }> {
  const [cmd, args] = pinned(1, [process.execPath, join(ROOT, 'bench/load.ts'), JSON.stringify({ url: `${url}/api/v1/session`, connections: 50, headers, ...o })]);
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    c.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop() as string) as { requests: number }) : reject(new Error(`load exited ${code}`))));
  });
}

/** Until both servers use at most 5 ms of CPU per 100 ms, twice in a row. */
async function quiet(servers: Server[]): Promise<void> {
  const cpu = () => servers.reduce((t, s) => t + cpuSeconds(s.child.pid), 0);
  let [last, calm] = [cpu(), 0];
  for (let i = 0; i < 50 && calm < 2; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = cpu();
    calm = now - last > 0.01 ? 0 : calm + 1;
    last = now;
  }
}

async function round(variant: 'sequential' | 'paired'): Promise<number[]> {
  const servers = [await start(), await start()];
  const [a, b] = servers as [Server, Server];
  try {
    if (variant === 'sequential') {
      for (const i of [0, 1]) for (const s of [a, b]) await load(s.url, s.rows[i]![1], { amount: WARMUP });
    } else {
      for (const s of servers) spawnSync('taskset', ['-a', '-p', '-c', '0,1', String(s.child.pid)], { stdio: 'ignore' });
      for (const i of [0, 1]) await Promise.all([a, b].map((s) => load(s.url, s.rows[i]![1], { amount: WARMUP })));
      for (const s of servers) pinNow(s.child.pid, 0);
    }
    await quiet(servers);
    collectGarbage(servers.map((s) => ({ child: s.child, ack: s.ack })));
    await quiet(servers);
    const out: number[] = [];
    for (const i of [0, 1]) {
      for (const s of [a, b]) {
        const c0 = cpuSeconds(s.child.pid);
        const f = await load(s.url, s.rows[i]![1], { duration: SECONDS });
        out.push(((cpuSeconds(s.child.pid) - c0) * 1e6) / Math.max(1, f.requests));
        await quiet(servers);
      }
    }
    return out;
  } finally {
    await Promise.all(servers.map((s) => stopChild(s.child)));
    unlinkPrefixes(REDIS, servers.map((s) => s.prefix));
  }
}

console.log(`| round | variant | A token | B token | A cookie | B cookie | mean |\n|---|---|---:|---:|---:|---:|---:|`);
try {
  for (let r = 0; r < ROUNDS; r++) {
    const variant = r % 2 === 0 ? 'sequential' : 'paired';
    const us = await round(variant);
    console.log(`| ${r + 1} | ${variant} | ${us.map((x) => x.toFixed(1)).join(' | ')} | ${(us.reduce((t, x) => t + x, 0) / us.length).toFixed(1)} |`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
