// node --min-semi-space-size=16 bench/cookie-tail.ts — what the session check does per request in
// token mode and in cookie mode, on the same server (issue 13, goal 1's cookie tail). Wall-clock
// latency on a shared machine is the neighbours' figure; these are not: per store, one Tessera in
// this process listens on a port (the production logger writing to /dev/null), a load generator
// (bench/load.ts, autocannon, a fixed number of requests over BENCH_CONNECTIONS connections) in its
// own process sends GET /api/v1/session with one login's bearer token or cookie, and while it runs
// this process counts what its server did: store calls by method (a counting wrapper around the
// store), events emitted by type, Set-Cookie headers sent, event-loop turns that held a 1 ms timer
// more than 1 ms / 3 ms late, collections by kind, the CPU this process used and the bytes it
// allocated (v8.GCProfiler), all per request. Rounds alternate token and cookie. A tenant with a
// short idle lifetime (CT_APP_IDLE seconds; the sliding write is then due every idle/20 s) makes
// the cookie session's sliding idle expiry come round inside a bounded run, as it does every
// 45 s (the default 900 s idle) in a benchmark's longer life.
// Environment: CT_STORES (sqlite,postgres,redis), CT_REQUESTS (20000 per round), CT_ROUNDS (3),
// CT_APP_IDLE (900: the default tenant's), BENCH_CONNECTIONS (50), BENCH_REDIS_URL, BENCH_POSTGRES_URL,
// CT_REF (another checkout, e.g. the main branch's sources: its servers are measured beside this
// checkout's in the same alternated rounds, rows marked [ref] — an A/B of a change on a busy machine).

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import { checkoutModules } from './inprocess-tessera.ts';
import { createBenchDatabase } from './pg-database.ts';
import { benchTenant, unlinkPrefixes } from './server-process.ts';

const HERE = fileURLToPath(new URL('..', import.meta.url));
/** The checkouts whose sources are measured, each with its own server per store, in the same alternated rounds. */
const ROOTS = [HERE, ...(process.env.CT_REF ? [resolve(process.env.CT_REF)] : [])];
const STORES = (process.env.CT_STORES ?? 'sqlite,postgres,redis').split(',');
const REQUESTS = Number(process.env.CT_REQUESTS ?? 20_000);
const ROUNDS = Number(process.env.CT_ROUNDS ?? 3);
const APP_IDLE = Number(process.env.CT_APP_IDLE ?? 900);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const run = randomBytes(4).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'tessera-cookie-tail-'));
const ADMIN = 'ct-admin-token-' + 'x'.repeat(32);

// --- what this process does while the load runs ---------------------------------------------
const gcKinds: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
};
let gcCounts: Record<string, number> = {};
let gcMs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = gcKinds[(e as unknown as { detail?: { kind?: number } }).detail?.kind ?? -1] ?? 'other';
    gcCounts[kind] = (gcCounts[kind] ?? 0) + 1;
    gcMs += e.duration;
  }
}).observe({ entryTypes: ['gc'] });

/** Event-loop turns that held a 1 ms interval late by more than 1 ms / 3 ms, and the thread's CPU in them. */
let stalls1 = 0;
let stalls3 = 0;
let stallBusyMs = 0;
{
  let expected = performance.now() + 1;
  let cpu0 = process.threadCpuUsage();
  setInterval(() => {
    const t = performance.now();
    const cpu = process.threadCpuUsage();
    const late = t - expected;
    if (late > 1) {
      stalls1 += 1;
      stallBusyMs += (cpu.user - cpu0.user + cpu.system - cpu0.system) / 1000 - 1;
    }
    if (late > 3) stalls3 += 1;
    expected = t + 1;
    cpu0 = cpu;
  }, 1).unref();
}

/**
 * The store with every method call counted (by name) in `storeCalls`, `this` kept, and the
 * longest synchronous part of a call of each method in `storeSyncMs` (on SQLite that is all of
 * its work: node:sqlite runs on the event loop). Its audit log (`store.audit`) too, as `audit.*`.
 */
function counted<T extends object>(store: T, storeCalls: Map<string, number>, storeSyncMs: Map<string, number>, prefix = ''): T {
  return new Proxy(store, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver) as unknown;
      if (key === 'audit' && prefix === '' && typeof v === 'object' && v !== null) return counted(v, storeCalls, storeSyncMs, 'audit.');
      if (typeof v !== 'function' || typeof key !== 'string') return v;
      const name = prefix + key;
      return function (this: unknown, ...args: unknown[]) {
        storeCalls.set(name, (storeCalls.get(name) ?? 0) + 1);
        const t0 = performance.now();
        try {
          return (v as (...a: unknown[]) => unknown).apply(this === receiver ? target : this, args);
        } finally {
          const ms = performance.now() - t0;
          if (ms > (storeSyncMs.get(name) ?? 0)) storeSyncMs.set(name, ms);
        }
      };
    },
  });
}

