// The audit part of the PostgreSQL store (src/store/audit-port.ts).
//
// `append` runs in one transaction under an advisory lock on the tenant's chain (a first append
// has no head row to lock): read the head, number and hash the record (chainRecord), insert it,
// move the head and the active-session gauge. Appends of one tenant from any number of processes
// form one chain without forks. The table refuses UPDATE, TRUNCATE and the DELETE of records
// that are not behind the retention anchor (triggers of migration 3).
//
// The live feed: a trigger NOTIFYs the id of each appended record after its commit; each
// subscriber reads the records by id, in the order the notifications came (commit order).

import { chainRecord, type AuditEventInput, type AuditRecord, type ChainPoint } from '../../domain/audit-chain.ts';
import { BadRequest } from '../../domain/errors.ts';
import {
  emptyHistory,
  mergeLogin,
  type ActiveCount,
  type AnomalyQuery,
  type AppendOptions,
  type AuditQuery,
  type AuditStore,
  type ChainState,
  type LoginObservation,
  type UserHistory,
} from '../audit-port.ts';
import type { FeedChange } from '../coordination-port.ts';
import type { Page } from '../port.ts';
import { recordFromRow } from '../sqlite/audit.ts';
import type { PgDriver, Sql } from './driver.ts';
import type { NotifyFeed } from './feed.ts';
import { lockNamed } from './locks.ts';
import { AUDIT_CHANNEL } from './migrations.ts';

const MAX_LIMIT = 1000;

interface EventRow {
  id: number;
  tenant_id: string;
  seq: number;
  time: number;
  type: string;
  user_id: string | null;
  session_id: string | null;
  body: string;
  prev_hash: string;
  hash: string;
}

export class PostgresAuditStore implements AuditStore {
  readonly #driver: PgDriver;
  readonly #feed: NotifyFeed;

  constructor(driver: PgDriver, feed: NotifyFeed) {
    this.#driver = driver;
    this.#feed = feed;
  }

