// Small shared pieces: loading / empty / error states, the tenant filter, a confirmation dialog.

import { useEffect, useRef, useState, type ReactNode } from 'react';
import { api, ApiError, current } from './api.ts';

export interface Tenant {
  id: string;
  profile: 'integration' | 'production';
  lifetimes: Record<string, number>;
  sessionLimit: { max: number | null; policy: 'evict_oldest' | 'reject_new' };
  anomalyPolicy: 'record' | 'reauth' | 'revoke';
  consentReturnUrl: string | null;
  createdAt: string;
  updatedAt: string;
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="state" role="status">
      Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="state empty">{children}</p>;
}

export function ErrorNote({ error, retry }: { error: unknown; retry?: () => void }) {
  const message =
    error instanceof ApiError
      ? error.status === 403
        ? `Not allowed: ${error.message}`
        : error.status >= 500
          ? `Tessera had a problem (${error.code}). ${error.message}`
          : error.message
      : 'Something went wrong.';
  return (
    <div className="state error" role="alert">
      <span>{message}</span>
      {retry && (
        <button type="button" onClick={retry}>
          Try again
        </button>
      )}
    </div>
  );
}

/** The tenants this administrator may see: all for a platform administrator, else their own. */
export function useTenants(): { tenants: Tenant[] | null; error: unknown; reload: () => void } {
  const [tenants, setTenants] = useState<Tenant[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    setError(null);
    api<{ items: Tenant[] }>('GET', '/api/v1/admin/tenants').then(
      (r) => live && setTenants(r.items),
      (e: unknown) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [n]);
  return { tenants, error, reload: () => setN((x) => x + 1) };
}

/** The tenant a screen shows: a platform administrator picks one; a tenant administrator has theirs. */
export function useTenantChoice(): [string, (t: string) => void] {
  const me = current();
  const initial = me?.platform ? (sessionStorage.getItem('tessera-admin-tenant') ?? '') : (me?.tenantId ?? '');
  const [tenant, setTenant] = useState(initial);
  return [
    tenant,
    (t: string) => {
      sessionStorage.setItem('tessera-admin-tenant', t);
      setTenant(t);
    },
  ];
}

export function TenantFilter({ value, onChange }: { value: string; onChange: (t: string) => void }) {
  const me = current();
  const { tenants, error } = useTenants();
  useEffect(() => {
    if (value === '' && tenants && tenants.length > 0) onChange(tenants.find((t) => t.id !== 'platform')?.id ?? tenants[0]!.id);
  }, [tenants, value, onChange]);
  return (
    <label className="field">
      <span>Tenant</span>
      <select aria-label="Tenant" value={value} onChange={(e) => onChange(e.target.value)} disabled={!me?.platform}>
        {!tenants && <option value={value}>{value || 'Loading…'}</option>}
        {tenants?.map((t) => (
          <option key={t.id} value={t.id}>
            {t.id}
          </option>
        ))}
      </select>
      {error !== null && <small className="field-error">Tenants could not be loaded.</small>}
    </label>
  );
}

/**
 * A modal confirmation (the native <dialog>: focus is trapped and Escape cancels). `confirmLabel`
 * is the button's accessible name.
 */
export function Confirm({
  title,
  children,
  confirmLabel,
  danger = true,
  onConfirm,
  onClose,
}: {
  title: string;
  children?: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
  }, []);
  return (
    <dialog ref={ref} className="dialog" aria-labelledby="dialog-title" onClose={onClose}>
      <h2 id="dialog-title">{title}</h2>
      {children}
      {error !== null && <ErrorNote error={error} />}
      <div className="dialog-actions">
        <button type="button" onClick={() => ref.current?.close()} disabled={busy}>
          Cancel
        </button>
        <button
          type="button"
          className={danger ? 'danger' : 'primary'}
          disabled={busy}
          onClick={() => {
            setBusy(true);
            setError(null);
            onConfirm().then(
              () => ref.current?.close(),
              (e: unknown) => {
                setBusy(false);
                setError(e);
              },
            );
          }}
        >
          {confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}
