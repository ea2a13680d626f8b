// Chaos: a second site (issue 17 item 5). Site A: a Tessera process on its own redis-server.
// Site B: a redis-server that is a replica of A's (REPLICAOF, as across data centres). The
// switch-over is the documented one: `tessera dr promote --from <A> --to <B>` (pause writes on
// A, wait for B to catch up, promote B, fence A as B's replica), then a Tessera process started
// at site B on B's Redis. Sessions created before the switch work at B; logouts, token
// revocations and refresh rotations made before it hold there. Site A's Tessera, still running,
// is fenced: its writes answer 503, and an end made at B reaches its cache.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openConnection } from '../../src/store/redis/connection.ts';
import { parseRedisUrl } from '../../src/store/redis/url.ts';
import { redisBinariesMissing, requireOrSkip, startRedisStandalone, testPrefix } from '../support/redis.ts';
import { CLI, PROJECT_ROOT, startTessera, type TesseraProcess } from '../support/tessera-process.ts';

const skip = requireOrSkip(redisBinariesMissing());
const ADMIN = 'dr-admin-' + 'd'.repeat(32);
const PASSWORD = 'correct horse battery';

async function info(url: string): Promise<string> {
  const conn = await openConnection(parseRedisUrl(url), { connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
  try {
    return String(await conn.send(undefined, ['INFO', 'replication']));
  } finally {
    await conn.close();
  }
}

function runCli(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: PROJECT_ROOT, env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

describe.skipIf(skip)('chaos: switching over to a second site (Redis replica promoted)', () => {
  let redisA: Awaited<ReturnType<typeof startRedisStandalone>>;
  let redisB: Awaited<ReturnType<typeof startRedisStandalone>>;
  let siteA: TesseraProcess;
  let siteB: TesseraProcess | undefined;
  const tenant = `t-${randomBytes(4).toString('hex')}`;
  const env = {
    TESSERA_REDIS_PREFIX: testPrefix('dr'),
    COOKIE_SECRET_SIGN_KEY: randomBytes(32).toString('base64url'),
    TESSERA_ADMIN_TOKEN: ADMIN,
    TESSERA_LOG_LEVEL: 'warn',
    // Both sites sit behind one public origin: the issuer of the tokens they accept.
    TESSERA_PUBLIC_URL: 'https://auth.tessera.test',
  };

  beforeAll(async () => {
    redisA = await startRedisStandalone({ aof: 'everysec' });
    redisB = await startRedisStandalone({ aof: 'everysec', replicaOf: redisA.port });
    const deadline = Date.now() + 15_000;
    while (!(await info(redisB.url)).includes('master_link_status:up')) {
      if (Date.now() > deadline) throw new Error('the site B replica did not sync');
      await new Promise((r) => setTimeout(r, 50));
    }
    // Site A waits for its replica on ends and rotations, so that even a sudden loss of site A
    // keeps them (docs/reliability.md).
    siteA = await startTessera({ ...env, TESSERA_STORE: redisA.url, TESSERA_REDIS_WAIT_REPLICAS: '1' });
  }, 60_000);
  afterAll(async () => {
    await siteB?.stop();
    await siteA?.stop();
    await redisB?.stop();
    await redisA?.stop();
  });

  const json = { 'content-type': 'application/json' };
  const adminH = { authorization: `Bearer ${ADMIN}`, ...json };
  let people = 0;
  async function login(site: TesseraProcess): Promise<{ userSessionToken: string; refreshToken: string; sessionId: string }> {
    const email = `p${++people}@example.com`;
    const u = await fetch(`${site.url}/api/v1/admin/users`, { method: 'POST', headers: adminH, body: JSON.stringify({ tenantId: tenant, email, password: PASSWORD }) });
    expect(u.status).toBe(201);
    const r = await fetch(`${site.url}/api/v1/auth/login`, { method: 'POST', headers: { 'x-tenant-id': tenant, ...json }, body: JSON.stringify({ email, password: PASSWORD }) });
    expect(r.status).toBe(200);
    return (await r.json()) as { userSessionToken: string; refreshToken: string; sessionId: string };
  }
  const check = (site: TesseraProcess, token: string) => fetch(`${site.url}/api/v1/session`, { headers: { authorization: `Bearer ${token}` } });
  const refresh = (site: TesseraProcess, refreshToken: string) =>
    fetch(`${site.url}/api/v1/auth/token/refresh`, { method: 'POST', headers: json, body: JSON.stringify({ refreshToken }) });

  it('sessions from before the switch work at site B, its ends and rotations hold, and site A is fenced', async () => {
    expect((await fetch(`${siteA.url}/api/v1/admin/tenants/${tenant}`, { method: 'PUT', headers: adminH, body: '{"profile":"integration"}' })).status).toBe(200);
    const valid = await login(siteA);
    const loggedOut = await login(siteA);
    const revoked = await login(siteA);
    const rotated = await login(siteA);
    for (const s of [valid, loggedOut, revoked, rotated]) expect((await check(siteA, s.userSessionToken)).status).toBe(200);
    expect((await fetch(`${siteA.url}/api/v1/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${loggedOut.userSessionToken}` } })).status).toBe(204);
    const rv = await fetch(`${siteA.url}/api/v1/auth/revoke`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${revoked.userSessionToken}` });
    expect(rv.status).toBe(200);
    const r1 = await refresh(siteA, rotated.refreshToken);
    expect(r1.status).toBe(200);
    const successor = (await r1.json()) as { userSessionToken: string; refreshToken: string };
    // Site A's own cache knows all of it.
    expect((await check(siteA, loggedOut.userSessionToken)).status).toBe(401);
    expect((await check(siteA, revoked.userSessionToken)).status).toBe(401);

    // The switch-over.
    const t0 = Date.now();
    const promoted = await runCli(['dr', 'promote', '--from', redisA.url, '--to', redisB.url]);
    const switchMs = Date.now() - t0;
    expect(promoted.code, promoted.out).toBe(0);
    expect(promoted.out).toMatch(/replica caught up/);
    expect(promoted.out).toMatch(/promoted/);
    expect(promoted.out).toMatch(/fenced/);
    expect(await info(redisB.url)).toMatch(/role:master/);
    expect(await info(redisA.url)).toMatch(/role:slave/);
    const t1 = Date.now();
    siteB = await startTessera({ ...env, TESSERA_STORE: redisB.url });
    const siteBReadyMs = Date.now() - t1;
    console.log(`[second site] tessera dr promote took ${switchMs} ms; the site B Tessera was ready ${siteBReadyMs} ms after it was started`);

    // At site B: what was valid is valid, what was ended stays ended, the rotation holds.
    const b = siteB;
    expect((await check(b, valid.userSessionToken)).status).toBe(200);
    expect((await check(b, successor.userSessionToken)).status).toBe(200);
    const ended = [await check(b, loggedOut.userSessionToken), await check(b, revoked.userSessionToken)];
    for (const r of ended) {
      expect(r.status).toBe(401);
      expect(((await r.json()) as { code: string }).code).toBe('session_ended');
    }
    const r2 = await refresh(b, successor.refreshToken);
    expect(r2.status).toBe(200);
    // The token rotated away before the switch is a reuse at B: refused (and the family ended).
    const reused = await refresh(b, rotated.refreshToken);
    expect(reused.status).toBe(401);
    expect((await check(b, ((await r2.json()) as { userSessionToken: string }).userSessionToken)).status).toBe(401);

    // Site A is fenced: writes answer 503; an end made at B reaches A's cache through replication.
    const fencedLogin = await fetch(`${siteA.url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'x-tenant-id': tenant, ...json },
      body: JSON.stringify({ email: 'p1@example.com', password: PASSWORD }),
    });
    expect(fencedLogin.status).toBe(503);
    expect(((await fencedLogin.json()) as { code: string }).code).toBe('store_unavailable');
    expect((await fetch(`${b.url}/api/v1/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${valid.userSessionToken}` } })).status).toBe(204);
    expect((await check(b, valid.userSessionToken)).status).toBe(401);
    const deadline = Date.now() + 5000;
    let atA = (await check(siteA, valid.userSessionToken)).status;
    while (atA === 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      atA = (await check(siteA, valid.userSessionToken)).status;
    }
    expect(atA).not.toBe(200);
  });
});
