// node bench/slide-burst.ts — how long a cookie session's sliding write holds a browser's parallel
// requests (docs/performance.md "Cookie mode's tail"). Per checkout (this one, and CT_REF's
// sources beside it: an A/B) and store, one Tessera in this process on its own PostgreSQL
// database (or SQLite file, or Redis prefix), served through Fastify's inject, with a clock that
// can be moved on. Each burst sends BURST_SIZE parallel GET /api/v1/session with one cookie; before
// every other burst the clock moves 46 s on, so that the slide (every min(60 s, idle/20) = 45 s
// with the default 900 s idle) is due for that burst, and the bursts between are the same
// requests without a slide. Printed per variant: the wall time from the first request sent to
// the last answer, median and max over the bursts, with and without the slide, and the store
// writes (`touchSession`) and `session.extended` events per slide burst.
// Environment: BURSTS (20 of each kind), BURST_SIZE (50), CT_STORES (postgres), CT_REF,
// BENCH_POSTGRES_URL, BENCH_REDIS_URL.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { checkoutModules } from './inprocess-tessera.ts';
import { createBenchDatabase } from './pg-database.ts';
import { unlinkPrefixes } from './server-process.ts';

const HERE = fileURLToPath(new URL('..', import.meta.url));
const ROOTS = [HERE, ...(process.env.CT_REF ? [resolve(process.env.CT_REF)] : [])];
const BURSTS = Number(process.env.BURSTS ?? 20);
const SIZE = Number(process.env.BURST_SIZE ?? 50);
const STORES = (process.env.CT_STORES ?? 'postgres').split(',');
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ADMIN = 'sb-admin-token-' + 'x'.repeat(32);
const run = randomBytes(4).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'tessera-slide-burst-'));

interface Injected {
  statusCode: number;
  headers: Record<string, unknown>;
  json(): unknown;
}
interface Variant {
  name: string;
  inject(opts: { method?: string; url: string; headers?: Record<string, string>; payload?: unknown }): Promise<Injected>;
  offset: { ms: number };
  writes: { n: number };
  extended: { n: number };
  stop(): Promise<void>;
}


async function start(root: string, store: string, tag: string, cleanups: (() => Promise<void>)[]): Promise<Variant> {
  const { loadConfig, createLogger, createRuntime, buildApp, openStore, hashSecret } = await checkoutModules(root);
  let url: string;
  const prefix = `sb-${run}-${tag}:`;
  if (store === 'postgres') {
    const db = await createBenchDatabase(POSTGRES_URL, `tessera_slide_burst_${run}_${tag}`);
    cleanups.push(() => db.drop());
    url = db.url;
  } else if (store === 'redis') {
    url = REDIS_URL;
    cleanups.push(async () => unlinkPrefixes(REDIS_URL, [prefix]));
  } else url = `sqlite:${join(dir, `${tag}.db`)}`;
  const cookieSecret = randomBytes(32).toString('base64url');
  const config = loadConfig(
    { TESSERA_STORE: url, TESSERA_REDIS_PREFIX: prefix, COOKIE_SECRET_SIGN_KEY: cookieSecret, TESSERA_ADMIN_TOKEN: ADMIN, TESSERA_LOG_LEVEL: 'info', TESSERA_SWEEP_INTERVAL_MS: '3600000' },
    dir,
  );
  const opened = await openStore(config);
  const writes = { n: 0 };
  const touch = opened.touchSession.bind(opened);
  opened.touchSession = (...args: Parameters<typeof touch>) => {
    writes.n += 1;
    return touch(...args);
  };
  const offset = { ms: 0 };
  const runtime = await createRuntime({ ...config, cookieSecret }, opened, { now: () => Date.now() + offset.ms }, { adminTokenHash: hashSecret(ADMIN) });
  await runtime.start();
  const extended = { n: 0 };
  runtime.deps.bus.subscribe((e) => {
    if (e.type === 'session.extended') extended.n += 1;
  });
  const app = (await buildApp(runtime.deps, { logger: createLogger(config, '/dev/null') })) as unknown as Pick<Variant, 'inject'>;
  const h = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
  await app.inject({ method: 'PUT', url: '/api/v1/admin/tenants/bench', headers: h, payload: { profile: 'integration' } });
  await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: h, payload: { tenantId: 'bench', email: 'b@example.com', password: 'bench password' } });
  return {
    name: `${store}${root === HERE ? '' : ' [ref]'}`,
    inject: (o) => app.inject(o),
    offset,
    writes,
    extended,
    stop: () => runtime.stop(),
  };
}

async function cookieOf(v: Variant): Promise<string> {
  const r = await v.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json', 'x-auth-mode': 'cookie' },
    payload: { email: 'b@example.com', password: 'bench password' },
  });
  const set = r.headers['set-cookie'];
  return String(Array.isArray(set) ? set[0] : set).split(';')[0] as string;
}

/** Wall ms from the first of SIZE parallel checks to the last answer. */
async function burst(v: Variant, cookie: string): Promise<number> {
  const t0 = performance.now();
  const answers = await Promise.all(Array.from({ length: SIZE }, () => v.inject({ url: '/api/v1/session', headers: { cookie } })));
  const ms = performance.now() - t0;
  if (answers.some((a) => a.statusCode !== 200)) throw new Error(`${v.name}: ${answers.find((a) => a.statusCode !== 200)?.statusCode}`);
  return ms;
}

const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
console.log(`${BURSTS} bursts of ${SIZE} parallel checks with a slide due, ${BURSTS} without, alternated; ${new Date().toISOString()}`);
console.log('| variant | with the slide: median / max ms | without: median / max ms | touchSession per slide burst | session.extended per slide burst |');
console.log('|---|---:|---:|---:|---:|');
const cleanups: (() => Promise<void>)[] = [];
try {
  for (const store of STORES) {
    const variants = await Promise.all(ROOTS.map((root, i) => start(root, store, String(i), cleanups)));
    const cookies = await Promise.all(variants.map(cookieOf));
    const slid = variants.map(() => [] as number[]);
    const plain = variants.map(() => [] as number[]);
    // Warm-up.
    for (const [i, v] of variants.entries()) for (let k = 0; k < 5; k++) await burst(v, cookies[i] as string);
    const w0 = variants.map((v) => v.writes.n);
    const e0 = variants.map((v) => v.extended.n);
    for (let b = 0; b < BURSTS; b++) {
      for (const [i, v] of b % 2 === 0 ? variants.entries() : [...variants.entries()].reverse()) {
        v.offset.ms += 46_000;
        (slid[i] as number[]).push(await burst(v, cookies[i] as string));
        (plain[i] as number[]).push(await burst(v, cookies[i] as string));
      }
    }
    for (const [i, v] of variants.entries()) {
      const s = slid[i] as number[];
      const p = plain[i] as number[];
      console.log(
        `| ${v.name} | ${med(s).toFixed(1)} / ${Math.max(...s).toFixed(1)} | ${med(p).toFixed(1)} / ${Math.max(...p).toFixed(1)} | ${((v.writes.n - (w0[i] as number)) / BURSTS).toFixed(1)} | ${((v.extended.n - (e0[i] as number)) / BURSTS).toFixed(1)} |`,
      );
    }
    for (const v of variants) await v.stop();
  }
} finally {
  for (const c of cleanups) await c().catch((err: unknown) => console.error(`clean-up: ${(err as Error).message}`));
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
