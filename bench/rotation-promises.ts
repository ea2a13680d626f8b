// node bench/rotation-promises.ts — how many promises one refresh-token rotation below HTTP makes
// (`refreshTokenPair` called directly, as bench/rotation-direct.ts does, on Redis), counted by
// V8's promise hooks (node:v8 promiseHooks.onInit), and with PROMISES_STACKS=1 where: each
// promise grouped by the four frames that made it, per rotation. One chain, so the audit append
// runs once per rotation here (its promises are in the count; with 50 chains a batch carries
// ~50 events). Environment: BENCH_REDIS_URL (default redis://127.0.0.1:6379; the keys go under a
// prefix of their own and are left to expire with the runtime's), PROMISES_ROTATIONS (1000).

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promiseHooks } from 'node:v8';
import { refreshTokenPair } from '../src/sessions/app-sessions.ts';
import { benchOrigin, loginChains, startInProcessTessera } from './inprocess-tessera.ts';

const N = Number(process.env.PROMISES_ROTATIONS ?? 1000);
const STACKS = process.env.PROMISES_STACKS === '1';
const ADMIN = 'ab-admin-token-' + 'x'.repeat(32);
const dir = mkdtempSync(join(tmpdir(), 'tessera-rot-promises-'));
const t = await startInProcessTessera({
  root: fileURLToPath(new URL('..', import.meta.url)),
  redisUrl: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
  prefix: `bench-rot-promises-${randomBytes(4).toString('hex')}:`,
  cookieSecret: 'ab-cookie-secret-' + 'y'.repeat(32),
  adminToken: ADMIN,
  dir,
});
try {
  const tokens = await loginChains(t, ADMIN, 1, 'rot-promises');
  let token = tokens[0] as string;
  const origin = benchOrigin(0, 'bench/rotation-promises');
  for (let i = 0; i < 200; i++) token = (await refreshTokenPair(t.deps, token, Date.now(), origin)).refreshToken;
  await t.flush();
  let made = 0;
  const where = new Map<string, number>();
  const stop = promiseHooks.onInit(() => {
    made++;
    if (!STACKS) return;
    const frames = (new Error().stack ?? '').split('\n').slice(2, 6).map((l) => l.trim());
    const key = frames.join(' < ');
    where.set(key, (where.get(key) ?? 0) + 1);
  }) as () => void;
  for (let i = 0; i < N; i++) token = (await refreshTokenPair(t.deps, token, Date.now(), origin)).refreshToken;
  stop();
  console.log(`promises per rotation: ${(made / N).toFixed(2)} (${N} rotations, one chain)`);
  for (const [key, n] of [...where].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(`${(n / N).toFixed(2)}  ${key}`);
  await t.flush();
} finally {
  await t.stop();
  rmSync(dir, { recursive: true, force: true });
}
