// What only the Redis adapter has, beyond the conformance matrix (test/store/targets.ts): its URL
// forms, its key layout (one hash slot per user in a Cluster, one value per slot), key TTLs, the
// sweeper's purge, prefix cleanup, and its behaviour when Redis is missing, dies, hangs or
// returns.

import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { verifyChain } from '../../src/audit/verify.ts';
import type { AuditEventInput, AuditRecord } from '../../src/domain/audit-chain.ts';
import { StoreUnavailable } from '../../src/domain/errors.ts';
import { hashSecret, newSecret, userTag } from '../../src/domain/secrets.ts';
import { DEFAULT_LIFETIMES, issueSession } from '../../src/domain/session.ts';
import type { Session } from '../../src/domain/session.ts';
import type { RefreshToken } from '../../src/store/port.ts';
import { Deadlines, openConnection } from '../../src/store/redis/connection.ts';
import { InvalidRedisUrl, openRedisStore, parseRedisUrl } from '../../src/store/redis/redis-store.ts';
import type { RedisSessionStore } from '../../src/store/redis/redis-store.ts';
import {
  purgePrefix,
  redisBinariesMissing,
  redisUrlForTests,
  requireOrSkip,
  startRedisCluster,
  startRedisStandalone,
  testPrefix,
} from '../support/redis.ts';
import type { StartedRedis } from '../support/redis.ts';

const T0 = Date.now();
const HOUR = 3_600_000;

function session(tenantId: string, userId: string | null, kind: Session['kind'] = 'app', parent?: Session): Session {
  return issueSession(
    {
      tenantId,
      userId,
      kind,
      lifetime: DEFAULT_LIFETIMES[kind],
      authMethod: 'password',
      parentHandle: parent?.handle ?? null,
      ...(parent ? { notAfter: parent.absoluteExpiresAt } : {}),
    },
    T0,
  ).session;
}

function token(s: Session): RefreshToken {
  return {
    tokenHash: hashSecret(newSecret()),
    sessionHandle: s.handle,
    tenantId: s.tenantId,
    userId: s.userId as string,
    createdAt: T0,
    rotatedAt: null,
    successorHash: null,
  };
}

function handlesOf(list: readonly Session[]): string[] {
  return list.map((s) => s.handle);
}

async function created(store: RedisSessionStore, s: Session): Promise<Session> {
  const r = await store.createSession(s, T0);
  if (!r.ok) throw new Error('not created');
  return r.session;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitUntil(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function elapsed<T>(p: Promise<T>): Promise<{ ms: number; result: PromiseSettledResult<T> }> {
  const start = performance.now();
  const [result] = await Promise.allSettled([p]);
  return { ms: performance.now() - start, result: result as PromiseSettledResult<T> };
}

// ---------------------------------------------------------------------------------------------

describe('parseRedisUrl', () => {
  it('reads the standalone forms, with credentials and database', () => {
    expect(parseRedisUrl('redis://127.0.0.1')).toStrictEqual({
      mode: 'standalone',
      tls: false,
      host: { host: '127.0.0.1', port: 6379 },
      database: 0,
    });
    expect(parseRedisUrl('rediss://app:p%40ss%3Aword@redis.example.com:6380/2')).toStrictEqual({
      mode: 'standalone',
      tls: true,
      host: { host: 'redis.example.com', port: 6380 },
      database: 2,
      username: 'app',
      password: 'p@ss:word',
    });
    expect(parseRedisUrl('redis://:secret@h:1/')).toMatchObject({ password: 'secret', database: 0 });
    expect(parseRedisUrl('redis://secret@h')).toMatchObject({ password: 'secret' });
    expect(parseRedisUrl('redis://[::1]:7000')).toMatchObject({ host: { host: '::1', port: 7000 } });
  });

  it('reads the Sentinel form: several sentinels, a master name, default port 26379', () => {
    expect(parseRedisUrl('redis-sentinel://u:p@s1:26379,s2:26380,s3/mymaster')).toStrictEqual({
      mode: 'sentinel',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26380 },
        { host: 's3', port: 26379 },
      ],
      masterName: 'mymaster',
      username: 'u',
      password: 'p',
    });
  });

  it('reads the Cluster form: seed nodes', () => {
    expect(parseRedisUrl('redis-cluster://10.0.0.1:7000,10.0.0.2:7001')).toStrictEqual({
      mode: 'cluster',
      seeds: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
      ],
    });
  });

  it.each([
    ['http://h', /unknown scheme "http:"/],
    ['127.0.0.1:6379', /no scheme/],
    ['redis://', /names no host/],
    ['redis://h:99999', /port "99999"/],
    ['redis://h:abc', /port "abc"/],
    ['redis://h/x', /database "\/x" is not a number/],
    ['redis://h1,h2', /exactly one host/],
    ['redis://h?tls=1', /query strings/],
    ['redis-sentinel://s1:26379', /needs the master name/],
    ['redis-sentinel://s1:26379,/mymaster', /empty/],
    ['redis-cluster://h:7000/3', /takes no path/],
    ['redis://h:1:2', /not host:port/],
  ])('refuses %s with a message naming the problem', (url, message) => {
    expect(() => parseRedisUrl(url)).toThrow(InvalidRedisUrl);
    expect(() => parseRedisUrl(url)).toThrow(message);
  });

  it('never repeats a password in its messages', () => {
    expect(() => parseRedisUrl('redis://user:topsecret@h:0')).toThrow(/redis:\/\/user:\*\*\*@h:0/);
    try {
      parseRedisUrl('redis-cluster://user:topsecret@h:7000/1');
    } catch (err) {
      expect((err as Error).message).not.toContain('topsecret');
    }
  });

  it('openRedisStore refuses a bad URL or a prefix with braces before connecting', async () => {
    await expect(openRedisStore('redis-sentinel://h:1', { prefix: 'x:' })).rejects.toBeInstanceOf(InvalidRedisUrl);
    await expect(openRedisStore('redis://127.0.0.1:1', { prefix: 'a{b}:' })).rejects.toThrow(/must not contain "\{"/);
  });
});

// ---------------------------------------------------------------------------------------------

