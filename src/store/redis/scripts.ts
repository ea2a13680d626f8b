// The Lua scripts of the Redis session store. Each one runs on ONE hash slot — the slot of a
// user's routing tag (keys.ts) — so it is atomic with respect to every other operation on that
// user's data, across any number of Tessera processes. They are sent by lua.ts (EVALSHA, EVAL on
// NOSCRIPT). The calling convention, the record layout and the shared rules are the prelude in
// slot-lua.ts; the refresh-token scripts are in refresh-scripts.ts.
//
// The global indexes (routing, tenant listing, due index) live in other slots and are never
// touched by a script; session-index.ts writes them before the script and cleans up after a
// refusal.

import { script } from './slot-lua.ts';

/**
 * create-with-limit. Race closed: simultaneous logins of one user each counting the same N valid
 * sessions and all getting in, so that N + k sessions exist under a limit of N (or two evicting
 * the same oldest session and both keeping theirs). Counting, evicting (with subtrees) and
 * storing are one step, so the limit holds however many logins race.
 * ARGV[5] handle, ARGV[6] limit kind ('' = no limit), ARGV[7] max, ARGV[8] policy,
 * ARGV[9..] session fields.
 * Reply: {'ok', record, {evicted records}} | {'limit', activeCount} | {'exists'} | {'secret_exists'}
 *      | {'parent_invalid'}
 */
export const CREATE = script(
  'create',
  `
local r = rOf(ARGV[5])
local all = sessions()
if all[r] then return { 'exists' } end
local f = readFields(9)
if findSecret(h2b(f['secretHash'])) then return { 'secret_exists' } end
if not parentOk(f) then return { 'parent_invalid' } end
local evicted = {}
local refused = applyLimit(f, ARGV[6], ARGV[7], ARGV[8], evicted)
if refused then return { 'limit', refused } end
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
 * The successor counts against the user's limit like a login (applyLimit, same step).
 * ARGV[5] predecessor handle, ARGV[6] limit kind ('' = none), ARGV[7] max, ARGV[8] policy,
 * ARGV[9..] successor fields.
 * Reply: {'renewed', record, 1|0, {evicted records}} | {'still_valid', record} | {'revoked', record}
 *        | {'missing'} | {'limit', activeCount} | {'exists'} | {'secret_exists'} | {'parent_invalid'}
 *        | {'mismatch'}
 */
export const RENEW = script(
  'renew',
  `
local p, pr = get(ARGV[5])
if not p then return { 'missing' } end
local all = sessions()
local linked = xget(p, SUCC)
if linked then
  if all[linked] then return { 'renewed', pairsOf(linked, all[linked]), 0, {} } end
  return { 'missing' }
end
if p[ST] == RV then return { 'revoked', pairsOf(pr, p) } end
if isValid(p) then return { 'still_valid', pairsOf(pr, p) } end
local f = readFields(9)
if p[TEN] ~= f['tenantId'] or p[USR] ~= f['userId'] then return { 'mismatch' } end
local r = rOf(f['handle'])
if not r then return { 'mismatch' } end
if all[r] then return { 'exists' } end
if findSecret(h2b(f['secretHash'])) then return { 'secret_exists' } end
if not parentOk(f) then return { 'parent_invalid' } end
local evicted = {}
local refused = applyLimit(f, ARGV[6], ARGV[7], ARGV[8], evicted)
if refused then return { 'limit', refused } end
local rec = recordOf(f)
writeSession(r, rec)
xset(p, SUCC, r)
return finish({ 'renewed', pairsOf(r, rec), 1, evicted })
`,
);

/**
 * touch. Race closed: activity recorded on a session that a concurrent revoke, eviction or
 * expiry has just ended — check and write are one step, so an ended session never gets its idle
 * expiry pushed forward (it would read as active again).
 * ARGV[5] handle, ARGV[6] new idle expiry ('' = none). Reply: {record, previous idle or ''} | nil
 */
export const TOUCH = script(
  'touch',
  `
local rec, r = get(ARGV[5])
if not isValid(rec) then return false end
local before = rec[IDLE]
if ARGV[6] == '' then rec[IDLE] = false else rec[IDLE] = tonumber(ARGV[6]) end
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
      local kids = all[r] and xget(all[r], KIDS)
      if kids then for _, c in ipairs(kids) do queue[#queue + 1] = c end end
    end
  end
  -- Its ancestors stay too: revoking the idp parent of the kept app session would leave that
  -- session active under an ended parent (the same rule as SQLite's).
  local p = all[kr] and xget(all[kr], PAR)
  while p and not keep[p] do
    keep[p] = true
    p = all[p] and xget(all[p], PAR)
  end
end
local order = {}
for r, rec in pairs(all) do
  if rec[USR] then order[#order + 1] = r end
end
table.sort(order, older(all))
local out = {}
for _, r in ipairs(order) do
  local rec = all[r]
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
 * Read by secret hash (the record of the slot with that hash). No race to close: a script so
 * that the slot's value is read and searched in one step.
 * ARGV[5] secret hash. Reply: record | nil
 */
export const BY_SECRET = script(
  'by-secret',
  `
local r, rec = findSecret(h2b(ARGV[5]))
if not r then return false end
return pairsOf(r, rec)
`,
);

/**
 * Read by handles (all of one slot). No race to close: a read.
 * ARGV[5..] handles. Reply: {record | nil per handle}; with no handle, every record of the slot.
 */
export const GET = script(
  'get',
  `
local out = {}
if #ARGV < 5 then
  for r, rec in pairs(sessions()) do out[#out + 1] = pairsOf(r, rec) end
  return out
end
for i = 5, #ARGV do
  local rec, r = get(ARGV[i])
  if rec then out[#out + 1] = pairsOf(r, rec) else out[#out + 1] = false end
end
return out
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
local all = sessions()
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
      ended[#ended + 1] = handleOf(r)
      out[#out + 1] = { 'expired', pairsOf(r, rec), fmt(rec[ABS] + retention) }
    end
  elseif now < rec[ABS] + retention then
    out[#out + 1] = { 'later', fmt(rec[ABS] + retention) }
  else
    local gone = { 'purged', rec[TEN], b2h(rec[SEC]) }
    if rec[TOK] then for _, t in ipairs(rec[TOK]) do gone[#gone + 1] = b2h(t[1]) end end
    local p = xget(rec, PAR)
    if p and all[p] then
      local kids = {}
      for _, c in ipairs(xget(all[p], KIDS) or {}) do
        if c ~= r then kids[#kids + 1] = c end
      end
      if #kids == 0 then kids = false end
      xset(all[p], KIDS, kids)
    end
    all[r] = nil
    dirty = true
    out[#out + 1] = gone
  end
end
return finish(out)
`,
);
