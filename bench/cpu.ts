// npm run bench:cpu — the session check's CPU cost per request, Tessera beside a Fastify hello
// world in the same run. Throughput on a shared machine says more about the neighbours than about
// the server; the CPU time the server process spends per request (user + system, from /proc) over
// a fixed number of requests does not depend on how often it was scheduled, so this is the figure
// to compare while other work runs. Every server is pinned to core 0, the load generator
// (autocannon, a fixed `amount` of requests) to core 1; rounds are interleaved and the median
// round of each scenario is reported with all of them.
// Environment: CPU_REQUESTS (default 20000), CPU_ROUNDS (3), BENCH_CONNECTIONS (50),
// BENCH_REDIS_URL, CPU_ONLY (comma-separated scenario names' substrings, e.g. "hello,sqlite"),
// CPU_REF (another checkout of Tessera, e.g. the main branch's: its servers are measured in the
// same interleaved rounds, rows marked "[ref]" — an A/B comparison of a change on a busy machine;
// hello world first in each round, the others' order reversed every other round),
// CPU_MODE (check | refresh: refresh-token rotation on Redis instead of the check — each round
// logs 50 new users in and rotates their 50 chains CPU_REQUESTS times in all, bench/load-refresh.ts;
// sso: the SSO token exchange on Redis — each round stores CPU_REQUESTS finished SSO logins through
// the server's own checkout's bench/fill-sso-tokens.ts, in another process and before the CPU is
// read, then exchanges each one-time token once, bench/load-sso.ts). In refresh mode the rounds
// also measure goal 2's floor (bench/peer-baselines.ts PEER=rotation-floor: Fastify, the HMACs, one
// Redis command, one Ed25519 signature and nothing else) unless CPU_ONLY leaves it out.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchTenant, freePort, okOr409, waitFor, cpuSeconds, pinned, stopChild, tesseraEnv, unlinkPrefixes } from './server-process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const REQUESTS = Number(process.env.CPU_REQUESTS ?? 20_000);
const ROUNDS = Number(process.env.CPU_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ONLY = process.env.CPU_ONLY?.split(',') ?? null;
const REF = process.env.CPU_REF ?? null;
const MODE = process.env.CPU_MODE ?? 'check';
const NODE = process.execPath;
const run = randomBytes(4).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'tessera-cpu-'));
const children: ChildProcess[] = [];
const prefixes: string[] = [];



interface Server { url: string; pid: number | undefined }

