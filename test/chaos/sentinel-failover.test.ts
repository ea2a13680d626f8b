// Chaos: a Sentinel failover under load. A master, one replica and three Sentinels are started by
// the test; the replica's link is slowed to 150 ms each way (a replica ~300 ms behind, as measured in
// the issue). Sessions are logged out and refresh tokens rotated, and the master is SIGKILLed the
// moment the last of them was acknowledged. After the promotion every acknowledged logout must
// still be in force and every acknowledged rotation must hold (the old refresh token refused).
//
// With the default (ends and rotations WAIT for 1 replica) none is lost. The control run with
// TESSERA_REDIS_WAIT_REPLICAS=0 (and a link 3 s slow, so that the outcome does not depend on
// timing) shows that the checks can see a loss: there, acknowledged logouts come back. Finally, with no replica left, a logout is still answered (and counted as unreplicated).
//
// Long (two failovers, ~30 s): runs when TESSERA_CHAOS_LONG=1 (.ci/run sets it).

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { hashSecret } from '../../src/domain/secrets.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import type { RedisSessionStore } from '../../src/store/redis/redis-store.ts';
import { redisBinariesMissing, requireOrSkip, startRedisSentinelSet } from '../support/redis.ts';

const ADMIN = 'chaos-admin-' + 'a'.repeat(32);
const PASSWORD = 'correct horse battery';
/** Each way on the replica's link: a replica about 2 × this behind (the issue measured ~300 ms). */
const DELAY_MS = 150;
/** The control run's link: slow enough that nothing acknowledged has crossed when the master dies. */
const CONTROL_DELAY_MS = 3000;
const long = process.env.TESSERA_CHAOS_LONG === '1';
const skip = !long || requireOrSkip(redisBinariesMissing());
if (!long) process.stderr.write('[tessera tests] skipping the Sentinel failover test: set TESSERA_CHAOS_LONG=1 (CI does)\n');

