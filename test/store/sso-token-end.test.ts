// A consumed SSO one-time token on another process's session cache, on real stores: two store
// instances on the same data — two processes, in effect — A exchanging the token, B with a
// session cache on its own feed of ends. The Redis adapter does not publish the end of a flow
// record consumed by a redeem (scripts.ts redeemSteps); this is why nothing depends on it: B's
// cache never keeps a flow record (SessionCache.remember), so even the one way a one-time token's
// record reaches a cache — a request presenting the token as its session cookie, looked up by the
// secret's hash — leaves nothing that a missing end could keep alive. Nothing is timed.

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashSecret, newSecret } from '../../src/domain/secrets.ts';
import { DEFAULT_LIFETIMES, issueSession, type Session } from '../../src/domain/session.ts';
import { SessionCache } from '../../src/sessions/session-cache.ts';
import type { Coordination } from '../../src/store/coordination-port.ts';
import type { RedeemPlan } from '../../src/store/sessions-port.ts';
import { storeTarget, type StorePair, type TargetId } from './targets.ts';

const IDS: TargetId[] = ['sqlite', 'redis', 'postgres'];
const DELIVERY = { timeout: 15_000, interval: 10 };

for (const id of IDS) {
  const target = storeTarget(id);
  const skip = await target.skip();
  describe.skipIf(skip)(`${id}: a consumed one-time token on another process's session cache`, () => {
    let pair: StorePair;
    let cacheB: SessionCache;
    const heardB: string[] = [];

    beforeAll(async () => {
      await target.start();
      pair = await target.openPair('sso-token-end');
      cacheB = new SessionCache(pair.b);
      await cacheB.start({
        subscribeSessionEnds: (listener, onReset) =>
          pair.b.subscribeSessionEnds((handles) => {
            heardB.push(...handles);
            listener(handles);
          }, onReset),
      } as Pick<Coordination, 'subscribeSessionEnds'> as Coordination);
    });
    afterAll(async () => {
      await cacheB?.stop();
      await pair?.close();
      await target.stop();
    });

    /** A pending app session and its one-time token, as createSsoSessions stores them. */
    async function signIn(): Promise<{ tenantId: string; userId: string; app: Session; once: Session; token: string }> {
      const now = Date.now();
      const tenantId = `t-${randomUUID()}`;
      const userId = `u-${randomUUID()}`;
      await pair.a.createUser({ id: userId, tenantId, email: `${userId}@example.com`, passwordHash: null, roles: [], createdAt: now, updatedAt: now });
      const app = issueSession(
        { tenantId, userId, kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'oidc', data: { mode: 'pending' } },
        now,
      ).session;
      expect((await pair.a.createSession(app, now)).ok).toBe(true);
      const token = newSecret();
      const once = issueSession(
        { tenantId, userId, kind: 'flow', lifetime: { idle: null, absolute: 60 }, authMethod: 'oidc', data: { purpose: 'sso_token', appHandle: app.handle } },
        now,
      ).session;
      once.secretHash = hashSecret(token);
      expect((await pair.a.createSession(once, now)).ok).toBe(true);
      return { tenantId, userId, app, once, token };
    }

    /** Redeems the token for its app session through redeemSession (the steps' call). */
    async function redeem(once: Session, app: Session, now: number): Promise<void> {
      const r = await pair.a.redeemSession(once.secretHash, { handle: app.handle, expectData: { mode: 'pending' }, patch: { mode: 'token' }, idleExpiresAt: now + 60_000, refreshToken: null }, now + 1);
      expect(r.outcome).toBe('redeemed');
    }

    /**
     * Whether B heard the token's end: asked after a marker end of the same user made after it —
     * once B heard the marker, it heard whatever came before. Published on SQLite and PostgreSQL,
     * not on Redis.
     */
    async function expectTokenEndHeardOnlyOffRedis(ids: { tenantId: string; userId: string }, once: Session, now: number): Promise<void> {
      const marker = issueSession({ ...ids, kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password' }, now).session;
      expect((await pair.a.createSession(marker, now)).ok).toBe(true);
      await pair.a.revokeSession(marker.handle, 'logout', now + 2);
      await vi.waitFor(() => expect(heardB).toContain(marker.handle), DELIVERY);
      if (id === 'redis') expect(heardB).not.toContain(once.handle);
      else expect(heardB).toContain(once.handle);
    }

    it('B never keeps the token’s record, so after A exchanged it B answers from the store: consumed', async () => {
      const { tenantId, app, once } = await signIn();
      const now = Date.now();
      // The token presented to B as a session cookie: B reads the record (still valid)...
      expect((await cacheB.getValidBySecretHash(once.secretHash, now))?.handle).toBe(once.handle);
      // ...and keeps nothing of it to answer from.
      expect(cacheB.peekValid(once.handle, now)).toBeUndefined();
      expect(cacheB.peekValidBySecretHash(once.secretHash, now)).toBeUndefined();

      const plan: RedeemPlan = {
        kind: 'flow',
        tenants: [{ tenantId, idleExpiresAt: now + 60_000 }],
        expectSeen: {},
        targetField: 'appHandle',
        target: { expectData: { mode: 'pending' }, patch: { mode: 'token' } },
        refreshToken: null,
      };
      const r = await pair.a.lookUpAndRedeem(once.secretHash, plan, now + 1);
      expect(r.outcome).toBe('redeemed');

      // With no end heard (Redis publishes none), B reads the store again: the token is spent.
      expect(await cacheB.getValidBySecretHash(once.secretHash, now + 2)).toBeNull();
      expect(cacheB.peekValid(once.handle, now + 2) ?? null).toBeNull(); // never served from memory
      // The activated app session is no end either (it is cacheable, and B may keep it).
      expect(heardB).not.toContain(app.handle);
    });

    it('B keeps no pending app session (the callback’s), so after A’s exchange B answers the activated one from the store', async () => {
      const { once, app } = await signIn();
      const now = Date.now();
      // The callback ran on B: it had the pending app session in hand (createSsoSessions)...
      cacheB.remember(app);
      // ...and keeps nothing of it: no credential names it before the exchange.
      expect(cacheB.peekValid(app.handle, now)).toBeUndefined();
      await redeem(once, app, now);
      // The activation is no end (nothing published for it): B reads the store and sees token mode.
      expect(heardB).not.toContain(app.handle);
      const seen = await cacheB.getValid(app.handle, now + 2);
      expect(seen?.data.mode).toBe('token');
      expect(seen?.idleExpiresAt).toBe(now + 60_000);
      expect(cacheB.peekValid(app.handle, now + 2)?.data.mode).toBe('token');
    });

    it('the end of a one-time token consumed by a redeem is published on SQLite and PostgreSQL, not on Redis', async () => {
      const { tenantId, userId, once, app } = await signIn();
      const now = Date.now();
      await redeem(once, app, now);
      await expectTokenEndHeardOnlyOffRedis({ tenantId, userId }, once, now);
    });

    it('a one-time token with a child (no flow makes one): the child’s end is published, the token’s as above', async () => {
      const { tenantId, userId, once, app } = await signIn();
      const now = Date.now();
      const child = issueSession(
        { tenantId, userId, kind: 'redirect', lifetime: DEFAULT_LIFETIMES.redirect, authMethod: 'oidc', parentHandle: once.handle, notAfter: once.absoluteExpiresAt },
        now,
      ).session;
      expect((await pair.a.createSession(child, now)).ok).toBe(true);
      await redeem(once, app, now);
      await vi.waitFor(() => expect(heardB).toContain(child.handle), DELIVERY);
      await expectTokenEndHeardOnlyOffRedis({ tenantId, userId }, once, now);
    });
  });
}
