// The hot scripts' packed record replies (slot-lua.ts packedOf, codec.ts packedFromReply) against
// the name/value replies they replaced (pairsOf, tokenPairs read by sessionFromReply and
// refreshTokenFromReply): for generated records — every optional field present and absent, odd
// User-Agents, non-canonical hashes and handles, IPv6 and other addresses, data maps with a
// __proto__ key, refresh tokens rotated and not, live and ended records — on a live Redis, both
// forms of the same record, built in the same call, decode to the same session and tokens. And
// the store's calls that now read packed replies (rotation, grace, the SSO look-up, the redeem)
// answer what the reads that still use name/value replies answer.

import { randomBytes } from 'node:crypto';
import { deepStrictEqual } from 'node:assert/strict';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret, newHandle, newSecret, tagOfHandle, userTag } from '../../src/domain/secrets.ts';
import type { Device, Session, SessionKind } from '../../src/domain/session.ts';
import { openConnection, type RedisConnection } from '../../src/store/redis/connection.ts';
import { packedFromReply, refreshTokenFromReply, sessionFromReply } from '../../src/store/redis/codec.ts';
import { RedisKeys } from '../../src/store/redis/keys.ts';
import { evalScript } from '../../src/store/redis/lua.ts';
import { openRedisStore, parseRedisUrl, type RedisSessionStore } from '../../src/store/redis/redis-store.ts';
import { script } from '../../src/store/redis/slot-lua.ts';
import { purgePrefix, redisUrlForTests, requireOrSkip, testPrefix } from '../support/redis.ts';

const T0 = 1_800_000_000_000;
const HOUR = 3_600_000;

const redis = await redisUrlForTests();
const skip = requireOrSkip(redis.unavailable);

/**
 * The record with secret hash ARGV[5] in both forms: {pairs, packed, then for each of its refresh
 * tokens: its pairs, the record packed naming it}. Its reply comes as bytes, as the hot scripts'
 * do (the pairs' names and values too, which sessionFromReply reads as text).
 */
const BOTH = script(
  'test-packed-both',
  `
local r, rec = findSecret(h2b(ARGV[5]))
if not r then return false end
local out = { pairsOf(r, rec), packedOf(r, rec, 0) }
if rec[TOK] then
  for i, t in ipairs(rec[TOK]) do
    out[#out + 1] = tokenPairs(r, rec, t)
    out[#out + 1] = packedOf(r, rec, i)
  end
end
return out
`,
  true,
);

/**
 * Deep, strict equality (node:assert: Vitest's toStrictEqual compares `.constructor`, which a
 * data map may hold as its own key).
 */
function same(actual: unknown, expected: unknown): void {
  deepStrictEqual(actual, expected);
}

let serial = 0;
/** A unique text of `len` characters that is not canonical base64url of its bytes (or any text). */
function odd(len: number): string {
  // Unique in its first characters (a route is found by the first 18).
  return `${++serial}${'A'.repeat(len)}`.slice(0, len - 1) + 'B';
}

/** The shape of a hash (made unique when used: mkHash, so that a shrunk case reuses none). */
const hashArb = fc.constantFrom('canonical', 'noncanonical43', 'len31', 'len32', 'short', 'unicode', 'nul');
function mkHash(k: string): string {
  switch (k) {
    case 'canonical': return hashSecret(newSecret());
    case 'noncanonical43': return odd(43);
    case 'len31': return odd(31);
    case 'len32': return odd(32);
    case 'short': return `h${++serial}`;
    case 'unicode': return `ü✓${++serial}\u0000x`;
    default: return `\u0000${++serial}`;
  }
}
const uaArb = fc.oneof(
  fc.constantFrom(
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0',
    '\u0000starts with NUL',
    '\u0001\u0002 control codes',
    '',
    'é ü ✓ 𝄞',
  ),
  fc.string({ maxLength: 30 }),
);
const ipArb = fc.constantFrom('10.0.0.1', '0.0.0.0', '255.255.255.255', '::1', '2001:db8::1', '::ffff:10.1.2.3', '256.1.1.1', '01.2.3.4', 'abcd', '\u0000x', 'é');
const deviceArb: fc.Arbitrary<Device> = fc.record(
  { userAgent: uaArb, ip: ipArb, location: fc.record({ country: fc.constantFrom('CH', 'DE'), city: fc.string({ maxLength: 8 }) }, { requiredKeys: ['country'] }) },
  { requiredKeys: [] },
);
const jsonArb = fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);
const dataArb = fc
  .array(fc.tuple(fc.oneof(fc.constantFrom('__proto__', 'mode', 'appHandle', '', '1', 'constructor'), fc.string({ maxLength: 8 })), jsonArb), { maxLength: 5 })
  .map((entries) => {
    const d: Record<string, unknown> = {};
    for (const [k, v] of entries) Object.defineProperty(d, k, { value: v, enumerable: true, writable: true, configurable: true });
    return d;
  });