async function until(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<number> {
  const t0 = Date.now();
  while (!(await Promise.resolve().then(check).catch(() => false))) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}

interface Outcome {
  acknowledgedLogouts: number;
  acknowledgedRotations: number;
  logoutsLost: number;
  rotationsLost: number;
  failedDuringFailover: number;
  windowMs: number;
  unreplicatedAfter: number;
}

async function failoverRun(env: Record<string, string>, delayMs: number): Promise<Outcome> {
  const set = await startRedisSentinelSet();
  const dir = mkdtempSync(join(tmpdir(), 'tessera-chaos-failover-'));
  let server: RunningServer | null = null;
  let loadRunning = true;
  try {
    const config = loadConfig(
      {
        TESSERA_STORE: set.url,
        TESSERA_REDIS_PREFIX: 'chaos:',
        COOKIE_SECRET_SIGN_KEY: randomBytes(32).toString('base64url'),
        TESSERA_ADMIN_TOKEN: ADMIN,
        TESSERA_PORT: '0',
        TESSERA_LOG_LEVEL: 'silent',
        TESSERA_REDIS_WAIT_TIMEOUT_MS: '900',
        ...env,
      },
      dir,
    );
    server = await startServer(config, { logger: pino({ level: 'silent' }) });
    const url = server.url;
    const tenant = 't-failover';
    const h = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    expect((await fetch(`${url}/api/v1/admin/tenants/${tenant}`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' })).status).toBe(200);
    expect(
      (await fetch(`${url}/api/v1/admin/users`, { method: 'POST', headers: h, body: JSON.stringify({ tenantId: tenant, email: 'ada@example.com', password: PASSWORD }) }))
        .status,
    ).toBe(201);
    const login = async () => {
      const r = await fetch(`${url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'x-tenant-id': tenant, 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'ada@example.com', password: PASSWORD }),
      });
      expect(r.status).toBe(200);
      return (await r.json()) as { userSessionToken: string; refreshToken: string; sessionId: string };
    };
    const toLogOut = [];
    const toRotate = [];
    for (let i = 0; i < 8; i++) toLogOut.push(await login());
    for (let i = 0; i < 8; i++) toRotate.push(await login());
    // Load through the failover: session checks with a token of its own, counted per outcome.
    const probe = await login();
    // Let the replica catch up with the set-up, then slow its link down.
    await new Promise((r) => setTimeout(r, 500));
    set.link.delay(delayMs);

    const failures: number[] = [];
    const loader = (async () => {
      while (loadRunning) {
        const r = await fetch(`${url}/api/v1/session`, { headers: { authorization: `Bearer ${probe.userSessionToken}` }, signal: AbortSignal.timeout(5000) }).catch(() => null);
        if (r === null || r.status !== 200) failures.push(Date.now());
        await new Promise((res) => setTimeout(res, 20));
      }
    })();

    const logouts = await Promise.all(
      toLogOut.map(async (s) => ({ s, status: (await fetch(`${url}/api/v1/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${s.userSessionToken}` } })).status })),
    );
    const rotations = await Promise.all(
      toRotate.map(async (s) => {
        const r = await fetch(`${url}/api/v1/auth/token/refresh`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ refreshToken: s.refreshToken }),
        });
        return { old: s.refreshToken, status: r.status, next: r.status === 200 ? ((await r.json()) as { refreshToken: string }).refreshToken : null };
      }),
    );
    await set.killMaster();
    const killedAt = Date.now();

    await until('Sentinel to promote the replica', 30_000, async () => (await set.currentMasterPort()) === set.replicaPort);
    await until('Tessera to be ready on the new master', 30_000, async () => (await fetch(`${url}/readyz`)).status === 200);
    await until('a session check to succeed', 30_000, async () => (await fetch(`${url}/api/v1/session`, { headers: { authorization: `Bearer ${probe.userSessionToken}` } })).status === 200);
    loadRunning = false;
    await loader;

    const ackedLogouts = logouts.filter((l) => l.status === 204);
    const ackedRotations = rotations.filter((r) => r.status === 200);
    // Ask the store, not this process: its cache keeps tombstones of the ends it saw, so it would
    // refuse a lost logout anyway — another server, or this one after a restart, would not.
    let logoutsLost = 0;
    for (const l of ackedLogouts) {
      const s = await server.deps.store.getSessionByHandle(l.s.sessionId);
      const answered = (await fetch(`${url}/api/v1/session`, { headers: { authorization: `Bearer ${l.s.userSessionToken}` } })).status;
      if (s === null || s.status !== 'revoked' || answered !== 401) logoutsLost += 1;
    }
    // A lost rotation is not visible over HTTP within the 10 s grace period (the old token then
    // answers with the same successor either way), so ask the store: the old token must be
    // marked rotated to the acknowledged successor, and the successor must exist.
    let rotationsLost = 0;
    const store = server.deps.store;
    for (const r of ackedRotations) {
      const old = await store.getRefreshToken(hashSecret(r.old));
      const next = await store.getRefreshToken(hashSecret(r.next as string));
      if (old === null || old.rotatedAt === null || old.successorHash !== hashSecret(r.next as string) || next === null) rotationsLost += 1;
    }

    // No replica left (the old master is dead): a logout is still answered.
    const last = await login();
    const out = await fetch(`${url}/api/v1/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${last.userSessionToken}` } });
    expect(out.status).toBe(204);
    expect((await fetch(`${url}/api/v1/session`, { headers: { authorization: `Bearer ${last.userSessionToken}` } })).status).toBe(401);

    const during = failures.filter((t) => t >= killedAt - 1000);
    return {
      acknowledgedLogouts: ackedLogouts.length,
      acknowledgedRotations: ackedRotations.length,
      logoutsLost,
      rotationsLost,
      failedDuringFailover: during.length,
      windowMs: during.length > 0 ? Math.max(...during) - Math.min(...during) : 0,
      unreplicatedAfter: (server.deps.store as unknown as RedisSessionStore).unreplicatedWrites,
    };
  } finally {
    loadRunning = false;
    await server?.stop();
    await set.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe.skipIf(skip)('chaos: Sentinel failover with a replica ~300 ms behind', () => {
  it('with WAIT (the default): every acknowledged logout and rotation survives the promotion', async () => {
    const o = await failoverRun({}, DELAY_MS);
    process.stdout.write(`[chaos] failover with WAIT: ${JSON.stringify(o)}\n`);
    expect(o.acknowledgedLogouts).toBeGreaterThan(0);
    expect(o.acknowledgedRotations).toBeGreaterThan(0);
    expect(o.logoutsLost).toBe(0);
    expect(o.rotationsLost).toBe(0);
    expect(o.unreplicatedAfter).toBeGreaterThan(0); // the last logout, with no replica left
  }, 120_000);

  it('control, TESSERA_REDIS_WAIT_REPLICAS=0: the same run loses acknowledged logouts and rotations', async () => {
    const o = await failoverRun({ TESSERA_REDIS_WAIT_REPLICAS: '0' }, CONTROL_DELAY_MS);
    process.stdout.write(`[chaos] failover without WAIT: ${JSON.stringify(o)}\n`);
    expect(o.logoutsLost).toBeGreaterThan(0);
    expect(o.rotationsLost).toBeGreaterThan(0);
  }, 120_000);
});
