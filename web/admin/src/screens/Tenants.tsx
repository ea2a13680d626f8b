// Tenants: the list, and one tenant's profile, lifetimes, session limit and anomaly policy, with
// the server's validation messages next to the fields.

import { useEffect, useState } from 'react';
import { api, ApiError, current } from '../api.ts';
import { Empty, ErrorNote, Loading, useTenants, when, type Tenant } from '../ui.tsx';

const LIFETIMES = ['token', 'appIdle', 'appAbsolute', 'idpIdle', 'idpAbsolute', 'flow', 'redirect', 'refreshGrace'] as const;

/** Which field a problem is about: `field` (invalid_tenant) or the name in the detail (invalid_request). */
function fieldOf(e: ApiError): string | null {
  if (e.field) return e.field.split('.').pop() ?? e.field;
  const m = /\/(lifetimes|sessionLimit)\/(\w+)/.exec(e.message) ?? /\b(appIdle|appAbsolute|idpIdle|idpAbsolute|refreshGrace|token|flow|redirect|max|policy|profile|anomalyPolicy)\b/.exec(e.message);
  if (!m) return null;
  return m[2] ?? m[1] ?? null;
}

export function Tenants() {
  const { tenants, error, reload } = useTenants();
  const [selected, setSelected] = useState<string | null>(null);
  useEffect(() => {
    if (selected === null && tenants && tenants.length > 0) setSelected(tenants.find((t) => t.id !== 'platform')?.id ?? tenants[0]!.id);
  }, [tenants, selected]);
  const tenant = tenants?.find((t) => t.id === selected) ?? null;
  return (
    <section aria-labelledby="h-tenants">
      <h1 id="h-tenants">Tenants</h1>
      {error !== null && <ErrorNote error={error} retry={reload} />}
      {tenants === null && error === null && <Loading what="tenants" />}
      {tenants !== null && tenants.length === 0 && <Empty>No tenants yet.</Empty>}
      {tenants !== null && tenants.length > 0 && (
        <div className="split">
          <nav aria-label="Tenant list" className="tenant-list">
            <ul>
              {tenants.map((t) => (
                <li key={t.id}>
                  <button type="button" className={t.id === selected ? 'link current' : 'link'} aria-current={t.id === selected ? 'true' : undefined} onClick={() => setSelected(t.id)}>
                    {t.id}
                  </button>
                  <small>{t.profile}</small>
                </li>
              ))}
            </ul>
          </nav>
          {tenant && <TenantForm key={tenant.id} tenant={tenant} onSaved={reload} />}
        </div>
      )}
    </section>
  );
}

function TenantForm({ tenant, onSaved }: { tenant: Tenant; onSaved: () => void }) {
  const [profile, setProfile] = useState(tenant.profile);
  const [lifetimes, setLifetimes] = useState<Record<string, string>>(Object.fromEntries(LIFETIMES.map((k) => [k, String(tenant.lifetimes[k] ?? '')])));
  const [max, setMax] = useState(tenant.sessionLimit.max === null ? '' : String(tenant.sessionLimit.max));
  const [policy, setPolicy] = useState(tenant.sessionLimit.policy);
  const [anomalyPolicy, setAnomalyPolicy] = useState(tenant.anomalyPolicy);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<{ field: string | null; message: string } | null>(null);
  const [saved, setSaved] = useState('');
  const editable = current()?.platform || current()?.tenantId === tenant.id;

  const fieldError = (name: string) =>
    problem?.field === name ? (
      <small className="field-error" id={`err-${name}`} role="alert">
        {problem.message}
      </small>
    ) : null;

  const save = async () => {
    setBusy(true);
    setProblem(null);
    setSaved('');
    const num = (v: string) => (v.trim() === '' || Number.isNaN(Number(v)) ? v : Number(v));
    try {
      // The whole object goes back, so the settings not on this form are kept as they are.
      await api('PUT', `/api/v1/admin/tenants/${encodeURIComponent(tenant.id)}`, {
        profile,
        lifetimes: Object.fromEntries(LIFETIMES.map((k) => [k, num(lifetimes[k] ?? '')])),
        sessionLimit: { max: max.trim() === '' ? null : num(max), policy },
        anomalyPolicy,
        consentReturnUrl: tenant.consentReturnUrl,
      });
      setSaved(`Saved ${tenant.id}.`);
      onSaved();
    } catch (e) {
      if (e instanceof ApiError) setProblem({ field: fieldOf(e), message: e.message });
      else setProblem({ field: null, message: 'The tenant could not be saved.' });
    } finally {
      setBusy(false);
    }
  };

  return (
    <form
      className="tenant-form"
      aria-label={`Tenant ${tenant.id}`}
      onSubmit={(e) => {
        e.preventDefault();
        void save();
      }}
    >
      <h2>{tenant.id}</h2>
      <p className="muted">Changed {when(tenant.updatedAt)}</p>
      {problem && problem.field === null && (
        <p className="state error" role="alert">
          {problem.message}
        </p>
      )}
      {saved && (
        <p className="notice" role="status">
          {saved}
        </p>
      )}
      <fieldset disabled={!editable || busy}>
        <legend>Profile and policies</legend>
        <label className="field">
          <span>profile</span>
          <select aria-label="profile" value={profile} onChange={(e) => setProfile(e.target.value as Tenant['profile'])}>
            <option>integration</option>
            <option>production</option>
          </select>
          {fieldError('profile')}
        </label>
        <label className="field">
          <span>anomalyPolicy</span>
          <select aria-label="anomalyPolicy" value={anomalyPolicy} onChange={(e) => setAnomalyPolicy(e.target.value as Tenant['anomalyPolicy'])}>
            <option>record</option>
            <option>reauth</option>
            <option>revoke</option>
          </select>
          {fieldError('anomalyPolicy')}
        </label>
      </fieldset>
      <fieldset disabled={!editable || busy}>
        <legend>Lifetimes (seconds)</legend>
        <div className="grid">
          {LIFETIMES.map((k) => (
            <label className="field" key={k}>
              <span>{k}</span>
              <input
                aria-label={k}
                inputMode="numeric"
                value={lifetimes[k] ?? ''}
                aria-invalid={problem?.field === k ? true : undefined}
                aria-describedby={problem?.field === k ? `err-${k}` : undefined}
                onChange={(e) => setLifetimes((l) => ({ ...l, [k]: e.target.value }))}
              />
              {fieldError(k)}
            </label>
          ))}
        </div>
      </fieldset>
      <fieldset disabled={!editable || busy}>
        <legend>Session limit</legend>
        <div className="grid">
          <label className="field">
            <span>max</span>
            <input aria-label="max" inputMode="numeric" value={max} placeholder="unlimited" onChange={(e) => setMax(e.target.value)} />
            {fieldError('max')}
          </label>
          <label className="field">
            <span>policy</span>
            <select aria-label="policy" value={policy} onChange={(e) => setPolicy(e.target.value as Tenant['sessionLimit']['policy'])}>
              <option>evict_oldest</option>
              <option>reject_new</option>
            </select>
            {fieldError('policy')}
          </label>
        </div>
      </fieldset>
      <button type="submit" className="primary" disabled={!editable || busy}>
        Save
      </button>
    </form>
  );
}
