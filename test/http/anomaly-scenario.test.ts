// The scripted scenario of issue 7 (docs/monitoring.md §4), on SQLite and on Redis: a login from
// one city and, 10 minutes later, from a city 5,000 km away; a 03:00 login of a user who always
// logs in at office hours; 8 concurrent sessions; a burst of requests. Each must give exactly the
// expected findings, and the tenant's anomalyPolicy exactly the expected action. Locations come
// from trusted proxy headers (the test client is 127.0.0.1, listed in TESSERA_TRUSTED_PROXIES).

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.ts';
import { admin, provision, startTestServer, uniqueTenant, type StoreChoice, type TestServer } from '../support/harness.ts';
import { storeChoices } from '../support/store-choices.ts';

const PASSWORD = 'correct horse battery';
const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0';
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
/** Monday 2 March 2026, 00:00 UTC. */
const DAY0 = Date.UTC(2026, 2, 2);

const FRANKFURT = { 'x-geo-country': 'DE', 'x-geo-city': 'Frankfurt', 'x-geo-lat': '50.1109', 'x-geo-lon': '8.6821', 'x-forwarded-for': '198.51.100.10' };
// 4,840 km from Frankfurt.
const DUBAI = { 'x-geo-country': 'AE', 'x-geo-city': 'Dubai', 'x-geo-lat': '25.2048', 'x-geo-lon': '55.2708', 'x-forwarded-for': '203.0.113.20' };

interface Finding {
  id: string;
  time: string;
  tenantId: string;
  userId: string;
  sessionId: string;
  reason: string;
  evidence: Record<string, unknown>;
  action: string;
}