/**
 * Sends commands through a connection and counts the AbortSignal timers armed meanwhile:
 * node-redis arms one per command unless its own timeout is off (the adapter keeps its deadline).
 */
async function abortTimersPerCommand(url: string, prefix: string): Promise<number> {
  const conn = await openConnection(parseRedisUrl(url), { connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
  const spy = vi.spyOn(AbortSignal, 'timeout');
  try {
    const key = `${prefix}abort-timers`;
    await Promise.all(Array.from({ length: 20 }, (_, i) => conn.send(key, ['HSET', key, `f${i}`, '1'])));
    expect(await conn.send(key, ['HLEN', key], true)).toBe(20);
    await conn.send(key, ['DEL', key]);
    return spy.mock.calls.length / 22;
  } finally {
    spy.mockRestore();
    await conn.close();
  }
}

/**
 * appendMany from two store instances at once, interleaved with single appends: one chain without
 * gaps or forks that verifies, the gauge moved by every record, each anomaly in its stream, and
 * every record on the feed once, in chain order.
 */
async function appendManyKeepsOneChain(x: RedisSessionStore, y: RedisSessionStore): Promise<void> {
  const t = `audit-many-${newSecret().slice(0, 8)}`;
  const heard: AuditRecord[] = [];
  const feed = await y.audit.subscribe((r) => {
    if (r.tenantId === t) heard.push(r);
  }, () => undefined);
  try {
    const input = (i: number, type = 'session.created'): AuditEventInput => ({
      time: T0 + i,
      tenantId: t,
      type,
      userId: `u${i % 3}`,
      sessionId: null,
      kind: 'app',
      headers: { requestId: null, correlationId: null, activityId: null, tenantId: t, sessionId: null },
      ip: null,
      userAgent: null,
      location: null,
      details: { n: i },
    });
    const batches = await Promise.all(
      Array.from({ length: 12 }, (_, b) => {
        const store = b % 2 === 0 ? x : y;
        if (b % 3 === 2) return store.audit.append(input(b * 10)).then((r) => [r]);
        return store.audit.appendMany!(
          Array.from({ length: 7 }, (_, i) => ({
            input: input(b * 10 + i, i === 3 ? 'anomaly.detected' : 'session.created'),
            opts: { activeDelta: { kind: 'app', delta: 1 } },
          })),
        );
      }),
    );
    const total = 8 * 7 + 4;
    // Each batch holds consecutive numbers: nothing of another append came in between.
    for (const recs of batches) for (let i = 1; i < recs.length; i++) expect((recs[i] as AuditRecord).seq).toBe((recs[i - 1] as AuditRecord).seq + 1);
    expect(batches.flat().map((r) => r.seq).sort((m, n) => m - n)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    const report = await verifyChain(x.audit, t);
    expect(report).toMatchObject({ ok: true });
    expect((await x.audit.chainState(t)).head?.seq).toBe(total);
    expect((await x.audit.activeSessions()).find((c) => c.tenantId === t)).toEqual({ tenantId: t, kind: 'app', count: 8 * 7 });
    expect((await x.audit.listAnomalies({ tenantId: t, limit: 100 })).items).toHaveLength(8);
    await waitUntil('every record on the feed', 5000, async () => heard.length === total);
    expect(heard.map((r) => r.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
  } finally {
    await feed.close();
  }
}

describe('Deadlines (one timer for the commands of a connection)', () => {
  it('rejects what has not settled in time with StoreUnavailable, oldest first, and passes on the rest', async () => {
    vi.useFakeTimers();
    try {
      const d = new Deadlines(1000);
      const hangs = d.track(new Promise<never>(() => undefined), 'GET');
      let answer!: (v: string) => void;
      const answered = d.track(new Promise<string>((r) => (answer = r)), 'SET');
      const failed = d.track(Promise.reject(new Error('WRONGTYPE')), 'HGET');
      await expect(failed).rejects.toThrow('WRONGTYPE');
      vi.advanceTimersByTime(500);
      const later = d.track(new Promise<never>(() => undefined), 'EVALSHA');
      answer('OK');
      await expect(answered).resolves.toBe('OK');
      vi.advanceTimersByTime(500);
      await expect(hangs).rejects.toBeInstanceOf(StoreUnavailable);
      await expect(hangs).rejects.toThrow('did not answer GET within 1000 ms');
      expect(d.pending).toBe(1);
      vi.advanceTimersByTime(499);
      expect(d.pending).toBe(1);
      vi.advanceTimersByTime(1);
      await expect(later).rejects.toThrow('did not answer EVALSHA within 1000 ms');
      expect(d.pending).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('when nothing listens', () => {
  it.each([
    ['redis', (p: number) => `redis://127.0.0.1:${p}`],
    ['redis-cluster', (p: number) => `redis-cluster://127.0.0.1:${p}`],
    ['redis-sentinel', (p: number) => `redis-sentinel://127.0.0.1:${p}/mymaster`],
  ])('%s: opening fails with StoreUnavailable in under 2 s (default timeouts)', async (_kind, url) => {
    const port = await freePort();
    const { ms, result } = await elapsed(openRedisStore(url(port), { prefix: testPrefix('down') }));
    expect(result.status).toBe('rejected');
    expect((result as PromiseRejectedResult).reason).toBeInstanceOf(StoreUnavailable);
    expect((result as PromiseRejectedResult).reason).toMatchObject({ code: 'store_unavailable', status: 503, retryAfter: 1 });
    expect(ms).toBeLessThan(2000);
  });
});

// ---------------------------------------------------------------------------------------------

const shared = await redisUrlForTests();
const sharedSkip = requireOrSkip(shared.unavailable);

describe.skipIf(sharedSkip)(`standalone specifics (${shared.url})`, () => {
  const prefix = testPrefix('adapter');
  let a: RedisSessionStore;
  let b: RedisSessionStore;

  beforeAll(async () => {
    a = await openRedisStore(shared.url, { prefix, retentionMs: 60_000 });
    b = await openRedisStore(shared.url, { prefix, retentionMs: 60_000 });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await purgePrefix(shared.url, prefix);
  });

  it('says it is redis', () => {
    expect(a.kind).toBe('redis');
  });

  it("arms no node-redis AbortSignal timer per command (the adapter's own deadline covers it)", async () => {
    expect(await abortTimersPerCommand(shared.url, prefix)).toBe(0);
  });

  it('appendMany: several records in one step, from two instances at once, in one chain that verifies', async () => {
    await appendManyKeepsOneChain(a, b);
  });

  it("the audit feed leaves out, unparsed, the records of types its subscriber's hint does not want, and follows the hint record by record", async () => {
    const t = `audit-wants-${newSecret().slice(0, 8)}`;
    const heard: AuditRecord[] = [];
    let wanted: ReadonlySet<string> | null = new Set(['anomaly.detected', 'session.reauthenticated']);
    const parse = vi.spyOn(JSON, 'parse');
    const feed = await b.audit.subscribe((r) => {
      if (r.tenantId === t) heard.push(r);
    }, () => undefined, () => wanted);
    try {
      const input = (i: number, type: string, details: Record<string, unknown> = {}): AuditEventInput => ({
        time: T0 + i, tenantId: t, type, userId: 'u', sessionId: null, kind: 'app',
        headers: { requestId: null, correlationId: null, activityId: null, tenantId: t, sessionId: null },
        ip: null, userAgent: null, location: null, details,
      });
      await a.audit.append(input(1, 'sso.token_redeemed'));
      await a.audit.append(input(2, 'anomaly.detected', { action: 'reauth' }));
      // Another type whose details hold a member "type" of a wanted one: parsed and delivered (the
      // hint only rules out records that cannot be of a wanted type; the listener still checks).
      await a.audit.append(input(3, 'session.revoked', { type: 'session.reauthenticated' }));
      await a.audit.append(input(4, 'session.reauthenticated'));
      await waitUntil('the wanted records on the feed', 5000, async () => heard.length === 3);
      // A subscriber that wants everything again (a live stream opened) hears every type.
      wanted = null;
      await a.audit.append(input(5, 'refresh_token.rotated'));
      await waitUntil('the next record on the feed', 5000, async () => heard.length === 4);
      expect(heard.map((r) => [r.seq, r.type])).toEqual([[2, 'anomaly.detected'], [3, 'session.revoked'], [4, 'session.reauthenticated'], [5, 'refresh_token.rotated']]);
      // The left-out record was never parsed in this process.
      expect(parse.mock.calls.some(([text]) => typeof text === 'string' && text.includes('"type":"sso.token_redeemed"'))).toBe(false);
    } finally {
      parse.mockRestore();
      await feed.close();
    }
  });

  it("gives the slot's key the TTL (absoluteExpiresAt - now) + 2 × retention, never shortened", async () => {
    const s = await created(a, session('t-ttl', 'u-ttl'));
    const t = token(s);
    await a.addRefreshToken(t);
    const conn = await openConnection(parseRedisUrl(shared.url), { connectTimeoutMs: 1000, commandTimeoutMs: 1000 });
    try {
      const key = `${prefix}{${userTag('t-ttl', 'u-ttl')}}:s`;
      const expected = s.absoluteExpiresAt - T0 + 2 * 60_000;
      const ttl = Number(await conn.send(key, ['PTTL', key]));
      expect(ttl).toBeGreaterThan(expected - 10_000);
      expect(ttl).toBeLessThanOrEqual(expected);
      // A shorter-lived session of the same user does not shorten it.
      await created(a, { ...session('t-ttl', 'u-ttl', 'flow'), handle: session('t-ttl', 'u-ttl').handle, userId: 'u-ttl' });
      expect(Number(await conn.send(key, ['PTTL', key]))).toBeGreaterThan(expected - 10_000);
    } finally {
      await conn.close();
    }
  });

  it('purges a record, its routes and its listing entry once it has outlived the retention', async () => {
    const own = testPrefix('gc');
    const store = await openRedisStore(shared.url, { prefix: own, retentionMs: 60_000 });
    const conn = await openConnection(parseRedisUrl(shared.url), { connectTimeoutMs: 1000, commandTimeoutMs: 1000 });
    const routeOf = async (hash: string): Promise<unknown> => conn.send(`${own}r:${hash.slice(0, 2)}`, ['HGET', `${own}r:${hash.slice(0, 2)}`, hash.slice(2, 18)]);
    try {
      const s = await created(store, session('t-gc', 'u-gc'));
      const t = token(s);
      await store.addRefreshToken(t);
      const listing = `${own}t:t-gc:s`;
      expect(await conn.send(listing, ['ZSCORE', listing, s.handle])).not.toBeNull();
      expect(await routeOf(s.secretHash)).toBe(userTag('t-gc', 'u-gc'));
      expect(await routeOf(t.tokenHash)).toBe(userTag('t-gc', 'u-gc'));
      // Expired, but still within the retention: it stays listed and readable.
      expect(handlesOf(await store.sweepExpired(s.absoluteExpiresAt + 1, 10))).toStrictEqual([s.handle]);
      expect(await conn.send(listing, ['ZSCORE', listing, s.handle])).not.toBeNull();
      expect((await store.listSessions({ tenantId: 't-gc', now: s.absoluteExpiresAt + 1, limit: 10 })).items).toHaveLength(1);
      expect(await store.getRefreshToken(t.tokenHash)).toStrictEqual(t);
      // Past absoluteExpiresAt + retention, the sweeper takes it out with everything leading to it.
      expect(await store.sweepExpired(s.absoluteExpiresAt + 60_000, 10)).toStrictEqual([]);
      expect(await store.getSessionByHandle(s.handle)).toBeNull();
      expect(await store.getRefreshToken(t.tokenHash)).toBeNull();
      expect(await conn.send(listing, ['ZSCORE', listing, s.handle])).toBeNull();
      expect(await routeOf(s.secretHash)).toBeNull();
      expect(await routeOf(t.tokenHash)).toBeNull();
      expect(await conn.send(`${own}{due}`, ['ZCARD', `${own}{due}`])).toBe(0);
      expect(await conn.send(`${own}{${userTag('t-gc', 'u-gc')}}:s`, ['EXISTS', `${own}{${userTag('t-gc', 'u-gc')}}:s`])).toBe(0);
    } finally {
      await conn.close();
      await store.close();
      await purgePrefix(shared.url, own);
    }
  });
});

// ---------------------------------------------------------------------------------------------

const binariesMissing = redisBinariesMissing();
const serverSkip = requireOrSkip(binariesMissing);

describe.skipIf(serverSkip)('failure and recovery (a throw-away redis-server)', () => {
  let server: Awaited<ReturnType<typeof startRedisStandalone>>;
  let store: RedisSessionStore;
  const prefix = testPrefix('recovery');

  beforeAll(async () => {
    server = await startRedisStandalone();
    store = await openRedisStore(server.url, { prefix, commandTimeoutMs: 300, connectTimeoutMs: 500 });
  });
  afterAll(async () => {
    await store?.close();
    await server?.stop();
  });

  /** A session of user `userId` whose first token t0 was rotated to h1; h2, h3 unused hashes. */
  async function rotatedOnce(userId: string) {
    const s = await created(store, session('t-rot', userId));
    const t0 = token(s);
    await store.addRefreshToken(t0);
    const [h1, h2, h3] = [hashSecret(newSecret()), hashSecret(newSecret()), hashSecret(newSecret())];
    expect((await store.rotateRefreshToken(t0.tokenHash, h1, T0 + 1000, 10_000, T0 + HOUR)).outcome).toBe('rotated');
    return { s, t0, h1, h2, h3 };
  }

  it('a rotation whose token route this process knows is one command: the script writes the successor route itself', async () => {
    const { s, h1, h2, h3 } = await rotatedOnce('u-rot');
    const conn = await openConnection(parseRedisUrl(server.url), { connectTimeoutMs: 1000, commandTimeoutMs: 1000 });
    try {
      // Calls per command (INFO commandstats), the INFO calls themselves left out.
      const commands = async () => {
        const out = new Map<string, number>();
        for (const [, name, calls] of String(await conn.send(undefined, ['INFO', 'commandstats'])).matchAll(/cmdstat_([a-z|]+):calls=(\d+)/g)) {
          if (name !== 'info') out.set(name as string, Number(calls));
        }
        return out;
      };
      const before = await commands();
      expect((await store.rotateRefreshToken(h1, h2, T0 + 2000, 10_000, T0 + HOUR)).outcome).toBe('rotated');
      const after = await commands();
      const sent = [...after].filter(([name, n]) => n !== (before.get(name) ?? 0)).map(([name, n]) => [name, n - (before.get(name) ?? 0)]);
      // The rotation's FCALL and the commands its script ran, no route lookup or route write of
      // its own: the value and the user read, the successor's route written unless there (HSETNX:
      // none was, so neither the ended records nor the route are read for it), the value written,
      // the spent token moved to the ended records with their TTL checked.
      expect(Object.fromEntries(sent)).toStrictEqual({ fcall: 1, get: 2, hsetnx: 1, set: 1, hset: 1, pttl: 2, pexpire: 1 });
    } finally {
      await conn.close();
    }
    // The successor's route is in Redis: a process that never saw it rotates it.
    const other = await openRedisStore(server.url, { prefix, commandTimeoutMs: 300, connectTimeoutMs: 500 });
    try {
      expect((await other.rotateRefreshToken(h2, h3, T0 + 3000, 10_000, T0 + HOUR)).outcome).toBe('rotated');
      expect((await other.getRefreshToken(h3))?.sessionHandle).toBe(s.handle);
    } finally {
      await other.close();
    }
  });

  it('a rotation refuses a successor hash the slot holds — a spent token, or a token whose route is gone — and writes no route for it', async () => {
    const { t0, h1, h2, h3 } = await rotatedOnce('u-rot-dup');
    expect((await store.rotateRefreshToken(h1, h2, T0 + 2000, 10_000, T0 + HOUR)).outcome).toBe('rotated');
    // t0 is spent now (its successor rotated): it left the live record for the ended records, its
    // route stays. As a successor: found there.
    await expect(store.rotateRefreshToken(h2, t0.tokenHash, T0 + 3000, 10_000, T0 + HOUR)).rejects.toMatchObject({ code: 'refresh_token_exists', status: 409 });
    const conn = await openConnection(parseRedisUrl(server.url), { connectTimeoutMs: 1000, commandTimeoutMs: 1000 });
    try {
      // h1 without its route (a state no write leaves: every token's route is written before it):
      // as a successor, the route the rotation writes first is taken back with the refusal.
      const bucket = `${prefix}r:${h1.slice(0, 2)}`;
      await conn.send(bucket, ['HDEL', bucket, h1.slice(2, 18)]);
      await expect(store.rotateRefreshToken(h2, h1, T0 + 3000, 10_000, T0 + HOUR)).rejects.toMatchObject({ code: 'refresh_token_exists', status: 409 });
      expect(await conn.send(bucket, ['HGET', bucket, h1.slice(2, 18)])).toBeNull();
    } finally {
      await conn.close();
    }
    // Nothing changed: h2 is still current and rotates.
    expect(await store.getRefreshToken(h2)).toMatchObject({ rotatedAt: null, successorHash: null });
    expect((await store.rotateRefreshToken(h2, h3, T0 + 4000, 10_000, T0 + HOUR)).outcome).toBe('rotated');
  });

  it("an SSO exchange of a token another process made is two commands: the look-up reads the route and the user in its script, the redeem writes the refresh token's route in its own", async () => {
    const [tenantId, userId] = ['t-sso', `u-sso-${newSecret().slice(0, 8)}`];
    const user = await store.createUser({ id: userId, tenantId, email: `${userId}@example.com`, passwordHash: null, roles: [], createdAt: T0, updatedAt: T0 });
    const login = async () => {
      const idp = await created(store, session(tenantId, userId, 'idp'));
      const app = await created(store, { ...session(tenantId, userId, 'app', idp), data: { mode: 'pending' } });
      const once = await created(store, { ...session(tenantId, null, 'flow'), handle: session(tenantId, userId).handle, userId, data: { purpose: 'sso_token', appHandle: app.handle } });
      return { app, once };
    };
    const target = (app: Session, t: RefreshToken) => ({ handle: app.handle, expectData: { mode: 'pending' }, patch: { mode: 'token' }, idleExpiresAt: T0 + HOUR, refreshToken: t });
    // Another process: it has seen neither route of a login `store` makes.
    const other = await openRedisStore(server.url, { prefix, commandTimeoutMs: 300, connectTimeoutMs: 500 });
    const conn = await openConnection(parseRedisUrl(server.url), { connectTimeoutMs: 1000, commandTimeoutMs: 1000 });
    try {
      // A first exchange loads the scripts (EVAL once on a server that did not know them).
      const first = await login();
      await other.getSessionWithUserBySecretHash(first.once.secretHash);
      expect((await other.redeemSession(first.once.secretHash, target(first.app, token(first.app)), T0 + 1000)).outcome).toBe('redeemed');
      const { app, once } = await login();
      const commands = async () => {
        const out = new Map<string, number>();
        for (const [, name, calls] of String(await conn.send(undefined, ['INFO', 'commandstats'])).matchAll(/cmdstat_([a-z|]+):calls=(\d+)/g)) {
          if (name !== 'info') out.set(name as string, Number(calls));
        }
        return out;
      };
      const before = await commands();
      expect(await other.getSessionWithUserBySecretHash(once.secretHash)).toStrictEqual({ session: once, user });
      const t = { ...token(app), createdAt: T0 + 1000 };
      const r = await other.redeemSession(once.secretHash, target(app, t), T0 + 1000);
      expect(r.outcome).toBe('redeemed');
      const after = await commands();
      const sent = [...after].filter(([name, n]) => n !== (before.get(name) ?? 0)).map(([name, n]) => [name, n - (before.get(name) ?? 0)]);
      // Two FCALLs (and what their scripts ran): no route read, user read or route write of their own.
      expect(sent.filter(([name]) => !['get', 'set', 'hget', 'hset', 'hsetnx', 'pttl', 'pexpire', 'publish'].includes(name as string))).toEqual([['fcall', 2]]);
      // The refresh token's route is in Redis: a process that never saw it finds the token.
      expect(await store.getRefreshToken(t.tokenHash)).toStrictEqual(t);
      // Unknown secrets, routed or not: null.
      expect(await other.getSessionWithUserBySecretHash(hashSecret(newSecret()))).toBeNull();

      // A refresh token whose route names another slot: refused before anything changes.
      const second = await login();
      const taken = token(second.app);
      const bucket = `${prefix}r:${taken.tokenHash.slice(0, 2)}`;
      await conn.send(bucket, ['HSET', bucket, taken.tokenHash.slice(2, 18), userTag(tenantId, 'someone-else')]);
      await expect(other.redeemSession(second.once.secretHash, target(second.app, taken), T0 + 1000)).rejects.toMatchObject({ code: 'session_exists', status: 409 });
      expect(await store.getSessionByHandle(second.once.handle)).toStrictEqual(second.once);
      expect(await store.getSessionByHandle(second.app.handle)).toStrictEqual(second.app);
      expect(await conn.send(bucket, ['HGET', bucket, taken.tokenHash.slice(2, 18)])).toBe(userTag(tenantId, 'someone-else'));
      // A redeem that does not redeem (the token spent) writes no route.
      const spent = token(app);
      expect(await other.redeemSession(once.secretHash, target(app, spent), T0 + 2000)).toStrictEqual({ outcome: 'not_consumed' });
      const spentBucket = `${prefix}r:${spent.tokenHash.slice(0, 2)}`;
      expect(await conn.send(spentBucket, ['HGET', spentBucket, spent.tokenHash.slice(2, 18)])).toBeNull();
    } finally {
      await conn.close();
      await other.close();
    }
  });

  it('lookUpAndRedeem of a token another process made is ONE command: the route, the record, the user, the redeem and the refresh token\'s route in one script', async () => {
    const [tenantId, userId] = ['t-sso', `u-sso-${newSecret().slice(0, 8)}`];
    const user = await store.createUser({ id: userId, tenantId, email: `${userId}@example.com`, passwordHash: null, roles: [], createdAt: T0, updatedAt: T0 });
    const login = async () => {
      const idp = await created(store, session(tenantId, userId, 'idp'));
      const app = await created(store, { ...session(tenantId, userId, 'app', idp), data: { mode: 'pending' } });
      const once = await created(store, { ...session(tenantId, null, 'flow'), handle: session(tenantId, userId).handle, userId, data: { purpose: 'sso_token', appHandle: app.handle, codeChallenge: 'c' } });
      return { app, once };
    };
    const plan = (o: { tenantId?: string } = {}) => ({
      kind: 'flow' as const,
      tenants: [{ tenantId: o.tenantId ?? tenantId, idleExpiresAt: T0 + HOUR }],
      expectSeen: { purpose: 'sso_token', codeChallenge: 'c' },
      targetField: 'appHandle',
      target: { expectData: { mode: 'pending' }, patch: { mode: 'token' } },
      refreshToken: { tokenHash: hashSecret(newSecret()), createdAt: T0 + 1000 },
    });
    const other = await openRedisStore(server.url, { prefix, commandTimeoutMs: 300, connectTimeoutMs: 500 });
    const conn = await openConnection(parseRedisUrl(server.url), { connectTimeoutMs: 1000, commandTimeoutMs: 1000 });
    const commands = async () => {
      const out = new Map<string, number>();
      for (const [, name, calls] of String(await conn.send(undefined, ['INFO', 'commandstats'])).matchAll(/cmdstat_([a-z|]+):calls=(\d+)/g)) {
        if (name !== 'info') out.set(name as string, Number(calls));
      }
      return out;
    };
    const sentDuring = async (f: () => Promise<unknown>) => {
      const before = await commands();
      await f();
      const after = await commands();
      return Object.fromEntries([...after].filter(([name, n]) => n !== (before.get(name) ?? 0)).map(([name, n]) => [name, n - (before.get(name) ?? 0)]));
    };
    try {
      // A first exchange loads the script (EVAL once on a server that did not know it).
      const first = await login();
      expect((await other.lookUpAndRedeem(first.once.secretHash, plan(), T0 + 1000)).outcome).toBe('redeemed');
      const { app, once } = await login();
      const p = plan();
      let r: unknown;
      // One FCALL and the commands its script ran: the route, the value and the user read; the
      // refresh token's route written if absent (HSETNX: it was, so the ended records are not
      // read for its hash); the value written, the spent one-time token moved to the ended
      // records with their TTL. Its end is not published: no session cache keeps a flow record.
      expect(await sentDuring(async () => (r = await other.lookUpAndRedeem(once.secretHash, p, T0 + 1000)))).toStrictEqual({
        fcall: 1,
        hget: 1,
        hsetnx: 1,
        get: 2,
        hset: 1,
        set: 1,
        pttl: 2,
        pexpire: 1,
      });
      expect(r).toMatchObject({ outcome: 'redeemed', user, session: { handle: app.handle, data: { mode: 'token' } } });
      // The refresh token's route is in Redis: a process that never saw it finds the token.
      expect(await store.getRefreshToken(p.refreshToken.tokenHash)).toStrictEqual({ tokenHash: p.refreshToken.tokenHash, sessionHandle: app.handle, tenantId, userId, createdAt: T0 + 1000, rotatedAt: null, successorHash: null });
      // A plan that does not hold: the look-up's answer, in one command too, and nothing written.
      const second = await login();
      const q = plan({ tenantId: 't-other' });
      expect(await sentDuring(async () => (r = await other.lookUpAndRedeem(second.once.secretHash, q, T0 + 1000)))).toStrictEqual({ fcall: 1, hget: 1, get: 2 });
      expect(r).toStrictEqual({ outcome: 'looked', found: { session: second.once, user } });
      const qBucket = `${prefix}r:${q.refreshToken.tokenHash.slice(0, 2)}`;
      expect(await conn.send(qBucket, ['HGET', qBucket, q.refreshToken.tokenHash.slice(2, 18)])).toBeNull();
      expect(await other.lookUpAndRedeem(hashSecret(newSecret()), plan(), T0 + 1000)).toStrictEqual({ outcome: 'looked', found: null });
      // A refresh token whose route names another slot: refused before anything changes.
      const taken = plan();
      const bucket = `${prefix}r:${taken.refreshToken.tokenHash.slice(0, 2)}`;
      await conn.send(bucket, ['HSET', bucket, taken.refreshToken.tokenHash.slice(2, 18), userTag(tenantId, 'someone-else')]);
      await expect(other.lookUpAndRedeem(second.once.secretHash, taken, T0 + 1000)).rejects.toMatchObject({ code: 'session_exists', status: 409 });
      expect(await store.getSessionByHandle(second.once.handle)).toStrictEqual(second.once);
      expect(await store.getSessionByHandle(second.app.handle)).toStrictEqual(second.app);
      // Spent: not consumed again, and no route written.
      const spent = plan();
      expect(await other.lookUpAndRedeem(once.secretHash, spent, T0 + 2000)).toStrictEqual({ outcome: 'not_consumed' });
      const spentBucket = `${prefix}r:${spent.refreshToken.tokenHash.slice(0, 2)}`;
      expect(await conn.send(spentBucket, ['HGET', spentBucket, spent.refreshToken.tokenHash.slice(2, 18)])).toBeNull();
      // The route written before the checks that follow it is taken back by their refusal: a
      // target no longer pending (unusable) and a refresh token that is already stored.
      const third = await login();
      await store.updateSessionData(third.app.handle, { mode: 'token' }, T0 + 500);
      const unusable = plan();
      expect((await other.lookUpAndRedeem(third.once.secretHash, unusable, T0 + 1000)).outcome).toBe('target_unusable');
      const unusableBucket = `${prefix}r:${unusable.refreshToken.tokenHash.slice(0, 2)}`;
      expect(await conn.send(unusableBucket, ['HGET', unusableBucket, unusable.refreshToken.tokenHash.slice(2, 18)])).toBeNull();
      const fourth = await login();
      const existing = plan();
      await store.addRefreshToken({ tokenHash: existing.refreshToken.tokenHash, sessionHandle: fourth.app.handle, tenantId, userId, createdAt: T0, rotatedAt: null, successorHash: null });
      // Its route gone (as after a purge's partial step): the token is in the live value only.
      const existingBucket = `${prefix}r:${existing.refreshToken.tokenHash.slice(0, 2)}`;
      await conn.send(existingBucket, ['HDEL', existingBucket, existing.refreshToken.tokenHash.slice(2, 18)]);
      await expect(other.lookUpAndRedeem(fourth.once.secretHash, existing, T0 + 1000)).rejects.toMatchObject({ code: 'refresh_token_exists', status: 409 });
      expect(await conn.send(existingBucket, ['HGET', existingBucket, existing.refreshToken.tokenHash.slice(2, 18)])).toBeNull();
      expect(await store.getSessionByHandle(fourth.once.handle)).toStrictEqual(fourth.once);
    } finally {
      await conn.close();
      await other.close();
    }
  });

  it('lookUpAndRedeem reads a user record outside JSON.stringify\'s usual form as before: another tenant\'s, an escaped "disabled", cut short, bytes appended, a repeated id field; decoded when the string check is not sure', async () => {
    const tenantId = 't-usr';
    const conn = await openConnection(parseRedisUrl(server.url), { connectTimeoutMs: 1000, commandTimeoutMs: 1000 });
    /** An SSO login whose user's record is the raw text given (written as it is into the user's key). */
    const login = async (text: (userId: string) => string) => {
      const userId = `u-usr-${newSecret().slice(0, 8)}`;
      const key = `${prefix}{${userTag(tenantId, userId)}}:u:${userId}`;
      await conn.send(key, ['SET', key, text(userId)]);
      const idp = await created(store, session(tenantId, userId, 'idp'));
      const app = await created(store, { ...session(tenantId, userId, 'app', idp), data: { mode: 'pending' } });
      const once = await created(store, { ...session(tenantId, null, 'flow'), handle: session(tenantId, userId).handle, userId, data: { purpose: 'sso_token', appHandle: app.handle, codeChallenge: 'c' } });
      return { app, once };
    };
    const plan = () => ({
      kind: 'flow' as const,
      tenants: [{ tenantId, idleExpiresAt: T0 + HOUR }],
      expectSeen: { purpose: 'sso_token', codeChallenge: 'c' },
      targetField: 'appHandle',
      target: { expectData: { mode: 'pending' }, patch: { mode: 'token' } },
      refreshToken: { tokenHash: hashSecret(newSecret()), createdAt: T0 + 1000 },
    });
    /** The usual form (accounts.ts: JSON.stringify of a User), `more` before its last field. */
    const usual = (userId: string, more = '', ten = tenantId) =>
      `{"id":"${userId}","tenantId":"${ten}","email":"${userId}@example.com","passwordHash":null,"roles":["admin"],"emailVerified":true,${more}"createdAt":${T0},"updatedAt":${T0}}`;
    /** Nothing changed by the call: the one-time token not consumed, the target pending, no refresh token. */
    const unchanged = async (l: { app: Session; once: Session }, p: ReturnType<typeof plan>) => {
      expect(await store.getSessionByHandle(l.once.handle)).toStrictEqual(l.once);
      expect(await store.getSessionByHandle(l.app.handle)).toStrictEqual(l.app);
      expect(await store.getRefreshToken(p.refreshToken.tokenHash)).toBeNull();
    };
    try {
      // The usual form, written the same way: redeemed (the string check takes it).
      const ok = await login((u) => usual(u));
      expect(await store.lookUpAndRedeem(ok.once.secretHash, plan(), T0 + 1000)).toMatchObject({ outcome: 'redeemed', user: { tenantId, roles: ['admin'] } });
      // Text the string check does not take but a decode does (a role "paid": 'id"' further on): redeemed.
      const paid = await login((u) => usual(u).replace('["admin"]', '["paid"]'));
      expect(await store.lookUpAndRedeem(paid.once.secretHash, plan(), T0 + 1000)).toMatchObject({ outcome: 'redeemed', user: { tenantId, roles: ['paid'] } });
      // Another tenant's record under the user's key: the look-up's answer (no user of the session's).
      const elsewhere = await login((u) => usual(u, '', 't-else'));
      const p1 = plan();
      expect(await store.lookUpAndRedeem(elsewhere.once.secretHash, p1, T0 + 1000)).toStrictEqual({ outcome: 'looked', found: { session: elsewhere.once, user: null } });
      await unchanged(elsewhere, p1);
      // "disabled" spelt with an escape: decoded, so a disabled user is the look-up's answer.
      const disabled = await login((u) => usual(u, '"disabl\\u0065d":true,'));
      const p2 = plan();
      expect(await store.lookUpAndRedeem(disabled.once.secretHash, p2, T0 + 1000)).toMatchObject({ outcome: 'looked', found: { session: disabled.once, user: { disabled: true } } });
      await unchanged(disabled, p2);
      // Its id or tenant repeated further on (JSON.parse keeps the last): the look-up's answer.
      const repeated = await login((u) => usual(u, '"tenantId":"t-else",'));
      const p3 = plan();
      expect(await store.lookUpAndRedeem(repeated.once.secretHash, p3, T0 + 1000)).toStrictEqual({ outcome: 'looked', found: { session: repeated.once, user: null } });
      await unchanged(repeated, p3);
      const repeatedId = await login((u) => usual(u, `"id":"${u}-2",`));
      const p4 = plan();
      expect(await store.lookUpAndRedeem(repeatedId.once.secretHash, p4, T0 + 1000)).toStrictEqual({ outcome: 'looked', found: { session: repeatedId.once, user: null } });
      await unchanged(repeatedId, p4);
      // Not JSON (cut short, bytes appended): refused as the plain look-up refuses it (the adapter
      // cannot read the record), and nothing consumed — not redeemed first and refused after.
      for (const broken of [(u: string) => usual(u).slice(0, -1), (u: string) => usual(u).slice(0, usual(u).indexOf('"roles"')), (u: string) => `${usual(u)} x`]) {
        const l = await login(broken);
        const p = plan();
        const unparsed = { name: 'StoreUnavailable', cause: expect.any(SyntaxError) as unknown };
        await expect(store.getSessionWithUserBySecretHash(l.once.secretHash)).rejects.toMatchObject(unparsed);
        await expect(store.lookUpAndRedeem(l.once.secretHash, p, T0 + 1000)).rejects.toMatchObject(unparsed);
        await unchanged(l, p);
      }
    } finally {
      await conn.close();
    }
  });

  it('fails fast with StoreUnavailable while Redis is down, and resumes by itself when it returns', async () => {
    const s = await created(store, session('t-rec', 'u-rec'));
    let resets = 0;
    const sub = await store.subscribeSessionEnds(
      () => undefined,
      () => resets++,
    );
    try {
      await server.kill();
      const ops: Array<() => Promise<unknown>> = [
        () => store.ping(),
        () => store.getSessionByHandle(s.handle),
        () => store.touchSession(s.handle, T0 + 1, T0 + HOUR),
      ];
      for (const op of ops) {
        const { ms, result } = await elapsed(op());
        expect(result.status).toBe('rejected');
        expect((result as PromiseRejectedResult).reason).toMatchObject({ code: 'store_unavailable', status: 503 });
        expect(ms).toBeLessThan(1000);
      }
      // The feed says it may have lost messages, so caches are dropped.
      await waitUntil('the feed to report the outage', 2000, () => resets > 0);

      await server.restart(); // empty: no data, no script cache, no Functions
      await waitUntil('the store to answer again', 10_000, async () => {
        await store.ping();
        return true;
      });
      // Scripts are loaded again on demand (FCALL → "Function not found" → FUNCTION LOAD → FCALL).
      const again = await created(store, session('t-rec', 'u-rec'));
      expect(await store.revokeSession(again.handle, 'logout', T0 + 1)).toHaveLength(1);
    } finally {
      await sub.close();
    }
  });

  it('answers StoreUnavailable within the command timeout when Redis hangs', async () => {
    await store.ping();
    server.pause();
    try {
      const { ms, result } = await elapsed(store.getSessionByHandle(session('t-rec', 'u-rec').handle));
      expect(result.status).toBe('rejected');
      expect((result as PromiseRejectedResult).reason).toMatchObject({ code: 'store_unavailable' });
      expect(ms).toBeGreaterThanOrEqual(250);
      expect(ms).toBeLessThan(1000);
    } finally {
      server.resume();
    }
    await waitUntil('the store to answer again', 5000, async () => {
      await store.ping();
      return true;
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe.skipIf(serverSkip)('Cluster specifics (3 masters started here)', () => {
  let cluster: StartedRedis;
  let store: RedisSessionStore;
  let other: RedisSessionStore;
  const prefix = testPrefix('layout');

  beforeAll(async () => {
    cluster = await startRedisCluster();
    store = await openRedisStore(cluster.url, { prefix });
    other = await openRedisStore(cluster.url, { prefix });
  });
  afterAll(async () => {
    await store?.close();
    await other?.close();
    if (cluster) await purgePrefix(cluster.url, prefix).catch(() => 0);
    await cluster?.stop();
  });

  /** Every key under the prefix, with the index of the master it was found on. */
  async function keysByMaster(): Promise<Array<{ key: string; master: number; slot: number }>> {
    const conn = await openConnection(parseRedisUrl(cluster.url), { connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
    try {
      const out: Array<{ key: string; master: number; slot: number }> = [];
      const masters = await conn.masters();
      for (const [i, send] of masters.entries()) {
        let cursor = '0';
        do {
          const [next, keys] = (await send(['SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', '1000'])) as [string, string[]];
          cursor = next;
          for (const key of keys) out.push({ key, master: i, slot: Number(await send(['CLUSTER', 'KEYSLOT', key])) });
        } while (cursor !== '0');
      }
      return out;
    } finally {
      await conn.close();
    }
  }

  it('says it is redis-cluster', () => {
    expect(store.kind).toBe('redis-cluster');
  });

  it("puts every key of one user in one hash slot, and spreads users over the masters", async () => {
    const tenantId = 't-layout';
    const users = Array.from({ length: 12 }, (_, i) => `u-${i}`);
    const expectedKeys = new Map<string, string[]>();
    for (const userId of users) {
      const tag = userTag(tenantId, userId);
      const idp = await created(store, session(tenantId, userId, 'idp'));
      const app = await created(store, session(tenantId, userId, 'app', idp));
      await created(store, session(tenantId, userId, 'redirect', app));
      const t = token(app);
      await store.addRefreshToken(t);
      const h1 = hashSecret(newSecret());
      expect((await store.rotateRefreshToken(t.tokenHash, h1, T0 + 1, 1000, null)).outcome).toBe('rotated');
      await store.createUser({ id: userId, tenantId, email: `${userId}@example.com`, passwordHash: null, roles: [], createdAt: T0, updatedAt: T0 });
      const base = `${prefix}{${tag}}:`;
      expectedKeys.set(tag, [`${base}s`, `${base}u:${userId}`]);
    }
    // A flow session gets a random tag of its own.
    const flow = await created(store, session(tenantId, null, 'flow'));

    const found = await keysByMaster();
    const byKey = new Map(found.map((f) => [f.key, f]));
    const mastersUsed = new Set<number>();
    for (const [tag, keys] of expectedKeys) {
      const places = keys.map((k) => byKey.get(k));
      for (const [i, p] of places.entries()) expect(p, `${keys[i]} is stored`).toBeDefined();
      const slots = new Set(places.map((p) => p!.slot));
      expect(slots.size, `keys of tag ${tag} share one slot`).toBe(1);
      expect(new Set(places.map((p) => p!.master)).size).toBe(1);
      mastersUsed.add(places[0]!.master);
      // No other key of this tag exists beyond the layout above.
      expect(found.filter((f) => f.key.includes(`{${tag}}`)).map((f) => f.key).sort()).toStrictEqual([...keys].sort());
    }
    expect(mastersUsed.size).toBeGreaterThan(1);
    expect(byKey.has(`${prefix}{${flow.handle.slice(0, 12)}}:s`)).toBe(true);

    // The global keys: route buckets, tenant listing, email index; the due index in slot {due}.
    const globals = found.filter((f) => !f.key.includes('{')).map((f) => f.key.slice(prefix.length));
    expect(globals).toContain(`t:${tenantId}:s`);
    expect(globals).toContain(`ue:${tenantId}:u-0@example.com`);
    expect(found.filter((f) => f.key.startsWith(`${prefix}{due}`)).length).toBeGreaterThan(1);
    expect(new Set(found.filter((f) => f.key.startsWith(`${prefix}{due}`)).map((f) => f.slot)).size).toBe(1);
    const conn = await openConnection(parseRedisUrl(cluster.url), { connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
    try {
      let routes = 0;
      for (const k of globals.filter((g) => g.startsWith('r:'))) routes += Number(await conn.send(prefix + k, ['HLEN', prefix + k]));
      expect(routes).toBe(12 * 3 + 1 + 12 * 2); // every secret hash and every refresh-token hash
    } finally {
      await conn.close();
    }
  });

  it('ping checks every master', async () => {
    await expect(store.ping()).resolves.toBeUndefined();
  });

  it("arms no node-redis AbortSignal timer per command (the adapter's own deadline covers it)", async () => {
    expect(await abortTimersPerCommand(cluster.url, prefix)).toBe(0);
  });

  it('appendMany: several records in one step, from two instances at once, in one chain that verifies', async () => {
    await appendManyKeepsOneChain(store, other);
  });

  it('purgePrefix deletes exactly the keys under the prefix, on every master', async () => {
    const mine = testPrefix('purge');
    const mineStore = await openRedisStore(cluster.url, { prefix: mine });
    try {
      for (let i = 0; i < 10; i++) await created(mineStore, session('t-purge', `u-${i}`));
    } finally {
      await mineStore.close();
    }
    const before = (await keysByMaster()).length;
    const deleted = await purgePrefix(cluster.url, mine);
    expect(deleted).toBeGreaterThanOrEqual(10 + 2); // ten slot keys, the tenant listing, the due directory (and buckets)
    expect((await keysByMaster()).length).toBe(before); // the other prefix is untouched
    const conn = await openConnection(parseRedisUrl(cluster.url), { connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
    try {
      for (const send of await conn.masters()) {
        const [, keys] = (await send(['SCAN', '0', 'MATCH', `${mine}*`, 'COUNT', '10000'])) as [string, string[]];
        expect(keys).toStrictEqual([]);
      }
    } finally {
      await conn.close();
    }
  });
});
