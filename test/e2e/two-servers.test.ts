// Revocation everywhere (issue 3): two Tessera processes share one Redis — or one PostgreSQL
// database (LISTEN/NOTIFY feed), or one SQLite file (the polled feed and the peers' message log,
// docs/architecture.md §5). A logout on A must be
// honoured by the very next request on B with the same token, although B checks tokens against
// its local cache (no store round trip per request). The time from the logout request until B
// refuses is measured and printed.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisTestUrl } from '../support/harness.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';
import { purgePrefix } from '../support/redis.ts';
import { storeChoices } from '../support/store-choices.ts';
import { startTessera, type TesseraProcess } from '../support/tessera-process.ts';

const ADMIN = 'admin-' + randomBytes(24).toString('hex');
const shared = storeChoices();

describe.each(shared)('two Tessera processes on one %s store', (choice) => {
  let a: TesseraProcess;
  let b: TesseraProcess;
  let db: TestDatabase | null = null;
  let dir: string | null = null;
  const tenant = 't-' + randomBytes(4).toString('hex');
  const env = {
    TESSERA_STORE: redisTestUrl(),
    TESSERA_REDIS_PREFIX: `tessera-e2e:${randomBytes(6).toString('hex')}:`,
    COOKIE_SECRET_SIGN_KEY: randomBytes(32).toString('base64url'),
    TESSERA_ADMIN_TOKEN: ADMIN,
    TESSERA_LOG_LEVEL: 'warn',
    // Both servers sit behind one public origin: it is the issuer of the tokens they accept.
    TESSERA_PUBLIC_URL: 'https://auth.tessera.test',
  };

  beforeAll(async () => {
    if (choice === 'postgres') {
      db = await createTestDatabase('e2e');
      env.TESSERA_STORE = db.url;
    } else if (choice === 'sqlite') {
      dir = mkdtempSync(join(tmpdir(), 'tessera-two-'));
      env.TESSERA_STORE = `sqlite:${join(dir, 'tessera.db')}`;
    }
    [a, b] = await Promise.all([startTessera(env), startTessera(env)]);
    const h = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    expect((await fetch(`${a.url}/api/v1/admin/tenants/${tenant}`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' })).status).toBe(200);
    const u = await fetch(`${a.url}/api/v1/admin/users`, {
      method: 'POST',
      headers: h,
      body: JSON.stringify({ tenantId: tenant, email: 'ada@example.com', password: 'correct horse battery' }),
    });
    expect(u.status).toBe(201);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    if (db !== null) await db.drop();
    else if (dir !== null) rmSync(dir, { recursive: true, force: true });
    else await purgePrefix(redisTestUrl(), env.TESSERA_REDIS_PREFIX);
  });

  let people = 0;
  /** Logs a new person in: one account signs in at most 20 times a minute (docs/security.md, item 13). */
  async function login(server: TesseraProcess): Promise<{ userSessionToken: string; sessionId: string }> {
    const email = `person${++people}@example.com`;
    const u = await fetch(`${server.url}/api/v1/admin/users`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenantId: tenant, email, password: 'correct horse battery' }),
    });
    expect(u.status).toBe(201);
    const r = await fetch(`${server.url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'x-tenant-id': tenant, 'content-type': 'application/json' },
      body: JSON.stringify({ email, password: 'correct horse battery' }),
    });
    expect(r.status).toBe(200);
    return (await r.json()) as { userSessionToken: string; sessionId: string };
  }

  it('a logout on A is refused by the very next request on B, every time', async () => {
    const trials = 20;
    const propagationMs: number[] = [];
    let nextRequestRefused = 0;
    for (let i = 0; i < trials; i++) {
      const { userSessionToken } = await login(a);
      const auth = { authorization: `Bearer ${userSessionToken}` };
      // B has seen the session: it is in B's local cache now.
      expect((await fetch(`${b.url}/api/v1/session`, { headers: auth })).status).toBe(200);
      expect((await fetch(`${b.url}/api/v1/session`, { headers: auth })).status).toBe(200);

      const t0 = performance.now();
      const out = await fetch(`${a.url}/api/v1/auth/logout`, { method: 'POST', headers: auth });
      expect(out.status).toBe(204);
      const first = await fetch(`${b.url}/api/v1/session`, { headers: auth });
      if (first.status === 401) nextRequestRefused += 1;
      let status = first.status;
      for (let tries = 0; status !== 401 && tries < 200; tries++) {
        status = (await fetch(`${b.url}/api/v1/session`, { headers: auth })).status;
      }
      propagationMs.push(performance.now() - t0);
      expect(status).toBe(401);
    }
    propagationMs.sort((x, y) => x - y);
    const pct = (p: number) => propagationMs[Math.min(propagationMs.length - 1, Math.floor((p / 100) * propagationMs.length))]!.toFixed(1);
    console.log(
      `[${choice}] revocation propagation A→B over ${trials} trials (logout request start → B refuses): p50 ${pct(50)} ms, p99 ${pct(99)} ms, max ${pct(100)} ms; very next request refused ${nextRequestRefused}/${trials}`,
    );
    expect(nextRequestRefused).toBe(trials);
  }, 120_000);

  it('an admin revocation on B is honoured by A at once', async () => {
    const { userSessionToken, sessionId } = await login(a);
    const auth = { authorization: `Bearer ${userSessionToken}` };
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${b.url}/api/v1/session`, { headers: auth });
      expect(r.status).toBe(200);
      expect(((await r.json()) as { sessionId: string }).sessionId).toBe(sessionId);
    }
    const admin = await fetch(`${b.url}/api/v1/admin/sessions/${sessionId}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(admin.status).toBe(200);
    expect((await fetch(`${a.url}/api/v1/session`, { headers: auth })).status).toBe(401);
  });
});
