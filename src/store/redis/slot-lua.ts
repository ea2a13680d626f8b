// The prelude of every slot script (scripts.ts, refresh-scripts.ts): the record layout of the
// slot's sessions and the rules shared by the scripts.
//
// Calling convention: KEYS[1] is the slot's session key (it routes the call in a Cluster);
// ARGV[1] is the slot's key base `P{tag}:`; ARGV[2] is `now` in epoch milliseconds; ARGV[3] the
// pub/sub channel on which the handles of sessions the call ended are published; ARGV[4] the TTL
// (ms) the slot's key must keep at least ('' = leave it). The rest is per script.
//
// Layout (layout 2, see keys.ts): ALL sessions of one slot (one user, or one flow session and
// its children) are ONE string value `P{tag}:s`: a MessagePack map from the handle's random part
// (the 22 characters after `<tag>.`) to the session's record, a MessagePack array:
//
//   1 tenantId   2 userId|false   3 kind (0 idp, 1 app, 2 flow, 3 redirect)   4 createdAt
//   5 lastSeenAt  6 idleExpiresAt|false  7 absoluteExpiresAt  (5-7 stored as createdAt + delta)
//   8 authMethod  9 device {userAgent|false, ip|false, location JSON|false}|false
//   10 status (a, r, e)  11 secretHash (32 bytes when it is canonical base64url, see h2b)
//   12 data {key = JSON}|false   13 refresh tokens {{hash, createdAt, rotatedAt|false,
//   successorHash|false}, ...}|false   14 the rarely set rest {clientId, parent, successor,
//   endedAt, revokeReason, children}|false   15 the hash of the record's last spent refresh
//   token|false (see below)
//
// One key per slot instead of a hash per session, its indexes and its tokens: the fixed cost of
// a Redis key (about 90 bytes) is paid once per user. A script decodes the value once, works on
// Lua tables and writes it back once (finish).
//
// That value holds only the slot's LIVE records — active ones, and expired ones still before
// their absolute expiry (renewable after a consent return) — so that its size, and with it the
// cost of every script, is bounded by the per-user cap (CREATE and RENEW refuse the record over
// it) whatever the user's history. A record that ends for good (revoked, or expired and past its
// absolute expiry) moves in the same step to the slot's ended records `P{tag}:e`, a HASH read one
// record at a time: field 'r'..r → the record (the same array), 'h'..hash → r for its secret
// hash and for each of its refresh-token hashes. Records revoked before this split are moved
// when a script next reads the value. A revoked record is also taken out of its parent's
// children (nothing below it can still be ended: its subtree was revoked with it, and no child
// is ever created under an ended parent), so a cascade walks live records only.
//
// Spent refresh tokens leave the live record too: a rotated token whose successor has been
// rotated in its turn can no longer get a grace answer (domain/session.ts refreshGraceApplies),
// only be recognised as reuse, so when it becomes spent (ROTATE; a value written before, on its
// first read) it moves to P{tag}:e as field 'h'..hash → MessagePack {r, createdAt, rotatedAt,
// successorHash, previous spent hash|false} — a record keeps at most its current token and the
// one whose grace can still apply per family, however often it was rotated. findToken falls
// back to that field and answers the token as spent (reuse, or inactive for an ended session);
// the record's position 15 heads the chain of its spent tokens, which the purge walks to delete
// them (and their routes). An index value of a spent token is never 16 bytes nor starts with a 0
// byte, so it is never taken for a plain r. Numbers are MessagePack integers (exact up to
// 2^53) and are printed with %d, never with Lua's 14-digit tostring. Replies are flat
// name/value lists in the shape of HGETALL, so codec.ts reads them as it read the hashes —
// except the records of the hot scripts' replies (ROTATE's rotated and grace, REDEEM,
// BY_SECRET_WITH_USER): each is ONE string, MessagePack of (tag, r, the record as above with
// absolute times, the position of the token the reply names), sent as bytes (packedOf below,
// codec.ts packedFromReply).

import { LUA_CODEC, LUA_CODEC_INIT } from './lua-codec.ts';
import { luaFunctionScript, type LuaScript } from './lua.ts';

