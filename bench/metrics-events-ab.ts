// node bench/metrics-events-ab.ts <other checkout> — CPU ns per TesseraMetrics.observeEvent
// (src/audit/metrics.ts: every lifecycle event — one per rotation — counts in tessera_events_total
// and its type's counter) of this checkout against another's, both in this process, alternated
// for AB_ROUNDS (20) rounds of AB_SLICE (200,000) events of two tenants, refreshes and logins.
// Prints the medians, in how many rounds this checkout was lower, and whether the two counted the
// same (docs/performance.md, "Rotation's JavaScript in a real server, by function").

import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TesseraEvent } from '../src/events/bus.ts';

interface Metrics { observeEvent(e: TesseraEvent, tenant: string): void; text(): Promise<string> }
type Ctor = new (opts: { activeSessions: () => Promise<[]>; backlog: () => number; now: () => number }) => Metrics;

const other = process.argv[2];
if (!other) throw new Error('usage: node bench/metrics-events-ab.ts <other checkout>');
const here = fileURLToPath(new URL('..', import.meta.url));
const load = async (root: string) => ((await import(join(resolve(root), 'src/audit/metrics.ts'))) as { TesseraMetrics: Ctor }).TesseraMetrics;
const opts = { activeSessions: () => Promise.resolve([] as []), backlog: () => 0, now: () => Date.now() };
const variants: [string, Metrics][] = [
  ['other', new (await load(other))(opts)],
  ['this', new (await load(here))(opts)],
];
const ROUNDS = Number(process.env.AB_ROUNDS ?? 20);
const SLICE = Number(process.env.AB_SLICE ?? 200_000);
const events = Array.from(
  { length: 8 },
  (_, i) => ({ type: i % 4 === 3 ? 'session.created' : 'session.refreshed', time: 1, tenantId: `t${i % 2}`, userId: 'u', sessionHandle: 'h', kind: 'app', startedAt: 1, details: {} }) as unknown as TesseraEvent,
);
const run = (m: Metrics) => {
  for (let i = 0; i < SLICE; i++) m.observeEvent(events[i & 7] as TesseraEvent, (events[i & 7] as TesseraEvent).tenantId);
};
for (const [, m] of variants) run(m); // warm-up
const ns: number[][] = variants.map(() => []);
for (let round = 0; round < ROUNDS; round++) {
  for (const v of round % 2 === 0 ? [0, 1] : [1, 0]) {
    const c0 = process.cpuUsage();
    run(variants[v]![1]);
    const c = process.cpuUsage(c0);
    ns[v]!.push(((c.user + c.system) * 1000) / SLICE);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const [a, b] = [ns[0]!, ns[1]!];
console.log(`observeEvent: other ${median(a).toFixed(0)} ns, this ${median(b).toFixed(0)} ns per call; this lower in ${b.filter((x, j) => x < (a[j] as number)).length} of ${ROUNDS} rounds`);
const counted = async (m: Metrics) => (await m.text()).split('\n').filter((l) => /^tessera_(events|sessions_created|sessions_refreshed)_total\{/.test(l)).join('\n');
console.log(`the same counts: ${(await counted(variants[0]![1])) === (await counted(variants[1]![1]))}`);
