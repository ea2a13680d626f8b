// The upgrade from Redis layout 1 (a hash per session, a hash per refresh token, in-slot and
// global index keys; keys.ts lists them) to layout 2 (one value per slot). Run by openRedisStore
// before the store answers anything, so no live session is lost:
//
// - Layout 1 always has `P gc` while any of its records can still exist (every session put an
//   entry there, removed only after the record's TTL), and `P exp` while a session is active.
//   Neither there: nothing to do (one EXISTS per start).
// - Otherwise every master is scanned once for the layout-1 keys of this prefix; each session
//   is read, written into its slot's value by MIGRATE (skipped when the slot already has it, so
//   concurrent starts, and sessions changed since by the new layout, are safe), with its routes
//   and due entry written first, as for a new session; then its refresh tokens (ADD_REFRESH never
//   overwrites a token). The old keys are deleted after their record was written; `P gc` and
//   `P exp` last.
// - Old processes must be stopped first: a session they write after a new process started is
//   migrated at the next start of a new process (while `P gc` exists), not before.
//
// The layout mark `P meta:layout` (checkLayout, recordLayout): 3 is layout 2 with its live/ended
// split (a user's ended records and spent refresh tokens in P{T}:e, keys.ts). Layout 2 → 3
// rewrites nothing (a value written before the split is shed by the first script that reads it,
// slot-lua.ts) but is recorded, so that code knowing a lower layout can refuse the store: a
// start against a mark higher than LAYOUT fails with RedisLayoutTooNew before anything is read
// or written. The releases before the mark (layouts 1 and 2) never read it: they do not refuse,
// so every process of such a version must be stopped before one of this version starts, and
// none may be started again on the same prefix (no downgrade).

import type { Session } from '../../domain/session.ts';
import { expiresAt } from '../../domain/session.ts';
import { refreshTokenFromReply, refreshTokenToFields, sessionFromReply, sessionToFields } from './codec.ts';
import type { RedisConnection } from './connection.ts';
import { RedisContext } from './context.ts';
import type { RedisKeys } from './keys.ts';
import { ADD_REFRESH } from './refresh-scripts.ts';
import { SessionIndex } from './session-index.ts';
import { script } from './slot-lua.ts';

/**
 * migrate one layout-1 session. Race closed: two starting processes migrating the same session,
 * or a migration arriving after the new layout already changed it — a record that is there is
 * never overwritten. Links the session to its parent and its children already migrated.
 * ARGV[5..] session fields. Reply: 1 written | 0 already there
 */
const MIGRATE = script(
  'migrate',
  `
local f = readFields(5)
local r = rOf(f['handle'])
if not r or recOf(r) then return 0 end
local all = sessions()
local rec = recordOf(f)
writeSession(r, rec)
for c, crec in pairs(all) do
  if xget(crec, PAR) == r then
    local kids = xget(rec, KIDS) or {}
    kids[#kids + 1] = c
    xset(rec, KIDS, kids)
  end
end
return finish(1)
`,
);

const BATCH = 1000;

/** The Redis layout this code reads and writes (see the top). */
export const LAYOUT = 3;

/** The store was marked by a newer version with a layout this code does not know. */
export class RedisLayoutTooNew extends Error {
  readonly found: number;
  constructor(found: number, prefix: string) {
    super(
      `The Redis store under prefix "${prefix}" has layout ${found}, written by a newer Tessera version; ` +
        `this version knows layouts up to ${LAYOUT} and does not start against it (no downgrade: run the newer version).`,
    );
    this.name = 'RedisLayoutTooNew';
    this.found = found;
  }
}

function layoutKey(keys: RedisKeys): string {
  return keys.meta('layout');
}

/** Refuses (RedisLayoutTooNew) a store marked with a layout higher than LAYOUT. One GET. */
export async function checkLayout(conn: RedisConnection, keys: RedisKeys): Promise<void> {
  const key = layoutKey(keys);
  const found = Number((await conn.send(key, ['GET', key])) ?? 0);
  if (found > LAYOUT) throw new RedisLayoutTooNew(found, keys.prefix);
}

/**
 * Records LAYOUT as the store's layout once the upgrade to it is done, never lowering a mark: a
 * newer process that marked a higher one meanwhile wins, and this start is refused.
 */
