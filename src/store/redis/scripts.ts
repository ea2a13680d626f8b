// The Lua scripts of the Redis session store. Each one runs on ONE hash slot — the slot of a
// user's routing tag (keys.ts) — so it is atomic with respect to every other operation on that
// user's data, across any number of Tessera processes. They are sent by lua.ts (EVALSHA, EVAL on
// NOSCRIPT). The calling convention, the record layout and the shared rules are the prelude in
// slot-lua.ts; the refresh-token scripts are in refresh-scripts.ts.
//
// The global indexes (routing, tenant listing, due index) live in other slots and are never
// touched by a script; session-index.ts writes them before the script and cleans up after a
// refusal.

import { routedScript, script } from './slot-lua.ts';
import { hotScript } from './lua.ts';

/**
 * create-with-limit. Race closed: simultaneous logins of one user each counting the same N valid
 * sessions and all getting in, so that N + k sessions exist under a limit of N (or two evicting
 * the same oldest session and both keeping theirs). Counting, evicting (with subtrees) and
 * storing are one step, so the limit holds however many logins race.
 * The per-user cap on live records (slot-lua.ts makeRoom) is applied in the same step, after the
 * limit's evictions: at the cap the oldest records no longer valid leave the live value, then the
 * oldest valid sessions are revoked `user_capacity` (in the evicted records); never a refusal.
 * ARGV[5] handle, ARGV[6] limit kind ('' = no limit), ARGV[7] max, ARGV[8] policy, ARGV[9] cap
 * ('0' = none), ARGV[10..] session fields.
 * Reply: {'ok', record, {evicted records}} | {'limit', activeCount} | {'exists'}
 *      | {'secret_exists'} | {'parent_invalid'}
 */
export const CREATE = script(
  'create',
  `
local r = rOf(ARGV[5])
if recOf(r) then return { 'exists' } end
local f = readFields(10)
if findSecret(h2b(f['secretHash'])) then return { 'secret_exists' } end
if not parentOk(f) then return { 'parent_invalid' } end
local evicted = {}
local refused = applyLimit(f, ARGV[6], ARGV[7], ARGV[8], evicted)
if refused then return { 'limit', refused } end
makeRoom(ARGV[9], f, evicted)
local rec = recordOf(f)
writeSession(r, rec)
return finish({ 'ok', pairsOf(r, rec), evicted })
`,
);

/**
 * renew-once-after-expiry (docs/api.md §Consent redirects, "The session after a return"). Race
 * closed: several consent returns whose starting session expired at the bank each creating a new
 * session for the user. The first call links its successor to the predecessor; every later or
 * concurrent call finds the link and gets that same successor.
 * The successor counts against the user's limit and cap like a login (applyLimit, makeRoom, same step).
 * ARGV[5] predecessor handle, ARGV[6] limit kind ('' = none), ARGV[7] max, ARGV[8] policy,
 * ARGV[9] cap ('0' = none), ARGV[10..] successor fields.
 * Reply: {'renewed', record, 1|0, {evicted records}} | {'still_valid', record} | {'revoked', record}
 *        | {'missing'} | {'limit', activeCount} | {'exists'} | {'secret_exists'}
 *        | {'parent_invalid'} | {'mismatch'}
 */
export const RENEW = script(
  'renew',
  `
local p, pr = get(ARGV[5])
if not p then return { 'missing' } end
local linked = xget(p, SUCC)
if linked then
  local lrec = recOf(linked)
  if lrec then return { 'renewed', pairsOf(linked, lrec), 0, {} } end
  return { 'missing' }
end
if p[ST] == RV then return { 'revoked', pairsOf(pr, p) } end
if isValid(p) then return { 'still_valid', pairsOf(pr, p) } end
local f = readFields(10)
if p[TEN] ~= f['tenantId'] or p[USR] ~= f['userId'] then return { 'mismatch' } end
local r = rOf(f['handle'])
if not r then return { 'mismatch' } end
if recOf(r) then return { 'exists' } end
if findSecret(h2b(f['secretHash'])) then return { 'secret_exists' } end
if not parentOk(f) then return { 'parent_invalid' } end
local evicted = {}
local refused = applyLimit(f, ARGV[6], ARGV[7], ARGV[8], evicted)
if refused then return { 'limit', refused } end
makeRoom(ARGV[9], f, evicted)
local rec = recordOf(f)
writeSession(r, rec)
xset(p, SUCC, r)
changed(p)
return finish({ 'renewed', pairsOf(r, rec), 1, evicted })
`,
);

