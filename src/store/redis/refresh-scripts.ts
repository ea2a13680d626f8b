// The refresh-token scripts of the Redis sessions adapter; calling convention and prelude as in
// scripts.ts (they run on the slot of the token's session).

import { script } from './scripts.ts';

/**
 * add refresh token. Races closed: a token added for a session that is disappearing, and a
 * duplicated add resetting a token that has already been rotated (which would make a stolen,
 * rotated token current again) — an existing token is never overwritten. The token lives as long
 * as its session record.
 * ARGV[4] token hash, ARGV[5..] token fields. Reply: {'ok', TTL ms} | {'no_session'} | {'exists'}
 */
export const ADD_REFRESH = script(
  'add-refresh',
  `
local rk = base .. 'rt:' .. ARGV[4]
local f, list = readFields(5)
local ttl = redis.call('PTTL', skey(f['sessionHandle']))
if ttl == -2 then return { 'no_session' } end
if redis.call('EXISTS', rk) == 1 then return { 'exists' } end
redis.call('HSET', rk, unpack(list))
if ttl > 0 then redis.call('PEXPIRE', rk, ttl) end
return { 'ok', ttl }
`,
);

/**
 * rotate refresh token (RFC 9700 4.14.2). Races closed: several tabs refreshing with the same token
 * at once — exactly one rotates it, the others land in the grace window and get the same
 * successor; and a thief replaying a rotated token after the grace window while the legitimate
 * client refreshes — the reuse revokes the session subtree in the same step, so neither side can
 * rotate again afterwards.
 * ARGV[4] presented hash, ARGV[5] successor hash, ARGV[6] grace ms, ARGV[7] new idle expiry ('' = none).
 * Reply: {'rotated', session, successor token, previous idle or '', TTL ms}
 *      | {'grace', session, presented token}
 *      | {'reused', session, {revoked records}} | {'inactive', session} | {'unknown'} | {'successor_exists'}
 */
export const ROTATE = script(
  'rotate',
  `
local rk = base .. 'rt:' .. ARGV[4]
local t = redis.call('HMGET', rk, 'sessionHandle', 'rotatedAt', 'successorHash', 'tenantId', 'userId')
if not t[1] then return { 'unknown' } end
local sk = skey(t[1])
if redis.call('EXISTS', sk) == 0 then return { 'unknown' } end
-- An ended session answers inactive whatever token is shown: after a reuse revoked it, the
-- whole token family is dead and nothing more is revoked or reported.
if not isValid(sk) then return { 'inactive', redis.call('HGETALL', sk) } end
if not t[2] then
  local nk = base .. 'rt:' .. ARGV[5]
  if redis.call('EXISTS', nk) == 1 then return { 'successor_exists' } end
  redis.call('HSET', rk, 'rotatedAt', nowS, 'successorHash', ARGV[5])
  redis.call('HSET', nk, 'tokenHash', ARGV[5], 'sessionHandle', t[1], 'tenantId', t[4], 'userId', t[5], 'createdAt', nowS)
  local ttl = redis.call('PTTL', sk)
  if ttl > 0 then redis.call('PEXPIRE', nk, ttl) end
  local before = redis.call('HGET', sk, 'idleExpiresAt')
  -- The idle expiry never passes the absolute expiry (the same cap as SQLite's).
  local idle = ARGV[7]
  local abs = redis.call('HGET', sk, 'absoluteExpiresAt')
  if idle ~= '' and abs and tonumber(idle) > tonumber(abs) then idle = abs end
  if idle == '' then redis.call('HDEL', sk, 'idleExpiresAt') else redis.call('HSET', sk, 'idleExpiresAt', idle) end
  redis.call('HSET', sk, 'lastSeenAt', nowS)
  return { 'rotated', redis.call('HGETALL', sk), redis.call('HGETALL', nk), before or '', ttl }
end
if now <= tonumber(t[2]) + tonumber(ARGV[6]) then
  return { 'grace', redis.call('HGETALL', sk), redis.call('HGETALL', rk) }
end
local out = {}
revokeTree(t[1], 'refresh_reuse', 'parent_revoked', out, nil)
return finish({ 'reused', redis.call('HGETALL', sk), out })
`,
);