describe.each(storeChoices())('the anomaly scenario on %s', (choice: StoreChoice) => {
  let s: TestServer;
  const clock = new ManualClock(DAY0);

  beforeAll(async () => {
    s = await startTestServer({
      store: choice,
      clock,
      env: { TESSERA_TRUSTED_PROXIES: '127.0.0.1', TESSERA_ANOMALY_MAX_REQUESTS_PER_MINUTE: '20' },
      throttle: { accountFailures: 100, ipFailures: 1000, windowMs: 60_000 },
    });
  });
  afterAll(async () => {
    await s?.close();
  });

  const login = (tenantId: string, email: string, headers: Record<string, string> = {}, password = PASSWORD) =>
    s.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'x-tenant-id': tenantId, 'user-agent': FIREFOX, ...headers },
      payload: { email, password },
    });
  /** The request headers a production tenant demands on every authenticated call (docs/api.md §Request headers). */
  const api = (tenantId: string, body: { userSessionToken: string; sessionId: string }) => ({
    authorization: `Bearer ${body.userSessionToken}`,
    'x-tenant-id': tenantId,
    'x-session-id': body.sessionId,
    'x-request-id': randomUUID(),
    'x-correlation-id': 'scenario',
    'x-activity-id': randomUUID(),
    'user-agent': FIREFOX,
  });
  const findings = async (tenantId: string): Promise<Finding[]> => {
    await s.deps.monitor.flush();
    const res = await s.app.inject({ url: `/api/v1/admin/anomalies?tenantId=${tenantId}`, headers: admin });
    expect(res.statusCode).toBe(200);
    return ((res.json() as { items: Finding[] }).items).reverse();
  };
  const summary = (fs: Finding[]) => fs.map((f) => `${f.reason}:${f.action}`);

  it('a user who always logs in at office hours, then at 03:00: unusual_hour, and reauth until the password is proven again', async () => {
    const tenantId = uniqueTenant();
    const email = 'office@example.com';
    await provision(s.app, tenantId, email, PASSWORD, { profile: 'production', anomalyPolicy: 'reauth' });
    // Ten working days, logins between 08:00 and 17:00 UTC.
    for (let day = 0; day < 10; day++) {
      clock.set(DAY0 + day * DAY + (8 + ((day * 7) % 9)) * HOUR);
      expect((await login(tenantId, email)).statusCode).toBe(200);
    }
    expect(await findings(tenantId)).toEqual([]);

    clock.set(DAY0 + 10 * DAY + 3 * HOUR);
    const night = await login(tenantId, email);
    expect(night.statusCode).toBe(200);
    const body = night.json() as { userSessionToken: string; sessionId: string; customerId: string };
    const fs = await findings(tenantId);
    expect(summary(fs)).toEqual(['unusual_hour:reauth']);
    expect(fs[0]).toMatchObject({ tenantId, userId: body.customerId, sessionId: body.sessionId, evidence: { hourUtc: 3, pastLogins: 10, share: 0 } });

    const me = () => s.app.inject({ url: '/api/v1/session', headers: api(tenantId, body) });
    const blocked = await me();
    expect(blocked.statusCode).toBe(401);
    expect(blocked.json()).toMatchObject({ code: 'reauth_required' });
    const reauth = (password: string) => s.app.inject({ method: 'POST', url: '/api/v1/auth/reauth', headers: api(tenantId, body), payload: { password } });
    expect((await reauth('wrong password')).json()).toMatchObject({ code: 'invalid_credentials' });
    expect((await me()).statusCode).toBe(401);
    expect((await reauth(PASSWORD)).statusCode).toBe(204);
    expect((await me()).statusCode).toBe(200);
    // The earlier sessions were never marked.
    await s.deps.monitor.flush();
    const audit = await s.app.inject({ url: `/api/v1/admin/audit?tenantId=${tenantId}&type=session.reauthenticated,login.failed`, headers: admin });
    expect((audit.json() as { items: Array<{ type: string; details: Record<string, unknown> }> }).items.map((r) => [r.type, r.details])).toEqual([
      ['session.reauthenticated', { cleared: true }],
      ['login.failed', { reason: 'reauth_failed' }],
    ]);
  });

  it('Frankfurt, then Dubai 10 minutes later: impossible_travel and new_location, and the new session is revoked', async () => {
    clock.set(DAY0 + 11 * DAY + 10 * HOUR);
    const tenantId = uniqueTenant();
    const email = 'traveller@example.com';
    await provision(s.app, tenantId, email, PASSWORD, { profile: 'production', anomalyPolicy: 'revoke' });
    const first = await login(tenantId, email, FRANKFURT);
    expect(first.statusCode).toBe(200);
    const firstBody = first.json() as { userSessionToken: string; sessionId: string };
    clock.advance(10 * MIN);
    const second = await login(tenantId, email, DUBAI);
    expect(second.statusCode).toBe(401);
    expect(second.json()).toMatchObject({ code: 'anomaly_detected' });

    const fs = await findings(tenantId);
    expect(summary(fs)).toEqual(['impossible_travel:revoke', 'new_location:revoke']);
    const travel = fs[0] as Finding;
    expect(travel.evidence).toMatchObject({ from: { city: 'Frankfurt', country: 'DE' }, to: { city: 'Dubai', country: 'AE' }, minutes: 10, thresholdKmh: 1000 });
    expect(travel.evidence.distanceKm).toBeGreaterThan(4700);
    expect(travel.evidence.distanceKm).toBeLessThan(5000);
    expect(fs[1]?.evidence).toEqual({ location: 'AE/Dubai', known: ['DE/Frankfurt'] });
    // The Dubai session was created and ended at once (reason anomaly); the Frankfurt one goes on.
    const sessions = await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${tenantId}`, headers: admin });
    const items = (sessions.json() as { items: Array<{ sessionId: string; status: string; revokeReason: string | null; device: Record<string, unknown> }> }).items;
    expect(items.map((i) => [i.status, i.revokeReason])).toEqual([
      ['active', null],
      ['revoked', 'anomaly'],
    ]);
    expect(items[1]?.device).toMatchObject({ ip: '203.0.113.20', location: { city: 'Dubai' } });
    expect(items[1]?.sessionId).toBe(travel.sessionId);
    expect((await s.app.inject({ url: '/api/v1/session', headers: api(tenantId, firstBody) })).statusCode).toBe(200);
    // The finding is in the audit log with the request's headers, IP and location.
    const audit = await s.app.inject({ url: `/api/v1/admin/audit?tenantId=${tenantId}&type=anomaly.detected&limit=1`, headers: admin });
    expect((audit.json() as { items: unknown[] }).items[0]).toMatchObject({ ip: '203.0.113.20', location: { city: 'Dubai', lat: 25.2048 }, userAgent: FIREFOX });
  });

  it('the same trip on an integration tenant with policy revoke: recorded only (docs/api.md §Tenants and profiles)', async () => {
    clock.set(DAY0 + 12 * DAY + 10 * HOUR);
    const tenantId = uniqueTenant();
    const email = 'tester@example.com';
    await provision(s.app, tenantId, email, PASSWORD, { profile: 'integration', anomalyPolicy: 'revoke' });
    expect((await login(tenantId, email, FRANKFURT)).statusCode).toBe(200);
    clock.advance(10 * MIN);
    expect((await login(tenantId, email, DUBAI)).statusCode).toBe(200);
    expect(summary(await findings(tenantId))).toEqual(['impossible_travel:record', 'new_location:record']);
  });

  it('8 concurrent sessions: concurrent_sessions for the 6th, 7th and 8th, recorded, all sessions kept', async () => {
    clock.set(DAY0 + 13 * DAY + 14 * HOUR);
    const tenantId = uniqueTenant();
    const email = 'busy@example.com';
    await provision(s.app, tenantId, email, PASSWORD, { profile: 'production', anomalyPolicy: 'record', sessionLimit: { max: 20 } });
    for (let i = 0; i < 8; i++) {
      expect((await login(tenantId, email)).statusCode).toBe(200);
      clock.advance(MIN);
    }
    const fs = await findings(tenantId);
    expect(summary(fs)).toEqual(['concurrent_sessions:record', 'concurrent_sessions:record', 'concurrent_sessions:record']);
    expect(fs.map((f) => f.evidence)).toEqual([
      { active: 6, threshold: 5 },
      { active: 7, threshold: 5 },
      { active: 8, threshold: 5 },
    ]);
    const active = await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${tenantId}&status=active`, headers: admin });
    expect((active.json() as { items: unknown[] }).items).toHaveLength(8);
  });

  it('a burst of requests: request_rate once, then the session must re-authenticate', async () => {
    clock.set(DAY0 + 14 * DAY + 11 * HOUR);
    const tenantId = uniqueTenant();
    const email = 'script@example.com';
    await provision(s.app, tenantId, email, PASSWORD, { profile: 'production', anomalyPolicy: 'reauth' });
    const body = (await login(tenantId, email)).json() as { userSessionToken: string; sessionId: string };
    const statuses: number[] = [];
    for (let i = 0; i < 21; i++) statuses.push((await s.app.inject({ url: '/api/v1/session', headers: api(tenantId, body) })).statusCode);
    expect(statuses.every((c) => c === 200)).toBe(true);
    const fs = await findings(tenantId);
    expect(summary(fs)).toEqual(['request_rate:reauth']);
    expect(fs[0]).toMatchObject({ sessionId: body.sessionId, evidence: { requests: 21, windowSeconds: 60, threshold: 20 } });
    const after = await s.app.inject({ url: '/api/v1/session', headers: api(tenantId, body) });
    expect(after.json()).toMatchObject({ code: 'reauth_required' });
    // More requests in the same window do not report again; logout still works.
    for (let i = 0; i < 5; i++) await s.app.inject({ url: '/api/v1/session', headers: api(tenantId, body) });
    expect(await findings(tenantId)).toHaveLength(1);
    expect((await s.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: api(tenantId, body) })).statusCode).toBe(204);
  });

  it('a reauth mark set by one server holds on another server that had the session cached', async () => {
    clock.set(DAY0 + 15 * DAY + 11 * HOUR);
    const other = await startTestServer({ sharedStore: s.store, clock, env: { TESSERA_ANOMALY_MAX_REQUESTS_PER_MINUTE: '20' } });
    try {
      const tenantId = uniqueTenant();
      const email = 'two-servers@example.com';
      await provision(s.app, tenantId, email, PASSWORD, { profile: 'production', anomalyPolicy: 'reauth' });
      const body = (await login(tenantId, email)).json() as { userSessionToken: string; sessionId: string };
      // The other server has the session in its cache now.
      expect((await other.app.inject({ url: '/api/v1/session', headers: api(tenantId, body) })).statusCode).toBe(200);
      const marked = new Promise<void>((resolve) => {
        const stop = other.deps.monitor.watch({ tenantId, types: ['anomaly.detected'] }, () => {
          stop();
          resolve();
        });
      });
      for (let i = 0; i < 21; i++) await s.app.inject({ url: '/api/v1/session', headers: api(tenantId, body) });
      await s.deps.monitor.flush();
      await marked; // the finding reached the other server through the store's feed
      expect((await other.app.inject({ url: '/api/v1/session', headers: api(tenantId, body) })).json()).toMatchObject({ code: 'reauth_required' });
      // Proving the password on the other server clears it on the first one too.
      const cleared = new Promise<void>((resolve) => {
        const stop = s.deps.monitor.watch({ tenantId, types: ['session.reauthenticated'] }, () => {
          stop();
          resolve();
        });
      });
      expect((await other.app.inject({ method: 'POST', url: '/api/v1/auth/reauth', headers: api(tenantId, body), payload: { password: PASSWORD } })).statusCode).toBe(204);
      await other.deps.monitor.flush();
      await cleared;
      expect((await s.app.inject({ url: '/api/v1/session', headers: api(tenantId, body) })).statusCode).toBe(200);
    } finally {
      await other.close();
    }
  });

  it('every finding is in the hash-chained audit log, and the chains verify', async () => {
    await s.deps.monitor.flush();
    const res = await s.app.inject({ url: '/api/v1/admin/audit/verify', headers: admin });
    const report = res.json() as { ok: boolean; tenants: Array<{ ok: boolean; records: number }> };
    expect(report.ok).toBe(true);
    expect(report.tenants.length).toBeGreaterThanOrEqual(5);
  });
});
