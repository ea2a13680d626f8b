// "An explicit end is refused by the very next request on every server" (src/sessions/peer-acks.ts,
// endedEverywhere in src/sessions/app-sessions.ts), on real stores: two store instances on the
// same data — two processes, in effect — each with its session cache and its PeerAcks. Process B's
// feed of ends is held back (as a PostgreSQL LISTEN connection that reads late, or a SQLite poll
// that has not come yet), so only the acknowledgements can make B forget in time. When A's end
// resolves, B must already refuse the session from memory. Nothing is timed: the ends wait with a
// bound far beyond any delivery, and a pass never waits for it.

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEFAULT_LIFETIMES, issueSession, type Session } from '../../src/domain/session.ts';
import { endedEverywhere } from '../../src/sessions/app-sessions.ts';
import { PeerAcks } from '../../src/sessions/peer-acks.ts';
import { SessionCache } from '../../src/sessions/session-cache.ts';
import type { Coordination, FeedChange } from '../../src/store/coordination-port.ts';
import type { Store } from '../../src/store/port.ts';
import { storeTarget, type StorePair, type TargetId } from './targets.ts';

const IDS: TargetId[] = ['sqlite', 'redis', 'postgres'];
/** Far beyond any delivery on a loaded machine; a pass never waits for it. */
const BOUND_MS = 60_000;
const DELIVERY = { timeout: 15_000, interval: 10 };

/** B's feed of ends: held until `release` (the delayed delivery this test is about). */
function heldFeed(store: Store): { feed: Coordination; held: string[]; release(): void } {
  const held: string[] = [];
  let deliver: ((handles: string[]) => void) | null = null;
  const feed = {
    subscribeSessionEnds: (listener: (handles: string[]) => void, onReset: (change: FeedChange) => void) => {
      deliver = listener;
      return store.subscribeSessionEnds((handles) => held.push(...handles), onReset);
    },
  } as unknown as Coordination;
  return { feed, held, release: () => deliver?.(held.splice(0)) };
}

for (const id of IDS) {
  const target = storeTarget(id);
  const skip = await target.skip();
  describe.skipIf(skip)(`${id}: an end answers once the other process refuses the session`, () => {
    let pair: StorePair;
    let cacheA: SessionCache;
    let cacheB: SessionCache;
    let peersA: PeerAcks;
    let peersB: PeerAcks;
    let feedB: ReturnType<typeof heldFeed>;

    beforeAll(async () => {
      await target.start();
      pair = await target.openPair('ended-everywhere');
      cacheA = new SessionCache(pair.a);
      cacheB = new SessionCache(pair.b);
      feedB = heldFeed(pair.b);
      await cacheA.start(pair.a);
      await cacheB.start(feedB.feed);
      peersA = new PeerAcks(pair.a, cacheA);
      peersB = new PeerAcks(pair.b, cacheB);
      await peersA.start();
      await peersB.start();
      await vi.waitFor(() => {
        expect(peersA.peers).toContain(peersB.id);
        expect(peersB.peers).toContain(peersA.id);
      }, DELIVERY);
    });
    afterAll(async () => {
      await peersA?.stop();
      await peersB?.stop();
      await cacheA?.stop();
      await cacheB?.stop();
      await pair?.close();
      await target.stop();
    });

    async function cachedOnB(userId: string): Promise<Session> {
      const now = Date.now();
      const { session } = issueSession({ tenantId: `t-ee-${id}`, userId, kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password' }, now);
      expect((await pair.a.createSession(session, now)).ok).toBe(true);
      expect(await cacheB.getValid(session.handle, now)).not.toBeNull();
      expect(cacheB.peekValid(session.handle, now)?.handle).toBe(session.handle); // served from B's memory
      return session;
    }

    it('a logout on A resolves only after B forgot the session, though B has not heard the end from its feed', async () => {
      for (let i = 0; i < 5; i++) {
        const s = await cachedOnB(`u-${i}`);
        const now = Date.now();
        const ended = await pair.a.revokeSession(s.handle, 'logout', now);
        expect(ended.map((e) => e.handle)).toStrictEqual([s.handle]);
        cacheA.forget([s.handle]); // as announceEnded does
        expect(await endedEverywhere({ sessionCache: cacheA, peers: peersA }, ended, BOUND_MS)).toBe(true);
        // The very next check on B is refused from memory; B's own feed has not told it yet.
        expect(cacheB.peekValid(s.handle, now)).toBeNull();
        expect(await cacheB.getValid(s.handle, now)).toBeNull();
        feedB.release();
      }
    });

    it('a user-wide end of many sessions (several messages) resolves only after B forgot every one', async () => {
      const sessions: Session[] = [];
      for (let i = 0; i < 150; i++) sessions.push(await cachedOnB('u-many'));
      const now = Date.now();
      const ended = await pair.a.revokeUserSessions(`t-ee-${id}`, 'u-many', 'admin', now);
      expect(ended).toHaveLength(150);
      cacheA.forget(ended.map((e) => e.handle));
      expect(await endedEverywhere({ sessionCache: cacheA, peers: peersA }, ended, BOUND_MS)).toBe(true);
      for (const s of sessions) expect(cacheB.peekValid(s.handle, now)).toBeNull();
      feedB.release();
    });
  });
}
