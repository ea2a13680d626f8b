// Users of a tenant: search by email, open one, disable / enable, reset the password, delete.

import { useCallback, useEffect, useState } from 'react';
import { api, query } from '../api.ts';
import { Confirm, Empty, ErrorNote, Loading, TenantFilter, useTenantChoice, when } from '../ui.tsx';

interface User {
  id: string;
  tenantId: string;
  email: string;
  roles: string[];
  disabled: boolean;
  createdAt: string;
  updatedAt: string;
}
interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
type Action = 'disable' | 'enable' | 'reset' | 'delete';

export function Users() {
  const [tenant, setTenant] = useTenantChoice();
  const [search, setSearch] = useState('');
  const [applied, setApplied] = useState('');
  const [items, setItems] = useState<User[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [open, setOpen] = useState<User | null>(null);
  const [action, setAction] = useState<{ user: User; what: Action } | null>(null);
  const [password, setPassword] = useState('');
  const [notice, setNotice] = useState('');

  const load = useCallback(
    async (more: string | null) => {
      if (!tenant) return;
      setError(null);
      if (!more) setItems(null);
      try {
        const page = await api<Page<User>>('GET', `/api/v1/admin/users${query({ tenantId: tenant, q: applied.trim(), cursor: more, limit: 50 })}`);
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
  }, [load]);

  const run = async (user: User, what: Action) => {
    const path = `/api/v1/admin/users/${encodeURIComponent(user.id)}${query({ tenantId: user.tenantId })}`;
    if (what === 'delete') {
      await api('DELETE', path);
      setNotice(`${user.email} was deleted.`);
      setOpen(null);
    } else {
      const body = what === 'reset' ? { password } : { disabled: what === 'disable' };
      const updated = await api<User>('PATCH', path, body);
      setNotice(what === 'reset' ? `The password of ${user.email} was reset; their sessions ended.` : `${user.email} is ${updated.disabled ? 'disabled; their sessions ended' : 'enabled again'}.`);
      if (open?.id === user.id) setOpen(updated);
    }
    setPassword('');
    await load(null);
  };

  return (
    <section aria-labelledby="h-users">
      <h1 id="h-users">Users</h1>
      <form
        className="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied(search);
        }}
      >
        <TenantFilter value={tenant} onChange={setTenant} />
        <label className="field grow">
          <span>Search</span>
          <input type="search" value={search} placeholder="Email (or its beginning)" onChange={(e) => setSearch(e.target.value)} />
        </label>
        <button type="submit" className="primary">
          Find
        </button>
      </form>
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      {error !== null && <ErrorNote error={error} retry={() => void load(null)} />}
      {items === null && error === null && <Loading what="users" />}
      {items !== null && items.length === 0 && <Empty>{applied ? `No user’s email starts with “${applied}”.` : 'This tenant has no users yet.'}</Empty>}
      {items !== null && items.length > 0 && (
        <div className="table-wrap">
          <table aria-label="Users">
            <thead>
              <tr>
                <th scope="col">Email</th>
                <th scope="col">Roles</th>
                <th scope="col">Status</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {items.map((u) => (
                <tr key={u.id} className={open?.id === u.id ? 'selected' : undefined}>
                  <td data-label="Email">
                    <button type="button" className="link" onClick={() => setOpen(u)}>
                      {u.email}
                    </button>
                  </td>
                  <td data-label="Roles">{u.roles.length ? u.roles.join(', ') : '—'}</td>
                  <td data-label="Status">{u.disabled ? <span className="badge warn">disabled</span> : 'active'}</td>
                  <td data-label="Created">{when(u.createdAt)}</td>
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
      {open && (
        <aside className="panel" aria-label={`User ${open.email}`}>
          <div className="panel-head">
            <h2>{open.email}</h2>
            <button type="button" onClick={() => setOpen(null)}>
              Close
            </button>
          </div>
          <dl className="facts">
            <dt>Id</dt>
            <dd>{open.id}</dd>
            <dt>Roles</dt>
            <dd>{open.roles.join(', ') || '—'}</dd>
            <dt>Status</dt>
            <dd>{open.disabled ? 'disabled' : 'active'}</dd>
            <dt>Changed</dt>
            <dd>{when(open.updatedAt)}</dd>
          </dl>
          <div className="row">
            {open.disabled ? (
              <button type="button" onClick={() => setAction({ user: open, what: 'enable' })}>
                Enable
              </button>
            ) : (
              <button type="button" className="danger" onClick={() => setAction({ user: open, what: 'disable' })}>
                Disable
              </button>
            )}
            <button type="button" onClick={() => setAction({ user: open, what: 'reset' })}>
              Reset password
            </button>
            <button type="button" className="danger" onClick={() => setAction({ user: open, what: 'delete' })}>
              Delete
            </button>
          </div>
        </aside>
      )}
      {action && (
        <Confirm
          title={
            action.what === 'disable'
              ? `Disable ${action.user.email}?`
              : action.what === 'enable'
                ? `Enable ${action.user.email}?`
                : action.what === 'reset'
                  ? `Reset the password of ${action.user.email}?`
                  : `Delete ${action.user.email}?`
          }
          confirmLabel={action.what === 'disable' ? 'Disable user' : action.what === 'enable' ? 'Enable user' : action.what === 'reset' ? 'Reset password' : 'Delete user'}
          danger={action.what !== 'enable'}
          onClose={() => {
            setAction(null);
            setPassword('');
          }}
          onConfirm={() => run(action.user, action.what)}
        >
          {action.what === 'disable' && <p>Their sessions end now, and they cannot sign in until enabled again.</p>}
          {action.what === 'delete' && <p>The user and their password are removed and their sessions end. Audit records stay.</p>}
          {action.what === 'reset' && (
            <label className="field">
              <span>New password</span>
              <input type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} />
              <small>At least 8 characters. Their sessions end.</small>
            </label>
          )}
        </Confirm>
      )}
    </section>
  );
}
