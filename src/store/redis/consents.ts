// ConsentStore over Redis. Every key of a user's consents lives in the user's hash slot, next to
// the user's sessions (`P{T}:`, T = userTag(tenantId, userId)), so each operation is one Lua
// script on one node of a Cluster:
//
//   P{T}:cn:<id>        HASH    one consent (numbers as decimal strings; `payment` as JSON)
//   P{T}:cns            ZSET    the user's consent ids, scored by createdAt (the listing)
//   P{T}:cais:<bankId>  STRING  id of the user's valid (confirmed) AIS consent for that bank
//
// No global index is needed: every consent call names its user. Consents do not expire as keys:
// like users, they are the user's records (a pending consent past its deadline reads as
// `expired`, see domain/consent.ts).
//
// Calling convention as in scripts.ts: KEYS[1] is the user's listing key (it routes the call in
// a Cluster), ARGV[1] the slot's key base `P{T}:`, ARGV[2] `now` in epoch ms; the rest per script.

import type { Consent, ConsentDecision, ConsentType, Payment, StoredConsentStatus } from '../../domain/consent.ts';
import { Conflict } from '../../domain/errors.ts';
import { userTag } from '../../domain/secrets.ts';
import { CONSENT_LIST_MAX, type ConsentStore, type EndResult, type ListConsentsQuery, type SettleResult } from '../consent-port.ts';
import { checkLimit, decodeCursor, pageOf, type Page } from '../page.ts';
import { fieldMap, num } from './codec.ts';
import { toStoreError, type RedisConnection } from './connection.ts';
import type { RedisKeys } from './keys.ts';
import { evalScript, luaScript, type LuaScript } from './lua.ts';

const PRELUDE = `
local base = ARGV[1]
local nowS = ARGV[2]
local now = tonumber(nowS)
local lkey = base .. 'cns'
local function ckey(id) return base .. 'cn:' .. id end
local function aiskey(bank) return base .. 'cais:' .. bank end
`;

function script(name: string, body: string): LuaScript {
  return luaScript(`-- tessera:${name}\n${PRELUDE}\n${body}`);
}

/**
 * create. Race closed: two creates with one id both writing (the second would overwrite the
 * first's record); the existence check and the write are one step.
 * ARGV[3] id, ARGV[4] createdAt, ARGV[5..] fields. Reply: {'ok', record} | {'exists'}
 */
const CREATE = script(
  'consent-create',
  `
local k = ckey(ARGV[3])
if redis.call('EXISTS', k) == 1 then return { 'exists' } end
local list = {}
for i = 5, #ARGV do list[#list + 1] = ARGV[i] end
redis.call('HSET', k, unpack(list))
redis.call('ZADD', lkey, ARGV[4], ARGV[3])
return { 'ok', redis.call('HGETALL', k) }
`,
);

/**
 * settle (confirm or reject), the rule of domain/consent.ts settleConsent. Races closed: two
 * returns settling one consent (exactly one finds it pending), and two AIS confirmations for one
 * bank each superseding the previous valid consent and both staying confirmed — the `cais:`
 * pointer is read and moved in the same step, so exactly one confirmed AIS consent per bank
 * remains, the one confirmed last.
 * ARGV[3] id, ARGV[4] 'confirmed' | 'rejected' | 'revoked' | 'expired'.
 * Reply: {'settled', record, {superseded records}} | {'not_pending', record} | {'expired', record} | {'missing'}
 */
const SETTLE = script(
  'consent-settle',
  `
local id = ARGV[3]
local k = ckey(id)
local v = redis.call('HMGET', k, 'status', 'expiresAt', 'type', 'bankId')
if not v[1] then return { 'missing' } end
if v[1] ~= 'pending' then return { 'not_pending', redis.call('HGETALL', k) } end
if now >= tonumber(v[2]) and ARGV[4] ~= 'expired' then return { 'expired', redis.call('HGETALL', k) } end
local superseded = {}
if ARGV[4] ~= 'confirmed' then
  redis.call('HSET', k, 'status', ARGV[4], 'endedAt', nowS)
else
  if v[3] == 'ais' then
    local pk = aiskey(v[4])
    local prev = redis.call('GET', pk)
    if prev and prev ~= id then
      local prevKey = ckey(prev)
      if redis.call('HGET', prevKey, 'status') == 'confirmed' then
        redis.call('HSET', prevKey, 'status', 'superseded', 'endedAt', nowS, 'supersededBy', id)
        superseded[1] = redis.call('HGETALL', prevKey)
      end
    end
    redis.call('SET', pk, id)
  end
  redis.call('HSET', k, 'status', 'confirmed', 'confirmedAt', nowS)
end
return { 'settled', redis.call('HGETALL', k), superseded }
`,
);

