// The conformance suite of the federation store (src/store/federation-port.ts): organizations,
// linked identities and SSO flow sessions. Every target of the matrix runs it
// (test/store/targets.ts). Races are proven as in conformance.ts: many concurrent callers through
// Promise.all, one winner. Every test makes its own ids, so runs can share a long-lived Redis.

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TesseraError } from '../../src/domain/errors.ts';
import type { FederatedIdentity, Organization } from '../../src/domain/organization.ts';
import { hashSecret, newSecret } from '../../src/domain/secrets.ts';
import { issueSession } from '../../src/domain/session.ts';
import type { FlowRecord } from '../../src/store/federation-port.ts';
import type { FederationStore } from '../../src/store/federation-port.ts';
import type { OpenedStore } from './conformance.ts';

const MINUTE = 60_000;

export function describeFederationConformance(name: string, open: () => Promise<OpenedStore>, opts?: { skip?: boolean }): void {
  describe.skipIf(opts?.skip === true)(`${name}: federation`, () => {
    const T0 = Date.now();
    let opened: OpenedStore | undefined;
    let fed: FederationStore;

    beforeAll(async () => {
      opened = await open();
      fed = opened.store.federation;
    });
    afterAll(async () => {
      await opened?.close();
    });

    function org(slug: string, tenantId: string): Organization {
      return {
        slug,
        tenantId,
        protocol: 'oidc',
        oidc: {
          issuer: 'https://idp.example.com',
          clientId: 'tessera',
          sealedClientSecret: 'v1.iv.body.tag',
          scopes: ['openid', 'email'],
          tokenEndpointAuthMethod: 'client_secret_basic',
        },
        oauth: null,
        linkVerifiedEmail: false,
        createdAt: T0,
        updatedAt: T0,
      };
    }

    /** A flow as the login route makes it; `state` is the flow session's secret. */
    function flow(binding: string, protocol: 'oidc' | 'oauth' = 'oidc', now = T0, lifetimeSeconds = 600): { flow: FlowRecord; state: string } {
      const { session, secret } = issueSession(
        { tenantId: `t-${randomUUID()}`, userId: null, kind: 'flow', lifetime: { idle: null, absolute: lifetimeSeconds }, authMethod: protocol },
        now,
      );
      return {
        state: secret,
        flow: {
          protocol,
          bindingHash: hashSecret(binding),
          session,
          data: {
            orgSlug: 'acme',
            provider: protocol === 'oauth' ? 'github' : null,
            callbackPort: 4711,
            isAdminLogin: protocol === 'oauth',
            nonce: newSecret(),
            codeVerifier: newSecret(),
            redirectUri: 'https://tessera.test/api/v1/sso/oidc/callback',
          },
        },
      };
    }

    describe('organizations', () => {
      it('stores, reads back and replaces an organization by slug', async () => {
        const slug = `org-${randomUUID().slice(0, 8)}`;
        expect(await fed.getOrganization(slug)).toBeNull();
        const first = org(slug, 't-1');
        expect(await fed.putOrganization(first, null)).toStrictEqual(first);
        expect(await fed.getOrganization(slug)).toStrictEqual(first);
        const second: Organization = {
          ...first,
          tenantId: 't-2',
          protocol: 'oauth',
          oidc: null,
          oauth: {
            provider: 'github',
            authorizationEndpoint: 'https://github.com/login/oauth/authorize',
            tokenEndpoint: 'https://github.com/login/oauth/access_token',
            userinfoEndpoint: 'https://api.github.com/user',
            clientId: 'gh',
            sealedClientSecret: null,
            scopes: ['read:user'],
            identityIssuer: 'https://github.com',
            mapping: { subject: 'id', email: 'email', emailVerified: null },
            tokenEndpointAuthMethod: 'client_secret_post',
            pkce: true,
          },
          updatedAt: T0 + 1,
        };
        await fed.putOrganization(second, 't-1');
        expect(await fed.getOrganization(slug)).toStrictEqual(second);
      });

      it('writes only over the owner it was told (compare-and-set): of 10 tenants claiming one new slug, one wins', async () => {
        const slug = `org-${randomUUID().slice(0, 8)}`;
        const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => fed.putOrganization(org(slug, `t-${i}`), null)));
        const won = results.filter((r) => r.status === 'fulfilled');
        expect(won).toHaveLength(1);
        for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'org_changed', status: 409 });
        const owner = (await fed.getOrganization(slug))!.tenantId;
        await expect(fed.putOrganization(org(slug, 't-other'), 't-other')).rejects.toMatchObject({ code: 'org_changed' });
        expect((await fed.getOrganization(slug))!.tenantId).toBe(owner);
      });

      it("lists a tenant's organizations by slug, and deletes one only for its own tenant", async () => {
        const tenant = `t-${randomUUID()}`;
        const other = `t-${randomUUID()}`;
        const [b, a] = [`org-b-${randomUUID().slice(0, 8)}`, `org-a-${randomUUID().slice(0, 8)}`];
        await fed.putOrganization(org(b, tenant), null);
        await fed.putOrganization(org(a, tenant), null);
        const elsewhere = `org-${randomUUID().slice(0, 8)}`;
        await fed.putOrganization(org(elsewhere, other), null);
        expect((await fed.listOrganizations(tenant)).map((o) => o.slug)).toEqual([a, b]);
        expect(await fed.listOrganizations(`t-${randomUUID()}`)).toEqual([]);
        expect(await fed.deleteOrganization(elsewhere, tenant)).toBe(false);
        expect(await fed.getOrganization(elsewhere)).not.toBeNull();
        expect(await fed.deleteOrganization(a, tenant)).toBe(true);
        expect(await fed.deleteOrganization(a, tenant)).toBe(false);
        expect(await fed.getOrganization(a)).toBeNull();
        expect((await fed.listOrganizations(tenant)).map((o) => o.slug)).toEqual([b]);
        expect((await fed.listOrganizations(other)).map((o) => o.slug)).toEqual([elsewhere]);
      });
    });

    describe('identities', () => {
      function identity(tenantId: string, subject: string, userId: string): FederatedIdentity {
        return { tenantId, issuer: 'https://idp.example.com', subject, userId, createdAt: T0 };
      }

      it('links an external account once; a later link keeps the first user', async () => {
        const tenant = `t-${randomUUID()}`;
        expect(await fed.findIdentity(tenant, 'https://idp.example.com', 'alice')).toBeNull();
        expect(await fed.linkIdentity(identity(tenant, 'alice', 'u-1'))).toStrictEqual(identity(tenant, 'alice', 'u-1'));
        expect(await fed.linkIdentity(identity(tenant, 'alice', 'u-2'))).toStrictEqual(identity(tenant, 'alice', 'u-1'));
        expect(await fed.findIdentity(tenant, 'https://idp.example.com', 'alice')).toStrictEqual(identity(tenant, 'alice', 'u-1'));
      });

      it('keeps tenants, issuers and subjects apart (no separator confusion)', async () => {
        const a = `t-${randomUUID()}`;
        const b = `t-${randomUUID()}`;
        await fed.linkIdentity(identity(a, 'sub', 'u-a'));
        expect(await fed.findIdentity(b, 'https://idp.example.com', 'sub')).toBeNull();
        expect(await fed.findIdentity(a, 'https://other.example.com', 'sub')).toBeNull();
        await fed.linkIdentity({ tenantId: a, issuer: 'https://idp.example.com/x', subject: 'y', userId: 'u-1', createdAt: T0 });
        expect(await fed.findIdentity(a, 'https://idp.example.com', 'x\u0000y')).toBeNull();
      });

      it("lists a tenant's identity links and deletes them all, leaving other tenants' links", async () => {
        const tenant = `t-${randomUUID()}`;
        const other = `t-${randomUUID()}`;
        await fed.linkIdentity(identity(tenant, 'zed', 'u-2'));
        await fed.linkIdentity(identity(tenant, 'amy', 'u-1'));
        await fed.linkIdentity(identity(other, 'amy', 'u-9'));
        expect(await fed.listIdentities(tenant)).toStrictEqual([identity(tenant, 'amy', 'u-1'), identity(tenant, 'zed', 'u-2')]);
        expect(await fed.deleteIdentities(tenant)).toBe(2);
        expect(await fed.listIdentities(tenant)).toEqual([]);
        expect(await fed.findIdentity(tenant, 'https://idp.example.com', 'amy')).toBeNull();
        expect(await fed.deleteIdentities(tenant)).toBe(0);
        expect(await fed.findIdentity(other, 'https://idp.example.com', 'amy')).toStrictEqual(identity(other, 'amy', 'u-9'));
      });

      it('20 concurrent first links of one account agree on one user', async () => {
        const tenant = `t-${randomUUID()}`;
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => fed.linkIdentity(identity(tenant, 'racer', `u-${i}`))));
        const winners = new Set(results.map((r) => r.userId));
        expect(winners.size).toBe(1);
        expect((await fed.findIdentity(tenant, 'https://idp.example.com', 'racer'))?.userId).toBe([...winners][0]);
      });
    });

    describe('flows', () => {
      it('a flow is consumed once, by the browser that started it, and keeps every field', async () => {
        const binding = newSecret();
        const { flow: f, state } = flow(binding);
        await fed.putFlow(f, T0);
        const r = await fed.consumeFlow('oidc', hashSecret(state), hashSecret(binding), T0 + MINUTE);
        expect(r).toStrictEqual({ outcome: 'consumed', flow: f });
        expect(await fed.consumeFlow('oidc', hashSecret(state), hashSecret(binding), T0 + MINUTE)).toStrictEqual({ outcome: 'missing' });
      });

      it("another browser's binding is refused and leaves the flow to its owner", async () => {
        const binding = newSecret();
        const { flow: f, state } = flow(binding);
        await fed.putFlow(f, T0);
        expect(await fed.consumeFlow('oidc', hashSecret(state), hashSecret(newSecret()), T0)).toStrictEqual({
          outcome: 'foreign',
          tenantId: f.session.tenantId,
          handle: f.session.handle,
        });
        expect((await fed.consumeFlow('oidc', hashSecret(state), hashSecret(binding), T0)).outcome).toBe('consumed');
      });

      it('a flow past its expiry reads as expired, and is gone afterwards', async () => {
        const binding = newSecret();
        const { flow: f, state } = flow(binding, 'oidc', T0, 600);
        await fed.putFlow(f, T0);
        const r = await fed.consumeFlow('oidc', hashSecret(state), hashSecret(binding), T0 + 600_000);
        expect(r.outcome).toBe('expired');
        expect(await fed.consumeFlow('oidc', hashSecret(state), hashSecret(binding), T0)).toStrictEqual({ outcome: 'missing' });
      });

      it('unknown states are missing; OIDC and OAuth flows live apart', async () => {
        const binding = newSecret();
        expect(await fed.consumeFlow('oidc', hashSecret(newSecret()), hashSecret(binding), T0)).toStrictEqual({ outcome: 'missing' });
        const { flow: f, state } = flow(binding, 'oauth');
        await fed.putFlow(f, T0);
        expect(await fed.consumeFlow('oidc', hashSecret(state), hashSecret(binding), T0)).toStrictEqual({ outcome: 'missing' });
        const r = await fed.consumeFlow('oauth', hashSecret(state), hashSecret(binding), T0);
        expect(r.outcome).toBe('consumed');
        expect(r.outcome === 'consumed' && r.flow.data.isAdminLogin).toBe(true);
      });

      it('several flows of one browser (tabs) never overwrite each other', async () => {
        const binding = newSecret();
        const tabs = Array.from({ length: 5 }, () => flow(binding));
        for (const t of tabs) await fed.putFlow(t.flow, T0);
        for (const t of tabs.reverse()) {
          const r = await fed.consumeFlow('oidc', hashSecret(t.state), hashSecret(binding), T0);
          expect(r).toStrictEqual({ outcome: 'consumed', flow: t.flow });
        }
      });

      it('refuses a second flow with the same state', async () => {
        const binding = newSecret();
        const { flow: f } = flow(binding);
        await fed.putFlow(f, T0);
        const err = await fed.putFlow(f, T0).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(TesseraError);
        expect((err as TesseraError).code).toBe('flow_exists');
      });

      it('50 concurrent callbacks with one state: exactly one gets the flow', async () => {
        const binding = newSecret();
        const { flow: f, state } = flow(binding);
        await fed.putFlow(f, T0);
        const results = await Promise.all(
          Array.from({ length: 50 }, () => fed.consumeFlow('oidc', hashSecret(state), hashSecret(binding), T0 + 1)),
        );
        expect(results.filter((r) => r.outcome === 'consumed')).toHaveLength(1);
        expect(results.filter((r) => r.outcome === 'missing')).toHaveLength(49);
      });
    });
  });
}
