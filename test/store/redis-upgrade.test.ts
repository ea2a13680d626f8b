// The upgrade of a running deployment: sessions that the previous Redis layout (layout 1, one hash
// per session and per refresh token with their index keys) holds are all there, unchanged and
// fully usable after a process with layout 2 starts on the same prefix (src/store/redis/migrate.ts).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret, newSecret, userTag } from '../../src/domain/secrets.ts';
import { DEFAULT_LIFETIMES, issueSession, type Session } from '../../src/domain/session.ts';
import type { RefreshToken } from '../../src/store/port.ts';
import { openConnection, type RedisConnection } from '../../src/store/redis/connection.ts';
import { LAYOUT, RedisLayoutTooNew } from '../../src/store/redis/migrate.ts';
import { openRedisStore, parseRedisUrl, type RedisSessionStore } from '../../src/store/redis/redis-store.ts';
import { Layout1Writer } from '../support/redis-layout1.ts';
import { purgePrefix, redisUrlForTests, requireOrSkip, testPrefix } from '../support/redis.ts';

const redis = await redisUrlForTests();
const skip = requireOrSkip(redis.unavailable);
const T0 = Date.now();
const MIN = 60_000;
const RETENTION = 3_600_000;

describe.skipIf(skip)('Redis upgrade from layout 1', () => {
  const prefix = testPrefix('upgrade');
  let conn: RedisConnection;
  let old: Layout1Writer;
  let store: RedisSessionStore;
  const tenantId = 't-upgrade';
  const issue = (userId: string | null, kind: Session['kind'], at: number, extra: Partial<Session> = {}): Session => ({
    ...issueSession({ tenantId, userId, kind, lifetime: DEFAULT_LIFETIMES[kind], authMethod: 'password' }, at).session,
    ...extra,
  });
  // One user's tree: an idp session with an app child (rotated refresh token), a revoked app
  // session, and a flow session of nobody.
  const idp = issue('u1', 'idp', T0, {
    device: { userAgent: 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0', ip: '203.0.113.7', location: { country: 'DE', city: 'Köln', lat: 50.9375, lon: 6.9603 } },
    data: { xsrf: 'x'.repeat(70), nested: { a: [1, 2, {}], b: null }, n: 1234567890123.5 },
  });
  const app = issue('u1', 'app', T0 + 1, { parentHandle: idp.handle, clientId: 'portal', device: { ip: '::1' }, data: { mode: 'token' } });
  const ended = issue('u1', 'app', T0 + 2, { status: 'revoked', endedAt: T0 + 3, revokeReason: 'logout' });
  const flow = issue(null, 'flow', T0 + 4, { data: { state: 's', nonce: 'n' } });
  const h1 = hashSecret(newSecret());
  const t0: RefreshToken = { tokenHash: hashSecret(newSecret()), sessionHandle: app.handle, tenantId, userId: 'u1', createdAt: T0 + 1, rotatedAt: T0 + 5, successorHash: h1 };
  const t1: RefreshToken = { tokenHash: h1, sessionHandle: app.handle, tenantId, userId: 'u1', createdAt: T0 + 5, rotatedAt: null, successorHash: null };

  beforeAll(async () => {
    conn = await openConnection(parseRedisUrl(redis.url), { connectTimeoutMs: 1000, commandTimeoutMs: 2000 });
    old = new Layout1Writer(conn, prefix, RETENTION);
    for (const s of [idp, app, ended, flow]) await old.session(s, T0);
    await old.token(t0, app, T0);
    await old.token(t1, app, T0);
    store = await openRedisStore(redis.url, { prefix, retentionMs: RETENTION });
  }, 120_000); // the upgrade scans the whole keyspace of the shared server, however full others left it
  afterAll(async () => {
    await store?.close();
    await conn?.close();
    await purgePrefix(redis.url, prefix);
  });

  it('reads every session and refresh token exactly as layout 1 stored it', async () => {
    for (const s of [idp, app, ended, flow]) {
      expect(await store.getSessionByHandle(s.handle)).toStrictEqual(s);
      expect(await store.getSessionBySecretHash(s.secretHash)).toStrictEqual(s);
    }
    expect(await store.getRefreshToken(t0.tokenHash)).toStrictEqual(t0);
    expect(await store.getRefreshToken(t1.tokenHash)).toStrictEqual(t1);
    const byUser = await store.listSessions({ tenantId, userId: 'u1', now: T0 + 10, limit: 10 });
    expect(byUser.items.map((s) => s.handle)).toStrictEqual([idp.handle, app.handle, ended.handle]);
    const byTenant = await store.listSessions({ tenantId, now: T0 + 10, limit: 10 });
    expect(byTenant.items.map((s) => s.handle)).toStrictEqual([idp.handle, app.handle, ended.handle, flow.handle]);
  });

  it('leaves no layout-1 key behind', async () => {
    const left: string[] = [];
    for (const send of await conn.masters()) {
      let cursor = '0';
      do {
        const [next, keys] = (await send(['SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', '1000'])) as [string, string[]];
        left.push(...keys.map((k) => k.slice(prefix.length)));
        cursor = next;
      } while (cursor !== '0');
    }
    expect(left.filter((k) => /^(sh:|th:|exp$|gc$)|\}:(s:|rt:|sh:|c:|us$)/.test(k))).toStrictEqual([]);
    expect(left.filter((k) => k.endsWith('}:s')).length).toBe(2); // the user's slot and the flow's
  });

  it('rotates, detects reuse and cascades along the migrated tree, and sweeps', async () => {
    const h2 = hashSecret(newSecret());
    const rotated = await store.rotateRefreshToken(t1.tokenHash, h2, T0 + MIN, 0, T0 + 15 * MIN);
    expect(rotated).toMatchObject({ outcome: 'rotated', successor: { tokenHash: h2, rotatedAt: null } });
    const reused = await store.rotateRefreshToken(t0.tokenHash, hashSecret(newSecret()), T0 + 2 * MIN, 0, null);
    expect(reused.outcome).toBe('reused');
    const revoked = await store.revokeSession(idp.handle, 'logout', T0 + 3 * MIN);
    expect(revoked.map((s) => s.handle)).toStrictEqual([idp.handle]); // the app child went with the reuse
    expect(await store.consumeSession(flow.secretHash, T0 + 3 * MIN)).toMatchObject({ handle: flow.handle, status: 'revoked', revokeReason: 'consumed' });
    // Past every purge time the sweeper takes them all out, with their routes and listing entries.
    await store.sweepExpired(T0 + 13 * 3_600_000 + RETENTION, 100);
    expect(await store.getSessionByHandle(app.handle)).toBeNull();
    expect(await store.getRefreshToken(h2)).toBeNull();
    expect((await store.listSessions({ tenantId, now: T0 + 14 * 3_600_000 + RETENTION, limit: 10 })).items).toStrictEqual([]);
  });

  it('never overwrites a migrated session that layout 2 has changed since (a second start, or an old process writing again)', async () => {
    const s = issue('u2', 'app', T0);
    await old.session(s, T0);
    const again = await openRedisStore(redis.url, { prefix, retentionMs: RETENTION });
    try {
      expect(await again.getSessionByHandle(s.handle)).toStrictEqual(s);
      await again.revokeSession(s.handle, 'logout', T0 + 1);
      await old.session(s, T0); // the old record once more, as a straggling old process would
      const third = await openRedisStore(redis.url, { prefix, retentionMs: RETENTION });
      await third.close();
      expect(await again.getSessionByHandle(s.handle)).toMatchObject({ status: 'revoked', revokeReason: 'logout' });
    } finally {
      await again.close();
    }
  }, 120_000);
});

