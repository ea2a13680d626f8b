// Stores N idle token-mode sessions, as a token-mode login leaves them in the store (the session
// record with its indexes and its first refresh token), straight through the store port — no
// HTTP and no argon2, so that a million take minutes, not hours. One user per session, like N
// people each signed in once. Used by bench/run.ts for the memory and the size-flatness figures.
// argv[2]: JSON { store: "redis://…" | "sqlite:<path>", prefix, tenantId, count, lifetimeS,
// userAgent, concurrency, firstUser } (userAgent: the sessions' User-Agent, a short one by default;
// concurrency: sessions in flight, 500; firstUser: the number of the first user, 0 — a second fill
// into the same store starts after the first one's users).

import { hashSecret, newSecret } from '../src/domain/secrets.ts';
import { issueSession } from '../src/domain/session.ts';
import { openStore } from '../src/store/open.ts';
import { parseStoreSpec } from './store-spec.ts';

/**
 * The shared Redis of a busy machine can stall past the store's command timeout; a write that
 * timed out may have happened, so a retry that finds it there (`done`) counts as stored.
 */
async function retried<T>(op: () => Promise<T>, done: string): Promise<T | null> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (attempt > 1 && code === done) return null;
      if (code !== 'store_unavailable' || attempt === 5) throw err;
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

const o = JSON.parse(process.argv[2] ?? '{}') as { store: string; prefix: string; tenantId: string; count: number; lifetimeS?: number; userAgent?: string; concurrency?: number; firstUser?: number };
const store = await openStore({ store: parseStoreSpec(o.store), redisPrefix: o.prefix });
const life = o.lifetimeS ?? 86_400;
/**
 * Sessions in flight: a pool, not batches with a barrier, so the store is never left waiting for
 * a batch's slowest write. On Redis the commands of concurrent calls share the connection's
 * pipeline; on SQLite every call is its own synchronous transaction anyway (the port has no
 * transaction spanning several calls).
 */
const CONCURRENCY = o.concurrency ?? 500;
const started = performance.now();
const now = Date.now();
let next = 0;
let done = 0;
const step = Math.max(1, Math.round(o.count / 10));

async function one(i: number): Promise<void> {
  const userId = `u${(i + (o.firstUser ?? 0)).toString(36)}`;
  const { session } = issueSession(
    {
      tenantId: o.tenantId,
      userId,
      kind: 'app',
      lifetime: { idle: life, absolute: life },
      authMethod: 'password',
      device: { userAgent: o.userAgent ?? 'Mozilla/5.0 (X11; Linux x86_64) bench', ip: '127.0.0.1' },
      data: { mode: 'token' },
    },
    now,
  );
  const r = await retried(() => store.createSession(session, now), 'session_exists');
  if (r !== null && !r.ok) throw new Error('limit');
  await retried(() => store.addRefreshToken({
    tokenHash: hashSecret(newSecret()),
    sessionHandle: session.handle,
    tenantId: o.tenantId,
    userId,
    createdAt: now,
    rotatedAt: null,
    successorHash: null,
  }), 'refresh_token_exists');
  // Progress of a large fill on stderr (bench/run.ts shows it): a million takes minutes.
  if (++done % step === 0 && done < o.count && o.count >= 100_000) {
    const s = (performance.now() - started) / 1000;
    process.stderr.write(`fill ${o.store.split(':')[0]}: ${done.toLocaleString('en')} of ${o.count.toLocaleString('en')} in ${s.toFixed(0)} s (${Math.round(done / s).toLocaleString('en')}/s, RSS ${Math.round(process.memoryUsage.rss() / 2 ** 20)} MiB)\n`);
  }
}

await Promise.all(
  Array.from({ length: Math.min(CONCURRENCY, o.count) }, async () => {
    while (next < o.count) await one(next++);
  }),
);
const seconds = (performance.now() - started) / 1000;
await store.close();
process.stdout.write(JSON.stringify({ stored: o.count, seconds, maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) }) + '\n');
