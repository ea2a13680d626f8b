// node bench/lean-resp-ab.ts <redis url> — what a lean pipelined client for the hot call
// (bench/lean-resp.ts) would save against node-redis, on a redis-server of your own (the rounds
// rotate refresh tokens and leave route keys; the bench deletes its keys at the end).
//
// AB_MODE=fcall (default): the rotate Function's FCALL alone, with the arguments refresh-tokens.ts
// sends (50 chains, each rotating its own session's token in turn, a user record in the slot), through
// Tessera's connection (connection.ts: node-redis, the command's Deadlines) against the same
// Deadlines around the lean client, one lean client per write policy (AB_VARIANTS, default
// "node-redis,turn,idle,k8,micro"; lean-resp.ts says what each does). Each variant's reply is
// checked ('rotated', the packed record and the user as Buffers). The variants hot-task and hot-turn:
// Tessera's own lean connection (src/store/redis/hot-connection.ts, through connection.ts's
// sendHot and its Deadlines) with that write policy.
// AB_MODE=rotation: refresh-token rotation below HTTP (`refreshTokenPair`, as rotation-direct.ts),
// one in-process Tessera, with node-redis's `sendCommand` sending FCALL through the variant's lean
// client (every other command, and FCALL in the node-redis variant, through node-redis as
// always): what the rotation as a whole would save. AB_COUNT=1: at the end, the commands node-redis
// still sent in that mode, by name (the audit append, the feed's PUBLISH, the set-up's).
//
// Per slice (AB_SLICE calls, default 4000, 50 chains in a closed loop): this process's CPU per call
// (process.cpuUsage), calls per second (wall), the event loop's utilisation
// (performance.eventLoopUtilization), write system calls per call (/proc/self/io) and redis-server's
// CPU per call (INFO cpu: give the bench a redis-server of its own). AB_HOP=1:
// each call starts in an event-loop task of its own (setImmediate), as a request read from a socket
// does: 'micro' then writes once per call, 'turn' once per turn. The variants
// alternate in AB_ROUNDS rounds (default 11; the order turns each round); medians, and "lower
// than node-redis in k of n rounds". AB_HEAP=1: instead, the bytes allocated per call, by
// node:inspector's sampling heap profiler (objects garbage collection took included), around each
// variant's slices. AB_PROFILE=1: instead, node:inspector's CPU sampler (AB_PROFILE_US µs, default
// 100) around each variant's slices: self time per call by where the code is (node-redis, the
// lean client, connection.ts, Node's streams and sockets, the garbage collector, the rest) and the
// variant's ten functions with the most (wall-clock samples: on a loaded machine a preempted call
// collects the wait too).

import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Session as Inspector } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { hashSecret, newHandle, newSecret, tagOfHandle } from '../src/domain/secrets.ts';
import type { Session } from '../src/domain/session.ts';
import { refreshTokenPair } from '../src/sessions/app-sessions.ts';
import { Deadlines, openConnection, type RedisConnection } from '../src/store/redis/connection.ts';
import type { HotWrites } from '../src/store/redis/hot-connection.ts';
import { RedisKeys } from '../src/store/redis/keys.ts';
import { packedHash } from '../src/store/redis/lua-codec.ts';
import { ROTATE } from '../src/store/redis/refresh-scripts.ts';
import { openRedisStore, parseRedisUrl } from '../src/store/redis/redis-store.ts';
import { benchOrigin, loginChains, startInProcessTessera, type InProcessTessera } from './inprocess-tessera.ts';
import { LeanResp, type WritePolicy } from './lean-resp.ts';

const URL_ = process.argv[2] ?? 'redis://127.0.0.1:6379';
const MODE = process.env.AB_MODE ?? 'fcall';
const ROUNDS = Number(process.env.AB_ROUNDS ?? 11);
const SLICE = Number(process.env.AB_SLICE ?? 4000);
const HEAP = process.env.AB_HEAP === '1';
const PROFILE = process.env.AB_PROFILE === '1';
const HOP = process.env.AB_HOP === '1';
/** AB_HOP=1: each call starts in a task of its own, as a request read from a socket does. */
const hop = () => new Promise<void>((resolve) => setImmediate(resolve));
const CHAINS = 50;
const NAMES = (process.env.AB_VARIANTS ?? 'node-redis,turn,idle,k8,micro').split(',');
const { hostname, port } = new URL(URL_);
const prefix = `bench-lean-${randomBytes(4).toString('hex')}:`;
const TIMEOUT_MS = 5000;

