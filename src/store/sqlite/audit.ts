// The audit part of the SQLite store (src/store/audit-port.ts), on the store's own connection.
//
// `append` runs in one BEGIN IMMEDIATE transaction: read the tenant's head, number and hash the
// record (chainRecord), insert it, move the head and the active-session gauge. The write lock is
// taken before the head is read, so appends from several connections or processes on one file
// form one chain without forks. No transaction contains an `await`.
//
// The live feed: records appended through this instance reach its subscribers right after the
// commit; records appended by other connections are read by polling the `id` column every
// FEED_POLL_MS while someone subscribes.

import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { chainRecord, type AuditEventInput, type AuditRecord, type ChainPoint } from '../../domain/audit-chain.ts';
import {
  emptyHistory,
  mergeLogin,
  AUDIT_LIST_MAX,
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
import { checkLimit, invalidCursor, isFirstPage, type Page } from '../page.ts';
import { inWriteTransaction, settle } from './transactions.ts';

/** How often subscribers look for records other connections appended. */
export const AUDIT_FEED_POLL_MS = 50;

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

interface Subscriber {
  last: number;
  listener: (r: AuditRecord) => void;
  onReset: (change: FeedChange) => void;
}

/** The record as stored; the filter columns are what queries see, so the verifier compares them. */
export function recordFromRow(row: EventRow): AuditRecord {
  const r = JSON.parse(row.body) as AuditRecord;
  const columnsAgree =
    r.tenantId === row.tenant_id &&
    r.seq === row.seq &&
    r.time === row.time &&
    r.type === row.type &&
    r.userId === row.user_id &&
    r.sessionId === row.session_id &&
    r.prevHash === row.prev_hash &&
    r.hash === row.hash;
  // A row whose columns were edited apart from its body reads with the columns' values, so that
  // the chain verifier sees the edit (the hash no longer matches what is shown).
  return columnsAgree
    ? r
    : { ...r, tenantId: row.tenant_id, seq: row.seq, time: row.time, type: row.type, userId: row.user_id, sessionId: row.session_id, prevHash: row.prev_hash, hash: row.hash };
}

export class SqliteAuditStore implements AuditStore {
  readonly #db: DatabaseSync;
  readonly #stmt: ReturnType<typeof prepare>;
  readonly #queries = new Map<string, StatementSync>();
  readonly #subscribers = new Set<Subscriber>();
  #timer: NodeJS.Timeout | null = null;

  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#stmt = prepare(db);
  }

  append(input: AuditEventInput, opts: AppendOptions = {}): Promise<AuditRecord> {
    return this.#write(() => {
      const head = this.#stmt.chain.get({ tenant_id: input.tenantId }) as { head_seq: number; head_hash: string } | undefined;
      const record = chainRecord(head ? { seq: head.head_seq, hash: head.head_hash } : null, input);
      this.#stmt.insert.run({
        tenant_id: record.tenantId,
        seq: record.seq,
        time: record.time,
        type: record.type,
        user_id: record.userId,
        session_id: record.sessionId,
        body: JSON.stringify(record),
        prev_hash: record.prevHash,
        hash: record.hash,
      });
      this.#stmt.moveHead.run({ tenant_id: record.tenantId, seq: record.seq, hash: record.hash });
      if (opts.activeDelta && opts.activeDelta.delta !== 0) {
        this.#stmt.moveGauge.run({ tenant_id: record.tenantId, kind: opts.activeDelta.kind, delta: opts.activeDelta.delta });
      }
      return record;
    });
  }

  list(q: AuditQuery): Promise<Page<AuditRecord>> {
    return this.#run(() => {
      checkLimit(q.limit, AUDIT_LIST_MAX);
      const where = ['tenant_id = $tenant_id'];
      const params: Record<string, SQLInputValue> = { tenant_id: q.tenantId, limit: q.limit + 1 };
      if (q.userId !== undefined) {
        where.push('user_id = $user_id');
        params.user_id = q.userId;
      }
      if (q.from !== undefined) {
        where.push('time >= $from');
        params.from = q.from;
      }
      if (q.to !== undefined) {
        where.push('time <= $to');
        params.to = q.to;
      }
      if (q.types !== undefined && q.types.length > 0) {
        // The filter's values travel as JSON parameters, so every combination of types shares
        // one statement (a statement per distinct combination would grow without bound).
        const exact = q.types.filter((t) => !t.endsWith('.*'));
        const prefixes = q.types.filter((t) => t.endsWith('.*')).map((t) => t.slice(0, -1));
        params.types_exact = JSON.stringify(exact);
        params.types_prefix = JSON.stringify(prefixes);
        where.push(
          '(audit_events.type IN (SELECT value FROM json_each($types_exact)) OR EXISTS (SELECT 1 FROM json_each($types_prefix) p WHERE substr(audit_events.type, 1, length(p.value)) = p.value))',
        );
      }
      const after = decodeSeqCursor(q.cursor);
      if (after !== null) {
        where.push(q.order === 'desc' ? 'seq < $after' : 'seq > $after');
        params.after = after;
      }
      const sql = `SELECT * FROM audit_events WHERE ${where.join(' AND ')} ORDER BY seq ${q.order === 'desc' ? 'DESC' : 'ASC'} LIMIT $limit`;
      return this.#page(this.#query(sql).all(params) as unknown as EventRow[], q.limit);
    });
  }

  listAnomalies(q: AnomalyQuery): Promise<Page<AuditRecord>> {
    return this.#run(() => {
      checkLimit(q.limit, AUDIT_LIST_MAX);
      const where = ["tenant_id = $tenant_id", "type = 'anomaly.detected'"];
      const params: Record<string, SQLInputValue> = { tenant_id: q.tenantId, limit: q.limit + 1 };
      if (q.userId !== undefined) {
        where.push('user_id = $user_id');
        params.user_id = q.userId;
      }
      if (q.reason !== undefined) {
        where.push("json_extract(body, '$.details.reason') = $reason");
        params.reason = q.reason;
      }
      const after = decodeSeqCursor(q.cursor);
      if (after !== null) {
        where.push('seq < $after');
        params.after = after;
      }
      const sql = `SELECT * FROM audit_events WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT $limit`;
      return this.#page(this.#query(sql).all(params) as unknown as EventRow[], q.limit);
    });
  }

  chainState(tenantId: string): Promise<ChainState> {
    return this.#run(() => {
      const row = this.#stmt.chainFull.get({ tenant_id: tenantId }) as
        | { head_seq: number; head_hash: string; anchor_seq: number | null; anchor_hash: string | null }
        | undefined;
      if (!row) return { head: null, anchor: null };
      const anchor: ChainPoint | null =
        row.anchor_seq !== null && row.anchor_hash !== null ? { seq: row.anchor_seq, hash: row.anchor_hash } : null;
      return { head: { seq: row.head_seq, hash: row.head_hash }, anchor };
    });
  }

  tenants(): Promise<string[]> {
    return this.#run(() => (this.#stmt.tenants.all({}) as Array<{ tenant_id: string }>).map((r) => r.tenant_id));
  }

  prune(before: number, max: number, keepNewest = Number.MAX_SAFE_INTEGER): Promise<number> {
    // Removes the longest prefix of the chain whose records are all older than `before` (at most
    // `max` records), never the head: the chain must keep a record to continue from. The anchor
    // moves first, which is also what lets the delete trigger allow it.
    return this.#write(() => {
      let total = 0;
      for (const { tenant_id } of this.#stmt.tenants.all({}) as Array<{ tenant_id: string }>) {
        const keep_newest = Math.max(1, Math.min(Number.MAX_SAFE_INTEGER, Math.floor(keepNewest)));
        const span = this.#stmt.pruneSpan.get({ tenant_id, before, keep_newest }) as { first: number | null; keep: number | null; head: number };
        if (span.first === null) continue;
        let upTo = Math.min(span.keep === null ? span.head : span.keep - 1, span.head - 1, span.first + Math.max(1, Math.floor(max)) - 1);
        if (upTo < span.first) continue;
        const anchor = this.#stmt.bySeq.get({ tenant_id, seq: upTo }) as { seq: number; hash: string } | undefined;
        if (!anchor) continue;
        upTo = anchor.seq;
        this.#stmt.setAnchor.run({ tenant_id, seq: anchor.seq, hash: anchor.hash });
        total += Number(this.#stmt.deleteUpTo.run({ tenant_id, seq: upTo }).changes);
      }
      return total;
    });
  }

  activeSessions(): Promise<ActiveCount[]> {
    return this.#run(() =>
      (this.#stmt.gauge.all({}) as Array<{ tenant_id: string; kind: string; count: number }>).map((r) => ({
        tenantId: r.tenant_id,
        kind: r.kind,
        count: Math.max(0, r.count),
      })),
    );
  }

  userHistory(tenantId: string, userId: string): Promise<UserHistory> {
    return this.#run(() => this.#history(tenantId, userId));
  }

  recordLogin(tenantId: string, userId: string, o: LoginObservation): Promise<void> {
    // Read, merge, write under the write lock: two logins at once both count.
    return this.#write(() => {
      const next = mergeLogin(this.#history(tenantId, userId), o);
      this.#stmt.putHistory.run({ tenant_id: tenantId, user_id: userId, body: JSON.stringify(next), updated_at: o.time });
    });
  }

  subscribe(listener: (r: AuditRecord) => void, onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void> }> {
    return this.#run(() => {
      const top = this.#stmt.highWater.get({}) as { seq: number } | undefined;
      const sub: Subscriber = { last: top?.seq ?? 0, listener, onReset };
      this.#subscribers.add(sub);
      if (this.#timer === null) {
        this.#timer = setInterval(() => this.#deliver(), AUDIT_FEED_POLL_MS);
        this.#timer.unref();
      }
      return {
        close: () => {
          this.#subscribers.delete(sub);
          if (this.#subscribers.size === 0 && this.#timer !== null) {
            clearInterval(this.#timer);
            this.#timer = null;
          }
          return Promise.resolve();
        },
      };
    });
  }

  // ---- internals ------------------------------------------------------------------------------

  #history(tenantId: string, userId: string): UserHistory {
    const row = this.#stmt.history.get({ tenant_id: tenantId, user_id: userId }) as { body: string } | undefined;
    return row ? { ...emptyHistory(), ...(JSON.parse(row.body) as UserHistory) } : emptyHistory();
  }

  #page(rows: EventRow[], limit: number): Page<AuditRecord> {
    const items = rows.slice(0, limit).map(recordFromRow);
    const last = rows[limit - 1];
    return { items, nextCursor: rows.length > limit && last ? String(last.seq) : null };
  }

  /**
   * A prepared statement per query shape. The shapes are few (which filters are present, the
   * order), and the cache is bounded anyway: least recently used first out.
   */
  #query(sql: string): StatementSync {
    let stmt = this.#queries.get(sql);
    if (stmt === undefined) {
      stmt = this.#db.prepare(sql);
      if (this.#queries.size >= QUERY_CACHE_MAX) {
        const oldest = this.#queries.keys().next();
        if (!oldest.done) this.#queries.delete(oldest.value);
      }
    } else {
      this.#queries.delete(sql);
    }
    this.#queries.set(sql, stmt);
    return stmt;
  }

  /** How many query statements are cached (diagnostics and the bound's test). */
  get cachedQueries(): number {
    return this.#queries.size;
  }

  #deliver(): void {
    if (!this.#db.isOpen) {
      if (this.#timer !== null) clearInterval(this.#timer);
      this.#timer = null;
      return;
    }
    for (const sub of this.#subscribers) {
      let rows: EventRow[];
      try {
        rows = this.#stmt.after.all({ after: sub.last }) as unknown as EventRow[];
      } catch {
        return; // tried again at the next poll, from the same id
      }
      for (const row of rows) {
        sub.last = row.id;
        try {
          sub.listener(recordFromRow(row));
        } catch {
          // a failing listener must not stop the feed
        }
      }
    }
  }

  #write<T>(fn: () => T): Promise<T> {
    return inWriteTransaction(this.#db, fn, () => {
      if (this.#subscribers.size > 0) this.#deliver();
    });
  }

  #run<T>(fn: () => T): Promise<T> {
    return settle(this.#db, fn);
  }
}


