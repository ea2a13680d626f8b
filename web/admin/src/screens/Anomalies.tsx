// Anomaly findings with their evidence and the action taken.

import { useCallback, useEffect, useState } from 'react';
import { api, query } from '../api.ts';
import { Empty, ErrorNote, Loading, TenantFilter, useTenantChoice, when } from '../ui.tsx';

interface Finding {
  id: string;
  time: string;
  tenantId: string;
  userId: string;
  /** The user's email now; null once the user is gone. */
  email?: string | null;
  sessionId: string | null;
  reason: string;
  evidence: Record<string, unknown>;
  action: string;
}
interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

function evidenceText(f: Finding): string {
  const e = f.evidence;
  if (f.reason === 'impossible_travel' && e.from && e.to) {
    const place = (p: unknown) => {
      const o = p as { city?: string; country?: string };
      return [o.city, o.country].filter(Boolean).join(', ') || 'somewhere';
    };
    return `${place(e.from)} → ${place(e.to)}${typeof e.speedKmh === 'number' ? ` at ${Math.round(e.speedKmh)} km/h` : ''}${typeof e.distanceKm === 'number' ? ` (${Math.round(e.distanceKm)} km)` : ''}`;
  }
  return Object.entries(e)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : Array.isArray(v) ? v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(', ') : JSON.stringify(v)}`)
    .join(' · ');
}

export function Anomalies() {
  const [tenant, setTenant] = useTenantChoice();
  const [items, setItems] = useState<Finding[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(
    async (more: string | null) => {
      if (!tenant) return;
      setError(null);
      if (!more) setItems(null);
      try {
        const page = await api<Page<Finding>>('GET', `/api/v1/admin/anomalies${query({ tenantId: tenant, cursor: more, limit: 50 })}`);
        setItems((prev) => (more && prev ? [...prev, ...page.items] : page.items));
        setCursor(page.nextCursor);
      } catch (e) {
        setError(e);
      }
    },
    [tenant],
  );
  useEffect(() => {
    void load(null);
  }, [load]);
  return (
    <section aria-labelledby="h-anomalies">
      <h1 id="h-anomalies">Anomalies</h1>
      <div className="filters">
        <TenantFilter value={tenant} onChange={setTenant} />
      </div>
      {error !== null && <ErrorNote error={error} retry={() => void load(null)} />}
      {items === null && error === null && <Loading what="findings" />}
      {items !== null && items.length === 0 && <Empty>No anomalies found in this tenant.</Empty>}
      {items !== null && items.length > 0 && (
        <div className="table-wrap">
          <table aria-label="Anomalies">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Finding</th>
                <th scope="col">Evidence</th>
                <th scope="col">Action</th>
                <th scope="col">User</th>
              </tr>
            </thead>
            <tbody>
              {items.map((f) => (
                <tr key={f.id}>
                  <td data-label="When">{when(f.time)}</td>
                  <td data-label="Finding">{f.reason.replace(/_/g, ' ')}</td>
                  <td data-label="Evidence">{evidenceText(f)}</td>
                  <td data-label="Action">
                    <span className={f.action === 'record' ? 'badge' : 'badge warn'}>{f.action}</span>
                  </td>
                  <td data-label="User">
                    <span>
                      {f.email ?? '(deleted user)'}
                      <small className="id">{f.userId}</small>
                    </span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {cursor && (
        <button type="button" onClick={() => void load(cursor)}>
          Load more
        </button>
      )}
    </section>
  );
}
