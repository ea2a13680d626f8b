// How the slot scripts reach Redis as Functions (src/store/redis/lua.ts): the library loaded on
// demand and again when the server lost it, one load for the calls waiting on it, two versions
// side by side, and the fallbacks to EVALSHA — a user without Function rights, a server over its
// maxmemory. Also the Lua codec of the compact record form (lua-codec.ts) against Node's
// base64url.

import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorReply } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret, newSecret } from '../../src/domain/secrets.ts';
import { rng } from '../support/rng.ts';
import { StoreUnavailable } from '../../src/domain/errors.ts';
import { DEFAULT_LIFETIMES, issueSession, type Session } from '../../src/domain/session.ts';
import { openConnection, type RedisConnection } from '../../src/store/redis/connection.ts';
import { LUA_CODEC, LUA_CODEC_INIT, packedHash } from '../../src/store/redis/lua-codec.ts';
import { evalScript, luaFunctionScript } from '../../src/store/redis/lua.ts';
import { openRedisStore, parseRedisUrl, type RedisSessionStore } from '../../src/store/redis/redis-store.ts';
import { CREATE } from '../../src/store/redis/scripts.ts';
import { script } from '../../src/store/redis/slot-lua.ts';
import { purgePrefix, redisBinariesMissing, redisUrlForTests, requireOrSkip, startRedisCluster, startRedisSentinelSet, startRedisStandalone, testPrefix } from '../support/redis.ts';

const T0 = Date.now();
const HOUR = 3_600_000;