// What the previous script version's revoke left: status revoked, endedAt and reason set, the
// record still in the one value (positions as in slot-lua.ts: 10 status, 14 the rest).
const OLD_REVOKE = `
local v = cmsgpack.unpack(redis.call('GET', KEYS[1]))
for r, rec in pairs(v) do
if rec[4] < tonumber(ARGV[1]) then
  for i = 1, 14 do rec[i] = rec[i] or false end
  rec[10] = 1
  local x = rec[14] or {}
  for i = 1, 6 do x[i] = x[i] or false end
  x[4] = 5
  x[5] = 'logout'
  rec[14] = x
end
end
redis.call('SET', KEYS[1], cmsgpack.pack(v), 'KEEPTTL')
return 1`;

// Layout 2 before its live/ended split kept ended records in the user's one value until their
// purge (docs/performance.md, "One user with many sessions"). Such a value is upgraded where it
// lies: the first script that reads it moves the revoked records to the ended ones.
describe.skipIf(skip)('Redis layout 2: a value written before the live/ended split', () => {
  const prefix = testPrefix('split');
  let conn: RedisConnection;
  let store: RedisSessionStore;
  const tenantId = 't-split';
  const userId = 'u-split';
  const sessions: Session[] = Array.from({ length: 30 }, (_, i) => ({
    ...issueSession({ tenantId, userId, kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password' }, T0 + i).session,
    device: { userAgent: 'Mozilla/5.0 (X11; Linux x86_64) test', ip: '192.0.2.1' },
    data: { mode: 'token' },
  }));
  const tag = userTag(tenantId, userId);
  const liveKey = (): string => `${prefix}{${tag}}:s`;
  const endedKey = (): string => `${prefix}{${tag}}:e`;

  beforeAll(async () => {
    conn = await openConnection(parseRedisUrl(redis.url), { connectTimeoutMs: 1000, commandTimeoutMs: 2000 });
    store = await openRedisStore(redis.url, { prefix, retentionMs: RETENTION });
    for (const s of sessions) expect((await store.createSession(s, s.createdAt)).ok).toBe(true);
    await conn.send(liveKey(), ['EVAL', OLD_REVOKE, '1', liveKey(), String(T0 + 28)]);
  });
  afterAll(async () => {
    await store?.close();
    await conn?.close();
    await purgePrefix(redis.url, prefix);
  });

  it('moves the revoked records out of the live value on the first read, and reads every record as it was', async () => {
    const before = Number(await conn.send(liveKey(), ['STRLEN', liveKey()]));
    expect(Number(await conn.send(endedKey(), ['EXISTS', endedKey()]))).toBe(0);
    const first = sessions[0] as Session;
    const revoked = { ...first, status: 'revoked', endedAt: first.createdAt + 5, revokeReason: 'logout' };
    expect(await store.getSessionByHandle(first.handle)).toStrictEqual(revoked);
    const after = Number(await conn.send(liveKey(), ['STRLEN', liveKey()]));
    expect(after).toBeLessThan(before / 10);
    expect(Number(await conn.send(endedKey(), ['HLEN', endedKey()]))).toBe(28 * 2);
    expect(Number(await conn.send(endedKey(), ['PTTL', endedKey()]))).toBeGreaterThan(0);
    expect(await store.getSessionBySecretHash(first.secretHash)).toStrictEqual(revoked);
    const listed = await store.listSessions({ tenantId, userId, now: T0 + 30, limit: 50 });
    expect(listed.items.map((s) => s.handle)).toStrictEqual(sessions.map((s) => s.handle));
    expect(listed.items.filter((s) => s.status === 'active')).toHaveLength(2);
    const ended = await store.revokeUserSessions(tenantId, userId, 'logout', T0 + 31);
    expect(ended.map((s) => s.handle)).toStrictEqual(sessions.slice(28).map((s) => s.handle));
  });
});

// The layout mark (src/store/redis/migrate.ts): a start records layout 3 (2 → 3 rewrites nothing),
// and code that knows a lower layout than the store's mark refuses to start against it.
describe.skipIf(skip)('Redis layout mark', () => {
  const prefix = testPrefix('layout');
  const mark = `${prefix}meta:layout`;
  let conn: RedisConnection;

  beforeAll(async () => {
    conn = await openConnection(parseRedisUrl(redis.url), { connectTimeoutMs: 1000, commandTimeoutMs: 2000 });
  });
  afterAll(async () => {
    await conn?.close();
    await purgePrefix(redis.url, prefix);
  });

  it('upgrades a store marked layout 2 to layout 3, and marks a store that has no mark', async () => {
    expect(LAYOUT).toBe(3);
    await conn.send(mark, ['SET', mark, '2']);
    const upgraded = await openRedisStore(redis.url, { prefix, retentionMs: RETENTION });
    await upgraded.close();
    expect(await conn.send(mark, ['GET', mark])).toBe('3');
    await conn.send(mark, ['DEL', mark]);
    const fresh = await openRedisStore(redis.url, { prefix, retentionMs: RETENTION });
    await fresh.close();
    expect(await conn.send(mark, ['GET', mark])).toBe('3');
  });

  it('refuses a store marked with a layout higher than it knows, and leaves the mark as it was', async () => {
    await conn.send(mark, ['SET', mark, '4']);
    const opened = openRedisStore(redis.url, { prefix, retentionMs: RETENTION });
    await expect(opened).rejects.toBeInstanceOf(RedisLayoutTooNew);
    await expect(opened).rejects.toThrow(/layout 4.*knows layouts up to 3/);
    expect(await conn.send(mark, ['GET', mark])).toBe('4');
    await conn.send(mark, ['SET', mark, '3']);
  });
});

// A value written before the split still holds its spent refresh tokens in the record; the first
// script reading it sheds them, and a script that does not save (the token read, a rotation's
// 'unknown') must find them in the same call: a thief replaying the oldest token is reuse.
describe.skipIf(skip)('Redis layout 2: a spent refresh token in a value written before the split', () => {
  const prefix = testPrefix('spentlegacy');
  let conn: RedisConnection;
  let store: RedisSessionStore;
  const tenantId = 't-spent';
  const userId = 'u-spent';
  const s = issueSession({ tenantId, userId, kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password' }, T0).session;
  const [h0, h1, h2] = [hashSecret(newSecret()), hashSecret(newSecret()), hashSecret(newSecret())];
  // t0 → t1 → t2: t0 is spent (its successor t1 was rotated in its turn), t2 is current.
  const t0: RefreshToken = { tokenHash: h0, sessionHandle: s.handle, tenantId, userId, createdAt: T0, rotatedAt: T0 + 5, successorHash: h1 };
  const t1: RefreshToken = { tokenHash: h1, sessionHandle: s.handle, tenantId, userId, createdAt: T0 + 5, rotatedAt: T0 + 6, successorHash: h2 };
  const t2: RefreshToken = { tokenHash: h2, sessionHandle: s.handle, tenantId, userId, createdAt: T0 + 6, rotatedAt: null, successorHash: null };
  const endedKey = `${prefix}{${userTag(tenantId, userId)}}:e`;

  beforeAll(async () => {
    conn = await openConnection(parseRedisUrl(redis.url), { connectTimeoutMs: 1000, commandTimeoutMs: 2000 });
    store = await openRedisStore(redis.url, { prefix, retentionMs: RETENTION });
    expect((await store.createSession(s, T0)).ok).toBe(true);
    // Adding a token sheds nothing (only a value read with three or more tokens does): after the
    // third add the live value holds the whole chain, as one written before the split does.
    for (const t of [t0, t1, t2]) await store.addRefreshToken(t);
    expect(Number(await conn.send(endedKey, ['EXISTS', endedKey]))).toBe(0);
  });
  afterAll(async () => {
    await store?.close();
    await conn?.close();
    await purgePrefix(redis.url, prefix);
  });

  it('answers a replay of the oldest token as reuse: the family is revoked, the latest token is then inactive', async () => {
    // The read the refresh flow does first (app-sessions.ts refreshTokenPair) does not save.
    expect(await store.getRefreshToken(h0)).toStrictEqual(t0);
    expect(Number(await conn.send(endedKey, ['EXISTS', endedKey]))).toBe(0);
    // The replay: 'reused' is what the flow emits refresh_token.reused for and revokes on.
    const replay = await store.rotateRefreshToken(h0, hashSecret(newSecret()), T0 + MIN, 0, T0 + 15 * MIN);
    expect(replay.outcome).toBe('reused');
    if (replay.outcome !== 'reused') return;
    expect(replay.revoked.map((x) => x.handle)).toStrictEqual([s.handle]);
    expect(await store.getSessionByHandle(s.handle)).toMatchObject({ status: 'revoked', revokeReason: 'refresh_reuse' });
    // The reuse saved the spent token where it now lives: a second replay finds the ended family.
    expect((await store.rotateRefreshToken(h0, hashSecret(newSecret()), T0 + 2 * MIN, 0, null)).outcome).toBe('inactive');
    expect((await store.rotateRefreshToken(h2, hashSecret(newSecret()), T0 + 2 * MIN, 0, null)).outcome).toBe('inactive');
  });
});

// The first read of a value written before the split moves its revoked records to the ended ones;
// until that call saves they have no index field in P{T}:e, and must still be found by hash.
describe.skipIf(skip)('Redis layout 2: a revoked record of a value written before the split, on the first read', () => {
  const prefix = testPrefix('movedread');
  let conn: RedisConnection;
  let store: RedisSessionStore;
  const tenantId = 't-moved';
  const userId = 'u-moved';
  const issued = (at: number): Session => issueSession({ tenantId, userId, kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password' }, at).session;
  const [gone, live] = [issued(T0), issued(T0 + 10)];
  const tok: RefreshToken = { tokenHash: hashSecret(newSecret()), sessionHandle: gone.handle, tenantId, userId, createdAt: T0, rotatedAt: null, successorHash: null };
  const liveKey = `${prefix}{${userTag(tenantId, userId)}}:s`;
  const endedKey = `${prefix}{${userTag(tenantId, userId)}}:e`;

  beforeAll(async () => {
    conn = await openConnection(parseRedisUrl(redis.url), { connectTimeoutMs: 1000, commandTimeoutMs: 2000 });
    store = await openRedisStore(redis.url, { prefix, retentionMs: RETENTION });
    for (const s of [gone, live]) expect((await store.createSession(s, s.createdAt)).ok).toBe(true);
    await store.addRefreshToken(tok);
    await conn.send(liveKey, ['EVAL', OLD_REVOKE, '1', liveKey, String(T0 + 5)]);
  });
  afterAll(async () => {
    await store?.close();
    await conn?.close();
    await purgePrefix(redis.url, prefix);
  });

  it('reads its refresh token and its secret hash before anything saved the split', async () => {
    const revoked = { ...gone, status: 'revoked', endedAt: gone.createdAt + 5, revokeReason: 'logout' };
    // The token read does not save: the value is still unsplit afterwards.
    expect(await store.getRefreshToken(tok.tokenHash)).toStrictEqual(tok);
    expect(Number(await conn.send(endedKey, ['EXISTS', endedKey]))).toBe(0);
    expect((await store.rotateRefreshToken(tok.tokenHash, hashSecret(newSecret()), T0 + MIN, 0, null)).outcome).toBe('inactive');
    expect(Number(await conn.send(endedKey, ['EXISTS', endedKey]))).toBe(0);
    // The first read by secret splits the value and answers the record it has just moved.
    expect(await store.getSessionBySecretHash(gone.secretHash)).toStrictEqual(revoked);
    expect(Number(await conn.send(endedKey, ['EXISTS', endedKey]))).toBe(1);
    expect(await store.getSessionBySecretHash(gone.secretHash)).toStrictEqual(revoked);
    expect(await store.getRefreshToken(tok.tokenHash)).toStrictEqual(tok);
  });
});