/** One variant's sender: `null` for node-redis, else the lean client of a write policy. */
const leans = new Map<string, LeanResp | null>();
for (const name of NAMES) if (!name.startsWith('hot-')) leans.set(name, name === 'node-redis' ? null : await LeanResp.open(hostname, Number(port), name as WritePolicy));

/** redis-server's CPU so far (INFO cpu: used_cpu_sys + used_cpu_user), µs; the server is the bench's own. */
const info = await LeanResp.open(hostname, Number(port), 'turn');
async function redisCpu(): Promise<number> {
  const text = String(await info.send(['INFO', 'cpu']));
  const f = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(text)?.[1]);
  return (f('used_cpu_sys') + f('used_cpu_user')) * 1e6;
}

/** The slices' measurements of one variant. */
interface Sample {
  cpu: number;
  /** redis-server's CPU per call. */
  redis: number;
  perSecond: number;
  elu: number;
  writes: number;
  /** Commands the variant's lean client sent per call. */
  leanSent?: number;
}

function syscw(): number {
  return Number(/syscw: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))?.[1]);
}

/** Runs `chain(i, per)` for the 50 chains at once; what it cost per call. */
async function measured(calls: (i: number, per: number) => Promise<void>, flush: () => Promise<void>): Promise<Sample> {
  const per = Math.ceil(SLICE / CHAINS);
  const n = per * CHAINS;
  const r0 = await redisCpu();
  const w0 = syscw();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await Promise.all(Array.from({ length: CHAINS }, (_, i) => calls(i, per)));
  await flush();
  const c = process.cpuUsage(c0);
  const wall = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0).utilization;
  const writes = (syscw() - w0) / n;
  return { cpu: (c.user + c.system) / n, redis: ((await redisCpu()) - r0) / n, perSecond: (n * 1000) / wall, elu, writes };
}

// ---- AB_MODE=fcall: the rotate FCALL alone ----