/**
 * touch. Race closed: activity recorded on a session that a concurrent revoke, eviction or
 * expiry has just ended — check and write are one step, so an ended session never gets its idle
 * expiry pushed forward (it would read as active again). The new idle expiry is capped at the
 * absolute expiry, as SQLite's and PostgreSQL's touch (and REDEEM here) cap it.
 * ARGV[5] handle, ARGV[6] new idle expiry ('' = none). Reply: {record, previous idle or ''} | nil
 */
export const TOUCH = script(
  'touch',
  `
local rec, r = get(ARGV[5])
if not isValid(rec) then return false end
local before = rec[IDLE]
if ARGV[6] == '' then rec[IDLE] = false else rec[IDLE] = math.min(tonumber(ARGV[6]), rec[ABS]) end
rec[SEEN] = now
dirty = true
local prev = ''
if before then prev = fmt(before) end
return finish({ pairsOf(r, rec), prev })
`,
);

/**
 * updateSessionData. Race closed: two concurrent patches of different keys (a read-modify-write of
 * the whole document would drop one of them) and a patch of a session being revoked. The merge is
 * per top-level key (set or remove the key's JSON text), so data stays exact.
 * ARGV[5] handle, ARGV[6..] pairs of field `d:<key>` and JSON value ('' = remove). Reply: record | nil
 */
export const UPDATE_DATA = script(
  'update-data',
  `
local rec, r = get(ARGV[5])
if not isValid(rec) then return false end
local d = rec[DATA] or {}
for i = 6, #ARGV, 2 do
  local k = string.sub(ARGV[i], 3)
  if ARGV[i + 1] == '' then d[k] = nil else d[k] = ARGV[i + 1] end
end
if next(d) == nil then d = false end
rec[DATA] = d
dirty = true
return finish(pairsOf(r, rec))
`,
);

/**
 * revoke subtree. Race closed: a child created under the session while it is being revoked
 * (create checks the parent's validity in its own atomic step, so it either lands before and is
 * revoked here, or after and is refused), and two revokes both reporting the same sessions.
 * ARGV[5] handle, ARGV[6] reason. Reply: {records moved to revoked, root first}
 */
export const REVOKE = script(
  'revoke',
  `
local out = {}
local r = rOf(ARGV[5])
if r then revokeTree(r, ARGV[6], 'parent_revoked', out, nil) end
return finish(out)
`,
);

/**
 * revoke user (except one subtree). Race closed: a login of the user completing during "log out
 * everywhere" — it lands entirely before (and is revoked) or after (and survives); never half.
 * ARGV[5] tenantId, ARGV[6] userId, ARGV[7] reason, ARGV[8] handle whose subtree is kept ('' = none).
 * Reply: {records moved to revoked, oldest first}
 */
export const REVOKE_USER = script(
  'revoke-user',
  `
local all = sessions()
local keep = {}
local kr = rOf(ARGV[8])
if kr then
  local queue, i = { kr }, 1
  while i <= #queue do
    local r = queue[i]
    i = i + 1
    if not keep[r] then
      keep[r] = true
      local rec = recOf(r)
      local kids = rec and xget(rec, KIDS)
      if kids then for _, c in ipairs(kids) do queue[#queue + 1] = c end end
    end
  end
  -- Its ancestors stay too: revoking the idp parent of the kept app session would leave that
  -- session active under an ended parent (the same rule as SQLite's).
  local krec = recOf(kr)
  local p = krec and xget(krec, PAR)
  while p and not keep[p] do
    keep[p] = true
    local prec = recOf(p)
    p = prec and xget(prec, PAR)
  end
end
-- Only live records can be ended: the ended ones (slot-lua.ts) are never read here.
local order = {}
for r, rec in pairs(all) do
  if rec[USR] then order[#order + 1] = r end
end
table.sort(order, older(all))
local out = {}
local recs = {}
for _, r in ipairs(order) do recs[r] = all[r] end
for _, r in ipairs(order) do
  local rec = recs[r]
  if not keep[r] and rec[TEN] == ARGV[5] and rec[USR] == ARGV[6] and isEndable(rec) then
    revokeOne(r, rec, ARGV[7])
    out[#out + 1] = pairsOf(r, rec)
  end
end
return finish(out)
`,
);

