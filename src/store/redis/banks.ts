// BankStore over Redis. A tenant's banks are one HASH (`P bank:<tenant>`, bankId → JSON), so a
// put is one HSET whose reply says whether the field is new. The work queue is a ZSET and a
// HASH of attempts in one slot of their own (`P{bankwork}:`), claimed by one Lua script.

import type { Bank } from '../../domain/bank.ts';
import { tenantWorkPrefixes, workFromKey, workKey, type BankStore, type BankWork, type ClaimedWork } from '../bank-port.ts';
import { toStoreError, type RedisConnection } from './connection.ts';
import type { RedisKeys } from './keys.ts';
import { evalScript, luaScript } from './lua.ts';

/**
 * claim. Race closed: two workers (in two processes) taking the same due item — reading the due
 * items and moving them past the lease is one step.
 * KEYS[1] queue; ARGV[1] attempts hash (same slot), ARGV[2] now, ARGV[3] max, ARGV[4] lease end.
 * Reply: {member, attemptsBefore, member, attemptsBefore, ...}
 */
const CLAIM = luaScript(`-- tessera:bank-work-claim
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[4], m)
  local n = redis.call('HINCRBY', ARGV[1], m, 1)
  out[#out + 1] = m
  out[#out + 1] = tostring(n - 1)
end
return out
`);

export class RedisBankStore implements BankStore {
  readonly #conn: RedisConnection;
  readonly #keys: RedisKeys;

  constructor(conn: RedisConnection, keys: RedisKeys) {
    this.#conn = conn;
    this.#keys = keys;
  }

  async putBank(bank: Bank): Promise<{ bank: Bank; created: boolean }> {
    return this.#guard(async () => {
      const key = this.#keys.banks(bank.tenantId);
      const added = Number(await this.#conn.send(key, ['HSET', key, bank.bankId, JSON.stringify(bank)]));
      return { bank, created: added === 1 };
    });
  }

  async getBank(tenantId: string, bankId: string): Promise<Bank | null> {
    return this.#guard(async () => {
      const key = this.#keys.banks(tenantId);
      const raw = (await this.#conn.send(key, ['HGET', key, bankId], true)) as string | null;
      return raw === null ? null : (JSON.parse(raw) as Bank);
    });
  }

  async listBanks(tenantId: string): Promise<Bank[]> {
    return this.#guard(async () => {
      const key = this.#keys.banks(tenantId);
      const raw = (await this.#conn.send(key, ['HVALS', key], true)) as string[];
      return raw.map((r) => JSON.parse(r) as Bank).sort((a, b) => (a.bankId < b.bankId ? -1 : a.bankId > b.bankId ? 1 : 0));
    });
  }

  async deleteBank(tenantId: string, bankId: string): Promise<boolean> {
    return this.#guard(async () => {
      const key = this.#keys.banks(tenantId);
      return Number(await this.#conn.send(key, ['HDEL', key, bankId])) === 1;
    });
  }

  async scheduleWork(work: BankWork, dueAt: number): Promise<void> {
    return this.#guard(async () => {
      const q = this.#keys.bankWorkQueue();
      await this.#conn.send(q, ['ZADD', q, String(dueAt), workKey(work)]);
    });
  }

  async claimWork(now: number, max: number, leaseMs: number): Promise<ClaimedWork[]> {
    return this.#guard(async () => {
      const q = this.#keys.bankWorkQueue();
      const reply = (await evalScript(this.#conn, CLAIM, q, [this.#keys.bankWorkAttempts(), String(now), String(max), String(now + leaseMs)])) as string[];
      const out: ClaimedWork[] = [];
      for (let i = 0; i < reply.length; i += 2) {
        const w = workFromKey(reply[i] as string);
        if (w === null) await this.#remove(reply[i] as string);
        else out.push({ ...w, attempts: Number(reply[i + 1]) });
      }
      return out;
    });
  }

  async finishWork(work: BankWork): Promise<void> {
    return this.#guard(async () => this.#remove(workKey(work)));
  }

  async dropTenantWork(tenantId: string): Promise<number> {
    return this.#guard(async () => {
      const q = this.#keys.bankWorkQueue();
      const prefixes = tenantWorkPrefixes(tenantId);
      // The queue is ordered by due time, not by tenant: scanned whole (a rare administrative
      // step), the tenant's members picked by the beginning of their key.
      const mine = new Set<string>();
      let cursor = '0';
      do {
        const [next, flat] = (await this.#conn.send(q, ['ZSCAN', q, cursor, 'COUNT', '1000'])) as [string, string[]];
        for (let i = 0; i < flat.length; i += 2) {
          const member = flat[i] as string;
          if (prefixes.some((p) => member.startsWith(p))) mine.add(member);
        }
        cursor = String(next);
      } while (cursor !== '0');
      let dropped = 0;
      const members = [...mine];
      for (let i = 0; i < members.length; i += 500) {
        const batch = members.slice(i, i + 500);
        dropped += Number(await this.#conn.send(q, ['ZREM', q, ...batch]));
        const n = this.#keys.bankWorkAttempts();
        await this.#conn.send(n, ['HDEL', n, ...batch]);
      }
      return dropped;
    });
  }

  async #remove(member: string): Promise<void> {
    const q = this.#keys.bankWorkQueue();
    await this.#conn.send(q, ['ZREM', q, member]);
    const n = this.#keys.bankWorkAttempts();
    await this.#conn.send(n, ['HDEL', n, member]);
  }

  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toStoreError(err);
    }
  }
}
