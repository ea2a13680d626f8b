// Prometheus metrics (docs/monitoring.md §3) with prom-client, one registry per Tessera instance.
//
// Counters and histograms count what this process saw: each lifecycle event is emitted once,
// by the process that caused it, so summing over processes (PromQL `sum`) gives the totals.
// Active sessions are different: a per-process count would be wrong as soon as a session is
// created on one server and ended on another, or a server restarts. So the gauge is read from
// the store, where every appended audit event moves it in the same atomic step that writes the
// record (AuditStore.activeSessions); scrapes read it at most every ACTIVE_CACHE_MS.
//
// Tenant labels come only from tenants that exist (events naming an unknown tenant, such as a
// failed login with a made-up X-Tenant-ID, are labelled `_unknown`), so a client cannot grow
// the label set.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { TesseraEvent } from '../events/bus.ts';
import type { ActiveCount } from '../store/audit-port.ts';

export const UNKNOWN_TENANT = '_unknown';
const ACTIVE_CACHE_MS = 5_000;

export interface MetricsOptions {
  /** Reads the active-session gauge from the store. */
  activeSessions: () => Promise<ActiveCount[]>;
  /** Events waiting to be appended to the audit log. */
  backlog: () => number;
  now: () => number;
  /** Node's process metrics (CPU, memory, event loop) too. */
  processMetrics?: boolean;
}

/** prom-client 15's record of one labelled histogram series. */
interface HistogramRecord {
  labels: Record<string, string>;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}
type RequestSeries = (seconds: number) => void;

const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** The buckets' property names in prom-client's record (String(bound)), made once, not per request. */
const REQUEST_BUCKET_KEYS = REQUEST_BUCKETS.map(String);

/** An observer of one series that updates prom-client's record of it in place (as its `observe` does). */
function seriesOf(h: Histogram<'method' | 'route' | 'status'>, records: Record<string, HistogramRecord>, labels: Record<'method' | 'route' | 'status', string>): RequestSeries {
  h.zero(labels);
  const record = Object.values(records ?? {}).find((r) => r.labels === labels);
  if (record === undefined || typeof record.bucketValues !== 'object' || typeof record.count !== 'number') {
    const child = h.labels(labels);
    return (v) => child.observe(v);
  }
  return (v) => {
    if (!Number.isFinite(v)) return;
    record.sum += v;
    record.count += 1;
    // A value above the last bound counts only in +Inf (sum and count), as prom-client does.
    const values = record.bucketValues as Record<string, number>;
    for (let i = 0; i < REQUEST_BUCKETS.length; i++) {
      if (v <= (REQUEST_BUCKETS[i] as number)) {
        const key = REQUEST_BUCKET_KEYS[i] as string;
        values[key] = (values[key] ?? 0) + 1;
        break;
      }
    }
  };
}

/** prom-client 15's record of one labelled counter series. */
interface CounterRecord {
  value: number;
}

/**
 * A counter's series by two label values, each incremented in prom-client's own record of it (as
 * its `inc` does: `record.value += 1`), so an event does not build, hash and validate its labels
 * again (`inc({ tenant, kind })` did, twice per rotation). The values are a tenant's and an event
 * type's or kind's: as many series as prom-client keeps anyway. Should the record not be where
 * prom-client 15 keeps it (a reset, another version), the series falls back to `inc(labels)`.
 */
class CounterSeries<A extends string, B extends string> {
  readonly #counter: Counter<A | B>;
  readonly #a: A;
  readonly #b: B;
  // value of a → value of b → the series' increment.
  readonly #series = new Map<string, Map<string, () => void>>();
  #records: unknown = null;

  constructor(counter: Counter<A | B>, a: A, b: B) {
    this.#counter = counter;
    this.#a = a;
    this.#b = b;
  }

