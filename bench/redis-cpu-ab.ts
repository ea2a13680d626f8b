// node bench/redis-cpu-ab.ts <redis url of a server of your own> [<other checkout>] — REDIS's CPU
// per refresh-token rotation and per SSO token exchange, for comparing the Lua (scripts or
// functions) of two versions of the code. Each variant is a real Tessera app in this process
// (bench/inprocess-tessera.ts, its own key prefix) driven through Fastify's `inject`. Per round
// and variant: the exchange's one-time tokens are made first by that variant's own
// bench/fill-sso-tokens.ts in another process; then, with nothing else talking to the server,
// Redis's CPU (`INFO cpu`, used_cpu_user + used_cpu_sys) and `INFO commandstats` are read before
// and after AB_SLICE rotations (50 chains) and, separately, AB_SLICE exchanges (50 at a time),
// each slice's audit events appended too. Rounds alternate the variants; the medians are printed,
// with the calls per operation and µs per call (wall time: read it on a quiet machine only) of
// each command Redis ran, those run inside scripts included. The server must be used by nothing
// else (start one: redis-server --port <free> --save '' --appendonly no --daemonize yes).
// Environment: AB_ROUNDS (default 5), AB_SLICE (default 2000).

import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import { startInProcessTessera, type Injectable } from './inprocess-tessera.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const REDIS_URL = process.argv[2] ?? '';
if (!REDIS_URL) throw new Error('usage: node bench/redis-cpu-ab.ts <redis url> [<other checkout>]');
const ROUNDS = Number(process.env.AB_ROUNDS ?? 5);
const SLICE = Number(process.env.AB_SLICE ?? 2000);
const CHAINS = 50;
const dir = mkdtempSync(join(tmpdir(), 'tessera-redis-cpu-ab-'));
const ADMIN = 'ab-admin-token-' + 'x'.repeat(32);
const VERIFIER = 'bench-verifier-' + 'v'.repeat(40);

const admin = createClient({ url: REDIS_URL, RESP: 2 });
await admin.connect();

interface Variant {
  name: string;
  root: string;
  prefix: string;
  cookieSecret: string;
  app: Injectable;
  tokens: string[];
  flush(): Promise<void>;
  stop(): Promise<void>;
}

async function tessera(root: string, label: string): Promise<Variant> {
  const cookieSecret = randomBytes(32).toString('base64url');
  const prefix = `bench-rcpu-${randomBytes(4).toString('hex')}:`;
  const { app, flush, stop } = await startInProcessTessera({ root, redisUrl: REDIS_URL, prefix, cookieSecret, adminToken: ADMIN, dir });
  const h = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
  const tokens: string[] = [];
  for (let i = 0; i < CHAINS; i++) {
    const email = `rot${i}@example.com`;
    await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: h, payload: { tenantId: 'bench', email, password: 'bench password' } });
    const r = await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json' }, payload: { email, password: 'bench password' } });
    if (r.statusCode !== 200) throw new Error(`login ${r.statusCode} ${r.body}`);
    tokens.push((r.json() as { refreshToken: string }).refreshToken);
  }
  return { name: label, root, prefix, cookieSecret, app, tokens, flush, stop };
}

interface Stats {
  cpu: number;
  user: number;
  cmds: Map<string, { calls: number; usec: number }>;
}

async function stats(): Promise<Stats> {
  const cpuInfo = await admin.sendCommand<string>(['INFO', 'cpu']);
  const num = (k: string) => Number(new RegExp(`^${k}:([0-9.]+)`, 'm').exec(cpuInfo)?.[1] ?? 0);
  const cs = await admin.sendCommand<string>(['INFO', 'commandstats']);
  const cmds = new Map<string, { calls: number; usec: number }>();
  for (const m of cs.matchAll(/^cmdstat_([a-z_|]+):calls=(\d+),usec=(\d+)/gm)) cmds.set(m[1] as string, { calls: Number(m[2]), usec: Number(m[3]) });
  return { cpu: (num('used_cpu_user') + num('used_cpu_sys')) * 1e6, user: num('used_cpu_user') * 1e6, cmds };
}

/** Redis CPU µs per operation over `run`, and µs per call of the script commands sent. */
async function measure(run: () => Promise<number>): Promise<{ perOp: number; userPerOp: number; scripts: string }> {
  const a = await stats();
  const n = await run();
  const b = await stats();
  const parts: string[] = [];
  for (const [name, s] of b.cmds) {
    if (name === 'info') continue;
    const before = a.cmds.get(name) ?? { calls: 0, usec: 0 };
    const calls = s.calls - before.calls;
    if (calls / n >= 0.01) parts.push(`${name} ${(calls / n).toFixed(2)}/op ${((s.usec - before.usec) / calls).toFixed(1)} µs`);
  }
  return { perOp: (b.cpu - a.cpu) / n, userPerOp: (b.user - a.user) / n, scripts: parts.join(', ') };
}