/**
 * end (revoked or expired), the rule of domain/consent.ts endConsent. Race closed: two ends of
 * one consent (a user's DELETE and the bank's refusal) both reporting `ended`; and a confirmed
 * AIS consent that ends must stop being the bank's valid one in the same step.
 * ARGV[3] id, ARGV[4] 'revoked' | 'expired'.
 * Reply: {'ended', record, before} | {'not_active', record} | {'missing'}
 */
const END = script(
  'consent-end',
  `
local id = ARGV[3]
local k = ckey(id)
local v = redis.call('HMGET', k, 'status', 'type', 'bankId')
if not v[1] then return { 'missing' } end
if v[1] ~= 'pending' and v[1] ~= 'confirmed' then return { 'not_active', redis.call('HGETALL', k) } end
local before = redis.call('HGETALL', k)
redis.call('HSET', k, 'status', ARGV[4], 'endedAt', nowS)
if v[2] == 'ais' and redis.call('GET', aiskey(v[3])) == id then redis.call('DEL', aiskey(v[3])) end
return { 'ended', redis.call('HGETALL', k), before }
`,
);

/**
 * delete (purge): the record, its place in the listing, and the valid-AIS pointer if it names it.
 * ARGV[3] id. Reply: 1 | 0
 */
const DELETE = script(
  'consent-delete',
  `
local id = ARGV[3]
local k = ckey(id)
local bank = redis.call('HGET', k, 'bankId')
if not bank then return 0 end
if redis.call('GET', aiskey(bank)) == id then redis.call('DEL', aiskey(bank)) end
redis.call('DEL', k)
redis.call('ZREM', lkey, id)
return 1
`,
);

/**
 * The valid AIS consent of a bank: the pointer and the record it names, read in one step (no
 * race to close; one round trip and one consistent state).
 * ARGV[3] bankId. Reply: record | nil
 */
const VALID_AIS = script(
  'consent-valid-ais',
  `
local id = redis.call('GET', aiskey(ARGV[3]))
if not id then return false end
local k = ckey(id)
if redis.call('HGET', k, 'status') ~= 'confirmed' then return false end
return redis.call('HGETALL', k)
`,
);

/**
 * One page of the listing, newest first: (createdAt, id) descending, after the cursor. Ids that
 * share a score come in reverse byte order (as ZREVRANGEBYSCORE gives them); the comparison with
 * the cursor's id is byte-wise too (Lua's own string comparison follows the server's locale).
 * ARGV[3] how many (limit + 1), ARGV[4] cursor createdAt ('' = from the newest), ARGV[5] cursor id.
 * Reply: {records}
 */
const LIST = script(
  'consent-list',
  `
local function bytesLess(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local want = tonumber(ARGV[3])
local maxS = '+inf'
if ARGV[4] ~= '' then maxS = ARGV[4] end
local cursorAt = tonumber(ARGV[4])
local out = {}
local offset = 0
while #out < want do
  local page = redis.call('ZREVRANGEBYSCORE', lkey, maxS, '-inf', 'WITHSCORES', 'LIMIT', offset, 100)
  if #page == 0 then break end
  for i = 1, #page, 2 do
    local id = page[i]
    local skip = cursorAt ~= nil and tonumber(page[i + 1]) == cursorAt and not bytesLess(id, ARGV[5])
    if not skip then
      local rec = redis.call('HGETALL', ckey(id))
      if #rec > 0 then out[#out + 1] = rec end
      if #out >= want then break end
    end
  end
  offset = offset + 100
end
return out
`,
);


export class RedisConsentStore implements ConsentStore {
  readonly #conn: RedisConnection;
  readonly #keys: RedisKeys;

  constructor(conn: RedisConnection, keys: RedisKeys) {
    this.#conn = conn;
    this.#keys = keys;
  }

