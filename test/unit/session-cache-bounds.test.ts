// SessionCache's bounds (src/sessions/session-cache.ts): the cached records, the handles known to
// have ended and the handles heard on the feed each stay within their bound, the oldest going
// first (bounded-map.ts makeRoom: a sixteenth of the bound at once, not one walk over the deleted
// slots per insertion), and what is newest stays answered from memory.

import { describe, expect, it } from 'vitest';
import { DEFAULT_LIFETIMES, issueSession, type Session } from '../../src/domain/session.ts';
import { SessionCache } from '../../src/sessions/session-cache.ts';
import type { Coordination } from '../../src/store/coordination-port.ts';
import type { SessionStore } from '../../src/store/port.ts';

function newSession(now: number): Session {
  return issueSession({ tenantId: 't-bound', userId: 'u-bound', kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password', parentHandle: null }, now).session;
}

async function liveCache(max: number): Promise<{ cache: SessionCache; hear(handles: string[]): void }> {
  let listener: ((handles: string[]) => void) | null = null;
  const feed = {
    subscribeSessionEnds: (l: (handles: string[]) => void) => {
      listener = l;
      return Promise.resolve({ close: () => Promise.resolve() });
    },
  } as unknown as Coordination;
  const store = { getSession: () => Promise.resolve(null) } as unknown as SessionStore;
  const cache = new SessionCache(store, max);
  await cache.start(feed);
  return { cache, hear: (handles) => listener?.(handles) };
}

describe('SessionCache bounds', () => {
  it('keeps at most its bound of records, the newest answered from memory, an updated one without an eviction', async () => {
    const now = Date.now();
    const { cache } = await liveCache(64);
    const sessions = Array.from({ length: 1000 }, () => newSession(now));
    for (const s of sessions) cache.remember(s);
    const cached = sessions.filter((s) => cache.peekValid(s.handle, now) !== undefined);
    expect(cached.length).toBeLessThanOrEqual(64);
    expect(cached.length).toBeGreaterThanOrEqual(64 - 64 / 16);
    // The newest, in order.
    expect(cached).toStrictEqual(sessions.slice(sessions.length - cached.length));
    // A record remembered again (a rotation's) takes no other entry's place.
    const before = cached.length;
    for (const s of cached) cache.remember({ ...s, lastSeenAt: now + 1 });
    expect(sessions.filter((s) => cache.peekValid(s.handle, now) !== undefined)).toHaveLength(before);
  });

  it('keeps the newest ended handles within its bound: an ended session is never remembered again', async () => {
    const now = Date.now();
    const { cache } = await liveCache(64);
    const sessions = Array.from({ length: 1000 }, () => newSession(now));
    cache.forget(sessions.map((s) => s.handle));
    // The latest ends are kept: remembering those sessions again caches nothing.
    const recent = sessions.slice(-60);
    for (const s of recent) cache.remember(s);
    for (const s of recent) expect(cache.peekValid(s.handle, now)).toBeNull();
  });

  it('remembers the newest handles heard on the feed (a wait for them is over at once)', async () => {
    const now = Date.now();
    const live = await liveCache(100_000);
    const { cache } = live;
    const handles = Array.from({ length: 30_000 }, () => newSession(now).handle);
    for (const h of handles) live.hear([h]);
    // The bound is 10,000: the last 9,000 are surely kept.
    expect(await cache.waitForFeed(handles.slice(-9000), 5)).toBe(true);
    // The first ones are long gone: a wait for one of them times out.
    expect(await cache.waitForFeed(handles.slice(0, 1), 5)).toBe(false);
  });
});
