// Unauthenticated authorization requests to Tessera's own OpenID provider (/oidc/auth) make
// oidc-provider store an interaction record each (600 s): they are limited per client address
// like every SSO start (120 a minute, 429 `sso_throttled` with Retry-After), whatever path
// spelling oidc-provider's router takes for it, and a refused one stores nothing
// (docs/security.md, Decisions). The resume path /oidc/auth/<uid> is not counted.
// Over HTTP with the real external provider, on SQLite.

import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FLOW_STARTS_PER_IP_PER_MINUTE } from '../../src/flows/sso/steps.ts';
import { admin } from '../support/harness.ts';
import { startSsoWorld, type SsoWorld } from '../support/sso-world.ts';

interface Problem {
  code: string;
  status: number;
}

describe('authorization requests to /oidc/auth, per client address', () => {
  let world: SsoWorld;
  let clientId: string;
  const redirectUri = 'http://127.0.0.1:9/throttle/callback';

  beforeAll(async () => {
    world = await startSsoWorld({ store: 'sqlite' });
    clientId = `throttle-${world.tenantId}`;
    const r = await world.server.app.inject({
      method: 'PUT',
      url: `/api/v1/admin/apps/${clientId}`,
      headers: admin,
      payload: { tenantId: world.tenantId, redirectUris: [redirectUri], orgSlug: world.orgSlug, clientSecret: 'throttle-secret-'.padEnd(40, 'x') },
    });
    expect(r.statusCode, r.body).toBe(200);
  });
  afterAll(async () => {
    await world?.close();
  });

  const authorize = (n: number, path = '/oidc/auth') => {
    const q = new URLSearchParams({
      client_id: clientId,
      redirect_uri: redirectUri,
      response_type: 'code',
      scope: 'openid',
      state: `state-${n}`.padEnd(20, 'x'),
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
    });
    return fetch(`${world.tesseraUrl}${path}?${q.toString()}`, { redirect: 'manual' });
  };

  it(`answers the first ${FLOW_STARTS_PER_IP_PER_MINUTE} in a minute, then 429 sso_throttled with Retry-After, storing nothing; a minute later again`, async () => {
    const stored = vi.spyOn(world.server.store.oidc, 'upsertModel');
    try {
      for (let i = 0; i < FLOW_STARTS_PER_IP_PER_MINUTE; i++) {
        const r = await authorize(i);
        expect(r.status, `request ${i}`).toBe(303);
        expect(r.headers.get('location'), `request ${i}`).toMatch(/\/oidc\/interaction\/[A-Za-z0-9_-]+$/);
        await r.arrayBuffer();
      }
      // Each answered request stored its interaction.
      const interactions = () => stored.mock.calls.filter(([model]) => model === 'Interaction').length;
      expect(interactions()).toBe(FLOW_STARTS_PER_IP_PER_MINUTE);

      const refused = await authorize(FLOW_STARTS_PER_IP_PER_MINUTE);
      expect(refused.status).toBe(429);
      expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const retryAfter = Number(refused.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(((await refused.json()) as Problem).code).toBe('sso_throttled');
      expect(refused.headers.get('set-cookie')).toBeNull();
      expect(interactions()).toBe(FLOW_STARTS_PER_IP_PER_MINUTE);
      // The paths oidc-provider's router also takes for its authorization endpoint (case-
      // insensitive, one trailing slash dropped) are the same request.
      for (const path of ['/oidc/auth/', '/oidc/AUTH', '/oidc/Auth/']) {
        const variant = await authorize(FLOW_STARTS_PER_IP_PER_MINUTE, path);
        expect(variant.status, path).toBe(429);
        expect(((await variant.json()) as Problem).code, path).toBe('sso_throttled');
      }
      // A request target with a fragment: Koa routes on the path before it.
      const fragment = await new Promise<number>((resolve, reject) => {
        const u = new URL(world.tesseraUrl);
        const req = httpRequest({ host: u.hostname, port: u.port, path: '/oidc/auth#x', method: 'GET' }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
      expect(fragment).toBe(429);
      expect(interactions()).toBe(FLOW_STARTS_PER_IP_PER_MINUTE);
      // A POSTed authorization request is the same request.
      const posted = await fetch(`${world.tesseraUrl}/oidc/auth`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_id: clientId, redirect_uri: redirectUri, response_type: 'code', scope: 'openid' }).toString(),
        redirect: 'manual',
      });
      expect(posted.status).toBe(429);
      await posted.arrayBuffer();

      // The resume of an interaction and the other endpoints are not counted.
      const resume = await fetch(`${world.tesseraUrl}/oidc/auth/unknown-interaction`, { redirect: 'manual' });
      expect(resume.status).not.toBe(429);
      await resume.arrayBuffer();
      const discovery = await fetch(`${world.tesseraUrl}/oidc/.well-known/openid-configuration`);
      expect(discovery.status).toBe(200);
      await discovery.arrayBuffer();

      world.clock.advance(61_000);
      const again = await authorize(FLOW_STARTS_PER_IP_PER_MINUTE + 1);
      expect(again.status).toBe(303);
      await again.arrayBuffer();
      expect(interactions()).toBe(FLOW_STARTS_PER_IP_PER_MINUTE + 1);
    } finally {
      stored.mockRestore();
    }
  });
});
