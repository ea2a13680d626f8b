// node bench/session-cache-ab.ts [<other checkout>] — the session cache's share of an SSO token
// exchange at a long-running process's steady state, for comparing two versions of
// src/sessions/session-cache.ts on a busy machine. Each exchange remembers a session the process
// has not cached before (the redeemed app session) and hears the end of another (the spent
// one-time token's, on the feed of session ends: forget, then the handles heard). A cache at its
// default bound (100,000) is first filled past it, so that every bound evicts as it would after a
// few hundred thousand exchanges; then AB_ROUNDS (default 9) slices of AB_SLICE (default 20,000)
// exchanges per variant, alternated, each slice's CPU time (process.cpuUsage) per exchange.

import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_LIFETIMES, issueSession, type Session } from '../src/domain/session.ts';
import type * as CacheModule from '../src/sessions/session-cache.ts';
import type { Coordination } from '../src/store/coordination-port.ts';
import type { SessionStore } from '../src/store/port.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ROUNDS = Number(process.env.AB_ROUNDS ?? 9);
const SLICE = Number(process.env.AB_SLICE ?? 20_000);
const BOUND = 100_000;

interface Variant {
  name: string;
  cache: CacheModule.SessionCache;
  hear(handles: string[]): void;
}

async function variant(root: string, label: string): Promise<Variant> {
  const { SessionCache } = (await import(resolve(root, 'src/sessions/session-cache.ts'))) as typeof CacheModule;
  let listener: ((handles: string[]) => void) | null = null;
  const feed = {
    subscribeSessionEnds: (l: (handles: string[]) => void) => {
      listener = l;
      return Promise.resolve({ close: () => Promise.resolve() });
    },
  } as unknown as Coordination;
  const cache = new SessionCache({} as SessionStore, BOUND);
  await cache.start(feed);
  return { name: `session cache ${label}`, cache, hear: (h) => listener?.(h) };
}

const now = Date.now();
function sessions(n: number): Session[] {
  return Array.from({ length: n }, () => issueSession({ tenantId: 'bench', userId: 'u', kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'oidc', parentHandle: null }, now).session);
}

function run(v: Variant, batch: Session[], ends: Session[]): number {
  const c0 = process.cpuUsage();
  for (let i = 0; i < batch.length; i++) {
    v.cache.remember(batch[i] as Session);
    v.hear([(ends[i] as Session).handle]);
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / batch.length;
}

const variants = [await variant(ROOT, '(this)')];
if (process.argv[2]) variants.push(await variant(resolve(process.argv[2]), '(other)'));
// Past every bound: 120,000 exchanges each.
for (const v of variants) run(v, sessions(120_000), sessions(120_000));
const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
for (let round = 0; round < ROUNDS; round++) {
  const [batch, ends] = [sessions(SLICE), sessions(SLICE)];
  for (const v of round % 2 === 0 ? variants : [...variants].reverse()) samples.get(v.name)!.push(run(v, batch, ends));
}
const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))] as number;
console.log(`\n# bench/session-cache-ab.ts — ${new Date().toISOString()}, Node ${process.version}, ${ROUNDS} rounds × ${SLICE} exchanges per variant, bound ${BOUND}\n`);
console.log('| variant | CPU µs/exchange (median) | p25–p75 | rounds in order |');
console.log('|---|---:|---:|---|');
for (const [name, xs] of samples) console.log(`| ${name} | ${q(xs, 0.5).toFixed(2)} | ${q(xs, 0.25).toFixed(2)}–${q(xs, 0.75).toFixed(2)} | ${xs.map((x) => x.toFixed(2)).join(' ')} |`);
if (variants.length === 2) {
  const [a, b] = [...samples.values()] as [number[], number[]];
  console.log(`\n(this) lower than (other) in ${a.filter((x, i) => x < (b[i] as number)).length} of ${a.length} rounds`);
}