const RECORD_LAYOUT = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if cur > tonumber(ARGV[1]) then return cur end
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return cur`;

export async function recordLayout(conn: RedisConnection, keys: RedisKeys): Promise<void> {
  const key = layoutKey(keys);
  const found = Number(await conn.send(key, ['EVAL', RECORD_LAYOUT, '1', key, String(LAYOUT)]));
  if (found > LAYOUT) throw new RedisLayoutTooNew(found, keys.prefix);
}

export interface MigrationReport {
  sessions: number;
  tokens: number;
}

export async function migrateLayout1(conn: RedisConnection, keys: RedisKeys, retentionMs: number, now = Date.now()): Promise<MigrationReport> {
  const gc = `${keys.prefix}gc`;
  const exp = `${keys.prefix}exp`;
  const [g, e] = await Promise.all([conn.send(gc, ['EXISTS', gc]), conn.send(exp, ['EXISTS', exp])]);
  if (Number(g) === 0 && Number(e) === 0) return { sessions: 0, tokens: 0 };

  const ctx = new RedisContext(conn, keys, retentionMs);
  const index = new SessionIndex(ctx);
  const sessionKeys: string[] = [];
  const tokenKeys: string[] = [];
  const pattern = `${keys.prefix.replace(/[*?[\]\\]/g, '\\$&')}{*}:*`;
  const shape = /^\{([A-Za-z0-9_-]{12})\}:(s|rt):(.+)$/;
  for (const send of await conn.masters()) {
    let cursor = '0';
    do {
      const [next, found] = (await send(['SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000'])) as [string, string[]];
      for (const key of found) {
        const m = shape.exec(key.slice(keys.prefix.length));
        if (m?.[2] === 's') sessionKeys.push(key);
        else if (m?.[2] === 'rt') tokenKeys.push(key);
      }
      cursor = next;
    } while (cursor !== '0');
  }

  const report: MigrationReport = { sessions: 0, tokens: 0 };
  const tags = new Set<string>();
  for (let i = 0; i < sessionKeys.length; i += BATCH) {
    await Promise.all(
      sessionKeys.slice(i, i + BATCH).map(async (key) => {
        const tag = (shape.exec(key.slice(keys.prefix.length)) as RegExpExecArray)[1] as string;
        const s = sessionFromReply(await conn.send(key, ['HGETALL', key]));
        if (s !== null) {
          tags.add(tag);
          if (await migrateSession(ctx, index, tag, s, now)) report.sessions++;
          const old = [`${keys.slotBase(tag)}sh:${s.secretHash}`, `${keys.slotBase(tag)}c:${s.handle}`];
          await conn.send(key, ['DEL', key, ...old]);
          await conn.send(`${keys.prefix}sh:${s.secretHash}`, ['DEL', `${keys.prefix}sh:${s.secretHash}`]);
        }
      }),
    );
  }
  for (let i = 0; i < tokenKeys.length; i += BATCH) {
    await Promise.all(
      tokenKeys.slice(i, i + BATCH).map(async (key) => {
        const tag = (shape.exec(key.slice(keys.prefix.length)) as RegExpExecArray)[1] as string;
        const t = refreshTokenFromReply(await conn.send(key, ['HGETALL', key]));
        if (t !== null) {
          const written = await index.claimRoute(t.tokenHash, tag).catch(() => false);
          const reply = (await ctx.runSlot(ADD_REFRESH, tag, 0, refreshTokenToFields(t))) as unknown[];
          if (reply[0] === 'ok') report.tokens++;
          else if (reply[0] === 'no_session' && written) await index.dropRoutes([t.tokenHash]);
          await conn.send(`${keys.prefix}th:${t.tokenHash}`, ['DEL', `${keys.prefix}th:${t.tokenHash}`]);
        }
        await conn.send(key, ['DEL', key]);
      }),
    );
  }
  await Promise.all([...tags].map((tag) => conn.send(`${keys.slotBase(tag)}us`, ['DEL', `${keys.slotBase(tag)}us`])));
  await conn.send(gc, ['DEL', gc]);
  await conn.send(exp, ['DEL', exp]);
  return report;
}

/** A session's global entries (as for a new one), then its record. */
async function migrateSession(ctx: RedisContext, index: SessionIndex, tag: string, s: Session, now: number): Promise<boolean> {
  await index.claimRoute(s.secretHash, tag).catch(() => false);
  const tenantKey = ctx.keys.tenantSessions(s.tenantId);
  const purgeAt = s.absoluteExpiresAt + ctx.retentionMs;
  await Promise.all([
    ctx.send(tenantKey, ['ZADD', tenantKey, 'NX', String(s.createdAt), s.handle]),
    index.due.add('NX', [{ handle: s.handle, at: s.status === 'active' ? expiresAt(s) : purgeAt }]),
  ]);
  const written = await ctx.runSlot(MIGRATE, tag, now, sessionToFields(s), ctx.keyTtl(s.absoluteExpiresAt, now));
  return Number(written) === 1;
}