async function startHello(peer = 'hello', without = ''): Promise<Server & { headers: Record<string, string> }> {
  const port = await freePort();
  const prefix = `bench-cpu-${run}-floor-${randomBytes(3).toString('hex')}:`;
  if (peer !== 'hello') prefixes.push(prefix);
  const [cmd, args] = pinned(0, [NODE, join(ROOT, 'bench/peer-baselines.ts')]);
  const child = spawn(cmd, args, { env: { PATH: process.env.PATH ?? '', PORT: String(port), PEER: peer, REDIS_URL, PREFIX: prefix, FLOOR_WITHOUT: without }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/api/v1/session`, child, 600);
  return { url, pid: child.pid, headers: {} };
}

interface Tessera extends Server {
  root: string;
  prefix: string;
  cookieKey: string;
  login(mode: 'token' | 'cookie'): Promise<Record<string, string>>;
  /** Refresh tokens of `n` users created and logged in now (token mode), five at a time. */
  chains(n: number): Promise<string[]>;
}

async function startTessera(store: string, root = ROOT): Promise<Tessera> {
  const port = await freePort();
  const admin = randomBytes(24).toString('hex');
  const prefix = `bench-cpu-${run}-${randomBytes(3).toString('hex')}:`;
  prefixes.push(prefix);
  const cookieKey = randomBytes(32).toString('base64url');
  const [cmd, args] = pinned(0, [NODE, join(root, 'src/cli.ts'), 'start']);
  const child = spawn(cmd, args, {
    cwd: dir,
    env: tesseraEnv({ port, store, prefix, admin, cookieKey }),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/healthz`, child, 600);
  const h = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
  const ok = okOr409;
  const login = await benchTenant(url, admin);
  let users = 0;
  /** fetch, once more on a connection the server closed meanwhile (an idle keep-alive between rounds). */
  const fetchRetry = async (u: string, init?: RequestInit): Promise<Response> => {
    try {
      return await globalThis.fetch(u, init);
    } catch {
      return globalThis.fetch(u, init);
    }
  };
  const chains = async (n: number): Promise<string[]> => {
    const out: string[] = [];
    for (let i = 0; i < n; i += 5) {
      const batch = Array.from({ length: Math.min(5, n - i) }, async () => {
        const email = `r${users++}@example.com`;
        await ok(await fetchRetry(`${url}/api/v1/admin/users`, { method: 'POST', headers: h, body: JSON.stringify({ tenantId: 'bench', email, password: 'bench password' }) }));
        const res = await ok(
          await fetchRetry(`${url}/api/v1/auth/login`, { method: 'POST', headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json' }, body: JSON.stringify({ email, password: 'bench password' }) }),
        );
        return ((await res.json()) as { refreshToken: string }).refreshToken;
      });
      out.push(...(await Promise.all(batch)));
    }
    return out;
  };
  return { url, pid: child.pid, root, prefix, cookieKey, login, chains };
}

interface Row { us: number; p99: number; non2xx: number }

/** The rotation floor's chains: `n` refresh tokens from its POST /login. */
async function floorChains(url: string, n: number): Promise<string[]> {
  return Promise.all(Array.from({ length: n }, async () => ((await (await okOr409(await globalThis.fetch(`${url}/login`, { method: 'POST' }))).json()) as { refreshToken: string }).refreshToken));
}

async function measureRotation(t: Pick<Tessera, 'url' | 'pid' | 'chains'>, amount: number): Promise<Row> {
  const tokens = await t.chains(CONNECTIONS);
  const c0 = cpuSeconds(t.pid);
  const [cmd, args] = pinned(1, [NODE, join(ROOT, 'bench/load-refresh.ts'), JSON.stringify({ url: `${t.url}/api/v1/auth/token/refresh`, seconds: 600, tokens, amount })]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 700_000 });
  if (r.status !== 0) throw new Error(`load generator failed: ${r.stderr}`);
  if (r.stderr.trim() !== '') console.log(`(load-refresh: ${r.stderr.trim()})`);
  const f = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { requests: number; p99: number; non2xx: number; errors: number };
  return { us: ((cpuSeconds(t.pid) - c0) * 1e6) / Math.max(1, f.requests), p99: f.p99, non2xx: f.non2xx + f.errors };
}

/**
 * One round of SSO token exchanges: `amount` finished SSO logins (each of a user of its own) stored
 * by another process (not counted), then each one-time token exchanged once in token mode; CPU
 * per exchange of the server process only.
 */
function measureSso(t: Tessera, amount: number): Row {
  const out = join(dir, `sso-${randomBytes(3).toString('hex')}.txt`);
  const fill = spawnSync(NODE, [join(t.root, 'bench/fill-sso-tokens.ts'), JSON.stringify({ store: REDIS_URL, prefix: t.prefix, cookieKey: t.cookieKey, tenantId: 'bench', count: amount, budgetS: 30, out })], { encoding: 'utf8', cwd: dir, timeout: 120_000 });
  if (fill.status !== 0) throw new Error(`SSO fill failed: ${fill.stderr}`);
  const filled = readFileSync(out, 'utf8').split('\n').filter(Boolean).length;
  const c0 = cpuSeconds(t.pid);
  const [cmd, args] = pinned(1, [NODE, join(ROOT, 'bench/load-sso.ts'), JSON.stringify({ url: `${t.url}/api/v1/sso/token`, connections: CONNECTIONS, seconds: 600, tokens: out })]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 700_000 });
  if (r.status !== 0) throw new Error(`load generator failed: ${r.stderr}`);
  if (r.stderr.trim() !== '') console.log(`(load-sso: ${r.stderr.trim()})`);
  const f = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { requests: number; p99: number; non2xx: number; errors: number };
  if (f.requests !== filled) console.log(`(sso: ${filled} tokens stored, ${f.requests} exchanged)`);
  return { us: ((cpuSeconds(t.pid) - c0) * 1e6) / Math.max(1, f.requests), p99: f.p99, non2xx: f.non2xx + f.errors };
}

function measureOnce(s: Server, headers: Record<string, string>): Row {
  const c0 = cpuSeconds(s.pid);
  const [cmd, args] = pinned(1, [NODE, join(ROOT, 'bench/load.ts'), JSON.stringify({ url: `${s.url}/api/v1/session`, connections: CONNECTIONS, amount: REQUESTS, headers })]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`load generator failed: ${r.stderr}`);
  const f = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { requests: number; p99: number; non2xx: number; errors: number };
  return { us: ((cpuSeconds(s.pid) - c0) * 1e6) / Math.max(1, f.requests), p99: f.p99, non2xx: f.non2xx + f.errors };
}

try {
  const hello = await startHello();
  const scenarios: [string, Server, Record<string, string>][] = [['fastify hello world', hello, hello.headers]];
  const rotations = new Map<string, Pick<Tessera, 'url' | 'pid' | 'chains'>>();
  const exchanges = new Map<string, Tessera>();
  const want = (name: string) => ONLY === null || ONLY.some((o) => name.includes(o));
  // CPU_FLOOR_VARIANTS: more floor rows, each a FLOOR_WITHOUT value (e.g. "redis;sign;redis,sign").
  const floorVariants = ['', ...(process.env.CPU_FLOOR_VARIANTS?.split(';').filter(Boolean) ?? [])];
  for (const without of MODE === 'refresh' && want('rotation floor') ? floorVariants : []) {
    const floor = await startHello('rotation-floor', without);
    const name = `rotation floor (fastify, one Redis RENAME, Ed25519)${without === '' ? '' : ` without ${without}`}`;
    rotations.set(name, { url: floor.url, pid: floor.pid, chains: (n) => floorChains(floor.url, n) });
    scenarios.push([name, floor, {}]);
  }
  for (const [root, mark] of REF === null ? [[ROOT, '']] : [[ROOT, ''], [REF, ' [ref]']]) {
    if (MODE === 'sso') {
      const t = await startTessera(REDIS_URL, root);
      const name = `tessera SSO exchange (redis)${mark}`;
      exchanges.set(name, t);
      scenarios.push([name, t, {}]);
      continue;
    }
    if (MODE === 'refresh') {
      const t = await startTessera(REDIS_URL, root);
      const name = `tessera rotation (redis)${mark}`;
      rotations.set(name, t);
      scenarios.push([name, t, {}]);
      continue;
    }
    for (const [label, spec] of [['sqlite', `sqlite:${join(dir, `cpu${mark ? '-ref' : ''}.db`)}`], ['redis', REDIS_URL]] as const) {
      if (!['token', 'cookie'].some((m) => want(`tessera ${m} (${label})`))) continue;
      const t = await startTessera(spec, root);
      for (const mode of ['token', 'cookie'] as const) {
        const name = `tessera ${mode} (${label})${mark}`;
        if (want(`tessera ${mode} (${label})`)) scenarios.push([name, t, await t.login(mode)]);
      }
    }
  }
  // Warm every server up (JIT, caches) before the first measured round.
  for (const [name, s, headers] of scenarios) {
    const t = rotations.get(name);
    if (t !== undefined) {
      await measureRotation(t, Math.min(5000, REQUESTS));
      continue;
    }
    const x = exchanges.get(name);
    if (x !== undefined) {
      measureSso(x, Math.min(3000, REQUESTS));
      continue;
    }
    const [cmd, args] = pinned(1, [NODE, join(ROOT, 'bench/load.ts'), JSON.stringify({ url: `${s.url}/api/v1/session`, connections: CONNECTIONS, amount: Math.min(5000, REQUESTS), headers })]);
    spawnSync(cmd, args, { encoding: 'utf8', timeout: 600_000 });
  }
  const rows = new Map<string, Row[]>();
  for (let round = 0; round < ROUNDS; round++) {
    // Hello world first in every round; the others in turn reversed every other round (ABBA…),
    // so that no variant is always the one measured right after another (CPU_REF's A/B).
    const order = round % 2 === 0 ? scenarios : [scenarios[0] as (typeof scenarios)[number], ...scenarios.slice(1).reverse()];
    for (const [name, s, headers] of order) {
      const t = rotations.get(name);
      const x = exchanges.get(name);
      rows.set(name, [...(rows.get(name) ?? []), t !== undefined ? await measureRotation(t, REQUESTS) : x !== undefined ? measureSso(x, REQUESTS) : measureOnce(s, headers)]);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const helloUs = median(rows.get('fastify hello world')!.map((r) => r.us));
  console.log(`\n# npm run bench:cpu — ${new Date().toISOString()}, Node ${process.version}, ${REQUESTS} requests × ${ROUNDS} round(s), ${CONNECTIONS} connections\n`);
  console.log('| server | CPU µs/req (median) | rounds | hello CPU / CPU | p99 ms (rounds) | non-2xx |');
  console.log('|---|---:|---|---:|---|---:|');
  for (const [name, rs] of rows) {
    const us = median(rs.map((r) => r.us));
    console.log(
      `| ${name} | ${us.toFixed(1)} | ${rs.map((r) => r.us.toFixed(0)).join(' / ')} | ${(helloUs / us).toFixed(2)}× | ${rs.map((r) => r.p99).join(' / ')} | ${rs.reduce((a, r) => a + r.non2xx, 0)} |`,
    );
  }
  for (const [name, rs] of rows) {
    const ref = rows.get(`${name} [ref]`);
    if (ref === undefined) continue;
    const d = rs.map((r, i) => r.us - (ref[i] as Row).us);
    console.log(`${name}: lower than [ref] in ${d.filter((x) => x < 0).length} of ${d.length} rounds, paired median difference ${median(d) > 0 ? '+' : ''}${median(d).toFixed(1)} µs`);
  }
} finally {
  await Promise.all(children.map((c) => stopChild(c)));
  unlinkPrefixes(REDIS_URL, prefixes);
  rmSync(dir, { recursive: true, force: true });
}
