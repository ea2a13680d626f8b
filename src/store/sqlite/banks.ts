// BankStore over SQLite (tables `banks` and `bank_work`, migration 9). Each write is one
// BEGIN IMMEDIATE transaction without an `await`, as everywhere in this adapter.

import type { DatabaseSync } from 'node:sqlite';
import type { Bank } from '../../domain/bank.ts';
import { tenantWorkPrefixes, workFromKey, workKey, type BankStore, type BankWork, type ClaimedWork } from '../bank-port.ts';
import { inWriteTransaction, settle } from './transactions.ts';

export class SqliteBankStore implements BankStore {
  private readonly db: DatabaseSync;
  private readonly stmt: ReturnType<typeof prepare>;

  constructor(db: DatabaseSync) {
    this.db = db;
    this.stmt = prepare(db);
  }

  putBank(bank: Bank): Promise<{ bank: Bank; created: boolean }> {
    // Read and write under the write lock: of two creating PUTs exactly one answers `created`.
    return inWriteTransaction(this.db, () => {
      const existed = this.stmt.get.get({ tenant_id: bank.tenantId, bank_id: bank.bankId }) !== undefined;
      this.stmt.upsert.run({ tenant_id: bank.tenantId, bank_id: bank.bankId, record: JSON.stringify(bank) });
      return { bank, created: !existed };
    });
  }

  getBank(tenantId: string, bankId: string): Promise<Bank | null> {
    return settle(this.db, () => {
      const row = this.stmt.get.get({ tenant_id: tenantId, bank_id: bankId }) as { record: string } | undefined;
      return row ? (JSON.parse(row.record) as Bank) : null;
    });
  }

  listBanks(tenantId: string): Promise<Bank[]> {
    return settle(this.db, () => (this.stmt.list.all({ tenant_id: tenantId }) as Array<{ record: string }>).map((r) => JSON.parse(r.record) as Bank));
  }

  deleteBank(tenantId: string, bankId: string): Promise<boolean> {
    return inWriteTransaction(this.db, () => Number(this.stmt.delete.run({ tenant_id: tenantId, bank_id: bankId }).changes) > 0);
  }

  scheduleWork(work: BankWork, dueAt: number): Promise<void> {
    return inWriteTransaction(this.db, () => {
      this.stmt.schedule.run({ work: workKey(work), due_at: dueAt });
    });
  }

  claimWork(now: number, max: number, leaseMs: number): Promise<ClaimedWork[]> {
    return inWriteTransaction(this.db, () => {
      const rows = this.stmt.due.all({ now, max }) as Array<{ work: string; attempts: number }>;
      const out: ClaimedWork[] = [];
      for (const r of rows) {
        this.stmt.lease.run({ work: r.work, due_at: now + leaseMs });
        const w = workFromKey(r.work);
        if (w === null) this.stmt.finish.run({ work: r.work });
        else out.push({ ...w, attempts: r.attempts });
      }
      return out;
    });
  }

  finishWork(work: BankWork): Promise<void> {
    return inWriteTransaction(this.db, () => {
      this.stmt.finish.run({ work: workKey(work) });
    });
  }

  dropTenantWork(tenantId: string): Promise<number> {
    return inWriteTransaction(this.db, () => {
      let dropped = 0;
      for (const prefix of tenantWorkPrefixes(tenantId)) dropped += Number(this.stmt.dropPrefix.run({ prefix }).changes);
      return dropped;
    });
  }
}

function prepare(db: DatabaseSync) {
  return {
    get: db.prepare('SELECT record FROM banks WHERE tenant_id = $tenant_id AND bank_id = $bank_id'),
    list: db.prepare('SELECT record FROM banks WHERE tenant_id = $tenant_id ORDER BY bank_id'),
    upsert: db.prepare(`
      INSERT INTO banks (tenant_id, bank_id, record) VALUES ($tenant_id, $bank_id, $record)
      ON CONFLICT (tenant_id, bank_id) DO UPDATE SET record = excluded.record`),
    delete: db.prepare('DELETE FROM banks WHERE tenant_id = $tenant_id AND bank_id = $bank_id'),
    schedule: db.prepare(`
      INSERT INTO bank_work (work, due_at) VALUES ($work, $due_at)
      ON CONFLICT (work) DO UPDATE SET due_at = excluded.due_at`),
    due: db.prepare('SELECT work, attempts FROM bank_work WHERE due_at <= $now ORDER BY due_at, work LIMIT $max'),
    lease: db.prepare('UPDATE bank_work SET due_at = $due_at, attempts = attempts + 1 WHERE work = $work'),
    finish: db.prepare('DELETE FROM bank_work WHERE work = $work'),
    // A comparison of the beginning, not LIKE: `_` in a tenant id is no wildcard here.
    dropPrefix: db.prepare('DELETE FROM bank_work WHERE substr(work, 1, length($prefix)) = $prefix'),
  };
}
