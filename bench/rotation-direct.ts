// node bench/rotation-direct.ts [<other checkout>] — the CPU of refresh-token rotation *below
// HTTP* on Redis, in one process: `refreshTokenPair` (src/sessions/app-sessions.ts) called
// directly — the rotate call through the store and the Redis client, the successor's and the
// presented token's hashes, the signed userSessionToken, the audit event and its batched append —
// without Fastify, the body parse, the reply's serialisation or the request log (those are the
// route's; bench/rotation-ab.ts measures the whole route by inject). Like rotation-ab.ts: each
// variant is a Tessera runtime of its checkout on Redis (its own key prefix), 50 chains rotate at
// once, each its own user's token in turn, a slice counts this process's CPU until the slice's
// audit events are appended too, the variants are interleaved for many rounds. Redis's own CPU is
// not in these figures. Environment: AB_ROUNDS (default 15), AB_SLICE (rotations per slice,
// default 4000), BENCH_REDIS_URL (default redis://127.0.0.1:6379), AB_THREADS=1 (also print the
// CPU per rotation by thread: the main thread, V8's helpers — GC and compilers), AB_PROFILE=<file>
// (a CPU profile of the measured rounds only, set-up and warm-up left out: node:inspector's
// Profiler, sampling every AB_PROFILE_US µs, default 100; the variants' functions are told apart
// by their checkout's path), AB_HEAP_PROFILE=<file> (a sampling heap profile of the measured
// rounds that keeps the objects garbage collection took too: what a rotation allocates, by the
// function that allocated it; with AB_HEAP_LIVE=1 only what is still alive at the end: what the
// caches keep), AB_ISOLATE=1 (each variant in a worker thread of its own, so in a V8 heap of its
// own: the variants still take turns, slice by slice, but each one's garbage collection is its
// own — in one heap, each variant's slices also pay for the other's garbage and caches; the CPU
// is still the whole process's during the slice, the other variant idle, and a column gives the
// variant's own thread's share: the rest is V8's helper threads, GC and the optimising compiler;
// AB_PROFILE and AB_HEAP_PROFILE sample this thread, so not the variants there).

import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type * as AppSessionsModule from '../src/sessions/app-sessions.ts';
import { benchOrigin, loginChains, startInProcessTessera, type InProcessTessera } from './inprocess-tessera.ts';
import { closeProfiler, openProfiler, threadCpu } from './inspector.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ROUNDS = Number(process.env.AB_ROUNDS ?? 15);
const SLICE = Number(process.env.AB_SLICE ?? 4000);
const CHAINS = 50;
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const dir = mkdtempSync(join(tmpdir(), 'tessera-rot-direct-'));
const ADMIN = 'ab-admin-token-' + 'x'.repeat(32);
const prefixes: string[] = [];

interface Variant {
  name: string;
  t: InProcessTessera;
  refresh: typeof AppSessionsModule.refreshTokenPair;
  tokens: string[];
}

async function tessera(root: string, label: string): Promise<Variant> {
  const cookieSecret = 'ab-cookie-secret-' + 'y'.repeat(32);
  const prefix = `bench-rot-direct-${randomBytes(4).toString('hex')}:`;
  prefixes.push(prefix);
  const t = await startInProcessTessera({ root, redisUrl: REDIS_URL, prefix, cookieSecret, adminToken: ADMIN, dir });
  const { refreshTokenPair } = (await import(join(root, 'src', 'sessions', 'app-sessions.ts'))) as typeof AppSessionsModule;
  const tokens = await loginChains(t, ADMIN, CHAINS, 'rot');
  return { name: `rotation below HTTP ${label}`, t, refresh: refreshTokenPair, tokens };
}

/** This process's read and write system calls so far (/proc/self/io); Linux only. */
function syscalls(): { r: number; w: number } {
  const io = readFileSync('/proc/self/io', 'utf8');
  return { r: Number(/syscr: (\d+)/.exec(io)?.[1]), w: Number(/syscw: (\d+)/.exec(io)?.[1]) };
}

/** A slice's CPU per rotation: the process's, and this thread's own. */
interface SliceCpu {
  cpu: number;
  own: number;
}

async function slice(v: Variant, n: number): Promise<SliceCpu> {
  const per = Math.ceil(n / CHAINS);
  const origins = v.tokens.map((_, i) => benchOrigin(i, 'bench/rotation-direct'));
  const c0 = process.cpuUsage();
  const t0 = process.threadCpuUsage();
  await Promise.all(
    v.tokens.map(async (_, i) => {
      for (let k = 0; k < per; k++) {
        const pair = await v.refresh(v.t.deps, v.tokens[i]!, Date.now(), origins[i]);
        v.tokens[i] = pair.refreshToken;
      }
    }),
  );
  await v.t.flush();
  const c = process.cpuUsage(c0);
  const t = process.threadCpuUsage(t0);
  return { cpu: (c.user + c.system) / (per * CHAINS), own: (t.user + t.system) / (per * CHAINS) };
}

/** A variant as the rounds see it: here, or in a worker thread (AB_ISOLATE=1). */
interface Runner {
  name: string;
  slice(n: number): Promise<SliceCpu>;
  stop(): Promise<void>;
}

const ISOLATE = process.env.AB_ISOLATE === '1';