  async createConsent(consent: Consent): Promise<Consent> {
    return this.#guard(async () => {
      const reply = (await this.#run(CREATE, consent.tenantId, consent.userId, 0, [
        consent.id,
        num(consent.createdAt),
        ...consentToFields(consent),
      ])) as unknown[];
      if (reply[0] === 'exists') throw new Conflict('consent_exists', 'A consent with this id already exists.');
      return mustConsent(reply[1]);
    });
  }

  async getConsent(tenantId: string, userId: string, id: string): Promise<Consent | null> {
    return this.#guard(async () => {
      const key = `${this.#keys.slotBase(userTag(tenantId, userId))}cn:${id}`;
      const c = consentFromReply(await this.#conn.send(key, ['HGETALL', key], true));
      return c !== null && c.tenantId === tenantId && c.userId === userId && c.id === id ? c : null;
    });
  }

  async listConsents(query: ListConsentsQuery): Promise<Page<Consent>> {
    return this.#guard(async () => {
      checkLimit(query.limit, CONSENT_LIST_MAX);
      const after = decodeCursor(query.cursor);
      const reply = (await this.#run(LIST, query.tenantId, query.userId, 0, [
        String(query.limit + 1),
        after === null ? '' : num(after.createdAt),
        after === null ? '' : after.key,
      ])) as unknown[];
      const rows = reply.map(consentFromReply).filter((c): c is Consent => c !== null);
      return pageOf(rows, query.limit, (c) => ({ createdAt: c.createdAt, key: c.id }));
    });
  }

  async validAisConsent(tenantId: string, userId: string, bankId: string): Promise<Consent | null> {
    return this.#guard(async () => consentFromReply(await this.#run(VALID_AIS, tenantId, userId, 0, [bankId])));
  }

  async settleConsent(tenantId: string, userId: string, id: string, decision: ConsentDecision, now: number): Promise<SettleResult> {
    return this.#guard(async () => {
      const reply = (await this.#run(SETTLE, tenantId, userId, now, [id, decision])) as unknown[];
      switch (reply[0]) {
        case 'settled':
          return {
            outcome: 'settled',
            consent: mustConsent(reply[1]),
            superseded: (reply[2] as unknown[]).map(mustConsent),
          };
        case 'not_pending':
          return { outcome: 'not_pending', consent: mustConsent(reply[1]) };
        case 'expired':
          return { outcome: 'expired', consent: mustConsent(reply[1]) };
        case 'missing':
          return { outcome: 'missing' };
        default:
          throw new Error(`unexpected reply from the consent-settle script: ${String(reply[0])}`);
      }
    });
  }

  async endConsent(tenantId: string, userId: string, id: string, status: 'revoked' | 'expired', now: number): Promise<EndResult> {
    return this.#guard(async () => {
      const reply = (await this.#run(END, tenantId, userId, now, [id, status])) as unknown[];
      switch (reply[0]) {
        case 'ended':
          return { outcome: 'ended', consent: mustConsent(reply[1]), before: mustConsent(reply[2]) };
        case 'not_active':
          return { outcome: 'not_active', consent: mustConsent(reply[1]) };
        case 'missing':
          return { outcome: 'missing' };
        default:
          throw new Error(`unexpected reply from the consent-end script: ${String(reply[0])}`);
      }
    });
  }

  async deleteConsent(tenantId: string, userId: string, id: string): Promise<boolean> {
    return this.#guard(async () => Number(await this.#run(DELETE, tenantId, userId, 0, [id])) === 1);
  }

  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toStoreError(err);
    }
  }

  /** EVALSHA on the user's slot, and EVAL when the server does not know the script yet. */
  #run(s: LuaScript, tenantId: string, userId: string, now: number, args: string[]): Promise<unknown> {
    const base = this.#keys.slotBase(userTag(tenantId, userId));
    return evalScript(this.#conn, s, `${base}cns`, [base, num(now), ...args]);
  }
}

function consentToFields(c: Consent): string[] {
  const f: string[] = [
    'id', c.id,
    'tenantId', c.tenantId,
    'userId', c.userId,
    'type', c.type,
    'bankId', c.bankId,
    'status', c.status,
    'createdAt', num(c.createdAt),
    'expiresAt', num(c.expiresAt),
  ];
  if (c.confirmedAt !== null) f.push('confirmedAt', num(c.confirmedAt));
  if (c.endedAt !== null) f.push('endedAt', num(c.endedAt));
  if (c.redirectHandle !== null) f.push('redirectHandle', c.redirectHandle);
  if (c.startedBy !== null) f.push('startedBy', c.startedBy);
  if (c.supersededBy !== null) f.push('supersededBy', c.supersededBy);
  if (c.payment !== null) f.push('payment', JSON.stringify(c.payment));
  if (c.bankConsentId !== null) f.push('bankConsentId', c.bankConsentId);
  if (c.validUntil !== null) f.push('validUntil', num(c.validUntil));
  return f;
}

function consentFromReply(reply: unknown): Consent | null {
  const m = fieldMap(reply);
  if (m === null || !m.has('id') || !m.has('status')) return null;
  const opt = (k: string) => m.get(k) ?? null;
  const optNum = (k: string) => (m.has(k) ? Number(m.get(k)) : null);
  const payment = opt('payment');
  return {
    id: m.get('id') as string,
    tenantId: m.get('tenantId') as string,
    userId: m.get('userId') as string,
    type: m.get('type') as ConsentType,
    bankId: m.get('bankId') as string,
    status: m.get('status') as StoredConsentStatus,
    createdAt: Number(m.get('createdAt')),
    expiresAt: Number(m.get('expiresAt')),
    confirmedAt: optNum('confirmedAt'),
    endedAt: optNum('endedAt'),
    redirectHandle: opt('redirectHandle'),
    startedBy: opt('startedBy'),
    supersededBy: opt('supersededBy'),
    payment: payment === null ? null : (JSON.parse(payment) as Payment),
    bankConsentId: opt('bankConsentId'),
    validUntil: optNum('validUntil'),
  };
}

function mustConsent(reply: unknown): Consent {
  const c = consentFromReply(reply);
  if (c === null) throw new Error('the store returned an empty consent record');
  return c;
}
