// node bench/hotpath-ab.ts [<other checkout>] — the JavaScript cost of the session check inside
// one process, for comparing two versions of the code on a busy machine. Each variant is a real
// Tessera app (SQLite in memory, the production logger writing to /dev/null) driven through
// Fastify's `inject` — no sockets, so what is measured is the request pipeline itself: hooks,
// authentication, the session view, serialisation, metrics, the request line. Variants are
// interleaved in short slices for many rounds and the median slice of each is reported, so drift
// in the neighbours' load falls on all of them alike. With a path argument, the Tessera of that
// checkout (e.g. `git worktree add` of main) is measured beside this one: an A/B of a change.
// A Fastify hello world through `inject` is the floor (inject's own overhead is in every row).
// Environment: AB_ROUNDS (default 40), AB_SLICE (requests per slice, default 2000).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import type * as RuntimeModule from '../src/runtime.ts';
import { checkoutModules } from './inprocess-tessera.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ROUNDS = Number(process.env.AB_ROUNDS ?? 40);
const SLICE = Number(process.env.AB_SLICE ?? 2000);
const dir = mkdtempSync(join(tmpdir(), 'tessera-ab-'));
const ADMIN = 'ab-admin-token-' + 'x'.repeat(32);

interface Injectable {
  inject(opts: { method: string; url: string; headers?: Record<string, string>; payload?: unknown }): Promise<{ statusCode: number; body: string; headers: Record<string, unknown>; json(): unknown }>;
}
type Variant = { name: string; app: Injectable; headers: Record<string, string> };

async function tessera(root: string, label: string): Promise<Variant[]> {
  const { loadConfig, createLogger, createRuntime, buildApp, openStore, hashSecret } = await checkoutModules(root);
  const cookieSecret = 'ab-cookie-secret-' + 'y'.repeat(32);
  const config = loadConfig({
    TESSERA_STORE: `sqlite:${join(dir, `${label.replace(/\W/g, '')}.db`)}`,
    COOKIE_SECRET_SIGN_KEY: cookieSecret,
    TESSERA_ADMIN_TOKEN: ADMIN,
    TESSERA_LOG_LEVEL: 'info',
    // No sweep or bank round during the measurement.
    TESSERA_SWEEP_INTERVAL_MS: '3600000',
  }, dir);
  const store = await openStore(config);
  const made = await createRuntime({ ...config, cookieSecret }, store, { now: () => Date.now() }, { adminTokenHash: hashSecret(ADMIN) });
  // createRuntime returns { deps, start, stop }, started here so that the session cache serves from
  // memory as in a server; an older checkout's returned the deps themselves, already subscribed.
  const runtime = made as Partial<RuntimeModule.Runtime>;
  if (runtime.start) await runtime.start();
  const deps = runtime.deps ?? (made as unknown as RuntimeModule.Deps);
  // The production logger, its lines going to /dev/null instead of stdout.
  const log = createLogger(config, '/dev/null');
  const app = (await buildApp(deps, { logger: log })) as unknown as Injectable;
  const h = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
  await app.inject({ method: 'PUT', url: '/api/v1/admin/tenants/bench', headers: h, payload: { profile: 'integration' } });
  await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: h, payload: { tenantId: 'bench', email: 'b@example.com', password: 'bench password' } });
  const login = async (mode: 'token' | 'cookie'): Promise<Record<string, string>> => {
    const r = await app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json', 'x-auth-mode': mode },
      payload: { email: 'b@example.com', password: 'bench password' },
    });
    if (r.statusCode !== 200) throw new Error(`login ${r.statusCode} ${r.body}`);
    if (mode === 'token') return { authorization: `Bearer ${(r.json() as { userSessionToken: string }).userSessionToken}` };
    const c = r.headers['set-cookie'];
    return { cookie: String(Array.isArray(c) ? c.find((x: string) => x.includes('sid=')) : c).split(';')[0] as string };
  };
  return [
    { name: `tessera token ${label}`, app, headers: await login('token') },
    { name: `tessera cookie ${label}`, app, headers: await login('cookie') },
  ];
}

const hello = Fastify({ logger: false });
hello.get('/api/v1/session', async () => ({ hello: 'world' }));
await hello.ready();

const variants: Variant[] = [{ name: 'fastify hello world', app: hello, headers: {} }];
variants.push(...(await tessera(ROOT, '(this)')));
if (process.argv[2]) variants.push(...(await tessera(resolve(process.argv[2]), '(other)')));

async function slice(v: Variant, n: number): Promise<number> {
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const r = await v.app.inject({ method: 'GET', url: '/api/v1/session', headers: v.headers });
    if (r.statusCode !== 200) throw new Error(`${v.name}: ${r.statusCode} ${r.body}`);
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

for (const v of variants) await slice(v, SLICE * 2); // warm-up
const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const v of variants) samples.get(v.name)!.push(await slice(v, SLICE));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))] as number;
const helloUs = median(samples.get('fastify hello world')!);
console.log(`\n# bench/hotpath-ab.ts — ${new Date().toISOString()}, Node ${process.version}, ${ROUNDS} rounds × ${SLICE} requests per variant (inject, one process)\n`);
console.log('| variant | CPU µs/req (median) | p25–p75 | above hello (µs) |');
console.log('|---|---:|---:|---:|');
for (const [name, xs] of samples) {
  const m = median(xs);
  console.log(`| ${name} | ${m.toFixed(1)} | ${q(xs, 0.25).toFixed(1)}–${q(xs, 0.75).toFixed(1)} | ${(m - helloUs).toFixed(1)} |`);
}
rmSync(dir, { recursive: true, force: true });
process.exit(0);
