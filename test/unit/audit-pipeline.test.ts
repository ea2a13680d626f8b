// The audit queue between the event bus and the store: in order, retried without loss while the
// store fails, bounded, and loud (metric + error line) about what it had to drop.

import { describe, expect, it } from 'vitest';
import { TesseraMetrics } from '../../src/audit/metrics.ts';
import { auditInputOf, AuditPipeline, gaugeChangeOf, type PipelineLog } from '../../src/audit/pipeline.ts';
import { canonicalJson, chainRecord, normaliseInput, type AuditEventInput, type AuditRecord } from '../../src/domain/audit-chain.ts';
import { StoreUnavailable } from '../../src/domain/errors.ts';
import type { TesseraEvent } from '../../src/events/bus.ts';
import type { AppendOptions, AuditQuery, AuditStore } from '../../src/store/audit-port.ts';
import type { Page } from '../../src/store/page.ts';

/**
 * An audit store whose first `failFirst` appends fail; with `writtenAnyway`, a failed append has
 * still written the record (a command that timed out and ran when the store resumed).
 */
function fakeAudit(failFirst = 0, writtenAnyway = false) {
  const appended: Array<{ input: AuditEventInput; opts: AppendOptions }> = [];
  let failures = failFirst;
  let onAppend: (() => void) | null = null;
  const audit = {
    append(input: AuditEventInput, opts: AppendOptions = {}): Promise<AuditRecord> {
      if (failures > 0) {
        failures -= 1;
        if (writtenAnyway) appended.push({ input, opts });
        return Promise.reject(new StoreUnavailable('down'));
      }
      appended.push({ input, opts });
      onAppend?.();
      return Promise.resolve(chainRecord(null, input));
    },
    chainState(tenantId: string) {
      const mine = appended.filter((a) => a.input.tenantId === tenantId);
      return Promise.resolve({ head: mine.length > 0 ? { seq: mine.length, hash: 'h' } : null, anchor: null });
    },
    list(q: AuditQuery): Promise<Page<AuditRecord>> {
      const items = appended
        .map((a) => chainRecord(null, a.input))
        .filter((r) => r.tenantId === q.tenantId && (!q.types || q.types.includes(r.type)) && (q.from === undefined || r.time >= q.from) && (q.to === undefined || r.time <= q.to));
      return Promise.resolve({ items: items.reverse().slice(0, q.limit), nextCursor: null });
    },
  } as unknown as AuditStore;
  return { audit, appended, setOnAppend: (f: () => void) => (onAppend = f) };
}

/**
 * An audit store with appendMany (as Redis has): records each call's events; the first
 * `failFirst` calls fail (having written their records anyway with `writtenAnyway`).
 */
function batchingAudit(failFirst = 0, writtenAnyway = false, failTenant?: string) {
  const calls: Array<{ tenant: string; ids: Array<string | null>; deltas?: number[] }> = [];
  const stored: AuditEventInput[] = [];
  /** The active-session gauge as the applied appends moved it. */
  const gauge = { value: 0 };
  let failures = failFirst;
  const apply = (entries: ReadonlyArray<{ input: AuditEventInput; opts?: AppendOptions }>) => {
    stored.push(...entries.map((e) => e.input));
    for (const e of entries) gauge.value += e.opts?.activeDelta?.delta ?? 0;
  };
  const audit = {
    append: () => Promise.reject(new Error('append is not used when appendMany is there')),
    appendMany(entries: ReadonlyArray<{ input: AuditEventInput; opts?: AppendOptions }>): Promise<AuditRecord[]> {
      const tenant = entries[0]!.input.tenantId;
      calls.push({ tenant, ids: entries.map((e) => e.input.sessionId), ...(entries.some((e) => e.opts?.activeDelta) ? { deltas: entries.map((e) => e.opts?.activeDelta?.delta ?? 0) } : {}) });
      if (failures > 0 && (failTenant === undefined || failTenant === tenant)) {
        failures -= 1;
        if (writtenAnyway) apply(entries);
        return Promise.reject(new StoreUnavailable('down'));
      }
      apply(entries);
      return Promise.resolve(entries.map((e) => chainRecord(null, e.input)));
    },
    list(q: AuditQuery): Promise<Page<AuditRecord>> {
      const items = stored.map((i) => chainRecord(null, i)).filter((r) => r.tenantId === q.tenantId && (!q.types || q.types.includes(r.type)) && (q.from === undefined || r.time >= q.from) && (q.to === undefined || r.time <= q.to));
      return Promise.resolve({ items: items.reverse().slice(0, q.limit), nextCursor: null });
    },
  } as unknown as AuditStore;
  return { audit, calls, stored, gauge };
}

