// Chaos: kill -9 during a burst of logins, logouts and refresh rotations. After the kill, every
// logout that was acknowledged (204) must be in force and every rotation that was acknowledged
// (200) must hold — read straight from the store, as any server started afterwards would.
// - SQLite: the Tessera process is SIGKILLed (the file is all there is).
// - Redis with AOF `appendfsync everysec` and `always`: the redis-server is SIGKILLed and
//   restarted from its AOF. (Redis writes the AOF before it replies, so a killed *process* loses
//   nothing either way; what `everysec` risks is the last second on a machine crash, which a
//   test cannot cause — docs/reliability.md.)
//
// Long (~10 s per case): runs when TESSERA_CHAOS_LONG=1 (.ci/run sets it).

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hashSecret } from '../../src/domain/secrets.ts';
import type { Store } from '../../src/store/open.ts';
import { openRedisStore } from '../../src/store/redis/redis-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.ts';
import { redisBinariesMissing, requireOrSkip, startRedisStandalone } from '../support/redis.ts';
import { startTessera, type TesseraProcess } from '../support/tessera-process.ts';

const ADMIN = 'chaos-admin-' + 'a'.repeat(32);
const PASSWORD = 'correct horse battery';
const long = process.env.TESSERA_CHAOS_LONG === '1';
if (!long) process.stderr.write('[tessera tests] skipping the kill -9 restart tests: set TESSERA_CHAOS_LONG=1 (CI does)\n');

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Acknowledged {
  logouts: string[]; // session handles
  rotations: Array<{ old: string; next: string }>;
  failed: number;
}

/** Workers loop: log in, rotate the refresh token, log out; what was acknowledged is recorded. */
function burst(url: string, tenant: string, workers = 4): { acked: Acknowledged; stop: () => Promise<void> } {
  const acked: Acknowledged = { logouts: [], rotations: [], failed: 0 };
  let running = true;
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
  const worker = async () => {
    while (running) {
      try {
        const l = await post('/api/v1/auth/login', { email: 'ada@example.com', password: PASSWORD }, { 'x-tenant-id': tenant });
        if (l.status !== 200) throw new Error(String(l.status));
        const s = (await l.json()) as { userSessionToken: string; refreshToken: string; sessionId: string };
        const r = await post('/api/v1/auth/token/refresh', { refreshToken: s.refreshToken });
        if (r.status !== 200) throw new Error(String(r.status));
        const next = (await r.json()) as { userSessionToken: string; refreshToken: string };
        acked.rotations.push({ old: s.refreshToken, next: next.refreshToken });
        const out = await fetch(`${url}/api/v1/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${next.userSessionToken}` }, signal: AbortSignal.timeout(5000) });
        if (out.status !== 204) throw new Error(String(out.status));
        acked.logouts.push(s.sessionId);
      } catch {
        acked.failed += 1;
        await new Promise((res) => setTimeout(res, 50));
      }
    }
  };
  const all = Array.from({ length: workers }, worker);
  return {
    acked,
    stop: async () => {
      running = false;
      await Promise.all(all);
    },
  };
}

async function setUp(t: TesseraProcess, tenant: string): Promise<void> {
  const h = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
  expect((await fetch(`${t.url}/api/v1/admin/tenants/${tenant}`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' })).status).toBe(200);
  const u = await fetch(`${t.url}/api/v1/admin/users`, { method: 'POST', headers: h, body: JSON.stringify({ tenantId: tenant, email: 'ada@example.com', password: PASSWORD }) });
  expect(u.status).toBe(201);
}

async function until(what: string, timeoutMs: number, check: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every acknowledged logout revoked, every acknowledged rotation stored; returns the counts lost. */
async function lost(store: Store, acked: Acknowledged): Promise<{ logouts: number; rotations: number }> {
  let logouts = 0;
  for (const h of acked.logouts) {
    const s = await store.getSessionByHandle(h);
    if (s === null || s.status !== 'revoked') logouts += 1;
  }
  let rotations = 0;
  for (const r of acked.rotations) {
    const old = await store.getRefreshToken(hashSecret(r.old));
    const next = await store.getRefreshToken(hashSecret(r.next));
    if (old === null || old.successorHash !== hashSecret(r.next) || next === null) rotations += 1;
  }
  return { logouts, rotations };
}

describe.skipIf(!long)('chaos: kill -9 during a burst', () => {
  it('SQLite: Tessera SIGKILLed; every acknowledged logout and rotation is in the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-chaos-kill-'));
    dirs.push(dir);
    const env = {
      TESSERA_STORE: `sqlite:${join(dir, 'tessera.db')}`,
      COOKIE_SECRET_SIGN_KEY: randomBytes(32).toString('base64url'),
      TESSERA_ADMIN_TOKEN: ADMIN,
      TESSERA_LOG_LEVEL: 'warn',
    };
    const t = await startTessera(env);
    await setUp(t, 't-kill');
    const b = burst(t.url, 't-kill');
    await until('some acknowledged logouts', 30_000, () => b.acked.logouts.length >= 10);
    await t.stop('SIGKILL');
    await b.stop();
    const store = await openSqliteStore(join(dir, 'tessera.db'));
    try {
      const l = await lost(store, b.acked);
      process.stdout.write(`[chaos] sqlite kill -9: ${b.acked.logouts.length} logouts and ${b.acked.rotations.length} rotations acknowledged, lost ${JSON.stringify(l)}, ${b.acked.failed} requests failed at the kill\n`);
      expect(l).toStrictEqual({ logouts: 0, rotations: 0 });
    } finally {
      await store.close();
    }
    // And it starts again on that file.
    const again = await startTessera(env);
    await again.stop();
  }, 120_000);

  const redisSkip = long && requireOrSkip(redisBinariesMissing());
  for (const aof of ['everysec', 'always'] as const) {
    it.skipIf(redisSkip)(`Redis, appendfsync ${aof}: redis-server SIGKILLed and restarted from its AOF; nothing acknowledged is lost`, async () => {
      const redis = await startRedisStandalone({ aof });
      const prefix = 'chaos:';
      const t = await startTessera({
        TESSERA_STORE: redis.url,
        TESSERA_REDIS_PREFIX: prefix,
        COOKIE_SECRET_SIGN_KEY: randomBytes(32).toString('base64url'),
        TESSERA_ADMIN_TOKEN: ADMIN,
        TESSERA_LOG_LEVEL: 'warn',
      });
      try {
        await setUp(t, 't-kill');
        const b = burst(t.url, 't-kill');
        await until('some acknowledged logouts', 30_000, () => b.acked.logouts.length >= 10);
        await redis.kill();
        await b.stop();
        await redis.restart();
        const store = await openRedisStore(redis.url, { prefix });
        try {
          const l = await lost(store, b.acked);
          process.stdout.write(`[chaos] redis ${aof} kill -9: ${b.acked.logouts.length} logouts and ${b.acked.rotations.length} rotations acknowledged, lost ${JSON.stringify(l)}, ${b.acked.failed} requests failed at the kill\n`);
          expect(l).toStrictEqual({ logouts: 0, rotations: 0 });
        } finally {
          await store.close();
        }
      } finally {
        await t.stop();
        await redis.stop();
      }
    }, 120_000);
  }
});
