// Consent redirects at the HTTP level (issue 4, docs/api.md §Consent redirects): the redirect
// cookie per return path, the single-use return (replay, no cookie, another redirect's cookie), a
// denial, AIS supersede, PIS per payment, and the session rule of "The session after a return" — a
// still-valid session is kept, an expired one is renewed once and every return from it gets the
// same successor. The bank is the bank simulator as a separate process (issue 15): the user
// approves or denies there, and Tessera asks it for the status. Runs on SQLite and on Redis.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TesseraEvent } from '../../src/events/bus.ts';
import { admin, provision as provisionTenant, startTestServer, uniqueTenant, type StoreChoice, type TestServer } from '../support/harness.ts';
import { storeChoices } from '../support/store-choices.ts';
import { startSimulator, type SimulatorProcess } from '../support/bank-simulator.ts';

const PASSWORD = 'correct horse battery';
const PUBLIC = 'https://tessera.test';
const BANK = 'sim-bank';
const PAYMENT = { amount: '12.50', currency: 'EUR', creditorIban: 'DE89370400440532013000', creditorName: 'Coffee Roasters GmbH' };

type Res = Awaited<ReturnType<TestServer['app']['inject']>>;

function cookiesOf(res: Res): Array<{ name: string; value: string; attrs: string }> {
  const raw = res.headers['set-cookie'];
  const list = Array.isArray(raw) ? raw : raw ? [raw] : [];
  return list.map((c) => {
    const [pair, ...attrs] = c.split(';');
    const eq = (pair as string).indexOf('=');
    return { name: (pair as string).slice(0, eq), value: (pair as string).slice(eq + 1), attrs: attrs.join(';') };
  });
}

function cookieOf(res: Res, name: string) {
  return cookiesOf(res).find((c) => c.name === name) ?? null;
}

interface Browser {
  sid: string;
  xsrf: string;
  handle: string;
  /** The browser's `__Host-rb` redirect binding, once a start has set it. */
  rb?: string;
}

interface Started {
  consentId: string;
  redirectId: string;
  location: string;
  rid: string;
  res: Res;
}