const caseArb = fc.record({
  tenantId: fc.constantFrom('t-pack', 'tënant ✓', 'x'.repeat(40)),
  userId: fc.option(fc.constantFrom('u1', 'üser ✓', 'user:with:colons'), { nil: null }),
  kind: fc.constantFrom<SessionKind>('idp', 'app', 'flow', 'redirect'),
  authMethod: fc.constantFrom('password', 'oidc', 'oauth', 'renewed', 'redirect', 'custom-x'),
  oddHandle: fc.boolean(),
  secretHash: hashArb,
  createdAt: fc.oneof(fc.integer({ min: 0, max: 10 * HOUR }).map((d) => T0 - d), fc.constant(T0 - 0.5)),
  idle: fc.option(fc.integer({ min: 60_000, max: 2 * HOUR }), { nil: null }),
  device: fc.option(deviceArb, { nil: undefined }),
  data: dataArb,
  clientId: fc.option(fc.constantFrom('client-1', 'ç'), { nil: null }),
  successor: fc.boolean(),
  child: fc.boolean(),
  tokens: fc.array(fc.record({ hash: hashArb, age: fc.integer({ min: 0, max: HOUR }) }), { maxLength: 3 }),
  rotate: fc.boolean(),
  revoke: fc.boolean(),
});

