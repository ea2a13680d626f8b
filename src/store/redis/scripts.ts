// The Lua scripts of the Redis session store. Each one runs on ONE hash slot — the slot of a
// user's routing tag (keys.ts) — so it is atomic with respect to every other operation on that
// user's data, across any number of Tessera processes. They are sent by lua.ts (EVALSHA, EVAL on
// NOSCRIPT). The refresh-token scripts are in refresh-scripts.ts.
//
// Calling convention: KEYS[1] is a key of the slot (it routes the call in a Cluster); ARGV[1] is
// the slot's key base `P{tag}:` from which the script builds every key it touches (all in the same
// slot, which Redis Cluster allows); ARGV[2] is `now` in epoch milliseconds; ARGV[3] the pub/sub
// channel on which the handles of sessions the call ended are published. The rest is per
// script. Scripts compare numbers but never print one: every number they store is a string they
// were given, so no precision is lost to Lua's 14-digit number formatting.
//
// The global indexes (routing, tenant listing, expiry) live in other slots and are never touched
// by a script; store.ts writes them before the script and cleans up after a refusal.

import { luaScript, type LuaScript } from './lua.ts';

export const PRELUDE = `
local base = ARGV[1]
local nowS = ARGV[2]
local now = tonumber(nowS)
local channel = ARGV[3]
local uskey = base .. 'us'

-- Handles of the sessions this call ended; published in the same atomic step (see finish), so
-- no Tessera process can miss an end that was committed.
local ended = {}
local function finish(reply)
  if #ended > 0 and channel ~= '' then redis.call('PUBLISH', channel, table.concat(ended, ' ')) end
  return reply
end
local function skey(h) return base .. 's:' .. h end
local function ckey(h) return base .. 'c:' .. h end

-- Valid = stored status active and now before the earlier of idle and absolute expiry.
local function isValid(k)
  local v = redis.call('HMGET', k, 'status', 'idleExpiresAt', 'absoluteExpiresAt')
  if v[1] ~= 'active' then return false end
  local e = tonumber(v[3])
  if v[2] then
    local i = tonumber(v[2])
    if i < e then e = i end
  end
  return now < e
end

-- Endable = not revoked and now before the absolute expiry: valid, or idle-expired and still
-- renewable after a consent return (docs/api.md §Consent redirects, "The session after a return").
-- A revocation makes either final.
local function isEndable(k)
  local v = redis.call('HMGET', k, 'status', 'absoluteExpiresAt')
  if not v[1] or v[1] == 'revoked' then return false end
  return now < tonumber(v[2])
end

-- Never shortens a TTL: shared keys (a user's zset, a children set) live as long as their
-- longest-living member.
local function extendTtl(k, ttl)
  local cur = redis.call('PTTL', k)
  if cur == -1 or cur < ttl then redis.call('PEXPIRE', k, ttl) end
end

-- Revokes every session of the subtree under root that is endable at now (the root with reason,
-- the others with childReason, except the handles in keep), appending each updated record to
-- out, root first (breadth first). Ended sessions are left as they are, but the walk goes on
-- below them: a child can outlive a parent whose absolute lifetime is over.
local function revokeTree(root, reason, childReason, out, keep)
  local queue = { root }
  local seen = {}
  local i = 1
  while i <= #queue do
    local h = queue[i]
    i = i + 1
    if not seen[h] and not (keep and keep[h]) then
      seen[h] = true
      local k = skey(h)
      if isEndable(k) then
        local r = childReason
        if h == root then r = reason end
        redis.call('HSET', k, 'status', 'revoked', 'endedAt', nowS, 'revokeReason', r)
        out[#out + 1] = redis.call('HGETALL', k)
        ended[#ended + 1] = h
      end
      for _, c in ipairs(redis.call('SMEMBERS', ckey(h))) do queue[#queue + 1] = c end
    end
  end
end

-- The name/value pairs ARGV[from..] as a table and as a flat list for HSET.
local function readFields(from)
  local f, list = {}, {}
  for i = from, #ARGV, 2 do
    f[ARGV[i]] = ARGV[i + 1]
    list[#list + 1] = ARGV[i]
    list[#list + 1] = ARGV[i + 1]
  end
  return f, list
end

local function parentOk(f)
  local p = f['parentHandle']
  if not p then return true end
  local pk = skey(p)
  return redis.call('HGET', pk, 'tenantId') == f['tenantId'] and isValid(pk)
end

-- Stores a session and its in-slot indexes: the user's zset, the parent's children set and the
-- authoritative secret-hash -> handle key. Every key gets the record's TTL (or keeps a longer one).
local function writeSession(handle, f, list, ttl)
  local k = skey(handle)
  redis.call('HSET', k, unpack(list))
  redis.call('PEXPIRE', k, ttl)
  if f['userId'] then
    redis.call('ZADD', uskey, f['createdAt'], handle)
    extendTtl(uskey, ttl)
  end
  if f['parentHandle'] then
    local ck = ckey(f['parentHandle'])
    redis.call('SADD', ck, handle)
    extendTtl(ck, ttl)
  end
  redis.call('SET', base .. 'sh:' .. f['secretHash'], handle, 'PX', ttl)
end

-- The per-user limit for a new session f (kind '' = none): returns the count of valid sessions
-- when policy reject_new refuses it, else nil after evicting the oldest (records appended to
-- evicted). Counting, evicting and the caller's write are one step.
local function applyLimit(f, kind, maxText, policy, evicted)
  if kind == '' or not f['userId'] then return nil end
  local max = tonumber(maxText)
  local active = {}
  for _, h in ipairs(redis.call('ZRANGE', uskey, 0, -1)) do
    local hk = skey(h)
    local k2 = redis.call('HGET', hk, 'kind')
    if not k2 then
      -- The record outlived its retention and Redis dropped it: forget the handle too.
      redis.call('ZREM', uskey, h)
    elseif k2 == kind and isValid(hk) then
      active[#active + 1] = h
    end
  end
  if #active + 1 <= max then return nil end
  if policy == 'reject_new' then return #active end
  -- Oldest first (the zset is ordered by createdAt, then handle). Recount after each eviction:
  -- an evicted subtree may hold other sessions of the same kind.
  local function stillValid()
    local n = 0
    for _, h in ipairs(active) do
      if isValid(skey(h)) then n = n + 1 end
    end
    return n
  end
  local i = 1
  while i <= #active and stillValid() + 1 > max do
    if isValid(skey(active[i])) then revokeTree(active[i], 'limit_evicted', 'parent_revoked', evicted, nil) end
    i = i + 1
  end
  return nil
end
`;

