// Banks (issue 15) at the HTTP level against the bank simulator as a separate process: the bank
// registry, the Berlin Group redirect flow's answers from the bank (approve, deny, a forged
// `?result=ok`, a status that turns final late), termination at the bank, accounts read at the
// bank, the consent lifecycle (withdrawal, expiry, retention purge), a bank that is down, slow or
// broken, and mutual TLS with a test CA made here. Runs on SQLite and on Redis.

import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TesseraEvent } from '../../src/events/bus.ts';
import { admin, provision, startTestServer, uniqueTenant, type StoreChoice, type TestServer } from '../support/harness.ts';
import { makeTestPki, startSimulator, type SimulatorProcess, type TestPki } from '../support/bank-simulator.ts';
import { storeChoices } from '../support/store-choices.ts';
import { runBankWork } from '../../src/flows/consent-lifecycle.ts';

const PASSWORD = 'correct horse battery';
const PUBLIC = 'https://tessera.test';
const EMAIL = 'ada@example.com';
const PAYMENT = { amount: '12.50', currency: 'EUR', creditorIban: 'DE89370400440532013000', creditorName: 'Coffee Roasters GmbH' };

type Res = Awaited<ReturnType<TestServer['app']['inject']>>;

function cookieOf(res: Res, name: string): string | null {
  const raw = res.headers['set-cookie'];
  const list = Array.isArray(raw) ? raw : raw ? [raw] : [];
  const c = list.find((x) => x.startsWith(`${name}=`));
  return c ? (c.split(';')[0] as string).slice(name.length + 1) : null;
}

function expectProblem(res: Res, status: number, code: string) {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
  expect(res.json()).toMatchObject({ status, code });
}

/** The tenant of these tests (no demo mode here: a tenant names where bank returns go). */
const TENANT = { profile: 'integration', lifetimes: { appIdle: 600 }, consentReturnUrl: '/app/after-bank' };
const RETURN_PAGE = `${PUBLIC}/app/after-bank`;

interface Browser {
  sid: string;
  xsrf: string;
  handle: string;
  rb: string | null;
}

