// ConsentStore over SQLite (table `consents`, migration "consents"). Same discipline as
// sqlite-store.ts: every write is one BEGIN IMMEDIATE transaction without an `await`, so the
// read-decide-write of a settlement cannot interleave with another connection or process.
// A partial UNIQUE index (one confirmed AIS consent per tenant, user and bank) states the rule
// in the schema too: a bug that tried to keep two would fail instead of succeeding.

import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { Conflict } from '../../domain/errors.ts';
import { endConsent, settleConsent, type Consent, type ConsentDecision } from '../../domain/consent.ts';
import { CONSENT_LIST_MAX, type ConsentStore, type EndResult, type ListConsentsQuery, type SettleResult } from '../consent-port.ts';
import { checkLimit, decodeCursor, pageOf, type Page } from '../page.ts';
import { consentFromRow, type ConsentRow } from './rows.ts';
import { inWriteTransaction, isUniqueViolation, settle } from './transactions.ts';


function consentParams(c: Consent): Record<string, SQLInputValue> {
  return {
    id: c.id,
    tenant_id: c.tenantId,
    user_id: c.userId,
    type: c.type,
    bank_id: c.bankId,
    status: c.status,
    created_at: c.createdAt,
    expires_at: c.expiresAt,
    confirmed_at: c.confirmedAt,
    ended_at: c.endedAt,
    redirect_handle: c.redirectHandle,
    started_by: c.startedBy,
    superseded_by: c.supersededBy,
    payment: c.payment === null ? null : JSON.stringify(c.payment),
    bank_consent_id: c.bankConsentId,
    valid_until: c.validUntil,
  };
}

export class SqliteConsentStore implements ConsentStore {
  private readonly db: DatabaseSync;
  private readonly stmt: ReturnType<typeof prepare>;

  constructor(db: DatabaseSync) {
    this.db = db;
    this.stmt = prepare(db);
  }

  createConsent(consent: Consent): Promise<Consent> {
    return this.write(() => {
      try {
        return consentFromRow(this.stmt.insert.get(consentParams(consent)) as unknown as ConsentRow);
      } catch (err) {
        if (isUniqueViolation(err)) throw new Conflict('consent_exists', 'A consent with this id already exists.');
        throw err;
      }
    });
  }

  getConsent(tenantId: string, userId: string, id: string): Promise<Consent | null> {
    return this.run(() => this.byId(tenantId, userId, id));
  }

  listConsents(query: ListConsentsQuery): Promise<Page<Consent>> {
    return this.run(() => {
      checkLimit(query.limit, CONSENT_LIST_MAX);
      const after = decodeCursor(query.cursor);
      let stmt: StatementSync = this.stmt.listFirst;
      const params: Record<string, SQLInputValue> = { tenant_id: query.tenantId, user_id: query.userId, limit: query.limit + 1 };
      if (after !== null) {
        stmt = this.stmt.listAfter;
        params.created_at = after.createdAt;
        params.id = after.key;
      }
      const rows = (stmt.all(params) as unknown as ConsentRow[]).map(consentFromRow);
      return pageOf(rows, query.limit, (c) => ({ createdAt: c.createdAt, key: c.id }));
    });
  }

  validAisConsent(tenantId: string, userId: string, bankId: string): Promise<Consent | null> {
    return this.run(() => {
      const row = this.stmt.validAis.get({ tenant_id: tenantId, user_id: userId, bank_id: bankId }) as ConsentRow | undefined;
      return row ? consentFromRow(row) : null;
    });
  }

