// The consumers of the event pipeline, and the anomaly policy in action (docs/monitoring.md):
// - every event on the bus goes to the audit pipeline (metrics, then the hash-chained log);
// - new `app` sessions are screened against the user's history (src/audit/anomaly-rules.ts)
//   before the login answers, so a `reauth` mark or a revocation holds from the first request;
// - authenticated requests are counted per session (request_rate);
// - a reused refresh token is reported as a finding;
// - the store's feed of appended records drives the live stream (SSE) and keeps every process's
//   session cache in step with re-authentication marks set by other processes.
//
// The tenant's `anomalyPolicy` decides what a finding does (integration tenants only record):
// `record` — nothing more; `reauth` — the session is marked (`data.reauth`) and answers
// 401 `reauth_required` until POST /api/v1/auth/reauth proves the password again; `revoke` —
// the session is ended with reason `anomaly` (a login then answers 401 `anomaly_detected`).
// When several findings come at once the strongest action applies once. A check that cannot run
// (store error) lets the request go on unchecked and counts `tessera_anomaly_check_failures_total`.

import { actionFor, evaluateLogin, observeLogin, refreshTokenReuse, requestRate, strongest, type AnomalyAction, type Finding } from '../audit/anomaly-rules.ts';
import { createLocator, type Locator } from '../audit/location.ts';
import { TesseraMetrics } from '../audit/metrics.ts';
import { AuditPipeline, type PipelineLog } from '../audit/pipeline.ts';
import type { AuditRecord } from '../domain/audit-chain.ts';
import type { Session } from '../domain/session.ts';
import type { Tenant } from '../domain/tenant.ts';
import { type TesseraEvent, emit, type Origin } from '../events/bus.ts';
import type { Config } from '../config/config.ts';
import type { Clock } from '../domain/clock.ts';
import type { EventBus } from '../events/bus.ts';
import type { Store } from '../store/port.ts';
import type { SessionCache } from './session-cache.ts';
import { typeMatches } from '../store/audit-port.ts';
import { announceEnded } from './app-sessions.ts';
import { RequestCounts, TenantPresence } from './monitoring-caches.ts';

/** What monitoring uses, declared here rather than taken from the composition root. */
export interface MonitoringDeps {
  config: Config;
  store: Store;
  clock: Clock;
  bus: EventBus;
  sessionCache: SessionCache;
}

export interface LiveFilter {
  tenantId?: string;
  /** Exact types or `prefix.*`. */
  types?: string[];
}

export interface MonitorLog extends PipelineLog {
  info(obj: Record<string, unknown>, msg: string): void;
}

/** What a session carries in `data` while it must be re-authenticated. */
export interface ReauthMark {
  since: number;
  reasons: string[];
}

export function reauthMarkOf(s: Session): ReauthMark | null {
  const m = s.data.reauth;
  return m !== null && typeof m === 'object' ? (m as ReauthMark) : null;
}

export interface Monitoring {
  readonly metrics: TesseraMetrics;
  readonly locator: Locator;
  /**
   * Runs the login rules on a new session and applies the tenant's policy. Resolves to the
   * session as it now is (maybe marked for re-authentication), or null when it was revoked.
   */
  screenNewSession(session: Session, tenant: Tenant, now: number, origin?: Origin): Promise<Session | null>;
  /** Counts an authenticated request of a session (request_rate); acts in the background. */
  /** Counts a request of the session for the request_rate rule; `origin` is asked for only when the rule trips. */
  countRequest(session: Session, tenant: Tenant, now: number, origin: () => Origin): void;
  observeRequest(method: string, route: string, status: number, seconds: number): void;
  /** Audit records as they are appended (by any process), filtered; returns the unsubscribe. */
  watch(filter: LiveFilter, listener: (record: AuditRecord) => void): () => void;
  /** Lines for /readyz. */
  readiness(): Record<string, string>;
  useLogger(log: MonitorLog): void;
  /** Resolves when every policy action under way is done and every event emitted so far is in the audit log. */
  flush(): Promise<void>;
  /**
   * Subscribes to the store's audit feed (live streams, re-authentication marks from other
   * processes) and starts the retention pruning. Called by the runtime's `start` (src/runtime.ts).
   */
  start(): Promise<void>;
  stop(): Promise<void>;
}

const SILENT: MonitorLog = { info() {}, warn() {}, error() {} };
/** Sessions whose request counts are kept at once (those whose window began longest ago forgotten first, a sixteenth at once: RequestCounts). */
const MAX_COUNTED_SESSIONS = 100_000;
/** Tenants whose existence is remembered at once (oldest first out, a sixteenth at once: TenantPresence). */
const MAX_CACHED_TENANTS = 10_000;
const TENANT_CACHE_MS = 5_000;
const PRUNE_EVERY_MS = 3_600_000;
const SHUTDOWN_FLUSH_MS = 5_000;