describe.each(storeChoices({ cluster: true }))('consent redirects on %s', (choice: StoreChoice) => {
  let s: TestServer;
  let sim: SimulatorProcess;
  let tenantId: string;
  const email = 'ada@example.com';
  const events: TesseraEvent[] = [];

  /** A tenant with a user and the simulator registered as its bank `sim-bank`. */
  async function provision(app: TestServer['app'], tid: string, mail: string, password: string, tenant: Record<string, unknown>): Promise<string> {
    const uid = await provisionTenant(app, tid, mail, password, tenant);
    const put = await app.inject({
      method: 'PUT',
      url: `/api/v1/admin/banks/${BANK}`,
      headers: admin,
      payload: { tenantId: tid, name: 'Simulated Bank', protocol: 'berlin-group', baseUrl: sim.url },
    });
    if (put.statusCode !== 201) throw new Error(`bank: ${put.statusCode} ${put.body}`);
    return uid;
  }

  beforeAll(async () => {
    sim = await startSimulator();
    s = await startTestServer({ store: choice, env: { TESSERA_DEMO: '1', TESSERA_DEV_ALLOW_HTTP_LOOPBACK: '1', TESSERA_DEMO_BANK_URL: sim.url } });
    s.deps.bus.subscribe((e) => events.push(e));
    tenantId = uniqueTenant();
    await provision(s.app, tenantId, email, PASSWORD, { profile: 'integration', lifetimes: { appIdle: 120 } });
  });
  afterAll(async () => {
    await s?.close();
    await sim?.stop();
  });

  async function login(tid = tenantId): Promise<Browser> {
    const res = await s.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'x-tenant-id': tid, 'x-auth-mode': 'cookie', origin: PUBLIC },
      payload: { email, password: PASSWORD },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { xsrfToken: string; sessionId: string };
    return { sid: cookieOf(res, '__Host-sid')!.value, xsrf: body.xsrfToken, handle: body.sessionId };
  }

  const sidCookie = (b: Browser) => `__Host-sid=${b.sid}`;

  /** Which browser binding each redirect was started with (what that browser sends back). */
  const bindingOf = new Map<string, string>();
  /** The bank's SCA page of each redirect. */
  const scaOf = new Map<string, string>();

  async function start(b: Browser, payload: Record<string, unknown> = { type: 'ais', bankId: BANK }, url = '/api/v1/consents'): Promise<Started> {
    const res = await s.app.inject({
      method: 'POST',
      url,
      headers: { cookie: sidCookie(b) + (b.rb ? `; __Host-rb=${b.rb}` : ''), 'x-xsrf-token': b.xsrf, origin: PUBLIC },
      payload,
    });
    expect(res.statusCode, res.body).toBe(202);
    b.rb ??= cookieOf(res, '__Host-rb')?.value;
    const body = res.json() as { consentId: string; redirectId: string; location: string };
    bindingOf.set(body.redirectId, b.rb as string);
    scaOf.set(body.redirectId, body.location);
    return { ...body, rid: cookieOf(res, '__Secure-rid')!.value, res };
  }

  const pay = (b: Browser, over: Record<string, unknown> = {}) => start(b, { bankId: BANK, ...PAYMENT, ...over }, '/api/v1/payments');

  /**
   * The user approves (`ok`) or denies (`nok`) at the bank — once; a second decision is refused
   * by the bank and changes nothing — and the browser returns as the starting browser makes it
   * (its binding), or with the binding given.
   */
  async function back(redirectId: string, rid: string | null, result = 'ok', rb: string | null = bindingOf.get(redirectId) ?? null): Promise<Res> {
    const sca = scaOf.get(redirectId);
    if (sca !== undefined && (result === 'ok' || result === 'nok')) {
      const d = await sim.decide(sca, result === 'ok' ? 'approve' : 'deny');
      if (d.status === 303) {
        // The bank sends the browser to the TPP-Redirect-URI (or the Nok one) Tessera gave it.
        expect(d.location).toBe(`${PUBLIC}/api/v1/redirects/${redirectId}/return${result === 'ok' ? '' : '?result=nok'}`);
      }
    }
    const cookies = [...(rid === null ? [] : [`__Secure-rid=${rid}`]), ...(rb === null ? [] : [`__Host-rb=${rb}`])];
    return s.app.inject({
      url: `/api/v1/redirects/${redirectId}/return?result=${result}`,
      headers: cookies.length === 0 ? {} : { cookie: cookies.join('; ') },
    });
  }

  const me = (b: Browser) => s.app.inject({ url: '/api/v1/session', headers: { cookie: sidCookie(b) } });
  const consent = async (b: Browser, id: string) =>
    (await s.app.inject({ url: `/api/v1/consents/${id}`, headers: { cookie: sidCookie(b) } })).json() as Record<string, unknown>;
  const accounts = (b: Browser) => s.app.inject({ url: `/api/v1/accounts?bankId=${BANK}`, headers: { cookie: sidCookie(b) } });

  function expectProblem(res: Res, status: number, code: string) {
    expect(res.statusCode, res.body).toBe(status);
    expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(res.json()).toMatchObject({ status, code });
  }

  async function appSessions(tid: string, uid: string) {
    const res = await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${tid}&userId=${uid}&kind=app`, headers: admin });
    return (res.json() as { items: Array<{ sessionId: string; status: string; authMethod: string }> }).items;
  }

  describe('start', () => {
    it('refuses a planted redirect cookie: the return needs the binding of the browser that started it', async () => {
      const attacker = await login();
      const victim = await login();
      await start(victim); // the victim's browser has a binding of its own
      const planted = await start(attacker);
      // The attacker's redirect cookie, shown by the victim's browser (its own binding).
      const refused = await back(planted.redirectId, planted.rid, 'ok', victim.rb as string);
      expectProblem(refused, 403, 'redirect_other_browser');
      expect(cookieOf(refused, '__Host-sid')).toBeNull();
      expectProblem(await back(planted.redirectId, planted.rid, 'ok', null), 403, 'redirect_other_browser');
      // Nothing was consumed: the attacker's own browser still completes its redirect.
      expect((await back(planted.redirectId, planted.rid)).statusCode).toBe(303);
    });

    it('limits how many redirects one user starts per minute (429 too_many_redirects)', async () => {
      const tid = uniqueTenant();
      await provision(s.app, tid, email, PASSWORD, { profile: 'integration' });
      const b = await login(tid);
      for (let i = 0; i < 30; i++) await start(b);
      const over = await s.app.inject({
        method: 'POST',
        url: '/api/v1/consents',
        headers: { cookie: sidCookie(b), 'x-xsrf-token': b.xsrf, origin: PUBLIC },
        payload: { type: 'ais', bankId: BANK },
      });
      expect(over.statusCode).toBe(429);
      expect(over.json()).toMatchObject({ code: 'too_many_redirects' });
      expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
      s.clock.advance(60_000);
      await start(b);
    });

    it('sets a redirect cookie for its own return path and leaves the session cookie alone', async () => {
      const b = await login();
      const st = await start(b);
      // The location is the bank's scaRedirect; the bank got the return URL as TPP-Redirect-URI.
      expect(st.location.startsWith(`${sim.url}/sca/consents/`)).toBe(true);
      const bankConsentId = st.location.slice(`${sim.url}/sca/consents/`.length);
      const created = (await sim.requests()).find((r) => r.method === 'POST' && r.headers['tpp-redirect-uri']?.includes(st.redirectId));
      expect(created).toMatchObject({
        path: '/v1/consents',
        headers: {
          'tpp-redirect-uri': `${PUBLIC}/api/v1/redirects/${st.redirectId}/return`,
          'tpp-nok-redirect-uri': `${PUBLIC}/api/v1/redirects/${st.redirectId}/return?result=nok`,
          'psu-ip-address': '127.0.0.1',
        },
      });
      expect(created!.headers['x-request-id']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(bankConsentId).toMatch(/^[0-9a-f]{32}$/);
      const cookies = cookiesOf(st.res);
      // The browser's first start also sets its redirect binding: a __Host- cookie for the whole site.
      expect(cookies.map((c) => c.name)).toEqual(['__Host-rb', '__Secure-rid']);
      const rb = cookies.find((c) => c.name === '__Host-rb')!.attrs;
      for (const a of [/Path=\/(;|$)/, /SameSite=Lax/, /Secure/, /HttpOnly/]) expect(rb).toMatch(a);
      expect(rb).not.toMatch(/Domain=/);
      expect(cookiesOf((await start(b)).res).map((c) => c.name)).toEqual(['__Secure-rid']);
      const attrs = cookies.find((c) => c.name === '__Secure-rid')!.attrs;
      expect(attrs).toMatch(new RegExp(`Path=/api/v1/redirects/${st.redirectId.replace('.', '\\.')}(;|$)`));
      expect(attrs).toMatch(/SameSite=Lax/);
      expect(attrs).toMatch(/Secure/);
      expect(attrs).toMatch(/HttpOnly/);
      expect(attrs).toMatch(/Max-Age=1200/);
      expect(st.res.headers['cache-control']).toBe('no-store');
      expect(await consent(b, st.consentId)).toMatchObject({ id: st.consentId, type: 'ais', status: 'pending', bankId: BANK, confirmedAt: null });
      expect((await me(b)).statusCode).toBe(200);
    });

    it('needs a cookie session with its XSRF token, and a known bank', async () => {
      const b = await login();
      const noXsrf = await s.app.inject({ method: 'POST', url: '/api/v1/consents', headers: { cookie: sidCookie(b), origin: PUBLIC }, payload: { type: 'ais', bankId: BANK } });
      expectProblem(noXsrf, 403, 'csrf');
      const foreign = await s.app.inject({
        method: 'POST',
        url: '/api/v1/consents',
        headers: { cookie: sidCookie(b), 'x-xsrf-token': b.xsrf, origin: 'https://evil.example' },
        payload: { type: 'ais', bankId: BANK },
      });
      expectProblem(foreign, 403, 'csrf');
      const token = await s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email, password: PASSWORD } });
      const bearer = { authorization: `Bearer ${(token.json() as { userSessionToken: string }).userSessionToken}` };
      expectProblem(await s.app.inject({ method: 'POST', url: '/api/v1/consents', headers: bearer, payload: { type: 'ais', bankId: BANK } }), 403, 'cookie_session_required');
      expectProblem(
        await s.app.inject({ method: 'POST', url: '/api/v1/consents', headers: { cookie: sidCookie(b), 'x-xsrf-token': b.xsrf }, payload: { type: 'ais', bankId: 'other-bank' } }),
        400,
        'unknown_bank',
      );
      expectProblem(await s.app.inject({ method: 'POST', url: '/api/v1/consents', payload: { type: 'ais', bankId: BANK } }), 401, 'unauthenticated');
    });

    it('validates payments: a bad IBAN, amount or currency is a 400 that stores nothing', async () => {
      const b = await login();
      const before = (await s.app.inject({ url: '/api/v1/consents?limit=100', headers: { cookie: sidCookie(b) } })).json() as { items: unknown[] };
      for (const [field, value] of [
        ['creditorIban', 'DE89370400440532013001'],
        ['amount', '0'],
        ['amount', '1.234'],
        ['currency', 'eur'],
      ] as const) {
        const res = await s.app.inject({
          method: 'POST',
          url: '/api/v1/payments',
          headers: { cookie: sidCookie(b), 'x-xsrf-token': b.xsrf },
          payload: { bankId: BANK, ...PAYMENT, [field]: value },
        });
        expectProblem(res, 400, 'invalid_payment');
        expect(cookieOf(res, '__Secure-rid')).toBeNull();
      }
      const aisWithPayment = await s.app.inject({
        method: 'POST',
        url: '/api/v1/consents',
        headers: { cookie: sidCookie(b), 'x-xsrf-token': b.xsrf },
        payload: { type: 'ais', bankId: BANK, payment: PAYMENT },
      });
      expectProblem(aisWithPayment, 400, 'invalid_request');
      const pisWithout = await s.app.inject({
        method: 'POST',
        url: '/api/v1/consents',
        headers: { cookie: sidCookie(b), 'x-xsrf-token': b.xsrf },
        payload: { type: 'pis', bankId: BANK },
      });
      expectProblem(pisWithout, 400, 'invalid_payment');
      const after = (await s.app.inject({ url: '/api/v1/consents?limit=100', headers: { cookie: sidCookie(b) } })).json() as { items: unknown[] };
      expect(after.items).toHaveLength(before.items.length);
    });
  });

  describe('return', () => {
    it('confirms, clears the redirect cookie, keeps a still-valid session (no new cookie), 303 to the app page', async () => {
      const b = await login();
      const st = await start(b);
      const res = await back(st.redirectId, st.rid);
      expect(res.statusCode).toBe(303);
      expect(res.headers.location).toBe(`${PUBLIC}/demo/?consentId=${st.consentId}&status=confirmed`);
      const cookies = cookiesOf(res);
      expect(cookies.map((c) => c.name)).toEqual(['__Secure-rid']);
      expect(cookies[0]!.value).toBe('');
      expect(cookies[0]!.attrs).toMatch(/Max-Age=0/);
      expect(cookies[0]!.attrs).toMatch(new RegExp(`Path=/api/v1/redirects/${st.redirectId.replace('.', '\\.')}(;|$)`));
      expect(await consent(b, st.consentId)).toMatchObject({ status: 'confirmed', confirmedAt: new Date(s.clock.now()).toISOString() });
      expect((await me(b)).json()).toMatchObject({ sessionId: b.handle });
    });

    it('a replayed return is refused (403) and changes nothing', async () => {
      const b = await login();
      const st = await start(b);
      expect((await back(st.redirectId, st.rid)).statusCode).toBe(303);
      const again = await back(st.redirectId, st.rid, 'nok');
      expectProblem(again, 403, 'redirect_invalid');
      expect(cookieOf(again, '__Host-sid')).toBeNull();
      expect(await consent(b, st.consentId)).toMatchObject({ status: 'confirmed' });
    });

    it("a return without the cookie, with a forged one, or with another redirect's cookie is refused; neither redirect is burnt", async () => {
      const b = await login();
      const one = await start(b);
      const two = await start(b);
      expect(one.redirectId).not.toBe(two.redirectId);
      expectProblem(await back(one.redirectId, null), 403, 'redirect_cookie_missing');
      expectProblem(await back(one.redirectId, 'A'.repeat(43) + '.forged'), 403, 'redirect_cookie_missing');
      expectProblem(await back(one.redirectId, two.rid), 403, 'redirect_invalid');
      expectProblem(await back(two.redirectId, one.rid), 403, 'redirect_invalid');
      // The user did approve at the bank; reading the pending consent asks the bank, which says so.
      expect(await consent(b, one.consentId)).toMatchObject({ status: 'confirmed' });
      expect((await back(two.redirectId, two.rid)).statusCode).toBe(303);
      expect((await back(one.redirectId, one.rid)).statusCode).toBe(303);
      // Another browser of the same user cannot use this browser's cookie either: it is bound to
      // the redirect, and each redirect only ever sees its own.
      const other = await login();
      const third = await start(other);
      expectProblem(await back(third.redirectId, one.rid), 403, 'redirect_invalid');
      expect((await back(third.redirectId, third.rid)).statusCode).toBe(303);
    });

    it('refuses a malformed result or redirect id before using the redirect; a return without result is valid', async () => {
      const b = await login();
      const st = await start(b);
      expectProblem(await back(st.redirectId, st.rid, 'maybe'), 400, 'invalid_request');
      expectProblem(await back('not-a-handle', st.rid), 400, 'invalid_request');
      const head = await s.app.inject({ method: 'HEAD', url: `/api/v1/redirects/${st.redirectId}/return?result=ok`, headers: { cookie: `__Secure-rid=${st.rid}` } });
      expect(head.statusCode).toBe(404);
      // The TPP-Redirect-URI carries no result: the status comes from the bank.
      expect((await sim.decide(scaOf.get(st.redirectId)!, 'approve')).status).toBe(303);
      const res = await s.app.inject({
        url: `/api/v1/redirects/${st.redirectId}/return`,
        headers: { cookie: `__Secure-rid=${st.rid}; __Host-rb=${bindingOf.get(st.redirectId)!}` },
      });
      expect(res.statusCode).toBe(303);
      expect(res.headers.location).toBe(`${PUBLIC}/demo/?consentId=${st.consentId}&status=confirmed`);
    });

    it('nok rejects the consent and still answers 303', async () => {
      const b = await login();
      const st = await start(b);
      const res = await back(st.redirectId, st.rid, 'nok');
      expect(res.statusCode).toBe(303);
      expect(res.headers.location).toBe(`${PUBLIC}/demo/?consentId=${st.consentId}&status=rejected`);
      expect(await consent(b, st.consentId)).toMatchObject({ status: 'rejected', confirmedAt: null });
    });

    it('a logout ends the redirects the session started', async () => {
      const b = await login();
      const st = await start(b);
      const out = await s.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { cookie: sidCookie(b), 'x-xsrf-token': b.xsrf } });
      expect(out.statusCode).toBe(204);
      expectProblem(await back(st.redirectId, st.rid), 403, 'redirect_invalid');
    });

    it('a redirect outlives the short app session, but not its own 20 minutes', async () => {
      const b = await login();
      const st = await start(b);
      s.clock.advance(1200_000);
      expectProblem(await back(st.redirectId, st.rid), 403, 'redirect_invalid');
      const fresh = await login();
      expect(await consent(fresh, st.consentId)).toMatchObject({ status: 'expired' });
    });
  });

  describe('consent rules (docs/api.md §Consent redirects)', () => {
    it('AIS: several pending at once; confirming one supersedes the valid one; accounts use the valid one', async () => {
      const tid = uniqueTenant();
      const uid = await provision(s.app, tid, email, PASSWORD, { profile: 'integration' });
      const b = await login(tid);
      expectProblem(await accounts(b), 403, 'consent_required');
      const first = await start(b);
      s.clock.advance(1_000);
      const second = await start(b);
      expect((await consent(b, first.consentId)).status).toBe('pending');
      expect((await consent(b, second.consentId)).status).toBe('pending');
      expectProblem(await accounts(b), 403, 'consent_required');

      events.length = 0;
      expect((await back(second.redirectId, second.rid)).statusCode).toBe(303);
      const a1 = await accounts(b);
      expect(a1.statusCode).toBe(200);
      expect(a1.json()).toMatchObject({ bankId: BANK, consentId: second.consentId });
      // The bank's accounts, read at the bank with the bank's consent id.
      expect((a1.json() as { accounts: unknown[] }).accounts).toEqual([
        { iban: 'DE75512108001245126199', name: 'Everyday account', currency: 'EUR', balance: '1523.45' },
        { iban: 'DE02100100109307118603', name: 'Savings', currency: 'EUR', balance: '10250.00' },
      ]);
      const secondAtBank = second.location.slice(`${sim.url}/sca/consents/`.length);
      expect((await sim.requests()).filter((r) => r.path === '/v1/accounts?withBalance=true').at(-1)?.headers['consent-id']).toBe(secondAtBank);

      expect((await back(first.redirectId, first.rid)).statusCode).toBe(303);
      // The superseded consent was terminated at the bank.
      expect((await sim.requests()).some((r) => r.method === 'DELETE' && r.path === `/v1/consents/${secondAtBank}`)).toBe(true);
      expect((await accounts(b)).json()).toMatchObject({ consentId: first.consentId });
      expect(await consent(b, second.consentId)).toMatchObject({ status: 'superseded' });
      expect(await consent(b, first.consentId)).toMatchObject({ status: 'confirmed' });

      const list = (await s.app.inject({ url: '/api/v1/consents', headers: { cookie: sidCookie(b) } })).json() as {
        items: Array<{ id: string; status: string }>;
        nextCursor: string | null;
      };
      expect(list.items.map((c) => [c.id, c.status])).toEqual([
        [second.consentId, 'superseded'],
        [first.consentId, 'confirmed'],
      ]);
      expect(list.nextCursor).toBeNull();

      // A rejected newer consent leaves the valid one valid.
      const third = await start(b);
      expect((await back(third.redirectId, third.rid, 'nok')).statusCode).toBe(303);
      expect((await accounts(b)).json()).toMatchObject({ consentId: first.consentId });

      const types = events.map((e) => e.type);
      expect(types).toEqual(
        expect.arrayContaining(['consent.confirmed', 'consent.superseded', 'redirect.returned', 'session.revoked', 'consent.rejected']),
      );
      const superseded = events.find((e) => e.type === 'consent.superseded')!;
      expect(superseded).toMatchObject({ tenantId: tid, userId: uid, details: { consentId: second.consentId, supersededBy: first.consentId } });
      const returned = events.filter((e) => e.type === 'redirect.returned');
      expect(returned[0]).toMatchObject({ kind: 'redirect', details: { result: 'ok', session: 'still_valid' } });
      expect(JSON.stringify(events)).not.toContain(first.rid.split('.')[0]);
    });

    it('PIS: every payment has its own consent and redirect; settling one leaves the others alone', async () => {
      const b = await login();
      events.length = 0;
      const p1 = await pay(b);
      const p2 = await pay(b, { amount: '99.99', creditorName: 'Book Shop' });
      const p3 = await start(b, { type: 'pis', bankId: BANK, payment: { ...PAYMENT, amount: '1' } });
      expect(new Set([p1.consentId, p2.consentId, p3.consentId]).size).toBe(3);
      expect(new Set([p1.redirectId, p2.redirectId, p3.redirectId]).size).toBe(3);
      expect(events.filter((e) => e.type === 'consent.created')).toHaveLength(3);
      expect(events.filter((e) => e.type === 'redirect.started')).toHaveLength(3);
      expect(await consent(b, p2.consentId)).toMatchObject({ type: 'pis', status: 'pending', payment: { ...PAYMENT, amount: '99.99', creditorName: 'Book Shop' } });

      expect((await back(p2.redirectId, p2.rid, 'nok')).statusCode).toBe(303);
      expect((await back(p1.redirectId, p1.rid)).statusCode).toBe(303);
      expect((await back(p3.redirectId, p3.rid)).statusCode).toBe(303);
      expect(await consent(b, p1.consentId)).toMatchObject({ status: 'confirmed' });
      expect(await consent(b, p2.consentId)).toMatchObject({ status: 'rejected' });
      expect(await consent(b, p3.consentId)).toMatchObject({ status: 'confirmed', payment: { amount: '1' } });
    });

    it("another user's consent is not found", async () => {
      const b = await login();
      const st = await start(b);
      const tid = uniqueTenant();
      await provision(s.app, tid, 'eve@example.com', PASSWORD, { profile: 'integration' });
      const eve = await s.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        headers: { 'x-tenant-id': tid, 'x-auth-mode': 'cookie' },
        payload: { email: 'eve@example.com', password: PASSWORD },
      });
      const res = await s.app.inject({ url: `/api/v1/consents/${st.consentId}`, headers: { cookie: `__Host-sid=${cookieOf(eve, '__Host-sid')!.value}` } });
      expectProblem(res, 404, 'consent_not_found');
    });
  });

  describe('the session after a return (docs/api.md §Consent redirects)', () => {
    it('the session lapses at the bank: racing returns converge on one new session cookie; a later return gets the same', async () => {
      const tid = uniqueTenant();
      const uid = await provision(s.app, tid, email, PASSWORD, { profile: 'integration', lifetimes: { appIdle: 60 } });
      const b = await login(tid);
      const ais = await start(b);
      const pis = await pay(b);
      const late = await start(b);
      s.clock.advance(61_000);
      expectProblem(await me(b), 401, 'session_ended');

      events.length = 0;
      const [r1, r2] = await Promise.all([back(ais.redirectId, ais.rid), back(pis.redirectId, pis.rid)]);
      expect([r1.statusCode, r2.statusCode]).toEqual([303, 303]);
      const c1 = cookieOf(r1, '__Host-sid')!;
      const c2 = cookieOf(r2, '__Host-sid')!;
      expect(c1.value).toBe(c2.value);
      expect(c1.value).not.toBe(b.sid);
      expect(c1.attrs).toMatch(/SameSite=Strict/);
      expect(c1.attrs).toMatch(/Path=\//);
      expect(c1.attrs).toMatch(/Max-Age=60/);
      expect(events.filter((e) => e.type === 'session.created' && e.kind === 'app')).toHaveLength(1);

      const renewed: Browser = { sid: c1.value, xsrf: '', handle: '' };
      const who = await me(renewed);
      expect(who.statusCode).toBe(200);
      const view = who.json() as { sessionId: string; xsrfToken: string; customerId: string; mode: string; authMethod: string };
      expect(view).toMatchObject({ customerId: uid, mode: 'cookie', authMethod: 'renewed' });
      expect(view.sessionId).not.toBe(b.handle);
      renewed.handle = view.sessionId;
      renewed.xsrf = view.xsrfToken;

      // A later return from the same expired session gets the very same session.
      s.clock.advance(5_000);
      const r3 = await back(late.redirectId, late.rid);
      expect(cookieOf(r3, '__Host-sid')!.value).toBe(c1.value);

      // The renewed session works for state changes with its own XSRF token.
      const next = await start(renewed);
      expect((await back(next.redirectId, next.rid)).statusCode).toBe(303);
      expect(await consent(renewed, ais.consentId)).toMatchObject({ status: 'superseded' });
      expect(await consent(renewed, late.consentId)).toMatchObject({ status: 'superseded' });
      expect(await consent(renewed, next.consentId)).toMatchObject({ status: 'confirmed' });
      expect(await consent(renewed, pis.consentId)).toMatchObject({ status: 'confirmed' });

      const sessions = await appSessions(tid, uid);
      expect(sessions).toHaveLength(2);
      expect(sessions.filter((x) => x.status === 'active').map((x) => x.sessionId)).toEqual([renewed.handle]);
      expect(sessions.filter((x) => x.authMethod === 'renewed')).toHaveLength(1);
    });

    it('a return after the renewed session was logged out leaves no session', async () => {
      const tid = uniqueTenant();
      await provision(s.app, tid, email, PASSWORD, { profile: 'integration', lifetimes: { appIdle: 60 } });
      const b = await login(tid);
      const one = await start(b);
      const two = await start(b);
      s.clock.advance(61_000);
      const r1 = await back(one.redirectId, one.rid);
      const renewed = { sid: cookieOf(r1, '__Host-sid')!.value, xsrf: '', handle: '' };
      renewed.xsrf = ((await me(renewed)).json() as { xsrfToken: string }).xsrfToken;
      expect((await s.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { cookie: sidCookie(renewed), 'x-xsrf-token': renewed.xsrf } })).statusCode).toBe(204);
      const r2 = await back(two.redirectId, two.rid);
      expect(r2.statusCode).toBe(303);
      expect(cookieOf(r2, '__Host-sid')).toBeNull();
      expect((await me(renewed)).statusCode).toBe(401);
    });

    it('a return after the renewed session lapsed in turn renews that one, once', async () => {
      const tid = uniqueTenant();
      const uid = await provision(s.app, tid, email, PASSWORD, { profile: 'integration', lifetimes: { appIdle: 60 } });
      const b = await login(tid);
      const one = await start(b);
      const two = await start(b);
      const three = await start(b);
      s.clock.advance(61_000);
      const first = cookieOf(await back(one.redirectId, one.rid), '__Host-sid')!.value;
      s.clock.advance(61_000);
      const [r2, r3] = await Promise.all([back(two.redirectId, two.rid), back(three.redirectId, three.rid)]);
      const second = cookieOf(r2, '__Host-sid')!.value;
      expect(cookieOf(r3, '__Host-sid')!.value).toBe(second);
      expect(second).not.toBe(first);
      expect((await me({ sid: second, xsrf: '', handle: '' })).statusCode).toBe(200);
      const sessions = await appSessions(tid, uid);
      expect(sessions).toHaveLength(3);
      expect(sessions.filter((x) => x.status === 'active')).toHaveLength(1);
    });

    it("never renews past the login's absolute lifetime", async () => {
      const tid = uniqueTenant();
      await provision(s.app, tid, email, PASSWORD, { profile: 'integration', lifetimes: { appIdle: 600, appAbsolute: 900, redirect: 1200 } });
      const b = await login(tid);
      const st = await start(b);
      s.clock.advance(901_000);
      const res = await back(st.redirectId, st.rid);
      expect(res.statusCode).toBe(303);
      expect(cookieOf(res, '__Host-sid')).toBeNull();
    });
  });

  describe('the application page', () => {
    it("303s to the tenant's consentReturnUrl, with the consent id and status added to its query", async () => {
      const tid = uniqueTenant();
      await provision(s.app, tid, email, PASSWORD, { profile: 'integration', consentReturnUrl: 'https://app.example/after-bank?from=tessera' });
      const b = await login(tid);
      const st = await start(b);
      const res = await back(st.redirectId, st.rid, 'nok');
      expect(res.headers.location).toBe(`https://app.example/after-bank?from=tessera&consentId=${st.consentId}&status=rejected`);
      const got = await s.app.inject({ url: `/api/v1/admin/tenants/${tid}`, headers: admin });
      expect(got.json()).toMatchObject({ consentReturnUrl: 'https://app.example/after-bank?from=tessera' });
      for (const bad of ['//evil.example/x', 'javascript:alert(1)', 'ftp://x.example/']) {
        const put = await s.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${tid}`, headers: admin, payload: { consentReturnUrl: bad } });
        expectProblem(put, 400, 'invalid_tenant');
      }
    });
  });

  describe('demo pages', () => {
    it('serves the fintech page with a strict CSP, and config for it; registers the simulator as the demo bank', async () => {
      for (const path of ['/demo/', '/demo/fintech.js', '/demo/style.css']) {
        const res = await s.app.inject({ url: path });
        expect(res.statusCode, path).toBe(200);
        expect(res.headers['content-security-policy']).toMatch(/script-src 'self'/);
      }
      expect((await s.app.inject({ url: '/demo?consentId=x' })).headers.location).toBe('/demo/?consentId=x');
      const config = (await s.app.inject({ url: '/demo/config.json' })).json<unknown>();
      expect(config).toMatchObject({ publicUrl: PUBLIC, bankId: 'demo-bank', demoAccount: { tenantId: 'demo' } });
      expect((await s.app.inject({ url: '/demo/bank/' })).statusCode).toBe(404);
      const demoBank = await s.app.inject({ url: '/api/v1/admin/banks/demo-bank?tenantId=demo', headers: admin });
      expect(demoBank.json()).toMatchObject({ bankId: 'demo-bank', protocol: 'berlin-group', baseUrl: `${sim.url}/` });
    });
  });
});

describe('without demo mode', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ store: 'sqlite' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('knows no bank and serves no demo page', async () => {
    const tid = uniqueTenant();
    await provisionTenant(s.app, tid, 'ada@example.com', PASSWORD, { profile: 'integration' });
    const login = await s.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'x-tenant-id': tid, 'x-auth-mode': 'cookie' },
      payload: { email: 'ada@example.com', password: PASSWORD },
    });
    const sid = cookieOf(login, '__Host-sid')!.value;
    const res = await s.app.inject({
      method: 'POST',
      url: '/api/v1/consents',
      headers: { cookie: `__Host-sid=${sid}`, 'x-xsrf-token': (login.json() as { xsrfToken: string }).xsrfToken },
      payload: { type: 'ais', bankId: BANK },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'unknown_bank' });
    expect((await s.app.inject({ url: '/demo/' })).statusCode).toBe(404);
    // The demo module (src/http/demo) is not registered at all: no config, no demo tenant.
    expect((await s.app.inject({ url: '/demo/config.json' })).statusCode).toBe(404);
    expect((await s.app.inject({ url: '/api/v1/admin/tenants/demo', headers: admin })).statusCode).toBe(404);
  });
});
