// The audit part of the storage port (SessionStore.audit): the append-only, hash-chained audit
// log per tenant, the anomaly findings in it, the live feed of appended records, the gauge of
// active sessions kept in step with the log, and the per-user history the anomaly rules learn
// from. Both adapters implement it and pass test/store/audit-conformance.ts.
//
// Atomicity:
// - `append` numbers and links the record (src/domain/audit-chain.ts) and writes it, the chain
//   head and the gauge change in one atomic step per tenant: a SQLite transaction, or one Redis
//   script on the tenant's audit slot (a compare-and-set on the head; the caller retries when
//   another process appended first). Appends of one tenant are therefore totally ordered, from
//   any number of processes.
// - `appendMany` (optional; Redis has it) appends several records of one tenant, in order, as one
//   such step: the audit pipeline hands it what queued up while the previous append was under way.
// - `prune` (retention) removes the oldest records and moves the chain's anchor in the same step,
//   so what remains still verifies.
// - `recordLogin` merges one login into the user's history in one step (no lost update).

import type { AuditEventInput, AuditRecord, ChainPoint } from '../domain/audit-chain.ts';
import type { FeedChange } from './coordination-port.ts';
import type { Page } from './page.ts';

export type { AuditEventInput, AuditRecord, ChainPoint } from '../domain/audit-chain.ts';

export interface AuditQuery {
  tenantId: string;
  userId?: string;
  /** Exact types, or prefixes written `session.*`; any of them matches. */
  types?: string[];
  /** Inclusive bounds on the record's time (epoch ms). */
  from?: number;
  to?: number;
  /** `desc`: newest first (listing); `asc`: oldest first (export). */
  order: 'asc' | 'desc';
  cursor?: string | null;
  /** 1..1000. A page may hold fewer items than the limit and still have a next cursor. */
  limit: number;
}

export interface AnomalyQuery {
  tenantId: string;
  userId?: string;
  reason?: string;
  cursor?: string | null;
  /** 1..1000, newest first. */
  limit: number;
}

export interface ChainState {
  head: ChainPoint | null;
  /** Set once retention has pruned the chain's start: the last pruned record. */
  anchor: ChainPoint | null;
}

export interface ActiveCount {
  tenantId: string;
  kind: string;
  count: number;
}

export interface AppendOptions {
  /** Change of the tenant's active-session gauge that this event stands for (+1 created, -1 ended). */
  activeDelta?: { kind: string; delta: number };
}

/** A located point of a user's history. */
export interface LocatedPoint {
  time: number;
  lat: number;
  lon: number;
  city: string | null;
  country: string | null;
}

/** One login as the history learns it. */
export interface LoginObservation {
  time: number;
  /** Hour of the day, 0..23, UTC. */
  hour: number;
  deviceKey: string | null;
  locationKey: string | null;
  located: LocatedPoint | null;
}

/** What the anomaly rules know of a user's past logins. */
export interface UserHistory {
  logins: number;
  /** 24 counters: logins per UTC hour of the day. */
  hours: number[];
  /** Device key → when last seen (ms). At most MAX_KNOWN, the least recently seen dropped. */
  devices: Record<string, number>;
  /** Location key (`country/city`) → when last seen (ms). At most MAX_KNOWN. */
  locations: Record<string, number>;
  lastLocated: LocatedPoint | null;
}

/** How many devices and locations a user's history remembers. */
export const MAX_KNOWN = 50;

export function emptyHistory(): UserHistory {
  return { logins: 0, hours: new Array<number>(24).fill(0), devices: {}, locations: {}, lastLocated: null };
}

/** The history after one more login (pure; SQLite applies it in a transaction, Redis in a script). */
export function mergeLogin(h: UserHistory, o: LoginObservation): UserHistory {
  const hours = [...h.hours];
  hours[o.hour] = (hours[o.hour] ?? 0) + 1;
  return {
    logins: h.logins + 1,
    hours,
    devices: o.deviceKey === null ? h.devices : remember(h.devices, o.deviceKey, o.time),
    locations: o.locationKey === null ? h.locations : remember(h.locations, o.locationKey, o.time),
    lastLocated: o.located ?? h.lastLocated,
  };
}

