// Live: events per minute and active sessions as charts, fed by the admin event stream
// (GET /api/v1/admin/events), with the newest events listed beside them.

import { useEffect, useState } from 'react';
import { api, query, streamEvents } from '../api.ts';
import { ErrorNote, TenantFilter, useTenantChoice, when } from '../ui.tsx';

interface LiveEvent {
  id: string;
  time: string;
  type: string;
  userId: string | null;
}
const MINUTES = 15;

function minuteOf(ms: number): number {
  return Math.floor(ms / 60_000);
}

function BarChart({ label, values, labels }: { label: string; values: number[]; labels: string[] }) {
  const max = Math.max(1, ...values);
  const bw = 100 / values.length;
  return (
    <figure className="chart">
      <figcaption>
        <span>{label}</span>
        <small>
          now {values[values.length - 1] ?? 0} · peak {Math.max(0, ...values)}
        </small>
      </figcaption>
      <svg viewBox="0 0 100 100" preserveAspectRatio="none" role="img" aria-label={`${label}, one bar per minute, oldest first: ${values.join(', ')}`}>
        {values.map((v, i) => (
          <rect key={i} x={i * bw + bw * 0.12} y={100 - (v / max) * 100} width={bw * 0.76} height={(v / max) * 100} className="bar">
            <title>
              {labels[i]}: {v}
            </title>
          </rect>
        ))}
      </svg>
      <div className="ticks">
        <span>{labels[0]}</span>
        <span>now</span>
      </div>
    </figure>
  );
}

interface AuditRow {
  time: string;
  type: string;
  kind: string | null;
}

export function Live() {
  const [tenant, setTenant] = useTenantChoice();
  const [events, setEvents] = useState<LiveEvent[]>([]);
  const [perMinute, setPerMinute] = useState<Map<number, number>>(new Map());
  const [active, setActive] = useState<Map<number, number>>(new Map());
  const [state, setState] = useState<'connecting' | 'live' | 'error'>('connecting');
  const [error, setError] = useState<unknown>(null);
  const [now, setNow] = useState(Date.now());

  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 10_000);
    return () => clearInterval(t);
  }, []);

  useEffect(() => {
    if (!tenant) return;
    const abort = new AbortController();
    setEvents([]);
    setPerMinute(new Map());
    setState('connecting');
    setError(null);
    let activeNow = 0;
    const recordActive = () => setActive((m) => new Map(m).set(minuteOf(Date.now()), activeNow));
    // The starting point of the active-sessions line: the tenant's active app sessions now.
    const count = async () => {
      let cursor: string | null = null;
      let n = 0;
      do {
        const page: { items: unknown[]; nextCursor: string | null } = await api('GET', `/api/v1/admin/sessions${query({ tenantId: tenant, status: 'active', kind: 'app', limit: 500, cursor })}`);
        n += page.items.length;
        cursor = page.nextCursor;
      } while (cursor !== null && n < 5000);
      return n;
    };
    const run = async () => {
      try {
        activeNow = await count();
        // The last minutes from the audit log, so the charts do not start empty: events per
        // minute, and the active count walked back from now through creations and ends.
        const since = Date.now() - MINUTES * 60_000;
        const past: AuditRow[] = [];
        let cursor: string | null = null;
        do {
          const page: { items: AuditRow[]; nextCursor: string | null } = await api('GET', `/api/v1/admin/audit${query({ tenantId: tenant, from: new Date(since).toISOString(), limit: 500, cursor })}`);
          past.push(...page.items);
          cursor = page.nextCursor;
        } while (cursor !== null && past.length < 5000);
        const counts = new Map<number, number>();
        const delta = new Map<number, number>();
        for (const r of past) {
          const m = minuteOf(Date.parse(r.time));
          counts.set(m, (counts.get(m) ?? 0) + 1);
          if (r.kind === 'app' && r.type === 'session.created') delta.set(m, (delta.get(m) ?? 0) + 1);
          if (r.kind === 'app' && (r.type === 'session.revoked' || r.type === 'session.expired')) delta.set(m, (delta.get(m) ?? 0) - 1);
        }
        setPerMinute(counts);
        const history = new Map<number, number>();
        let level = activeNow;
        for (let m = minuteOf(Date.now()); m > minuteOf(since) - 1; m--) {
          history.set(m, Math.max(0, level));
          level -= delta.get(m) ?? 0;
        }
        setActive(history);
        setState('live');
        await streamEvents(`/api/v1/admin/events${query({ tenantId: tenant })}`, abort.signal, (_type, data) => {
          const e = data as LiveEvent & { kind?: string };
          setEvents((prev) => [e, ...prev].slice(0, 50));
          const m = minuteOf(Date.parse(e.time) || Date.now());
          setPerMinute((prev) => new Map(prev).set(m, (prev.get(m) ?? 0) + 1));
          if (e.kind === 'app' && e.type === 'session.created') activeNow += 1;
          if (e.kind === 'app' && (e.type === 'session.revoked' || e.type === 'session.expired')) activeNow = Math.max(0, activeNow - 1);
          recordActive();
        });
        if (!abort.signal.aborted) setState('error');
      } catch (e) {
        if (abort.signal.aborted) return;
        setError(e);
        setState('error');
      }
    };
    void run();
    return () => abort.abort();
  }, [tenant]);

  const last = minuteOf(now);
  const minutes = Array.from({ length: MINUTES }, (_, i) => last - MINUTES + 1 + i);
  const labels = minutes.map((m) => new Date(m * 60_000).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' }));
  let carry = 0;
  const activeSeries = minutes.map((m) => {
    const known = [...active.entries()].filter(([k]) => k <= m).sort((a, b) => a[0] - b[0]);
    if (known.length > 0) carry = known[known.length - 1]![1];
    return carry;
  });

  return (
    <section aria-labelledby="h-live">
      <h1 id="h-live">Live</h1>
      <div className="filters">
        <TenantFilter value={tenant} onChange={setTenant} />
        <p className={`live-state ${state}`} role="status">
          {state === 'live' ? '● Live' : state === 'connecting' ? 'Connecting…' : 'Disconnected'}
        </p>
      </div>
      {error !== null && <ErrorNote error={error} />}
      <div className="live">
        <div className="charts">
          <BarChart label="Events per minute" values={minutes.map((m) => perMinute.get(m) ?? 0)} labels={labels} />
          <BarChart label="Active app sessions" values={activeSeries} labels={labels} />
        </div>
        <div className="newest">
          <h2 id="h-newest">Newest events</h2>
          {events.length === 0 ? (
            <p className="state empty">No events since this page opened. They appear here as they happen.</p>
          ) : (
            <ul aria-labelledby="h-newest" className="events">
              {events.map((e) => (
                <li key={e.id}>
                  <span className="time">{when(e.time)}</span> <code className="type">{e.type}</code> <span className="who">{e.userId ?? ''}</span>
                </li>
              ))}
            </ul>
          )}
        </div>
      </div>
    </section>
  );
}