/**
 * revoke listed handles of one slot (tenant-wide revocation, one call per slot). Race closed: the
 * same as REVOKE, per session tree; a tenant revocation as a whole spans slots and is not one step.
 * ARGV[5] tenantId, ARGV[6] reason, ARGV[7..] handles. Reply: {records moved to revoked}
 */
export const REVOKE_HANDLES = script(
  'revoke-handles',
  `
local out = {}
for i = 7, #ARGV do
  local rec, r = get(ARGV[i])
  if rec and rec[TEN] == ARGV[5] then revokeTree(r, ARGV[6], ARGV[6], out, nil) end
end
return finish(out)
`,
);

/**
 * consume-once. Race closed: two tabs (or an attacker replaying a captured redirect cookie)
 * presenting the same single-use secret at the same moment; exactly one finds it valid and
 * revokes it, the others find it revoked.
 * ARGV[5] secret hash. Reply: the consumed record (status revoked) | nil
 */
export const CONSUME = script(
  'consume',
  `
local r, rec = findSecret(h2b(ARGV[5]))
if not r or not isValid(rec) then return false end
local out = {}
revokeTree(r, 'consumed', 'parent_revoked', out, nil)
return finish(out[1])
`,
);

/**
 * The redeem's steps once the record with the secret hash is found and valid (Lua locals `r`,
 * `rec`), shared by REDEEM and LOOK_UP_REDEEM: `handle` and `idle` the Lua expressions of the
 * target's handle and of its new idle expiry ('' = none); `extra` more entries of the 'redeemed'
 * reply. Its arguments start at the Lua local `a`: ARGV[a] (REDEEM's idle expiry), ARGV[a + 1] refresh-token hash in its packed form
 * (lua-codec.ts packedHash, sent as bytes; '' = none), ARGV[a + 2] its createdAt, ARGV[a + 3] the
 * refresh token's route key and ARGV[a + 4] its field, when the script writes the route itself
 * ('' = the caller wrote it: in a Cluster the route lives in another slot) — written with HSETNX
 * before the checks, so before the token it leads to, and taken back (HDEL) when the exchange does
 * not redeem (one command where a route read and a route write were two); ARGV[a + 5] n, then n
 * expected data entries
 * (field `d:<key>`, JSON), then the patch (field `d:<key>`, JSON or '' = remove).
 */
function redeemSteps(handle: string, idle: string, extra: string): string {
  return `
local hb = false
-- wrote: this call wrote the refresh token's route (HSETNX), taken back by a refusal below.
local wrote = false
if ARGV[a + 1] ~= '' then
  hb = ARGV[a + 1]
  if ARGV[a + 3] == '' then
    if findToken(hb) then return { 'token_exists' } end
  elseif redis.call('HSETNX', ARGV[a + 3], ARGV[a + 4], tag) == 1 then
    -- The route was not there (now written, before the token it leads to): no ended record or
    -- spent token holds hb (findToken's unrouted), so only the live records are searched.
    wrote = true
    if findToken(hb, true) then
      redis.call('HDEL', ARGV[a + 3], ARGV[a + 4])
      return { 'token_exists' }
    end
  else
    local routed = redis.call('HGET', ARGV[a + 3], ARGV[a + 4])
    if findToken(hb) then return { 'token_exists' } end
    if routed ~= tag then return { 'route_taken' } end
  end
end
-- The consumed record is packed only for an unusable answer (packedOf below: the same
-- record as revokeTree would have appended, the root, revoked first). A one-time token's
-- record has no children (the usual case): revoked as revokeTree would, without its walk.
-- A flow record's end is not published (finish): no session cache keeps a flow record
-- (session-cache.ts remember), so no process has anything to forget or wait for; its
-- children's ends, if any, are.
local quiet = rec[KIND] == KINDCODE['flow']
if xget(rec, KIDS) then
  revokeTree(r, 'consumed', 'parent_revoked', nil, nil, quiet)
else
  revokeOne(r, rec, 'consumed', quiet)
end
local t, tr = get(${handle})
local ok = t ~= nil and isValid(t) and t[TEN] == rec[TEN] and t[USR] == rec[USR]
local n = tonumber(ARGV[a + 5])
local d = (t and t[DATA]) or {}
for i = a + 6, a + 5 + 2 * n, 2 do
  if not ok then break end
  ok = d[string.sub(ARGV[i], 3)] == ARGV[i + 1]
end
if not ok then
  if wrote then redis.call('HDEL', ARGV[a + 3], ARGV[a + 4]) end
  return finish({ 'unusable', packedOf(r, rec, 0) })
end
for i = a + 6 + 2 * n, #ARGV, 2 do
  local k = string.sub(ARGV[i], 3)
  if ARGV[i + 1] == '' then d[k] = nil else d[k] = ARGV[i + 1] end
end
if next(d) == nil then d = false end
t[DATA] = d
local before = t[IDLE]
if ${idle} == '' then
  t[IDLE] = false
else
  local idle = tonumber(${idle})
  if idle > t[ABS] then idle = t[ABS] end
  t[IDLE] = idle
end
t[SEEN] = now
if hb then
  local toks = t[TOK] or {}
  toks[#toks + 1] = { hb, tonumber(ARGV[a + 2]), false, false }
  t[TOK] = toks
end
changed(t)
local prev = ''
if before then prev = fmt(before) end
return finish({ 'redeemed', packedOf(tr, t, 0), prev${extra} })
`;
}

