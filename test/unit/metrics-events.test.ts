// The lifecycle-event counters (src/audit/metrics.ts): counted in prom-client's own record of
// each series, so an event does not build, hash and validate its labels again — with the same
// figures as prom-client's `inc` would give, through a reset too.

import { Counter } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import { TesseraMetrics, UNKNOWN_TENANT } from '../../src/audit/metrics.ts';
import type { TesseraEvent } from '../../src/events/bus.ts';

const metrics = () => new TesseraMetrics({ activeSessions: () => Promise.resolve([]), backlog: () => 0, now: () => 0 });

const event = (type: string, tenantId: string, kind?: string): TesseraEvent =>
  ({ type, time: 1, tenantId, userId: 'u', sessionHandle: 'h', kind, startedAt: 0, details: {} }) as unknown as TesseraEvent;

/** A counter's values by its labels, in a stable order. */
async function valuesOf(m: TesseraMetrics, name: string): Promise<Array<[string, number]>> {
  const metric = m.registry.getSingleMetric(name);
  const { values } = await metric!.get();
  return values.map((v): [string, number] => [JSON.stringify(v.labels), v.value]).sort((a, b) => a[0].localeCompare(b[0]));
}

/** A mix of tenants, types and kinds, the unknown tenant and a kind-less event among them. */
const MIX: Array<[TesseraEvent, string]> = [];
for (let i = 0; i < 300; i++) {
  const tenant = ['acme', 'globex', 'ünïcode "t"'][i % 3] as string;
  const type = ['session.refreshed', 'session.created', 'session.extended', 'login.succeeded', 'session.refreshed'][i % 5] as string;
  const e = event(type, tenant, i % 7 === 0 ? undefined : i % 2 === 0 ? 'app' : 'idp');
  MIX.push([e, i % 11 === 0 ? UNKNOWN_TENANT : tenant]);
}

/** What prom-client's own `inc` makes of MIX (the counting before the kept series). */
async function expected(name: string, labelNames: string[], labelsOf: (e: TesseraEvent, tenant: string) => Record<string, string> | null) {
  const c = new Counter({ name, help: 'h', labelNames, registers: [] });
  for (const [e, tenant] of MIX) {
    const labels = labelsOf(e, tenant);
    if (labels !== null) c.inc(labels);
  }
  const { values } = await c.get();
  return values.map((v): [string, number] => [JSON.stringify(v.labels), v.value]).sort((a, b) => a[0].localeCompare(b[0]));
}

describe('lifecycle-event counters', () => {
  it('count as prom-client inc does, series by series', async () => {
    const m = metrics();
    for (const [e, tenant] of MIX) m.observeEvent(e, tenant);
    expect(await valuesOf(m, 'tessera_events_total')).toEqual(await expected('events', ['tenant', 'type'], (e, tenant) => ({ tenant, type: e.type })));
    for (const [name, type] of [
      ['tessera_sessions_created_total', 'session.created'],
      ['tessera_sessions_refreshed_total', 'session.refreshed'],
      ['tessera_sessions_extended_total', 'session.extended'],
    ] as const) {
      expect(await valuesOf(m, name)).toEqual(await expected(name, ['tenant', 'kind'], (e, tenant) => (e.type === type ? { tenant, kind: e.kind ?? 'none' } : null)));
    }
    const text = await m.text();
    expect(text).toContain('tessera_sessions_refreshed_total{tenant="acme",kind="app"}');
    expect(text).toContain('tessera_events_total{tenant="ünïcode \\"t\\"",type="session.extended"}');
  });

  it('build and hash the labels of a series once, not per event', () => {
    // prom-client's Counter takes its `inc` from this method when it is made (no exemplars).
    const inc = vi.spyOn(Counter.prototype as unknown as { incWithoutExemplar: (...args: unknown[]) => unknown }, 'incWithoutExemplar');
    try {
      const m = metrics();
      for (let i = 0; i < 100; i++) m.observeEvent(event('session.refreshed', 'acme', 'app'), 'acme');
      // The first event of each of its two series (events_total and refreshed_total) only.
      expect(inc).toHaveBeenCalledTimes(2);
    } finally {
      inc.mockRestore();
    }
  });

  it('count with prom-client inc when its inc tells no record (returns nothing)', async () => {
    // As an inc that returns undefined would (prom-client's with exemplars, another version).
    const proto = Counter.prototype as unknown as { incWithoutExemplar: (...args: unknown[]) => unknown };
    const original = proto.incWithoutExemplar;
    const inc = vi.spyOn(proto, 'incWithoutExemplar').mockImplementation(function (this: unknown, ...args: unknown[]) {
      original.apply(this, args);
      return undefined;
    });
    try {
      const m = metrics();
      for (let i = 0; i < 4; i++) m.observeEvent(event('session.refreshed', 'acme', 'app'), 'acme');
      expect(await valuesOf(m, 'tessera_sessions_refreshed_total')).toEqual([[JSON.stringify({ tenant: 'acme', kind: 'app' }), 4]]);
      expect(await valuesOf(m, 'tessera_events_total')).toEqual([[JSON.stringify({ tenant: 'acme', type: 'session.refreshed' }), 4]]);
      // Each of the two series: the first event's inc(labels, 0), then inc(labels) per event.
      expect(inc).toHaveBeenCalledTimes(2 * (1 + 4));
    } finally {
      inc.mockRestore();
    }
  });

  it('start again from the reset records after a reset', async () => {
    const m = metrics();
    for (let i = 0; i < 5; i++) m.observeEvent(event('session.refreshed', 'acme', 'app'), 'acme');
    m.registry.resetMetrics();
    for (let i = 0; i < 3; i++) m.observeEvent(event('session.refreshed', 'acme', 'app'), 'acme');
    expect(await valuesOf(m, 'tessera_sessions_refreshed_total')).toEqual([[JSON.stringify({ tenant: 'acme', kind: 'app' }), 3]]);
    expect(await valuesOf(m, 'tessera_events_total')).toEqual([[JSON.stringify({ tenant: 'acme', type: 'session.refreshed' }), 3]]);
  });
});