function logSink() {
  const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
  const log: PipelineLog = {
    warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => lines.push({ level: 'error', obj, msg }),
  };
  return { log, lines };
}

const metrics = () => new TesseraMetrics({ activeSessions: () => Promise.resolve([]), backlog: () => 0, now: () => 0 });

const ev = (i: number, over: Partial<TesseraEvent> = {}): TesseraEvent => ({
  type: 'session.created',
  time: 1_000 + i,
  tenantId: 't1',
  userId: 'u1',
  sessionHandle: `h${i}`,
  kind: 'app',
  details: { n: i },
  ...over,
});

describe('the audit pipeline', () => {
  it('appends in emit order, with the gauge change each event stands for', async () => {
    const f = fakeAudit();
    const p = new AuditPipeline({ audit: f.audit, metrics: metrics(), tenantExists: async () => true, maxQueue: 100, log: () => logSink().log });
    p.push(ev(1));
    p.push(ev(2, { type: 'session.revoked', details: { reason: 'logout' } }));
    p.push(ev(3, { type: 'session.refreshed' }));
    await p.flush();
    expect(f.appended.map((a) => [a.input.type, a.opts])).toEqual([
      ['session.created', { activeDelta: { kind: 'app', delta: 1 } }],
      ['session.revoked', { activeDelta: { kind: 'app', delta: -1 } }],
      ['session.refreshed', {}],
    ]);
  });

  it('starts again for an event pushed just as the queue ran empty', async () => {
    const f = fakeAudit();
    const p = new AuditPipeline({ audit: f.audit, metrics: metrics(), tenantExists: async () => true, maxQueue: 100, log: () => logSink().log });
    let pushed = false;
    // A consumer of the store's feed that emits while the last append completes.
    f.setOnAppend(() => {
      if (!pushed) {
        pushed = true;
        queueMicrotask(() => queueMicrotask(() => p.push(ev(2))));
      }
    });
    p.push(ev(1));
    await p.flush();
    await new Promise((r) => setImmediate(r));
    await p.flush();
    expect(f.appended.map((a) => a.input.sessionId)).toEqual(['h1', 'h2']);
    expect(p.backlog).toBe(0);
  });

  it('appends the events of one turn as one appendMany per tenant, in emit order, with their gauge changes', async () => {
    const f = batchingAudit();
    const m = metrics();
    const p = new AuditPipeline({ audit: f.audit, metrics: m, tenantExists: async () => true, maxQueue: 100, log: () => logSink().log });
    for (let i = 1; i <= 5; i++) p.push(ev(i, { tenantId: i % 2 === 1 ? 't1' : 't2', ...(i === 3 ? { type: 'session.revoked' } : {}) }));
    await p.flush();
    expect(f.calls).toEqual([
      { tenant: 't1', ids: ['h1', 'h3', 'h5'], deltas: [1, -1, 1] },
      { tenant: 't2', ids: ['h2', 'h4'], deltas: [1, 1] },
    ]);
    // What queued while those were under way goes in the next one.
    p.push(ev(6));
    p.push(ev(7));
    await p.flush();
    expect(f.calls.slice(2)).toEqual([{ tenant: 't1', ids: ['h6', 'h7'], deltas: [1, 1] }]);
    expect((await m.registry.getSingleMetric('tessera_audit_events_appended_total')?.get())?.values[0]?.value).toBe(7);
  });

  it('retries a failed appendMany without writing any of its events twice, and without touching the tenants that succeeded', async () => {
    const f = batchingAudit(2, true, 't2');
    const p = new AuditPipeline({ audit: f.audit, metrics: metrics(), tenantExists: async () => true, maxQueue: 100, log: () => logSink().log });
    for (let i = 1; i <= 4; i++) p.push(ev(i, { tenantId: i <= 2 ? 't1' : 't2' }));
    await p.flush();
    expect(f.stored.map((e) => e.sessionId)).toEqual(['h1', 'h2', 'h3', 'h4']);
    // t1 once; t2 failed twice (written all the same the first time), then found in the log.
    expect(f.calls.filter((c) => c.tenant === 't1')).toHaveLength(1);
    expect(f.calls.filter((c) => c.tenant === 't2').map((c) => c.ids)).toEqual([['h3', 'h4']]);
  });

  it('retries a failed appendMany of more than a page of same-type, same-ms events (a tenant revocation) without writing any twice', async () => {
    // The first appendMany is applied (all of it: it is one atomic step) and then reported failed.
    const f = batchingAudit(1, true);
    const m = metrics();
    const p = new AuditPipeline({ audit: f.audit, metrics: m, tenantExists: async () => true, maxQueue: 1000, log: () => logSink().log });
    const n = 150;
    for (let i = 0; i < n; i++) p.push(ev(i, { type: 'session.revoked', time: 5_000, details: { reason: 'tenant' } }));
    await p.flush();
    expect(f.stored.map((e) => e.sessionId)).toEqual(Array.from({ length: n }, (_, i) => `h${i}`));
    expect(f.gauge.value).toBe(-n);
    expect(f.calls).toHaveLength(1);
    expect((await m.registry.getSingleMetric('tessera_audit_events_appended_total')?.get())?.values[0]?.value).toBe(n);
  });

  it('retries the same event while the store fails, keeping order and losing nothing', async () => {
    const f = fakeAudit(2);
    const m = metrics();
    const sink = logSink();
    const p = new AuditPipeline({ audit: f.audit, metrics: m, tenantExists: async () => true, maxQueue: 100, log: () => sink.log });
    for (let i = 1; i <= 3; i++) p.push(ev(i));
    await p.flush();
    expect(f.appended.map((a) => a.input.sessionId)).toEqual(['h1', 'h2', 'h3']);
    expect((await m.registry.getSingleMetric('tessera_audit_append_failures_total')?.get())?.values[0]?.value).toBe(2);
    expect(sink.lines.map((l) => l.msg)).toEqual(['audit log append failed; retrying', 'audit log appends work again']);
  });

  it('never appends twice an event whose failed append had happened all the same (a timed-out command)', async () => {
    const f = fakeAudit(2, true);
    const p = new AuditPipeline({ audit: f.audit, metrics: metrics(), tenantExists: async () => true, maxQueue: 100, log: () => logSink().log });
    p.push(ev(1));
    p.push(ev(1, { sessionHandle: 'other' })); // same time and type, other content: appended too
    await p.flush();
    expect(f.appended.map((a) => a.input.sessionId)).toEqual(['h1', 'other']);
  });

  it('counts and logs what it drops when the queue is full or at shutdown', async () => {
    const m = metrics();
    const sink = logSink();
    let release: () => void = () => {};
    const blocked = new Promise<void>((r) => (release = r));
    const audit = { append: async (input: AuditEventInput) => (await blocked, chainRecord(null, input)) } as unknown as AuditStore;
    const p = new AuditPipeline({ audit, metrics: m, tenantExists: async () => true, maxQueue: 2, log: () => sink.log });
    p.push(ev(1));
    p.push(ev(2));
    p.push(ev(3)); // the queue holds 2
    await p.stop(10);
    release();
    const dropped = (await m.registry.getSingleMetric('tessera_audit_events_dropped_total')?.get())?.values;
    expect(dropped?.map((v) => [v.labels.reason, v.value]).sort()).toEqual([
      ['queue_full', 1],
      ['shutdown', 2],
    ]);
    expect(sink.lines.filter((l) => l.level === 'error').map((l) => [l.obj.reason, l.obj.dropped])).toEqual([
      ['queue_full', 1],
      ['shutdown', 2],
    ]);
  });

  it('counts events of unknown tenants but gives them no chain', async () => {
    const f = fakeAudit();
    const m = metrics();
    const p = new AuditPipeline({ audit: f.audit, metrics: m, tenantExists: async (id) => id === 't1', maxQueue: 100, log: () => logSink().log });
    p.push(ev(1, { type: 'login.failed', tenantId: 'made-up', userId: null, sessionHandle: null, kind: undefined as unknown as string, details: { reason: 'invalid_credentials' } }));
    p.push(ev(2));
    await p.flush();
    expect(f.appended.map((a) => a.input.tenantId)).toEqual(['t1']);
    expect(await m.text()).toContain('tessera_login_failures_total{tenant="_unknown",reason="invalid_credentials"} 1');
  });

  it('takes the tenant answer at hand when there is one: no lookup for those events, the same records and counts', async () => {
    const f = fakeAudit();
    const m = metrics();
    const asked: string[] = [];
    const tenantExists = async (id: string) => {
      asked.push(id);
      return id === 't1' || id === 't2';
    };
    // t1 known to exist, made-up known not to, t2 not in the cache (asked as before).
    const tenantKnownNow = (id: string) => (id === 't1' ? true : id === 'made-up' ? false : undefined);
    const p = new AuditPipeline({ audit: f.audit, metrics: m, tenantExists, tenantKnownNow, maxQueue: 100, log: () => logSink().log });
    p.push(ev(1));
    p.push(ev(2, { type: 'login.failed', tenantId: 'made-up', userId: null, sessionHandle: null, kind: undefined as unknown as string, details: { reason: 'invalid_credentials' } }));
    p.push(ev(3, { tenantId: 't2' }));
    p.push(ev(4, { type: 'session.refreshed' }));
    await p.flush();
    expect(asked).toEqual(['t2']);
    expect(f.appended.map((a) => [a.input.tenantId, a.input.sessionId])).toEqual([
      ['t1', 'h1'],
      ['t2', 'h3'],
      ['t1', 'h4'],
    ]);
    expect(await m.text()).toContain('tessera_login_failures_total{tenant="_unknown",reason="invalid_credentials"} 1');
  });

  it('keeps the events of a tenant deleted after its lookup at queue time failed; still opens no chain for an unknown tenant', async () => {
    const f = fakeAudit();
    const m = metrics();
    const stored = new Set(['t1']);
    let lookupsFail = false;
    const tenantExists = async (id: string) => {
      if (lookupsFail) throw new StoreUnavailable('down');
      return stored.has(id);
    };
    const p = new AuditPipeline({ audit: f.audit, metrics: m, tenantExists, maxQueue: 100, log: () => logSink().log });
    p.push(ev(1)); // the tenant's log exists
    await p.flush();
    // The deletion's events are queued while the store fails the lookup, and the tenant record is
    // gone by the time the worker asks again (the deletion route waits for at most 5 s).
    lookupsFail = true;
    p.push(ev(2, { type: 'tenant.deleted', userId: null, sessionHandle: null, kind: undefined as unknown as string, details: {} }));
    p.push(ev(3, { type: 'login.failed', tenantId: 'made-up', userId: null, sessionHandle: null, kind: undefined as unknown as string, details: { reason: 'invalid_credentials' } }));
    stored.delete('t1');
    lookupsFail = false;
    await p.flush();
    expect(f.appended.map((a) => [a.input.tenantId, a.input.type])).toEqual([
      ['t1', 'session.created'],
      ['t1', 'tenant.deleted'],
    ]);
  });

  it('normalises an input as the JSON round trip of the whole input did (location and details alone take it now)', () => {
    const whole = (e: AuditEventInput) => {
      const plain = JSON.parse(canonicalJson(e)) as Partial<AuditEventInput>;
      return { ...normaliseInput({ ...e, location: null, details: {} }), location: plain.location ?? null, details: plain.details ?? {} };
    };
    const base = auditInputOf(ev(1));
    const inputs: AuditEventInput[] = [
      base,
      { ...base, details: { z: 1, a: { y: [1, undefined, 'x', { q: NaN, b: Infinity }], x: undefined }, d: new Date(0) } },
      { ...base, location: { country: 'CH', city: 'Bern', lat: 46.9, lon: 7.4 } as unknown as AuditEventInput['location'] },
      { ...base, location: undefined as unknown as null, details: undefined as unknown as Record<string, unknown> },
      { ...base, details: null as unknown as Record<string, unknown>, userId: undefined as unknown as null },
    ];
    for (const e of inputs) {
      const got = normaliseInput(e);
      expect(got).toStrictEqual(whole(e));
      expect(canonicalJson(got)).toBe(canonicalJson(whole(e)));
      expect(JSON.stringify(got)).toBe(JSON.stringify(whole(e)));
    }
  });

  it('keeps secrets out of the record even when an emitter put one in the details', () => {
    const input = auditInputOf(ev(1, { details: { refreshToken: 'abc', nested: { password: 'x', list: [{ cookie: 'c' }] }, reason: 'ok' } }));
    expect(input.details).toEqual({ refreshToken: '[redacted]', nested: { password: '[redacted]', list: [{ cookie: '[redacted]' }] }, reason: 'ok' });
    expect(gaugeChangeOf(ev(1, { type: 'session.expired' }))).toEqual({ activeDelta: { kind: 'app', delta: -1 } });
  });
});