/** A slot script: the prelude (the calling convention above), then `body`. */
export function script(name: string, body: string): LuaScript {
  return luaScript(`-- tessera:${name}\n${PRELUDE}\n${body}`);
}

/**
 * create-with-limit. Race closed: simultaneous logins of one user each counting the same N valid
 * sessions and all getting in, so that N + k sessions exist under a limit of N (or two evicting
 * the same oldest session and both keeping theirs). Counting, evicting (with subtrees) and
 * storing are one step, so the limit holds however many logins race.
 * ARGV[4] handle, ARGV[5] TTL ms, ARGV[6] limit kind ('' = no limit), ARGV[7] max,
 * ARGV[8] policy, ARGV[9..] session fields.
 * Reply: {'ok', record, {evicted records}} | {'limit', activeCount} | {'exists'} | {'secret_exists'}
 *      | {'parent_invalid'}
 */
export const CREATE = script(
  'create',
  `
local handle = ARGV[4]
local ttl = tonumber(ARGV[5])
if redis.call('EXISTS', skey(handle)) == 1 then return { 'exists' } end
local f, list = readFields(9)
if redis.call('EXISTS', base .. 'sh:' .. f['secretHash']) == 1 then return { 'secret_exists' } end
if not parentOk(f) then return { 'parent_invalid' } end
local evicted = {}
local refused = applyLimit(f, ARGV[6], ARGV[7], ARGV[8], evicted)
if refused then return { 'limit', refused } end
writeSession(handle, f, list, ttl)
return finish({ 'ok', redis.call('HGETALL', skey(handle)), evicted })
`,
);

/**
 * renew-once-after-expiry (docs/api.md §Consent redirects, "The session after a return"). Race
 * closed: several consent returns whose starting session expired at the bank each creating a new
 * session for the user. The first call links its successor to the predecessor; every later or
 * concurrent call finds the link and gets that same successor.
 * The successor counts against the user's limit like a login (applyLimit, same step).
 * ARGV[4] predecessor handle, ARGV[5] TTL ms, ARGV[6] limit kind ('' = none), ARGV[7] max,
 * ARGV[8] policy, ARGV[9..] successor fields.
 * Reply: {'renewed', record, 1|0, {evicted records}} | {'still_valid', record} | {'revoked', record}
 *        | {'missing'} | {'limit', activeCount} | {'exists'} | {'secret_exists'} | {'parent_invalid'}
 *        | {'mismatch'}
 */
