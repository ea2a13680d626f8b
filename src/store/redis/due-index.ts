// The due index of the Redis sessions adapter (keys.ts): when the sweeper must look at a session
// next — its expiry while it is active, then its purge time. One entry per session, in 2,048
// small buckets (from the first two characters of the handle's random part: 64 × 32) so that
// each stays a compact listpack (up to about 200,000 sessions with Redis's default
// zset-max-listpack-entries of 128), and a directory of the buckets by their earliest score. All
// of it lives in the hash slot {due}, so the scripts below keep the directory exact with their
// bucket.

import { num } from './codec.ts';
import type { RedisContext } from './context.ts';
import { evalScript, luaScript } from './lua.ts';

/** The bucket of handle h (Lua, for the scripts below): its random part's first character and half the second's. */
const BUCKET = `
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
local function bucketOf(h)
  local i = (string.find(B64, string.sub(h, 15, 15), 1, true) or 1) - 1
  local j = math.floor(i / 2) + 1
  return string.sub(h, 14, 14) .. string.sub(B64, j, j)
end
`;

/**
 * add. Races closed: none beyond a bucket and its directory entry changing together.
 * KEYS[1] directory, ARGV[1] bucket key base, ARGV[2] ZADD mode (NX = new only, LT = new or
 * only earlier), ARGV[3..] pairs handle, score. Reply: how many entries were added.
 */
const DUE_ADD = luaScript(`-- tessera:due-add
${BUCKET}
local added = 0
for i = 3, #ARGV, 2 do
  local h = ARGV[i]
  local b = bucketOf(h)
  local bk = ARGV[1] .. b
  added = added + redis.call('ZADD', bk, ARGV[2], ARGV[i + 1], h)
  local s = redis.call('ZSCORE', bk, h)
  if s then redis.call('ZADD', KEYS[1], 'LT', s, b) end
end
return added
`);

/**
 * take. Reads at most ARGV[3] handles due at ARGV[2] (bucket by bucket, earliest buckets first),
 * and corrects the directory score of a bucket that has nothing due. Takes nothing out: the
 * sweeper settles each handle after its slot script has looked at it.
 */
const DUE_TAKE = luaScript(`-- tessera:due-take
local out = {}
local max = tonumber(ARGV[3])
for _, b in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, 64)) do
  if #out >= max then break end
  local bk = ARGV[1] .. b
  local due = redis.call('ZRANGEBYSCORE', bk, '-inf', ARGV[2], 'LIMIT', 0, max - #out)
  for _, h in ipairs(due) do out[#out + 1] = h end
  if #due == 0 then
    local first = redis.call('ZRANGE', bk, 0, 0, 'WITHSCORES')
    if #first == 0 then redis.call('ZREM', KEYS[1], b) else redis.call('ZADD', KEYS[1], first[2], b) end
  end
end
return out
`);

/**
 * settle. Race closed: a writer lowering an entry (LT) while the sweeper re-scores its bucket —
 * both are steps on the one slot, and the directory score is recomputed from the bucket here.
 * ARGV[2..] triples: op ('r' remove, 's' re-score if still there), handle, score.
 */
const DUE_SETTLE = luaScript(`-- tessera:due-settle
${BUCKET}
local touched = {}
for i = 2, #ARGV, 3 do
  local h = ARGV[i + 1]
  local b = bucketOf(h)
  local bk = ARGV[1] .. b
  if ARGV[i] == 'r' then redis.call('ZREM', bk, h) else redis.call('ZADD', bk, 'XX', ARGV[i + 2], h) end
  touched[b] = true
end
for b in pairs(touched) do
  local first = redis.call('ZRANGE', ARGV[1] .. b, 0, 0, 'WITHSCORES')
  if #first == 0 then redis.call('ZREM', KEYS[1], b) else redis.call('ZADD', KEYS[1], first[2], b) end
end
return 1
`);

export type DueChange = { op: 'remove'; handle: string } | { op: 'rescore'; handle: string; at: number };

export class DueIndex {
  private readonly ctx: RedisContext;

  constructor(ctx: RedisContext) {
    this.ctx = ctx;
  }

  /** Adds entries (mode NX: new ones only; LT: only lowers an existing score). Returns how many were added. */
  async add(mode: 'NX' | 'LT', entries: ReadonlyArray<{ handle: string; at: number }>): Promise<number> {
    if (entries.length === 0) return 0;
    const dir = this.ctx.keys.dueDirectory();
    const args = [`${dir}:`, mode, ...entries.flatMap((e) => [e.handle, num(e.at)])];
    return Number(await evalScript(this.ctx.conn, DUE_ADD, dir, args));
  }

  async take(now: number, max: number): Promise<string[]> {
    const dir = this.ctx.keys.dueDirectory();
    return (await evalScript(this.ctx.conn, DUE_TAKE, dir, [`${dir}:`, num(now), String(max)])) as string[];
  }

  async settle(changes: readonly DueChange[]): Promise<void> {
    if (changes.length === 0) return;
    const dir = this.ctx.keys.dueDirectory();
    const args = [`${dir}:`, ...changes.flatMap((c) => (c.op === 'remove' ? ['r', c.handle, '0'] : ['s', c.handle, num(c.at)]))];
    await evalScript(this.ctx.conn, DUE_SETTLE, dir, args);
  }
}
