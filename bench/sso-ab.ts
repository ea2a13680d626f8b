// node bench/sso-ab.ts [<other checkout>] — the JavaScript cost of the SSO token exchange
// (POST /api/v1/sso/token, token mode) on Redis inside one process, for comparing two versions of
// the code on a busy machine (as bench/rotation-ab.ts does for rotation). Each variant is a real
// Tessera app on Redis (its own key prefix, the production logger writing to /dev/null) driven
// through Fastify's `inject`: no HTTP sockets, so what is measured is the route, the flow, its
// store calls, the token signing and the audit pipeline. Before each slice, that variant's own
// bench/fill-sso-tokens.ts stores AB_SLICE finished SSO logins in ANOTHER process (as a real
// callback on another server would: this process has not seen their routes), outside the
// measurement; then the slice exchanges each one-time token once, 50 at a time, and counts this
// process's CPU time until the slice's audit events are appended too. Variants are interleaved
// for many rounds and the median slice of each is reported. Redis's own CPU is not in these
// figures. Environment: AB_ROUNDS (default 9), AB_SLICE (exchanges per slice, default 2000),
// BENCH_REDIS_URL (default redis://127.0.0.1:6379), AB_FLOW=1 (call each checkout's
// redeemSsoToken directly instead of the route through inject: the exchange below HTTP — the flow,
// its two store calls, the token signing and the audit pipeline — without Fastify's share),
// AB_PROFILE=<file> (CPU profiles of the measured part of each measured slice — not its fill nor
// the wait that takes in the fill's feed — as a JSON array of profiles, node:inspector's sampler,
// every AB_PROFILE_US µs, default 100),
// AB_HEAP_PROFILE=<file> (a sampling heap profile of the measured rounds, what GC took included;
// with AB_HEAP_LIVE=1 only what is still alive at the end),
// AB_THREADS=1 (also the CPU per exchange by thread over the measured slices: the main thread,
// V8's helpers — GC and compilers —, libuv's pool; Linux, 10 ms ticks), AB_PREFILL=<n> (before
// the warm-up, each variant's session cache is brought where a long-running process's is after
// n sessions: n records remembered, n ended handles, n handles heard on its feed of session
// ends — so that its bounds, 100,000 and 10,000, are full as they are after a day's sign-ins).

import { randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Session } from 'node:inspector/promises';
import type * as RedeemModule from '../src/flows/sso/redeem-token.ts';
import type * as SessionModule from '../src/domain/session.ts';
import { createClient } from 'redis';
import { startInProcessTessera, type Injectable } from './inprocess-tessera.ts';
import { closeProfiler, openProfiler, threadCpu } from './inspector.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ROUNDS = Number(process.env.AB_ROUNDS ?? 9);
const SLICE = Number(process.env.AB_SLICE ?? 2000);
const CONCURRENCY = 50;
const FLOW = process.env.AB_FLOW === '1';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const dir = mkdtempSync(join(tmpdir(), 'tessera-sso-ab-'));
const ADMIN = 'ab-admin-token-' + 'x'.repeat(32);
/** bench/fill-sso-tokens.ts's verifier (bench/load-sso.ts sends it too). */
const VERIFIER = 'bench-verifier-' + 'v'.repeat(40);
const prefixes: string[] = [];

interface Variant {
  name: string;
  root: string;
  prefix: string;
  cookieSecret: string;
  app: Injectable;
  /** One exchange of a token, through the route (inject) or the flow function (AB_FLOW=1). */
  exchange(token: string): Promise<void>;
  flush(): Promise<void>;
  stop(): Promise<void>;
}

async function tessera(root: string, label: string): Promise<Variant> {
  const cookieSecret = randomBytes(32).toString('base64url');
  const prefix = `bench-sso-ab-${randomBytes(4).toString('hex')}:`;
  prefixes.push(prefix);
  const { app, deps, flush, stop } = await startInProcessTessera({ root, redisUrl: REDIS_URL, prefix, cookieSecret, adminToken: ADMIN, dir });
  // Another checkout's flow module: typed as this one's (the same shape).
  const { redeemSsoToken } = (await import(join(root, 'src/flows/sso/redeem-token.ts'))) as typeof RedeemModule;
  const origin = { headers: { requestId: 'ab', correlationId: 'ab', activityId: null, tenantId: null, sessionId: null }, ip: '127.0.0.1', userAgent: null, location: null };
  const exchange = FLOW
    ? async (token: string) => {
        const r = await redeemSsoToken(deps, { token, codeVerifier: VERIFIER, binding: null }, 'token', null, Date.now(), origin);
        if (r.mode !== 'token') throw new Error(`${label}: not a token pair`);
      }
    : async (token: string) => {
        const r = await app.inject({ method: 'POST', url: '/api/v1/sso/token', headers: { 'content-type': 'application/json' }, payload: { token, codeVerifier: VERIFIER } });
        if (r.statusCode !== 200) throw new Error(`${label}: ${r.statusCode} ${r.body}`);
      };
  if (PREFILL > 0) await prefill(root, deps, prefix, PREFILL);
  return { name: `tessera SSO exchange ${label}`, root, prefix, cookieSecret, app, exchange, flush, stop };
}

const PREFILL = Number(process.env.AB_PREFILL ?? 0);

