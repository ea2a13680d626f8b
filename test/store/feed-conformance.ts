// The conformance suite of Coordination between store instances (src/store/coordination-port.ts):
// the feed of session ends, and the counters two instances share. Every target of the matrix runs
// it (test/store/targets.ts), with a writer and a reader on the same data — two processes, in
// effect: every operation that ends sessions (revoke, user-wide, tenant-wide, eviction by a limit
// at login and at renewal, consume, refresh-token reuse, the expiry sweep) publishes the ends, a
// subscriber of the other instance hears each of them once, the ends of one user in the order they
// were made, and a subscriber whose feed was cut is told (`down`, then `up`) before it hears again.
//
// Every test makes its own tenant and user ids. Waiting is bounded (vi.waitFor), never timed.

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashSecret, newSecret } from '../../src/domain/secrets.ts';
import { DEFAULT_LIFETIMES, issueSession } from '../../src/domain/session.ts';
import type { Lifetime, Session, SessionKind } from '../../src/domain/session.ts';
import { PEER_MESSAGE_MAX_BYTES, type FeedChange } from '../../src/store/coordination-port.ts';
import type { RefreshToken, Store } from '../../src/store/port.ts';
import type { FeedRig, StoreTarget } from './targets.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** Upper bound for a delivery, long enough for a loaded machine; a pass never waits for it. */
const DELIVERY = { timeout: 15_000, interval: 10 };

type Heard = { end: string } | { change: FeedChange };

/** A subscription of the reader that records everything it is told, in order. */
interface Listening {
  log: Heard[];
  ends(): string[];
  close(): Promise<void>;
}

async function listen(store: Store): Promise<Listening> {
  const log: Heard[] = [];
  const sub = await store.subscribeSessionEnds(
    (handles) => {
      for (const h of handles) log.push({ end: h });
    },
    (change) => log.push({ change }),
  );
  return {
    log,
    ends: () => log.flatMap((e) => ('end' in e ? [e.end] : [])),
    close: () => sub.close(),
  };
}

