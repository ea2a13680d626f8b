// The audit log: filter, page, expand an event with its request headers, verify the chain, export.

import { useCallback, useEffect, useState } from 'react';
import { api, ApiError, current, query } from '../api.ts';
import { Empty, ErrorNote, Loading, TenantFilter, useTenantChoice, when } from '../ui.tsx';

interface AuditRecord {
  id: string;
  seq: number;
  time: string;
  type: string;
  tenantId: string;
  userId: string | null;
  /** The user's email now; null without a user or once the user is gone. */
  email?: string | null;
  sessionId: string | null;
  headers: Record<string, unknown> | null;
  ip: string | null;
  userAgent: string | null;
  location: Record<string, unknown> | null;
  details: Record<string, unknown>;
}
interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
interface Verification {
  ok: boolean;
  tenants: Array<{ tenantId: string; ok: boolean; records: number; problems: Array<{ seq: number; problem: string; detail: string }> }>;
}

export function Audit() {
  const [tenant, setTenant] = useTenantChoice();
  const [type, setType] = useState('');
  const [user, setUser] = useState('');
  const [applied, setApplied] = useState({ type: '', user: '' });
  const [items, setItems] = useState<AuditRecord[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [verify, setVerify] = useState<Verification | null>(null);
  const [verifyError, setVerifyError] = useState<unknown>(null);

  const load = useCallback(
    async (more: string | null) => {
      if (!tenant) return;
      setError(null);
      if (!more) setItems(null);
      try {
        const page = await api<Page<AuditRecord>>('GET', `/api/v1/admin/audit${query({ tenantId: tenant, type: applied.type.trim(), userId: applied.user.trim(), cursor: more, limit: 50 })}`);
        setItems((prev) => (more && prev ? [...prev, ...page.items] : page.items));
        setCursor(page.nextCursor);
      } catch (e) {
        setError(e);
      }
    },
    [tenant, applied],
  );
  useEffect(() => {
    void load(null);
    setVerify(null);
  }, [load]);

  const exportLog = async () => {
    const me = current();
    const r = await fetch(`/api/v1/admin/audit/export${query({ tenantId: tenant, type: applied.type.trim(), userId: applied.user.trim() })}`, {
      credentials: 'same-origin',
      headers: {
        'x-request-id': crypto.randomUUID(),
        'x-correlation-id': 'admin-console',
        'x-activity-id': crypto.randomUUID(),
        ...(me ? { 'x-tenant-id': me.tenantId, 'x-session-id': me.sessionId } : {}),
      },
    });
    if (!r.ok) {
      setError(new ApiError({ status: r.status, code: 'export_failed', detail: `The export failed (${r.status}).` }));
      return;
    }
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement('a');
    a.href = url;
    a.download = `audit-${tenant}.ndjson`;
    a.click();
    URL.revokeObjectURL(url);
  };

  return (
    <section aria-labelledby="h-audit">
      <h1 id="h-audit">Audit</h1>
      <form
        className="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied({ type, user });
        }}
      >
        <TenantFilter value={tenant} onChange={setTenant} />
        <label className="field wide">
          <span>Type</span>
          <input value={type} placeholder="session.*, login.failed" list="audit-types" onChange={(e) => setType(e.target.value)} />
          <datalist id="audit-types">
            {['session.*', 'session.created', 'session.revoked', 'login.failed', 'user.*', 'anomaly.detected', 'sso.*', 'consent.*'].map((t) => (
              <option key={t} value={t} />
            ))}
          </datalist>
        </label>
        <label className="field">
          <span>User id</span>
          <input value={user} onChange={(e) => setUser(e.target.value)} />
        </label>
        <button type="submit" className="primary">
          Filter
        </button>
        <button
          type="button"
          onClick={() => {
            setVerifyError(null);
            api<Verification>('GET', `/api/v1/admin/audit/verify${query({ tenantId: tenant })}`).then(setVerify, setVerifyError);
          }}
        >
          Verify chain
        </button>
        <button type="button" onClick={() => void exportLog()}>
          Export
        </button>
      </form>
      {verify && (
        <p className={verify.ok ? 'notice' : 'state error'} role="status">
          {verify.ok
            ? `The chain is intact: ${verify.tenants.map((t) => `${t.records} records`).join(', ')}.`
            : `The chain is broken: ${verify.tenants.flatMap((t) => t.problems.map((p) => `#${p.seq} ${p.problem}`)).join('; ')}`}
        </p>
      )}
      {verifyError !== null && <ErrorNote error={verifyError} />}
      {error !== null && <ErrorNote error={error} retry={() => void load(null)} />}
      {items === null && error === null && <Loading what="the audit log" />}
      {items !== null && items.length === 0 && <Empty>No audit events match these filters.</Empty>}
      {items !== null && items.length > 0 && (
        <ol className="events" aria-label="Audit events">
          {items.map((r) => (
            <li key={r.id}>
              <details>
                <summary>
                  <span className="time">{when(r.time)}</span> <code className="type">{r.type}</code>
                  <span className="who" title={r.userId ?? undefined}>
                    {r.email ?? (r.userId ? `user ${r.userId}` : '')}
                  </span>
                </summary>
                <dl className="facts">
                  <dt>Sequence</dt>
                  <dd>{r.seq}</dd>
                  <dt>User</dt>
                  <dd>{r.userId === null ? '—' : `${r.email ?? '(deleted user)'} · ${r.userId}`}</dd>
                  <dt>Session</dt>
                  <dd>{r.sessionId ?? '—'}</dd>
                  <dt>IP</dt>
                  <dd>{r.ip ?? '—'}</dd>
                  <dt>User agent</dt>
                  <dd>{r.userAgent ?? '—'}</dd>
                  <dt>Headers</dt>
                  <dd>
                    <pre>{JSON.stringify(r.headers ?? {}, null, 2)}</pre>
                  </dd>
                  <dt>Details</dt>
                  <dd>
                    <pre>{JSON.stringify(r.details, null, 2)}</pre>
                  </dd>
                </dl>
              </details>
            </li>
          ))}
        </ol>
      )}
      {cursor && (
        <button type="button" onClick={() => void load(cursor)}>
          Load more
        </button>
      )}
    </section>
  );
}
