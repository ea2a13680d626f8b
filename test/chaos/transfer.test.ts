// Export and import across store kinds (src/store/transfer.ts, `tessera export` / `tessera
// import`): a SQLite store filled through the HTTP API is exported while it serves and imported
// into Redis under its own prefix; a user signs in there with the password set on SQLite, the
// sealed secrets are usable, the audit chain verifies. A wrong COOKIE_SECRET_SIGN_KEY and a
// conflicting record are refused with exit 2 and one line, writing nothing; importing twice
// changes nothing; and back from Redis into a new SQLite store, and into PostgreSQL.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { transferCommand } from '../../src/flows/transfer-cli.ts';
import { openStore } from '../../src/store/open.ts';
import { redisTestUrl } from '../support/harness.ts';
import { createTestDatabase } from '../support/postgres.ts';
import { postgresReachable } from '../support/store-choices.ts';
import { purgePrefix, redisUrlForTests, requireOrSkip, testPrefix } from '../support/redis.ts';
import { CLI, PROJECT_ROOT, startTessera, type TesseraProcess } from '../support/tessera-process.ts';

const ADMIN = 'transfer-admin-' + 'a'.repeat(32);
const PASSWORD = 'correct horse battery';
const TENANT = 't-move';
const redis = await redisUrlForTests();
const skip = requireOrSkip(redis.unavailable);

const dirs: string[] = [];
const servers: TesseraProcess[] = [];
const prefix = testPrefix('transfer');
afterAll(async () => {
  for (const s of servers) await s.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  if (!skip) await purgePrefix(redisTestUrl(), prefix);
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'tessera-transfer-'));
  dirs.push(d);
  return d;
}

function cli(env: Record<string, string>, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: PROJECT_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', TESSERA_LOG_LEVEL: 'warn', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * The same command in this process (transferCommand is what `tessera export|import` runs after
 * reading the configuration): the exit code and the lines it would print, without the second or
 * more a new process costs.
 */
async function inProcess(env: Record<string, string>, command: 'export' | 'import', args: string[]) {
  const config = loadConfig(env);
  const out: string[] = [];
  const err: string[] = [];
  const io = { out: (l: string) => void out.push(l), err: (l: string) => void err.push(l) };
  const status = await transferCommand(command, args, { serverSecret: config.cookieSecret as string, open: () => openStore(config) }, io);
  return { status, stdout: out.join('\n'), stderr: err.join('\n') };
}

async function start(env: Record<string, string>): Promise<TesseraProcess> {
  const s = await startTessera({ ...env, TESSERA_LOG_LEVEL: 'warn' });
  servers.push(s);
  return s;
}

