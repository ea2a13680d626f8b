// node bench/monitoring-bounds-ab.ts [<other checkout>] — monitoring's per-session request
// counter (src/sessions/monitoring.ts countRequest, on every authenticated request's path) at a
// long-running process's steady state, for comparing two versions on a busy machine. The counter
// (bound 100,000 sessions) is first given 110,000 sessions, as a server with more sessions than that
// has after a while; then AB_ROUNDS (default 9) slices of AB_SLICE (default 20,000) requests per
// variant, alternated, each of a session not counted in this window (at a million sessions nearly
// every request is one), each slice's CPU time (process.cpuUsage) per request.
//
// Then, in this process alone, the same eviction on a bare Map both ways (one entry at a time, and
// makeRoom's sixteenth) at the other bounds that used it: the tenants monitoring remembers (10,000)
// and the SQLite audit store's prepared queries (64, least recently used first out).

import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as ConfigModule from '../src/config/config.ts';
import type * as MonitoringModule from '../src/sessions/monitoring.ts';
import type * as BusModule from '../src/events/bus.ts';
import type { Session } from '../src/domain/session.ts';
import type { Tenant } from '../src/domain/tenant.ts';
import type { Origin } from '../src/events/bus.ts';
import { makeRoom } from '../src/domain/bounded-map.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ROUNDS = Number(process.env.AB_ROUNDS ?? 9);
const SLICE = Number(process.env.AB_SLICE ?? 20_000);
const PREFILL = 110_000;
const now = Date.now();

interface Variant {
  name: string;
  count(handle: string): void;
}

async function variant(root: string, label: string): Promise<Variant> {
  const { createMonitoring } = (await import(resolve(root, 'src/sessions/monitoring.ts'))) as typeof MonitoringModule;
  const { loadConfig } = (await import(resolve(root, 'src/config/config.ts'))) as typeof ConfigModule;
  const { EventBus } = (await import(resolve(root, 'src/events/bus.ts'))) as typeof BusModule;
  const deps = { config: loadConfig({}, root), store: { audit: {} }, clock: { now: () => now }, bus: new EventBus(), sessionCache: {} };
  const m = createMonitoring(deps as unknown as MonitoringModule.MonitoringDeps, { processMetrics: false });
  const tenant = {} as Tenant;
  const origin = () => ({}) as Origin;
  return { name: `countRequest ${label}`, count: (handle) => m.countRequest({ handle } as Session, tenant, now, origin) };
}

let serial = 0;
const handles = (n: number) => Array.from({ length: n }, () => `bench-session-${serial++}`);

function run(v: Variant, batch: string[]): number {
  const c0 = process.cpuUsage();
  for (const h of batch) v.count(h);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / batch.length;
}

const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))] as number;
function table(title: string, samples: Map<string, number[]>): void {
  console.log(`\n${title}\n`);
  console.log('| variant | CPU µs/op (median) | p25–p75 | rounds in order |');
  console.log('|---|---:|---:|---|');
  for (const [name, xs] of samples) console.log(`| ${name} | ${q(xs, 0.5).toFixed(2)} | ${q(xs, 0.25).toFixed(2)}–${q(xs, 0.75).toFixed(2)} | ${xs.map((x) => x.toFixed(2)).join(' ')} |`);
  if (samples.size === 2) {
    const [[na, a], [nb, b]] = [...samples] as [[string, number[]], [string, number[]]];
    console.log(`\n${na} lower than ${nb} in ${a.filter((x, i) => x < (b[i] as number)).length} of ${a.length} rounds`);
  }
}

console.log(`\n# bench/monitoring-bounds-ab.ts — ${new Date().toISOString()}, Node ${process.version}, ${ROUNDS} rounds × ${SLICE} ops per variant`);

const variants = [await variant(ROOT, '(this)')];
if (process.argv[2]) variants.push(await variant(resolve(process.argv[2]), '(other)'));
for (const v of variants) run(v, handles(PREFILL));
const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
for (let round = 0; round < ROUNDS; round++) {
  const batch = handles(SLICE);
  for (const v of round % 2 === 0 ? variants : [...variants].reverse()) samples.get(v.name)!.push(run(v, batch));
}
table(`## countRequest, a session not yet counted in its window, counter full (bound 100,000, ${PREFILL} sessions first)`, samples);

// ---- the bare pattern at the other bounds ----------------------------------------------------

type Evict = (m: Map<string, number>, max: number) => void;
const oneAtATime: Evict = (m, max) => {
  if (m.size >= max) m.delete(m.keys().next().value as string);
};
const sixteenth: Evict = (m, max) => makeRoom(m, max);

/** A cache of `max` entries asked for `keys` in turn; a hit moves its entry to the end when `lru`. */
function cacheRun(m: Map<string, number>, max: number, keys: string[], evict: Evict, lru: boolean): number {
  const c0 = process.cpuUsage();
  for (const k of keys) {
    const hit = m.get(k);
    if (hit === undefined) {
      evict(m, max);
    } else if (lru) m.delete(k);
    else continue;
    m.set(k, 1);
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / keys.length;
}

for (const [label, max, distinct, lru] of [
  ['tenants remembered: bound 10,000, every look-up a tenant not remembered', 10_000, 0, false],
  ['SQLite prepared queries: bound 64, LRU, 80 shapes asked in turn (every one a miss)', 64, 80, true],
  ['SQLite prepared queries: bound 64, LRU, 60 shapes asked in turn (every one a hit)', 64, 60, true],
] as const) {
  const maps = new Map<string, Map<string, number>>([
    ['one at a time (before)', new Map()],
    ['makeRoom (after)', new Map()],
  ]);
  const evicts: Record<string, Evict> = { 'one at a time (before)': oneAtATime, 'makeRoom (after)': sixteenth };
  const keysOf = (n: number) => (distinct === 0 ? handles(n) : Array.from({ length: n }, (_, i) => `shape-${i % distinct}`));
  for (const [name, m] of maps) cacheRun(m, max, keysOf(max * 2), evicts[name]!, lru);
  const s = new Map<string, number[]>([...maps.keys()].map((n) => [n, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const keys = keysOf(SLICE);
    const names = [...maps.keys()];
    for (const name of round % 2 === 0 ? names : names.reverse()) s.get(name)!.push(cacheRun(maps.get(name)!, max, keys, evicts[name]!, lru));
  }
  table(`## ${label}`, s);
}
