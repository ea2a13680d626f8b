// From the event bus to the audit log, without making requests wait for the store and without
// losing events silently.
//
// Emitting is synchronous and never fails: the event goes into an in-memory queue and the request
// goes on. One worker per process takes the queue in order: it counts the event in the metrics,
// then appends it to its tenant's chain (with the active-session gauge change it stands for).
// The worker starts at the end of the event-loop turn that queued the first event, and takes
// everything queued by then (at most BATCH_MAX): the events of one tenant go to the store in one
// `appendMany` (one atomic step, one Redis script) where the store has it, in order, and the
// tenants of a batch in parallel. Under load that is one append per turn instead of one per
// event, each waiting for the one before.
// When the store fails, the worker retries the same event with backoff (100 ms doubling to 5 s),
// so order is kept and nothing is skipped. What can still be lost, each counted in
// `tessera_audit_events_dropped_total{reason}` and logged as an error line (type, tenant, no
// content):
// - `queue_full`: the store has been failing so long that the queue reached its bound
//   (TESSERA_AUDIT_QUEUE_MAX, default 10 000); newer events are dropped, the chain stays in order;
// - `shutdown`: events still waiting when a graceful stop gave up after its deadline;
// - a crash of the process loses what is in its queue (the window is the append latency).
// An append that failed may still have happened (a command that timed out on a paused or slow
// store is executed when the store resumes): before such events are appended again, the log is
// asked once per failed call — an `appendMany` is all or nothing, so its last event stands for all
// of them — whether the newest records of the tenant with that event's type and time hold an
// identical one; if so, the whole call counts as appended — so a retry never writes an event twice
// (not even when one call held more same-type, same-ms events than that page, as a tenant
// revocation does).
// Events that name a tenant that does not exist (a failed login with a made-up X-Tenant-ID) are
// counted but not appended: an unknown tenant gets no chain, so clients cannot create chains
// (#tenantKnown: a tenant deleted while the store failed its lookup keeps its last events).

import { canonicalJson, normaliseInput, type AuditEventInput, type AuditRecord } from '../domain/audit-chain.ts';
import type { TesseraEvent } from '../events/bus.ts';
import type { AppendOptions, AuditStore } from '../store/audit-port.ts';
import { UNKNOWN_TENANT, type TesseraMetrics } from './metrics.ts';

export interface PipelineLog {
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface PipelineOptions {
  audit: AuditStore;
  metrics: TesseraMetrics;
  /** Whether the tenant exists (cached by the caller). May throw when the store is down. */
  tenantExists: (tenantId: string) => Promise<boolean>;
  /**
   * tenantExists's answer when the caller has it at hand (its cache), without a promise; undefined
   * when it would have to ask the store. Optional: without it every event asks tenantExists.
   */
  tenantKnownNow?: (tenantId: string) => boolean | undefined;
  maxQueue: number;
  log: () => PipelineLog;
}

interface Item {
  event: TesseraEvent;
  counted: boolean;
  known: boolean | null;
  /** Whether its tenant exists, asked when the event was pushed (a deletion may follow soon). */
  asked: Promise<boolean> | null;
  /** That first lookup failed (the store did not answer): a later "no" may mean "deleted since". */
  askFailed: boolean;
  /**
   * The events (in order, this one among them) of the last append call that carried it and
   * failed: that call may have happened all the same, for all of them or for none.
   */
  failedCall: Item[] | null;
  /** In the log (its batch's other tenants may still have to be retried). */
  appended: boolean;
}

/** At most this many events per round of the worker. */
export const BATCH_MAX = 200;

/** Keys whose values never go into the log, whatever an emitter put there. */
const SECRET_KEY = /password|secret|token|cookie|authorization/i;

function scrub(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = SECRET_KEY.test(k) ? '[redacted]' : scrub(v, depth + 1);
  return out;
}

/** The audit record's content for an event. */
export function auditInputOf(e: TesseraEvent): AuditEventInput {
  const h = e.headers ?? {};
  return {
    time: e.time,
    tenantId: e.tenantId,
    type: e.type,
    userId: e.userId,
    sessionId: e.sessionHandle,
    kind: e.kind ?? null,
    headers: {
      requestId: h.requestId ?? null,
      correlationId: h.correlationId ?? null,
      activityId: h.activityId ?? null,
      tenantId: h.tenantId ?? null,
      sessionId: h.sessionId ?? null,
    },
    ip: e.ip ?? null,
    userAgent: e.userAgent ?? null,
    location: e.location ?? null,
    details: scrub(e.details) as Record<string, unknown>,
  };
}

/** How an event moves the active-session gauge. */
export function gaugeChangeOf(e: TesseraEvent): AppendOptions {
  if (e.kind === undefined) return {};
  if (e.type === 'session.created') return { activeDelta: { kind: e.kind, delta: 1 } };
  if (e.type === 'session.revoked' || e.type === 'session.expired') return { activeDelta: { kind: e.kind, delta: -1 } };
  return {};
}

export class AuditPipeline {
  readonly #opts: PipelineOptions;
  readonly #queue: Item[] = [];
  #draining = false;
  #stopping = false;
  #failures = 0;
  #wake: (() => void) | null = null;
  readonly #idle = new Set<() => void>();