/**
 * redeem: consume-once and the activation of the session the secret stands for, in one step
 * (the SSO token exchange). Races closed: two clients exchanging one token at once — exactly one
 * consumes it and activates the target, the other finds it consumed; and an end of the target
 * (a revoke, an eviction) during the exchange — the target is checked and changed in the same step.
 * A refresh token that exists already refuses before anything changes.
 * Routed (slot-lua.ts routedScript): ARGV[5] the secret hash (packed), ARGV[6] and ARGV[7] its
 * route's field and the key prefix when called by route; no route: false (nothing consumed).
 * ARGV[8] target handle, ARGV[9] new idle expiry ('' = none), ARGV[10] refresh-token hash in its
 * packed form (lua-codec.ts packedHash, sent as bytes; '' = none), ARGV[11] its createdAt, ARGV[12] the refresh token's route key and ARGV[13] its
 * field, when the script writes the route itself ('' = the caller wrote it: in a Cluster the
 * route lives in another slot) — written first, before the token it leads to, and taken back
 * when the exchange does not redeem (redeemSteps); ARGV[14] n, ARGV[15..14+2n] expected data (field `d:<key>`, JSON), then the patch
 * (field `d:<key>`, JSON or '' = remove).
 * Reply: {'redeemed', target record (packed: slot-lua.ts packedOf), previous idle or ''} (the
 *      consumed record is not sent back: the caller has it from its look-up)
 *      | {'unusable', consumed record (packed)} | {'not_consumed'} | {'token_exists'}
 *      | {'route_taken'} (the refresh token's route names another slot: nothing was changed)
 *      | false (called by route: the secret has none)
 * The target rule is domain/session.ts redeemableInto's.
 */
export const REDEEM = routedScript(
  'redeem',
  `
local r, rec = findSecret(ARGV[5])
if not r or not isValid(rec) then return { 'not_consumed' } end
local a = 9
${redeemSteps('ARGV[8]', 'ARGV[a]', '')}
`,
  true,
);

/**
 * Read by secret hash (the record of the slot with that hash). No race to close: a script so
 * that the slot's value is read and searched in one step.
 * ARGV[5] secret hash. Reply: record | nil
 */
export const BY_SECRET = script(
  'by-secret',
  `
local r, rec = findSecret(h2b(ARGV[5]))
if not r then return finish(false) end
return finish(pairsOf(r, rec))
`,
);

/**
 * Read by secret hash with the session's user (getSessionWithUserBySecretHash): the record of the
 * slot with that hash and its user's record `P{tag}:u:<userId>` (accounts.ts writes it as JSON),
 * which lives in the same slot. No race to close: a read, in one step so that one command answers
 * both (and, called by route, finds the slot too: slot-lua.ts routedScript).
 * ARGV[5] secret hash, packed (ARGV[6], ARGV[7]: its route, when called by route).
 * Reply: {record (packed: slot-lua.ts packedOf), user JSON | false} | false
 */
