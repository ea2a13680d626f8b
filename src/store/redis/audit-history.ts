// The anomaly history of the Redis audit store (src/store/audit-port.ts `userHistory`,
// `recordLogin`): one hash per user, `P{T}:ah` in the user's Cluster slot (T = userTag), with
// n (logins), h:<hour>, d:<device>, l:<location> (ms last seen) and last (the last located login).
// A login is merged in one script, as `mergeLogin` in audit-port.ts merges it; the hash expires
// HISTORY_TTL_MS after the user's last login.

import { userTag } from '../../domain/secrets.ts';
import { emptyHistory, MAX_KNOWN, type LocatedPoint, type LoginObservation, type UserHistory } from '../audit-port.ts';
import type { RedisConnection } from './connection.ts';
import { evalScript, luaScript } from './lua.ts';

/** How long a user's anomaly history lives after their last login. */
export const HISTORY_TTL_MS = 180 * 24 * 3600 * 1000;

// KEYS[1] = the user's history hash. ARGV: hour, device key, location key, time (ms),
// last located JSON ('' = none), max known, ttl ms. Same merge as mergeLogin in audit-port.ts.
const RECORD_LOGIN = luaScript(`
local k = KEYS[1]
local time = ARGV[4]
local max = tonumber(ARGV[6])
redis.call('HINCRBY', k, 'n', 1)
redis.call('HINCRBY', k, 'h:' .. ARGV[1], 1)
local function remember(prefix, key)
  if key == '' then return end
  local f = prefix .. key
  local cur = redis.call('HGET', k, f)
  if (not cur) or tonumber(cur) < tonumber(time) then redis.call('HSET', k, f, time) end
  if cur then return end
  local all = redis.call('HGETALL', k)
  local items = {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, #prefix) == prefix then items[#items + 1] = { all[i], tonumber(all[i + 1]) } end
  end
  if #items <= max then return end
  table.sort(items, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[1] < b[1]
  end)
  for i = 1, #items - max do redis.call('HDEL', k, items[i][1]) end
end
remember('d:', ARGV[2])
remember('l:', ARGV[3])
if ARGV[5] ~= '' then redis.call('HSET', k, 'last', ARGV[5]) end
redis.call('PEXPIRE', k, ARGV[7])
return 1
`);

export function historyKey(prefix: string, tenantId: string, userId: string): string {
  return `${prefix}{${userTag(tenantId, userId)}}:ah`;
}

export async function readUserHistory(conn: RedisConnection, key: string): Promise<UserHistory> {
  const flat = (await conn.send(key, ['HGETALL', key], true)) as string[];
  const h = emptyHistory();
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const field = flat[i] as string;
    const value = flat[i + 1] as string;
    if (field === 'n') h.logins = Number(value);
    else if (field === 'last') h.lastLocated = JSON.parse(value) as LocatedPoint;
    else if (field.startsWith('h:')) h.hours[Number(field.slice(2))] = Number(value);
    else if (field.startsWith('d:')) h.devices[field.slice(2)] = Number(value);
    else if (field.startsWith('l:')) h.locations[field.slice(2)] = Number(value);
  }
  return h;
}

export async function recordUserLogin(conn: RedisConnection, key: string, o: LoginObservation): Promise<void> {
  await evalScript(conn, RECORD_LOGIN, key, [
    String(o.hour),
    o.deviceKey ?? '',
    o.locationKey ?? '',
    String(Math.floor(o.time)),
    o.located ? JSON.stringify(o.located) : '',
    String(MAX_KNOWN),
    String(HISTORY_TTL_MS),
  ]);
}