if (!isMainThread) {
  // One variant in this worker's own heap: set up, warmed up, then a slice per message.
  const { root, label } = workerData as { root: string; label: string };
  const v = await tessera(root, label);
  await slice(v, SLICE);
  parentPort!.on('message', (n: number | 'stop') => {
    if (n === 'stop') {
      void v.t.stop().catch(() => undefined).then(() => {
        cleanUp();
        parentPort!.postMessage('stopped');
      });
      return;
    }
    void slice(v, n).then((r) => parentPort!.postMessage(r));
  });
  parentPort!.postMessage(v.name);
} else {
  await main();
}

function cleanUp(): void {
  for (const p of prefixes) spawnSync('sh', ['-c', `redis-cli -u ${REDIS_URL} --scan --pattern '${p}*' | xargs -r -n 500 redis-cli -u ${REDIS_URL} unlink >/dev/null`]);
  rmSync(dir, { recursive: true, force: true });
}

function localRunner(v: Variant): Runner {
  return { name: v.name, slice: (n) => slice(v, n), stop: () => v.t.stop().catch(() => undefined) };
}

/** A variant in a worker thread of its own, set up and warmed up there. */
async function isolatedRunner(root: string, label: string): Promise<Runner> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { root, label } });
  const next = () =>
    new Promise<unknown>((res, rej) => {
      const onMessage = (m: unknown) => {
        worker.off('error', rej);
        res(m);
      };
      worker.once('message', onMessage);
      worker.once('error', rej);
    });
  const name = (await next()) as string;
  return {
    name,
    slice: (n) => {
      const answer = next() as Promise<SliceCpu>;
      worker.postMessage(n);
      return answer;
    },
    stop: async () => {
      const stopped = next();
      worker.postMessage('stop');
      await stopped;
      await worker.terminate();
    },
  };
}

async function main(): Promise<void> {
  const variants: Runner[] = [];
  if (ISOLATE) {
    variants.push(await isolatedRunner(ROOT, '(this)'));
    if (process.argv[2]) variants.push(await isolatedRunner(resolve(process.argv[2]), '(other)'));
  } else {
    variants.push(localRunner(await tessera(ROOT, '(this)')));
    if (process.argv[2]) variants.push(localRunner(await tessera(resolve(process.argv[2]), '(other)')));
  }
  try {
    if (!ISOLATE) for (const v of variants) await v.slice(SLICE); // warm-up (an isolated variant warms up in its worker)
    const threads0 = process.env.AB_THREADS === '1' ? threadCpu() : null;
    const io0 = syscalls();
    const profiler = await openProfiler();
    if (profiler !== null && !process.env.AB_HEAP_PROFILE) await profiler.post('Profiler.start');
    const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
    const own = new Map<string, number[]>(variants.map((v) => [v.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which variant goes first, so neither always follows the other's garbage.
      const order = round % 2 === 0 ? variants : [...variants].reverse();
      for (const v of order) {
        const r = await v.slice(SLICE);
        samples.get(v.name)!.push(r.cpu);
        own.get(v.name)!.push(r.own);
      }
    }
    await closeProfiler(profiler, async () => (await profiler!.post('Profiler.stop')).profile);
    const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
    const q = (xs: number[], p: number) => sorted(xs)[Math.floor(p * (xs.length - 1))] as number;
    console.log(`\n# bench/rotation-direct.ts — ${new Date().toISOString()}, Node ${process.version}, ${ROUNDS} rounds × ${SLICE} rotations per variant, ${CHAINS} chains (refreshTokenPair called directly, one process)\n`);
    console.log(`| variant | CPU µs/rotation (median) | p25–p75 | rounds in order | ${ISOLATE ? 'its worker thread' : 'this thread'}, median |`);
    console.log('|---|---:|---:|---|---:|');
    for (const [name, xs] of samples) console.log(`| ${name} | ${q(xs, 0.5).toFixed(1)} | ${q(xs, 0.25).toFixed(1)}–${q(xs, 0.75).toFixed(1)} | ${xs.map((x) => x.toFixed(0)).join(' ')} | ${q(own.get(name)!, 0.5).toFixed(1)} |`);
    if (threads0 !== null) {
      const t1 = threadCpu();
      const rotations = ROUNDS * Math.ceil(SLICE / CHAINS) * CHAINS * variants.length;
      const rows = [...t1].map(([n, ms]) => [n, ms - (threads0.get(n) ?? 0)] as const).filter(([, ms]) => ms > 0).sort((a, b) => b[1] - a[1]);
      console.log(`\nCPU by thread over the measured rounds, µs per rotation (all variants): ${rows.map(([n, ms]) => `${n} ${((ms * 1000) / rotations).toFixed(1)}`).join(', ')}`);
      const io1 = syscalls();
      console.log(`read / write system calls per rotation (all variants): ${((io1.r - io0.r) / rotations).toFixed(3)} / ${((io1.w - io0.w) / rotations).toFixed(3)}`);
    }
    if (variants.length === 2) {
      const [a, b] = [...samples.values()] as [number[], number[]];
      const lower = a.filter((x, i) => x < (b[i] as number)).length;
      const diffs = a.map((x, i) => x - (b[i] as number));
      console.log(`\n(this) lower than (other) in ${lower} of ${a.length} rounds; median of the paired differences ${q(diffs, 0.5).toFixed(1)} µs`);
    }
  } finally {
    for (const v of variants) await v.stop();
    cleanUp();
  }
  process.exit(0);
}
