// BankStore over PostgreSQL (tables `banks` and `bank_work`, migration 6). A put answers whether
// it created the row from the same statement (xmax = 0 on a fresh insert); a claim takes due
// items with FOR UPDATE SKIP LOCKED and moves them past the lease in the same statement, so
// concurrent workers never get the same item.

import type { Bank } from '../../domain/bank.ts';
import { tenantWorkPrefixes, workFromKey, workKey, type BankStore, type BankWork, type ClaimedWork } from '../bank-port.ts';
import type { PgDriver } from './driver.ts';

export class PostgresBankStore implements BankStore {
  readonly #driver: PgDriver;

  constructor(driver: PgDriver) {
    this.#driver = driver;
  }

  async putBank(bank: Bank): Promise<{ bank: Bank; created: boolean }> {
    const [row] = await this.#driver.query<{ created: boolean }>(
      `INSERT INTO banks (tenant_id, bank_id, record) VALUES ($1, $2, $3)
       ON CONFLICT (tenant_id, bank_id) DO UPDATE SET record = excluded.record
       RETURNING (xmax = 0) AS created`,
      [bank.tenantId, bank.bankId, JSON.stringify(bank)],
    );
    return { bank, created: row?.created === true };
  }

  async getBank(tenantId: string, bankId: string): Promise<Bank | null> {
    const [row] = await this.#driver.query<{ record: string }>('SELECT record FROM banks WHERE tenant_id = $1 AND bank_id = $2', [tenantId, bankId]);
    return row ? (JSON.parse(row.record) as Bank) : null;
  }

  async listBanks(tenantId: string): Promise<Bank[]> {
    const rows = await this.#driver.query<{ record: string }>('SELECT record FROM banks WHERE tenant_id = $1 ORDER BY bank_id COLLATE "C"', [tenantId]);
    return rows.map((r) => JSON.parse(r.record) as Bank);
  }

  async deleteBank(tenantId: string, bankId: string): Promise<boolean> {
    return (await this.#driver.execute('DELETE FROM banks WHERE tenant_id = $1 AND bank_id = $2', [tenantId, bankId])) > 0;
  }

  async scheduleWork(work: BankWork, dueAt: number): Promise<void> {
    await this.#driver.execute(
      'INSERT INTO bank_work (work, due_at) VALUES ($1, $2) ON CONFLICT (work) DO UPDATE SET due_at = excluded.due_at',
      [workKey(work), dueAt],
    );
  }

  async claimWork(now: number, max: number, leaseMs: number): Promise<ClaimedWork[]> {
    const rows = await this.#driver.query<{ work: string; attempts: number }>(
      `UPDATE bank_work SET due_at = $3, attempts = attempts + 1
       WHERE work IN (SELECT work FROM bank_work WHERE due_at <= $1 ORDER BY due_at, work LIMIT $2 FOR UPDATE SKIP LOCKED)
       RETURNING work, attempts - 1 AS attempts`,
      [now, max, now + leaseMs],
    );
    const out: ClaimedWork[] = [];
    for (const r of rows) {
      const w = workFromKey(r.work);
      if (w === null) await this.#driver.execute('DELETE FROM bank_work WHERE work = $1', [r.work]);
      else out.push({ ...w, attempts: Number(r.attempts) });
    }
    return out;
  }

  async finishWork(work: BankWork): Promise<void> {
    await this.#driver.execute('DELETE FROM bank_work WHERE work = $1', [workKey(work)]);
  }

  async dropTenantWork(tenantId: string): Promise<number> {
    // starts_with, not LIKE: `_` in a tenant id is no wildcard here.
    return this.#driver.execute('DELETE FROM bank_work WHERE starts_with(work, $1) OR starts_with(work, $2) OR starts_with(work, $3)', tenantWorkPrefixes(tenantId));
  }
}