/** AB_PREFILL: `n` sessions remembered, `n` ended, `n` ends heard on the feed (published on the variant's channel). */
async function prefill(root: string, deps: { sessionCache: { remember(s: unknown): void; forget(h: Iterable<string>): void } }, prefix: string, n: number): Promise<void> {
  const { issueSession, DEFAULT_LIFETIMES } = (await import(join(root, 'src/domain/session.ts'))) as typeof SessionModule;
  const now = Date.now();
  const made = () => issueSession({ tenantId: 'bench', userId: 'prefill', kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'oidc', parentHandle: null }, now).session;
  for (let i = 0; i < n; i++) deps.sessionCache.remember(made());
  for (let i = 0; i < n; i++) deps.sessionCache.forget([made().handle]);
  const client = createClient({ url: REDIS_URL });
  await client.connect();
  for (let i = 0; i < n; i += 1000) await client.publish(`${prefix}ends`, Array.from({ length: Math.min(1000, n - i) }, () => made().handle).join(' '));
  await client.quit();
  await new Promise((r) => setTimeout(r, 1000));
}

/** `n` one-time tokens made by another process (that variant's own fill), awaited without blocking this one's event loop. */
async function fill(v: Variant, n: number): Promise<string[]> {
  const out = join(dir, `tokens-${randomBytes(3).toString('hex')}.txt`);
  const child = spawn(process.execPath, [join(v.root, 'bench/fill-sso-tokens.ts'), JSON.stringify({ store: REDIS_URL, prefix: v.prefix, cookieKey: v.cookieSecret, tenantId: 'bench', count: n, budgetS: 40, out })], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  const code = await new Promise<number | null>((res) => child.once('exit', res));
  if (code !== 0) throw new Error(`${v.name}: the fill exited ${code}`);
  // Let this process take in what the fill published (its audit records, on the live feed) before measuring.
  await new Promise((r) => setTimeout(r, 500));
  return readFileSync(out, 'utf8').split('\n').filter(Boolean);
}

const THREADS = process.env.AB_THREADS === '1';
/** AB_THREADS: ms by thread over the measured slices, and how many exchanges they made. */
const byThread = new Map<string, number>();
let measured = 0;
let measuring = false;

/** AB_PROFILE: the sampler, started for each measured slice only (not its fill), and its profiles. */
let cpuProfiler: Session | null = null;
const cpuProfiles: object[] = [];

async function slice(v: Variant, n: number): Promise<number> {
  const tokens = await fill(v, n);
  let next = 0;
  if (cpuProfiler !== null) await cpuProfiler.post('Profiler.start');
  const t0 = THREADS && measuring ? threadCpu() : null;
  const c0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < tokens.length) {
        await v.exchange(tokens[next++] as string);
      }
    }),
  );
  await v.flush();
  const c = process.cpuUsage(c0);
  if (t0 !== null) {
    for (const [name, ms] of threadCpu()) byThread.set(name, (byThread.get(name) ?? 0) + ms - (t0.get(name) ?? 0));
    measured += tokens.length;
  }
  if (cpuProfiler !== null) cpuProfiles.push((await cpuProfiler.post('Profiler.stop')).profile);
  return (c.user + c.system) / tokens.length;
}

const variants: Variant[] = [await tessera(ROOT, '(this)')];
if (process.argv[2]) variants.push(await tessera(resolve(process.argv[2]), '(other)'));
try {
  for (const v of variants) await slice(v, Math.min(SLICE, 1000)); // warm-up
  const profiler = await openProfiler();
  if (profiler !== null && !process.env.AB_HEAP_PROFILE) cpuProfiler = profiler;
  const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  measuring = true;
  for (let round = 0; round < ROUNDS; round++) {
    for (const v of round % 2 === 0 ? variants : [...variants].reverse()) samples.get(v.name)!.push(await slice(v, SLICE));
  }
  await closeProfiler(profiler, () => Promise.resolve(cpuProfiles));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))] as number;
  console.log(`\n# bench/sso-ab.ts — ${new Date().toISOString()}, Node ${process.version}, ${ROUNDS} rounds × ${SLICE} exchanges per variant, ${CONCURRENCY} at a time (${FLOW ? 'the flow function called' : 'inject'}, one process)\n`);
  console.log('| variant | CPU µs/exchange (median) | p25–p75 | rounds |');
  console.log('|---|---:|---:|---|');
  for (const [name, xs] of samples) console.log(`| ${name} | ${median(xs).toFixed(1)} | ${q(xs, 0.25).toFixed(1)}–${q(xs, 0.75).toFixed(1)} | ${xs.map((x) => x.toFixed(0)).join(' / ')} |`);
  if (THREADS) {
    const rows = [...byThread].filter(([, ms]) => ms > 0).sort((a, b) => b[1] - a[1]);
    console.log(`\nCPU by thread over the measured slices, µs per exchange (all variants): ${rows.map(([n, ms]) => `${n} ${((ms * 1000) / measured).toFixed(1)}`).join(', ')}`);
  }
  if (variants.length === 2) {
    const [a, b] = [...samples.values()] as [number[], number[]];
    console.log(`\n(this) lower than (other) in ${a.filter((x, i) => x < (b[i] as number)).length} of ${a.length} rounds`);
  }
} finally {
  for (const v of variants) await v.stop().catch(() => undefined);
  for (const p of prefixes) spawnSync('sh', ['-c', `redis-cli -u ${REDIS_URL} --scan --pattern '${p}*' | xargs -r -n 500 redis-cli -u ${REDIS_URL} unlink >/dev/null`]);
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
