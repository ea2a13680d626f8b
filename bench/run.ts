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
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

function load(url: string, headers: Record<string, string>): Figures {
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

const rows: Array<{ name: string; f: Figures }> = [];
const dir = mkdtempSync(join(tmpdir(), 'tessera-bench-'));
const run = randomBytes(4).toString('hex');
try {
  for (const [label, store] of [
    ['redis', REDIS_URL],
    ['sqlite', `sqlite:${join(dir, 'bench.db')}`],
  ] as const) {
    const prefix = `bench-tessera-${run}:`;
    const t = await startTessera(store, prefix, dir);
    // Warm-up: the first request fills the session cache.
    await fetch(`${t.url}/api/v1/session`, { headers: { authorization: `Bearer ${t.token}` } });
    rows.push({ name: `tessera token (${label})`, f: load(`${t.url}/api/v1/session`, { authorization: `Bearer ${t.token}` }) });
    rows.push({ name: `tessera cookie (${label})`, f: load(`${t.url}/api/v1/session`, { cookie: t.cookie }) });
    await stop(t.child);
    purge(prefix);
  }
  const peerPrefix = `bench-peer-${run}:`;
  const p = await startPeer(peerPrefix);
  rows.push({ name: '@fastify/session + connect-redis', f: load(`${p.url}/api/v1/session`, { cookie: p.cookie }) });
  await stop(p.child);
  purge(peerPrefix);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const peer = rows[rows.length - 1]!.f;
console.log(`\nGET /api/v1/session, ${CONNECTIONS} connections, ${SECONDS} s each; server on core 0, load on core 1${hasTaskset ? '' : ' (taskset missing: not pinned)'}\n`);
console.log('| server | req/s | p50 ms | p99 ms | non-2xx | vs peer (req/s) |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const { name, f } of rows) {
  console.log(`| ${name} | ${Math.round(f.rps)} | ${f.p50} | ${f.p99} | ${f.non2xx + f.errors} | ${(f.rps / peer.rps).toFixed(2)}× |`);
}
