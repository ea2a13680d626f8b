// The session check's per-connection memo (src/http/authenticate.ts `ConnectionMemo`): a client
// on one keep-alive connection that changes its credential between requests — another token,
// another cookie, a forged one, one whose session ended or whose token expired — gets exactly
// the answers that the same requests get each on a fresh connection, where nothing is
// remembered. Real sockets (the memo is kept per socket), on SQLite and Redis.

import { Agent, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provision, startTestServer, uniqueTenant, type TestServer } from '../support/harness.ts';

const PASSWORD = 'correct horse battery';

interface Answer {
  status: number;
  /** The session's handle on a 200, the problem code otherwise. */
  what: string;
  reused: boolean;
}

function get(port: number, agent: Agent, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/api/v1/session', agent, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        const json = JSON.parse(body) as { sessionId?: string; code?: string };
        resolve({ status: res.statusCode ?? 0, what: (res.statusCode === 200 ? json.sessionId : json.code) ?? '?', reused: req.reusedSocket });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe.each(['sqlite', 'redis'] as const)('the per-connection memo of the session check on %s', (store) => {
  let s: TestServer;
  let port: number;
  let tenantId: string;

  beforeAll(async () => {
    s = await startTestServer({ store });
    tenantId = uniqueTenant();
    await provision(s.app, tenantId, 'ada@example.com', PASSWORD);
    await provision(s.app, tenantId, 'bob@example.com', PASSWORD);
    await s.app.listen({ host: '127.0.0.1', port: 0 });
    port = (s.app.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await s?.close();
  });

  async function login(email: string, mode: 'token' | 'cookie'): Promise<{ headers: Record<string, string>; handle: string }> {
    const res = await s.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'x-tenant-id': tenantId, 'x-auth-mode': mode },
      payload: { email, password: PASSWORD },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { userSessionToken?: string; sessionId: string };
    if (mode === 'token') return { headers: { authorization: `Bearer ${body.userSessionToken}` }, handle: body.sessionId };
    const set = res.headers['set-cookie'];
    const cookie = ((Array.isArray(set) ? set : [set]).find((c) => c?.includes('sid=')) ?? '').split(';')[0] as string;
    return { headers: { cookie }, handle: body.sessionId };
  }

  it('answers every change of credential on one connection as a fresh connection does', async () => {
    const [tokenA, tokenB, cookieC, cookieD] = [
      await login('ada@example.com', 'token'),
      await login('bob@example.com', 'token'),
      await login('ada@example.com', 'cookie'),
      await login('bob@example.com', 'cookie'),
    ];
    const [name, value] = (cookieC.headers.cookie as string).split('=') as [string, string];
    // The same secret with a signature that does not verify.
    const forged = { cookie: `${name}=${value.slice(0, -2)}${value.endsWith('AA') ? 'BB' : 'AA'}` };
    const steps: Array<[string, Record<string, string>]> = [
      ['token A', tokenA.headers],
      ['token A again', tokenA.headers],
      ['token B', tokenB.headers],
      ['token A after B', tokenA.headers],
      ['a bearer that is no token', { authorization: 'Bearer not.a.token' }],
      ['token A after a bad one', tokenA.headers],
      ['cookie C', cookieC.headers],
      ['cookie C again', cookieC.headers],
      ['cookie D', cookieD.headers],
      ['forged cookie C', forged],
      ['cookie C after the forged one', cookieC.headers],
      // The memo is keyed by the whole Cookie header: other cookies beside the session's, their
      // order, and a second session cookie after the first (the first one counts) change it.
      ['cookie C among other cookies', { cookie: `theme=dark; ${cookieC.headers.cookie}; lang=en` }],
      ['cookie C among other cookies, reordered', { cookie: `lang=en; ${cookieC.headers.cookie}; theme=dark` }],
      ['cookie D before cookie C', { cookie: `${cookieD.headers.cookie}; ${cookieC.headers.cookie}` }],
      ['the forged cookie C among other cookies', { cookie: `theme=dark; ${forged.cookie}` }],
      ['other cookies only', { cookie: 'theme=dark; lang=en' }],
      ['token B with cookie C', { ...tokenB.headers, ...cookieC.headers }],
      ['nothing', {}],
      ['token A once more', tokenA.headers],
      ['cookie D once more', cookieD.headers],
    ];
    const kept = new Agent({ keepAlive: true, maxSockets: 1 });
    const fresh = () => new Agent({ keepAlive: false });
    try {
      const run = async (label: string, headers: Record<string, string>) => {
        const onKept = await get(port, kept, headers);
        const onFresh = await get(port, fresh(), headers);
        return { label, onKept, onFresh };
      };
      const seen: Array<Awaited<ReturnType<typeof run>>> = [];
      for (const [label, headers] of steps) seen.push(await run(label, headers));

      // Sessions end and tokens expire between two requests of the same connection.
      const out = await s.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: tokenA.headers });
      expect(out.statusCode).toBeLessThan(300);
      seen.push(await run('token A after its logout', tokenA.headers));
      seen.push(await run('cookie C after token A’s logout', cookieC.headers));
      seen.push(await run('token B before its expiry', tokenB.headers));
      s.clock.advance(3601_000);
      seen.push(await run('token B after its expiry', tokenB.headers));

      for (const { label, onKept, onFresh } of seen) {
        expect({ label, status: onKept.status, what: onKept.what }).toEqual({ label, status: onFresh.status, what: onFresh.what });
      }
      // The connection was kept throughout (else the memo was never in play).
      expect(seen.slice(1).every((x) => x.onKept.reused)).toBe(true);
      // And the answers are the ones expected.
      const by = new Map(seen.map((x) => [x.label, x.onKept]));
      expect(by.get('token A again')).toMatchObject({ status: 200, what: tokenA.handle });
      expect(by.get('token B')).toMatchObject({ status: 200, what: tokenB.handle });
      expect(by.get('token A after B')).toMatchObject({ status: 200, what: tokenA.handle });
      expect(by.get('a bearer that is no token')?.status).toBe(401);
      expect(by.get('cookie C again')).toMatchObject({ status: 200, what: cookieC.handle });
      expect(by.get('cookie D')).toMatchObject({ status: 200, what: cookieD.handle });
      expect(by.get('forged cookie C')).toMatchObject({ status: 401, what: 'unauthenticated' });
      expect(by.get('cookie C after the forged one')).toMatchObject({ status: 200, what: cookieC.handle });
      expect(by.get('cookie C among other cookies')).toMatchObject({ status: 200, what: cookieC.handle });
      expect(by.get('cookie C among other cookies, reordered')).toMatchObject({ status: 200, what: cookieC.handle });
      expect(by.get('cookie D before cookie C')).toMatchObject({ status: 200, what: cookieD.handle });
      expect(by.get('the forged cookie C among other cookies')).toMatchObject({ status: 401, what: 'unauthenticated' });
      expect(by.get('other cookies only')).toMatchObject({ status: 401, what: 'unauthenticated' });
      expect(by.get('token B with cookie C')).toMatchObject({ status: 200, what: tokenB.handle });
      expect(by.get('nothing')).toMatchObject({ status: 401, what: 'unauthenticated' });
      expect(by.get('token A after its logout')).toMatchObject({ status: 401, what: 'session_ended' });
      expect(by.get('cookie C after token A’s logout')).toMatchObject({ status: 200, what: cookieC.handle });
      expect(by.get('token B before its expiry')).toMatchObject({ status: 200, what: tokenB.handle });
      expect(by.get('token B after its expiry')).toMatchObject({ status: 401, what: 'invalid_token' });
    } finally {
      kept.destroy();
    }
  });
});