  inc(a: string, b: string): void {
    const records = (this.#counter as unknown as { hashMap: Record<string, CounterRecord> }).hashMap;
    if (records !== this.#records) {
      // reset() replaced the records: every kept series is stale.
      this.#series.clear();
      this.#records = records;
    }
    let byB = this.#series.get(a);
    if (byB === undefined) this.#series.set(a, (byB = new Map<string, () => void>()));
    let inc = byB.get(b);
    if (inc === undefined) {
      inc = this.#seriesOf(records, { [this.#a]: a, [this.#b]: b } as Record<A | B, string>);
      byB.set(b, inc);
    }
    inc();
  }

  #seriesOf(records: Record<string, CounterRecord>, labels: Record<A | B, string>): () => void {
    // prom-client's own increment the first time: it validates the labels and makes the record
    // (prom-client 15.1 tells its hash; an inc that tells nothing leaves the series to inc).
    const labelHash = (this.#counter.inc(labels, 0) as unknown as { labelHash?: string } | undefined)?.labelHash;
    const record = labelHash === undefined ? undefined : records?.[labelHash];
    if (record === undefined || typeof record.value !== 'number') return () => this.#counter.inc(labels);
    return () => {
      record.value += 1;
    };
  }
}

export class TesseraMetrics {
  readonly registry = new Registry();
  readonly #created: Counter<'tenant' | 'kind'>;
  readonly #refreshed: Counter<'tenant' | 'kind'>;
  readonly #extended: Counter<'tenant' | 'kind'>;
  readonly #expired: Counter<'tenant' | 'kind'>;
  readonly #revoked: Counter<'tenant' | 'kind' | 'reason'>;
  readonly #loginFailures: Counter<'tenant' | 'reason'>;
  readonly #anomalies: Counter<'tenant' | 'reason' | 'action'>;
  readonly #events: Counter<'tenant' | 'type'>;
  /** #events, #created and #refreshed by their series (CounterSeries): the events of every rotation, login and slide. */
  readonly #eventSeries: CounterSeries<'tenant', 'type'>;
  readonly #createdSeries: CounterSeries<'tenant', 'kind'>;
  readonly #refreshedSeries: CounterSeries<'tenant', 'kind'>;
  readonly #extendedSeries: CounterSeries<'tenant', 'kind'>;
  readonly #duration: Histogram<'tenant' | 'kind'>;
  readonly #requests: Histogram<'method' | 'route' | 'status'>;
  readonly auditAppended: Counter;
  readonly auditDropped: Counter<'reason'>;
  readonly auditFailures: Counter;
  readonly anomalyCheckFailures: Counter;

