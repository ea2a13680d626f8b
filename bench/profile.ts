// npm run bench:profile — where the session check spends its time. Starts Tessera under
// `--cpu-prof`, drives GET /api/v1/session for BENCH_SECONDS, stops it (SIGTERM: the profile is
// written on exit) and prints the functions with the most self time and the share of time per
// module group, as shares and as µs of CPU per request over the load window only (start-up, log-in
// and warm-up excluded). Environment: PROFILE_STORE (sqlite | redis | hello: the Fastify hello world), PROFILE_MODE (token | cookie | refresh: rotation
// chains instead of the check; sso: one-time SSO tokens exchanged, bench/fill-sso-tokens.ts, Redis only).

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const STORE = process.env.PROFILE_STORE ?? 'sqlite';
const MODE = process.env.PROFILE_MODE ?? 'token';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

const dir = mkdtempSync(join(tmpdir(), 'tessera-profile-'));
const port = 20000 + Math.floor(Math.random() * 20000);
const admin = randomBytes(24).toString('hex');
const prefix = `profile-${randomBytes(4).toString('hex')}:`;
const HELLO = STORE === 'hello';
const cookieKey = randomBytes(32).toString('base64url');
const child = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=250', join(ROOT, HELLO ? 'bench/peer-baselines.ts' : 'src/cli.ts'), ...(HELLO ? [] : ['start'])], {
  cwd: dir,
  env: {
    PORT: String(port),
    PEER: 'hello',
    PATH: process.env.PATH ?? '',
    TESSERA_PORT: String(port),
    TESSERA_STORE: STORE === 'redis' ? REDIS_URL : `sqlite:${join(dir, 'p.db')}`,
    TESSERA_REDIS_PREFIX: prefix,
    TESSERA_ADMIN_TOKEN: admin,
    COOKIE_SECRET_SIGN_KEY: cookieKey,
    TESSERA_LOG_LEVEL: process.env.TESSERA_LOG_LEVEL ?? 'info',
  },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const url = `http://127.0.0.1:${port}`;
