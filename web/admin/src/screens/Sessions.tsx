// Active sessions of a tenant: filters, search by email, a user's session tree, revocation.

import { useCallback, useEffect, useState } from 'react';
import { api, query } from '../api.ts';
import { Confirm, Empty, ErrorNote, Loading, TenantFilter, useTenantChoice, when } from '../ui.tsx';

interface SessionView {
  sessionId: string;
  kind: string;
  status: string;
  customerId: string | null;
  email?: string | null;
  parentId: string | null;
  clientId: string | null;
  authMethod: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
  device: { browser: string | null; os: string | null; type: string; ip?: string; location?: Record<string, string | number> };
}
interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

function deviceText(d: SessionView['device']): string {
  const parts = [d.browser, d.os ? `on ${d.os}` : null].filter(Boolean).join(' ');
  return parts ? `${parts}, ${d.type}` : d.type;
}
function locationText(d: SessionView['device']): string {
  const l = d.location;
  if (!l) return d.ip ?? '—';
  return [l.city, l.country].filter(Boolean).join(', ') || (d.ip ?? '—');
}

type Pending = { kind: 'one'; s: SessionView } | { kind: 'user'; s: SessionView } | { kind: 'tenant' };

export function Sessions() {
  const [tenant, setTenant] = useTenantChoice();
  const [kind, setKind] = useState('');
  const [status, setStatus] = useState('active');
  const [search, setSearch] = useState('');
  const [applied, setApplied] = useState('');
  const [items, setItems] = useState<SessionView[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [pending, setPending] = useState<Pending | null>(null);
  const [tree, setTree] = useState<string | null>(null);
  const [notice, setNotice] = useState('');

  const load = useCallback(
    async (more: string | null) => {
      if (!tenant) return;
      setError(null);
      if (!more) setItems(null);
      try {
        let page: Page<SessionView>;
        if (applied.trim() !== '') {
          // Search: the users whose email starts with the text, then their sessions.
          const users = await api<Page<{ id: string }>>('GET', `/api/v1/admin/users${query({ tenantId: tenant, q: applied.trim(), limit: 20 })}`);
          const all: SessionView[] = [];
          for (const u of users.items) {
            const p = await api<Page<SessionView>>('GET', `/api/v1/admin/sessions${query({ tenantId: tenant, userId: u.id, kind, status, limit: 200 })}`);
            all.push(...p.items);
          }
          page = { items: all, nextCursor: null };
        } else {
          page = await api<Page<SessionView>>('GET', `/api/v1/admin/sessions${query({ tenantId: tenant, kind, status, cursor: more, limit: 50 })}`);
        }
        setItems((prev) => (more && prev ? [...prev, ...page.items] : page.items));
        setCursor(page.nextCursor);
      } catch (e) {
        setError(e);
      }
    },
    [tenant, kind, status, applied],
  );
  useEffect(() => {
    void load(null);
  }, [load]);

  const treeOf = (userId: string) => (items ?? []).filter((s) => s.customerId === userId);

  return (
    <section aria-labelledby="h-sessions">
      <h1 id="h-sessions">Sessions</h1>
      <form
        className="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied(search);
        }}
      >
        <TenantFilter value={tenant} onChange={setTenant} />
        <label className="field">
          <span>Kind</span>
          <select aria-label="Kind" value={kind} onChange={(e) => setKind(e.target.value)}>
            <option value="">All kinds</option>
            {['app', 'idp', 'redirect', 'flow'].map((k) => (
              <option key={k}>{k}</option>
            ))}
          </select>
        </label>
        <label className="field">
          <span>Status</span>
          <select aria-label="Status" value={status} onChange={(e) => setStatus(e.target.value)}>
            <option value="">Any status</option>
            {['active', 'revoked', 'expired'].map((k) => (
              <option key={k}>{k}</option>
            ))}
          </select>
        </label>
        <label className="field grow">
          <span>Search</span>
          <input type="search" value={search} placeholder="Email (or its beginning)" onChange={(e) => setSearch(e.target.value)} />
        </label>
        <button type="submit" className="primary">
          Find
        </button>
        <button type="button" className="danger" disabled={!tenant} onClick={() => setPending({ kind: 'tenant' })}>
          Revoke all of tenant
        </button>
      </form>
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      {error !== null && <ErrorNote error={error} retry={() => void load(null)} />}
      {items === null && error === null && <Loading what="sessions" />}
      {items !== null && items.length === 0 && <Empty>{applied ? `No sessions of users whose email starts with “${applied}”.` : 'No sessions match these filters.'}</Empty>}
      {items !== null && items.length > 0 && (
        <div className="table-wrap">
          <table aria-label="Sessions">
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">Kind</th>
                <th scope="col">Application</th>
                <th scope="col">Device</th>
                <th scope="col">Location</th>
                <th scope="col">Started</th>
                <th scope="col">Last seen</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((s) => (
                <tr key={s.sessionId}>
                  <td data-label="User" className="user">
                    {s.customerId ? (
                      <button type="button" className="link" onClick={() => setTree(tree === s.customerId ? null : s.customerId)} aria-expanded={tree === s.customerId}>
                        {s.email ?? s.customerId}
                      </button>
                    ) : (
                      '—'
                    )}
                  </td>
                  <td data-label="Kind">
                    {s.kind}
                    {s.status !== 'active' && <span className="badge">{s.status}</span>}
                  </td>
                  <td data-label="Application">{s.clientId ?? s.authMethod}</td>
                  <td data-label="Device">{deviceText(s.device)}</td>
                  <td data-label="Location">{locationText(s.device)}</td>
                  <td data-label="Started" className="nowrap">{when(s.createdAt)}</td>
                  <td data-label="Last seen" className="nowrap">{when(s.lastSeenAt)}</td>
                  <td data-label="Expires" className="nowrap">{when(s.expiresAt)}</td>
                  <td className="actions">
                    {s.status === 'active' && (
                      <button type="button" className="danger small" onClick={() => setPending({ kind: 'one', s })}>
                        Revoke
                      </button>
                    )}
                    {s.customerId && s.status === 'active' && (
                      <button type="button" className="small" onClick={() => setPending({ kind: 'user', s })}>
                        Revoke user’s all
                      </button>
                    )}
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
      {tree && <SessionTree sessions={treeOf(tree)} onClose={() => setTree(null)} />}
      {pending && (
        <Confirm
          title={pending.kind === 'one' ? 'Revoke this session?' : pending.kind === 'user' ? 'Revoke all of this user’s sessions?' : `Revoke every session of ${tenant}?`}
          confirmLabel={pending.kind === 'one' ? 'Revoke session' : pending.kind === 'user' ? 'Revoke all sessions' : 'Revoke all of tenant'}
          onClose={() => setPending(null)}
          onConfirm={async () => {
            let r: { revoked: number };
            if (pending.kind === 'one') r = await api('DELETE', `/api/v1/admin/sessions/${encodeURIComponent(pending.s.sessionId)}`);
            else if (pending.kind === 'user')
              r = await api('DELETE', `/api/v1/admin/users/${encodeURIComponent(pending.s.customerId ?? '')}/sessions${query({ tenantId: tenant })}`);
            else r = await api('DELETE', `/api/v1/admin/tenants/${encodeURIComponent(tenant)}/sessions`);
            setNotice(`${r.revoked} session${r.revoked === 1 ? '' : 's'} ended.`);
            await load(null);
          }}
        >
          <p>
            {pending.kind === 'tenant'
              ? 'Everyone in this tenant is signed out at once.'
              : `${pending.s.email ?? pending.s.customerId} is signed out ${pending.kind === 'one' ? 'of this session (and the sessions below it)' : 'everywhere'}; their next call is refused.`}
          </p>
        </Confirm>
      )}
    </section>
  );
}

/** A user's sessions as a tree: idp → app → redirect, by parent. */
function SessionTree({ sessions, onClose }: { sessions: SessionView[]; onClose: () => void }) {
  const byParent = new Map<string | null, SessionView[]>();
  const ids = new Set(sessions.map((s) => s.sessionId));
  for (const s of sessions) {
    const p = s.parentId && ids.has(s.parentId) ? s.parentId : null;
    byParent.set(p, [...(byParent.get(p) ?? []), s]);
  }
  const render = (parent: string | null) => (
    <ul>
      {(byParent.get(parent) ?? []).map((s) => (
        <li key={s.sessionId}>
          <strong>{s.kind}</strong> {s.clientId ?? s.authMethod} · {deviceText(s.device)} · since {when(s.createdAt)}
          {byParent.has(s.sessionId) && render(s.sessionId)}
        </li>
      ))}
    </ul>
  );
  return (
    <aside className="panel" aria-label="Session tree">
      <div className="panel-head">
        <h2>Session tree of {sessions[0]?.email ?? sessions[0]?.customerId}</h2>
        <button type="button" onClick={onClose}>
          Close
        </button>
      </div>
      {render(null)}
    </aside>
  );
}