  constructor(opts: MetricsOptions) {
    const registers = [this.registry];
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'tessera_' });
    this.#created = new Counter({ name: 'tessera_sessions_created_total', help: 'Sessions created', labelNames: ['tenant', 'kind'], registers });
    this.#refreshed = new Counter({ name: 'tessera_sessions_refreshed_total', help: 'Token-pair refreshes (rotations)', labelNames: ['tenant', 'kind'], registers });
    this.#extended = new Counter({ name: 'tessera_sessions_extended_total', help: 'Idle expiries slid by activity (cookie sessions)', labelNames: ['tenant', 'kind'], registers });
    this.#expired = new Counter({ name: 'tessera_sessions_expired_total', help: 'Sessions that expired', labelNames: ['tenant', 'kind'], registers });
    this.#revoked = new Counter({ name: 'tessera_sessions_revoked_total', help: 'Sessions ended before their expiry, by reason', labelNames: ['tenant', 'kind', 'reason'], registers });
    this.#loginFailures = new Counter({ name: 'tessera_login_failures_total', help: 'Failed and throttled logins', labelNames: ['tenant', 'reason'], registers });
    this.#anomalies = new Counter({ name: 'tessera_anomalies_total', help: 'Anomaly findings, by reason and the action taken', labelNames: ['tenant', 'reason', 'action'], registers });
    this.#events = new Counter({ name: 'tessera_events_total', help: 'Lifecycle events, by type', labelNames: ['tenant', 'type'], registers });
    this.#eventSeries = new CounterSeries(this.#events, 'tenant', 'type');
    this.#createdSeries = new CounterSeries(this.#created, 'tenant', 'kind');
    this.#refreshedSeries = new CounterSeries(this.#refreshed, 'tenant', 'kind');
    this.#extendedSeries = new CounterSeries(this.#extended, 'tenant', 'kind');
    this.#duration = new Histogram({
      name: 'tessera_session_duration_seconds',
      help: 'How long sessions lasted, observed when they end',
      labelNames: ['tenant', 'kind'],
      buckets: [60, 300, 900, 1800, 3600, 7200, 14_400, 28_800, 43_200, 86_400],
      registers,
    });
    this.#requests = new Histogram({
      name: 'tessera_http_request_duration_seconds',
      help: 'HTTP request latency, by route pattern',
      labelNames: ['method', 'route', 'status'],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.auditAppended = new Counter({ name: 'tessera_audit_events_appended_total', help: 'Events appended to the audit log', registers });
    this.auditDropped = new Counter({
      name: 'tessera_audit_events_dropped_total',
      help: 'Events that never reached the audit log (queue full, or still waiting at shutdown)',
      labelNames: ['reason'],
      registers,
    });
    this.auditFailures = new Counter({ name: 'tessera_audit_append_failures_total', help: 'Failed append attempts (each retried)', registers });
    this.anomalyCheckFailures = new Counter({
      name: 'tessera_anomaly_check_failures_total',
      help: 'Anomaly checks that could not run (store errors); the request went on unchecked',
      registers,
    });
    new Gauge({
      name: 'tessera_audit_queue_length',
      help: 'Events waiting to be appended to the audit log',
      registers,
      collect() {
        this.set(opts.backlog());
      },
    });
    let cached: { at: number; counts: ActiveCount[] } | null = null;
    new Gauge({
      name: 'tessera_sessions_active',
      help: 'Active sessions by tenant and kind (from the store; ended-but-not-yet-swept sessions count until the sweeper runs)',
      labelNames: ['tenant', 'kind'],
      registers,
      async collect() {
        const now = opts.now();
        if (cached === null || now - cached.at >= ACTIVE_CACHE_MS || now < cached.at) {
          try {
            cached = { at: now, counts: await opts.activeSessions() };
          } catch {
            // The store does not answer: keep the last known values.
          }
        }
        this.reset();
        for (const c of cached?.counts ?? []) this.set({ tenant: c.tenantId, kind: c.kind }, c.count);
      },
    });
  }

  /** Counts one lifecycle event; `tenant` is its tenant id, or UNKNOWN_TENANT. */
  observeEvent(e: TesseraEvent, tenant: string): void {
    const kind = e.kind ?? 'none';
    this.#eventSeries.inc(tenant, e.type);
    switch (e.type) {
      case 'session.created':
        this.#createdSeries.inc(tenant, kind);
        break;
      case 'session.refreshed':
        this.#refreshedSeries.inc(tenant, kind);
        break;
      case 'session.extended':
        this.#extendedSeries.inc(tenant, kind);
        break;
      case 'session.expired':
        this.#expired.inc({ tenant, kind });
        this.#observeDuration(e, tenant, kind);
        break;
      case 'session.revoked':
        this.#revoked.inc({ tenant, kind, reason: typeof e.details.reason === 'string' ? e.details.reason : 'unknown' });
        this.#observeDuration(e, tenant, kind);
        break;
      case 'login.failed':
        this.#loginFailures.inc({ tenant, reason: typeof e.details.reason === 'string' ? e.details.reason : 'failed' });
        break;
      case 'login.throttled':
        this.#loginFailures.inc({ tenant, reason: 'throttled' });
        break;
      case 'anomaly.detected':
        this.#anomalies.inc({
          tenant,
          reason: typeof e.details.reason === 'string' ? e.details.reason : 'unknown',
          action: typeof e.details.action === 'string' ? e.details.action : 'record',
        });
        break;
      default:
        break;
    }
  }

  #observeDuration(e: TesseraEvent, tenant: string, kind: string): void {
    if (typeof e.startedAt !== 'number') return;
    const end = typeof e.details.expiredAt === 'number' ? e.details.expiredAt : e.time;
    this.#duration.observe({ tenant, kind }, Math.max(0, (end - e.startedAt) / 1000));
  }

  /**
   * The request histogram's series, one per (method, route, status), each kept with its bucket
   * index: observing adds to prom-client's own record of the series directly. Its `labels()`
   * child would validate and hash the labels again on every request — a measurable share of the
   * session check. Routes are the registered patterns (or `unmatched`) and statuses a few dozen,
   * so the map stays small. Should the record not be where prom-client 15 keeps it (a reset, or
   * another version), the series falls back to `labels().observe`.
   */
  // route → method → status → series: the route and method strings are the same few objects on
  // every request (their hashes are kept), where a joined key would be a new string to hash.
  readonly #requestSeries = new Map<string, Map<string, Map<number, RequestSeries>>>();
  #requestRecords: unknown = null;

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    const records = (this.#requests as unknown as { hashMap: Record<string, HistogramRecord> }).hashMap;
    if (records !== this.#requestRecords) {
      // reset() replaced the records: every kept series is stale.
      this.#requestSeries.clear();
      this.#requestRecords = records;
    }
    let byMethod = this.#requestSeries.get(route);
    if (byMethod === undefined) this.#requestSeries.set(route, (byMethod = new Map<string, Map<number, RequestSeries>>()));
    let byStatus = byMethod.get(method);
    if (byStatus === undefined) byMethod.set(method, (byStatus = new Map<number, RequestSeries>()));
    let series = byStatus.get(status);
    if (series === undefined) {
      series = seriesOf(this.#requests, records, { method, route, status: String(status) });
      byStatus.set(status, series);
    }
    series(seconds);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