export const PRELUDE = `
-- Per call (set by reset): the slot's key base, now, the ends channel, the TTL to keep, the tag.
local base, now, channel, keepTtl, tag, skey

local TEN, USR, KIND, CRE, SEEN, IDLE, ABS, AUTH, DEV, ST, SEC, DATA, TOK, X, SPENT = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
local CLI, PAR, SUCC, ENDT, WHY, KIDS = 1, 2, 3, 4, 5, 6
local KINDS = { [0] = 'idp', [1] = 'app', [2] = 'flow', [3] = 'redirect' }
local KINDCODE = { idp = 0, app = 1, flow = 2, redirect = 3 }
local A, RV, EX = 0, 1, 2
local STATUS = { [0] = 'active', [1] = 'revoked', [2] = 'expired' }
local STATUSCODE = { active = A, revoked = RV, expired = EX }
local AUTHS = { [0] = 'password', [1] = 'oidc', [2] = 'oauth', [3] = 'renewed', [4] = 'redirect' }
local AUTHCODE = { password = 0, oidc = 1, oauth = 2, renewed = 3, redirect = 4 }

${LUA_CODEC}
-- The slot's live sessions, decoded on first use; written back by finish when changed.
local S, dirty, ttlWanted
-- The slot's ended records (P{tag}:e), each read on first use: C[r] = record | false; coldR maps
-- a loaded record to its r; coldDirty the records to write back, coldGone the fields to delete.
local ekey
local C, coldR, coldDirty, coldGone, coldTouched
-- Index fields of spent refresh tokens to write: field → value (see shed).
local spentNew, spentAny
local function decode(st)
  local c = st[CRE]
  st[SEEN] = c + st[SEEN]
  if st[IDLE] then st[IDLE] = c + st[IDLE] end
  st[ABS] = c + st[ABS]
  if st[TOK] then
    for _, t in ipairs(st[TOK]) do
      t[2] = c + t[2]
      if t[3] then t[3] = c + t[3] end
    end
  end
  if st[X] and st[X][ENDT] then st[X][ENDT] = c + st[X][ENDT] end
  return st
end
-- To the stored form, in place (the value is written once, at the end of the script).
local function encode(r)
  local c = r[CRE]
  r[SEEN] = r[SEEN] - c
  if r[IDLE] then r[IDLE] = r[IDLE] - c end
  r[ABS] = r[ABS] - c
  if r[TOK] then
    for _, t in ipairs(r[TOK]) do
      t[2] = t[2] - c
      if t[3] then t[3] = t[3] - c end
      if t[3] or t[4] then
        t[3] = t[3] or false
        t[4] = t[4] or false
      else
        t[3], t[4] = nil, nil
      end
    end
  end
  local x = r[X]
  if x then
    for i = 1, 6 do x[i] = x[i] or false end
    if x[ENDT] then x[ENDT] = x[ENDT] - c end
  end
  -- Trailing nulls are left out (a missing position reads as null).
  for i = 1, 15 do r[i] = r[i] or false end
  local n = 15
  while n > 0 and not r[n] do
    r[n] = nil
    n = n - 1
  end
  return r
end
-- Moves a live record to the ended ones (in this call's tables; save writes both keys).
local function toCold(r, rec)
  if coldR[rec] then return end
  S[r] = nil
  dirty = true
  C[r] = rec
  coldR[rec] = r
  coldDirty[r] = true
  coldTouched = true
end
-- Whether a live record has ended for good (it belongs with the ended ones). A call without a
-- clock (now = 0, the reads) only moves revoked ones.
local function over(rec)
  return rec[ST] == RV or (rec[ST] == EX and now > 0 and now >= rec[ABS])
end
-- Moves the spent refresh tokens of the live record rec (random part r) to the ended records'
-- key: a rotated token whose successor, in the same record, has been rotated too.
local function shed(r, rec)
  local toks = rec[TOK]
  if not toks or #toks < 3 then return end
  local rotated = {}
  for _, t in ipairs(toks) do rotated[t[1]] = t[3] and true or false end
  local keep = {}
  for _, t in ipairs(toks) do
    if t[3] and t[4] and rotated[t[4]] then
      spentNew['h' .. t[1]] = mpack({ r, t[2], t[3], t[4], rec[SPENT] or false })
      spentAny = true
      rec[SPENT] = t[1]
      coldTouched = true
      dirty = true
    else
      keep[#keep + 1] = t
    end
  end
  rec[TOK] = keep
end
local function sessions()
  if not S then
    S = {}
    local raw = redis.call('GET', skey)
    if raw then
      local moved = {}
      for r, st in pairs(munpack(raw)) do
        local rec = decode(st)
        S[r] = rec
        if over(rec) then moved[#moved + 1] = r else shed(r, rec) end
      end
      -- Ended records a value written before the split still holds: moved on this first read.
      for _, r in ipairs(moved) do toCold(r, S[r]) end
    end
  end
  return S
end
local function coldGet(r)
  local rec = C[r]
  if rec == nil then
    local raw = redis.call('HGET', ekey, 'r' .. r)
    rec = false
    if raw then
      rec = decode(munpack(raw))
      coldR[rec] = r
    end
    C[r] = rec
  end
  return rec or nil
end
-- The record with random part r, live or ended; nil when the slot has none.
local function recOf(r)
  return sessions()[r] or coldGet(r)
end
-- Marks rec (live or ended) as changed, to be written back by save.
local function changed(rec)
  local r = coldR[rec]
  if r then
    coldDirty[r] = true
    coldTouched = true
  else
    dirty = true
  end
end
-- The hashes of rec's spent refresh tokens (its chain in the ended records' key), newest first.
local function spentOf(rec)
  local out, h = {}, rec[SPENT]
  while h do
    local v = spentNew['h' .. h] or redis.call('HGET', ekey, 'h' .. h)
    if not v then break end
    out[#out + 1] = h
    h = munpack(v)[5]
  end
  return out
end
-- Takes a record out of the slot for good (the sweeper's purge), with its spent tokens' index
-- fields; answers those tokens' hashes.
local function drop(r, rec)
  local spent = spentOf(rec)
  for i = 1, #spent, 500 do
    local f = {}
    for j = i, math.min(i + 499, #spent) do f[#f + 1] = 'h' .. spent[j] end
    coldGone[#coldGone + 1] = f
    coldTouched = true
  end
  if coldR[rec] then
    local f = { 'r' .. r, 'h' .. rec[SEC] }
    if rec[TOK] then for _, t in ipairs(rec[TOK]) do f[#f + 1] = 'h' .. t[1] end end
    coldGone[#coldGone + 1] = f
    coldDirty[r] = nil
    coldR[rec] = nil
    C[r] = false
    coldTouched = true
  else
    sessions()[r] = nil
    dirty = true
  end
  return spent
end
local function save()
  -- The ended records' key lives at least as long as the live one (read before it may go).
  local liveTtl = -2
  if coldTouched then liveTtl = redis.call('PTTL', skey) end
  if dirty then
    if next(S) == nil then
      redis.call('DEL', skey)
    else
      for _, rec in pairs(S) do encode(rec) end
      redis.call('SET', skey, mpack(S), 'KEEPTTL')
    end
  end
  -- Never shortens the TTL: the key lives as long as its longest-living record.
  if ttlWanted and next(sessions()) ~= nil then
    local cur = redis.call('PTTL', skey)
    if cur == -1 or cur < ttlWanted then redis.call('PEXPIRE', skey, ttlWanted) end
  end
  if coldTouched then
    if spentAny then
      local args = {}
      for f, v in pairs(spentNew) do
        args[#args + 1] = f
        args[#args + 1] = v
        if #args >= 1000 then
          redis.call('HSET', ekey, unpack(args))
          args = {}
        end
      end
      if #args > 0 then redis.call('HSET', ekey, unpack(args)) end
    end
    for _, f in ipairs(coldGone) do redis.call('HDEL', ekey, unpack(f)) end
    for r in pairs(coldDirty) do
      local rec = C[r]
      local args = { 'r' .. r, false, 'h' .. rec[SEC], r }
      if rec[TOK] then
        for _, t in ipairs(rec[TOK]) do
          args[#args + 1] = 'h' .. t[1]
          args[#args + 1] = r
        end
      end
      args[2] = mpack(encode(rec))
      redis.call('HSET', ekey, unpack(args))
    end
    local want = liveTtl
    if ttlWanted and ttlWanted > want then want = ttlWanted end
    if want > 0 then
      local cur = redis.call('PTTL', ekey)
      if cur ~= -2 and (cur == -1 or cur < want) then redis.call('PEXPIRE', ekey, want) end
    end
  end
end

-- Handles of the sessions this call ended; published in the same atomic step (see finish), so
-- no Tessera process can miss an end that was committed.
local ended
local function finish(reply)
  save()
  if #ended > 0 and channel ~= '' then redis.call('PUBLISH', channel, concat(ended, ' ')) end
  return reply
end

-- The random part of a handle of this slot, or nil (another slot's handle or no handle).
-- (Its packed form, 16 bytes for a handle newHandle made: the key of its record in the value.)
local prefixT
local function rOf(h)
  if type(h) == 'string' and #h == 35 and ssub(h, 1, 13) == prefixT then return packText(ssub(h, 14), 16) end
  return nil
end
local handles
local function handleOf(r)
  local h = handles[r]
  if not h then
    h = prefixT .. unpackText(r, 16)
    handles[r] = h
  end
  return h
end
-- Handle order (the order of the handles' text, as in the listings): createdAt, then handle.
local function older(all)
  return function(a, b)
    if all[a][CRE] ~= all[b][CRE] then return all[a][CRE] < all[b][CRE] end
    return handleOf(a) < handleOf(b)
  end
end
local function get(h)
  local r = rOf(h)
  if not r then return nil, nil end
  return recOf(r), r
end
local function xget(rec, i) return rec[X] and rec[X][i] or nil end
local function xset(rec, i, v)
  if not rec[X] then rec[X] = { false, false, false, false, false, false } end
  rec[X][i] = v
  changed(rec)
end

-- A record as HGETALL-shaped name/value pairs (what codec.ts reads). (No helper closure: one
-- made per call is garbage.)
local function pairsOf(r, rec)
  local out = { 'handle', handleOf(r), 'secretHash', b2h(rec[SEC]), 'tenantId', rec[TEN], 'kind', KINDS[rec[KIND]],
    'createdAt', fmt(rec[CRE]), 'lastSeenAt', fmt(rec[SEEN]), 'absoluteExpiresAt', fmt(rec[ABS]),
    'authMethod', AUTHS[rec[AUTH]] or rec[AUTH], 'status', STATUS[rec[ST]] }
  local n = 18
  if rec[USR] then out[n + 1], out[n + 2], n = 'userId', rec[USR], n + 2 end
  if rec[IDLE] then out[n + 1], out[n + 2], n = 'idleExpiresAt', fmt(rec[IDLE]), n + 2 end
  local d = rec[DEV]
  if d then
    if d[1] then out[n + 1], out[n + 2], n = 'dev:userAgent', d[1], n + 2 end
    if d[2] then out[n + 1], out[n + 2], n = 'dev:ip', b2ip(d[2]), n + 2 end
    if d[3] then out[n + 1], out[n + 2], n = 'dev:location', d[3], n + 2 end
  end
  if rec[DATA] then for k, v in pairs(rec[DATA]) do out[n + 1], out[n + 2], n = 'd:' .. k, v, n + 2 end end
  local x = rec[X]
  if x then
    if x[CLI] then out[n + 1], out[n + 2], n = 'clientId', x[CLI], n + 2 end
    if x[PAR] then out[n + 1], out[n + 2], n = 'parentHandle', handleOf(x[PAR]), n + 2 end
    if x[SUCC] then out[n + 1], out[n + 2], n = 'successorHandle', handleOf(x[SUCC]), n + 2 end
    if x[ENDT] then out[n + 1], out[n + 2], n = 'endedAt', fmt(x[ENDT]), n + 2 end
    if x[WHY] then out[n + 1], out[n + 2], n = 'revokeReason', x[WHY], n + 2 end
  end
  return out
end

-- A record in one string (the hot scripts' replies: ROTATE, REDEEM, BY_SECRET_WITH_USER):
-- MessagePack of the slot's tag, r, the record as this call holds it (times absolute, hashes and
-- handles' random parts as bytes, as above) and ti, the position in its refresh tokens of the
-- token the reply names (0: none) — cmsgpack's work in C, instead of pairsOf's and tokenPairs'
-- numbers printed and hashes and handles encoded in Lua. codec.ts packedFromReply makes of it
-- what sessionFromReply and refreshTokenFromReply make of those pairs. The script's reply comes
-- to Node as bytes (script(..., true): its bulk strings as Buffers). A position the call left nil
-- is set false first (save's encode does the same), so that the record goes as an array, not as
-- a map.
local function packedOf(r, rec, ti)
  for i = 1, 15 do
    if rec[i] == nil then rec[i] = false end
  end
  return mpack(tag, r, rec, ti)
end
-- The position of token t in rec's refresh tokens (0: not there).
local function tokenAt(rec, t)
  if rec[TOK] then
    for i, x in ipairs(rec[TOK]) do
      if x == t then return i end
    end
  end
  return 0
end

-- A refresh token of rec as HGETALL-shaped pairs.
local function tokenPairs(r, rec, t)
  local out = { 'tokenHash', b2h(t[1]), 'sessionHandle', handleOf(r), 'tenantId', rec[TEN], 'userId', rec[USR] or '',
    'createdAt', fmt(t[2]) }
  if t[3] then out[11], out[12] = 'rotatedAt', fmt(t[3]) end
  if t[4] then
    local n = #out
    out[n + 1], out[n + 2] = 'successorHash', b2h(t[4])
  end
  return out
end

-- Whether an index value of P{tag}:e is a spent token's entry (else it is a plain r).
local function isSpentEntry(v)
  return #v ~= 16 and sbyte(v, 1) ~= 0
end

-- A record moved to the ended ones in this call (one a value written before the split held) has
-- no index field until the call saves: the one whose secret or token hash is hb, and the token.
local function movedByHash(hb)
  for r in pairs(coldDirty) do
    local rec = C[r]
    if rec[SEC] == hb then return r, rec, nil end
    if rec[TOK] then
      for _, t in ipairs(rec[TOK]) do
        if t[1] == hb then return r, rec, t end
      end
    end
  end
  return nil, nil, nil
end
-- The ended record whose secret or refresh-token hash is hb (binary form), by its index field.
local function coldByHash(hb)
  local r = redis.call('HGET', ekey, 'h' .. hb)
  if not r then
    local mr, rec = movedByHash(hb)
    return mr, rec
  end
  if isSpentEntry(r) then return nil, nil end
  return r, coldGet(r)
end

-- The session of this slot holding the token with hash hb (binary form), and the token. A spent
-- token (moved out of its record, see shed) is answered as {hash, createdAt, rotatedAt,
-- successorHash, true}: its 5th position says that its successor has been rotated.
-- unrouted: the caller found no route for hb (a new token's hash, before its route is written),
-- so no ended record nor spent token of any slot holds it — every token's route is written before
-- the token (this script, session-index.ts claimRoute) and dropped only after it (the purge) or
-- by the write that claimed it when that write stored nothing under it (a refusal; in a Cluster
-- a rotate answered otherwise than rotated, unless its token already leads to that successor: a
-- concurrent call with the same successor rotated it) — and P{tag}:e is not read for it.
local function findToken(hb, unrouted)
  for r, rec in pairs(sessions()) do
    if rec[TOK] then
      for _, t in ipairs(rec[TOK]) do
        if t[1] == hb then return r, rec, t end
      end
    end
  end
  -- A token spent in this call (shed from a value written before the split, on its first read)
  -- is not in P{tag}:e until the call saves: found in spentNew first.
  local v = (spentAny and spentNew['h' .. hb]) or (not unrouted and redis.call('HGET', ekey, 'h' .. hb)) or nil
  if not v then
    local r, rec, t = movedByHash(hb)
    if not t then return nil, nil, nil end
    return r, rec, t
  end
  if isSpentEntry(v) then
    local e = munpack(v)
    local rec = recOf(e[1])
    if not rec then return nil, nil, nil end
    return e[1], rec, { hb, e[2], e[3], e[4], true }
  end
  local r, rec = v, coldGet(v)
  if rec and rec[TOK] then
    for _, t in ipairs(rec[TOK]) do
      if t[1] == hb then return r, rec, t end
    end
  end
  return nil, nil, nil
end

-- The session of this slot with secret hash hb (binary form).
local function findSecret(hb)
  for r, rec in pairs(sessions()) do
    if rec[SEC] == hb then return r, rec end
  end
  local r, rec = coldByHash(hb)
  if rec and rec[SEC] == hb then return r, rec end
  return nil, nil
end

-- Valid = stored status active and now before the earlier of idle and absolute expiry.
local function isValid(rec)
  if not rec or rec[ST] ~= A then return false end
  local e = rec[ABS]
  if rec[IDLE] and rec[IDLE] < e then e = rec[IDLE] end
  return now < e
end

-- Endable = not revoked and now before the absolute expiry: valid, or idle-expired and still
-- renewable after a consent return (docs/api.md §Consent redirects, "The session after a return").
-- A revocation makes either final.
local function isEndable(rec)
  if not rec or rec[ST] == RV then return false end
  return now < rec[ABS]
end

-- Takes r out of its parent's children (a revocation, or the purge).
local function unlink(r, rec)
  local p = xget(rec, PAR)
  local prec = p and recOf(p)
  if not prec then return end
  local kids = {}
  for _, c in ipairs(xget(prec, KIDS) or {}) do
    if c ~= r then kids[#kids + 1] = c end
  end
  if #kids == 0 then kids = false end
  xset(prec, KIDS, kids)
  changed(prec)
end

-- quiet: the end is not published (an SSO one-time token consumed by its exchange, redeemSteps).
local function revokeOne(r, rec, reason, quiet)
  rec[ST] = RV
  xset(rec, ENDT, now)
  xset(rec, WHY, reason)
  if not quiet then ended[#ended + 1] = handleOf(r) end
  unlink(r, rec)
  toCold(r, rec)
end

-- Revokes every session of the subtree under root (a random part) that is endable at now (the
-- root with reason, the others with childReason, except those in keep), appending each updated
-- record to out, root first (breadth first; out nil: the records are not wanted, none is built).
-- Ended sessions are left as they are, but the walk goes on below them: a child can outlive a
-- parent whose absolute lifetime is over. quietRoot: the root's end is not published (revokeOne's
-- quiet), its children's are.
local function revokeTree(root, reason, childReason, out, keep, quietRoot)
  local queue, seen, i = { root }, {}, 1
  while i <= #queue do
    local r = queue[i]
    i = i + 1
    if not seen[r] and not (keep and keep[r]) then
      seen[r] = true
      local rec = recOf(r)
      if rec then
        if isEndable(rec) then
          local why, quiet = childReason, false
          if r == root then why, quiet = reason, quietRoot end
          revokeOne(r, rec, why, quiet)
          if out then out[#out + 1] = pairsOf(r, rec) end
        end
        local kids = xget(rec, KIDS)
        if kids then for _, c in ipairs(kids) do queue[#queue + 1] = c end end
      end
    end
  end
end

-- The name/value pairs ARGV[from..] as a table (args: this call's ARGV, set by reset).
local callArgs
local function readFields(from)
  local f = {}
  for i = from, #callArgs, 2 do f[callArgs[i]] = callArgs[i + 1] end
  return f
end

-- A new record from session fields (codec.ts sessionToFields).
local function recordOf(f)
  local data = false
  local dev = false
  for k, v in pairs(f) do
    if string.sub(k, 1, 2) == 'd:' then
      data = data or {}
      data[string.sub(k, 3)] = v
    end
  end
  if f['dev:userAgent'] or f['dev:ip'] or f['dev:location'] then
    dev = { f['dev:userAgent'] or false, f['dev:ip'] and ip2b(f['dev:ip']) or false, f['dev:location'] or false }
    while #dev > 0 and not dev[#dev] do dev[#dev] = nil end
  end
  local rec = { f['tenantId'], f['userId'] or false, KINDCODE[f['kind']], tonumber(f['createdAt']), tonumber(f['lastSeenAt']),
    f['idleExpiresAt'] and tonumber(f['idleExpiresAt']) or false, tonumber(f['absoluteExpiresAt']), AUTHCODE[f['authMethod']] or f['authMethod'], dev,
    STATUSCODE[f['status']], h2b(f['secretHash']), data, false, false }
  if f['clientId'] then xset(rec, CLI, f['clientId']) end
  if f['parentHandle'] then xset(rec, PAR, rOf(f['parentHandle']) or false) end
  if f['successorHandle'] then xset(rec, SUCC, rOf(f['successorHandle']) or false) end
  if f['endedAt'] then xset(rec, ENDT, tonumber(f['endedAt'])) end
  if f['revokeReason'] then xset(rec, WHY, f['revokeReason']) end
  return rec
end

local function parentOk(f)
  local p = f['parentHandle']
  if not p then return true end
  local rec = get(p)
  return rec ~= nil and rec[TEN] == f['tenantId'] and isValid(rec)
end

-- Stores a new session under its random part r, and links it into its parent's children.
local function writeSession(r, rec)
  sessions()[r] = rec
  dirty = true
  local p = xget(rec, PAR)
  local prec = p and recOf(p)
  if prec then
    local kids = xget(prec, KIDS) or {}
    kids[#kids + 1] = r
    xset(prec, KIDS, kids)
  end
end

-- The per-user cap (ARGV capText, '0' = none) on live records, for a new session f: bounds the
-- value without ever locking the user out. When one more would pass it, in this same step:
-- first the oldest live records that are no longer valid (idle-expired, expired and renewable, a
-- flow past its expiry) move as they are to the ended ones (their expiry is the sweeper's to
-- record); then pending SSO app sessions whose one-time token is over (no valid token names them
-- and a token's lifetime, 60 s, has passed) are revoked 'user_capacity'; then, while still at the
-- cap, the oldest valid top-level session is revoked 'user_capacity' with its subtree
-- ('parent_revoked'), never the new session's own ancestors. Revoked records are appended to
-- evicted (the caller's announcement); every end is published (finish).
local function makeRoom(capText, f, evicted)
  local cap = tonumber(capText) or 0
  if cap <= 0 then return end
  local all = sessions()
  local n = 0
  for _ in pairs(all) do n = n + 1 end
  if n + 1 <= cap then return end
  local tokenFor = {}
  for _, rec in pairs(all) do
    if rec[KIND] == KINDCODE['flow'] and rec[DATA] and rec[DATA]['appHandle'] and isValid(rec) then
      tokenFor[rec[DATA]['appHandle']] = true
    end
  end
  local stale, pend = {}, {}
  for r, rec in pairs(all) do
    if not isValid(rec) then
      stale[#stale + 1] = r
    elseif rec[KIND] == KINDCODE['app'] and rec[DATA] and rec[DATA]['mode'] == '"pending"'
      and now >= rec[CRE] + 60000 and not tokenFor['"' .. handleOf(r) .. '"'] then
      pend[#pend + 1] = r
    end
  end
  table.sort(stale, older(all))
  for _, r in ipairs(stale) do
    if n + 1 <= cap then return end
    if all[r][ST] == A then ended[#ended + 1] = handleOf(r) end
    toCold(r, all[r])
    n = n - 1
  end
  local function count()
    local c = 0
    for _ in pairs(all) do c = c + 1 end
    return c
  end
  table.sort(pend, older(all))
  for _, r in ipairs(pend) do
    if count() + 1 <= cap then return end
    if all[r] and isValid(all[r]) then revokeTree(r, 'user_capacity', 'parent_revoked', evicted, nil) end
  end
  -- The new session's ancestors stay (it is about to be written under them).
  local mine = {}
  local p = f['parentHandle'] and rOf(f['parentHandle'])
  while p and not mine[p] do
    mine[p] = true
    local prec = recOf(p)
    p = prec and xget(prec, PAR) or nil
  end
  local top = {}
  for r, rec in pairs(all) do
    local par = xget(rec, PAR)
    if isValid(rec) and not mine[r] and not (par and all[par]) then top[#top + 1] = r end
  end
  table.sort(top, older(all))
  for _, r in ipairs(top) do
    if count() + 1 <= cap then return end
    if all[r] and isValid(all[r]) then revokeTree(r, 'user_capacity', 'parent_revoked', evicted, nil) end
  end
end

-- The per-user limit for a new session f (kind '' = none): returns the count of valid sessions
-- when policy reject_new refuses it, else nil after evicting the oldest (records appended to
-- evicted). Counting, evicting and the caller's write are one step.
local function applyLimit(f, kind, maxText, policy, evicted)
  if kind == '' or not f['userId'] then return nil end
  local max = tonumber(maxText)
  local code = KINDCODE[kind]
  local all = sessions()
  local active = {}
  for r, rec in pairs(all) do
    if rec[KIND] == code and rec[USR] and isValid(rec) then active[#active + 1] = r end
  end
  if #active + 1 <= max then return nil end
  if policy == 'reject_new' then return #active end
  -- Oldest first (createdAt, then handle). Recount after each eviction: an evicted subtree may
  -- hold other sessions of the same kind.
  table.sort(active, older(all))
  local function stillValid()
    local n = 0
    for _, r in ipairs(active) do
      if isValid(all[r]) then n = n + 1 end
    end
    return n
  end
  local i = 1
  while i <= #active and stillValid() + 1 > max do
    if isValid(all[active[i]]) then revokeTree(active[i], 'limit_evicted', 'parent_revoked', evicted, nil) end
    i = i + 1
  end
  return nil
end

-- The per-call tables, emptied rather than made again (nil: made, the first time): a table made
-- per call is garbage, and Lua's collector costs more per call than the emptying (with the
-- collector stopped a rotation took about a fifth less of Redis's CPU). What a call left in them
-- stays until the next call of the same library. A table that held more than 64 keys is let go
-- instead: Lua never shrinks a table, and every later call would walk its empty slots (after the
-- sweep's purge of a long token chain through b2h, 5 -> 37-73 us per small call of that library).
local function emptied(t)
  if t == nil then return {} end
  local n = 0
  for k in pairs(t) do
    t[k] = nil
    n = n + 1
  end
  if n > 64 then return {} end
  return t
end
-- The per-call set-up: every call starts from the same state (as a fresh script would), whether
-- the prelude ran just before it (EVAL) or once when its library was loaded (a Redis Function).
local function reset(keys, argv)
  if not sbyte then ${LUA_CODEC_INIT} end
  callArgs = argv
  base = argv[1]
  now = tonum(argv[2])
  channel = argv[3]
  keepTtl = tonum(argv[4])
  tag = smatch(base, '{([A-Za-z0-9_-]+)}')
  skey = base .. 's'
  S, dirty, ttlWanted = nil, false, keepTtl
  ekey = base .. 'e'
  C, coldR, coldDirty, coldGone, coldTouched = emptied(C), emptied(coldR), emptied(coldDirty), emptied(coldGone), false
  spentNew, spentAny = emptied(spentNew), false
  ended = emptied(ended)
  prefixT = tag .. '.'
  handles = emptied(handles)
  packed = emptied(packed)
end
`;