interface Sample {
  requests: number;
  cpuUs: number;
  allocB: number;
  gc: Record<string, number>;
  gcMs: number;
  stalls1: number;
  stalls3: number;
  stallBusyMs: number;
  calls: Record<string, number>;
  /** The longest synchronous part of one call, per method called (ms). */
  syncMs: Record<string, number>;
  events: Record<string, number>;
  setCookies: number;
  non2xx: number;
  errors: number;
  p99: number;
}

function load(url: string, headers: Record<string, string>): Promise<{ requests: number; non2xx: number; errors: number; p99: number }> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [join(HERE, 'bench/load.ts'), JSON.stringify({ url, connections: CONNECTIONS, amount: REQUESTS, headers })], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', rej);
    child.on('exit', () => {
      try {
        res(JSON.parse(out.trim().split('\n').pop() ?? '') as { requests: number; non2xx: number; errors: number; p99: number });
      } catch (err) {
        rej(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

interface Server {
  url: string;
  storeCalls: Map<string, number>;
  storeSyncMs: Map<string, number>;
  events: Map<string, number>;
  setCookies: { n: number };
  login(mode: 'token' | 'cookie'): Promise<Record<string, string>>;
  stop(): Promise<void>;
}

async function startServer(root: string, storeUrl: string, prefix: string): Promise<Server> {
  const { loadConfig, createLogger, createRuntime, buildApp, openStore, hashSecret } = await checkoutModules(root);
  const cookieSecret = randomBytes(32).toString('base64url');
  const config = loadConfig(
    { TESSERA_STORE: storeUrl, TESSERA_REDIS_PREFIX: prefix, COOKIE_SECRET_SIGN_KEY: cookieSecret, TESSERA_ADMIN_TOKEN: ADMIN, TESSERA_LOG_LEVEL: 'info' },
    dir,
  );
  const storeCalls = new Map<string, number>();
  const storeSyncMs = new Map<string, number>();
  const store = counted(await openStore(config), storeCalls, storeSyncMs);
  const runtime = await createRuntime({ ...config, cookieSecret }, store, { now: () => Date.now() }, { adminTokenHash: hashSecret(ADMIN) });
  await runtime.start();
  const events = new Map<string, number>();
  runtime.deps.bus.subscribe((e) => events.set(e.type, (events.get(e.type) ?? 0) + 1));
  const app = await buildApp(runtime.deps, { logger: createLogger(config, '/dev/null') });
  const setCookies = { n: 0 };
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  // Counted as the head is written (Fastify passes its headers to writeHead; the same small cost in both modes).
  app.server.on('request', (_req, res) => {
    const writeHead = res.writeHead.bind(res) as (...a: unknown[]) => typeof res;
    res.writeHead = (...args: unknown[]) => {
      const headers = args.find((a): a is Record<string, unknown> => typeof a === 'object' && a !== null);
      if (res.hasHeader('set-cookie') || (headers !== undefined && Object.keys(headers).some((k) => k.toLowerCase() === 'set-cookie'))) setCookies.n += 1;
      return writeHead(...args);
    };
  });
  const login = await benchTenant(address, ADMIN, { lifetimes: { appIdle: APP_IDLE } });
  return {
    url: address,
    storeCalls,
    storeSyncMs,
    events,
    setCookies,
    login,
    stop: async () => {
      await app.close();
      await runtime.stop();
    },
  };
}

async function measure(s: Server, headers: Record<string, string>): Promise<Sample> {
  const calls0 = new Map(s.storeCalls);
  s.storeSyncMs.clear();
  const events0 = new Map(s.events);
  const cookies0 = s.setCookies.n;
  gcCounts = {};
  gcMs = 0;
  stalls1 = stalls3 = 0;
  stallBusyMs = 0;
  const profiler = new v8.GCProfiler();
  const used0 = v8.getHeapStatistics().used_heap_size;
  profiler.start();
  const cpu0 = process.cpuUsage();
  const r = await load(`${s.url}/api/v1/session`, headers);
  const cpu = process.cpuUsage(cpu0);
  const used1 = v8.getHeapStatistics().used_heap_size;
  const stats = (profiler.stop() as unknown as { statistics: { beforeGC: { heapStatistics: { usedHeapSize: number } }; afterGC: { heapStatistics: { usedHeapSize: number } } }[] }).statistics;
  let last = used0;
  let alloc = 0;
  for (const g of stats) {
    alloc += g.beforeGC.heapStatistics.usedHeapSize - last;
    last = g.afterGC.heapStatistics.usedHeapSize;
  }
  alloc += used1 - last;
  const diff = (now: Map<string, number>, then: Map<string, number>) =>
    Object.fromEntries([...now].map(([k, v]) => [k, v - (then.get(k) ?? 0)] as const).filter(([, v]) => v !== 0));
  return {
    requests: r.requests,
    cpuUs: (cpu.user + cpu.system) / r.requests,
    allocB: alloc / r.requests,
    gc: { ...gcCounts },
    gcMs,
    stalls1,
    stalls3,
    stallBusyMs,
    calls: diff(s.storeCalls, calls0),
    syncMs: Object.fromEntries(s.storeSyncMs),
    events: diff(s.events, events0),
    setCookies: s.setCookies.n - cookies0,
    non2xx: r.non2xx,
    errors: r.errors,
    p99: r.p99,
  };
}

const per10k = (n: number, requests: number) => ((n * 10_000) / requests).toFixed(1);
function line(store: string, mode: string, round: number, x: Sample): string {
  const calls = Object.entries(x.calls).map(([k, v]) => `${k} ${v}${(x.syncMs[k] ?? 0) >= 0.1 ? ` (≤ ${(x.syncMs[k] as number).toFixed(1)} ms)` : ''}`).join(', ') || '-';
  const events = Object.entries(x.events).map(([k, v]) => `${k} ${v}`).join(', ') || '-';
  const gcs = Object.entries(x.gc).map(([k, v]) => `${k} ${per10k(v, x.requests)}`).join(', ');
  return `| ${store} | ${mode} | ${round} | ${x.requests} | ${x.cpuUs.toFixed(1)} | ${Math.round(x.allocB)} | ${gcs} (${x.gcMs.toFixed(1)} ms) | ${per10k(x.stalls1, x.requests)} / ${per10k(x.stalls3, x.requests)} (busy ${x.stallBusyMs.toFixed(0)} ms) | ${calls} | ${events} | ${x.setCookies} | ${x.non2xx + x.errors} | ${x.p99} |`;
}


console.log(`sources: ${ROOTS.join(' and [ref] ')}; ${REQUESTS} requests per round, ${CONNECTIONS} connections, tenant appIdle ${APP_IDLE} s; ${new Date().toISOString()}`);
console.log('| store | mode | round | requests | CPU µs/req | bytes/req | GCs per 10,000 (total ms) | loop stalls > 1 / > 3 ms per 10,000 | store calls | events | Set-Cookie | non-2xx+errors | p99 ms (loaded) |');
console.log('|---|---|---|---:|---:|---:|---|---|---|---|---:|---:|---:|');
const cleanups: (() => Promise<void>)[] = [];
try {
  for (const store of STORES) {
    const servers: { name: string; s: Server; creds: Record<'token' | 'cookie', Record<string, string>> }[] = [];
    try {
      for (const [i, root] of ROOTS.entries()) {
        let url: string;
        let prefix = `ct-${run}-${store}-${i}:`;
        if (store === 'sqlite') url = `sqlite:${join(dir, `${store}-${i}.db`)}`;
        else if (store === 'redis') url = REDIS_URL;
        else {
          const db = await createBenchDatabase(POSTGRES_URL, `tessera_cookie_tail_${run}_${i}`);
          cleanups.push(() => db.drop());
          url = db.url;
          prefix = '';
        }
        if (store === 'redis') {
          const own = prefix;
          cleanups.push(async () => unlinkPrefixes(REDIS_URL, [own]));
        }
        const s = await startServer(root, url, prefix);
        servers.push({ name: `${store}${i > 0 ? ' [ref]' : ''}`, s, creds: { token: await s.login('token'), cookie: await s.login('cookie') } });
      }
      // Warm-up: one round of each, not reported.
      for (const { s, creds } of servers) for (const mode of ['token', 'cookie'] as const) await measure(s, creds[mode]);
      for (let round = 1; round <= ROUNDS; round++) {
        const order = round % 2 === 1 ? servers : [...servers].reverse();
        for (const { name, s, creds } of order) {
          for (const mode of round % 2 === 1 ? (['token', 'cookie'] as const) : (['cookie', 'token'] as const)) {
            console.log(line(name, mode, round, await measure(s, creds[mode])));
          }
        }
      }
    } finally {
      for (const { s } of servers) await s.stop();
    }
  }
} finally {
  for (const c of cleanups) await c().catch((err: unknown) => console.error(`clean-up: ${(err as Error).message}`));
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
