// npm run bench — Tessera and its peer measured in the same run on the same machine: each server
// alone on core 0, the load generator on core 1. Prints a table and the ratios.
//
// Scenario: an authenticated read (GET /api/v1/session) — the request every API call pays for.
//   tessera token  bearer userSessionToken, verified locally, session state from the local cache
//   tessera cookie __Host-sid cookie, session read from the store by its secret hash
//   peer           @fastify/session + connect-redis: the session cookie, one Redis GET per request
//
// Environment: BENCH_SECONDS (default 10), BENCH_CONNECTIONS (default 50), BENCH_REDIS_URL.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const NODE = process.execPath;
const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

function pinned(core: number, args: string[]): [string, string[]] {
  return hasTaskset ? ['taskset', ['-c', String(core), ...args]] : [args[0] as string, args.slice(1)];
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function waitFor(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
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

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}

interface Figures {
  /** Redis commands the server sent per request during the run (from INFO stats). */
  redisPerRequest?: number;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

function redisCommands(): number {
  const r = spawnSync('redis-cli', ['-u', REDIS_URL, 'INFO', 'stats'], { encoding: 'utf8' });
  const m = /total_commands_processed:(\d+)/.exec(r.stdout ?? '');
  return m ? Number(m[1]) : NaN;
}

function load(url: string, headers: Record<string, string>): Figures {
  const before = redisCommands();
  const figures = loadOnly(url, headers);
  // The INFO call itself counts one command.
  figures.redisPerRequest = (redisCommands() - before - 1) / Math.max(1, figures.requests);
  return figures;
}

function loadOnly(url: string, headers: Record<string, string>): Figures {
  const opts = JSON.stringify({ url, connections: CONNECTIONS, duration: SECONDS, headers });
  const [cmd, args] = pinned(1, [NODE, join(ROOT, 'bench/load.ts'), opts]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: (SECONDS + 30) * 1000 });
  if (r.status !== 0) throw new Error(`load generator failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as Figures;
}

async function startTessera(store: string, prefix: string, dir: string) {
  const port = await freePort();
  const admin = randomBytes(24).toString('hex');
  const [cmd, args] = pinned(0, [NODE, join(ROOT, 'src/cli.ts'), 'start']);
  const child = spawn(cmd, args, {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      TESSERA_PORT: String(port),
      TESSERA_STORE: store,
      TESSERA_REDIS_PREFIX: prefix,
      TESSERA_ADMIN_TOKEN: admin,
      COOKIE_SECRET_SIGN_KEY: randomBytes(32).toString('base64url'),
      TESSERA_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/healthz`, child);
  const h = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
  await fetch(`${url}/api/v1/admin/tenants/bench`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' });
  await fetch(`${url}/api/v1/admin/users`, {
    method: 'POST',
    headers: h,
    body: JSON.stringify({ tenantId: 'bench', email: 'bench@example.com', password: 'bench password' }),
  });
  const login = (mode: string) =>
    fetch(`${url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json', 'x-auth-mode': mode },
      body: JSON.stringify({ email: 'bench@example.com', password: 'bench password' }),
    });
  const token = ((await (await login('token')).json()) as { userSessionToken: string }).userSessionToken;
  const cookieRes = await login('cookie');
  const cookie = (cookieRes.headers.get('set-cookie') ?? '').split(';')[0] as string;
  return { child, url, token, cookie };
}

async function startPeer(prefix: string) {
  const port = await freePort();
  const [cmd, args] = pinned(0, [NODE, join(ROOT, 'bench/peer-fastify-session.ts')]);
  const child = spawn(cmd, args, { env: { PATH: process.env.PATH ?? '', PORT: String(port), PREFIX: prefix, REDIS_URL }, stdio: ['ignore', 'ignore', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/api/v1/session`, child);
  const res = await fetch(`${url}/login`, { method: 'POST' });
  const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0] as string;
  return { child, url, cookie };
}

function purge(prefix: string): void {
  spawnSync('sh', ['-c', `redis-cli -u ${REDIS_URL} --scan --pattern '${prefix}*' | xargs -r -n 500 redis-cli -u ${REDIS_URL} unlink`]);
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'tessera-bench-'));
const run = randomBytes(4).toString('hex');
const tPrefix = `bench-tessera-${run}:`;
const pPrefix = `bench-peer-${run}:`;
const children: ChildProcess[] = [];
const samples = new Map<string, Figures[]>();
try {
  // All servers are started first (idle ones cost nothing), then the scenarios are measured in
  // interleaved rounds, so that drift on a shared machine spreads over all of them alike.
  const tr = await startTessera(REDIS_URL, tPrefix, dir);
  const ts = await startTessera(`sqlite:${join(dir, 'bench.db')}`, tPrefix, dir);
  const p = await startPeer(pPrefix);
  children.push(tr.child, ts.child, p.child);
  const scenarios: Array<[string, string, Record<string, string>]> = [
    ['tessera token (redis)', tr.url, { authorization: `Bearer ${tr.token}` }],
    ['tessera cookie (redis)', tr.url, { cookie: tr.cookie }],
    ['tessera token (sqlite)', ts.url, { authorization: `Bearer ${ts.token}` }],
    ['tessera cookie (sqlite)', ts.url, { cookie: ts.cookie }],
    ['@fastify/session + connect-redis', p.url, { cookie: p.cookie }],
  ];
  // Warm-up: the first request fills each session cache.
  for (const [, url, headers] of scenarios) await fetch(`${url}/api/v1/session`, { headers });
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, url, headers] of scenarios) {
      const f = load(`${url}/api/v1/session`, headers);
      samples.set(name, [...(samples.get(name) ?? []), f]);
    }
  }
} finally {
  await Promise.all(children.map(stop));
  purge(tPrefix);
  purge(pPrefix);
  rmSync(dir, { recursive: true, force: true });
}

/** The round with the median throughput stands for the scenario. */
function median(fs: Figures[]): Figures {
  return [...fs].sort((a, b) => a.rps - b.rps)[Math.floor(fs.length / 2)] as Figures;
}
const rows = [...samples].map(([name, fs]) => ({ name, f: median(fs), all: fs.map((x) => Math.round(x.rps)) }));
const peer = rows[rows.length - 1]!.f;
console.log(
  `\nGET /api/v1/session, ${CONNECTIONS} connections, ${SECONDS} s per run, median of ${ROUNDS} interleaved rounds; server on core 0, load on core 1${hasTaskset ? '' : ' (taskset missing: not pinned)'}\n`,
);
console.log('| server | req/s (median) | runs req/s | p50 ms | p99 ms | non-2xx | Redis commands per request | vs peer (req/s) |');
console.log('|---|---:|---|---:|---:|---:|---:|---:|');
for (const { name, f, all } of rows) {
  const perReq = f.redisPerRequest === undefined || Number.isNaN(f.redisPerRequest) ? 'n/a' : f.redisPerRequest.toFixed(3);
  console.log(
    `| ${name} | ${Math.round(f.rps)} | ${all.join(' / ')} | ${f.p50} | ${f.p99} | ${f.non2xx + f.errors} | ${perReq} | ${(f.rps / peer.rps).toFixed(2)}× |`,
  );
}