export interface MonitoringOptions {
  processMetrics?: boolean;
}

/**
 * The audit pipeline and the anomaly rules, listening on the bus from now on (so no event emitted
 * while the process starts is lost). The store's audit feed is subscribed by `start`.
 */
export function createMonitoring(deps: MonitoringDeps, opts: MonitoringOptions = {}): Monitoring {
  const { config, store, clock, bus, sessionCache } = deps;
  const settings = config.monitoring;
  const t = settings.thresholds;
  let log: MonitorLog = SILENT;

  const tenants = new TenantPresence(MAX_CACHED_TENANTS, TENANT_CACHE_MS, () => clock.now(), async (id) => (await store.getTenant(id)) !== null);
  const tenantKnownNow = (id: string): boolean | undefined => tenants.knownNow(id);
  const tenantExists = (id: string): Promise<boolean> => tenants.exists(id);

  const locator = createLocator(config.trustedProxies, settings.geoHeaders, settings.geoipDbPath);
  let pipeline: AuditPipeline | null = null;
  const metrics = new TesseraMetrics({
    activeSessions: () => store.audit.activeSessions(),
    backlog: () => pipeline?.backlog ?? 0,
    now: () => clock.now(),
    ...(opts.processMetrics !== undefined ? { processMetrics: opts.processMetrics } : {}),
  });
  pipeline = new AuditPipeline({ audit: store.audit, metrics, tenantExists, tenantKnownNow, maxQueue: settings.auditQueueMax, log: () => log });
  const audit = pipeline;

  // ---- findings and actions -----------------------------------------------------------------

  function report(findings: Finding[], session: Session, tenant: Tenant, now: number, origin?: Origin): AnomalyAction | null {
    const actions: AnomalyAction[] = [];
    for (const f of findings) {
      const action = actionFor(tenant, f.reason);
      actions.push(action);
      const event: TesseraEvent = {
        type: 'anomaly.detected',
        time: now,
        tenantId: session.tenantId,
        userId: session.userId,
        sessionHandle: session.handle,
        kind: session.kind,
        details: { reason: f.reason, evidence: f.evidence, action },
      };
      emit(deps, event, origin);
    }
    return strongest(actions);
  }

  async function act(action: AnomalyAction | null, findings: Finding[], session: Session, now: number, origin?: Origin): Promise<Session | null> {
    if (action === 'revoke') {
      const ended = await store.revokeSession(session.handle, 'anomaly', now);
      announceEnded(deps, ended, now, origin);
      return null;
    }
    if (action === 'reauth') {
      const mark: ReauthMark = { since: now, reasons: findings.map((f) => f.reason) };
      const marked = await store.updateSessionData(session.handle, { reauth: mark }, now);
      if (marked) sessionCache.remember(marked);
      return marked;
    }
    return session;
  }

  async function screenNewSession(session: Session, tenant: Tenant, now: number, origin?: Origin): Promise<Session | null> {
    if (session.kind !== 'app' || session.userId === null) return session;
    const userId = session.userId;
    let findings: Finding[];
    const observation = observeLogin(now, session.device.userAgent ?? origin?.userAgent ?? null, session.device.location ?? origin?.location ?? null);
    try {
      const history = await store.audit.userHistory(session.tenantId, userId);
      const active = await store.listSessions({ tenantId: session.tenantId, userId, kind: 'app', status: 'active', now, limit: 500 });
      findings = evaluateLogin(history, observation, active.items.length, t);
    } catch (err) {
      metrics.anomalyCheckFailures.inc();
      log.warn({ err: err instanceof Error ? err.message : String(err), tenantId: session.tenantId }, 'anomaly check failed; the login goes on unchecked');
      return session;
    }
    const action = report(findings, session, tenant, now, origin);
    const after = await act(action, findings, session, now, origin);
    // A login that was revoked is not learned as the user's: it would make the next one look usual.
    if (after !== null) {
      await store.audit.recordLogin(session.tenantId, userId, observation).catch((err: unknown) => {
        metrics.anomalyCheckFailures.inc();
        log.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not record the login in the anomaly history');
      });
    }
    return after;
  }

  const counts = new RequestCounts(MAX_COUNTED_SESSIONS);
  /** Policy actions running after their response was sent (request_rate). */
  const actions = new Set<Promise<void>>();
  function countRequest(session: Session, tenant: Tenant, now: number, originOf: () => Origin): void {
    const count = counts.add(session.handle, Math.floor(now / t.requestWindowMs));
    const finding = requestRate(count, t);
    if (finding === null) return;
    const origin = originOf();
    const action = report([finding], session, tenant, now, origin);
    const pending = act(action, [finding], session, now, origin)
      .then(() => undefined)
      .catch((err: unknown) => {
        metrics.anomalyCheckFailures.inc();
        log.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not apply the anomaly policy');
      });
    actions.add(pending);
    void pending.finally(() => actions.delete(pending));
  }

  // ---- consumers of the bus and of the store's feed -----------------------------------------

  const unsubscribeBus = bus.subscribe((e) => {
    audit.push(e);
    if (e.type === 'refresh_token.reused' && e.sessionHandle !== null) {
      const revoked = Array.isArray(e.details.revoked) ? (e.details.revoked as string[]) : [];
      const f = refreshTokenReuse(revoked);
      const event: TesseraEvent = {
        type: 'anomaly.detected',
        time: e.time,
        tenantId: e.tenantId,
        userId: e.userId,
        sessionHandle: e.sessionHandle,
        details: { reason: f.reason, evidence: f.evidence, action: 'revoke' },
        ...(e.kind !== undefined ? { kind: e.kind } : {}),
        ...(e.headers !== undefined ? { headers: e.headers } : {}),
        ...(e.ip !== undefined ? { ip: e.ip } : {}),
        ...(e.userAgent !== undefined ? { userAgent: e.userAgent } : {}),
        ...(e.location !== undefined ? { location: e.location } : {}),
      };
      bus.emit(event);
    }
  });

  const watchers = new Set<{ filter: LiveFilter; listener: (r: AuditRecord) => void }>();
  /** The record types the session cache acts on (the listener below). */
  const CACHE_FEED_TYPES: ReadonlySet<string> = new Set(['anomaly.detected', 'session.reauthenticated']);
  const subscribeFeed = () =>
    store.audit.subscribe(
      (r) => {
        // Another process marked or cleared a session for re-authentication: read it again.
        if (r.sessionId !== null && ((r.type === 'anomaly.detected' && r.details.action === 'reauth') || r.type === 'session.reauthenticated')) {
          sessionCache.invalidate([r.sessionId]);
        }
        for (const w of watchers) {
          if (w.filter.tenantId !== undefined && w.filter.tenantId !== r.tenantId) continue;
          if (!typeMatches(r.type, w.filter.types)) continue;
          try {
            w.listener(r);
          } catch {
            // one broken stream must not stop the others
          }
        }
      },
      // Re-authentication marks come through this feed: while it is down, trust no cached record.
      (change) => sessionCache.feedChanged('audit', change),
      // With no live stream open, only the re-authentication marks above are wanted: on Redis the
      // other records (one per SSO exchange, rotation, login… of every process) are not parsed.
      () => (watchers.size > 0 ? null : CACHE_FEED_TYPES),
    );

  const retentionMs = settings.auditRetentionDays * 24 * 3_600_000;
  const keepNewest = settings.auditRetentionRecords > 0 ? settings.auditRetentionRecords : undefined;
  function startPruning(): ReturnType<typeof setInterval> | null {
    if (retentionMs <= 0 && keepNewest === undefined) return null;
    const timer = setInterval(() => {
      // Age 0 means "keep whatever the count bound keeps": nothing is older than time 0.
      store.audit.prune(retentionMs > 0 ? clock.now() - retentionMs : 0, 10_000, keepNewest).catch((err: unknown) => {
        log.warn({ err: err instanceof Error ? err.message : String(err) }, 'audit retention pruning failed');
      });
    }, PRUNE_EVERY_MS);
    timer.unref();
    return timer;
  }

  let feed: { close(): Promise<void> } | null = null;
  let pruneTimer: ReturnType<typeof setInterval> | null = null;
  let started: Promise<void> | null = null;
  let stopped: Promise<void> | null = null;
  return {
    metrics,
    locator,
    screenNewSession,
    countRequest,
    observeRequest: (method, route, status, seconds) => metrics.observeRequest(method, route, status, seconds),
    watch(filter, listener) {
      const w = { filter, listener };
      watchers.add(w);
      return () => watchers.delete(w);
    },
    readiness: () => ({
      location: locator.describe(),
      audit: audit.backlog === 0 ? 'ok' : `${audit.backlog} events waiting for the store`,
    }),
    useLogger(l) {
      log = l;
    },
    async flush() {
      await Promise.all([...actions]);
      await audit.flush();
    },
    start() {
      started ??= (async () => {
        feed = await subscribeFeed();
        pruneTimer = startPruning();
      })();
      return started;
    },
    stop() {
      stopped ??= (async () => {
        unsubscribeBus();
        await started?.catch(() => undefined);
        if (pruneTimer) clearInterval(pruneTimer);
        await audit.stop(SHUTDOWN_FLUSH_MS);
        watchers.clear();
        await feed?.close();
      })();
      return stopped;
    },
  };
}
