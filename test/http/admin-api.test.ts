// The admin API for daily operation: platform administrators who are people, users (list, search,
// read, update, disable, password reset, delete), tenants (list, delete), sessions with email and
// a readable device — on every store, with tenant isolation and bad input.

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newConsent } from '../../src/domain/consent.ts';
import { admin, provision, startTestServer, uniqueTenant, type TestServer } from '../support/harness.ts';
import { storeChoices } from '../support/store-choices.ts';

const PASSWORD = 'correct horse battery';
const FIREFOX_MAC = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:133.0) Gecko/20100101 Firefox/133.0';

interface UserJson {
  id: string;
  tenantId: string;
  email: string;
  roles: string[];
  disabled: boolean;
}
interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
interface Login {
  userSessionToken: string;
  sessionId: string;
  refreshToken: string;
}

describe.each(storeChoices({ cluster: true }))('admin API on %s', (store) => {
  let s: TestServer;
  let home: string;
  let other: string;
  let homeAdmin: Login;
  let platformAdmin: Login;

  async function login(tenantId: string, email: string, password = PASSWORD, userAgent?: string) {
    return s.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'x-tenant-id': tenantId, ...(userAgent ? { 'user-agent': userAgent } : {}) },
      payload: { email, password },
    });
  }
  async function loggedIn(tenantId: string, email: string, userAgent?: string): Promise<Login> {
    const r = await login(tenantId, email, PASSWORD, userAgent);
    expect(r.statusCode, r.body).toBe(200);
    return r.json() as Login;
  }
  /** A bearer login's headers; the platform tenant is production, so all the request headers go along. */
  function as(l: Login, tenantId: string) {
    return {
      authorization: `Bearer ${l.userSessionToken}`,
      'x-tenant-id': tenantId,
      'x-request-id': randomUUID(),
      'x-correlation-id': 'admin-test',
      'x-activity-id': randomUUID(),
      'x-session-id': l.sessionId,
    };
  }
  const asPlatform = () => as(platformAdmin, 'platform');
  const asHome = () => as(homeAdmin, home);
  async function createUser(headers: Record<string, string>, tenantId: string, email: string, roles: string[] = []) {
    return s.app.inject({ method: 'POST', url: '/api/v1/admin/users', headers, payload: { tenantId, email, password: PASSWORD, roles } });
  }
  async function userId(tenantId: string, email: string): Promise<string> {
    const r = await s.app.inject({ url: `/api/v1/admin/users?tenantId=${tenantId}&q=${encodeURIComponent(email)}`, headers: admin });
    const found = (r.json() as Page<UserJson>).items.find((u) => u.email === email);
    if (!found) throw new Error(`no ${email}`);
    return found.id;
  }
  async function auditTypes(tenantId: string, type: string) {
    await s.deps.monitor.flush();
    const r = await s.app.inject({ url: `/api/v1/admin/audit?tenantId=${tenantId}&type=${type}`, headers: admin });
    expect(r.statusCode).toBe(200);
    return (r.json() as Page<{ type: string; userId: string | null; details: Record<string, unknown> }>).items;
  }

  beforeAll(async () => {
    s = await startTestServer({ store });
    home = uniqueTenant();
    other = uniqueTenant();
    await provision(s.app, home, 'plain@example.com', PASSWORD);
    await provision(s.app, other, 'someone@example.com', PASSWORD);
    expect((await createUser(admin, home, 'boss@example.com', ['admin'])).statusCode).toBe(201);
    homeAdmin = await loggedIn(home, 'boss@example.com');
    // The reserved tenant exists from the start; the bootstrap credential makes the first platform admin.
    expect((await createUser(admin, 'platform', `root-${store}@example.com`, ['admin'])).statusCode).toBe(201);
    platformAdmin = await loggedIn('platform', `root-${store}@example.com`);
  });
  afterAll(async () => {
    await s.close();
  });

  describe('platform administrators', () => {
    it('the platform tenant exists from the first start', async () => {
      const r = await s.app.inject({ url: '/api/v1/admin/tenants/platform', headers: admin });
      expect(r.statusCode).toBe(200);
      expect(r.json()).toMatchObject({ id: 'platform', profile: 'production' });
    });

    it('act on every tenant, under their own identity in the audit log', async () => {
      const platformAdminId = await userId('platform', `root-${store}@example.com`);
      const r = await createUser(asPlatform(), other, 'made-by-platform@example.com');
      expect(r.statusCode, r.body).toBe(201);
      const made = (r.json() as UserJson).id;
      const list = await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${home}`, headers: asPlatform() });
      expect(list.statusCode).toBe(200);
      const patch = await s.app.inject({ method: 'PATCH', url: `/api/v1/admin/users/${made}?tenantId=${other}`, headers: asPlatform(), payload: { roles: ['auditor'] } });
      expect(patch.statusCode, patch.body).toBe(200);
      const events = await auditTypes(other, 'user.updated');
      const mine = events.find((e) => e.userId === made);
      expect(mine?.details.actor).toEqual({ by: 'user', tenantId: 'platform', userId: platformAdminId });
    });

    it('a tenant administrator can never create one, nor touch the platform tenant', async () => {
      const r = await createUser(asHome(), 'platform', 'sneaky@example.com', ['admin']);
      expect(r.statusCode).toBe(403);
      expect(r.json()).toMatchObject({ code: 'other_tenant' });
      const put = await s.app.inject({ method: 'PUT', url: '/api/v1/admin/tenants/platform', headers: asHome(), payload: {} });
      expect(put.statusCode).toBe(403);
    });

    it('a platform user without the admin role is no administrator', async () => {
      expect((await createUser(admin, 'platform', `viewer-${store}@example.com`)).statusCode).toBe(201);
      const viewer = await loggedIn('platform', `viewer-${store}@example.com`);
      const r = await s.app.inject({ url: `/api/v1/admin/users?tenantId=${home}`, headers: as(viewer, 'platform') });
      expect(r.statusCode).toBe(403);
      expect(r.json()).toMatchObject({ code: 'admin_required' });
    });
  });

  describe('users', () => {
    it('lists a tenant in email order with a cursor, and searches by email prefix', async () => {
      const t = uniqueTenant();
      await provision(s.app, t, 'zed@example.com', PASSWORD);
      for (const e of ['anna@a.example', 'anton@a.example', 'bert@b.example', 'Anja@a.example']) expect((await createUser(admin, t, e)).statusCode).toBe(201);
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const r = await s.app.inject({ url: `/api/v1/admin/users?tenantId=${t}&limit=2${cursor ? `&cursor=${cursor}` : ''}`, headers: admin });
        expect(r.statusCode).toBe(200);
        const page = r.json() as Page<UserJson>;
        expect(page.items.length).toBeLessThanOrEqual(2);
        seen.push(...page.items.map((u) => u.email));
        cursor = page.nextCursor;
      } while (cursor !== null);
      expect(seen).toEqual(['anja@a.example', 'anna@a.example', 'anton@a.example', 'bert@b.example', 'zed@example.com']);

      const search = await s.app.inject({ url: `/api/v1/admin/users?tenantId=${t}&q=AN`, headers: admin });
      expect((search.json() as Page<UserJson>).items.map((u) => u.email)).toEqual(['anja@a.example', 'anna@a.example', 'anton@a.example']);
      const ann = await s.app.inject({ url: `/api/v1/admin/users?tenantId=${t}&q=ann&limit=1`, headers: admin });
      expect(ann.json()).toMatchObject({ items: [{ email: 'anna@a.example', disabled: false }], nextCursor: null });
      const none = await s.app.inject({ url: `/api/v1/admin/users?tenantId=${t}&q=nobody`, headers: admin });
      expect(none.json()).toEqual({ items: [], nextCursor: null });
    });

    it('a tenant administrator lists, reads and changes their own tenant only', async () => {
      const own = await s.app.inject({ url: '/api/v1/admin/users', headers: asHome() });
      expect(own.statusCode).toBe(200);
      expect((own.json() as Page<UserJson>).items.every((u) => u.tenantId === home)).toBe(true);
      const foreign = await s.app.inject({ url: `/api/v1/admin/users?tenantId=${other}`, headers: asHome() });
      expect(foreign.statusCode).toBe(403);
      expect(foreign.json()).toMatchObject({ code: 'other_tenant' });
      const someone = await userId(other, 'someone@example.com');
      for (const [method, payload] of [['GET', undefined], ['PATCH', { disabled: true }], ['DELETE', undefined]] as const) {
        const r = await s.app.inject({ method, url: `/api/v1/admin/users/${someone}?tenantId=${other}`, headers: asHome(), ...(payload ? { payload } : {}) });
        expect(r.statusCode, `${method}`).toBe(403);
      }
      // Without tenantId a tenant administrator means their own tenant: another tenant's user is not found.
      const implicit = await s.app.inject({ url: `/api/v1/admin/users/${someone}`, headers: asHome() });
      expect(implicit.statusCode).toBe(404);
      expect(implicit.json()).toMatchObject({ code: 'user_not_found' });
      // The other tenant's user is untouched.
      expect((await login(other, 'someone@example.com')).statusCode).toBe(200);
    });

    it('reads one user, never with a password hash', async () => {
      const id = await userId(home, 'plain@example.com');
      const r = await s.app.inject({ url: `/api/v1/admin/users/${id}?tenantId=${home}`, headers: admin });
      expect(r.statusCode).toBe(200);
      expect(Object.keys(r.json() as object).sort()).toEqual(['createdAt', 'disabled', 'email', 'id', 'roles', 'tenantId', 'updatedAt']);
    });

    it('disabling ends the sessions and refuses the login with 403 user_disabled; enabling lets them in again', async () => {
      expect((await createUser(admin, home, 'leaver@example.com')).statusCode).toBe(201);
      const id = await userId(home, 'leaver@example.com');
      const before = await loggedIn(home, 'leaver@example.com');
      const r = await s.app.inject({ method: 'PATCH', url: `/api/v1/admin/users/${id}`, headers: asHome(), payload: { disabled: true } });
      expect(r.statusCode, r.body).toBe(200);
      expect(r.json()).toMatchObject({ disabled: true });
      const call = await s.app.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${before.userSessionToken}` } });
      expect(call.statusCode).toBe(401);
      const refresh = await s.app.inject({ method: 'POST', url: '/api/v1/auth/token/refresh', payload: { refreshToken: before.refreshToken } });
      expect(refresh.statusCode).toBe(401);
      const again = await login(home, 'leaver@example.com');
      expect(again.statusCode).toBe(403);
      expect(again.json()).toMatchObject({ code: 'user_disabled' });
      // A wrong password still reads as wrong: the disabled state is told only to the owner of the password.
      expect((await login(home, 'leaver@example.com', 'wrong password here')).statusCode).toBe(401);
      const events = await auditTypes(home, 'user.disabled');
      expect(events.find((e) => e.userId === id)?.details).toMatchObject({ sessionsEnded: 1, actor: { by: 'user', tenantId: home } });

      const enable = await s.app.inject({ method: 'PATCH', url: `/api/v1/admin/users/${id}`, headers: asHome(), payload: { disabled: false } });
      expect(enable.json()).toMatchObject({ disabled: false });
      expect((await login(home, 'leaver@example.com')).statusCode).toBe(200);
    });

    it('a user disabled whose sessions were not ended (the end failed) cannot refresh; PATCH disabled=true again ends the sessions', async () => {
      expect((await createUser(admin, home, 'halfway@example.com')).statusCode).toBe(201);
      const id = await userId(home, 'halfway@example.com');
      const live = await loggedIn(home, 'halfway@example.com');
      // What a PATCH leaves when the user was stored disabled and the end of the sessions failed.
      const u = await s.store.getUser(home, id);
      await s.store.updateUser({ ...u!, disabled: true, updatedAt: u!.updatedAt + 1 });
      const refresh = await s.app.inject({ method: 'POST', url: '/api/v1/auth/token/refresh', payload: { refreshToken: live.refreshToken } });
      expect(refresh.statusCode, refresh.body).toBe(401);
      expect(refresh.json()).toMatchObject({ code: 'invalid_grant' });
      // The session itself is still live until the retried PATCH ends it.
      expect((await s.app.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${live.userSessionToken}` } })).statusCode).toBe(200);
      const r = await s.app.inject({ method: 'PATCH', url: `/api/v1/admin/users/${id}`, headers: asHome(), payload: { disabled: true } });
      expect(r.statusCode, r.body).toBe(200);
      expect(r.json()).toMatchObject({ disabled: true });
      expect((await s.app.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${live.userSessionToken}` } })).statusCode).toBe(401);
      const events = await auditTypes(home, 'user.disabled');
      expect(events.filter((e) => e.userId === id).map((e) => e.details.sessionsEnded)).toEqual([1]);
      // Once nothing is left to end, another disabled=true records nothing more.
      expect((await s.app.inject({ method: 'PATCH', url: `/api/v1/admin/users/${id}`, headers: asHome(), payload: { disabled: true } })).statusCode).toBe(200);
      expect((await auditTypes(home, 'user.disabled')).filter((e) => e.userId === id)).toHaveLength(1);
    });

    it("an administrator's password reset ends the sessions; the new password works, the old does not", async () => {
      expect((await createUser(admin, home, 'forgetful@example.com')).statusCode).toBe(201);
      const id = await userId(home, 'forgetful@example.com');
      const before = await loggedIn(home, 'forgetful@example.com');
      const r = await s.app.inject({ method: 'PATCH', url: `/api/v1/admin/users/${id}?tenantId=${home}`, headers: admin, payload: { password: 'a brand new passphrase' } });
      expect(r.statusCode).toBe(200);
      expect((await s.app.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${before.userSessionToken}` } })).statusCode).toBe(401);
      expect((await login(home, 'forgetful@example.com')).statusCode).toBe(401);
      expect((await login(home, 'forgetful@example.com', 'a brand new passphrase')).statusCode).toBe(200);
      const events = await auditTypes(home, 'user.password_reset');
      const e = events.find((x) => x.userId === id);
      expect(e?.details).toMatchObject({ sessionsEnded: 1, actor: { by: 'bootstrap' } });
      expect(JSON.stringify(e)).not.toContain('brand new');
    });

    it('changes email and roles (user.updated), refusing an email another user has', async () => {
      expect((await createUser(admin, home, 'renamed@example.com')).statusCode).toBe(201);
      const id = await userId(home, 'renamed@example.com');
      const r = await s.app.inject({ method: 'PATCH', url: `/api/v1/admin/users/${id}`, headers: asHome(), payload: { email: 'New.Name@Example.com', roles: ['auditor'] } });
      expect(r.statusCode, r.body).toBe(200);
      expect(r.json()).toMatchObject({ email: 'new.name@example.com', roles: ['auditor'] });
      expect((await login(home, 'new.name@example.com')).statusCode).toBe(200);
      expect((await login(home, 'renamed@example.com')).statusCode).toBe(401);
      // The old address is free again, and listings show the new one only.
      expect((await createUser(admin, home, 'renamed@example.com')).statusCode).toBe(201);
      const listed = await s.app.inject({ url: `/api/v1/admin/users?tenantId=${home}&q=new.name`, headers: admin });
      expect((listed.json() as Page<UserJson>).items.map((u) => u.id)).toEqual([id]);

      const taken = await s.app.inject({ method: 'PATCH', url: `/api/v1/admin/users/${id}`, headers: asHome(), payload: { email: 'plain@example.com' } });
      expect(taken.statusCode).toBe(409);
      expect(taken.json()).toMatchObject({ code: 'user_exists' });
      expect((await login(home, 'new.name@example.com')).statusCode).toBe(200);

      const events = await auditTypes(home, 'user.updated');
      expect(events.find((e) => e.userId === id)?.details).toMatchObject({ fields: ['email', 'roles'], emailBefore: 'renamed@example.com', email: 'new.name@example.com' });
    });

    it('deletes a user: sessions end, the login fails like an unknown user, the audit records stay', async () => {
      expect((await createUser(admin, home, 'gone@example.com')).statusCode).toBe(201);
      const id = await userId(home, 'gone@example.com');
      const before = await loggedIn(home, 'gone@example.com');
      const r = await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/users/${id}`, headers: asHome() });
      expect(r.statusCode).toBe(200);
      expect(r.json()).toEqual({ revoked: 1 });
      expect((await s.app.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${before.userSessionToken}` } })).statusCode).toBe(401);
      expect((await login(home, 'gone@example.com')).json()).toMatchObject({ code: 'invalid_credentials' });
      expect((await s.app.inject({ url: `/api/v1/admin/users/${id}`, headers: asHome() })).statusCode).toBe(404);
      const again = await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/users/${id}`, headers: asHome() });
      expect(again.statusCode).toBe(404);
      expect((await auditTypes(home, 'user.deleted')).find((e) => e.userId === id)?.details).toMatchObject({ email: 'gone@example.com', sessionsEnded: 1 });
      expect((await auditTypes(home, 'session.created')).some((e) => e.userId === id)).toBe(true);
    });

    it('refuses bad input with a problem document and changes nothing', async () => {
      const id = await userId(home, 'plain@example.com');
      const bad: Array<[string, string, unknown, number, string]> = [
        ['GET', `/api/v1/admin/users?tenantId=${home}&limit=0`, undefined, 400, 'invalid_limit'],
        ['GET', `/api/v1/admin/users?tenantId=${home}&limit=501`, undefined, 400, 'invalid_limit'],
        ['GET', `/api/v1/admin/users?tenantId=${home}&limit=1.5`, undefined, 400, 'invalid_limit'],
        ['GET', `/api/v1/admin/users?tenantId=${home}&limit=ten`, undefined, 400, 'invalid_limit'],
        ['GET', `/api/v1/admin/users?tenantId=${home}&cursor=not*a*cursor`, undefined, 400, 'invalid_request'],
        ['GET', `/api/v1/admin/users?tenantId=${home}&cursor=bm9wZQ`, undefined, 400, 'invalid_cursor'],
        ['GET', '/api/v1/admin/users', undefined, 400, 'invalid_request'], // the bootstrap credential must name a tenant
        ['GET', `/api/v1/admin/users?tenantId=${home}&extra=1`, undefined, 400, 'invalid_request'],
        ['PATCH', `/api/v1/admin/users/${id}?tenantId=${home}`, {}, 400, 'invalid_request'],
        ['PATCH', `/api/v1/admin/users/${id}?tenantId=${home}`, { password: 'short' }, 400, 'invalid_request'],
        ['PATCH', `/api/v1/admin/users/${id}?tenantId=${home}`, { email: 'not an email' }, 400, 'invalid_request'],
        ['PATCH', `/api/v1/admin/users/${id}?tenantId=${home}`, { disabled: 'yes' }, 400, 'invalid_request'],
        ['PATCH', `/api/v1/admin/users/${id}?tenantId=${home}`, { roles: ['Admin!'] }, 400, 'invalid_request'],
        ['PATCH', `/api/v1/admin/users/${id}?tenantId=${home}`, { passwordHash: 'x' }, 400, 'invalid_request'],
        ['PATCH', `/api/v1/admin/users/nobody?tenantId=${home}`, { disabled: true }, 404, 'user_not_found'],
        ['DELETE', `/api/v1/admin/users/${id}?tenantId=bad tenant`, undefined, 400, 'invalid_request'],
      ];
      for (const [method, url, payload, status, code] of bad) {
        const r = await s.app.inject({ method: method as 'GET', url, headers: admin, ...(payload !== undefined ? { payload: payload as object } : {}) });
        expect(r.statusCode, `${method} ${url} ${JSON.stringify(payload)}: ${r.body}`).toBe(status);
        expect(r.headers['content-type']).toContain('application/problem+json');
        expect(r.json()).toMatchObject({ code });
      }
      // Every admin listing refuses a page size past its documented maximum the same way.
      for (const [path, max] of [
        ['/api/v1/admin/users', 500],
        ['/api/v1/admin/sessions', 500],
        ['/api/v1/admin/audit', 1000],
        ['/api/v1/admin/anomalies', 1000],
      ] as const) {
        const over = await s.app.inject({ url: `${path}?tenantId=${home}&limit=${max + 1}`, headers: admin });
        expect(over.statusCode, `${path}: ${over.body}`).toBe(400);
        expect(over.json()).toMatchObject({ code: 'invalid_limit', detail: `limit must be an integer from 1 to ${max}.` });
        expect((await s.app.inject({ url: `${path}?tenantId=${home}&limit=${max}`, headers: admin })).statusCode, path).toBe(200);
      }
      const still = await s.app.inject({ url: `/api/v1/admin/users/${id}?tenantId=${home}`, headers: admin });
      expect(still.json()).toMatchObject({ email: 'plain@example.com', disabled: false, roles: [] });
      expect((await login(home, 'plain@example.com')).statusCode).toBe(200);
      expect((await s.app.inject({ url: `/api/v1/admin/users?tenantId=${home}` })).statusCode).toBe(401);
    });
  });

  describe('sessions', () => {
    it('listings carry the email and a readable device', async () => {
      const l = await loggedIn(home, 'plain@example.com', FIREFOX_MAC);
      const r = await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${home}&status=active`, headers: asHome() });
      const item = (r.json() as Page<{ sessionId: string; email: string; device: Record<string, unknown> }>).items.find((x) => x.sessionId === l.sessionId);
      expect(item).toMatchObject({ email: 'plain@example.com', device: { browser: 'Firefox 133', os: 'macOS', type: 'desktop', userAgent: FIREFOX_MAC } });
      const own = await s.app.inject({ url: '/api/v1/sessions', headers: { authorization: `Bearer ${l.userSessionToken}` } });
      const mine = (own.json() as Page<{ sessionId: string; device: Record<string, unknown> }>).items.find((x) => x.sessionId === l.sessionId);
      expect(mine?.device).toMatchObject({ browser: 'Firefox 133', type: 'desktop' });
    });
  });

  describe('audit and anomalies', () => {
    it('listings carry the user’s email beside the user id (null once the user is gone)', async () => {
      const email = `traveller-${store}@example.com`;
      expect((await createUser(admin, home, email)).statusCode).toBe(201);
      const id = await userId(home, email);
      await loggedIn(home, email, FIREFOX_MAC);
      await loggedIn(home, email, 'Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0 Mobile Safari/537.36');
      await s.deps.monitor.flush();
      const audit = await s.app.inject({ url: `/api/v1/admin/audit?tenantId=${home}&userId=${id}`, headers: asPlatform() });
      expect(audit.statusCode, audit.body).toBe(200);
      const records = (audit.json() as Page<{ userId: string; email: string | null }>).items;
      expect(records.length).toBeGreaterThan(0);
      expect(records.every((r) => r.userId === id && r.email === email)).toBe(true);
      const anomalies = await s.app.inject({ url: `/api/v1/admin/anomalies?tenantId=${home}&userId=${id}`, headers: asHome() });
      expect(anomalies.statusCode, anomalies.body).toBe(200);
      const findings = (anomalies.json() as Page<{ userId: string; email: string | null; reason: string }>).items;
      expect(findings.map((f) => [f.reason, f.email])).toContainEqual(['new_device', email]);
      // The export is the hashed record as stored: no email in it.
      const exported = await s.app.inject({ url: `/api/v1/admin/audit/export?tenantId=${home}&userId=${id}`, headers: admin });
      expect(exported.body).not.toContain('"email":"traveller');

      expect((await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/users/${id}?tenantId=${home}`, headers: admin })).statusCode).toBe(200);
      const after = (await s.app.inject({ url: `/api/v1/admin/audit?tenantId=${home}&userId=${id}`, headers: admin })).json() as Page<{ email: string | null }>;
      expect(after.items.length).toBeGreaterThan(0);
      expect(after.items.every((r) => r.email === null)).toBe(true);
    });
  });

  describe('tenants', () => {
    it('a platform administrator lists every tenant; a tenant administrator only their own', async () => {
      const all = await s.app.inject({ url: '/api/v1/admin/tenants', headers: asPlatform() });
      expect(all.statusCode).toBe(200);
      const ids = (all.json() as { items: Array<{ id: string }> }).items.map((t) => t.id);
      expect(ids).toEqual(expect.arrayContaining(['platform', home, other]));
      expect([...ids].sort()).toEqual(ids);
      const own = await s.app.inject({ url: '/api/v1/admin/tenants', headers: asHome() });
      expect((own.json() as { items: Array<{ id: string }> }).items.map((t) => t.id)).toEqual([home]);
    });

    it('deleting a tenant with users needs force; force ends everything of it', async () => {
      const t = uniqueTenant();
      await provision(s.app, t, 'a@example.com', PASSWORD);
      expect((await createUser(admin, t, 'b@example.com')).statusCode).toBe(201);
      const l = await loggedIn(t, 'a@example.com');

      const byTenantAdmin = await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/tenants/${home}`, headers: asHome() });
      expect(byTenantAdmin.statusCode).toBe(403);
      const refused = await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/tenants/${t}`, headers: asPlatform() });
      expect(refused.statusCode).toBe(409);
      expect(refused.json()).toMatchObject({ code: 'tenant_not_empty' });
      expect((await s.app.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${l.userSessionToken}` } })).statusCode).toBe(200);
      const badForce = await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/tenants/${t}?force=maybe`, headers: asPlatform() });
      expect(badForce.statusCode).toBe(400);

      const forced = await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/tenants/${t}?force=true`, headers: asPlatform() });
      expect(forced.statusCode, forced.body).toBe(200);
      expect(forced.json()).toMatchObject({ revoked: 1, usersDeleted: 2 });
      expect((await s.app.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${l.userSessionToken}` } })).statusCode).toBe(401);
      expect((await s.app.inject({ url: `/api/v1/admin/tenants/${t}`, headers: admin })).statusCode).toBe(404);
      const listed = await s.app.inject({ url: '/api/v1/admin/tenants', headers: admin });
      expect((listed.json() as { items: Array<{ id: string }> }).items.map((x) => x.id)).not.toContain(t);
      const deleted = await auditTypes(t, 'tenant.deleted');
      expect(deleted[0]?.details).toMatchObject({ force: true, usersDeleted: 2, sessionsEnded: 1, bankWorkDropped: 0, actor: { by: 'user', tenantId: 'platform' } });

      const empty = uniqueTenant();
      expect((await s.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${empty}`, headers: admin, payload: {} })).statusCode).toBe(200);
      const plain = await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/tenants/${empty}`, headers: admin });
      expect(plain.json()).toMatchObject({ revoked: 0, usersDeleted: 0 });
      // A tenant with no audit record before its deletion still gets this one.
      expect((await auditTypes(empty, 'tenant.deleted')).map((e) => e.details)).toEqual([expect.objectContaining({ force: false, usersDeleted: 0 })]);
      expect((await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/tenants/${empty}`, headers: admin })).statusCode).toBe(404);
      const reserved = await s.app.inject({ method: 'DELETE', url: '/api/v1/admin/tenants/platform?force=true', headers: admin });
      expect(reserved.statusCode).toBe(409);
      expect(reserved.json()).toMatchObject({ code: 'tenant_reserved' });
    });

    it('a process that never saw the tenant before audits its deletion and the sessions it ended', async () => {
      const t = uniqueTenant();
      await provision(s.app, t, 'a@example.com', PASSWORD);
      await loggedIn(t, 'a@example.com');
      const uid = await userId(t, 'a@example.com');
      await s.deps.monitor.flush();
      // Another server on the same store (a restart, or the next process behind the balancer).
      const fresh = await startTestServer({ sharedStore: s.store });
      try {
        const r = await fresh.app.inject({ method: 'DELETE', url: `/api/v1/admin/tenants/${t}?force=true`, headers: admin });
        expect(r.statusCode, r.body).toBe(200);
        await fresh.deps.monitor.flush();
      } finally {
        await fresh.close();
      }
      expect((await auditTypes(t, 'tenant.deleted')).map((e) => e.details)).toEqual([expect.objectContaining({ force: true, sessionsEnded: 1, usersDeleted: 1 })]);
      const revoked = await auditTypes(t, 'session.revoked');
      expect(revoked.filter((e) => e.details.reason === 'tenant_deleted' && e.userId === uid)).toHaveLength(1);
      const verified = await s.app.inject({ url: `/api/v1/admin/audit/verify?tenantId=${t}`, headers: admin });
      expect(verified.json()).toMatchObject({ ok: true });
    });

    it('force deletes everything of the tenant — sessions, users, consents, queued bank work, identities, organizations, apps, banks — and keeps its audit records', async () => {
      const t = uniqueTenant();
      await provision(s.app, t, 'owner@example.com', PASSWORD);
      const owner = await loggedIn(t, 'owner@example.com');
      const ownerId = await userId(t, 'owner@example.com');
      const slug = `org-${t}`.toLowerCase().slice(0, 40);
      const org = await s.app.inject({
        method: 'PUT',
        url: `/api/v1/admin/orgs/${slug}`,
        headers: admin,
        payload: { tenantId: t, oauth: { provider: 'gh', authorizationEndpoint: 'https://gh.example/a', tokenEndpoint: 'https://gh.example/t', userinfoEndpoint: 'https://gh.example/u', clientId: 'x', clientSecret: 'a-client-secret-of-the-org' } },
      });
      expect(org.statusCode, org.body).toBe(200);
      const clientId = `app-${t}`;
      const app = await s.app.inject({ method: 'PUT', url: `/api/v1/admin/apps/${clientId}`, headers: admin, payload: { tenantId: t, redirectUris: ['https://app.example.com/cb'] } });
      expect(app.statusCode, app.body).toBeLessThan(300);
      const bank = await s.app.inject({ method: 'PUT', url: '/api/v1/admin/banks/acme', headers: admin, payload: { tenantId: t, name: 'Acme', protocol: 'berlin-group', baseUrl: 'https://xs2a.acme-bank.example/psd2' } });
      expect(bank.statusCode, bank.body).toBe(201);
      // A consent and an identity link have no admin endpoint: written as the flows write them.
      const now = Date.now();
      const consent = await s.store.consents.createConsent(newConsent({ tenantId: t, userId: ownerId, type: 'ais', bankId: 'acme', expiresAt: now + 600_000 }, now));
      await s.store.federation.linkIdentity({ tenantId: t, issuer: 'https://gh.example', subject: 'gh-1', userId: ownerId, createdAt: now });
      // Queued bank work for that consent, as the consent lifecycle queues it: a status check due
      // soon, a termination retried later, a purge months ahead.
      const farAhead = now + 400 * 86_400_000;
      for (const [kind, dueAt] of [['check', now + 30_000], ['terminate', now + 3_600_000], ['purge', now + 90 * 86_400_000]] as const) {
        await s.store.banks.scheduleWork({ kind, tenantId: t, userId: ownerId, consentId: consent.id }, dueAt);
      }
      const othersWork = { kind: 'purge' as const, tenantId: other, userId: 'u-of-other', consentId: `c-${t}` };
      await s.store.banks.scheduleWork(othersWork, farAhead - 1);
      // Another tenant's records of the same kinds stay.
      const otherBank = await s.app.inject({ method: 'PUT', url: '/api/v1/admin/banks/acme', headers: admin, payload: { tenantId: other, name: 'Acme', protocol: 'berlin-group', baseUrl: 'https://xs2a.acme-bank.example/psd2' } });
      expect(otherBank.statusCode).toBeLessThan(300);

      const r = await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/tenants/${t}?force=true`, headers: asPlatform() });
      expect(r.statusCode, r.body).toBe(200);
      expect(r.json()).toEqual({ revoked: 1, usersDeleted: 1, consentsDeleted: 1, organizationsDeleted: 1, appsDeleted: 1, banksDeleted: 1, identitiesDeleted: 1, bankWorkDropped: 3 });
      // The queue holds nothing of the tenant any more, due or not; the other tenant's item stays.
      const queued = await s.store.banks.claimWork(farAhead, 100_000, 60_000);
      expect(queued.filter((w) => w.tenantId === t)).toEqual([]);
      expect(queued.filter((w) => w.tenantId === other && w.consentId === othersWork.consentId)).toHaveLength(1);
      await s.store.banks.finishWork(othersWork);

      // Nothing of the tenant remains, through the API and in the store.
      expect((await s.app.inject({ url: '/api/v1/session', headers: { authorization: `Bearer ${owner.userSessionToken}` } })).statusCode).toBe(401);
      expect((await login(t, 'owner@example.com')).statusCode).toBeGreaterThanOrEqual(400);
      expect((await s.app.inject({ url: `/api/v1/admin/tenants/${t}`, headers: admin })).statusCode).toBe(404);
      expect((await s.app.inject({ url: `/api/v1/admin/orgs/${slug}`, headers: admin })).statusCode).toBe(404);
      expect((await s.app.inject({ url: `/api/v1/admin/apps/${clientId}`, headers: admin })).statusCode).toBe(404);
      expect((await s.app.inject({ url: `/api/v1/admin/banks/acme?tenantId=${t}`, headers: admin })).statusCode).toBe(404);
      expect((await s.store.listUsers({ tenantId: t, limit: 10 })).items).toEqual([]);
      expect(await s.store.getUser(t, ownerId)).toBeNull();
      expect(await s.store.findUserByEmail(t, 'owner@example.com')).toBeNull();
      expect(await s.store.consents.getConsent(t, ownerId, consent.id)).toBeNull();
      expect(await s.store.federation.findIdentity(t, 'https://gh.example', 'gh-1')).toBeNull();
      expect(await s.store.federation.listIdentities(t)).toEqual([]);
      expect(await s.store.federation.listOrganizations(t)).toEqual([]);
      expect(await s.store.federation.getOrganization(slug)).toBeNull();
      expect(await s.store.oidc.listApps(t)).toEqual([]);
      expect(await s.store.oidc.getApp(clientId)).toBeNull();
      expect(await s.store.banks.listBanks(t)).toEqual([]);
      const active = await s.store.listSessions({ tenantId: t, status: 'active', now: Date.now(), limit: 50 });
      expect(active.items).toEqual([]);
      expect((await s.store.listTenants()).map((x) => x.id)).not.toContain(t);
      expect(await s.store.banks.getBank(other, 'acme')).not.toBeNull();

      // Audit records stay, and the tenant's chain still verifies.
      expect((await auditTypes(t, 'tenant.deleted')).length).toBe(1);
      expect((await auditTypes(t, 'session.created')).length).toBeGreaterThan(0);
      const verified = await s.app.inject({ url: `/api/v1/admin/audit/verify?tenantId=${t}`, headers: admin });
      expect(verified.json()).toMatchObject({ ok: true });
    });
  });
});