  settleConsent(tenantId: string, userId: string, id: string, decision: ConsentDecision, now: number): Promise<SettleResult> {
    // Closes two races: two returns settling one consent (each would see it pending), and two
    // AIS confirmations for one bank (each would supersede the previous one and both stay
    // confirmed). Under the write lock the decision and its writes are one step.
    return this.write((): SettleResult => {
      const consent = this.byId(tenantId, userId, id);
      if (consent === null) return { outcome: 'missing' };
      const current =
        consent.type === 'ais'
          ? (this.stmt.validAis.all({ tenant_id: tenantId, user_id: userId, bank_id: consent.bankId }) as unknown as ConsentRow[]).map(
              consentFromRow,
            )
          : [];
      const s = settleConsent(consent, decision, current, now);
      if (s.outcome !== 'settled') return s;
      // Superseded first: the partial unique index admits one confirmed AIS consent per bank.
      for (const old of s.superseded) this.stmt.update.run(updateParams(old));
      this.stmt.update.run(updateParams(s.consent));
      return s;
    });
  }

  endConsent(tenantId: string, userId: string, id: string, status: 'revoked' | 'expired', now: number): Promise<EndResult> {
    return this.write((): EndResult => {
      const consent = this.byId(tenantId, userId, id);
      if (consent === null) return { outcome: 'missing' };
      const e = endConsent(consent, status, now);
      if (e.outcome === 'ended') this.stmt.update.run(updateParams(e.consent));
      return e;
    });
  }

  deleteConsent(tenantId: string, userId: string, id: string): Promise<boolean> {
    return this.write(() => Number(this.stmt.delete.run({ tenant_id: tenantId, user_id: userId, id }).changes) > 0);
  }

  private byId(tenantId: string, userId: string, id: string): Consent | null {
    const row = this.stmt.byId.get({ tenant_id: tenantId, user_id: userId, id }) as ConsentRow | undefined;
    return row ? consentFromRow(row) : null;
  }

  private write<T>(fn: () => T): Promise<T> {
    return inWriteTransaction(this.db, fn);
  }

  private run<T>(fn: () => T): Promise<T> {
    return settle(this.db, fn);
  }
}

function updateParams(c: Consent): Record<string, SQLInputValue> {
  return {
    id: c.id,
    tenant_id: c.tenantId,
    user_id: c.userId,
    status: c.status,
    confirmed_at: c.confirmedAt,
    ended_at: c.endedAt,
    superseded_by: c.supersededBy,
  };
}

function prepare(db: DatabaseSync) {
  return {
    insert: db.prepare(`
      INSERT INTO consents (id, tenant_id, user_id, type, bank_id, status, created_at, expires_at, confirmed_at,
        ended_at, redirect_handle, started_by, superseded_by, payment, bank_consent_id, valid_until)
      VALUES ($id, $tenant_id, $user_id, $type, $bank_id, $status, $created_at, $expires_at, $confirmed_at,
        $ended_at, $redirect_handle, $started_by, $superseded_by, $payment, $bank_consent_id, $valid_until)
      RETURNING *`),
    byId: db.prepare('SELECT * FROM consents WHERE tenant_id = $tenant_id AND user_id = $user_id AND id = $id'),
    listFirst: db.prepare(`
      SELECT * FROM consents WHERE tenant_id = $tenant_id AND user_id = $user_id
      ORDER BY created_at DESC, id DESC LIMIT $limit`),
    listAfter: db.prepare(`
      SELECT * FROM consents WHERE tenant_id = $tenant_id AND user_id = $user_id
        AND (created_at < $created_at OR (created_at = $created_at AND id < $id))
      ORDER BY created_at DESC, id DESC LIMIT $limit`),
    validAis: db.prepare(`
      SELECT * FROM consents
      WHERE tenant_id = $tenant_id AND user_id = $user_id AND bank_id = $bank_id AND type = 'ais' AND status = 'confirmed'`),
    delete: db.prepare('DELETE FROM consents WHERE tenant_id = $tenant_id AND user_id = $user_id AND id = $id'),
    update: db.prepare(`
      UPDATE consents SET status = $status, confirmed_at = $confirmed_at, ended_at = $ended_at, superseded_by = $superseded_by
      WHERE tenant_id = $tenant_id AND user_id = $user_id AND id = $id`),
  };
}
