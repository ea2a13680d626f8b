// node bench/audit-feed-ab.ts — what one audit record costs a process that only listens to the
// store's audit feed (every Tessera process on a Redis hears every process's records: an SSO
// exchange, a rotation, a login each append one), with and without the subscriber's `wants` hint
// (AuditStore.subscribe; the session cache's, when no live stream is open, wants only
// `anomaly.detected` and `session.reauthenticated`). This process appends FEED_RECORDS records
// of type `sso.token_redeemed` in batches of 100 (the audit pipeline's appendMany); a child
// process subscribes on the same prefix and reports its own CPU time (process.cpuUsage) from
// just before the first append until it hears the last record (a `session.reauthenticated`,
// wanted either way) — its connection's reads, the records' decoding and the listener. Variants alternate for FEED_ROUNDS rounds; medians per
// record. Environment: FEED_RECORDS (default 20000), FEED_ROUNDS (default 5), BENCH_REDIS_URL
// (default redis://127.0.0.1:6379).

import { randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { AuditEventInput } from '../src/domain/audit-chain.ts';
import { openRedisStore } from '../src/store/redis/redis-store.ts';

const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const RECORDS = Number(process.env.FEED_RECORDS ?? 20000);
const ROUNDS = Number(process.env.FEED_ROUNDS ?? 5);
const CACHE_TYPES = ['anomaly.detected', 'session.reauthenticated'];

if (process.argv[2] === 'listen') {
  // The child: subscribe, say ready, then count CPU from "go" until no record came for 500 ms.
  const [, , , prefix, hinted] = process.argv;
  const store = await openRedisStore(REDIS_URL, { prefix: prefix as string });
  const wanted: ReadonlySet<string> = new Set(CACHE_TYPES);
  let heard = 0;
  let c0: NodeJS.CpuUsage | null = null;
  const feed = await store.audit.subscribe(
    (r) => {
      heard += 1;
      // The parent's last record (a wanted type, after all the others on the same channel).
      if (r.type !== 'session.reauthenticated' || c0 === null) return;
      const c = process.cpuUsage(c0);
      process.stdout.write(JSON.stringify({ cpuUs: c.user + c.system, heard }) + '\n');
      void feed.close().then(() => store.close()).then(() => process.exit(0));
    },
    () => undefined,
    hinted === '1' ? () => wanted : undefined,
  );
  process.stdin.once('data', () => {
    c0 = process.cpuUsage();
  });
  process.stdout.write('ready\n');
} else {
  const self = fileURLToPath(import.meta.url);
  const samples = new Map<string, number[]>([['without the hint', []], ['with the hint', []]]);
  for (let round = 0; round < ROUNDS; round++) {
    for (const hinted of round % 2 === 0 ? ['0', '1'] : ['1', '0']) {
      const prefix = `bench-feed-ab-${randomBytes(4).toString('hex')}:`;
      const store = await openRedisStore(REDIS_URL, { prefix });
      const child = spawn(process.execPath, [self, 'listen', prefix, hinted], { stdio: ['pipe', 'pipe', 'inherit'] });
      const lines: string[] = [];
      let waiting: (() => void) | null = null;
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        lines.push(...d.split('\n').filter(Boolean));
        waiting?.();
      });
      const nextLine = async (): Promise<string> => {
        while (lines.length === 0) await new Promise<void>((r) => (waiting = r));
        return lines.shift() as string;
      };
      await nextLine(); // ready
      child.stdin.write('go\n');
      const input = (i: number): AuditEventInput => ({
        time: Date.now(), tenantId: 'bench', type: 'sso.token_redeemed', userId: `u${i}`, sessionId: `s${i}`, kind: 'app',
        headers: { requestId: 'bench', correlationId: 'bench', activityId: null, tenantId: null, sessionId: null },
        ip: '127.0.0.1', userAgent: null, location: null, details: { mode: 'token' },
      });
      for (let i = 0; i < RECORDS; i += 100) {
        await store.audit.appendMany(Array.from({ length: Math.min(100, RECORDS - i) }, (_, j) => ({ input: input(i + j), opts: {} })));
      }
      await store.audit.append({ ...input(RECORDS), type: 'session.reauthenticated' });
      const r = JSON.parse(await nextLine()) as { cpuUs: number; heard: number };
      samples.get(hinted === '1' ? 'with the hint' : 'without the hint')!.push(r.cpuUs / RECORDS);
      await store.close();
      spawnSync('sh', ['-c', `redis-cli -u ${REDIS_URL} --scan --pattern '${prefix}*' | xargs -r -n 500 redis-cli -u ${REDIS_URL} unlink >/dev/null`]);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  console.log(`\n# bench/audit-feed-ab.ts — ${new Date().toISOString()}, ${ROUNDS} rounds × ${RECORDS} records\n`);
  console.log('| listener | CPU µs per record heard or left out (median) | rounds |');
  console.log('|---|---:|---|');
  for (const [name, xs] of samples) console.log(`| ${name} | ${median(xs).toFixed(2)} | ${xs.map((x) => x.toFixed(2)).join(' / ')} |`);
  process.exit(0);
}