function remember(known: Record<string, number>, key: string, time: number): Record<string, number> {
  const out = { ...known, [key]: Math.max(time, known[key] ?? 0) };
  const keys = Object.keys(out);
  if (keys.length > MAX_KNOWN) {
    keys.sort((a, b) => (out[a] as number) - (out[b] as number) || (a < b ? -1 : 1));
    for (const k of keys.slice(0, keys.length - MAX_KNOWN)) delete out[k];
  }
  return out;
}

/** Whether `type` is selected by `patterns` (exact, or `prefix.*`). No patterns: everything. */
export function typeMatches(type: string, patterns: readonly string[] | undefined): boolean {
  if (patterns === undefined || patterns.length === 0) return true;
  return patterns.some((p) => (p.endsWith('.*') ? type.startsWith(p.slice(0, -1)) : type === p));
}

/** Whether a record passes a query's filters (adapters that cannot filter in the store use it). */
export function recordMatches(r: AuditRecord, q: Pick<AuditQuery, 'userId' | 'types' | 'from' | 'to'>): boolean {
  if (q.userId !== undefined && r.userId !== q.userId) return false;
  if (!typeMatches(r.type, q.types)) return false;
  if (q.from !== undefined && r.time < q.from) return false;
  if (q.to !== undefined && r.time > q.to) return false;
  return true;
}

/** One record to append, with the gauge change it stands for. */
export interface AuditAppend {
  input: AuditEventInput;
  opts?: AppendOptions;
}

export interface AuditStore {
  /** Appends to the tenant's chain (see the header). Resolves to the stored record. */
  append(input: AuditEventInput, opts?: AppendOptions): Promise<AuditRecord>;
  /**
   * Appends records of ONE tenant to its chain in the given order, all or none, in one atomic
   * step (the caller keeps batches small: the pipeline's BATCH_MAX). Resolves to the stored
   * records. Adapters without it get `append` once per record.
   */
  appendMany?(entries: readonly AuditAppend[]): Promise<AuditRecord[]>;
  /** Records of one tenant by query; cursors are opaque. Throws BadRequest('invalid_cursor'). */
  list(query: AuditQuery): Promise<Page<AuditRecord>>;
  /** `anomaly.detected` records of one tenant, newest first. */
  listAnomalies(query: AnomalyQuery): Promise<Page<AuditRecord>>;
  chainState(tenantId: string): Promise<ChainState>;
  /** Tenants that have an audit log. */
  tenants(): Promise<string[]>;
  /**
   * Retention: removes each tenant's oldest records — those older than `before` (by record
   * time) and, with `keepNewest`, those beyond the newest `keepNewest` whatever their age —
   * oldest first, at most `max` per tenant per call, never the head, and moves the anchor.
   * Resolves to how many went.
   */
  prune(before: number, max: number, keepNewest?: number): Promise<number>;
  /** The gauge of active sessions per tenant and kind, as the appended events moved it. */
  activeSessions(): Promise<ActiveCount[]>;
  userHistory(tenantId: string, userId: string): Promise<UserHistory>;
  recordLogin(tenantId: string, userId: string, observation: LoginObservation): Promise<void>;
  /**
   * Every record appended from now on, by any process on this store, in append order per
   * tenant: at once for appends through this instance, within a short poll (SQLite) or a
   * pub/sub message (Redis) for the others. `onReset`: records may be missed from 'down' to 'up'
   * (as for Coordination.subscribeSessionEnds).
   * `wants`, asked for each record, is a hint: the types the listener wants at that moment (null:
   * every record). An adapter may leave out records of other types — Redis does, without parsing
   * them, since every process receives every process's records — so the listener must still check
   * what it gets, and must not rely on getting the others.
   */
  subscribe(listener: (record: AuditRecord) => void, onReset: (change: FeedChange) => void, wants?: AuditFeedWants): Promise<{ close(): Promise<void> }>;
}

/** AuditStore.subscribe's hint: the record types wanted now, or null for every record. */
export type AuditFeedWants = () => ReadonlySet<string> | null;

/** Maximum `limit` of the audit and anomaly listings. */
export const AUDIT_LIST_MAX = 1000;