export const RENEW = script(
  'renew',
  `
local pk = skey(ARGV[4])
local ttl = tonumber(ARGV[5])
if redis.call('EXISTS', pk) == 0 then return { 'missing' } end
local linked = redis.call('HGET', pk, 'successorHandle')
if linked then
  local rec = redis.call('HGETALL', skey(linked))
  if #rec > 0 then return { 'renewed', rec, 0, {} } end
  return { 'missing' }
end
if redis.call('HGET', pk, 'status') == 'revoked' then return { 'revoked', redis.call('HGETALL', pk) } end
if isValid(pk) then return { 'still_valid', redis.call('HGETALL', pk) } end
local f, list = readFields(9)
local owner = redis.call('HMGET', pk, 'tenantId', 'userId')
if owner[1] ~= f['tenantId'] or owner[2] ~= f['userId'] then return { 'mismatch' } end
local handle = f['handle']
if redis.call('EXISTS', skey(handle)) == 1 then return { 'exists' } end
if redis.call('EXISTS', base .. 'sh:' .. f['secretHash']) == 1 then return { 'secret_exists' } end
if not parentOk(f) then return { 'parent_invalid' } end
local evicted = {}
local refused = applyLimit(f, ARGV[6], ARGV[7], ARGV[8], evicted)
if refused then return { 'limit', refused } end
writeSession(handle, f, list, ttl)
redis.call('HSET', pk, 'successorHandle', handle)
return finish({ 'renewed', redis.call('HGETALL', skey(handle)), 1, evicted })
`,
);

/**
 * touch. Race closed: activity recorded on a session that a concurrent revoke, eviction or
 * expiry has just ended — check and write are one step, so an ended session never gets its idle
 * expiry pushed forward (it would read as active again).
 * ARGV[4] handle, ARGV[5] new idle expiry ('' = none). Reply: {record, previous idle or ''} | nil
 */
export const TOUCH = script(
  'touch',
  `
local k = skey(ARGV[4])
if not isValid(k) then return false end
local before = redis.call('HGET', k, 'idleExpiresAt')
if ARGV[5] == '' then redis.call('HDEL', k, 'idleExpiresAt') else redis.call('HSET', k, 'idleExpiresAt', ARGV[5]) end
redis.call('HSET', k, 'lastSeenAt', nowS)
return { redis.call('HGETALL', k), before or '' }
`,
);

/**
 * updateSessionData. Race closed: two concurrent patches of different keys (a read-modify-write of
 * the whole document would drop one of them) and a patch of a session being revoked. The merge is
 * per top-level key (HSET / HDEL of the `d:<key>` field, value already JSON), so data stays exact.
 * ARGV[4] handle, ARGV[5..] pairs of field `d:<key>` and JSON value ('' = remove). Reply: record | nil
 */
export const UPDATE_DATA = script(
  'update-data',
  `
local k = skey(ARGV[4])
if not isValid(k) then return false end
for i = 5, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', k, ARGV[i]) else redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
end
return redis.call('HGETALL', k)
`,
);

/**
 * revoke subtree. Race closed: a child created under the session while it is being revoked
 * (create checks the parent's validity in its own atomic step, so it either lands before and is
 * revoked here, or after and is refused), and two revokes both reporting the same sessions.
 * ARGV[4] handle, ARGV[5] reason. Reply: {records moved to revoked, root first}
 */
export const REVOKE = script(
  'revoke',
  `
local out = {}
revokeTree(ARGV[4], ARGV[5], 'parent_revoked', out, nil)
return finish(out)
`,
);

/**
 * revoke user (except one subtree). Race closed: a login of the user completing during "log out
 * everywhere" — it lands entirely before (and is revoked) or after (and survives); never half.
 * ARGV[4] tenantId, ARGV[5] userId, ARGV[6] reason, ARGV[7] handle whose subtree is kept ('' = none).
 * Reply: {records moved to revoked, oldest first}
 */