export const BY_SECRET_WITH_USER = routedScript(
  'by-secret-with-user',
  `
local r, rec = findSecret(ARGV[5])
if not r then return finish(false) end
local user = false
if rec[USR] then user = redis.call('GET', base .. 'u:' .. rec[USR]) end
return finish({ packedOf(r, rec, 0), user })
`,
  true,
);

/**
 * look-up-and-redeem (sessions-port.ts lookUpAndRedeem): BY_SECRET_WITH_USER and REDEEM in one
 * step, when the caller's plan holds for the record and its user (planHolds: the record's tenant
 * among those given and kind, data entries equal to the JSON given or absent, its data entry naming the target a
 * string, its user stored — the user's record `P{tag}:u:<userId>`, JSON, of the record's tenant
 * and user — and not disabled). The plan is checked before anything changes; when it does not
 * hold the answer is the look-up's. Races closed: those of REDEEM (the record is read and
 * consumed in the same step).
 * Routed as BY_SECRET_WITH_USER (ARGV[5..7]). ARGV[8] k, ARGV[9..8+2k] the plan's tenants, each
 * with the target's new idle expiry for it ('' = none); then its kind, the data key naming the
 * target, m, and m expected entries (field `d:<key>`, JSON, or '' = absent); then REDEEM's
 * arguments from the refresh-token hash on (redeemSteps, ARGV[a + 1]: a = 11 + 2k + 2m).
 * Reply: {'looked', record (packed), user JSON | false} (the plan does not hold: nothing changed)
 *      | {'redeemed', target record (packed), previous idle or '', user JSON}
 *      | REDEEM's other answers | false (no record with the hash, or no route)
 */
export const LOOK_UP_REDEEM = hotScript(routedScript(
  'look-up-redeem',
  `
local r, rec = findSecret(ARGV[5])
if not r then return finish(false) end
local user = false
if rec[USR] then user = redis.call('GET', base .. 'u:' .. rec[USR]) end
local k = tonumber(ARGV[8])
local idleText = false
for i = 9, 8 + 2 * k, 2 do
  if ARGV[i] == rec[TEN] then
    idleText = ARGV[i + 1]
    break
  end
end
local p = 9 + 2 * k
local m = tonumber(ARGV[p + 2])
local a = p + 2 + 2 * m
local holds = user ~= false and idleText ~= false and rec[KIND] == KINDCODE[ARGV[p]]
local data = rec[DATA] or {}
if holds then
  for i = p + 3, p + 2 + 2 * m, 2 do
    local v = data[ssub(ARGV[i], 3)]
    if ARGV[i + 1] == '' then holds = v == nil else holds = v == ARGV[i + 1] end
    if not holds then break end
  end
end
-- The target's handle: a JSON string without escapes (what a handle is): a quote, then none
-- but the last, and no backslash (plain finds: a pattern is matched character by character).
local th = holds and data[ARGV[p + 1]]
if th and sbyte(th, 1) == 34 and string.find(th, '"', 2, true) == #th and not string.find(th, '\\\\', 1, true) then th = ssub(th, 2, -2) else holds = false end
if holds then
  -- The user's record as accounts.ts writes it (JSON.stringify: its id, then its tenant, first)
  -- is checked without decoding it — no table made — when its text has no escape and no
  -- "disabled" key (so its strings are their literal bytes and it is not disabled) and the
  -- record's ids hold no quote: then it is not the user unless it starts with exactly those two
  -- fields, and is taken as the user when it also ends with '}' (a text cut short does not)
  -- and names no "id" or "tenantId" again (JSON.parse keeps a repeated key's last value; found
  -- as 'id"' and 'Id"', whose first letters are rarer in the text than a quote). Any other text
  -- is decoded. A text with that start and end but not JSON in between is not told apart: the
  -- store writes the record with JSON.stringify only.
  local find, uid, ten = string.find, rec[USR], rec[TEN]
  local decode = true
  if not find(user, '\\\\', 1, true) and not find(user, '"disabled"', 1, true) and not find(uid, '"', 1, true) and not find(ten, '"', 1, true) then
    local head = '{"id":"' .. uid .. '","tenantId":"' .. ten .. '",'
    if find(user, head, 1, true) ~= 1 then
      holds, decode = false, false
    elseif sbyte(user, -1) == 125 and not find(user, 'id"', #head, true) and not find(user, 'Id"', #head, true) then
      decode = false
    end
  end
  if decode then
    local ok, u = pcall(cjson.decode, user)
    holds = ok and type(u) == 'table' and u.tenantId == ten and u.id == uid and u.disabled ~= true
  end
end
if not holds then return finish({ 'looked', packedOf(r, rec, 0), user }) end
if not isValid(rec) then return finish({ 'not_consumed' }) end
${redeemSteps('th', 'idleText', ', user')}
`,
  true,
));