  constructor(opts: PipelineOptions) {
    this.#opts = opts;
  }

  get backlog(): number {
    return this.#queue.length;
  }

  push(event: TesseraEvent): void {
    if (this.#stopping) {
      this.#drop([event], 'shutdown');
      return;
    }
    if (this.#queue.length >= this.#opts.maxQueue) {
      this.#drop([event], 'queue_full');
      return;
    }
    // The tenant is looked up now, not when the worker gets to the event: a tenant deleted in
    // the meantime (its `tenant.deleted` event included) must not lose the records of its end.
    // The answer at hand when there is one (no promise, and no await per event in the worker).
    const known = this.#opts.tenantKnownNow?.(event.tenantId);
    let asked: Promise<boolean> | null = null;
    if (known === undefined) {
      asked = this.#opts.tenantExists(event.tenantId);
      asked.catch(() => undefined); // awaited (and so reported) by the worker
    }
    this.#queue.push({ event, counted: false, known: known ?? null, asked, askFailed: false, failedCall: null, appended: false });
    if (!this.#draining) {
      // Set synchronously, and cleared synchronously when the worker finds the queue empty, so an
      // event pushed at any moment is either seen by the running worker or starts a new one. It
      // starts once this turn's other events are queued too (one batch for all of them).
      this.#draining = true;
      setImmediate(() => void this.#work());
    }
  }

  /** Resolves once every event pushed so far has been handled (appended, or not to be appended). */
  flush(): Promise<void> {
    if (this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.add(resolve));
  }

  /** Stops taking events; waits up to `deadlineMs` for the queue, then drops and reports the rest. */
  async stop(deadlineMs: number): Promise<void> {
    this.#stopping = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.flush(), new Promise<void>((r) => (timer = setTimeout(r, deadlineMs)))]);
    clearTimeout(timer);
    if (this.#queue.length > 0) {
      const left = this.#queue.splice(0).map((i) => i.event);
      this.#drop(left, 'shutdown');
      this.#wake?.();
    }
    for (const r of this.#idle) r();
    this.#idle.clear();
  }

  #drop(events: TesseraEvent[], reason: 'queue_full' | 'shutdown'): void {
    this.#opts.metrics.auditDropped.inc({ reason }, events.length);
    this.#opts.log().error(
      { dropped: events.length, reason, types: [...new Set(events.map((e) => e.type))], tenants: [...new Set(events.map((e) => e.tenantId))].slice(0, 20) },
      'audit events dropped: they are not in the audit log',
    );
  }

  /**
   * Whether the event's tenant gets it appended: the answer of the lookup made when it was pushed.
   * When that lookup failed, the tenant is asked about again on the retry — by then a tenant being
   * deleted may be gone (its deletion waits for its events for a bounded time only), so a "no"
   * then counts as "yes" for a tenant that has an audit log: it existed, and the records of its
   * end go in; a tenant id with no log (one a request made up) still gets none.
   */
  async #tenantKnown(item: Item): Promise<boolean> {
    const first = item.asked;
    if (first !== null) {
      item.asked = null;
      try {
        return await first;
      } catch (err) {
        item.askFailed = true;
        throw err;
      }
    }
    const tenantId = item.event.tenantId;
    if (await this.#opts.tenantExists(tenantId)) return true;
    if (!item.askFailed) return false;
    const chain = await this.#opts.audit.chainState(tenantId);
    return chain.head !== null || chain.anchor !== null;
  }

