// node bench/rotation-ab.ts [<other checkout>] — the JavaScript cost of refresh-token rotation
// (POST /api/v1/auth/token/refresh) on Redis inside one process, for comparing two versions of
// the code on a busy machine (as bench/hotpath-ab.ts does for the session check). Each variant is
// a real Tessera app on Redis (its own key prefix, the production logger writing to /dev/null)
// driven through Fastify's `inject`: no HTTP sockets, so what is measured is the route, the
// rotation, the token signing, the store client and the audit pipeline. A slice runs 50 chains
// at once (as the bench's rotation section does), each rotating its own user's refresh token in
// turn, and counts this process's CPU time until the slice's audit events are appended too. The
// variants are interleaved for many rounds and the median slice of each is reported. Redis's own
// CPU is not in these figures. Environment: AB_ROUNDS (default 15), AB_SLICE (rotations per
// slice, default 2000), BENCH_REDIS_URL (default redis://127.0.0.1:6379), AB_PROFILE=<file> and
// AB_HEAP_PROFILE=<file> with AB_HEAP_LIVE as in bench/rotation-direct.ts (the measured rounds).

import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startInProcessTessera, type Injectable } from './inprocess-tessera.ts';
import { closeProfiler, openProfiler } from './inspector.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ROUNDS = Number(process.env.AB_ROUNDS ?? 15);
const SLICE = Number(process.env.AB_SLICE ?? 2000);
const CHAINS = 50;
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const dir = mkdtempSync(join(tmpdir(), 'tessera-rot-ab-'));
const ADMIN = 'ab-admin-token-' + 'x'.repeat(32);
const prefixes: string[] = [];

interface Variant {
  name: string;
  app: Injectable;
  tokens: string[];
  /** Resolves once every event emitted so far is in the audit log. */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

async function tessera(root: string, label: string): Promise<Variant> {
  const cookieSecret = 'ab-cookie-secret-' + 'y'.repeat(32);
  const prefix = `bench-rot-ab-${randomBytes(4).toString('hex')}:`;
  prefixes.push(prefix);
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
  return { name: `tessera rotation ${label}`, app, tokens, flush, stop };
}

async function slice(v: Variant, n: number): Promise<number> {
  const per = Math.ceil(n / CHAINS);
  const c0 = process.cpuUsage();
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
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / (per * CHAINS);
}

const variants: Variant[] = [await tessera(ROOT, '(this)')];
if (process.argv[2]) variants.push(await tessera(resolve(process.argv[2]), '(other)'));
try {
  for (const v of variants) await slice(v, SLICE); // warm-up
  const profiler = await openProfiler();
  if (profiler !== null && !process.env.AB_HEAP_PROFILE) await profiler.post('Profiler.start');
  const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const v of variants) samples.get(v.name)!.push(await slice(v, SLICE));
  }
  await closeProfiler(profiler, async () => (await profiler!.post('Profiler.stop')).profile);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))] as number;
  console.log(`\n# bench/rotation-ab.ts — ${new Date().toISOString()}, Node ${process.version}, ${ROUNDS} rounds × ${SLICE} rotations per variant, ${CHAINS} chains (inject, one process)\n`);
  console.log('| variant | CPU µs/rotation (median) | p25–p75 | rounds in order |');
  console.log('|---|---:|---:|---|');
  // The rounds in order too: a cost that grows with the rotations a process has made (a cache
  // reaching its bound) shows as a trend the median hides.
  for (const [name, xs] of samples) console.log(`| ${name} | ${median(xs).toFixed(1)} | ${q(xs, 0.25).toFixed(1)}–${q(xs, 0.75).toFixed(1)} | ${xs.map((x) => x.toFixed(0)).join(' ')} |`);
} finally {
  for (const v of variants) await v.stop().catch(() => undefined);
  for (const p of prefixes) spawnSync('sh', ['-c', `redis-cli -u ${REDIS_URL} --scan --pattern '${p}*' | xargs -r -n 500 redis-cli -u ${REDIS_URL} unlink >/dev/null`]);
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