  append(input: AuditEventInput, opts: AppendOptions = {}): Promise<AuditRecord> {
    return this.#driver.transaction(async (tx) => {
      await lockNamed(tx, `audit\u001f${input.tenantId}`);
      const [head] = await tx.query<{ head_seq: number; head_hash: string }>(
        'SELECT head_seq, head_hash FROM audit_chains WHERE tenant_id = $1',
        [input.tenantId],
      );
      const record = chainRecord(head ? { seq: head.head_seq, hash: head.head_hash } : null, input);
      await tx.execute(
        `INSERT INTO audit_events (tenant_id, seq, time, type, user_id, session_id, body, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [record.tenantId, record.seq, record.time, record.type, record.userId, record.sessionId, JSON.stringify(record), record.prevHash, record.hash],
      );
      await tx.execute(
        `INSERT INTO audit_chains (tenant_id, head_seq, head_hash) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id) DO UPDATE SET head_seq = excluded.head_seq, head_hash = excluded.head_hash`,
        [record.tenantId, record.seq, record.hash],
      );
      if (opts.activeDelta && opts.activeDelta.delta !== 0) {
        await tx.execute(
          `INSERT INTO audit_active_sessions (tenant_id, kind, count) VALUES ($1, $2, greatest(0, $3::bigint))
           ON CONFLICT (tenant_id, kind) DO UPDATE SET count = greatest(0, audit_active_sessions.count + $3::bigint)`,
          [record.tenantId, opts.activeDelta.kind, opts.activeDelta.delta],
        );
      }
      return record;
    });
  }

  async list(q: AuditQuery): Promise<Page<AuditRecord>> {
    checkLimit(q.limit);
    const params: unknown[] = [q.tenantId];
    const p = (v: unknown): string => {
      params.push(v);
      return `$${params.length}`;
    };
    const where = ['tenant_id = $1'];
    if (q.userId !== undefined) where.push(`user_id = ${p(q.userId)}`);
    if (q.from !== undefined) where.push(`time >= ${p(q.from)}`);
    if (q.to !== undefined) where.push(`time <= ${p(q.to)}`);
    if (q.types !== undefined && q.types.length > 0) {
      const alts = q.types.map((t) => {
        if (t.endsWith('.*')) {
          const prefix = p(t.slice(0, -1));
          return `left(type, length(${prefix}::text)) = ${prefix}`;
        }
        return `type = ${p(t)}`;
      });
      where.push(`(${alts.join(' OR ')})`);
    }
    const after = decodeSeqCursor(q.cursor);
    if (after !== null) where.push(`seq ${q.order === 'desc' ? '<' : '>'} ${p(after)}`);
    const sql = `SELECT * FROM audit_events WHERE ${where.join(' AND ')} ORDER BY seq ${q.order === 'desc' ? 'DESC' : 'ASC'} LIMIT ${p(q.limit + 1)}`;
    return page(await this.#driver.query<EventRow>(sql, params), q.limit);
  }

  async listAnomalies(q: AnomalyQuery): Promise<Page<AuditRecord>> {
    checkLimit(q.limit);
    const params: unknown[] = [q.tenantId];
    const p = (v: unknown): string => {
      params.push(v);
      return `$${params.length}`;
    };
    const where = ['tenant_id = $1', "type = 'anomaly.detected'"];
    if (q.userId !== undefined) where.push(`user_id = ${p(q.userId)}`);
    if (q.reason !== undefined) where.push(`(body::jsonb -> 'details' ->> 'reason') = ${p(q.reason)}`);
    const after = decodeSeqCursor(q.cursor);
    if (after !== null) where.push(`seq < ${p(after)}`);
    const sql = `SELECT * FROM audit_events WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT ${p(q.limit + 1)}`;
    return page(await this.#driver.query<EventRow>(sql, params), q.limit);
  }

  async chainState(tenantId: string): Promise<ChainState> {
    const [row] = await this.#driver.query<{ head_seq: number; head_hash: string; anchor_seq: number | null; anchor_hash: string | null }>(
      'SELECT head_seq, head_hash, anchor_seq, anchor_hash FROM audit_chains WHERE tenant_id = $1',
      [tenantId],
    );
    if (!row) return { head: null, anchor: null };
    const anchor: ChainPoint | null = row.anchor_seq !== null && row.anchor_hash !== null ? { seq: row.anchor_seq, hash: row.anchor_hash } : null;
    return { head: { seq: row.head_seq, hash: row.head_hash }, anchor };
  }

  async tenants(): Promise<string[]> {
    return (await this.#driver.query<{ tenant_id: string }>('SELECT tenant_id FROM audit_chains ORDER BY tenant_id')).map((r) => r.tenant_id);
  }

  async prune(before: number, max: number, keepNewest = Number.MAX_SAFE_INTEGER): Promise<number> {
    // The longest prefix of each chain whose records are all older than `before` or beyond the
    // newest `keepNewest` (at most `max`), never the head. The anchor moves first — which is what lets the delete trigger allow it —
    // in the same transaction as the delete, under the chain's lock.
    let total = 0;
    for (const tenantId of await this.tenants()) {
      total += await this.#driver.transaction(async (tx) => {
        await lockNamed(tx, `audit\u001f${tenantId}`);
        const [span] = await tx.query<{ first: number | null; keep: number | null; head: number }>(
          `SELECT
             (SELECT min(seq) FROM audit_events WHERE tenant_id = $1) AS first,
             (SELECT min(seq) FROM audit_events WHERE tenant_id = $1 AND time >= $2
                AND seq > (SELECT head_seq FROM audit_chains WHERE tenant_id = $1) - $3) AS keep,
             (SELECT head_seq FROM audit_chains WHERE tenant_id = $1) AS head`,
          [tenantId, before, Math.max(1, Math.min(Number.MAX_SAFE_INTEGER, Math.floor(keepNewest)))],
        );
        if (!span || span.first === null) return 0;
        const upTo = Math.min(span.keep === null ? span.head : span.keep - 1, span.head - 1, span.first + Math.max(1, Math.floor(max)) - 1);
        if (upTo < span.first) return 0;
        const [anchor] = await tx.query<{ seq: number; hash: string }>('SELECT seq, hash FROM audit_events WHERE tenant_id = $1 AND seq = $2', [
          tenantId,
          upTo,
        ]);
        if (!anchor) return 0;
        await tx.execute('UPDATE audit_chains SET anchor_seq = $2, anchor_hash = $3 WHERE tenant_id = $1', [tenantId, anchor.seq, anchor.hash]);
        return tx.execute('DELETE FROM audit_events WHERE tenant_id = $1 AND seq <= $2', [tenantId, anchor.seq]);
      });
    }
    return total;
  }

  async activeSessions(): Promise<ActiveCount[]> {
    const rows = await this.#driver.query<{ tenant_id: string; kind: string; count: number }>(
      'SELECT tenant_id, kind, count FROM audit_active_sessions ORDER BY tenant_id, kind',
    );
    return rows.map((r) => ({ tenantId: r.tenant_id, kind: r.kind, count: Math.max(0, r.count) }));
  }

  userHistory(tenantId: string, userId: string): Promise<UserHistory> {
    return history(this.#driver, tenantId, userId);
  }

  recordLogin(tenantId: string, userId: string, o: LoginObservation): Promise<void> {
    // Read, merge, write under the user's history lock: two logins at once both count (the row
    // may not exist yet, so an advisory lock rather than FOR UPDATE).
    return this.#driver.transaction(async (tx) => {
      await lockNamed(tx, `history\u001f${tenantId}\u001f${userId}`);
      const next = mergeLogin(await history(tx, tenantId, userId), o);
      await tx.execute(
        `INSERT INTO anomaly_history (tenant_id, user_id, body, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`,
        [tenantId, userId, JSON.stringify(next), o.time],
      );
    });
  }

  async subscribe(listener: (r: AuditRecord) => void, onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void> }> {
    // Ids arrive in commit order; they are read in batches, one batch at a time, and handed on
    // in that order. A batch that cannot be read (the database went away) counts as missed.
    let pending: number[] = [];
    let reading: Promise<void> | null = null;
    let open = true;
    const drain = async (): Promise<void> => {
      while (open && pending.length > 0) {
        const ids = pending;
        pending = [];
        let rows: EventRow[];
        try {
          rows = await this.#driver.query<EventRow>('SELECT * FROM audit_events WHERE id = ANY($1::bigint[])', [ids]);
        } catch {
          // This batch is lost; the next notifications are read again.
          if (open) {
            onReset('down');
            onReset('up');
          }
          continue;
        }
        const byId = new Map(rows.map((r) => [r.id, r]));
        for (const id of ids) {
          const row = byId.get(id);
          if (!row || !open) continue;
          try {
            listener(recordFromRow(row));
          } catch {
            // a failing listener must not stop the feed
          }
        }
      }
      reading = null;
    };
    const sub = await this.#feed.subscribe(
      AUDIT_CHANNEL,
      (payload) => {
        const id = Number(payload);
        if (!Number.isSafeInteger(id)) return;
        pending.push(id);
        reading ??= drain();
      },
      onReset,
    );
    return {
      close: async () => {
        open = false;
        await sub.close();
      },
    };
  }
}

async function history(sql: Sql, tenantId: string, userId: string): Promise<UserHistory> {
  const [row] = await sql.query<{ body: string }>('SELECT body FROM anomaly_history WHERE tenant_id = $1 AND user_id = $2', [tenantId, userId]);
  return row ? { ...emptyHistory(), ...(JSON.parse(row.body) as UserHistory) } : emptyHistory();
}

function page(rows: EventRow[], limit: number): Page<AuditRecord> {
  const items = rows.slice(0, limit).map(recordFromRow);
  const last = rows[limit - 1];
  return { items, nextCursor: rows.length > limit && last ? String(last.seq) : null };
}

function checkLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw new BadRequest('invalid_limit', `limit must be an integer from 1 to ${MAX_LIMIT}.`);
  }
}

function decodeSeqCursor(cursor: string | null | undefined): number | null {
  if (cursor === undefined || cursor === null || cursor === '') return null;
  if (!/^[1-9][0-9]{0,15}$/.test(cursor)) throw new BadRequest('invalid_cursor', 'The cursor is not one this server issued.');
  return Number(cursor);
}
