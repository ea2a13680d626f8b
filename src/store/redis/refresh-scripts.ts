// The refresh-token scripts of the Redis sessions adapter; calling convention, record layout and
// prelude as in slot-lua.ts. A session's refresh tokens are part of its record, so these run on
// the session's slot and a reuse revokes the subtree in the same step.

import { script } from './slot-lua.ts';
import { hotScript } from './lua.ts';

/**
 * add refresh token. Races closed: a token added for a session that is disappearing, and a
 * duplicated add resetting a token that has already been rotated (which would make a stolen,
 * rotated token current again) — an existing token is never overwritten. The token lives as long
 * as its session record (it is part of it).
 * ARGV[5..] token fields (codec.ts refreshTokenToFields). Reply: {'ok'} | {'no_session'} | {'exists'}
 */
export const ADD_REFRESH = script(
  'add-refresh',
  `
local f = readFields(5)
local rec, r = get(f['sessionHandle'])
if not rec then return { 'no_session' } end
local hb = h2b(f['tokenHash'])
if findToken(hb) then return { 'exists' } end
local toks = rec[TOK] or {}
local rotated = false
if f['rotatedAt'] then rotated = tonumber(f['rotatedAt']) end
local succ = false
if f['successorHash'] then succ = h2b(f['successorHash']) end
toks[#toks + 1] = { hb, tonumber(f['createdAt']), rotated, succ }
rec[TOK] = toks
changed(rec)
return finish({ 'ok' })
`,
);

/**
 * rotate refresh token (RFC 9700 4.14.2). Races closed: several tabs refreshing with the same token
 * at once — exactly one rotates it, the others land in the grace window and get the same
 * successor; and a thief replaying a rotated token after the grace window (or after its
 * successor was rotated in its turn) while the legitimate client refreshes — the reuse revokes the session subtree in the same step, so neither side can
 * rotate again afterwards.
 * ARGV[5] presented hash and ARGV[6] successor hash, both packed (lua-codec.ts packedHash: the
 * bytes h2b would make of them, sent as bytes), ARGV[7] grace ms, ARGV[8] new idle expiry ('' =
 * none), ARGV[9] the successor's route key and ARGV[10] its field, when the script writes the
 * route itself ('' = the caller wrote it: in a Cluster the route lives in another slot). A
 * rotation writes the route before the successor, in the same atomic step; no other outcome
 * writes it (HSETNX first, taken back by a refusal that follows: one command where a route read,
 * a read of the ended records and a route write were three). (No reply of this script prints a token hash: the rotated and grace answers are
 * packed, the others name sessions only.)
 * Reply: {'rotated', session and successor token (packed), previous idle or '', user JSON or nil}
 *      | {'grace', session and presented token (packed), user JSON or nil}
 * (packed: one string, slot-lua.ts packedOf; the other records are name/value lists; every bulk
 * string of the reply comes to Node as a Buffer)
 * (the session's user record, `P{tag}:u:<userId>`, in the same slot: read in the same step)
 *      | {'reused', session, {revoked records}} | {'inactive', session} | {'unknown'} | {'successor_exists'}
 *      | {'route_taken'} (the successor's route names another slot: nothing was changed)
 */
export const ROTATE = hotScript(script(
  'rotate',
  `
local function userOf(rec)
  if not rec[USR] then return false end
  return redis.call('GET', base .. 'u:' .. rec[USR])
end
local r, rec, t = findToken(ARGV[5])
if not r then return { 'unknown' } end
-- An ended session answers inactive whatever token is shown: after a reuse revoked it, the
-- whole token family is dead and nothing more is revoked or reported.
if not isValid(rec) then return { 'inactive', pairsOf(r, rec) } end
if not t[3] then
  local nb = ARGV[6]
  if ARGV[9] == '' then
    if findToken(nb) then return { 'successor_exists' } end
  elseif redis.call('HSETNX', ARGV[9], ARGV[10], tag) == 1 then
    -- The route was not there (now written, before the successor): no ended record or spent
    -- token holds nb (findToken's unrouted), so only this call's records are searched — and a
    -- refusal takes the route back.
    if findToken(nb, true) then
      redis.call('HDEL', ARGV[9], ARGV[10])
      return { 'successor_exists' }
    end
  else
    local routed = redis.call('HGET', ARGV[9], ARGV[10])
    if findToken(nb) then return { 'successor_exists' } end
    if routed ~= tag then return { 'route_taken' } end
  end
  t[3] = now
  t[4] = nb
  local nt = { nb, now, false, false }
  rec[TOK][#rec[TOK] + 1] = nt
  local before = rec[IDLE]
  -- The idle expiry never passes the absolute expiry (the same cap as SQLite's).
  if ARGV[8] == '' then
    rec[IDLE] = false
  else
    local idle = tonumber(ARGV[8])
    if idle > rec[ABS] then idle = rec[ABS] end
    rec[IDLE] = idle
  end
  rec[SEEN] = now
  dirty = true
  -- The token whose successor was t is spent now: out of the live record (slot-lua.ts, shed).
  shed(r, rec)
  local prev = ''
  if before then prev = fmt(before) end
  return finish({ 'rotated', packedOf(r, rec, tokenAt(rec, nt)), prev, userOf(rec) })
end
-- Grace only while the successor is still current: once it has been rotated in its turn, the
-- pair a grace answer would repeat is spent, and the old token coming back is reuse.
local successorRotated = t[5] or false
if t[4] and not successorRotated then
  for _, x in ipairs(rec[TOK]) do
    if x[1] == t[4] then successorRotated = x[3] and true or false end
  end
end
if now <= t[3] + tonumber(ARGV[7]) and not successorRotated then
  return { 'grace', packedOf(r, rec, tokenAt(rec, t)), userOf(rec) }
end
local out = {}
revokeTree(r, 'refresh_reuse', 'parent_revoked', out, nil)
return finish({ 'reused', pairsOf(r, rec), out })
`,
  true,
));

/**
 * Read a refresh token by hash. No race to close: a read.
 * ARGV[5] token hash. Reply: token | nil
 */
export const GET_REFRESH = script(
  'get-refresh',
  `
local r, rec, t = findToken(h2b(ARGV[5]))
if not r then return false end
return tokenPairs(r, rec, t)
`,
);