function client(server: TesseraProcess) {
  const h = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
  return {
    async call(method: string, path: string, body?: unknown) {
      const r = await fetch(`${server.url}${path}`, { method, headers: h, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      const text = await r.text();
      return { status: r.status, json: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
    },
    async login(email: string, password = PASSWORD) {
      const r = await fetch(`${server.url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'x-tenant-id': TENANT, 'content-type': 'application/json' },
        body: JSON.stringify({ email, password }),
      });
      return r.status;
    },
  };
}

describe.skipIf(skip)('export and import across store kinds', () => {
  it('SQLite → Redis: users sign in with their passwords, sealed secrets work, the audit chain verifies; refusals write nothing; and back to SQLite', async () => {
    const secret = randomBytes(32).toString('base64url');
    const common = { COOKIE_SECRET_SIGN_KEY: secret, TESSERA_ADMIN_TOKEN: ADMIN, TESSERA_PUBLIC_URL: 'https://auth.tessera.test' };
    const a = tempDir();
    const envSqlite = { ...common, TESSERA_STORE: `sqlite:${join(a, 'tessera.db')}` };
    const envRedis = { ...common, TESSERA_STORE: redisTestUrl(), TESSERA_REDIS_PREFIX: prefix };

    // 1. Fill SQLite through the HTTP API.
    const source = await start(envSqlite);
    const src = client(source);
    expect((await src.call('PUT', `/api/v1/admin/tenants/${TENANT}`, { profile: 'integration', sessionLimit: { max: 4, policy: 'reject_new' } })).status).toBe(200);
    for (const [email, roles] of [
      ['ada@example.com', ['admin']],
      ['bob@example.com', []],
    ] as const) {
      expect((await src.call('POST', '/api/v1/admin/users', { tenantId: TENANT, email, password: PASSWORD, roles })).status).toBe(201);
    }
    const appSecret = 's'.repeat(40);
    expect((await src.call('PUT', '/api/v1/admin/apps/move-app', { tenantId: TENANT, redirectUris: ['https://app.example.com/cb'], clientSecret: appSecret })).status).toBeLessThan(300);
    const oauth = { provider: 'gh', authorizationEndpoint: 'https://gh.example/a', tokenEndpoint: 'https://gh.example/t', userinfoEndpoint: 'https://gh.example/u', clientId: 'x', clientSecret: 'org-client-secret' };
    expect((await src.call('PUT', '/api/v1/admin/orgs/move-org', { tenantId: TENANT, oauth })).status).toBe(200);
    expect((await src.call('PUT', '/api/v1/admin/banks/acme', { tenantId: TENANT, name: 'Acme', protocol: 'berlin-group', baseUrl: 'https://xs2a.acme-bank.example/psd2' })).status).toBe(201);
    expect(await src.login('ada@example.com')).toBe(200);

    // 2. Export while the server runs.
    const file = join(a, 'export.json');
    const exported = cli(envSqlite, ['export', '--out', file]);
    expect(exported.status, exported.stderr).toBe(0);
    expect(JSON.parse(exported.stdout)).toMatchObject({ exported: file, from: 'sqlite', users: 2, organizations: 1, apps: 1, banks: 1 });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    const parsed = JSON.parse(text) as { format: string; version: number; users: Array<{ passwordHash: string }>; apps: Array<{ sealedClientSecret: string }> };
    expect(parsed).toMatchObject({ format: 'tessera-export', version: 1 });
    expect(parsed.users.every((u) => u.passwordHash.startsWith('$argon2id$'))).toBe(true);
    expect(text).not.toContain(appSecret);
    expect(text).not.toContain('org-client-secret');

    // 3. Another key: refused before the store is touched.
    const wrongKey = await inProcess({ ...envRedis, COOKIE_SECRET_SIGN_KEY: randomBytes(32).toString('base64url') }, 'import', [file]);
    expect(wrongKey.status).toBe(2);
    expect(wrongKey.stderr.trim().split('\n')).toHaveLength(1);
    expect(wrongKey.stderr).toMatch(/^tessera: import refused: COOKIE_SECRET_SIGN_KEY/);
    expect(await purgePrefix(redisTestUrl(), prefix)).toBe(0);

    // 4. Into Redis; a second import changes nothing.
    const imported = cli(envRedis, ['import', file]);
    expect(imported.status, imported.stderr).toBe(0);
    expect(JSON.parse(imported.stdout)).toMatchObject({ into: 'redis', written: { users: 2, organizations: 1, apps: 1, banks: 1 } });
    const again = await inProcess(envRedis, 'import', [file]);
    expect(again.status, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ written: { tenants: 0, users: 0, organizations: 0, apps: 0, banks: 0, identities: 0 }, unchanged: { users: 2, apps: 1, banks: 1 } });

    // 5. The Redis server: the users sign in with the passwords set on SQLite; everything is there.
    const target = await start(envRedis);
    const dst = client(target);
    expect(await dst.login('ada@example.com')).toBe(200);
    expect(await dst.login('bob@example.com', 'wrong password!')).toBe(401);
    const tenant = await dst.call('GET', `/api/v1/admin/tenants/${TENANT}`);
    expect(tenant.json).toMatchObject({ profile: 'integration', sessionLimit: { max: 4, policy: 'reject_new' } });
    expect((await dst.call('GET', '/api/v1/admin/apps/move-app')).json).toMatchObject({ tenantId: TENANT, hasClientSecret: true });
    expect((await dst.call('GET', '/api/v1/admin/orgs/move-org')).json).toMatchObject({ tenantId: TENANT, oauth: { hasClientSecret: true } });
    expect((await dst.call('GET', `/api/v1/admin/banks/acme?tenantId=${TENANT}`)).json).toMatchObject({ baseUrl: 'https://xs2a.acme-bank.example/psd2' });
    const users = await dst.call('GET', `/api/v1/admin/users?tenantId=${TENANT}`);
    expect((users.json.items as Array<{ email: string }>).map((u) => u.email)).toEqual(['ada@example.com', 'bob@example.com']);
    // The application's sealed secret unseals under the same key: client authentication at the
    // token endpoint passes it (and fails for a wrong one) — the refusal names the grant, not the client.
    const basic = (s: string) => `Basic ${Buffer.from(`move-app:${s}`).toString('base64')}`;
    const token = (s: string) =>
      fetch(`${target.url}/oidc/token`, { method: 'POST', headers: { authorization: basic(s), 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=authorization_code&code=nope&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb' });
    const right = (await (await token(appSecret)).json()) as { error: string };
    const wrong = (await (await token('w'.repeat(40))).json()) as { error: string };
    expect(wrong.error).toBe('invalid_client');
    expect(right.error).toBe('invalid_grant');
    // The audit records of those sign-ins reach the store with the pipeline's next flush.
    await expect
      .poll(async () => ((await dst.call('GET', `/api/v1/admin/audit/verify?tenantId=${TENANT}`)).json.tenants as Array<{ records: number }>)[0]?.records ?? 0, { timeout: 15_000 })
      .toBeGreaterThan(0);
    expect((await dst.call('GET', `/api/v1/admin/audit/verify?tenantId=${TENANT}`)).json).toMatchObject({ ok: true });
    // The import itself is in that chain, once (the second import wrote nothing): counts only.
    const importAudit = (await dst.call('GET', `/api/v1/admin/audit?tenantId=${TENANT}&type=tenant.imported`)).json.items as Array<{ details: Record<string, unknown> }>;
    expect(importAudit.map((r) => r.details)).toEqual([
      expect.objectContaining({ by: 'tessera import', source: 'sqlite', written: { tenants: 1, users: 2, organizations: 1, apps: 1, banks: 1, identities: 0 } }),
    ]);

    // 6. A conflict refuses the whole import, the new records of the file included.
    const bobId = (users.json.items as Array<{ id: string; email: string }>).find((u) => u.email === 'bob@example.com')!.id;
    expect((await dst.call('PATCH', `/api/v1/admin/users/${bobId}?tenantId=${TENANT}`, { roles: ['auditor'] })).status).toBe(200);
    const withNew = JSON.parse(text) as { tenants: Array<Record<string, unknown>> };
    withNew.tenants.push({ ...withNew.tenants.find((t) => t.id === TENANT)!, id: 't-new' });
    const file2 = join(a, 'export-2.json');
    writeFileSync(file2, JSON.stringify(withNew), { mode: 0o600 });
    const conflict = await inProcess(envRedis, 'import', [file2]);
    expect(conflict.status).toBe(2);
    expect(conflict.stderr.trim().split('\n')).toHaveLength(1);
    expect(conflict.stderr).toContain(`user ${bobId} of tenant "${TENANT}" exists with other content`);
    expect((await dst.call('GET', '/api/v1/admin/tenants/t-new')).status).toBe(404);
    const garbage = join(a, 'garbage.json');
    writeFileSync(garbage, '{"format":"something-else"}');
    const bad = await inProcess(envRedis, 'import', [garbage]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^tessera: import refused: .*not a Tessera export/);

    // 7. And back: from Redis into a new SQLite store.
    const back = join(a, 'back.json');
    const fromRedis = await inProcess(envRedis, 'export', ['--out', back, '--tenant', TENANT]);
    expect(fromRedis.status, fromRedis.stderr).toBe(0);
    expect(JSON.parse(fromRedis.stdout)).toMatchObject({ from: 'redis', tenants: 1, users: 2, organizations: 1, apps: 1, banks: 1 });
    const c = tempDir();
    const envSqlite2 = { ...common, TESSERA_STORE: `sqlite:${join(c, 'tessera.db')}` };
    const intoSqlite = await inProcess(envSqlite2, 'import', [back]);
    expect(intoSqlite.status, intoSqlite.stderr).toBe(0);
    const third = await start(envSqlite2);
    expect(await client(third).login('ada@example.com')).toBe(200);
    expect((await client(third).call('GET', `/api/v1/admin/users/${bobId}?tenantId=${TENANT}`)).json).toMatchObject({ roles: ['auditor'] });

    // 8. The same file into PostgreSQL (when the test server answers): the records arrive as they were.
    if (process.env.TESSERA_REQUIRE_POSTGRES === '1' || postgresReachable()) {
      const db = await createTestDatabase('transfer');
      try {
        const envPg = { ...common, TESSERA_STORE: db.url, TESSERA_STORE_POOL_SIZE: '2' };
        const intoPg = await inProcess(envPg, 'import', [back]);
        expect(intoPg.status, intoPg.stderr).toBe(0);
        expect(JSON.parse(intoPg.stdout)).toMatchObject({ into: 'postgres', written: { tenants: 1, users: 2, organizations: 1, apps: 1, banks: 1 } });
        const pgStore = await openStore(loadConfig(envPg));
        try {
          const file3 = JSON.parse(readFileSync(back, 'utf8')) as { users: Array<{ id: string; passwordHash: string }>; apps: Array<{ sealedClientSecret: string }> };
          const pgUsers = (await pgStore.listUsers({ tenantId: TENANT, limit: 10 })).items;
          expect(pgUsers.map((u) => [u.id, u.passwordHash]).sort()).toEqual(file3.users.map((u) => [u.id, u.passwordHash]).sort());
          expect((await pgStore.oidc.getApp('move-app'))?.sealedClientSecret).toBe(file3.apps[0]!.sealedClientSecret);
        } finally {
          await pgStore.close();
        }
      } finally {
        await db.drop();
      }
    }
  }, 180_000);
});