/**
 * A slot script: the prelude (the calling convention above), then `body`. Called as a Redis
 * Function (lua.ts): the prelude is its library's top level, run once per load, and each call
 * runs reset and the body. `binary`: its reply's bulk strings come to Node as Buffers (a script
 * whose reply holds a packed record, packedOf).
 */
export function script(name: string, body: string, binary = false): LuaScript {
  const s = luaFunctionScript(name, PRELUDE, `reset(KEYS, ARGV)\n${body}`);
  return binary ? { ...s, binary } : s;
}

/**
 * A slot script that may also be called by route: with ARGV[1] = '', it first reads the route of
 * a secret or token hash (session-index.ts) and runs on the slot that route names — one command
 * instead of the route's HGET and then the script. Only on standalone and Sentinel, where a
 * script may reach a key that is not in KEYS; in a Cluster the route lives in another slot and is
 * read by its own command (RedisContext.route), then the script is called as any slot script.
 * Routed call: KEYS[1] the route's bucket, ARGV[5] the hash in its packed form (as h2b gives it,
 * sent as bytes: lua-codec.ts packedHash), ARGV[6] its field in the bucket, ARGV[7] the key
 * prefix; no route (or not a tag): the reply is false and nothing is read.
 * Called on a slot (ARGV[1] its base): ARGV[5] the packed hash, ARGV[6] and ARGV[7] unused.
 * Either way the body's own arguments start at ARGV[8], and the body reads `tag` as usual.
 */
export function routedScript(name: string, body: string, binary = false): LuaScript {
  const route = `
if ARGV[1] == '' then
  local routed = redis.call('HGET', KEYS[1], ARGV[6])
  if not routed or #routed ~= 12 or not string.match(routed, '^[A-Za-z0-9_-]+$') then return false end
  ARGV[1] = ARGV[7] .. '{' .. routed .. '}:'
end`;
  const s = luaFunctionScript(name, PRELUDE, `${route}\nreset(KEYS, ARGV)\n${body}`);
  return binary ? { ...s, binary } : s;
}
