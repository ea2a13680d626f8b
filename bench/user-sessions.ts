// Redis time per store operation for ONE user with many sessions (docs/performance.md, "One user
// with many sessions"): fills one user with `count` token-mode logins (each an app session with
// its device, data and first refresh token) under an evict_oldest limit of `live` (0 = none), then
// runs `ops` of each operation one after another and reads Redis's own account of the script time
// (INFO commandstats, usec_per_call of EVALSHA — Redis CPU, not the client's wait). Use a Redis of
// its own (nothing else must run scripts there): the stats are reset before each operation.
// `code`: the checkout whose store is measured (an A/B against an older one: its root).
// argv[2]: JSON { url, code?, count, live, ops?, cap?, rotations? } — `cap` the store's per-user cap
// (maxLiveSessionsPerUser; ignored by a checkout without one); `rotations` how often the newest
// session's refresh token is rotated before the measurement (a long-lived session: one rotation
// every 15 minutes for 30 days is about 2,900).
// Prints one JSON line: bytes of the user's keys, and µs per call for each operation.

import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const o = JSON.parse(process.argv[2] ?? '{}') as { url: string; code?: string; count: number; live: number; ops?: number; cap?: number; rotations?: number };
const root = resolve(o.code ?? join(import.meta.dirname, '..'));
const load = async <T>(rel: string): Promise<T> => (await import(pathToFileURL(join(root, rel)).href)) as T;

type AnyStore = {
  createSession(s: unknown, now: number, limit?: unknown): Promise<{ ok: boolean }>;
  addRefreshToken(t: unknown): Promise<void>;
  touchSession(h: string, now: number, idle: number | null): Promise<unknown>;
  getSessionBySecretHash(h: string): Promise<unknown>;
  getSessionByHandle(h: string): Promise<unknown>;
  rotateRefreshToken(p: string, s: string, now: number, grace: number, idle: number | null): Promise<{ outcome: string }>;
  revokeSession(h: string, reason: string, now: number): Promise<unknown>;
  close(): Promise<void>;
};
const { openRedisStore } = await load<{ openRedisStore: (url: string, opts: Record<string, unknown>) => Promise<AnyStore> }>('src/store/redis/redis-store.ts');
const { issueSession } = await load<{ issueSession: (i: Record<string, unknown>, now: number) => { session: { handle: string; secretHash: string; idleExpiresAt: number | null } } }>('src/domain/session.ts');
const { hashSecret, newSecret, userTag } = await load<{ hashSecret: (s: string) => string; newSecret: () => string; userTag: (t: string, u: string) => string }>('src/domain/secrets.ts');
const { openConnection } = await load<{ openConnection: (t: unknown, o: unknown) => Promise<{ send(k: string, a: string[]): Promise<unknown>; close(): Promise<void> }> }>('src/store/redis/connection.ts');
const { parseRedisUrl } = await load<{ parseRedisUrl: (u: string) => unknown }>('src/store/redis/url.ts');

const prefix = `bench-user:${newSecret().slice(0, 8)}:`;
const store = await openRedisStore(o.url, { prefix, commandTimeoutMs: 30_000, ...(o.cap !== undefined ? { maxLiveSessionsPerUser: o.cap } : {}) });
const conn = await openConnection(parseRedisUrl(o.url), { connectTimeoutMs: 2000, commandTimeoutMs: 30_000 });
const tenantId = 'bench';
const userId = 'many';
const limit = o.live > 0 ? { kind: 'app', max: o.live, policy: 'evict_oldest' } : undefined;
const t0 = Date.now();
let now = t0;
const made: Array<{ handle: string; secretHash: string; token: string }> = [];

async function login(): Promise<void> {
  now += 1;
  const { session } = issueSession(
    { tenantId, userId, kind: 'app', lifetime: { idle: 3600, absolute: 86_400 }, authMethod: 'password', device: { userAgent: 'Mozilla/5.0 (X11; Linux x86_64) bench', ip: '127.0.0.1' }, data: { mode: 'token' } },
    now,
  );
  const r = await store.createSession(session, now, limit);
  if (!r.ok) throw new Error('refused by the limit');
  const token = hashSecret(newSecret());
  await store.addRefreshToken({ tokenHash: token, sessionHandle: session.handle, tenantId, userId, createdAt: now, rotatedAt: null, successorHash: null });
  made.push({ handle: session.handle, secretHash: session.secretHash, token });
}

for (let i = 0; i < o.count; i++) await login();

async function scriptMicros(op: () => Promise<unknown>, n: number): Promise<number> {
  await conn.send('x', ['CONFIG', 'RESETSTAT']);
  for (let i = 0; i < n; i++) await op();
  const info = String(await conn.send('x', ['INFO', 'commandstats']));
  const line = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(info);
  if (!line) return NaN;
  return Number(line[2]) / Number(line[1]);
}

const ops = o.ops ?? 200;
const newest = (): { handle: string; secretHash: string; token: string } => made[made.length - 1] as { handle: string; secretHash: string; token: string };
let chain = newest().token;
async function rotate(): Promise<void> {
  const next = hashSecret(newSecret());
  const r = await store.rotateRefreshToken(chain, next, now, 0, now + 3_600_000);
  if (r.outcome !== 'rotated') throw new Error(`rotate: ${r.outcome}`);
  chain = next;
}
for (let i = 0; i < (o.rotations ?? 0); i++) await rotate();
const tag = userTag(tenantId, userId);
const liveKey = `${prefix}{${tag}}:s`;
const endedKey = `${prefix}{${tag}}:e`;
const bytes = async (k: string): Promise<number> => Number((await conn.send(k, ['MEMORY', 'USAGE', k, 'SAMPLES', '0'])) ?? 0);
const sizes = { liveKeyBytes: await bytes(liveKey), endedKeyBytes: await bytes(endedKey) };
const result: Record<string, number> = {};
result.touch = await scriptMicros(() => store.touchSession(newest().handle, now, now + 3_600_000), ops);
result.bySecret = await scriptMicros(() => store.getSessionBySecretHash(newest().secretHash), ops);
result.byHandle = await scriptMicros(() => store.getSessionByHandle(newest().handle), ops);
result.rotate = await scriptMicros(rotate, Math.min(ops, 50)); // few, so that a checkout keeping spent tokens in the record barely grows
// A login: the create script (with the limit's eviction) and the first token's script.
result.login = await scriptMicros(login, Math.min(ops, 50));
process.stdout.write(JSON.stringify({ code: root, count: o.count, live: o.live, rotations: o.rotations ?? 0, ...sizes, usPerScript: Object.fromEntries(Object.entries(result).map(([k, v]) => [k, Math.round(v)])) }) + '\n');
await store.close();
await conn.close();