  /** Whether the tenant's log already holds a record with exactly this content (see the top). */
  async #alreadyAppended(input: AuditEventInput): Promise<boolean> {
    const wanted = canonicalJson(normaliseInput(input));
    const page = await this.#opts.audit.list({ tenantId: input.tenantId, types: [input.type], from: input.time, to: input.time, order: 'desc', limit: 100 });
    return page.items.some((r: AuditRecord) => canonicalJson(normaliseInput(r)) === wanted);
  }

  /** Appends the not yet appended events of one tenant, in order (see the top). */
  async #appendTenant(items: Item[]): Promise<void> {
    const todo: Item[] = [];
    const happened = new Map<Item[], boolean>();
    for (const item of items) {
      const call = item.failedCall;
      if (call !== null) {
        let done = happened.get(call);
        if (done === undefined) {
          done = await this.#alreadyAppended(auditInputOf(call[call.length - 1]!.event));
          happened.set(call, done);
        }
        if (done) {
          item.appended = true;
          this.#opts.metrics.auditAppended.inc();
          continue;
        }
      }
      todo.push(item);
    }
    if (todo.length === 0) return;
    const audit = this.#opts.audit;
    if (audit.appendMany === undefined) {
      for (const item of todo) {
        item.failedCall = [item];
        await audit.append(auditInputOf(item.event), gaugeChangeOf(item.event));
        item.appended = true;
        this.#opts.metrics.auditAppended.inc();
      }
      return;
    }
    for (const item of todo) item.failedCall = todo;
    await audit.appendMany(todo.map((i) => ({ input: auditInputOf(i.event), opts: gaugeChangeOf(i.event) })));
    for (const item of todo) item.appended = true;
    this.#opts.metrics.auditAppended.inc(todo.length);
  }

  async #work(): Promise<void> {
    for (;;) {
      const first = this.#queue[0];
      if (first === undefined) {
        // No await between this check and the flag: a push after it starts a new worker.
        this.#draining = false;
        return;
      }
      const batch = this.#queue.slice(0, BATCH_MAX);
      try {
        const tenants = new Map<string, Item[]>();
        for (const item of batch) {
          if (item.known === null) item.known = await this.#tenantKnown(item);
          if (!item.counted) {
            this.#opts.metrics.observeEvent(item.event, item.known ? item.event.tenantId : UNKNOWN_TENANT);
            item.counted = true;
          }
          if (!item.known || item.appended) continue;
          const list = tenants.get(item.event.tenantId);
          if (list === undefined) tenants.set(item.event.tenantId, [item]);
          else list.push(item);
        }
        const results = await Promise.allSettled([...tenants.values()].map((items) => this.#appendTenant(items)));
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed !== undefined) throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
        // stop() may have taken the queue meanwhile.
        if (this.#queue[0] === first) this.#queue.splice(0, batch.length);
        if (this.#failures > 0) this.#opts.log().warn({ after: this.#failures }, 'audit log appends work again');
        this.#failures = 0;
      } catch (err) {
        this.#failures += 1;
        this.#opts.metrics.auditFailures.inc();
        if (this.#failures === 1 || this.#failures % 20 === 0) {
          this.#opts.log().warn(
            { err: err instanceof Error ? err.message : String(err), failures: this.#failures, backlog: this.#queue.length },
            'audit log append failed; retrying',
          );
        }
        if (this.#stopping && this.#queue.length === 0) {
          this.#draining = false;
          return;
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(5000, 100 * 2 ** Math.min(this.#failures - 1, 6)));
          t.unref();
          this.#wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.#wake = null;
      }
      if (this.#queue.length === 0) {
        for (const r of this.#idle) r();
        this.#idle.clear();
      }
    }
  }
}
