// One user with many sessions on Redis (docs/performance.md, "One user with many sessions"): every
// script on a user's sessions reads and writes that user's live value, so its size is what each
// operation costs Redis. These tests assert the structure that bounds it — the live value holds
// only live records, ended ones are reached one field at a time, and the per-user cap keeps it
// bounded (by ending the oldest records, never by refusing a login) — not a time.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret, newSecret, userTag } from '../../src/domain/secrets.ts';
import { DEFAULT_LIFETIMES, issueSession, type Session } from '../../src/domain/session.ts';
import type { RefreshToken } from '../../src/store/port.ts';
import { openConnection, type RedisConnection } from '../../src/store/redis/connection.ts';
import { openRedisStore, parseRedisUrl, type RedisSessionStore } from '../../src/store/redis/redis-store.ts';
import { purgePrefix, redisUrlForTests, requireOrSkip, testPrefix } from '../support/redis.ts';

const redis = await redisUrlForTests();
const skip = requireOrSkip(redis.unavailable);
const T0 = Date.now();
const RETENTION = 1000;
const UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
/** A generous size for one live record of these tests (each is about 150–200 bytes). */
const RECORD_BYTES = 400;

function app(tenantId: string, userId: string, at: number): Session {
  return {
    ...issueSession({ tenantId, userId, kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password' }, at).session,
    device: { userAgent: UA, ip: '203.0.113.9' },
    data: { mode: 'token' },
  };
}

function hashHere(): string {
  return hashSecret(newSecret());
}

function tokenOf(s: Session): RefreshToken {
  return { tokenHash: hashSecret(newSecret()), sessionHandle: s.handle, tenantId: s.tenantId, userId: s.userId as string, createdAt: s.createdAt, rotatedAt: null, successorHash: null };
}

describe.skipIf(skip)('Redis: one user with many sessions', () => {
  const prefix = testPrefix('bound');
  let store: RedisSessionStore;
  let conn: RedisConnection;
  const live = (tenantId: string, userId: string): string => `${prefix}{${userTag(tenantId, userId)}}:s`;
  const ended = (tenantId: string, userId: string): string => `${prefix}{${userTag(tenantId, userId)}}:e`;
  const strlen = async (key: string): Promise<number> => Number(await conn.send(key, ['STRLEN', key]));
  const hlen = async (key: string): Promise<number> => Number(await conn.send(key, ['HLEN', key]));

  beforeAll(async () => {
    conn = await openConnection(parseRedisUrl(redis.url), { connectTimeoutMs: 1000, commandTimeoutMs: 5000 });
    store = await openRedisStore(redis.url, { prefix, retentionMs: RETENTION, maxLiveSessionsPerUser: 20, commandTimeoutMs: 5000 });
  });
  afterAll(async () => {
    await store?.close();
    await conn?.close();
    await purgePrefix(redis.url, prefix);
  });

  it('5,000 logins of one user (limit 3, evict_oldest): the live value stays at 3 records, every ended one is still there', async () => {
    const tenantId = 't-bound';
    const userId = 'u-many';
    const limit = { kind: 'app' as const, max: 3, policy: 'evict_oldest' as const };
    const N = 5000;
    const first: Session[] = [];
    const tokens: RefreshToken[] = [];
    const sizes: number[] = [];
    for (let i = 0; i < N; i += 50) {
      // In order of createdAt, so the oldest is evicted: batches of 50 concurrent logins (the
      // shared Redis serves other test files meanwhile).
      const batch = Array.from({ length: 50 }, (_, j) => app(tenantId, userId, T0 + i + j));
      const results = await Promise.all(batch.map((s) => store.createSession(s, s.createdAt, limit)));
      expect(results.every((r) => r.ok)).toBe(true);
      if (i === 0) {
        first.push(...batch.slice(0, 10));
        for (const s of first) {
          const t = tokenOf(s);
          await store.addRefreshToken(t);
          tokens.push(t);
        }
      }
      sizes.push(await strlen(live(tenantId, userId)));
    }
    const now = T0 + N + 1;
    // What every script on this user reads and writes: the live value, bounded by the live records.
    const listing = await store.listSessions({ tenantId, userId, status: 'active', now, limit: 100 });
    expect(listing.items).toHaveLength(3);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(3 * RECORD_BYTES);
    // Every ended record is a field of its own (its record, its secret's and its tokens' index).
    expect(await hlen(ended(tenantId, userId))).toBe((N - 3) * 2 + tokens.length);
    // Redis drops the ended records' key no earlier than the live one (the sweeper purges first).
    const [liveTtl, endedTtl] = await Promise.all([live(tenantId, userId), ended(tenantId, userId)].map(async (k) => Number(await conn.send(k, ['PTTL', k]))));
    expect(endedTtl).toBeGreaterThan((liveTtl as number) - 60_000);

    // Ended records read one at a time, exactly as before.
    const oldest = first[0] as Session;
    const byHandle = await store.getSessionByHandle(oldest.handle);
    expect(byHandle).toMatchObject({ handle: oldest.handle, status: 'revoked', revokeReason: 'limit_evicted', device: oldest.device, data: oldest.data });
    expect(await store.getSessionBySecretHash(oldest.secretHash)).toStrictEqual(byHandle);
    expect(await store.getRefreshToken((tokens[0] as RefreshToken).tokenHash)).toStrictEqual(tokens[0]);
    const rotate = await store.rotateRefreshToken((tokens[1] as RefreshToken).tokenHash, hashSecret(newSecret()), now, 10_000, null);
    expect(rotate.outcome).toBe('inactive');
    expect(await store.revokeSession(oldest.handle, 'logout', now)).toStrictEqual([]);
    const page = await store.listSessions({ tenantId, userId, now, limit: 10 });
    expect(page.items.map((s) => s.handle)).toStrictEqual(first.map((s) => s.handle));
    // A listing of active sessions (every new session's screening makes one) never reads the
    // ended records: with their key made unreadable it still answers; the full listing cannot.
    const endedKey = ended(tenantId, userId);
    const aside = `${endedKey}-aside`;
    await conn.send(endedKey, ['RENAME', endedKey, aside]);
    await conn.send(endedKey, ['SET', endedKey, 'not a hash']);
    try {
      expect((await store.listSessions({ tenantId, userId, status: 'active', now, limit: 100 })).items).toHaveLength(3);
      await expect(store.listSessions({ tenantId, userId, now, limit: 10 })).rejects.toThrow();
    } finally {
      await conn.send(endedKey, ['DEL', endedKey]);
      await conn.send(endedKey, ['RENAME', aside, endedKey]);
    }
    const sizeBefore = await strlen(live(tenantId, userId));
    expect(sizeBefore).toBeLessThanOrEqual(3 * RECORD_BYTES);

    // Log out everywhere: the 3 live ones; the ended ones are not even read.
    const all = await store.revokeUserSessions(tenantId, userId, 'logout', now);
    expect(all).toHaveLength(3);
    expect(await conn.send(live(tenantId, userId), ['EXISTS', live(tenantId, userId)])).toBe(0);
    expect(await hlen(ended(tenantId, userId))).toBe(N * 2 + tokens.length);

    // The purge takes every record out, field by field, and the keys go with the last.
    const later = oldest.absoluteExpiresAt + N + RETENTION + 1;
    for (let round = 0; round < 50; round++) {
      await store.sweepExpired(later, 1000);
      if (Number(await conn.send(ended(tenantId, userId), ['EXISTS', ended(tenantId, userId)])) === 0) break;
    }
    expect(await conn.send(ended(tenantId, userId), ['EXISTS', ended(tenantId, userId)])).toBe(0);
    expect(await store.getSessionByHandle(oldest.handle)).toBeNull();
    expect(await store.getRefreshToken((tokens[0] as RefreshToken).tokenHash)).toBeNull();
  }, 180_000);

  it('1,000 rotations of one session: the live value stays flat, every spent token is still reuse, the grace rule holds, the purge takes all', async () => {
    const tenantId = 't-rot';
    const userId = 'u-rot';
    const s = app(tenantId, userId, T0);
    expect((await store.createSession(s, T0)).ok).toBe(true);
    const N = 1000;
    const hashes = Array.from({ length: N + 1 }, () => hashSecret(newSecret()));
    await store.addRefreshToken({ ...tokenOf(s), tokenHash: hashes[0] as string });
    const sizes: number[] = [];
    // One millisecond apart, so that every rotated token is still inside the 10 s grace window
    // by time: only the rule (its successor was rotated) makes it reuse.
    for (let i = 0; i < N; i++) {
      const res = await store.rotateRefreshToken(hashes[i] as string, hashes[i + 1] as string, T0 + i + 1, 10_000, T0 + i + 1 + 3_600_000);
      expect(res.outcome).toBe('rotated');
      if (i % 100 === 9) sizes.push(await strlen(live(tenantId, userId)));
    }
    // The live value does not grow with the rotations (its current token and the grace one; a
    // few bytes more as its time offsets need wider integers). Each spent token kept in it was
    // about 80 bytes.
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(8);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(RECORD_BYTES);
    // The spent tokens are index fields of the ended records' key, one each.
    expect(await hlen(ended(tenantId, userId))).toBe(N - 1);
    const now = T0 + N + 1;
    // Every token reads as before: rotated at its turn, with its successor.
    for (let i = 0; i < N; i++) {
      expect(await store.getRefreshToken(hashes[i] as string)).toStrictEqual({ ...tokenOf(s), tokenHash: hashes[i], createdAt: T0 + i, rotatedAt: T0 + i + 1, successorHash: hashes[i + 1] });
    }
    // The grace rule for the token just rotated away: the same successor again.
    const grace = await store.rotateRefreshToken(hashes[N - 1] as string, hashHere(), now, 10_000, null);
    expect(grace).toMatchObject({ outcome: 'grace', token: { tokenHash: hashes[N - 1], successorHash: hashes[N] } });
    // A spent token (the oldest, moved out 999 rotations ago) is reuse: the family is revoked.
    const reuse = await store.rotateRefreshToken(hashes[0] as string, hashHere(), now, 10_000, null);
    expect(reuse.outcome).toBe('reused');
    expect(await store.getSessionByHandle(s.handle)).toMatchObject({ status: 'revoked', revokeReason: 'refresh_reuse' });
    // And every other token of the family is still recognised (the session is over: inactive).
    for (let i = 1; i <= N; i++) {
      expect((await store.rotateRefreshToken(hashes[i] as string, hashHere(), now, 10_000, null)).outcome).toBe('inactive');
    }
    const routes = async (): Promise<number> => {
      let n = 0;
      for (const h of hashes) {
        const key = `${prefix}r:${h.slice(0, 2)}`;
        if ((await conn.send(key, ['HGET', key, h.slice(2, 18)])) !== null) n++;
      }
      return n;
    };
    expect(await routes()).toBe(N + 1);

    // The purge takes the record, its spent tokens' fields and every token's route.
    await store.sweepExpired(s.absoluteExpiresAt + RETENTION + 1, 1000);
    expect(await conn.send(ended(tenantId, userId), ['EXISTS', ended(tenantId, userId)])).toBe(0);
    expect(await conn.send(live(tenantId, userId), ['EXISTS', live(tenantId, userId)])).toBe(0);
    expect(await routes()).toBe(0);
    expect(await store.getRefreshToken(hashes[0] as string)).toBeNull();
  }, 120_000);

  it('a record written with spent tokens in it (before they moved out) sheds them on its first read, and they stay reuse', async () => {
    const tenantId = 't-old-rot';
    const userId = 'u-old-rot';
    const s = app(tenantId, userId, T0);
    expect((await store.createSession(s, T0)).ok).toBe(true);
    const hashes = Array.from({ length: 6 }, () => hashSecret(newSecret()));
    for (const h of hashes) await store.addRefreshToken({ ...tokenOf(s), tokenHash: h });
    // As the rotate script left them before: every rotated token kept in the record (the tokens
    // 1..5 rotated at T0 + i, each to the next; stored times are offsets from createdAt).
    const key = live(tenantId, userId);
    await conn.send(key, [
      'EVAL',
      `local v = cmsgpack.unpack(redis.call('GET', KEYS[1]))
       for _, rec in pairs(v) do
         local toks = rec[13]
         for i = 1, #toks - 1 do toks[i][3] = i; toks[i][4] = toks[i + 1][1] end
       end
       redis.call('SET', KEYS[1], cmsgpack.pack(v), 'KEEPTTL')`,
      '1',
      key,
    ]);
    const before = await strlen(live(tenantId, userId));
    expect(await hlen(ended(tenantId, userId))).toBe(0);
    await store.getSessionByHandle(s.handle);
    expect(await strlen(live(tenantId, userId))).toBeLessThan(before);
    expect(await hlen(ended(tenantId, userId))).toBe(4);
    expect(await store.getRefreshToken(hashes[0] as string)).toMatchObject({ rotatedAt: T0 + 1, successorHash: hashes[1] });
    expect((await store.rotateRefreshToken(hashes[4] as string, hashHere(), T0 + 7, 10_000, null)).outcome).toBe('grace');
    expect((await store.rotateRefreshToken(hashes[2] as string, hashHere(), T0 + 7, 10_000, null)).outcome).toBe('reused');
  });

  it('at the cap, a new login first moves the oldest records no longer valid (idle-expired) to the ended ones, and gets in', async () => {
    const tenantId = 't-cap-idle';
    const userId = 'u-cap-idle';
    const made: Session[] = [];
    for (let i = 0; i < 20; i++) {
      const s = app(tenantId, userId, T0 + i);
      expect((await store.createSession(s, s.createdAt)).ok).toBe(true);
      made.push(s);
    }
    // The first three are past their idle expiry (not valid), still before their absolute one.
    const now = (made[2] as Session).idleExpiresAt as number;
    expect(await hlen(ended(tenantId, userId))).toBe(0);
    const next = app(tenantId, userId, now);
    const r = await store.createSession(next, now);
    expect(r).toMatchObject({ ok: true, evicted: [] });
    // Only the oldest moved (record and secret index fields), as it is, and reads as expired.
    expect(await hlen(ended(tenantId, userId))).toBe(2);
    expect(await store.getSessionByHandle((made[0] as Session).handle)).toMatchObject({ handle: (made[0] as Session).handle, status: 'active', revokeReason: null });
    const active = await store.listSessions({ tenantId, userId, status: 'active', now, limit: 100 });
    expect(active.items.map((s) => s.handle).sort()).toStrictEqual([...made.slice(3), next].map((s) => s.handle).sort());
    // Every valid one kept; the live value holds 20 records.
    expect(await strlen(live(tenantId, userId))).toBeLessThanOrEqual(20 * RECORD_BYTES);
    // The moved record is still renewable after a consent return, and the sweeper still ends it.
    const successor = app(tenantId, userId, now + 1);
    expect(await store.renewAfterExpiry((made[0] as Session).handle, successor, now + 1)).toMatchObject({ outcome: 'renewed', created: true });
    expect(await store.getSessionByHandle((made[0] as Session).handle)).toMatchObject({ successorHandle: successor.handle });
    const swept: Session[] = [];
    for (let call = 0; call < 50 && !swept.some((x) => x.handle === (made[0] as Session).handle); call++) swept.push(...(await store.sweepExpired(now + 2, 100)));
    expect(swept.map((x) => x.handle)).toContain((made[0] as Session).handle);
    expect(await store.getSessionByHandle((made[0] as Session).handle)).toMatchObject({ status: 'expired', successorHandle: successor.handle });
  });

  it('at the cap with every session valid, the oldest is revoked user_capacity (subtree too), announced on the feed, and the new one gets in', async () => {
    const tenantId = 't-cap';
    const userId = 'u-cap';
    const listener = await openRedisStore(redis.url, { prefix, retentionMs: RETENTION, maxLiveSessionsPerUser: 20, commandTimeoutMs: 5000 });
    const heard: string[] = [];
    const sub = await listener.subscribeSessionEnds(
      (handles) => heard.push(...handles),
      () => {},
    );
    try {
      const made: Session[] = [];
      for (let i = 0; i < 19; i++) {
        const s = app(tenantId, userId, T0 + i);
        expect((await store.createSession(s, s.createdAt)).ok).toBe(true);
        made.push(s);
      }
      // A child of the oldest: it goes with it.
      const oldest = made[0] as Session;
      const child = { ...app(tenantId, userId, T0 + 19), parentHandle: oldest.handle };
      expect((await store.createSession(child, child.createdAt)).ok).toBe(true);
      const next = app(tenantId, userId, T0 + 20);
      const r = await store.createSession(next, next.createdAt);
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect(r.evicted.map((s) => [s.handle, s.status, s.revokeReason])).toStrictEqual([
        [oldest.handle, 'revoked', 'user_capacity'],
        [child.handle, 'revoked', 'parent_revoked'],
      ]);
      expect(await store.getSessionByHandle(oldest.handle)).toMatchObject({ status: 'revoked', revokeReason: 'user_capacity' });
      expect(await store.getSessionByHandle(next.handle)).toMatchObject({ status: 'active' });
      const active = await store.listSessions({ tenantId, userId, status: 'active', now: T0 + 21, limit: 100 });
      expect(active.items).toHaveLength(19);
      // Published on the feed of ends, for every process's cache.
      for (let i = 0; i < 500 && !(heard.includes(oldest.handle) && heard.includes(child.handle)); i++) await new Promise((res) => setTimeout(res, 10));
      expect(heard).toEqual(expect.arrayContaining([oldest.handle, child.handle]));
      // A renewal (which counts against the cap like a login) still gets in.
      const idle = made[1] as Session;
      const successor = app(tenantId, userId, (idle.idleExpiresAt as number) + 1);
      const renewed = await store.renewAfterExpiry(idle.handle, successor, successor.createdAt);
      expect(renewed).toMatchObject({ outcome: 'renewed', created: true });
      expect(await strlen(live(tenantId, userId))).toBeLessThanOrEqual(20 * RECORD_BYTES);
    } finally {
      await sub.close();
      await listener.close();
    }
  });

  it('at the cap, a pending SSO app session whose one-time token is over goes before any valid top-level session', async () => {
    const tenantId = 't-cap-pending';
    const userId = 'u-cap-pending';
    const idp = issueSession({ tenantId, userId, kind: 'idp', lifetime: DEFAULT_LIFETIMES.idp, authMethod: 'oidc' }, T0).session;
    expect((await store.createSession(idp, T0)).ok).toBe(true);
    const pending = { ...app(tenantId, userId, T0 + 1), parentHandle: idp.handle, authMethod: 'oidc', data: { mode: 'pending' } };
    expect((await store.createSession(pending, pending.createdAt)).ok).toBe(true);
    // Its one-time token, used up (consumed): nothing can redeem the pending session any more.
    const token = {
      ...issueSession({ tenantId, userId, kind: 'flow', lifetime: { idle: null, absolute: 60 }, authMethod: 'oidc' }, T0 + 2).session,
      data: { appHandle: pending.handle },
    };
    expect((await store.createSession(token, token.createdAt)).ok).toBe(true);
    await store.revokeSession(token.handle, 'consumed', T0 + 3);
    for (let i = 0; i < 18; i++) expect((await store.createSession(app(tenantId, userId, T0 + 4 + i), T0 + 4 + i)).ok).toBe(true);
    const now = T0 + 61_000;
    const r = await store.createSession(app(tenantId, userId, now), now);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.evicted.map((s) => [s.handle, s.revokeReason])).toStrictEqual([[pending.handle, 'user_capacity']]);
    expect(await store.getSessionByHandle(idp.handle)).toMatchObject({ status: 'active' });
  });

  it('at the cap, the new session\'s own parent is never the one evicted, even when it is the oldest', async () => {
    const tenantId = 't-cap-parent';
    const userId = 'u-cap-parent';
    const idp = issueSession({ tenantId, userId, kind: 'idp', lifetime: DEFAULT_LIFETIMES.idp, authMethod: 'oidc' }, T0).session;
    expect((await store.createSession(idp, T0)).ok).toBe(true);
    const apps = Array.from({ length: 19 }, (_, i) => app(tenantId, userId, T0 + 1 + i));
    for (const a of apps) expect((await store.createSession(a, a.createdAt)).ok).toBe(true);
    const child = { ...app(tenantId, userId, T0 + 30), parentHandle: idp.handle };
    const r = await store.createSession(child, child.createdAt);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.evicted.map((s) => [s.handle, s.revokeReason])).toStrictEqual([[(apps[0] as Session).handle, 'user_capacity']]);
    expect(await store.getSessionByHandle(child.handle)).toMatchObject({ status: 'active', parentHandle: idp.handle });
  });

  it('5,000 logins of one user with no tenant limit: the cap keeps the live value at 20 records, every login gets in', async () => {
    const tenantId = 't-cap-many';
    const userId = 'u-cap-many';
    const N = 5000;
    let evicted = 0;
    let maxSize = 0;
    for (let i = 0; i < N; i += 50) {
      const batch = Array.from({ length: 50 }, (_, j) => app(tenantId, userId, T0 + i + j));
      const results = await Promise.all(batch.map((s) => store.createSession(s, s.createdAt)));
      for (const r of results) {
        expect(r.ok).toBe(true);
        if (r.ok) evicted += r.evicted.length;
      }
      maxSize = Math.max(maxSize, await strlen(live(tenantId, userId)));
    }
    expect(maxSize).toBeLessThanOrEqual(20 * RECORD_BYTES);
    expect(evicted).toBe(N - 20);
    const active = await store.listSessions({ tenantId, userId, status: 'active', now: T0 + N + 1, limit: 100 });
    expect(active.items).toHaveLength(20);
    expect(await store.revokeUserSessions(tenantId, userId, 'logout', T0 + N + 1)).toHaveLength(20);
  }, 180_000);

  it('keeps an idle-expired session live (renewable) until its absolute expiry, then moves it to the ended records', async () => {
    const tenantId = 't-idle';
    const userId = 'u-idle';
    const s = app(tenantId, userId, T0);
    await store.createSession(s, T0);
    const idleAt = s.idleExpiresAt as number;
    // One sweep call is bounded (100 rounds of at most `max` handles), and the earlier tests leave
    // thousands of this prefix's entries due at these times: call it as the sweeper does, again
    // and again, until this session has been seen (bounded, as in the purge above).
    const expired: Session[] = [];
    for (let call = 0; call < 50 && !expired.some((x) => x.handle === s.handle); call++) expired.push(...(await store.sweepExpired(idleAt + 1, 100)));
    expect(expired.map((x) => x.handle)).toContain(s.handle);
    expect(await strlen(live(tenantId, userId))).toBeGreaterThan(0);
    expect(Number(await conn.send(ended(tenantId, userId), ['EXISTS', ended(tenantId, userId)]))).toBe(0);
    // Still renewable after a consent return.
    const successor = app(tenantId, userId, idleAt + 2);
    const renewed = await store.renewAfterExpiry(s.handle, successor, idleAt + 2);
    expect(renewed).toMatchObject({ outcome: 'renewed', created: true });
    // Past its absolute expiry the sweeper moves it: one record in the live value (the successor).
    for (let call = 0; call < 50 && (await hlen(ended(tenantId, userId))) === 0; call++) await store.sweepExpired(s.absoluteExpiresAt + 1, 100);
    expect(await hlen(ended(tenantId, userId))).toBe(2);
    expect(await store.getSessionByHandle(s.handle)).toMatchObject({ status: 'expired', successorHandle: successor.handle });
    const list = await store.listSessions({ tenantId, userId, now: s.absoluteExpiresAt + 1, limit: 10 });
    expect(list.items.map((x) => x.handle)).toStrictEqual([s.handle, successor.handle]);
  });
});