export function describeFeedConformance(name: string, target: StoreTarget): void {
  describe(`${name}: feed of session ends and shared counters`, () => {
    const T0 = Date.now();
    let rig: FeedRig | undefined;
    let writer: Store;
    let reader: Listening;

    beforeAll(async () => {
      rig = await target.openFeedRig({ gap: false });
      writer = rig.writer;
      reader = await listen(rig.reader);
    });
    afterAll(async () => {
      await reader?.close();
      await rig?.close();
    });

    interface Ids {
      tenantId: string;
      userId: string;
    }
    const fresh = (): Ids => ({ tenantId: `t-${randomUUID()}`, userId: `u-${randomUUID()}` });

    function issue(ids: Ids, kind: SessionKind, o: { at?: number; parent?: Session; lifetime?: Lifetime } = {}): Session {
      return issueSession(
        {
          tenantId: ids.tenantId,
          userId: kind === 'flow' ? null : ids.userId,
          kind,
          parentHandle: o.parent?.handle ?? null,
          lifetime: o.lifetime ?? DEFAULT_LIFETIMES[kind],
          authMethod: 'password',
          ...(o.parent ? { notAfter: o.parent.absoluteExpiresAt } : {}),
        },
        o.at ?? T0,
      ).session;
    }

    async function make(ids: Ids, kind: SessionKind, o: { at?: number; parent?: Session; lifetime?: Lifetime } = {}): Promise<Session> {
      const s = issue(ids, kind, o);
      const r = await writer.createSession(s, s.createdAt);
      if (!r.ok) throw new Error(`not created: ${JSON.stringify(r)}`);
      return r.session;
    }

    function firstToken(s: Session): RefreshToken {
      return { tokenHash: hashSecret(newSecret()), sessionHandle: s.handle, tenantId: s.tenantId, userId: s.userId as string, createdAt: s.createdAt, rotatedAt: null, successorHash: null };
    }

    const handles = (list: readonly Session[]): string[] => list.map((s) => s.handle);

    /** Waits until the reader has heard every one of `expected`. */
    async function heard(expected: readonly string[], by: Listening = reader): Promise<void> {
      await vi.waitFor(async () => {
        await rig?.deliver();
        expect(by.ends()).toEqual(expect.arrayContaining([...expected]));
      }, DELIVERY);
    }

    /**
     * Ends a new session of `ids`' user and waits until the reader heard it: whatever this user's
     * earlier operations published has arrived by then (the ends of one user arrive in order).
     */
    async function marker(ids: Ids, by: Listening = reader): Promise<string> {
      const m = await make(ids, 'app');
      expect(handles(await writer.revokeSession(m.handle, 'logout', T0 + 1))).toStrictEqual([m.handle]);
      await heard([m.handle], by);
      return m.handle;
    }

    it('revokeSession: the session and its whole subtree reach a subscriber of another instance', async () => {
      const ids = fresh();
      const idp = await make(ids, 'idp');
      const app = await make(ids, 'app', { parent: idp });
      const redirect = await make(ids, 'redirect', { parent: app });
      const ended = await writer.revokeSession(idp.handle, 'logout', T0 + 1);
      expect(new Set(handles(ended))).toStrictEqual(new Set([idp.handle, app.handle, redirect.handle]));
      await heard(handles(ended));
    });

    it('revokeUserSessions: every session it ended, and nothing of the kept subtree', async () => {
      const ids = fresh();
      const kept = await make(ids, 'idp');
      const keptChild = await make(ids, 'app', { parent: kept });
      const others = [await make(ids, 'app'), await make(ids, 'app'), await make(ids, 'idp')];
      const ended = await writer.revokeUserSessions(ids.tenantId, ids.userId, 'admin', T0 + 1, { exceptHandle: keptChild.handle });
      expect(new Set(handles(ended))).toStrictEqual(new Set(handles(others)));
      await heard(handles(ended));
      await marker(ids);
      expect(reader.ends()).not.toContain(kept.handle);
      expect(reader.ends()).not.toContain(keptChild.handle);
    });

    it('revokeTenantSessions: every session of every user of the tenant', async () => {
      const tenantId = `t-${randomUUID()}`;
      const sessions: Session[] = [];
      for (let i = 0; i < 3; i++) {
        const ids = { tenantId, userId: `u-${randomUUID()}` };
        const idp = await make(ids, 'idp');
        sessions.push(idp, await make(ids, 'app', { parent: idp }));
      }
      sessions.push(await make({ tenantId, userId: 'unused' }, 'flow'));
      const ended = await writer.revokeTenantSessions(tenantId, 'admin', T0 + 1);
      expect(new Set(handles(ended))).toStrictEqual(new Set(handles(sessions)));
      await heard(handles(ended));
    });

    it('a login over the limit (evict_oldest) and a renewal over it publish the sessions they evict', async () => {
      const ids = fresh();
      const oldest = await make(ids, 'app', { at: T0 - 2 * MINUTE });
      const next = issue(ids, 'app', { at: T0 });
      const r = await writer.createSession(next, T0, { kind: 'app', max: 1, policy: 'evict_oldest' });
      expect(r.ok && handles(r.evicted)).toStrictEqual([oldest.handle]);
      await heard([oldest.handle]);

      // `next` is idle-expired 16 minutes later; its successor evicts the valid `other`.
      const now = T0 + 16 * MINUTE;
      const other = await make(ids, 'app', { at: now - MINUTE });
      const successor = issue(ids, 'app', { at: now });
      const renewed = await writer.renewAfterExpiry(next.handle, successor, now, { kind: 'app', max: 1, policy: 'evict_oldest' });
      expect(renewed.outcome === 'renewed' && handles(renewed.evicted)).toStrictEqual([other.handle]);
      await heard([other.handle]);
    });

    it('consumeSession publishes the session it consumed', async () => {
      const flow = await make(fresh(), 'flow');
      expect((await writer.consumeSession(flow.secretHash, T0 + 1))?.handle).toBe(flow.handle);
      await heard([flow.handle]);
    });

    // A one-time token (a flow record) consumed by a redeem: the Redis adapter does not publish
    // its end (no session cache keeps a flow record: SessionCache.remember), the others do (their
    // feeds are the store's own log of ends). Either way the target activated is not an end.
    const quietFlowEnds = target.id.startsWith('redis');
    async function consumedOnceHeard(once: Session, ids: Ids): Promise<void> {
      if (!quietFlowEnds) await heard([once.handle]);
      await marker(ids);
      if (quietFlowEnds) expect(reader.ends()).not.toContain(once.handle);
    }

    it('redeemSession publishes the single-use session it consumed (not on Redis), not the target it activated', async () => {
      const ids = fresh();
      const app = await make(ids, 'app');
      const once = issueSession({ tenantId: ids.tenantId, userId: ids.userId, kind: 'flow', lifetime: DEFAULT_LIFETIMES.flow, authMethod: 'oidc' }, T0).session;
      expect((await writer.createSession(once, T0)).ok).toBe(true);
      const r = await writer.redeemSession(once.secretHash, { handle: app.handle, expectData: {}, patch: { mode: 'token' }, idleExpiresAt: T0 + 60_000, refreshToken: null }, T0 + 1);
      expect(r.outcome).toBe('redeemed');
      await consumedOnceHeard(once, ids);
      expect(reader.ends()).not.toContain(app.handle);
    });

    it('lookUpAndRedeem publishes the single-use session it consumed (not on Redis), not the target it activated', async () => {
      const ids = fresh();
      await writer.createUser({ id: ids.userId as string, tenantId: ids.tenantId, email: `${ids.userId}@example.com`, passwordHash: null, roles: [], createdAt: T0, updatedAt: T0 });
      const app = await make(ids, 'app');
      const once = issueSession({ tenantId: ids.tenantId, userId: ids.userId, kind: 'flow', lifetime: DEFAULT_LIFETIMES.flow, authMethod: 'oidc', data: { appHandle: app.handle } }, T0).session;
      expect((await writer.createSession(once, T0)).ok).toBe(true);
      const plan = { kind: 'flow' as const, tenants: [{ tenantId: ids.tenantId, idleExpiresAt: T0 + 60_000 }], expectSeen: {}, targetField: 'appHandle', target: { expectData: {}, patch: { mode: 'token' } }, refreshToken: null };
      expect((await writer.lookUpAndRedeem(once.secretHash, plan, T0 + 1)).outcome).toBe('redeemed');
      await consumedOnceHeard(once, ids);
      expect(reader.ends()).not.toContain(app.handle);
    });

    it('refresh-token reuse publishes the session tree it revokes', async () => {
      const ids = fresh();
      const app = await make(ids, 'app');
      const redirect = await make(ids, 'redirect', { parent: app });
      const t = firstToken(app);
      await writer.addRefreshToken(t);
      expect((await writer.rotateRefreshToken(t.tokenHash, hashSecret(newSecret()), T0 + 1, 0, null)).outcome).toBe('rotated');
      const reuse = await writer.rotateRefreshToken(t.tokenHash, hashSecret(newSecret()), T0 + 2, 0, null);
      expect(reuse.outcome === 'reused' && new Set(handles(reuse.revoked))).toStrictEqual(new Set([app.handle, redirect.handle]));
      await heard([app.handle, redirect.handle]);
    });

    it('sweepExpired publishes each session it expires', async () => {
      const ids = fresh();
      const short = { idle: 60, absolute: 600 };
      const stale = [await make(ids, 'app', { at: T0 - 2 * HOUR, lifetime: short }), await make(ids, 'idp', { at: T0 - 2 * HOUR, lifetime: short })];
      const swept: Session[] = [];
      for (let got = await writer.sweepExpired(T0, 100); got.length > 0; got = await writer.sweepExpired(T0, 100)) swept.push(...got);
      expect(handles(swept)).toEqual(expect.arrayContaining(handles(stale)));
      await heard(handles(stale));
    });

    it('the ends of one user arrive in the order they were made', async () => {
      const ids = fresh();
      const sessions = await Promise.all(Array.from({ length: 8 }, () => make(ids, 'app')));
      for (const s of sessions) await writer.revokeSession(s.handle, 'logout', T0 + 1);
      await heard(handles(sessions));
      const mine = new Set(handles(sessions));
      expect(reader.ends().filter((h) => mine.has(h))).toStrictEqual(handles(sessions));
    });

    it('the ends of many users made at once all arrive (in a Cluster: from several masters)', async () => {
      const tenantId = `t-${randomUUID()}`;
      const sessions = await Promise.all(Array.from({ length: 6 }, () => make({ tenantId, userId: `u-${randomUUID()}` }, 'app')));
      await Promise.all(sessions.map((s) => writer.revokeSession(s.handle, 'admin', T0 + 1)));
      await heard(handles(sessions));
    });

    it('each end is published once: ending an ended session again publishes nothing', async () => {
      const ids = fresh();
      const s = await make(ids, 'app');
      expect(await writer.revokeSession(s.handle, 'logout', T0 + 1)).toHaveLength(1);
      expect(await writer.revokeSession(s.handle, 'logout', T0 + 2)).toStrictEqual([]);
      expect(await writer.revokeUserSessions(ids.tenantId, ids.userId, 'admin', T0 + 3)).toStrictEqual([]);
      await marker(ids);
      expect(reader.ends().filter((h) => h === s.handle)).toHaveLength(1);
    });

    it('a closed subscription hears nothing more', async () => {
      const ids = fresh();
      const closing = await listen(rig!.reader);
      await marker(ids, closing);
      await closing.close();
      const after = await make(ids, 'app');
      await writer.revokeSession(after.handle, 'logout', T0 + 1);
      await marker(ids); // heard by the open subscription: `after` was published before it
      expect(reader.ends()).toContain(after.handle);
      expect(closing.ends()).not.toContain(after.handle);
    });

    it('a subscriber whose feed was cut is told: down (it may have lost ends), then up, and hears again', async () => {
      const gap = await target.openFeedRig({ gap: true });
      const sub = await listen(gap.reader);
      const changes = (from: number): FeedChange[] => sub.log.slice(from).flatMap((e) => ('change' in e ? [e.change] : []));
      try {
        const ids = fresh();
        const end = async (): Promise<string> => {
          const s = issue(ids, 'app');
          expect((await gap.writer.createSession(s, T0)).ok).toBe(true);
          await gap.writer.revokeSession(s.handle, 'logout', T0 + 1);
          return s.handle;
        };
        // The feed delivers, and is up (a subscriber may be told `down` early on, e.g. while a
        // Sentinel client learns the replicas; then `up` follows).
        const before = await end();
        await vi.waitFor(async () => {
          await gap.deliver();
          expect(sub.ends()).toContain(before);
          expect(changes(0).at(-1) ?? 'up').toBe('up');
        }, DELIVERY);

        const from = sub.log.length;
        await gap.cut();
        await end(); // may be lost
        await gap.heal();
        // Ends go on being made; the subscriber is told `down` and, once it hears again, `up`
        // (SQLite tells both when it reads past the pruned part of its log).
        await vi.waitFor(async () => {
          await end();
          await gap.deliver();
          const told = changes(from);
          expect(told[0]).toBe('down');
          expect(told.at(-1)).toBe('up');
        }, { timeout: 30_000, interval: 50 });
        changes(from).forEach((c, i) => expect(c).toBe(i % 2 === 0 ? 'down' : 'up'));
        // From `up` on, every end arrives again.
        const after = await end();
        await vi.waitFor(async () => {
          await gap.deliver();
          expect(sub.ends()).toContain(after);
        }, DELIVERY);
      } finally {
        await sub.close();
        await gap.close();
      }
    });

    // ---- the channel between the processes (publishToPeers, subscribePeers) -------------------

    /** A subscription to the peers' channel that records the messages carrying `tag`. */
    async function listenPeers(store: Store, tag: string): Promise<{ got: string[]; close(): Promise<void> }> {
      const got: string[] = [];
      const sub = await store.subscribePeers(
        (m) => {
          if (m.includes(tag)) got.push(m);
        },
        () => undefined,
      );
      return { got, close: () => sub.close() };
    }

    it('publishToPeers: every message reaches a subscriber of another instance and one of the publisher, whole, once', async () => {
      const tag = randomUUID();
      const other = await listenPeers(rig!.reader, tag);
      const own = await listenPeers(writer, tag);
      try {
        const head = `big ${tag} `;
        // The largest message, in characters of 1, 2 and 4 bytes of UTF-8.
        let big = head;
        for (const c of ['ü', '🎉', 'x']) while (Buffer.byteLength(big + c) <= PEER_MESSAGE_MAX_BYTES - 10) big += c;
        while (Buffer.byteLength(big) < PEER_MESSAGE_MAX_BYTES) big += 'y';
        expect(Buffer.byteLength(big)).toBe(PEER_MESSAGE_MAX_BYTES);
        const sent = [`one ${tag}`, `two ${tag} with  two spaces, 'quotes', "json" {x:1} \\ and a\nnewline`, big, `last ${tag}`];
        await writer.publishToPeers(sent);
        await rig!.reader.publishToPeers([`from the reader ${tag}`]);
        // No order is promised (a Cluster's bus was seen to reorder the messages of one call).
        const expected = [...sent, `from the reader ${tag}`].sort();
        await vi.waitFor(async () => {
          await rig?.deliver();
          expect([...other.got].sort()).toStrictEqual(expected);
          expect([...own.got].sort()).toStrictEqual(expected);
        }, DELIVERY);
      } finally {
        await other.close();
        await own.close();
      }
    });

    it('publishToPeers refuses, before sending any of the call, a message too long, with a NUL, or starting with a control character', async () => {
      const tag = randomUUID();
      const other = await listenPeers(rig!.reader, tag);
      try {
        const tooLong = `long ${tag} ${'x'.repeat(PEER_MESSAGE_MAX_BYTES)}`;
        for (const bad of [tooLong, `nul ${tag} \u0000`, `\u0001probe ${tag}`]) {
          await expect(writer.publishToPeers([`fine ${tag}`, bad])).rejects.toThrow(/at most/);
        }
        await writer.publishToPeers([`after ${tag}`]);
        await vi.waitFor(async () => {
          await rig?.deliver();
          expect(other.got).toContain(`after ${tag}`);
        }, DELIVERY);
        expect(other.got).toStrictEqual([`after ${tag}`]);
      } finally {
        await other.close();
      }
    });

    it('a closed peers subscription hears nothing more', async () => {
      const tag = randomUUID();
      const open = await listenPeers(rig!.reader, tag);
      const closing = await listenPeers(rig!.reader, tag);
      try {
        await writer.publishToPeers([`before ${tag}`]);
        await vi.waitFor(async () => {
          await rig?.deliver();
          expect(closing.got).toStrictEqual([`before ${tag}`]);
        }, DELIVERY);
        await closing.close();
        await writer.publishToPeers([`after ${tag}`]);
        await vi.waitFor(async () => {
          await rig?.deliver();
          expect([...open.got].sort()).toStrictEqual([`after ${tag}`, `before ${tag}`]);
        }, DELIVERY);
        expect(closing.got).toStrictEqual([`before ${tag}`]);
      } finally {
        await open.close();
      }
    });

    it('counters: two instances count in one fixed window, concurrent hits each once, and see a reset', async () => {
      const a = writer;
      const b = rig!.reader;
      const key = `login:acct:${newSecret()}`;
      expect(await a.peekCounter(key, T0)).toBeNull();
      expect(await a.hitCounter(key, 60_000, T0)).toStrictEqual({ count: 1, resetAt: T0 + 60_000 });
      const hits = await Promise.all(Array.from({ length: 9 }, (_, i) => (i % 2 ? a : b).hitCounter(key, 60_000, T0 + 1)));
      expect(hits.map((h) => h.count).sort((x, y) => x - y)).toStrictEqual([2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(await b.peekCounter(key, T0 + 59_999)).toStrictEqual({ count: 10, resetAt: T0 + 60_000 });
      expect(await b.peekCounter(key, T0 + 60_000)).toBeNull();
      expect(await a.hitCounter(key, 60_000, T0 + 60_000)).toStrictEqual({ count: 1, resetAt: T0 + 120_000 });
      await b.resetCounter(key);
      expect(await a.peekCounter(key, T0 + 60_001)).toBeNull();
    });
  });
}