/** fetch, once more on a connection the server had just closed (keep-alive race after a slow login). */
async function fetch(u: string, init?: RequestInit): Promise<Response> {
  try {
    return await globalThis.fetch(u, init);
  } catch {
    return globalThis.fetch(u, init);
  }
}
for (let i = 0; ; i++) {
  try { await fetch(`${url}/${HELLO ? 'api/v1/session' : 'healthz'}`); break; } catch { if (i > 200) throw new Error('no start'); await new Promise((r) => setTimeout(r, 50)); }
}
const h = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
let headers: Record<string, string> = {};
if (!HELLO) {
  await fetch(`${url}/api/v1/admin/tenants/bench`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' });
  await fetch(`${url}/api/v1/admin/users`, { method: 'POST', headers: h, body: JSON.stringify({ tenantId: 'bench', email: 'b@example.com', password: 'bench password' }) });
  const login = await fetch(`${url}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json', 'x-auth-mode': MODE === 'cookie' ? 'cookie' : 'token' },
    body: JSON.stringify({ email: 'b@example.com', password: 'bench password' }),
  });
  headers = MODE !== 'cookie'
    ? { authorization: `Bearer ${((await login.json()) as { userSessionToken: string }).userSessionToken}` }
    : { cookie: (login.headers.get('set-cookie') ?? '').split(';')[0] as string };
}
let r;
// Warm-up (JIT, caches), outside the measured window.
spawnSync(process.execPath, [join(ROOT, 'bench/load.ts'), JSON.stringify({ url: `${url}/api/v1/session`, connections: 50, amount: 3000, headers })], { encoding: 'utf8' });
// The samples counted are those between these two instants (both CLOCK_MONOTONIC, as the
// profile's timestamps are), so start-up, log-in and warm-up stay out of the figures.
let windowStart = Number(process.hrtime.bigint() / 1000n);
if (MODE === 'sso') {
  // One-time tokens of SSO logins, each of a user of its own, made by another process (outside
  // the window), then each exchanged once in token mode.
  const tokens = join(dir, 'sso-tokens.txt');
  const fill = spawnSync(process.execPath, [join(ROOT, 'bench/fill-sso-tokens.ts'), JSON.stringify({ store: REDIS_URL, prefix, cookieKey, tenantId: 'bench', count: Number(process.env.PROFILE_SSO_TOKENS ?? 5000), budgetS: 15, out: tokens })], { encoding: 'utf8', cwd: dir });
  if (fill.status !== 0) {
    child.kill('SIGTERM');
    spawnSync('sh', ['-c', `redis-cli -u ${REDIS_URL} --scan --pattern '${prefix}*' | xargs -r -n 500 redis-cli -u ${REDIS_URL} unlink`]);
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`SSO fill failed: ${fill.stderr}`);
  }
  windowStart = Number(process.hrtime.bigint() / 1000n);
  r = spawnSync(process.execPath, [join(ROOT, 'bench/load-sso.ts'), JSON.stringify({ url: `${url}/api/v1/sso/token`, connections: 50, seconds: SECONDS, tokens })], { encoding: 'utf8' });
} else if (MODE === 'refresh') {
  // 50 rotation chains, each its own user's session.
  const tokens: string[] = [];
  for (let i = 0; i < 50; i++) {
    const email = `r${i}@example.com`;
    await fetch(`${url}/api/v1/admin/users`, { method: 'POST', headers: h, body: JSON.stringify({ tenantId: 'bench', email, password: 'bench password' }) });
    const res = await fetch(`${url}/api/v1/auth/login`, { method: 'POST', headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json' }, body: JSON.stringify({ email, password: 'bench password' }) });
    tokens.push(((await res.json()) as { refreshToken: string }).refreshToken);
  }
  r = spawnSync(process.execPath, [join(ROOT, 'bench/load-refresh.ts'), JSON.stringify({ url: `${url}/api/v1/auth/token/refresh`, seconds: SECONDS, tokens })], { encoding: 'utf8' });
} else {
  const opts = JSON.stringify({ url: `${url}/api/v1/session`, connections: 50, duration: SECONDS, headers });
  r = spawnSync(process.execPath, [join(ROOT, 'bench/load.ts'), opts], { encoding: 'utf8' });
}
const windowEnd = Number(process.hrtime.bigint() / 1000n);
console.log(r.stdout.trim());
const requests = (JSON.parse(r.stdout.trim().split('\n').pop() as string) as { requests: number }).requests;
await new Promise<void>((resolve) => { child.once('exit', () => resolve()); child.kill('SIGTERM'); });
if (STORE === 'redis') spawnSync('sh', ['-c', `redis-cli -u ${REDIS_URL} --scan --pattern '${prefix}*' | xargs -r -n 500 redis-cli -u ${REDIS_URL} unlink`]);

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }
// `tessera start` replaces itself once at start (src/config/node-flags.ts), and Node writes the
// first image's profile then: two files, start-up only in the first. The one that ends last is
// the server's whole run.
const profiles = readdirSync(dir)
  .filter((f) => f.endsWith('.cpuprofile'))
  .map((file) => ({ file, ...(JSON.parse(readFileSync(join(dir, file), 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }) }))
  .sort((a, b) => a.endTime - b.endTime);
const raw = profiles.pop();
if (raw === undefined) throw new Error('no profile written');
const file = raw.file;
// Keep the samples taken inside the load window; each stands for the time until the next one.
const prof = { nodes: raw.nodes, samples: [] as number[] };
let usInWindow = 0;
for (let i = 0, t = raw.startTime; i < raw.samples.length; i++) {
  t += raw.timeDeltas[i] ?? 0;
  if (t >= windowStart && t <= windowEnd) {
    prof.samples.push(raw.samples[i] as number);
    usInWindow += raw.timeDeltas[i + 1] ?? 0;
  }
}
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const total = prof.samples.length;
const self = new Map<string, number>();
const groups = new Map<string, number>();
const short = (u: string) => u.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/src\//, 'src/');
const groupOf = (u: string) => {
  if (!u) return '(native/gc/idle)';
  if (u.includes('node_modules/')) return u.replace(/^.*node_modules\/((@[^/]+\/)?[^/]+).*$/, '$1');
  if (u.includes('/src/')) return u.replace(/^.*\/src\/([^/]+).*$/, 'src/$1');
  return u.startsWith('node:') ? 'node core' : u;
};
for (const id of prof.samples) {
  const n = byId.get(id)!;
  const key = `${n.callFrame.functionName || '(anonymous)'} ${short(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + 1);
  const g = groupOf(n.callFrame.url) + (n.callFrame.functionName.startsWith('(') ? ` ${n.callFrame.functionName}` : '');
  groups.set(g, (groups.get(g) ?? 0) + 1);
}
// µs per request: a sample's share of the window's wall time, over the requests served in it.
const us = (c: number) => `${((c / total) * usInWindow / requests).toFixed(1).padStart(6)} µs/req`;
const busy = total - (groups.get('(native/gc/idle) (idle)') ?? 0);
console.log(`\n${STORE} ${MODE}: ${total} samples over ${(usInWindow / 1e6).toFixed(1)} s, ${requests} requests; busy ${us(busy)} (the rest idle)`);
console.log('Self time by module:');
for (const [g, c] of [...groups].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`  ${((100 * c) / total).toFixed(1).padStart(5)} %  ${us(c)}  ${g}`);
console.log('Top functions (self):');
for (const [k, c] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${((100 * c) / total).toFixed(1).padStart(5)} %  ${us(c)}  ${k}`);
// Inclusive time: a sample counts for every distinct function on its stack.
const inclusive = new Map<string, number>();
for (const id of prof.samples) {
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const n = byId.get(cur)!;
    const u = n.callFrame.url;
    if (!u.includes('/src/') && !/pino|fastify\/lib|prom-client|fast-json-stringify|ajv|jose/.test(u)) continue;
    const key = `${n.callFrame.functionName || '(anonymous)'} ${short(u)}:${n.callFrame.lineNumber + 1}`;
    if (seen.has(key)) continue;
    seen.add(key);
    inclusive.set(key, (inclusive.get(key) ?? 0) + 1);
  }
}
console.log('Top functions (inclusive, src/ and selected libraries):');
for (const [k, c] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.PROFILE_TOP ?? 40))) console.log(`  ${((100 * c) / total).toFixed(1).padStart(5)} %  ${us(c)}  ${k}`);
if (process.env.PROFILE_KEEP) console.log(`profile kept in ${join(dir, file)} (window ${windowStart}–${windowEnd} µs)`);
else rmSync(dir, { recursive: true, force: true });