describe('the request latency histogram', () => {
  it('exposes what a plain prom-client histogram fed the same observations does, across a reset', async () => {
    const { Histogram, Registry } = await import('prom-client');
    const m = metrics();
    const plain = new Histogram({
      name: 'tessera_http_request_duration_seconds',
      help: 'HTTP request latency, by route pattern',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [new Registry()],
    });
    const observations: Array<[string, string, number, number]> = [
      ['GET', '/api/v1/session', 200, 0.0004],
      ['GET', '/api/v1/session', 200, 0.001],
      ['GET', '/api/v1/session', 200, 0.0031],
      ['GET', '/api/v1/session', 401, 0.02],
      ['POST', '/api/v1/auth/login', 200, 0.3],
      ['POST', '/api/v1/auth/login', 200, 7],
      ['GET', 'unmatched', 404, 0.0001],
      // The same route and status under another method, and the first series again.
      ['DELETE', '/api/v1/session', 200, 0.004],
      ['GET', '/api/v1/session', 200, 0.004],
    ];
    const lines = async () => (await m.text()).split('\n').filter((l) => l.startsWith('tessera_http_request_duration_seconds'));
    for (const [method, route, status, seconds] of observations) {
      m.observeRequest(method, route, status, seconds);
      plain.observe({ method, route, status: String(status) }, seconds);
    }
    const mine = await lines();
    const reg = new Registry();
    reg.registerMetric(plain);
    const plainLines = (await reg.metrics()).split('\n').filter((l) => l.startsWith('tessera_http_request_duration_seconds'));
    expect(mine).toEqual(plainLines);
    expect(mine).toContain('tessera_http_request_duration_seconds_bucket{le="0.001",method="GET",route="/api/v1/session",status="200"} 2');
    expect(mine).toContain('tessera_http_request_duration_seconds_count{method="POST",route="/api/v1/auth/login",status="200"} 2');

    // After the registry is reset, observing starts from zero again and still shows.
    m.registry.resetMetrics();
    plain.reset();
    m.observeRequest('GET', '/api/v1/session', 200, 0.002);
    plain.observe({ method: 'GET', route: '/api/v1/session', status: '200' }, 0.002);
    const after = await lines();
    expect(after).toEqual((await reg.metrics()).split('\n').filter((l) => l.startsWith('tessera_http_request_duration_seconds')));
    expect(after).toContain('tessera_http_request_duration_seconds_count{method="GET",route="/api/v1/session",status="200"} 1');
  });
});