async function rotations(v: Variant): Promise<number> {
  const per = Math.ceil(SLICE / CHAINS);
  await Promise.all(
    v.tokens.map(async (_, i) => {
      for (let k = 0; k < per; k++) {
        const r = await v.app.inject({ method: 'POST', url: '/api/v1/auth/token/refresh', headers: { 'content-type': 'application/json' }, payload: { refreshToken: v.tokens[i] } });
        if (r.statusCode !== 200) throw new Error(`${v.name}: ${r.statusCode} ${r.body}`);
        v.tokens[i] = (r.json() as { refreshToken: string }).refreshToken;
      }
    }),
  );
  await v.flush();
  return per * CHAINS;
}

async function fill(v: Variant, n: number): Promise<string[]> {
  const out = join(dir, `tokens-${randomBytes(3).toString('hex')}.txt`);
  const child = spawn(process.execPath, [join(v.root, 'bench/fill-sso-tokens.ts'), JSON.stringify({ store: REDIS_URL, prefix: v.prefix, cookieKey: v.cookieSecret, tenantId: 'bench', count: n, budgetS: 40, out })], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  const code = await new Promise<number | null>((res) => child.once('exit', res));
  if (code !== 0) throw new Error(`${v.name}: the fill exited ${code}`);
  await new Promise((r) => setTimeout(r, 500));
  return readFileSync(out, 'utf8').split('\n').filter(Boolean);
}

async function exchanges(v: Variant, tokens: string[]): Promise<number> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (next < tokens.length) {
        const token = tokens[next++] as string;
        const r = await v.app.inject({ method: 'POST', url: '/api/v1/sso/token', headers: { 'content-type': 'application/json' }, payload: { token, codeVerifier: VERIFIER } });
        if (r.statusCode !== 200) throw new Error(`${v.name}: ${r.statusCode} ${r.body}`);
      }
    }),
  );
  await v.flush();
  return tokens.length;
}

const variants: Variant[] = [await tessera(ROOT, 'this')];
if (process.argv[3]) variants.push(await tessera(resolve(process.argv[3]), 'other'));
const rows: Array<{ round: number; variant: string; what: string; perOp: number; userPerOp: number; scripts: string }> = [];
try {
  for (const v of variants) {
    await rotations(v); // warm-up
    await exchanges(v, await fill(v, Math.min(SLICE, 1000)));
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
      const rot = await measure(() => rotations(v));
      rows.push({ round, variant: v.name, what: 'rotation', ...rot });
      const tokens = await fill(v, SLICE);
      const ex = await measure(() => exchanges(v, tokens));
      rows.push({ round, variant: v.name, what: 'exchange', ...ex });
      console.log(`round ${round} ${v.name}: rotation ${rot.perOp.toFixed(1)} µs (user ${rot.userPerOp.toFixed(1)}; ${rot.scripts}); exchange ${ex.perOp.toFixed(1)} µs (user ${ex.userPerOp.toFixed(1)}; ${ex.scripts})`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  console.log(`\n# bench/redis-cpu-ab.ts — ${new Date().toISOString()}, ${ROUNDS} rounds × ${SLICE} per slice\n`);
  console.log('| variant | Redis CPU µs/rotation (median; rounds) | of which user | Redis CPU µs/exchange (median; rounds) | of which user |');
  console.log('|---|---:|---:|---:|---:|');
  for (const v of variants) {
    const of = (what: string, k: 'perOp' | 'userPerOp') => rows.filter((r) => r.variant === v.name && r.what === what).map((r) => r[k]);
    const fmt = (xs: number[]) => `${median(xs).toFixed(1)} (${xs.map((x) => x.toFixed(0)).join(' / ')})`;
    console.log(`| ${v.name} | ${fmt(of('rotation', 'perOp'))} | ${median(of('rotation', 'userPerOp')).toFixed(1)} | ${fmt(of('exchange', 'perOp'))} | ${median(of('exchange', 'userPerOp')).toFixed(1)} |`);
  }
} finally {
  for (const v of variants) await v.stop().catch(() => undefined);
  for (const v of variants) {
    for await (const keys of admin.scanIterator({ MATCH: `${v.prefix}*`, COUNT: 1000 })) if (keys.length > 0) await admin.unlink(keys);
  }
  await admin.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