/**
 * Read by handles (all of one slot). No race to close: a read.
 * ARGV[5..] handles. Reply: {record | nil per handle}
 */
export const GET = script(
  'get',
  `
local out = {}
for i = 5, #ARGV do
  local rec, r = get(ARGV[i])
  if rec then out[#out + 1] = pairsOf(r, rec) else out[#out + 1] = false end
end
return finish(out)
`,
);

/**
 * A slot's records for a listing of its user. No race to close: a read.
 * ARGV[5] 'live': the live records only (enough for a listing of active sessions: an ended record
 * is never active), read from the one value whatever the user's history; 'all': the ended ones
 * too (every field of P{tag}:e). Reply: {record...}
 */
export const LIST = script(
  'list',
  `
local out = {}
for r, rec in pairs(sessions()) do out[#out + 1] = pairsOf(r, rec) end
if ARGV[5] == 'all' then
  local stored = redis.call('HGETALL', ekey)
  for i = 1, #stored, 2 do
    local f = stored[i]
    if string.sub(f, 1, 1) == 'r' then
      local r = string.sub(f, 2)
      if C[r] == nil then out[#out + 1] = pairsOf(r, decode(cmsgpack.unpack(stored[i + 1]))) end
    end
  end
  -- Those this call has in hand (moved here by the first read of the value).
  for r, rec in pairs(C) do
    if rec then out[#out + 1] = pairsOf(r, rec) end
  end
end
return finish(out)
`,
);

/**
 * sweep (the due handles of one slot, for sweepExpired). Races closed: several sweepers (in
 * several processes) taking the same due handle from the due index — only the one whose script
 * finds it still active and due marks it expired and reports it, so each session.expired event is
 * emitted once; a touch that moved the expiry after the index was read — then it is not due and
 * its real expiry is returned for re-scoring; and a purge racing a read — the record is taken
 * out of the slot's value in one step and its global index entries are returned for cleanup.
 * ARGV[5] retention ms, ARGV[6..] handles.
 * Reply per handle: {'expired', record, purge time} | {'notdue', expiry} | {'later', purge time}
 *                 | {'purged', tenantId, secret hash, token hashes...} | {'gone'}
 */
export const SWEEP = script(
  'sweep',
  `
local retention = tonumber(ARGV[5])
local out = {}
for i = 6, #ARGV do
  local rec, r = get(ARGV[i])
  if not rec then
    out[#out + 1] = { 'gone' }
  elseif rec[ST] == A then
    local e = rec[ABS]
    if rec[IDLE] and rec[IDLE] < e then e = rec[IDLE] end
    if now < e then
      out[#out + 1] = { 'notdue', fmt(e) }
    else
      rec[ST] = EX
      xset(rec, ENDT, e)
      changed(rec)
      ended[#ended + 1] = handleOf(r)
      -- Idle-expired: still renewable, so live until its absolute expiry (looked at again then).
      local nextAt = rec[ABS]
      if now >= rec[ABS] then
        toCold(r, rec)
        nextAt = rec[ABS] + retention
      end
      out[#out + 1] = { 'expired', pairsOf(r, rec), fmt(nextAt) }
    end
  elseif now < rec[ABS] + retention then
    local nextAt = rec[ABS] + retention
    if now < rec[ABS] and rec[ST] == EX then nextAt = rec[ABS] else toCold(r, rec) end
    out[#out + 1] = { 'later', fmt(nextAt) }
  else
    local gone = { 'purged', rec[TEN], b2h(rec[SEC]) }
    if rec[TOK] then for _, t in ipairs(rec[TOK]) do gone[#gone + 1] = b2h(t[1]) end end
    unlink(r, rec)
    for _, h in ipairs(drop(r, rec)) do gone[#gone + 1] = b2h(h) end
    out[#out + 1] = gone
  end
end
return finish(out)
`,
);