function session(tenantId: string, userId: string): Session {
  return issueSession({ tenantId, userId, kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password' }, T0).session;
}

async function create(store: RedisSessionStore, userId: string): Promise<Session> {
  const r = await store.createSession(session('t-fn', userId), T0);
  if (!r.ok) throw new Error('not created');
  return r.session;
}

/** Calls per command (INFO commandstats): the ones run, failed ones included, and the ones refused (an ACL). */
async function commandCounts(conn: RedisConnection): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const stats = String(await conn.send(undefined, ['INFO', 'commandstats']));
  for (const [, name, calls, rejected] of stats.matchAll(/cmdstat_([a-z|_]+):calls=(\d+),.*?rejected_calls=(\d+)/g)) out.set(name as string, Number(calls) + Number(rejected));
  return out;
}
function delta(before: Map<string, number>, after: Map<string, number>, name: string): number {
  return (after.get(name) ?? 0) - (before.get(name) ?? 0);
}

const redis = await redisUrlForTests();
const skipShared = requireOrSkip(redis.unavailable);

describe.skipIf(skipShared)('the Lua codec (lua-codec.ts)', () => {
  let conn: RedisConnection;
  beforeAll(async () => {
    conn = await openConnection(parseRedisUrl(redis.url), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
  });
  afterAll(async () => {
    await conn?.close();
  });

  // Bytes travel as hex (the client reads replies as UTF-8).
  const HEX = `local function hex(s) return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end)) end
local function unhex(h) return (string.gsub(h, '..', function(x) return string.char(tonumber(x, 16)) end)) end`;
  // ARGV[1] is n; for each text ARGV[i]: packText(s, n) in hex, and unpackText of that (the round trip).
  const PACK = `${LUA_CODEC}\n${LUA_CODEC_INIT}\n${HEX}\nlocal n = tonumber(ARGV[1])\nlocal out = {}\nfor i = 2, #ARGV do\n  local b = packText(ARGV[i], n)\n  out[#out + 1] = hex(b)\n  out[#out + 1] = unpackText(b, n)\nend\nreturn out`;
  // For each ARGV[i] (bytes in hex): b64enc, and b64dec of that in hex.
  const ENC = `${LUA_CODEC}\n${LUA_CODEC_INIT}\n${HEX}\nlocal out = {}\nfor i = 1, #ARGV do\n  local t = b64enc(unhex(ARGV[i]))\n  out[#out + 1] = t\n  out[#out + 1] = hex(b64dec(t))\nend\nreturn out`;

  it('encodes bytes as Node does and decodes them back, for every length up to 33', async () => {
    const inputs = Array.from({ length: 200 }, (_, i) => randomBytes(i % 34));
    const reply = (await conn.send(undefined, ['EVAL', ENC, '0', ...inputs.map((b) => b.toString('hex'))])) as string[];
    inputs.forEach((b, i) => {
      expect(reply[2 * i]).toBe(b.toString('base64url'));
      expect(reply[2 * i + 1]).toBe(b.toString('hex'));
    });
  });

  it('packs canonical base64url of n bytes into those bytes, any other text so that it comes back unchanged', async () => {
    const canonical32 = Array.from({ length: 50 }, () => randomBytes(32).toString('base64url'));
    const canonical16 = Array.from({ length: 50 }, () => randomBytes(16).toString('base64url'));
    // Not canonical (the last character carries bits the bytes do not have), not base64url, other
    // lengths, texts of n bytes or n + 1 bytes behind a 0 byte, empty.
    const odd = (len: number) => [
      'A'.repeat(len - 1) + 'B',
      'A'.repeat(len - 1) + '=',
      '+'.repeat(len),
      'A'.repeat(len - 1),
      'A'.repeat(len + 1),
      'x'.repeat(len === 43 ? 32 : 16),
      'x'.repeat(len === 43 ? 31 : 15),
      '\0' + 'x'.repeat(len === 43 ? 31 : 15),
      '',
      'ü'.repeat(11),
    ];
    // Every last character after 21 of the alphabet (a handle's part goes through the unrolled
    // dec22/enc16): canonical only with the four low bits zero.
    const last16 = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'].map((c) => 'b'.repeat(21) + c);
    const every16 = Array.from({ length: 22 }, (_, i) => 'A'.repeat(i) + '_' + 'A'.repeat(21 - i));
    for (const [n, texts] of [
      [32, [...canonical32, ...odd(43)]],
      [16, [...canonical16, ...odd(22), ...last16, ...every16]],
    ] as const) {
      const reply = (await conn.send(undefined, ['EVAL', PACK, '0', String(n), ...texts])) as string[];
      texts.forEach((t, i) => {
        const packed = Buffer.from(reply[2 * i] as string, 'hex');
        const isCanonical = t.length === (n === 32 ? 43 : 22) && Buffer.from(t, 'base64url').toString('base64url') === t;
        if (isCanonical) expect(packed.equals(Buffer.from(t, 'base64url'))).toBe(true);
        else expect(packed.length).not.toBe(n);
        expect(reply[2 * i + 1]).toBe(t);
      });
    }
  });
});

describe.skipIf(skipShared)('packed hashes made in Node (lua-codec.ts packedHash)', () => {
  /** The hex of h2b of each ARGV (the scripts' packing of a hash text). */
  const H2B = `${LUA_CODEC}\n${LUA_CODEC_INIT}\nlocal out = {}\nfor i = 1, #ARGV do out[i] = string.gsub(h2b(ARGV[i]), '.', function(c) return string.format('%02x', string.byte(c)) end) end\nreturn out`;
  let conn: RedisConnection;
  beforeAll(async () => {
    conn = await openConnection(parseRedisUrl(redis.url), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
  });
  afterAll(async () => {
    await conn?.close();
  });

  it("are the bytes the scripts' h2b makes of the same text, whatever the text", async () => {
    const texts = [
      ...Array.from({ length: 40 }, () => hashSecret(newSecret())),
      randomBytes(32).toString('base64url'),
      'A'.repeat(42) + 'B', // not canonical: the last character has bits the 32 bytes lack
      'A'.repeat(42) + '=',
      // Every last character after 42 of the alphabet: canonical only with the two low bits zero.
      ...[...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'].map((c) => 'b'.repeat(42) + c),
      '+'.repeat(43),
      // One character outside the alphabet, or outside ASCII, anywhere in the 43.
      'A'.repeat(20) + '.' + 'A'.repeat(22),
      'A'.repeat(5) + 'é' + 'A'.repeat(37),
      'A'.repeat(39) + '=' + 'AAA',
      'A'.repeat(41) + 'ü' + 'A',
      'A'.repeat(42) + '\u0141', // a character whose low byte is in the alphabet ('A' + 256)
      'A'.repeat(42) + 'Ł', // 'A' + 256 again, as a character
      'x'.repeat(31), // 32 bytes behind the 0 byte: padded
      'x'.repeat(32),
      'ü'.repeat(15), // 30 bytes of UTF-8, 15 characters
      'ü'.repeat(43),
      '',
    ];
    const reply = (await conn.send(undefined, ['EVAL', H2B, '0', ...texts])) as string[];
    texts.forEach((t, i) => expect(packedHash(t).toString('hex')).toBe(reply[i]));
  });

  it("are the bytes h2b makes for 3,000 seeded random texts near the canonical form", async () => {
    const rand = rng(13);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const odd = ['=', '.', '+', '/', ' ', 'é', 'ü', 'Ł', '\u0141', '\u0100', '\0', '😀'];
    const texts = Array.from({ length: 3000 }, () => {
      // Mostly 43 characters (a hash's length), some near it; a few characters changed at times.
      const n = rand() < 0.7 ? 43 : Math.floor(rand() * 50);
      const chars = Array.from({ length: n }, () => alphabet[Math.floor(rand() * 64)] as string);
      const changes = rand() < 0.5 ? 0 : 1 + Math.floor(rand() * 3);
      for (let k = 0; k < changes && n > 0; k++) chars[Math.floor(rand() * n)] = odd[Math.floor(rand() * odd.length)] as string;
      return chars.join('');
    });
    for (let from = 0; from < texts.length; from += 500) {
      const batch = texts.slice(from, from + 500);
      const reply = (await conn.send(undefined, ['EVAL', H2B, '0', ...batch])) as string[];
      batch.forEach((t, i) => expect(packedHash(t).toString('hex'), JSON.stringify(t)).toBe(reply[i]));
    }
  });
});

describe.skipIf(skipShared)('slot scripts as Redis Functions (shared server)', () => {
  let store: RedisSessionStore;
  let conn: RedisConnection;
  const prefix = testPrefix('functions');
  const libraryOf = async (name: string) => (await conn.send(undefined, ['FUNCTION', 'LIST', 'LIBRARYNAME', name])) as unknown[];

  beforeAll(async () => {
    store = await openRedisStore(redis.url, { prefix });
    conn = await openConnection(parseRedisUrl(redis.url), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
  });
  afterAll(async () => {
    await store?.close();
    await conn?.close();
    await purgePrefix(redis.url, prefix);
  });

  it("names each library and function after the script and a hash of its source, so that two versions never replace each other's", () => {
    const a = luaFunctionScript('x', 'local k = 1', 'return k');
    const b = luaFunctionScript('x', 'local k = 2', 'return k');
    expect(a.fn?.name).toMatch(/^tessera_x_[0-9a-f]{20}$/);
    expect(a.fn?.name).not.toBe(b.fn?.name);
    expect(a.fn?.library.startsWith(`#!lua name=${a.fn?.name}\n`)).toBe(true);
    expect(CREATE.fn?.name).toMatch(/^tessera_create_[0-9a-f]{20}$/);
  });

  it('loads the library when the server does not have it (as after a restart without persistence), and the call succeeds', async () => {
    // A script of this test alone (other files share this server and the slot scripts' libraries).
    const own = luaFunctionScript(`reload_${randomBytes(4).toString('hex')}`, 'local k = 41', 'return k + 1');
    const name = own.fn?.name as string;
    const key = `${prefix}{reload}:x`;
    try {
      expect(await libraryOf(name)).toHaveLength(0);
      expect(await evalScript(conn, own, key, [])).toBe(42);
      expect(await libraryOf(name)).toHaveLength(1);
      // What a restart without persistence leaves: no library.
      await conn.send(undefined, ['FUNCTION', 'DELETE', name]);
      expect(await libraryOf(name)).toHaveLength(0);
      expect(await evalScript(conn, own, key, [])).toBe(42);
      expect(await libraryOf(name)).toHaveLength(1);
    } finally {
      await conn.send(undefined, ['FUNCTION', 'DELETE', name]).catch(() => undefined);
    }
    // And the store's own scripts through the store.
    const s = await create(store, 'u-load-2');
    expect((await store.getSessionByHandle(s.handle))?.handle).toBe(s.handle);
    expect(await libraryOf(CREATE.fn?.name as string)).toHaveLength(1);
  });

  it('runs two versions of a script side by side on one server', async () => {
    const key = `${prefix}{side}:x`;
    const v1 = luaFunctionScript('side', "local v = 'one'", 'return v .. ARGV[1]');
    const v2 = luaFunctionScript('side', "local v = 'two'", 'return v .. ARGV[1]');
    try {
      expect(await evalScript(conn, v1, key, ['!'])).toBe('one!');
      expect(await evalScript(conn, v2, key, ['!'])).toBe('two!');
      expect(await evalScript(conn, v1, key, ['?'])).toBe('one?');
    } finally {
      for (const s of [v1, v2]) await conn.send(undefined, ['FUNCTION', 'DELETE', s.fn?.name as string]).catch(() => undefined);
    }
  });

  it('passes a head before the arguments (ARGV = head, then args), on its first call (the library loaded) and on the FCALL after', async () => {
    const key = `${prefix}{head}:x`;
    const s = luaFunctionScript(`head_${randomBytes(4).toString('hex')}`, '', "return table.concat(ARGV, ',')");
    try {
      expect(await evalScript(conn, s, key, ['c', 'd'], ['a', 'b'])).toBe('a,b,c,d');
      expect(await evalScript(conn, s, key, ['c', 'd'], ['a', 'b'])).toBe('a,b,c,d');
      expect(await evalScript(conn, s, key, [], ['a'])).toBe('a');
      expect(await evalScript(conn, s, key, ['c'])).toBe('c');
    } finally {
      await conn.send(undefined, ['FUNCTION', 'DELETE', s.fn?.name as string]).catch(() => undefined);
    }
  });

  it('keeps no state from one call to the next: each call starts as a fresh script would', async () => {
    const key = `${prefix}{fresh}:x`;
    const s = luaFunctionScript('fresh', 'local n', 'if not n then n = 0 end\nn = n + 1\nreturn n');
    const reset = luaFunctionScript('fresh2', 'local n\nlocal function reset() n = 0 end', 'reset()\nn = n + 1\nreturn n');
    try {
      // A plain top-level local does live on in a Function (why slot-lua.ts resets its state) …
      expect([await evalScript(conn, s, key, []), await evalScript(conn, s, key, [])]).toEqual([1, 2]);
      // … and a reset at the start of each call gives every call the same start.
      expect([await evalScript(conn, reset, key, []), await evalScript(conn, reset, key, [])]).toEqual([1, 1]);
    } finally {
      for (const x of [s, reset]) await conn.send(undefined, ['FUNCTION', 'DELETE', x.fn?.name as string]).catch(() => undefined);
    }
  });

  it("lets go of a per-call table that held more than 64 keys (slot-lua.ts emptied): Lua never shrinks one, and later calls would walk its empty slots", async () => {
    const base = `${prefix}{emptied}:`;
    // Each call: how many keys `packed` holds at its start and which table it is, then fills it with ARGV[5] keys.
    const s = script(
      `emptied_${randomBytes(4).toString('hex')}`,
      `
local left = 0
for _ in pairs(packed) do left = left + 1 end
local id = tostring(packed)
for i = 1, tonumber(ARGV[5]) do packed['k' .. i] = i end
return { left, id }
`,
    );
    const call = async (fill: number) => (await evalScript(conn, s, `${base}s`, [String(fill)], [base, String(T0), '', ''])) as [number, string];
    try {
      const [, first] = await call(64);
      // Emptied and kept: 64 keys.
      const [left, kept] = await call(65);
      expect([left, kept]).toEqual([0, first]);
      // 65 keys: a new table, which is then kept in its turn.
      const [left2, fresh] = await call(0);
      expect(left2).toBe(0);
      expect(fresh).not.toBe(first);
      expect((await call(0))[1]).toBe(fresh);
    } finally {
      await conn.send(undefined, ['FUNCTION', 'DELETE', s.fn?.name as string]).catch(() => undefined);
    }
  });
});

const binariesMissing = redisBinariesMissing();
const serverSkip = requireOrSkip(binariesMissing);

describe.skipIf(serverSkip)('slot scripts as Redis Functions (a throw-away redis-server)', () => {
  let server: Awaited<ReturnType<typeof startRedisStandalone>>;
  let admin: RedisConnection;
  const prefix = testPrefix('fn-own');

  beforeAll(async () => {
    server = await startRedisStandalone();
    admin = await openConnection(parseRedisUrl(server.url), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
  });
  afterAll(async () => {
    await admin?.close();
    await server?.stop();
  });

  it('sends a slot script as FCALL, and loads its library once for calls that wait on it together', async () => {
    const store = await openRedisStore(server.url, { prefix });
    try {
      await admin.send(undefined, ['FUNCTION', 'FLUSH']);
      const before = await commandCounts(admin);
      await Promise.all(Array.from({ length: 20 }, (_, i) => create(store, `u-many-${i}`)));
      const after = await commandCounts(admin);
      expect(delta(before, after, 'function|load')).toBe(1);
      // 20 refused with "Function not found" before the load, then 20 that ran.
      expect(delta(before, after, 'fcall')).toBe(40);
    } finally {
      await store.close();
    }
  });

  it("does not call a library of Tessera's name with other code (planted by a user allowed FUNCTION LOAD): EVALSHA instead", async () => {
    const name = CREATE.fn?.name as string;
    await admin.send(undefined, ['FUNCTION', 'FLUSH']);
    await admin.send(undefined, ['FUNCTION', 'LOAD', `#!lua name=${name}\nredis.register_function('${name}', function(KEYS, ARGV) return redis.error_reply('planted') end)\n`]);
    const store = await openRedisStore(server.url, { prefix });
    try {
      const before = await commandCounts(admin);
      const made = await Promise.all(Array.from({ length: 3 }, (_, i) => create(store, `u-planted-${i}`)));
      expect((await store.getSessionByHandle(made[0]?.handle as string))?.handle).toBe(made[0]?.handle);
      const after = await commandCounts(admin);
      // One check for the three creates and one for the get; the planted create never called
      // (its three go by EVALSHA, beside the store's other scripts); get is Tessera's own:
      // "not found", loaded, called.
      expect(delta(before, after, 'function|list')).toBe(2);
      expect(delta(before, after, 'fcall')).toBe(2);
      expect(delta(before, after, 'evalsha')).toBeGreaterThanOrEqual(3);
    } finally {
      await store.close();
      await admin.send(undefined, ['FUNCTION', 'FLUSH']);
    }
  });

  it('works through EVALSHA for a user that may not use Functions, from then on without asking again', async () => {
    const user = `tessera-nofn-${randomBytes(4).toString('hex')}`;
    const password = randomBytes(12).toString('hex');
    await admin.send(undefined, ['ACL', 'SETUSER', user, 'on', `>${password}`, '~*', '&*', '+@all', '-fcall', '-fcall_ro', '-function']);
    const url = new URL(server.url);
    url.username = user;
    url.password = password;
    const store = await openRedisStore(url.toString(), { prefix });
    try {
      await admin.send(undefined, ['FUNCTION', 'FLUSH']);
      const before = await commandCounts(admin);
      const s = await create(store, 'u-acl-1');
      const t = { tokenHash: hashSecret(newSecret()), sessionHandle: s.handle, tenantId: s.tenantId, userId: s.userId as string, createdAt: T0, rotatedAt: null, successorHash: null };
      await store.addRefreshToken(t);
      expect((await store.rotateRefreshToken(t.tokenHash, hashSecret(newSecret()), T0 + 1000, 10_000, T0 + HOUR)).outcome).toBe('rotated');
      const after = await commandCounts(admin);
      // The three slot scripts through EVALSHA (and EVAL, the first time each); FCALL refused once (NOPERM)
      // and never sent again on this connection.
      expect(delta(before, after, 'evalsha')).toBeGreaterThanOrEqual(3);
      expect(delta(before, after, 'fcall')).toBe(1);
      expect(await admin.send(undefined, ['FUNCTION', 'LIST'])).toEqual([]);
    } finally {
      await store.close();
      await admin.send(undefined, ['ACL', 'DELUSER', user]);
    }
  });

  it('answers reads through EVALSHA when the server is over its maxmemory, as a script did, and refuses writes with StoreUnavailable', async () => {
    const store = await openRedisStore(server.url, { prefix });
    const s = await create(store, 'u-oom');
    await admin.send(undefined, ['CONFIG', 'SET', 'maxmemory', '1']);
    try {
      const before = await commandCounts(admin);
      expect((await store.getSessionByHandle(s.handle))?.handle).toBe(s.handle);
      const after = await commandCounts(admin);
      // The FCALL refused (OOM), then the script.
      expect(delta(before, after, 'fcall')).toBe(1);
      expect(delta(before, after, 'evalsha')).toBe(1);
      // A write is a 503 (store_unavailable, Retry-After), not an internal error.
      await expect(create(store, 'u-oom-write')).rejects.toBeInstanceOf(StoreUnavailable);
    } finally {
      await admin.send(undefined, ['CONFIG', 'SET', 'maxmemory', '0']);
      await store.close();
    }
  });

  // A Function without flags counts as a write: Redis refuses it outright where it refuses writes,
  // and a script only at its first write. Reads keep working (EVALSHA), writes are 503s.
  it('answers reads through EVALSHA after a failed RDB save (MISCONF), and refuses writes with StoreUnavailable', async () => {
    // A server of this test alone: its directory is deleted under it, so that its saves fail.
    const own = await startRedisStandalone();
    const ownAdmin = await openConnection(parseRedisUrl(own.url), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
    const store = await openRedisStore(own.url, { prefix });
    try {
      const s = await create(store, 'u-misconf');
      const dir = String(((await ownAdmin.send(undefined, ['CONFIG', 'GET', 'dir'])) as string[])[1]);
      await ownAdmin.send(undefined, ['CONFIG', 'SET', 'save', '3600 1']);
      rmSync(dir, { recursive: true, force: true });
      await ownAdmin.send(undefined, ['BGSAVE']);
      for (let i = 0; i < 200 && !/rdb_last_bgsave_status:err/.test(String(await ownAdmin.send(undefined, ['INFO', 'persistence']))); i++) await sleep(25);
      await expect(ownAdmin.send(undefined, ['SET', `${prefix}probe`, '1'])).rejects.toThrow(/^MISCONF/);
      const before = await commandCounts(ownAdmin);
      expect((await store.getSessionByHandle(s.handle))?.handle).toBe(s.handle);
      const after = await commandCounts(ownAdmin);
      // The FCALL refused (MISCONF), then the script, which only reads.
      expect(delta(before, after, 'fcall')).toBe(1);
      expect(delta(before, after, 'evalsha')).toBe(1);
      await expect(store.createSession(session('t-fn', 'u-misconf-2'), T0)).rejects.toMatchObject({ code: 'store_unavailable', status: 503 });
    } finally {
      await ownAdmin.send(undefined, ['CONFIG', 'SET', 'save', '']).catch(() => undefined);
      await store.close();
      await ownAdmin.close();
      await own.stop();
    }
  });

  it('answers reads through EVALSHA without the replicas min-replicas-to-write asks for (NOREPLICAS), and refuses writes with StoreUnavailable', async () => {
    const store = await openRedisStore(server.url, { prefix });
    const s = await create(store, 'u-norepl');
    await admin.send(undefined, ['CONFIG', 'SET', 'min-replicas-to-write', '1']);
    try {
      const before = await commandCounts(admin);
      expect((await store.getSessionByHandle(s.handle))?.handle).toBe(s.handle);
      const after = await commandCounts(admin);
      expect(delta(before, after, 'fcall')).toBe(1);
      expect(delta(before, after, 'evalsha')).toBe(1);
      await expect(store.createSession(session('t-fn', 'u-norepl-2'), T0)).rejects.toMatchObject({ code: 'store_unavailable', status: 503 });
    } finally {
      await admin.send(undefined, ['CONFIG', 'SET', 'min-replicas-to-write', '0']);
      await store.close();
    }
  });
});

describe('library loads per node (a Cluster stand-in)', () => {
  it("does not share one master's load with a call that found the library missing on another", async () => {
    // Two masters, A (keys a…) and B (keys b…); a load takes a while, so both calls find the
    // library missing before either load is done.
    const own = luaFunctionScript(`nodes_${randomBytes(4).toString('hex')}`, 'local k = 1', 'return k');
    const name = own.fn?.name as string;
    const node = (key: string) => (key.startsWith('a') ? 'A' : 'B');
    const loaded = new Set<string>();
    const masters = { A: {}, B: {} };
    const sent: string[] = [];
    const conn = {
      send: async (key: string | undefined, args: Array<string | Buffer>) => {
        if (args[0] === 'FUNCTION' && args[1] === 'LIST') return [];
        const at = node(key as string);
        sent.push(`${String(args[0])}@${at}`);
        await sleep(1);
        if (args[0] === 'FCALL') {
          if (!loaded.has(at)) throw new ErrorReply(`ERR Function not found`);
          return `fcall@${at}`;
        }
        if (args[0] === 'FUNCTION') {
          await sleep(20);
          loaded.add(at);
          return name;
        }
        return `${String(args[0]).toLowerCase()}@${at}`;
      },
      nodeOf: (key: string) => Promise.resolve(masters[node(key)]),
    };
    expect(await Promise.all([evalScript(conn, own, 'a1', []), evalScript(conn, own, 'b1', []), evalScript(conn, own, 'a2', [])])).toEqual(['fcall@A', 'fcall@B', 'fcall@A']);
    expect(sent.filter((c) => c.startsWith('FUNCTION')).sort()).toEqual(['FUNCTION@A', 'FUNCTION@B']);
  });

  it('checks a library on the node a call goes to: a node that does not answer fails only its own calls', async () => {
    const own = luaFunctionScript(`check_${randomBytes(4).toString('hex')}`, 'local k = 1', 'return k');
    const node = (key: string) => (key.startsWith('a') ? 'A' : 'B');
    const masters = { A: {}, B: {} };
    let bDown = true;
    const lists: string[] = [];
    const conn = {
      send: async (key: string | undefined, args: Array<string | Buffer>) => {
        const at = node(key as string);
        await sleep(1);
        if (args[0] === 'FUNCTION' && args[1] === 'LIST') {
          lists.push(at);
          if (at === 'B' && bDown) throw new StoreUnavailable('The session store did not answer FUNCTION within 1000 ms.');
          return [];
        }
        if (at === 'B' && bDown) throw new StoreUnavailable('The session store did not answer FCALL within 1000 ms.');
        return `${String(args[0]).toLowerCase()}@${at}`;
      },
      nodeOf: (key: string) => Promise.resolve(masters[node(key)]),
    };
    const results = await Promise.allSettled([evalScript(conn, own, 'a1', []), evalScript(conn, own, 'b1', []), evalScript(conn, own, 'a2', [])]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(results.filter((r) => r.status === 'fulfilled').map((r) => r.value)).toEqual(['fcall@A', 'fcall@A']);
    // A checked once; B asked, failed, not remembered: asked again once it answers.
    bDown = false;
    expect(await evalScript(conn, own, 'b2', [])).toBe('fcall@B');
    expect(await evalScript(conn, own, 'a3', [])).toBe('fcall@A');
    expect(lists.sort()).toEqual(['A', 'B', 'B']);
  });
});

describe('library checks through Sentinel (a stand-in)', () => {
  it('checks a library again on the master a failover promotes, not taking the old master\'s check for it', async () => {
    const own = luaFunctionScript(`failover_${randomBytes(4).toString('hex')}`, 'local k = 1', 'return k');
    let master = { name: 'M1' };
    const lists: string[] = [];
    const conn = {
      send: async (_key: string | undefined, args: Array<string | Buffer>) => {
        await sleep(1);
        if (args[0] === 'FUNCTION' && args[1] === 'LIST') lists.push(master.name);
        return args[0] === 'FCALL' ? `fcall@${master.name}` : [];
      },
      currentNode: () => master,
    };
    expect(await evalScript(conn, own, 'k1', [])).toBe('fcall@M1');
    expect(await evalScript(conn, own, 'k2', [])).toBe('fcall@M1');
    master = { name: 'M2' };
    expect(await evalScript(conn, own, 'k3', [])).toBe('fcall@M2');
    expect(await evalScript(conn, own, 'k4', [])).toBe('fcall@M2');
    expect(lists).toEqual(['M1', 'M2']);
  });
});

describe.skipIf(serverSkip)('slot scripts as Redis Functions (a throw-away Sentinel set)', () => {
  let set: Awaited<ReturnType<typeof startRedisSentinelSet>> | undefined;

  beforeAll(async () => {
    // No automatic failover (a slow machine must not see one): the test asks for it.
    set = await startRedisSentinelSet({ downAfterMs: 30_000 });
  }, 90_000);
  afterAll(async () => {
    await set?.stop();
  });

  it("checks the library on the master a failover promotes: one planted there is not called", async () => {
    const s = set as NonNullable<typeof set>;
    const own = luaFunctionScript(`sentinel_${randomBytes(4).toString('hex')}`, 'local k = 1', 'return k');
    const name = own.fn?.name as string;
    const conn = await openConnection(parseRedisUrl(s.url), { connectTimeoutMs: 5000, commandTimeoutMs: 5000 });
    const direct = (port: number) => openConnection(parseRedisUrl(`redis://127.0.0.1:${port}`), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
    const portNow = async () => Number(((await conn.send(undefined, ['CONFIG', 'GET', 'port'])) as string[])[1]);
    const sentinel = await direct(s.sentinelPorts[0] as number);
    try {
      // Checked (not there yet), loaded and called on the first master; the replica gets the library.
      expect(await evalScript(conn, own, 'k', [])).toBe(1);
      expect(await portNow()).toBe(s.masterPort);
      // A failover: the replica becomes the master.
      for (let t0 = Date.now(); ; await sleep(200)) {
        try {
          await sentinel.send(undefined, ['SENTINEL', 'FAILOVER', 'mymaster']);
          break;
        } catch (err) {
          if (Date.now() - t0 > 20_000) throw err;
        }
      }
      for (let t0 = Date.now(); (await portNow().catch(() => 0)) !== s.replicaPort; await sleep(100)) {
        if (Date.now() - t0 > 30_000) throw new Error('the connection did not follow the failover');
      }
      // On the new master, other code under the library's name (a user allowed FUNCTION LOAD).
      const promoted = await direct(s.replicaPort);
      try {
        await promoted.send(undefined, ['FUNCTION', 'LOAD', 'REPLACE', `#!lua name=${name}\nredis.register_function('${name}', function(KEYS, ARGV) return redis.error_reply('planted') end)\n`]);
      } finally {
        await promoted.close();
      }
      // Checked there too: EVALSHA, never the planted function.
      expect(await evalScript(conn, own, 'k', [])).toBe(1);
      expect(await evalScript(conn, own, 'k', [])).toBe(1);
    } finally {
      await sentinel.close();
      await conn.close();
    }
  }, 90_000);
});

describe.skipIf(serverSkip)('slot scripts as Redis Functions (a throw-away 3-master Cluster)', () => {
  let cluster: Awaited<ReturnType<typeof startRedisCluster>>;
  let nodes: RedisConnection[] = [];
  const prefix = testPrefix('fn-cluster');

  beforeAll(async () => {
    cluster = await startRedisCluster();
    nodes = await Promise.all(cluster.ports.map((p) => openConnection(parseRedisUrl(`redis://127.0.0.1:${p}`), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 })));
  });
  afterAll(async () => {
    for (const n of nodes) await n.close();
    await cluster?.stop();
  });

  it('loads a library on every master its calls reach, not once for the whole Cluster', async () => {
    const store = await openRedisStore(cluster.url, { prefix });
    try {
      for (const n of nodes) await n.send(undefined, ['FUNCTION', 'FLUSH']);
      const before = await Promise.all(nodes.map(commandCounts));
      // Users spread over the masters, their creates at once: each master answers "Function not found".
      await Promise.all(Array.from({ length: 30 }, (_, i) => create(store, `u-spread-${i}`)));
      const after = await Promise.all(nodes.map(commandCounts));
      const reached = nodes.map((_, i) => delta(before[i] as Map<string, number>, after[i] as Map<string, number>, 'fcall') > 0);
      expect(reached.filter(Boolean).length).toBeGreaterThan(1);
      for (const [i, n] of nodes.entries()) {
        // Every master reached loaded the library itself (a load on another master, shared, would
        // leave this one without it and its calls on EVALSHA) …
        expect(delta(before[i] as Map<string, number>, after[i] as Map<string, number>, 'function|load') > 0).toBe(reached[i]);
        // … and has it now.
        expect(await n.send(undefined, ['FUNCTION', 'LIST', 'LIBRARYNAME', CREATE.fn?.name as string])).toHaveLength(reached[i] ? 1 : 0);
      }
    } finally {
      await store.close();
    }
  });
});