describe.skipIf(skip)('packed record replies (Redis)', () => {
  const prefix = testPrefix('packed');
  const keys = new RedisKeys(prefix);
  let store: RedisSessionStore;
  let conn: RedisConnection;
  beforeAll(async () => {
    store = await openRedisStore(redis.url, { prefix });
    conn = await openConnection(parseRedisUrl(redis.url), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
  });
  afterAll(async () => {
    await store?.close();
    await conn?.close();
    await purgePrefix(redis.url, prefix);
  });

  /** Both forms of the record with this secret hash, decoded; they must be equal. */
  async function compareBoth(tag: string, secretHash: string): Promise<number> {
    const reply = (await evalScript(conn, BOTH, keys.slotSessions(tag), [keys.slotBase(tag), '0', '', '', secretHash])) as unknown[];
    expect(Array.isArray(reply)).toBe(true);
    const fromPairs = sessionFromReply(reply[0]);
    const packed = packedFromReply(reply[1]);
    same(packed.session, fromPairs);
    expect(packed.token).toBeNull();
    let tokens = 0;
    for (let i = 2; i < reply.length; i += 2) {
      const p = packedFromReply(reply[i + 1]);
      same(p.token, refreshTokenFromReply(reply[i]));
      same(p.session, fromPairs);
      tokens++;
    }
    return tokens;
  }

  it('decodes every generated record as the name/value reply does', async () => {
    let withTokens = 0;
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const handle = c.oddHandle && c.userId !== null ? `${userTag(c.tenantId, c.userId)}.${odd(22)}` : newHandle(c.tenantId, c.userId);
        const tag = tagOfHandle(handle) as string;
        const now = T0;
        const s: Session = {
          handle,
          secretHash: mkHash(c.secretHash),
          tenantId: c.tenantId,
          userId: c.userId,
          kind: c.kind,
          parentHandle: null,
          createdAt: c.createdAt,
          lastSeenAt: c.createdAt + 1000,
          idleExpiresAt: c.idle === null ? null : now + c.idle,
          absoluteExpiresAt: now + 8 * HOUR,
          authMethod: c.authMethod,
          clientId: c.clientId,
          device: c.device ?? {},
          status: 'active',
          endedAt: null,
          revokeReason: null,
          successorHandle: c.successor ? `${tag}.${odd(22)}` : null,
          data: c.data,
        };
        const created = await store.createSession(s, now);
        expect(created.ok).toBe(true);
        const secrets = [s.secretHash];
        if (c.child) {
          const child: Session = { ...s, handle: `${tag}.${randomBytes(16).toString('base64url')}`, secretHash: hashSecret(newSecret()), parentHandle: handle, successorHandle: null, data: {} };
          expect((await store.createSession(child, now)).ok).toBe(true);
          secrets.push(child.secretHash);
        }
        const tokenHashes: string[] = [];
        for (const t of c.tokens) {
          const hash = mkHash(t.hash);
          await store.addRefreshToken({ tokenHash: hash, sessionHandle: handle, tenantId: s.tenantId, userId: s.userId ?? '', createdAt: now - t.age, rotatedAt: null, successorHash: null });
          tokenHashes.push(hash);
        }
        if (c.rotate && tokenHashes.length > 0) {
          const presented = tokenHashes[0] as string;
          const successor = hashSecret(newSecret());
          const r = await store.rotateRefreshToken(presented, successor, now + 10, 60_000, now + HOUR);
          expect(r.outcome).toBe('rotated');
          if (r.outcome === 'rotated') {
            same(r.session, await store.getSessionByHandle(handle));
            same(r.successor, await store.getRefreshToken(successor));
          }
          // The same token again, within the grace window: the presented token as stored.
          const g = await store.rotateRefreshToken(presented, hashSecret(newSecret()), now + 20, 60_000, now + HOUR);
          expect(g.outcome).toBe('grace');
          if (g.outcome === 'grace') {
            same(g.session, await store.getSessionByHandle(handle));
            same(g.token, await store.getRefreshToken(presented));
          }
        }
        const withUser = await store.getSessionWithUserBySecretHash(s.secretHash);
        const bySecret = await store.getSessionBySecretHash(s.secretHash);
        same(withUser?.session, bySecret);
        if (c.revoke) await store.revokeSession(handle, 'logout', now + 30);
        for (const secret of secrets) {
          if ((await compareBoth(tag, secret)) > 0) withTokens++;
        }
      }),
      { numRuns: 60 },
    );
    // The generator reached records with tokens (the token half of the comparison ran).
    expect(withTokens).toBeGreaterThan(0);
  });

  it('the redeem answers the target (and an unusable target the consumed record) as the reads do', async () => {
    const tenantId = 't-pack';
    const userId = `u-redeem-${serial++}`;
    const target = await create({ tenantId, userId, kind: 'idp', data: { odd: 1, mode: 'x' } });
    const flow = await create({ tenantId, userId, kind: 'flow', data: {} });
    const token = { tokenHash: odd(43), sessionHandle: target.handle, tenantId, userId, createdAt: T0 + 5, rotatedAt: null, successorHash: null };
    const r = await store.redeemSession(flow.secretHash, { handle: target.handle, idleExpiresAt: T0 + HOUR, expectData: { mode: 'x' }, patch: JSON.parse('{"__proto__":"p","mode":null}') as Record<string, unknown>, refreshToken: token }, T0 + 5);
    expect(r.outcome).toBe('redeemed');
    if (r.outcome === 'redeemed') same(r.session, await store.getSessionByHandle(target.handle));
    const flow2 = await create({ tenantId, userId, kind: 'flow', data: { a: 1 } });
    const u = await store.redeemSession(flow2.secretHash, { handle: target.handle, idleExpiresAt: null, expectData: { mode: 'gone' }, patch: {}, refreshToken: null }, T0 + 6);
    expect(u.outcome).toBe('target_unusable');
    if (u.outcome === 'target_unusable') same(u.consumed, await store.getSessionByHandle(flow2.handle));
  });

  async function create(o: { tenantId: string; userId: string; kind: SessionKind; data: Record<string, unknown> }): Promise<Session> {
    const s: Session = {
      handle: newHandle(o.tenantId, o.userId),
      secretHash: hashSecret(newSecret()),
      tenantId: o.tenantId,
      userId: o.userId,
      kind: o.kind,
      parentHandle: null,
      createdAt: T0,
      lastSeenAt: T0,
      idleExpiresAt: T0 + HOUR,
      absoluteExpiresAt: T0 + 8 * HOUR,
      authMethod: 'password',
      clientId: null,
      device: { userAgent: '\u0000ua', ip: '2001:db8::2' },
      status: 'active',
      endedAt: null,
      revokeReason: null,
      successorHandle: null,
      data: o.data,
    };
    const r = await store.createSession(s, T0);
    if (!r.ok) throw new Error('not created');
    return r.session;
  }
});
