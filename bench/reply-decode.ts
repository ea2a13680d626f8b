// node bench/reply-decode.ts [<redis url>] — Node's CPU to decode one rotate reply: the
// name/value form (sessionFromReply + refreshTokenFromReply of pairsOf and tokenPairs, the reply
// read as text) against the packed form (packedFromReply of slot-lua.ts packedOf, the reply read
// as bytes), both records built by one script call for a session shaped as a login's (device,
// data, a rotated and a current refresh token). "RESP decode + codec": the whole reply's bytes
// (status, record(s), previous idle expiry, user JSON) through node-redis' own decoder, then the
// codec; "codec only": the codec alone. Variants alternate within each of 15 rounds of 20,000
// calls; process.cpuUsage per call, the median of rounds 4–15.

import { randomBytes } from 'node:crypto';
import { hashSecret, newHandle, newSecret, tagOfHandle } from '../src/domain/secrets.ts';
import type { Session } from '../src/domain/session.ts';
import { packedFromReply, refreshTokenFromReply, sessionFromReply } from '../src/store/redis/codec.ts';
import { openConnection } from '../src/store/redis/connection.ts';
import { RedisKeys } from '../src/store/redis/keys.ts';
import { evalScript } from '../src/store/redis/lua.ts';
import { openRedisStore, parseRedisUrl } from '../src/store/redis/redis-store.ts';
import { script } from '../src/store/redis/slot-lua.ts';

const url = process.argv[2] ?? 'redis://127.0.0.1:6379';
const prefix = `bench-rdec-${randomBytes(4).toString('hex')}:`;
const keys = new RedisKeys(prefix);
const BOTH = script('bench-reply-both', `
local r, rec = findSecret(h2b(ARGV[5]))
return { { pairsOf(r, rec), tokenPairs(r, rec, rec[TOK][#rec[TOK]]) }, { packedOf(r, rec, #rec[TOK]) } }
`, true);
const store = await openRedisStore(url, { prefix });
const conn = await openConnection(parseRedisUrl(url), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
const now = Date.now();
const handle = newHandle('bench', 'user-1');
const s: Session = {
  handle, secretHash: hashSecret(newSecret()), tenantId: 'bench', userId: 'user-1', kind: 'app', parentHandle: null,
  createdAt: now, lastSeenAt: now, idleExpiresAt: now + 3_600_000, absoluteExpiresAt: now + 86_400_000, authMethod: 'password',
  clientId: null, device: { userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36', ip: '203.0.113.7' },
  status: 'active', endedAt: null, revokeReason: null, successorHandle: null, data: { mode: 'token', appHandle: null, amr: ['pwd'] },
};
await store.createSession(s, now);
const t1 = hashSecret(newSecret());
await store.addRefreshToken({ tokenHash: t1, sessionHandle: handle, tenantId: 'bench', userId: 'user-1', createdAt: now, rotatedAt: null, successorHash: null });
await store.rotateRefreshToken(t1, hashSecret(newSecret()), now + 1, 60_000, now + 3_600_000);
const tag = tagOfHandle(handle) as string;
const reply = (await evalScript(conn, BOTH, keys.slotSessions(tag), [keys.slotBase(tag), '0', '', '', s.secretHash])) as [[unknown, unknown], [string]];
// The pairs as the old (text) replies brought them.
const pairs = (reply[0][0] as Buffer[]).map(String);
const tok = (reply[0][1] as Buffer[]).map(String);
const packed = reply[1][0] as unknown as Buffer;
console.log(`pairs: ${(pairs as unknown[]).length / 2} + ${(tok as unknown[]).length / 2} fields; packed: ${packed.length} bytes`);

// The RESP bytes of each reply, as Redis sends them, through node-redis' decoder.
const { Decoder } = (await import('@redis/client/dist/lib/RESP/decoder.js')) as unknown as { Decoder: new (o: object) => { write(b: Buffer): void; getTypeMapping?: unknown } };
function resp(v: unknown): string {
  if (Array.isArray(v)) return `*${v.length}\r\n${v.map(resp).join('')}`;
  const b = Buffer.isBuffer(v) ? v : Buffer.from(String(v), 'utf8');
  return `$${b.length}\r\n${b.toString('latin1')}\r\n`;
}
// The rotate reply: status, record(s), previous idle expiry, the user's JSON.
const user = JSON.stringify({ id: 'user-1', tenantId: 'bench', email: 'rot1@example.com', status: 'active', createdAt: now });
const respPairs = Buffer.from(resp(['rotated', pairs, tok, '1800000000000', user]), 'latin1');
const respPacked = Buffer.from(resp(['rotated', packed, '1800000000000', user]), 'latin1');
let got: unknown;
const text = new Decoder({ onReply: (r: unknown) => { got = r; }, onErrorReply: () => undefined, onPush: () => undefined, getTypeMapping: () => ({}) });
const binary = new Decoder({ onReply: (r: unknown) => { got = r; }, onErrorReply: () => undefined, onPush: () => undefined, getTypeMapping: () => ({ [36]: Buffer }) });

const N = 20_000;
function time(f: () => void): number {
  const a = process.cpuUsage();
  for (let i = 0; i < N; i++) f();
  const b = process.cpuUsage(a);
  return ((b.user + b.system) / N);
}
const variants: Record<string, () => void> = {
  'pairs: RESP decode + codec': () => {
    text.write(respPairs);
    const r = got as unknown[];
    sessionFromReply(r[1]);
    refreshTokenFromReply(r[2]);
    JSON.parse(r[4] as string);
  },
  'packed: RESP decode + codec': () => {
    binary.write(respPacked);
    const r = got as unknown[];
    packedFromReply(r[1]);
    String(r[0]);
    JSON.parse((r[3] as Buffer).toString());
  },
  'pairs: codec only': () => {
    sessionFromReply(pairs);
    refreshTokenFromReply(tok);
  },
  'packed: codec only': () => {
    packedFromReply(packed);
  },
};
const results: Record<string, number[]> = {};
for (let round = 0; round < 15; round++) {
  for (const [name, f] of Object.entries(variants)) (results[name] ??= []).push(time(f));
}
for (const [name, xs] of Object.entries(results)) {
  const sorted = [...xs].slice(3).sort((a, b) => a - b);
  console.log(`${name}: median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)} µs (rounds 4-15: ${sorted[0]!.toFixed(2)}–${sorted[sorted.length - 1]!.toFixed(2)})`);
}
for (const k of await conn.send(undefined, ['KEYS', `${prefix}*`]) as string[]) await conn.send(k, ['DEL', k]);
await store.close();
await conn.close();
