// node bench/audit-append-ab.ts <redis url of a server of your own> [<other checkout>] — the Redis
// audit store's appendMany (src/store/redis/audit.ts) on its own: per record, this process's CPU
// and Redis's (INFO cpu), batches of 33 rotation-shaped records as the audit pipeline makes them
// under load, with one feed subscriber that wants only anomalies (as a process with no live stream
// open). Each variant is a checkout's store module on its own key prefix; rounds alternate the
// variants. The server must be used by nothing else. Environment: AB_ROUNDS (default 11).
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import type * as RedisStoreModule from '../src/store/redis/redis-store.ts';

const REDIS_URL = process.argv[2] ?? '';
if (!REDIS_URL) throw new Error('usage: node bench/audit-append-ab.ts <redis url> [<other checkout>]');
const roots = [fileURLToPath(new URL('..', import.meta.url)), ...(process.argv[3] ? [resolve(process.argv[3])] : [])];
const WANTED: ReadonlySet<string> = new Set(['anomaly.detected']);
const admin = createClient({ url: REDIS_URL }); await admin.connect();
const redisCpu = async () => { const info: string = await admin.sendCommand(['INFO', 'cpu']); const g = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)![1]); return (g('used_cpu_user') + g('used_cpu_sys')) * 1e6; };
interface Variant {
  root: string;
  store: RedisStoreModule.RedisSessionStore;
  prefix: string;
  sub: { close(): Promise<void> };
  node: number[];
  redis: number[];
}
const variants: Variant[] = [];
for (const root of roots) {
  const { openRedisStore } = (await import(`${root}/src/store/redis/redis-store.ts`)) as typeof RedisStoreModule;
  const prefix = `append-ab-${randomBytes(4).toString('hex')}:`;
  const store = await openRedisStore(REDIS_URL, { prefix });
  const sub = await store.audit.subscribe(() => undefined, () => undefined, () => WANTED);
  variants.push({ root, store, prefix, sub, node: [], redis: [] });
}
const ev = (t: string, i: number) => ({ input: { time: Date.now(), tenantId: t, type: 'session.refreshed', userId: 'u_' + (i % 50), sessionId: 'AbCdEfGhIjKl.' + randomBytes(16).toString('base64url'), kind: 'app', headers: { requestId: 'bench-' + i, correlationId: null, activityId: null, tenantId: null, sessionId: null }, ip: '127.0.0.1', userAgent: 'bench/append', location: null, details: {} } });
const BATCH = 33;
const BATCHES = 150;
const ROUNDS = Number(process.env.AB_ROUNDS ?? 11);
async function slice(v: Variant) {
  const t = 'bench';
  const batches = Array.from({ length: BATCHES }, (_, b) => Array.from({ length: BATCH }, (_, i) => ev(t, b * BATCH + i)));
  const r0 = await redisCpu(); const c0 = process.cpuUsage();
  for (const b of batches) await v.store.audit.appendMany(b);
  const c = process.cpuUsage(c0); const r1 = await redisCpu();
  return { node: (c.user + c.system) / (BATCH * BATCHES), redis: (r1 - r0) / (BATCH * BATCHES) };
}
for (const v of variants) await slice(v);
for (let r = 0; r < ROUNDS; r++) for (const v of r % 2 ? [...variants].reverse() : variants) { const s = await slice(v); v.node.push(s.node); v.redis.push(s.redis); }
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const v of variants) console.log(v.root, 'node µs/record', med(v.node).toFixed(2), v.node.map((x) => x.toFixed(1)).join(' '), '| redis µs/record', med(v.redis).toFixed(2), v.redis.map((x) => x.toFixed(1)).join(' '));
if (variants.length === 2) { const [a, b] = variants; console.log('node lower in', a!.node.filter((x, i) => x < b!.node[i]!).length, 'of', ROUNDS, '; redis lower in', a!.redis.filter((x, i) => x < b!.redis[i]!).length, 'of', ROUNDS); }
for (const v of variants) { await v.sub.close(); await v.store.close(); const keys = await admin.keys(`${v.prefix}*`); if (keys.length) await admin.del(keys); }
await admin.quit();
