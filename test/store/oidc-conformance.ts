// The conformance suite of the OpenID-provider store (src/store/oidc-port.ts): applications,
// oidc-provider's records (its adapter interface) and the external-session index. Every target
// of the matrix runs it (test/store/targets.ts). Every test makes its own ids, so runs can share a Redis.

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OidcStore, PlatformApp } from '../../src/store/oidc-port.ts';
import type { OpenedStore } from './conformance.ts';

export function describeOidcConformance(name: string, open: () => Promise<OpenedStore>, opts?: { skip?: boolean }): void {
  describe.skipIf(opts?.skip === true)(`${name}: oidc`, () => {
    const T0 = Date.now();
    let opened: OpenedStore | undefined;
    let oidc: OidcStore;

    beforeAll(async () => {
      opened = await open();
      oidc = opened.store.oidc;
    });
    afterAll(async () => {
      await opened?.close();
    });

    it('stores and replaces an application', async () => {
      const clientId = `app-${randomUUID()}`;
      const app: PlatformApp = {
        clientId,
        tenantId: 't-1',
        redirectUris: ['https://app.example.com/cb'],
        postLogoutRedirectUris: [],
        orgSlug: null,
        backchannelLogoutUri: null,
        sealedClientSecret: null,
        createdAt: T0,
        updatedAt: T0,
      };
      expect(await oidc.getApp(clientId)).toBeNull();
      await oidc.putApp(app);
      expect(await oidc.getApp(clientId)).toEqual(app);
      await oidc.putApp({ ...app, orgSlug: 'acme', updatedAt: T0 + 1 });
      expect(await oidc.getApp(clientId)).toMatchObject({ orgSlug: 'acme', updatedAt: T0 + 1 });
    });

    it("lists a tenant's applications by client id, and deletes one only for its own tenant", async () => {
      const tenant = `t-${randomUUID()}`;
      const app = (clientId: string, tenantId: string): PlatformApp => ({
        clientId,
        tenantId,
        redirectUris: ['https://app.example.com/cb'],
        postLogoutRedirectUris: [],
        orgSlug: null,
        backchannelLogoutUri: null,
        sealedClientSecret: null,
        createdAt: T0,
        updatedAt: T0,
      });
      const [b, a, c] = ['b', 'a', 'c'].map((x) => `${x}-${randomUUID()}`) as [string, string, string];
      await oidc.putApp(app(b, tenant));
      await oidc.putApp(app(a, tenant));
      await oidc.putApp(app(c, 't-other'));
      expect((await oidc.listApps(tenant)).map((x) => x.clientId)).toEqual([a, b]);
      expect(await oidc.deleteApp(c, tenant)).toBe(false);
      expect(await oidc.getApp(c)).not.toBeNull();
      expect(await oidc.deleteApp(a, tenant)).toBe(true);
      expect(await oidc.getApp(a)).toBeNull();
      expect((await oidc.listApps(tenant)).map((x) => x.clientId)).toEqual([b]);
      // An application moved to another tenant leaves the first tenant's listing.
      await oidc.putApp(app(b, `t-${randomUUID()}`));
      expect(await oidc.listApps(tenant)).toEqual([]);
    });

    it('keeps a record until its expiry, finds it by uid, consumes it, destroys it', async () => {
      const id = randomUUID();
      const uid = randomUUID();
      await oidc.upsertModel('Session', id, { uid, accountId: 'u1' }, T0 + 60_000, T0);
      expect(await oidc.findModel('Session', id, T0)).toEqual({ uid, accountId: 'u1' });
      expect(await oidc.findModelByUid('Session', uid, T0)).toEqual({ uid, accountId: 'u1' });
      expect(await oidc.findModel('Interaction', id, T0)).toBeNull();
      await oidc.consumeModel('Session', id, T0 + 1000);
      expect(await oidc.findModel('Session', id, T0 + 1000)).toMatchObject({ consumed: Math.floor((T0 + 1000) / 1000) });
      await oidc.destroyModel('Session', id);
      expect(await oidc.findModel('Session', id, T0)).toBeNull();
      expect(await oidc.findModelByUid('Session', uid, T0)).toBeNull();
    });

    it('does not return a record past its expiry (SQLite reads it as gone; Redis drops the key)', async () => {
      const id = randomUUID();
      await oidc.upsertModel('AuthorizationCode', id, { a: 1 }, Date.now() + 50, Date.now());
      await new Promise((r) => setTimeout(r, 120));
      expect(await oidc.findModel('AuthorizationCode', id, Date.now())).toBeNull();
    });

    it('revokes every record of a grant, and nothing else', async () => {
      const grantId = randomUUID();
      const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
      await oidc.upsertModel('AccessToken', a, { grantId }, T0 + 60_000, T0);
      await oidc.upsertModel('RefreshToken', b, { grantId }, T0 + 60_000, T0);
      await oidc.upsertModel('AccessToken', c, { grantId: randomUUID() }, T0 + 60_000, T0);
      await oidc.revokeByGrantId(grantId);
      expect(await oidc.findModel('AccessToken', a, T0)).toBeNull();
      expect(await oidc.findModel('RefreshToken', b, T0)).toBeNull();
      expect(await oidc.findModel('AccessToken', c, T0)).not.toBeNull();
    });

    it('indexes external sessions by (issuer, key), without expired links', async () => {
      const issuer = `https://idp-${randomUUID()}.example.com`;
      await oidc.linkExternalSession({ issuer, key: 'sid:s1', tenantId: 't-1', idpHandle: 'h1', expiresAt: T0 + 60_000 }, T0);
      await oidc.linkExternalSession({ issuer, key: 'sid:s1', tenantId: 't-1', idpHandle: 'h2', expiresAt: T0 + 120_000 }, T0);
      await oidc.linkExternalSession({ issuer, key: 'sub:alice', tenantId: 't-1', idpHandle: 'h1', expiresAt: T0 + 60_000 }, T0);
      const found = await oidc.findExternalSessions(issuer, 'sid:s1', T0);
      expect(found.map((l) => l.idpHandle).sort()).toEqual(['h1', 'h2']);
      expect(found[0]).toMatchObject({ issuer, key: 'sid:s1', tenantId: 't-1' });
      expect((await oidc.findExternalSessions(issuer, 'sid:s1', T0 + 90_000)).map((l) => l.idpHandle)).toEqual(['h2']);
      expect(await oidc.findExternalSessions(issuer, 'sid:other', T0)).toEqual([]);
      expect(await oidc.findExternalSessions('https://other.example.com', 'sub:alice', T0)).toEqual([]);
    });
  });
}