describe.each(storeChoices())('banks on %s', (choice: StoreChoice) => {
  let s: TestServer;
  let sim: SimulatorProcess;
  const events: TesseraEvent[] = [];

  beforeAll(async () => {
    sim = await startSimulator();
    s = await startTestServer({ store: choice, env: { TESSERA_DEV_ALLOW_HTTP_LOOPBACK: '1', TESSERA_CONSENT_RETENTION: '3600' } });
    s.deps.bus.subscribe((e) => events.push(e));
  });
  afterAll(async () => {
    await s?.close();
    await sim?.stop();
  });

  const putBank = (bankId: string, payload: Record<string, unknown>, headers: Record<string, string> = admin) =>
    s.app.inject({ method: 'PUT', url: `/api/v1/admin/banks/${bankId}`, headers, payload: { name: 'Simulated Bank', protocol: 'berlin-group', ...payload } });

  /** A tenant with a user and the simulator as its bank `bankId`. */
  async function world(bank: Record<string, unknown> = {}, bankId = 'sim', tenant: Record<string, unknown> = {}): Promise<{ tid: string; uid: string; b: Browser; bankId: string }> {
    const tid = uniqueTenant();
    const uid = await provision(s.app, tid, EMAIL, PASSWORD, { ...TENANT, ...tenant });
    const put = await putBank(bankId, { tenantId: tid, baseUrl: sim.url, ...bank });
    expect(put.statusCode, put.body).toBe(201);
    return { tid, uid, b: await login(tid), bankId };
  }

  async function login(tid: string): Promise<Browser> {
    const res = await s.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'x-tenant-id': tid, 'x-auth-mode': 'cookie', origin: PUBLIC },
      payload: { email: EMAIL, password: PASSWORD },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { xsrfToken: string; sessionId: string };
    return { sid: cookieOf(res, '__Host-sid') as string, xsrf: body.xsrfToken, handle: body.sessionId, rb: null };
  }

  const cookieHeader = (b: Browser) => `__Host-sid=${b.sid}` + (b.rb ? `; __Host-rb=${b.rb}` : '');

  function startRaw(b: Browser, payload: Record<string, unknown>, url = '/api/v1/consents') {
    return s.app.inject({ method: 'POST', url, headers: { cookie: cookieHeader(b), 'x-xsrf-token': b.xsrf, origin: PUBLIC }, payload });
  }

  async function start(b: Browser, bankId: string, type: 'ais' | 'pis' = 'ais') {
    const res = await startRaw(b, type === 'ais' ? { type, bankId } : { type, bankId, payment: PAYMENT });
    expect(res.statusCode, res.body).toBe(202);
    b.rb ??= cookieOf(res, '__Host-rb');
    const body = res.json() as { consentId: string; redirectId: string; location: string };
    return { ...body, rid: cookieOf(res, '__Secure-rid') as string };
  }

  function returnTo(b: Browser, st: { redirectId: string; rid: string }, query = '') {
    return s.app.inject({ url: `/api/v1/redirects/${st.redirectId}/return${query}`, headers: { cookie: `__Secure-rid=${st.rid}; __Host-rb=${b.rb!}` } });
  }

  const consent = async (b: Browser, id: string) => {
    const res = await s.app.inject({ url: `/api/v1/consents/${id}`, headers: { cookie: cookieHeader(b) } });
    return { status: res.statusCode, body: res.json() as Record<string, unknown> };
  };
  const accounts = (b: Browser, bankId: string) => s.app.inject({ url: `/api/v1/accounts?bankId=${bankId}`, headers: { cookie: cookieHeader(b) } });
  const bankIdOf = (location: string) => location.slice(location.lastIndexOf('/') + 1);

  describe('registry', () => {
    it('PUT answers 201 then 200, never echoes the client key, seals it at rest; GET and DELETE; tenant admins keep to their tenant', async () => {
      const pki = makeTestPki();
      const tid = uniqueTenant();
      await provision(s.app, tid, EMAIL, PASSWORD, { profile: 'integration' });
      const first = await putBank('acme', { tenantId: tid, baseUrl: 'https://xs2a.acme-bank.example/psd2', tls: { clientCertificate: pki.client.cert, clientKey: pki.client.key, caCertificate: pki.ca } });
      expect(first.statusCode, first.body).toBe(201);
      expect(first.body).not.toContain('PRIVATE KEY');
      expect(first.json()).toMatchObject({ bankId: 'acme', tenantId: tid, protocol: 'berlin-group', timeoutMs: 10_000, tls: { hasClientKey: true, clientCertificate: pki.client.cert, caCertificate: pki.ca } });
      const again = await putBank('acme', { tenantId: tid, baseUrl: 'https://xs2a.acme-bank.example/psd2', timeoutMs: 2500 });
      expect(again.statusCode).toBe(200);
      expect(again.json()).toMatchObject({ timeoutMs: 2500, tls: null });
      // Sealed at rest: the stored record holds no PEM key.
      await putBank('acme', { tenantId: tid, baseUrl: 'https://xs2a.acme-bank.example/psd2', tls: { clientCertificate: pki.client.cert, clientKey: pki.client.key } });
      const stored = await s.store.banks.getBank(tid, 'acme');
      expect(stored?.tls?.sealedClientKey).toMatch(/^v1\./);
      expect(JSON.stringify(stored)).not.toContain('PRIVATE KEY');

      const got = await s.app.inject({ url: `/api/v1/admin/banks/acme?tenantId=${tid}`, headers: admin });
      expect(got.statusCode).toBe(200);
      expect(got.body).not.toContain('PRIVATE KEY');
      expectProblem(await s.app.inject({ url: '/api/v1/admin/banks/acme', headers: admin }), 400, 'invalid_request');

      // Another tenant may use the same bank id for its own bank.
      const other = uniqueTenant();
      await provision(s.app, other, 'eve@example.com', PASSWORD, { profile: 'integration' });
      expect((await putBank('acme', { tenantId: other, baseUrl: 'https://other.example/' })).statusCode).toBe(201);
      expect((await s.app.inject({ url: `/api/v1/admin/banks/acme?tenantId=${tid}`, headers: admin })).json()).toMatchObject({ baseUrl: 'https://xs2a.acme-bank.example/psd2' });

      // A tenant administrator: its own tenant only.
      const adminEmail = 'root@example.com';
      const made = await s.app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { tenantId: tid, email: adminEmail, password: PASSWORD, roles: ['admin'] } });
      expect(made.statusCode).toBe(201);
      const tok = await s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tid }, payload: { email: adminEmail, password: PASSWORD } });
      const tenantAdmin = { authorization: `Bearer ${(tok.json() as { userSessionToken: string }).userSessionToken}` };
      expect((await s.app.inject({ url: '/api/v1/admin/banks/acme', headers: tenantAdmin })).json()).toMatchObject({ tenantId: tid });
      expectProblem(await s.app.inject({ url: `/api/v1/admin/banks/acme?tenantId=${other}`, headers: tenantAdmin }), 403, 'other_tenant');
      expectProblem(await putBank('mine', { tenantId: other, baseUrl: 'https://x.example/' }, tenantAdmin), 403, 'other_tenant');
      expectProblem(await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/banks/acme?tenantId=${other}`, headers: tenantAdmin }), 403, 'other_tenant');
      expect((await putBank('mine', { tenantId: tid, baseUrl: 'https://x.example/' }, tenantAdmin)).statusCode).toBe(201);

      // GET /api/v1/banks for a signed-in user: the tenant's banks, names only.
      const user = await login(tid);
      const list = await s.app.inject({ url: '/api/v1/banks', headers: { cookie: cookieHeader(user) } });
      expect(list.json()).toEqual([
        { bankId: 'acme', name: 'Simulated Bank' },
        { bankId: 'mine', name: 'Simulated Bank' },
      ]);

      expect((await s.app.inject({ method: 'DELETE', url: '/api/v1/admin/banks/mine', headers: tenantAdmin })).statusCode).toBe(204);
      expectProblem(await s.app.inject({ method: 'DELETE', url: '/api/v1/admin/banks/mine', headers: tenantAdmin }), 404, 'bank_not_found');
      // The other tenant's bank "acme" is no bank of this user's tenant's... and vice versa.
      expectProblem(await startRaw(user, { type: 'ais', bankId: 'mine' }), 400, 'unknown_bank');
    });

    it('refuses bad input with a 400 that stores nothing: URL rules, TLS material that does not fit', async () => {
      const pki = makeTestPki();
      const tid = uniqueTenant();
      await provision(s.app, tid, EMAIL, PASSWORD, { profile: 'integration' });
      for (const [baseUrl, code] of [
        ['http://bank.example/', 'insecure_url'],
        ['https://10.1.2.3/', 'outbound_url_refused'],
        ['https://192.168.0.10/', 'outbound_url_refused'],
        ['https://172.20.0.1:8443/', 'outbound_url_refused'],
        ['ftp://bank.example/', 'insecure_url'],
        ['https://bank.example/?x=1', 'insecure_url'],
      ] as const) {
        expectProblem(await putBank('bad', { tenantId: tid, baseUrl }), 400, code);
      }
      expectProblem(await putBank('bad', { tenantId: tid, baseUrl: 'https://bank.example/', tls: { clientCertificate: pki.client.cert } }), 400, 'invalid_tls');
      expectProblem(await putBank('bad', { tenantId: tid, baseUrl: 'https://bank.example/', tls: { clientCertificate: pki.client.cert, clientKey: pki.stranger.key } }), 400, 'invalid_tls');
      expectProblem(await putBank('bad', { tenantId: tid, baseUrl: 'https://bank.example/', tls: { caCertificate: 'not a certificate' } }), 400, 'invalid_tls');
      expectProblem(await putBank('Bad_Id', { tenantId: tid, baseUrl: 'https://bank.example/' }), 400, 'invalid_request');
      expectProblem(await putBank('bad', { tenantId: 'no-such-tenant', baseUrl: 'https://bank.example/' }), 404, 'tenant_not_found');
      expect(await s.store.banks.getBank(tid, 'bad')).toBeNull();
      // A caCertificate alone is fine.
      expect((await putBank('ca-only', { tenantId: tid, baseUrl: 'https://bank.example/', tls: { caCertificate: pki.ca } })).statusCode).toBe(201);
    });
  });

  describe('where a return goes, outside demo mode', () => {
    it('a tenant without consentReturnUrl cannot start a redirect (409 consent_return_url_unset, nothing stored, the bank not asked)', async () => {
      const { b, bankId } = await world({}, 'sim', { consentReturnUrl: null });
      const before = (await sim.requests()).length;
      for (const res of [await startRaw(b, { type: 'ais', bankId }), await startRaw(b, { bankId, ...PAYMENT }, '/api/v1/payments')]) {
        expectProblem(res, 409, 'consent_return_url_unset');
        expect(res.headers['set-cookie']).toBeUndefined();
      }
      expect((await sim.requests()).length).toBe(before);
      const listed = await s.app.inject({ url: '/api/v1/consents', headers: { cookie: cookieHeader(b) } });
      expect(listed.json()).toMatchObject({ items: [] });
    });

    it('cleared while a redirect is at the bank: the return settles the consent and answers 409 with its id and status, never /demo/', async () => {
      const { tid, b, bankId } = await world();
      const ais = await start(b, bankId);
      const cleared = await s.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${tid}`, headers: admin, payload: { ...TENANT, consentReturnUrl: null } });
      expect(cleared.statusCode, cleared.body).toBe(200);
      await sim.decide(ais.location, 'approve');
      const res = await returnTo(b, ais);
      expectProblem(res, 409, 'consent_return_url_unset');
      expect(res.json()).toMatchObject({ consentId: ais.consentId, consentStatus: 'confirmed' });
      expect(res.headers.location).toBeUndefined();
      expect((await consent(b, ais.consentId)).body).toMatchObject({ status: 'confirmed' });
    });
  });

  describe('the bank decides', () => {
    it('AIS approved: confirmed from the bank; PIS denied: rejected', async () => {
      const { b, bankId } = await world();
      const ais = await start(b, bankId);
      expect((await sim.decide(ais.location, 'approve')).status).toBe(303);
      const r1 = await returnTo(b, ais);
      expect(r1.headers.location).toBe(`${RETURN_PAGE}?consentId=${ais.consentId}&status=confirmed`);
      const pis = await start(b, bankId, 'pis');
      expect((await sim.decide(pis.location, 'deny')).status).toBe(303);
      const r2 = await returnTo(b, pis, '?result=nok');
      expect(r2.headers.location).toBe(`${RETURN_PAGE}?consentId=${pis.consentId}&status=rejected`);
      const statusReads = (await sim.requests()).filter((r) => r.path === `/v1/payments/sepa-credit-transfers/${bankIdOf(pis.location)}/status`);
      expect(statusReads.length).toBeGreaterThanOrEqual(1);
      expect((await consent(b, pis.consentId)).body).toMatchObject({ status: 'rejected', type: 'pis', payment: PAYMENT });
    });

    it('a forged ?result=ok on a denied or unfinished consent confirms nothing', async () => {
      const { b, bankId } = await world();
      const denied = await start(b, bankId);
      await sim.decide(denied.location, 'deny');
      const r1 = await returnTo(b, denied, '?result=ok');
      expect(r1.headers.location).toBe(`${RETURN_PAGE}?consentId=${denied.consentId}&status=rejected`);

      const unfinished = await start(b, bankId, 'pis');
      const before = (await sim.requests()).length;
      const r2 = await returnTo(b, unfinished, '?result=ok');
      expect(r2.statusCode).toBe(303);
      expect(r2.headers.location).toBe(`${RETURN_PAGE}?consentId=${unfinished.consentId}&status=pending`);
      // Asked once and again three times, then given up for now: bounded.
      const reads = (await sim.requests()).slice(before).filter((r) => r.path.endsWith('/status'));
      expect(reads).toHaveLength(4);
      expect((await consent(b, unfinished.consentId)).body).toMatchObject({ status: 'pending' });
      expectProblem(await returnTo(b, unfinished, '?result=ok'), 403, 'redirect_invalid');
      expectProblem(await accounts(b, bankId), 403, 'consent_required');
    });

    it('a status that turns final late: re-asked at the return; later by the background re-check; a redirect that lapses expires', async () => {
      const { tid, uid, b, bankId } = await world();
      await sim.behave({ pendingReads: 2 });
      try {
        const soon = await start(b, bankId);
        await sim.decide(soon.location, 'approve');
        const r = await returnTo(b, soon);
        expect(r.headers.location).toBe(`${RETURN_PAGE}?consentId=${soon.consentId}&status=confirmed`);

        await sim.behave({ pendingReads: 6 });
        const late = await start(b, bankId, 'pis');
        await sim.decide(late.location, 'approve');
        const r2 = await returnTo(b, late);
        expect(r2.headers.location).toBe(`${RETURN_PAGE}?consentId=${late.consentId}&status=pending`);
        // Reading it asks once more (still not final at the bank).
        expect((await consent(b, late.consentId)).body).toMatchObject({ status: 'pending' });
        // The background re-check asks until it is final.
        s.clock.advance(31_000);
        await runBankWork(s.deps);
        expect((await s.store.consents.getConsent(tid, uid, late.consentId))?.status).toBe('pending');
        s.clock.advance(31_000);
        await runBankWork(s.deps);
        expect((await s.store.consents.getConsent(tid, uid, late.consentId))?.status).toBe('confirmed');
      } finally {
        await sim.behave({ pendingReads: 0 });
      }

      // Never decided at the bank: when its redirect lapses the re-check marks it expired and
      // tells the bank to forget it.
      const never = await start(b, bankId);
      s.clock.advance(1_201_000);
      await runBankWork(s.deps);
      expect((await s.store.consents.getConsent(tid, uid, never.consentId))?.status).toBe('expired');
      expect((await sim.requests()).some((q) => q.method === 'DELETE' && q.path === `/v1/consents/${bankIdOf(never.location)}`)).toBe(true);
      expect(events.some((e) => e.type === 'consent.expired' && e.details.consentId === never.consentId)).toBe(true);
    });
  });

  describe('lifecycle', () => {
    it('DELETE /api/v1/consents/{id}: revoked and terminated at the bank; retried later when the bank is down; purged after the retention', async () => {
      const { tid, uid, b, bankId } = await world();
      const ais = await start(b, bankId);
      await sim.decide(ais.location, 'approve');
      await returnTo(b, ais);
      expect((await accounts(b, bankId)).statusCode).toBe(200);
      const del = await s.app.inject({ method: 'DELETE', url: `/api/v1/consents/${ais.consentId}`, headers: { cookie: cookieHeader(b), 'x-xsrf-token': b.xsrf, origin: PUBLIC } });
      expect(del.statusCode, del.body).toBe(200);
      expect(del.json()).toMatchObject({ id: ais.consentId, status: 'revoked' });
      expect((await sim.requests()).some((q) => q.method === 'DELETE' && q.path === `/v1/consents/${bankIdOf(ais.location)}`)).toBe(true);
      expectProblem(await accounts(b, bankId), 403, 'consent_required');
      expectProblem(await s.app.inject({ method: 'DELETE', url: `/api/v1/consents/${ais.consentId}`, headers: { cookie: cookieHeader(b), 'x-xsrf-token': b.xsrf, origin: PUBLIC } }), 409, 'consent_ended');
      expectProblem(await s.app.inject({ method: 'DELETE', url: `/api/v1/consents/${ais.consentId}`, headers: { cookie: cookieHeader(b), origin: PUBLIC } }), 403, 'csrf');

      // The bank is down: revoked at once, terminated at the bank later.
      const second = await start(b, bankId);
      await sim.decide(second.location, 'approve');
      await returnTo(b, second);
      await sim.behave({ failStatus: 503 });
      events.length = 0;
      const del2 = await s.app.inject({ method: 'DELETE', url: `/api/v1/consents/${second.consentId}`, headers: { cookie: cookieHeader(b), 'x-xsrf-token': b.xsrf, origin: PUBLIC } });
      expect(del2.json()).toMatchObject({ status: 'revoked' });
      expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['consent.revoked', 'bank.call_failed', 'consent.termination_deferred']));
      expect(events.find((e) => e.type === 'bank.call_failed')).toMatchObject({ details: { bankId, code: 'http_503', operation: 'ais.terminate' } });
      await sim.behave({ failStatus: 0 });
      const path = `/v1/consents/${bankIdOf(second.location)}`;
      const deletesBefore = (await sim.requests()).filter((q) => q.method === 'DELETE' && q.path === path).length;
      s.clock.advance(61_000);
      await runBankWork(s.deps);
      const deletes = (await sim.requests()).filter((q) => q.method === 'DELETE' && q.path === path);
      expect(deletes.length).toBe(deletesBefore + 1);
      expect(events.some((e) => e.type === 'consent.terminated_at_bank' && e.details.consentId === second.consentId)).toBe(true);

      // Purged once the retention (3600 s here) has passed since it ended.
      s.clock.advance(3_500_000);
      await runBankWork(s.deps);
      expect(await s.store.consents.getConsent(tid, uid, second.consentId)).not.toBeNull();
      s.clock.advance(200_000);
      await runBankWork(s.deps);
      expect(await s.store.consents.getConsent(tid, uid, second.consentId)).toBeNull();
      expect((await consent(await login(tid), second.consentId)).status).toBe(404);
    });

    it('validUntil: a confirmed AIS consent reads expired after it; a consent the bank refuses becomes expired (403 consent_required)', async () => {
      const { tid, b, bankId } = await world();
      const ais = await start(b, bankId);
      await sim.decide(ais.location, 'approve');
      await returnTo(b, ais);
      const c = (await consent(b, ais.consentId)).body;
      expect(c.status).toBe('confirmed');
      const validUntil = Date.parse(c.validUntil as string);
      expect(validUntil).toBeGreaterThan(s.clock.now() + 89 * 86_400_000);
      // The bank got the same date.
      const created = (await sim.requests()).find((q) => q.method === 'POST' && q.headers['tpp-redirect-uri']?.includes(ais.redirectId));
      expect(created).toBeDefined();

      // The bank terminates it on its side: the next accounts read is refused, the consent expires.
      const res = await fetch(`${sim.url}/v1/consents/${bankIdOf(ais.location)}`, { method: 'DELETE', headers: { 'x-request-id': crypto.randomUUID() } });
      expect(res.status).toBe(204);
      expectProblem(await accounts(b, bankId), 403, 'consent_required');
      expect((await consent(b, ais.consentId)).body).toMatchObject({ status: 'expired' });

      const fresh = await start(b, bankId);
      await sim.decide(fresh.location, 'approve');
      await returnTo(b, fresh);
      expect((await accounts(b, bankId)).statusCode).toBe(200);
      s.clock.set(validUntil);
      const later = await login(tid);
      expect((await consent(later, fresh.consentId)).body).toMatchObject({ status: 'expired' });
      expectProblem(await accounts(later, bankId), 403, 'consent_required');
    });
  });

  describe('a bank that fails', () => {
    async function expectNothingLeft(tid: string, uid: string, b: Browser, res: Res, status: number) {
      expectProblem(res, status, 'bank_unavailable');
      // Names no address, port or low-level error.
      expect(res.body).not.toMatch(/127\.0\.0\.1|ECONN|localhost|timeout of|:\d{4,5}/);
      expect(cookieOf(res, '__Secure-rid')).toBeNull();
      expect(cookieOf(res, '__Host-rb')).toBeNull();
      expect(cookieOf(res, '__Host-sid')).toBeNull();
      expect((await s.store.consents.listConsents({ tenantId: tid, userId: uid, limit: 10 })).items).toHaveLength(0);
      const redirects = await s.store.listSessions({ tenantId: tid, userId: uid, kind: 'redirect', now: s.clock.now(), limit: 10 });
      expect(redirects.items).toHaveLength(0);
      const me = await s.app.inject({ url: '/api/v1/session', headers: { cookie: cookieHeader(b) } });
      expect(me.json()).toMatchObject({ sessionId: b.handle });
    }

    it('down: 502 bank_unavailable, audited, nothing left behind', async () => {
      const closed = await closedPort();
      const { tid, uid, b } = await world({ baseUrl: `http://127.0.0.1:${closed}` }, 'down');
      events.length = 0;
      await expectNothingLeft(tid, uid, b, await startRaw(b, { type: 'ais', bankId: 'down' }), 502);
      const failed = events.find((e) => e.type === 'bank.call_failed');
      expect(failed).toMatchObject({ tenantId: tid, userId: uid, details: { bankId: 'down', operation: 'ais.start', code: 'unreachable' } });
      expect(JSON.stringify(failed?.details)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|\d{4,5}/);
      expect(events.some((e) => e.type === 'consent.created')).toBe(false);
    });

    it('slow: 504 after the bank timeout (bounded), nothing left behind', async () => {
      const { tid, uid, b, bankId } = await world({ timeoutMs: 300 });
      await sim.behave({ delayMs: 3000 });
      try {
        events.length = 0;
        await expectNothingLeft(tid, uid, b, await startRaw(b, { type: 'ais', bankId }), 504);
        expect(events.find((e) => e.type === 'bank.call_failed')).toMatchObject({ details: { code: 'timeout' } });
      } finally {
        await sim.behave({ delayMs: 0 });
      }
    });

    it('broken: an error status or a 201 without scaRedirect is 502; a payment start too', async () => {
      const { tid, uid, b, bankId } = await world();
      await sim.behave({ failStatus: 500 });
      await expectNothingLeft(tid, uid, b, await startRaw(b, { bankId, ...PAYMENT }, '/api/v1/payments'), 502);
      await sim.behave({ failStatus: 0, omitScaRedirect: true });
      events.length = 0;
      await expectNothingLeft(tid, uid, b, await startRaw(b, { type: 'ais', bankId }), 502);
      expect(events.find((e) => e.type === 'bank.call_failed')).toMatchObject({ details: { code: 'malformed' } });
      await sim.behave({ omitScaRedirect: false });
    });

    it('a private address is refused at connect time unless TESSERA_OUTBOUND_ALLOW names it', async () => {
      const strict = await startTestServer({ sharedStore: s.store, env: {} });
      try {
        const tid = uniqueTenant();
        const uid = await provision(strict.app, tid, EMAIL, PASSWORD, TENANT);
        // Stored directly (as a bank registered when the rules were looser would be).
        await strict.store.banks.putBank({ tenantId: tid, bankId: 'local', name: 'L', protocol: 'berlin-group', baseUrl: sim.url, timeoutMs: 2000, tls: null, createdAt: 0, updatedAt: 0 });
        const res = await strict.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tid, 'x-auth-mode': 'cookie', origin: PUBLIC }, payload: { email: EMAIL, password: PASSWORD } });
        const b: Browser = { sid: cookieOf(res, '__Host-sid') as string, xsrf: (res.json() as { xsrfToken: string }).xsrfToken, handle: '', rb: null };
        const before = (await sim.requests()).length;
        const started = await strict.app.inject({ method: 'POST', url: '/api/v1/consents', headers: { cookie: cookieHeader(b), 'x-xsrf-token': b.xsrf, origin: PUBLIC }, payload: { type: 'ais', bankId: 'local' } });
        expectProblem(started, 502, 'bank_unavailable');
        expect((await sim.requests()).length).toBe(before);
        expect((await strict.store.consents.listConsents({ tenantId: tid, userId: uid, limit: 5 })).items).toHaveLength(0);
      } finally {
        await strict.close(); // the shared store stays open
      }
    });
  });

  describe('mutual TLS', () => {
    let pki: TestPki;
    let tlsSim: SimulatorProcess;
    beforeAll(async () => {
      pki = makeTestPki();
      tlsSim = await startSimulator({ cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca, ca: pki.ca });
    });
    afterAll(async () => {
      await tlsSim?.stop();
    });

    it('with the client certificate from the test CA the flow works; without it, or with another CA’s, the bank refuses', async () => {
      const tid = uniqueTenant();
      const uid = await provision(s.app, tid, EMAIL, PASSWORD, TENANT);
      const put = (bankId: string, tls: Record<string, unknown>) => putBank(bankId, { tenantId: tid, baseUrl: tlsSim.url, tls });
      expect((await put('mtls', { clientCertificate: pki.client.cert, clientKey: pki.client.key, caCertificate: pki.ca })).statusCode).toBe(201);
      expect((await put('no-cert', { caCertificate: pki.ca })).statusCode).toBe(201);
      expect((await put('stranger', { clientCertificate: pki.stranger.cert, clientKey: pki.stranger.key, caCertificate: pki.ca })).statusCode).toBe(201);
      expect((await put('untrusted', {})).statusCode).toBe(201); // the bank's CA not trusted: TLS fails
      const b = await login(tid);

      const ais = await start(b, 'mtls');
      expect(ais.location.startsWith(`${tlsSim.url}/sca/consents/`)).toBe(true);
      expect((await tlsSim.decide(ais.location, 'approve')).status).toBe(303);
      expect((await returnTo(b, ais)).headers.location).toBe(`${RETURN_PAGE}?consentId=${ais.consentId}&status=confirmed`);
      expect((await accounts(b, 'mtls')).statusCode).toBe(200);
      const reqs = await tlsSim.requests();
      expect(reqs.length).toBeGreaterThan(0);
      expect(reqs.every((q) => q.clientCertificate)).toBe(true);

      for (const bankId of ['no-cert', 'stranger', 'untrusted']) {
        events.length = 0;
        const before = (await tlsSim.requests()).length;
        const res = await startRaw(b, { type: 'ais', bankId });
        expectProblem(res, 502, 'bank_unavailable');
        expect(events.find((e) => e.type === 'bank.call_failed')).toMatchObject({ details: { bankId, code: bankId === 'untrusted' ? 'unreachable' : 'http_401' } });
        const after = await tlsSim.requests();
        if (bankId !== 'untrusted') expect(after.slice(before).every((q) => !q.clientCertificate)).toBe(true);
      }
      expect((await s.store.consents.listConsents({ tenantId: tid, userId: uid, limit: 10 })).items).toHaveLength(1);
    });

    it('without the development setting, a loopback bank is reached only when TESSERA_OUTBOUND_ALLOW names it', async () => {
      for (const allow of [null, '127.0.0.1']) {
        const strict = await startTestServer({ sharedStore: s.store, env: allow === null ? {} : { TESSERA_OUTBOUND_ALLOW: allow } });
        try {
          const tid = uniqueTenant();
          await provision(strict.app, tid, EMAIL, PASSWORD, TENANT);
          const put = await strict.app.inject({
            method: 'PUT',
            url: '/api/v1/admin/banks/local-tls',
            headers: admin,
            payload: { tenantId: tid, name: 'L', protocol: 'berlin-group', baseUrl: tlsSim.url, tls: { clientCertificate: pki.client.cert, clientKey: pki.client.key, caCertificate: pki.ca } },
          });
          if (allow === null) {
            expectProblem(put, 400, 'outbound_url_refused');
            continue;
          }
          expect(put.statusCode, put.body).toBe(201);
          const res = await strict.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tid, 'x-auth-mode': 'cookie', origin: PUBLIC }, payload: { email: EMAIL, password: PASSWORD } });
          const b: Browser = { sid: cookieOf(res, '__Host-sid') as string, xsrf: (res.json() as { xsrfToken: string }).xsrfToken, handle: '', rb: null };
          const started = await strict.app.inject({ method: 'POST', url: '/api/v1/consents', headers: { cookie: cookieHeader(b), 'x-xsrf-token': b.xsrf, origin: PUBLIC }, payload: { type: 'ais', bankId: 'local-tls' } });
          expect(started.statusCode, started.body).toBe(202);
        } finally {
          await strict.close(); // the shared store stays open
        }
      }
    });
  });
});

/** A port on 127.0.0.1 that nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const srv: Server = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}
