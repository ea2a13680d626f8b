// Redis records written before the listings existed (the tenant and user listings, the tenant's
// organizations and applications, added later than the records): opening the store backfills
// them once (src/store/redis/indexes.ts), so such a user appears in GET /api/v1/admin/users and
// can still log in, and a second open does not scan again.

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/password.ts';
import { loadConfig } from '../../src/config/config.ts';
import { userTag } from '../../src/domain/secrets.ts';
import { buildTenant } from '../../src/domain/tenant.ts';
import { openStore, type Store } from '../../src/store/open.ts';
import { openConnection, type RedisConnection } from '../../src/store/redis/connection.ts';
import { backfillListings } from '../../src/store/redis/indexes.ts';
import { RedisKeys } from '../../src/store/redis/keys.ts';
import { parseRedisUrl } from '../../src/store/redis/url.ts';
import { admin, ADMIN_TOKEN, COOKIE_SECRET, startTestServer, uniqueTenant, type TestServer } from '../support/harness.ts';
import { purgePrefix, redisUrlForTests, requireOrSkip, testPrefix } from '../support/redis.ts';

const redis = await redisUrlForTests();
const skip = requireOrSkip(redis.unavailable);
const PASSWORD = 'correct horse battery';

describe.skipIf(skip)('Redis listings backfilled for records written before them', () => {
  const prefix = testPrefix('listings');
  const keys = new RedisKeys(prefix);
  const tenantId = uniqueTenant();
  const userId = randomUUID();
  const email = 'old-timer@example.com';
  let raw: RedisConnection;
  let store: Store;
  let s: TestServer;

  beforeAll(async () => {
    raw = await openConnection(parseRedisUrl(redis.url), { connectTimeoutMs: 1500, commandTimeoutMs: 2000 });
    const now = Date.now();
    // Written the way the store did before the listings: the tenant record, the email claim and
    // the user record, an organization and an application — and no listing, no marker.
    await raw.send(undefined, ['SET', keys.tenant(tenantId), JSON.stringify(buildTenant(tenantId, { profile: 'integration' }, now))]);
    await raw.send(undefined, ['SET', keys.email(tenantId, email), userId]);
    const user = { id: userId, tenantId, email, passwordHash: await hashPassword(PASSWORD), roles: [], createdAt: now, updatedAt: now };
    await raw.send(undefined, ['SET', keys.user(userTag(tenantId, userId), userId), JSON.stringify(user)]);
    const org = { slug: 'old-org', tenantId, protocol: 'oauth', oidc: null, oauth: null, linkVerifiedEmail: false, createdAt: now, updatedAt: now };
    await raw.send(undefined, ['SET', keys.organization('old-org'), JSON.stringify(org)]);
    const app = { clientId: 'old-app', tenantId, redirectUris: ['https://old.example/cb'], postLogoutRedirectUris: [], orgSlug: null, backchannelLogoutUri: null, sealedClientSecret: null, createdAt: now, updatedAt: now };
    await raw.send(undefined, ['SET', keys.app('old-app'), JSON.stringify(app)]);
    expect(await raw.send(undefined, ['EXISTS', keys.tenantUsers(tenantId), keys.tenants(), keys.meta('listings')])).toBe(0);

    store = await openStore(loadConfig({ TESSERA_STORE: redis.url, TESSERA_REDIS_PREFIX: prefix, COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET, TESSERA_ADMIN_TOKEN: ADMIN_TOKEN }));
    s = await startTestServer({ sharedStore: store });
  });

  afterAll(async () => {
    await s?.close();
    await store?.close();
    await raw?.close();
    await purgePrefix(redis.url, prefix);
  });

  it('lists the old user, tenant, organization and application; the user logs in', async () => {
    const users = await s.app.inject({ url: `/api/v1/admin/users?tenantId=${tenantId}`, headers: admin });
    expect(users.statusCode, users.body).toBe(200);
    expect((users.json() as { items: Array<{ id: string; email: string }> }).items).toEqual([expect.objectContaining({ id: userId, email })]);
    const searched = await s.app.inject({ url: `/api/v1/admin/users?tenantId=${tenantId}&q=old-`, headers: admin });
    expect((searched.json() as { items: unknown[] }).items).toHaveLength(1);
    const tenants = await s.app.inject({ url: '/api/v1/admin/tenants', headers: admin });
    expect((tenants.json() as { items: Array<{ id: string }> }).items.map((t) => t.id)).toContain(tenantId);
    expect((await store.federation.listOrganizations(tenantId)).map((o) => o.slug)).toEqual(['old-org']);
    expect((await store.oidc.listApps(tenantId)).map((a) => a.clientId)).toEqual(['old-app']);
    const login = await s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email, password: PASSWORD } });
    expect(login.statusCode, login.body).toBe(200);
  });

  it('runs once: the marker makes a later open skip the scan, and running it again changes nothing', async () => {
    expect(await backfillListings(raw, keys)).toMatchObject({ scanned: false });
    await raw.send(undefined, ['DEL', keys.meta('listings')]);
    const again = await backfillListings(raw, keys);
    expect(again).toMatchObject({ scanned: true, users: 1, organizations: 1, apps: 1 });
    expect(again.tenants).toBeGreaterThanOrEqual(2); // this tenant and the reserved `platform`
    expect(await raw.send(undefined, ['ZRANGE', keys.tenantUsers(tenantId), '0', '-1'])).toEqual([`${email} ${userId}`]);
  });
});