export const REVOKE_USER = script(
  'revoke-user',
  `
local keep = {}
if ARGV[7] ~= '' then
  local queue, i = { ARGV[7] }, 1
  while i <= #queue do
    local h = queue[i]
    i = i + 1
    if not keep[h] then
      keep[h] = true
      for _, c in ipairs(redis.call('SMEMBERS', ckey(h))) do queue[#queue + 1] = c end
    end
  end
  -- Its ancestors stay too: revoking the idp parent of the kept app session would leave that
  -- session active under an ended parent (the same rule as SQLite's).
  local p = redis.call('HGET', skey(ARGV[7]), 'parentHandle')
  while p and not keep[p] do
    keep[p] = true
    p = redis.call('HGET', skey(p), 'parentHandle')
  end
end
local out = {}
for _, h in ipairs(redis.call('ZRANGE', uskey, 0, -1)) do
  if not keep[h] then
    local k = skey(h)
    local owner = redis.call('HMGET', k, 'tenantId', 'userId')
    if owner[1] == ARGV[4] and owner[2] == ARGV[5] and isEndable(k) then
      redis.call('HSET', k, 'status', 'revoked', 'endedAt', nowS, 'revokeReason', ARGV[6])
      out[#out + 1] = redis.call('HGETALL', k)
      ended[#ended + 1] = h
    end
  end
end
return finish(out)
`,
);

/**
 * revoke listed handles of one slot (tenant-wide revocation, one call per slot). Race closed: the
 * same as REVOKE, per session tree; a tenant revocation as a whole spans slots and is not one step.
 * ARGV[4] tenantId, ARGV[5] reason, ARGV[6..] handles. Reply: {records moved to revoked}
 */
export const REVOKE_HANDLES = script(
  'revoke-handles',
  `
local out = {}
for i = 6, #ARGV do
  if redis.call('HGET', skey(ARGV[i]), 'tenantId') == ARGV[4] then
    revokeTree(ARGV[i], ARGV[5], ARGV[5], out, nil)
  end
end
return finish(out)
`,
);

/**
 * consume-once. Race closed: two tabs (or an attacker replaying a captured redirect cookie)
 * presenting the same single-use secret at the same moment; exactly one finds it valid and
 * revokes it, the others find it revoked.
 * ARGV[4] secret hash. Reply: the consumed record (status revoked) | nil
 */
export const CONSUME = script(
  'consume',
  `
local h = redis.call('GET', base .. 'sh:' .. ARGV[4])
if not h then return false end
local k = skey(h)
if redis.call('HGET', k, 'secretHash') ~= ARGV[4] or not isValid(k) then return false end
local out = {}
revokeTree(h, 'consumed', 'parent_revoked', out, nil)
return finish(out[1])
`,
);

/**
 * Read by secret hash (in-slot index, then the record, verified). No race to close: it is a
 * script only so that the two reads are one round trip and see one state.
 * ARGV[4] secret hash. Reply: record | nil
 */
export const BY_SECRET = script(
  'by-secret',
  `
local h = redis.call('GET', base .. 'sh:' .. ARGV[4])
if not h then return false end
local k = skey(h)
if redis.call('HGET', k, 'secretHash') ~= ARGV[4] then return false end
return redis.call('HGETALL', k)
`,
);

/**
 * expire-if-due (one session, for sweepExpired). Race closed: several sweepers (in several
 * processes) taking the same due handle from the expiry index — only the one whose script finds
 * it still active and due marks it expired and reports it, so each session.expired event is
 * emitted once; and a touch that moved the expiry after the index was read — then it is not due
 * and its real expiry is returned for re-scoring.
 * ARGV[4] handle. Reply: {'expired', record} | {'notdue', expiry} | {'gone'}
 */
export const EXPIRE_IF_DUE = script(
  'expire-if-due',
  `
local k = skey(ARGV[4])
local v = redis.call('HMGET', k, 'status', 'idleExpiresAt', 'absoluteExpiresAt')
if v[1] ~= 'active' then return { 'gone' } end
local e, eS = tonumber(v[3]), v[3]
if v[2] and tonumber(v[2]) < e then e, eS = tonumber(v[2]), v[2] end
if now < e then return { 'notdue', eS } end
redis.call('HSET', k, 'status', 'expired', 'endedAt', eS)
ended[1] = ARGV[4]
return finish({ 'expired', redis.call('HGETALL', k) })
`,
);