function decodeSeqCursor(cursor: string | null | undefined): number | null {
  if (isFirstPage(cursor)) return null;
  if (!/^[1-9][0-9]{0,15}$/.test(cursor)) throw invalidCursor();
  return Number(cursor);
}

/** Query statements kept prepared (see #query). */
const QUERY_CACHE_MAX = 64;

function prepare(db: DatabaseSync) {
  return {
    chain: db.prepare('SELECT head_seq, head_hash FROM audit_chains WHERE tenant_id = $tenant_id'),
    chainFull: db.prepare('SELECT head_seq, head_hash, anchor_seq, anchor_hash FROM audit_chains WHERE tenant_id = $tenant_id'),
    insert: db.prepare(`
      INSERT INTO audit_events (tenant_id, seq, time, type, user_id, session_id, body, prev_hash, hash)
      VALUES ($tenant_id, $seq, $time, $type, $user_id, $session_id, $body, $prev_hash, $hash)`),
    moveHead: db.prepare(`
      INSERT INTO audit_chains (tenant_id, head_seq, head_hash) VALUES ($tenant_id, $seq, $hash)
      ON CONFLICT (tenant_id) DO UPDATE SET head_seq = excluded.head_seq, head_hash = excluded.head_hash`),
    moveGauge: db.prepare(`
      INSERT INTO audit_active_sessions (tenant_id, kind, count) VALUES ($tenant_id, $kind, max(0, $delta))
      ON CONFLICT (tenant_id, kind) DO UPDATE SET count = max(0, count + $delta)`),
    gauge: db.prepare('SELECT tenant_id, kind, count FROM audit_active_sessions ORDER BY tenant_id, kind'),
    tenants: db.prepare('SELECT tenant_id FROM audit_chains ORDER BY tenant_id'),
    // The first record still there, the first one that stays (not older than $before and among
    // the newest $keep_newest), and the head.
    pruneSpan: db.prepare(`
      SELECT
        (SELECT min(seq) FROM audit_events WHERE tenant_id = $tenant_id) AS first,
        (SELECT min(seq) FROM audit_events WHERE tenant_id = $tenant_id AND time >= $before
           AND seq > (SELECT head_seq FROM audit_chains WHERE tenant_id = $tenant_id) - $keep_newest) AS keep,
        (SELECT head_seq FROM audit_chains WHERE tenant_id = $tenant_id) AS head`),
    bySeq: db.prepare('SELECT seq, hash FROM audit_events WHERE tenant_id = $tenant_id AND seq = $seq'),
    setAnchor: db.prepare('UPDATE audit_chains SET anchor_seq = $seq, anchor_hash = $hash WHERE tenant_id = $tenant_id'),
    deleteUpTo: db.prepare('DELETE FROM audit_events WHERE tenant_id = $tenant_id AND seq <= $seq'),
    history: db.prepare('SELECT body FROM anomaly_history WHERE tenant_id = $tenant_id AND user_id = $user_id'),
    putHistory: db.prepare(`
      INSERT INTO anomaly_history (tenant_id, user_id, body, updated_at) VALUES ($tenant_id, $user_id, $body, $updated_at)
      ON CONFLICT (tenant_id, user_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`),
    highWater: db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'"),
    after: db.prepare('SELECT * FROM audit_events WHERE id > $after ORDER BY id LIMIT 1000'),
  };
}
