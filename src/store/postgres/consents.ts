// ConsentStore over PostgreSQL (table `consents`, migration 2). A settlement reads and writes
// under the user's consent lock (an advisory lock, locks.ts): it closes both races — two returns
// settling one consent, and two AIS confirmations for one bank that would each supersede the
// previous one and both stay confirmed (the pending consent to supersede may not be the row
// being settled, so a row lock on that row alone is not enough). The partial UNIQUE index states
// the one-valid-AIS rule in the schema too.

import { Conflict } from '../../domain/errors.ts';
import { endConsent, settleConsent, type Consent, type ConsentDecision } from '../../domain/consent.ts';
import { CONSENT_LIST_MAX, type ConsentStore, type EndResult, type ListConsentsQuery, type SettleResult } from '../consent-port.ts';
import { checkLimit, decodeCursor, pageOf } from '../page.ts';
import type { Page } from '../port.ts';
import type { PgDriver } from './driver.ts';
import { lockNamed } from './locks.ts';
import { consentFromRow, type ConsentRow } from '../sqlite/rows.ts';
import { sqlState, UNIQUE_VIOLATION } from './rows.ts';



export class PostgresConsentStore implements ConsentStore {
  readonly #driver: PgDriver;

  constructor(driver: PgDriver) {
    this.#driver = driver;
  }

  async createConsent(c: Consent): Promise<Consent> {
    try {
      const [row] = await this.#driver.query<ConsentRow>(
        `INSERT INTO consents (id, tenant_id, user_id, type, bank_id, status, created_at, expires_at, confirmed_at,
           ended_at, redirect_handle, started_by, superseded_by, payment, bank_consent_id, valid_until)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING *`,
        [
          c.id, c.tenantId, c.userId, c.type, c.bankId, c.status, c.createdAt, c.expiresAt, c.confirmedAt,
          c.endedAt, c.redirectHandle, c.startedBy, c.supersededBy, c.payment === null ? null : JSON.stringify(c.payment),
          c.bankConsentId, c.validUntil,
        ],
      );
      return consentFromRow(row!);
    } catch (err) {
      if (sqlState(err) === UNIQUE_VIOLATION) throw new Conflict('consent_exists', 'A consent with this id already exists.');
      throw err;
    }
  }

  async getConsent(tenantId: string, userId: string, id: string): Promise<Consent | null> {
    const [row] = await this.#driver.query<ConsentRow>('SELECT * FROM consents WHERE tenant_id = $1 AND user_id = $2 AND id = $3', [
      tenantId,
      userId,
      id,
    ]);
    return row ? consentFromRow(row) : null;
  }

  async listConsents(query: ListConsentsQuery): Promise<Page<Consent>> {
    checkLimit(query.limit, CONSENT_LIST_MAX);
    const after = decodeCursor(query.cursor);
    let rows: ConsentRow[];
    if (after !== null) {
      rows = await this.#driver.query<ConsentRow>(
        `SELECT * FROM consents WHERE tenant_id = $1 AND user_id = $2
           AND (created_at < $4 OR (created_at = $4 AND id < $5))
         ORDER BY created_at DESC, id DESC LIMIT $3`,
        [query.tenantId, query.userId, query.limit + 1, after.createdAt, after.key],
      );
    } else {
      rows = await this.#driver.query<ConsentRow>(
        'SELECT * FROM consents WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3',
        [query.tenantId, query.userId, query.limit + 1],
      );
    }
    return pageOf(rows.map(consentFromRow), query.limit, (c) => ({ createdAt: c.createdAt, key: c.id }));
  }

  async validAisConsent(tenantId: string, userId: string, bankId: string): Promise<Consent | null> {
    const [row] = await this.#driver.query<ConsentRow>(
      "SELECT * FROM consents WHERE tenant_id = $1 AND user_id = $2 AND bank_id = $3 AND type = 'ais' AND status = 'confirmed'",
      [tenantId, userId, bankId],
    );
    return row ? consentFromRow(row) : null;
  }

  settleConsent(tenantId: string, userId: string, id: string, decision: ConsentDecision, now: number): Promise<SettleResult> {
    return this.#driver.transaction(async (tx): Promise<SettleResult> => {
      await lockNamed(tx, `consents\u001f${tenantId}\u001f${userId}`);
      const [row] = await tx.query<ConsentRow>('SELECT * FROM consents WHERE tenant_id = $1 AND user_id = $2 AND id = $3', [
        tenantId,
        userId,
        id,
      ]);
      if (!row) return { outcome: 'missing' };
      const consent = consentFromRow(row);
      const current =
        consent.type === 'ais'
          ? (
              await tx.query<ConsentRow>(
                "SELECT * FROM consents WHERE tenant_id = $1 AND user_id = $2 AND bank_id = $3 AND type = 'ais' AND status = 'confirmed'",
                [tenantId, userId, consent.bankId],
              )
            ).map(consentFromRow)
          : [];
      const s = settleConsent(consent, decision, current, now);
      if (s.outcome !== 'settled') return s;
      // Superseded first: the partial unique index admits one confirmed AIS consent per bank.
      for (const c of [...s.superseded, s.consent]) {
        await tx.execute(
          `UPDATE consents SET status = $4, confirmed_at = $5, ended_at = $6, superseded_by = $7
           WHERE tenant_id = $1 AND user_id = $2 AND id = $3`,
          [c.tenantId, c.userId, c.id, c.status, c.confirmedAt, c.endedAt, c.supersededBy],
        );
      }
      return s;
    });
  }

  endConsent(tenantId: string, userId: string, id: string, status: 'revoked' | 'expired', now: number): Promise<EndResult> {
    return this.#driver.transaction(async (tx): Promise<EndResult> => {
      await lockNamed(tx, `consents\u001f${tenantId}\u001f${userId}`);
      const [row] = await tx.query<ConsentRow>('SELECT * FROM consents WHERE tenant_id = $1 AND user_id = $2 AND id = $3', [tenantId, userId, id]);
      if (!row) return { outcome: 'missing' };
      const e = endConsent(consentFromRow(row), status, now);
      if (e.outcome === 'ended') {
        await tx.execute('UPDATE consents SET status = $4, ended_at = $5 WHERE tenant_id = $1 AND user_id = $2 AND id = $3', [
          tenantId,
          userId,
          id,
          e.consent.status,
          e.consent.endedAt,
        ]);
      }
      return e;
    });
  }

  async deleteConsent(tenantId: string, userId: string, id: string): Promise<boolean> {
    return (await this.#driver.execute('DELETE FROM consents WHERE tenant_id = $1 AND user_id = $2 AND id = $3', [tenantId, userId, id])) > 0;
  }
}