async function fcallMode(): Promise<(name: string) => Promise<Sample>> {
  const keys = new RedisKeys(prefix);
  const store = await openRedisStore(URL_, { prefix });
  const conn = await openConnection(parseRedisUrl(URL_), { connectTimeoutMs: 2000, commandTimeoutMs: TIMEOUT_MS });
  const deadlines = new Deadlines(TIMEOUT_MS);
  // AB_VARIANTS hot-task, hot-turn (fcall mode): Tessera's own lean connection (hot-connection.ts) through connection.ts's sendHot.
  const hots = new Map<string, NonNullable<RedisConnection['sendHot']>>();
  for (const name of NAMES) {
    if (!name.startsWith('hot-')) continue;
    const c = await openConnection(parseRedisUrl(URL_), { connectTimeoutMs: 2000, commandTimeoutMs: TIMEOUT_MS, hotWrites: name.slice(4) as HotWrites });
    hots.set(name, (c.sendHot as NonNullable<RedisConnection['sendHot']>).bind(c));
  }
  const now0 = Date.now();
  const chains: Array<{ tag: string; hash: string }> = [];
  for (let i = 0; i < CHAINS; i++) {
    const userId = `user-${i}`;
    await store.createUser({ id: userId, tenantId: 'bench', email: `lean${i}@example.com`, passwordHash: null, roles: ['member'], emailVerified: true, createdAt: now0, updatedAt: now0 });
    const handle = newHandle('bench', userId);
    const s: Session = {
      handle, secretHash: hashSecret(newSecret()), tenantId: 'bench', userId, kind: 'app', parentHandle: null,
      createdAt: now0, lastSeenAt: now0, idleExpiresAt: now0 + 3_600_000, absoluteExpiresAt: now0 + 86_400_000, authMethod: 'password',
      clientId: null, device: { userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36', ip: '203.0.113.7' },
      status: 'active', endedAt: null, revokeReason: null, successorHandle: null, data: { mode: 'token', appHandle: null, amr: ['pwd'] },
    };
    await store.createSession(s, now0);
    const t0 = hashSecret(newSecret());
    await store.addRefreshToken({ tokenHash: t0, sessionHandle: handle, tenantId: 'bench', userId, createdAt: now0, rotatedAt: null, successorHash: null });
    // Through the store once: the Function's library loaded and checked, as in production.
    const t1 = hashSecret(newSecret());
    const r = await store.rotateRefreshToken(t0, t1, now0 + 1, 60_000, now0 + 3_600_000);
    if (r.outcome !== 'rotated') throw new Error(`set-up rotation: ${r.outcome}`);
    chains.push({ tag: tagOfHandle(handle) as string, hash: t1 });
  }
  const fn = (ROTATE.fn as { name: string }).name;
  const endsChannel = keys.endsChannel();
  return async (name) => {
    const lean = leans.get(name) ?? null;
    const hot = hots.get(name);
    // The slice's successors, made before the clock starts (both variants the same work after it).
    const per = Math.ceil(SLICE / CHAINS);
    const plan = chains.map((c) => {
      const hashes = [c.hash];
      for (let k = 0; k < per; k++) hashes.push(hashSecret(newSecret()));
      c.hash = hashes[per] as string;
      return { tag: c.tag, packed: hashes.map(packedHash), route: hashes.map((h) => keys.route(h)), field: hashes.map((h) => keys.routeField(h)) };
    });
    let bad = 0;
    const sample = await measured(async (i, n) => {
      const p = plan[i]!;
      const key = keys.slotSessions(p.tag);
      const base = keys.slotBase(p.tag);
      for (let k = 0; k < n; k++) {
        if (HOP) await hop();
        const now = Date.now();
        const command = ['FCALL', fn, '1', key, base, String(now), endsChannel, '', p.packed[k]!, p.packed[k + 1]!, '60000', String(now + 3_600_000), p.route[k + 1]!, p.field[k + 1]!];
        const reply = (await (hot !== undefined ? hot(key, command, true) : lean === null ? conn.send(key, command, false, true) : deadlines.track(lean.send(command, true), 'FCALL'))) as unknown[];
        if (String(reply[0]) !== 'rotated' || !Buffer.isBuffer(reply[1]) || !Buffer.isBuffer(reply[3])) bad++;
      }
    }, () => Promise.resolve());
    if (bad > 0) throw new Error(`${name}: ${bad} calls did not rotate`);
    return sample;
  };
}

// ---- AB_MODE=rotation: refreshTokenPair, FCALL through the variant's client ----

const opened: { tessera?: InProcessTessera } = {};
const counted = new Map<string, [number, number]>();
const dir = mkdtempSync(join(tmpdir(), 'tessera-lean-'));

async function rotationMode(): Promise<(name: string) => Promise<Sample>> {
  // node-redis's clients send every command through RedisClient.prototype.sendCommand
  // (connection.ts: client.sendCommand): FCALL goes to the active lean client instead.
  // (A CommonJS module: its exports object is the import's default.)
  const RedisClient = ((await import('@redis/client/dist/lib/client/index.js')) as unknown as {
    default: { default: { prototype: { sendCommand: (this: unknown, args: Array<string | Buffer>, options?: { typeMapping?: object }) => Promise<unknown> } } };
  }).default.default;
  const original = RedisClient.prototype.sendCommand;
  let active: LeanResp | null = null;
  RedisClient.prototype.sendCommand = function (this: unknown, args, options) {
    if (active !== null && args[0] === 'FCALL') return active.send(args, options?.typeMapping !== undefined);
    if (process.env.AB_COUNT === '1') {
      const k = `${String(args[0])} ${String(args[1]).slice(0, 24)}`;
      const c = counted.get(k) ?? [0, 0];
      c[0]++;
      for (const a of args) c[1] += a.length;
      counted.set(k, c);
    }
    return original.call(this, args, options);
  };
  const admin = 'ab-admin-token-' + 'x'.repeat(32);
  const t = await startInProcessTessera({ root: fileURLToPath(new URL('..', import.meta.url)), redisUrl: URL_, prefix, cookieSecret: 'ab-cookie-secret-' + 'y'.repeat(32), adminToken: admin, dir });
  opened.tessera = t;
  const tokens = await loginChains(t, admin, CHAINS, 'lean');
  const origins = tokens.map((_, i) => benchOrigin(i, 'bench/lean-resp-ab'));
  return async (name) => {
    active = leans.get(name) ?? null;
    try {
      return await measured(async (i, n) => {
        for (let k = 0; k < n; k++) {
          if (HOP) await hop();
          tokens[i] = (await refreshTokenPair(t.deps, tokens[i]!, Date.now(), origins[i])).refreshToken;
        }
      }, () => t.flush());
    } finally {
      active = null;
    }
  };
}

// ---- the rounds ----

/** Where a profiled function's code is (AB_PROFILE). */
function groupOf(url: string, fn: string): string {
  if (url.includes('@redis/client')) return 'node-redis';
  if (url.endsWith('/lean-resp.ts')) return 'lean client';
  if (url.endsWith('/store/redis/connection.ts')) return 'connection.ts';
  if (/node:(net|stream|internal\/(net|stream|streams|stream_base_commons))/.test(url)) return 'streams, sockets';
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(idle)') return 'idle';
  return 'the rest';
}

const slice = MODE === 'rotation' ? await rotationMode() : await fcallMode();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] as number;
try {
  for (const name of NAMES) await slice(name); // warm-up
  if (PROFILE) {
    const inspector = new Inspector();
    inspector.connect();
    await inspector.post('Profiler.enable');
    await inspector.post('Profiler.setSamplingInterval', { interval: Number(process.env.AB_PROFILE_US ?? 100) });
    const byGroup = new Map<string, Map<string, number>>(NAMES.map((n) => [n, new Map()]));
    const byFunction = new Map<string, Map<string, number>>(NAMES.map((n) => [n, new Map()]));
    let calls = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const name of NAMES) {
        await inspector.post('Profiler.start');
        await slice(name);
        const { profile } = await inspector.post('Profiler.stop');
        const self = new Map<number, number>();
        const samples = profile.samples ?? [];
        const deltas = profile.timeDeltas ?? [];
        for (let i = 1; i < samples.length; i++) self.set(samples[i - 1] as number, (self.get(samples[i - 1] as number) ?? 0) + (deltas[i] as number));
        for (const node of profile.nodes) {
          const us = self.get(node.id);
          if (us === undefined) continue;
          const f = node.callFrame;
          const add = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + us);
          add(byGroup.get(name)!, groupOf(f.url, f.functionName));
          add(byFunction.get(name)!, `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`);
        }
      }
      calls += Math.ceil(SLICE / CHAINS) * CHAINS;
    }
    inspector.disconnect();
    const groups = ['node-redis', 'lean client', 'connection.ts', 'streams, sockets', 'GC', 'idle', 'the rest'];
    console.log(`\n# bench/lean-resp-ab.ts AB_PROFILE=1 — ${new Date().toISOString()}, AB_MODE=${MODE}, ${ROUNDS} rounds × ${SLICE} calls per variant; self time, µs per call\n`);
    console.log(`| variant | ${groups.join(' | ')} |\n|---|${groups.map(() => '---:').join('|')}|`);
    for (const [name, m] of byGroup) console.log(`| ${name} | ${groups.map((g) => ((m.get(g) ?? 0) / calls).toFixed(2)).join(' | ')} |`);
    for (const [name, m] of byFunction) {
      const top = [...m].sort((a, b) => b[1] - a[1]).slice(0, 10);
      console.log(`\n${name}: ${top.map(([f, us]) => `${f} ${(us / calls).toFixed(2)}`).join('; ')}`);
    }
  } else if (HEAP) {
    const inspector = new Inspector();
    inspector.connect();
    await inspector.post('HeapProfiler.enable');
    const bytes = new Map<string, number>(NAMES.map((n) => [n, 0]));
    let calls = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const name of NAMES) {
        await inspector.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
        await slice(name);
        const { profile } = await inspector.post('HeapProfiler.stopSampling');
        let total = 0;
        const walk = (node: typeof profile.head) => {
          total += node.selfSize;
          for (const c of node.children) walk(c);
        };
        walk(profile.head);
        bytes.set(name, (bytes.get(name) as number) + total);
      }
      calls += Math.ceil(SLICE / CHAINS) * CHAINS;
    }
    inspector.disconnect();
    console.log(`\n# bench/lean-resp-ab.ts AB_HEAP=1 — ${new Date().toISOString()}, AB_MODE=${MODE}, ${ROUNDS} rounds × ${SLICE} calls per variant\n`);
    console.log('| variant | bytes allocated per call (sampled) |\n|---|---:|');
    for (const [name, b] of bytes) console.log(`| ${name} | ${(b / calls).toFixed(0)} |`);
  } else {
    const samples = new Map<string, Sample[]>(NAMES.map((n) => [n, []]));
    for (let round = 0; round < ROUNDS; round++) {
      const order = [...NAMES.slice(round % NAMES.length), ...NAMES.slice(0, round % NAMES.length)];
      for (const name of order) {
        const sent0 = leans.get(name)?.sent ?? 0;
        const sample = await slice(name);
        sample.leanSent = ((leans.get(name)?.sent ?? 0) - sent0) / (Math.ceil(SLICE / CHAINS) * CHAINS);
        samples.get(name)!.push(sample);
      }
    }
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    console.log(`\n# bench/lean-resp-ab.ts — ${new Date().toISOString()}, AB_MODE=${MODE}${HOP ? ' AB_HOP=1' : ''}, Node ${process.version}, ${ROUNDS} rounds × ${SLICE} calls per variant, ${CHAINS} chains; load average at the end ${load}\n`);
    console.log('| variant | CPU µs/call (median) | rounds in order | calls/s (median) | event loop busy (median) | writes/call | lean sends/call | lower CPU than node-redis | more calls/s than node-redis | Redis CPU µs/call (median) | lower Redis CPU than node-redis |');
    console.log('|---|---:|---|---:|---:|---:|---:|---|---|---:|---|');
    const base = samples.get('node-redis');
    for (const [name, xs] of samples) {
      const lower = base === undefined || name === 'node-redis' ? '' : `${xs.filter((x, i) => x.cpu < base[i]!.cpu).length} of ${xs.length}`;
      const redisLower = base === undefined || name === 'node-redis' ? '' : `${xs.filter((x, i) => x.redis < base[i]!.redis).length} of ${xs.length}`;
      const faster = base === undefined || name === 'node-redis' ? '' : `${xs.filter((x, i) => x.perSecond > base[i]!.perSecond).length} of ${xs.length}`;
      console.log(
        `| ${name} | ${median(xs.map((x) => x.cpu)).toFixed(1)} | ${xs.map((x) => x.cpu.toFixed(0)).join(' ')} | ${median(xs.map((x) => x.perSecond)).toFixed(0)} | ${(100 * median(xs.map((x) => x.elu))).toFixed(0)} % | ${median(xs.map((x) => x.writes)).toFixed(3)} | ${median(xs.map((x) => x.leanSent ?? 0)).toFixed(2)} | ${lower} | ${faster} | ${median(xs.map((x) => x.redis)).toFixed(1)} | ${redisLower} |`,
      );
    }
    if (base !== undefined) {
      for (const [name, xs] of samples) {
        if (name === 'node-redis') continue;
        console.log(`${name}: median of the paired CPU differences ${median(xs.map((x, i) => x.cpu - base[i]!.cpu)).toFixed(1)} µs/call`);
      }
    }
  }
  if (counted.size > 0) console.log('node-redis commands (all variants, warm-up included):', [...counted].sort((a, b) => b[1][0] - a[1][0]).slice(0, 12).map(([k, [n, b]]) => `${k}: ${n} × ${Math.round(b / n)} chars`).join('; '));
} finally {
  for (const lean of [...leans.values(), info]) await lean?.close().catch(() => undefined);
  await opened.tessera?.stop().catch(() => undefined);
  spawnSync('sh', ['-c', `redis-cli -u ${URL_} --scan --pattern '${prefix}*' | xargs -r -n 500 redis-cli -u ${URL_} unlink >/dev/null`]);
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
