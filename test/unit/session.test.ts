import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  effectiveStatus,
  expiresAt,
  isValid,
  issueSession,
  sessionsToEvict,
  slideIdleExpiry,
  subtreeOf,
  type Session,
} from '../../src/domain/session.ts';
import { constantTimeEqual, hashSecret, isHandle, tagOfHandle, userTag } from '../../src/domain/secrets.ts';
import { buildTenant, lifetimeOf, profileDefaults } from '../../src/domain/tenant.ts';

const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
const app = { idle: 900, absolute: 43200 };

describe('the session tree', () => {
  it('issues a 256-bit secret and stores only its SHA-256', () => {
    const { session, secret } = issueSession({ tenantId: 't', userId: 'u', kind: 'app', lifetime: app, authMethod: 'password' }, T0);
    expect(Buffer.from(secret, 'base64url')).toHaveLength(32);
    expect(session.secretHash).toBe(hashSecret(secret));
    expect(JSON.stringify(session)).not.toContain(secret);
    expect(session.idleExpiresAt).toBe(T0 + 900_000);
    expect(session.absoluteExpiresAt).toBe(T0 + 43_200_000);
  });

  it('puts the user routing tag in the handle, so a store finds the shard from the handle', () => {
    const a = issueSession({ tenantId: 't', userId: 'u', kind: 'app', lifetime: app, authMethod: 'x' }, T0).session;
    const b = issueSession({ tenantId: 't', userId: 'u', kind: 'idp', lifetime: app, authMethod: 'x' }, T0).session;
    expect(isHandle(a.handle)).toBe(true);
    expect(a.handle).not.toBe(b.handle);
    expect(tagOfHandle(a.handle)).toBe(userTag('t', 'u'));
    expect(tagOfHandle(b.handle)).toBe(userTag('t', 'u'));
    expect(tagOfHandle('not a handle')).toBeNull();
  });

  it('refuses a user-less session of any kind but flow', () => {
    expect(() => issueSession({ tenantId: 't', userId: null, kind: 'app', lifetime: app, authMethod: 'x' }, T0)).toThrow();
    const flow = issueSession({ tenantId: 't', userId: null, kind: 'flow', lifetime: { idle: null, absolute: 600 }, authMethod: 'oidc' }, T0);
    expect(flow.session.idleExpiresAt).toBeNull();
    expect(isHandle(flow.session.handle)).toBe(true);
  });

  it('caps a child at its parent (notAfter) and idle at absolute', () => {
    const { session } = issueSession(
      { tenantId: 't', userId: 'u', kind: 'app', lifetime: { idle: 900, absolute: 43200 }, authMethod: 'x', notAfter: T0 + 60_000 },
      T0,
    );
    expect(session.absoluteExpiresAt).toBe(T0 + 60_000);
    expect(session.idleExpiresAt).toBe(T0 + 60_000);
  });

  it('is valid until the earlier of idle and absolute expiry, and reads as expired after', () => {
    const { session } = issueSession({ tenantId: 't', userId: 'u', kind: 'app', lifetime: app, authMethod: 'x' }, T0);
    expect(isValid(session, T0 + 899_999)).toBe(true);
    expect(isValid(session, T0 + 900_000)).toBe(false);
    expect(effectiveStatus(session, T0 + 900_000)).toBe('expired');
    expect(effectiveStatus({ ...session, status: 'revoked' }, T0)).toBe('revoked');
  });

  it('slides idle expiry but never past absolute (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 50_000_000 }), fc.integer({ min: 1, max: 100_000 }), (elapsed, idle) => {
        const { session } = issueSession({ tenantId: 't', userId: 'u', kind: 'app', lifetime: app, authMethod: 'x' }, T0);
        const next = slideIdleExpiry(session, idle, T0 + elapsed) as number;
        expect(next).toBeLessThanOrEqual(session.absoluteExpiresAt);
        expect(next).toBe(Math.min(T0 + elapsed + idle * 1000, session.absoluteExpiresAt));
        expect(expiresAt({ ...session, idleExpiresAt: next })).toBeLessThanOrEqual(session.absoluteExpiresAt);
      }),
    );
  });

  it('evicts the oldest so that exactly max remain with the new one', () => {
    const mk = (i: number): Session =>
      issueSession({ tenantId: 't', userId: 'u', kind: 'app', lifetime: app, authMethod: 'x' }, T0 + i * 1000).session;
    const five = [mk(3), mk(1), mk(4), mk(0), mk(2)];
    expect(sessionsToEvict(five, 3).map((s) => s.createdAt)).toEqual([T0, T0 + 1000, T0 + 2000]);
    expect(sessionsToEvict(five.slice(0, 2), 3)).toEqual([]);
  });

  it('finds a whole subtree, and survives a cycle', () => {
    const s = (handle: string, parentHandle: string | null) => ({ handle, parentHandle }) as Session;
    const all = [s('idp', null), s('app1', 'idp'), s('app2', 'idp'), s('r1', 'app1'), s('other', null), s('x', 'y'), s('y', 'x')];
    expect(subtreeOf('idp', all).sort()).toEqual(['app1', 'app2', 'idp', 'r1']);
    expect(subtreeOf('app2', all)).toEqual(['app2']);
    expect(subtreeOf('x', all).sort()).toEqual(['x', 'y']);
  });

  it('compares in constant time and correctly', () => {
    expect(constantTimeEqual('abc', 'abc')).toBe(true);
    expect(constantTimeEqual('abc', 'abd')).toBe(false);
    expect(constantTimeEqual('abc', 'abcd')).toBe(false);
  });
});

describe('tenants and profiles', () => {
  it('has the defaults per profile of docs/api.md §Tenants and profiles', () => {
    expect(profileDefaults('production').lifetimes.token).toBe(1800);
    expect(profileDefaults('integration').lifetimes.token).toBe(3600);
    expect(profileDefaults('production').sessionLimit).toEqual({ max: 5, policy: 'evict_oldest' });
    expect(profileDefaults('integration').sessionLimit.max).toBeNull();
  });

  it('fills what a PUT leaves out from the profile, and keeps createdAt', () => {
    const first = buildTenant('acme', { profile: 'integration', lifetimes: { appIdle: 60 } }, T0);
    expect(first.lifetimes).toMatchObject({ token: 3600, appIdle: 60, appAbsolute: 43200, refreshGrace: 10 });
    const second = buildTenant('acme', { sessionLimit: { max: 3 } }, T0 + 5, first);
    expect(second.profile).toBe('production');
    expect(second.sessionLimit).toEqual({ max: 3, policy: 'evict_oldest' });
    expect(second.lifetimes.appIdle).toBe(900);
    expect(second.createdAt).toBe(T0);
    expect(second.updatedAt).toBe(T0 + 5);
    expect(lifetimeOf(second, 'redirect')).toEqual({ idle: null, absolute: 1200 });
  });

  it('refuses an idle lifetime longer than the absolute one', () => {
    expect(() => buildTenant('acme', { lifetimes: { appIdle: 100, appAbsolute: 50 } }, T0)).toThrow(/appIdle/);
  });
});
