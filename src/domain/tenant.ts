// Tenants and their profiles (docs/api.md §Tenants and profiles). Pure: defaults and the merge of a
// partial tenant object into the effective one.

import type { Lifetime, SessionKind } from './session.ts';

/** The reserved tenant of platform administrators (created at first start). */
export const PLATFORM_TENANT = 'platform';

export const PROFILES = ['integration', 'production'] as const;
export type Profile = (typeof PROFILES)[number];

export const LIMIT_POLICIES = ['evict_oldest', 'reject_new'] as const;
export type LimitPolicy = (typeof LIMIT_POLICIES)[number];

export const ANOMALY_POLICIES = ['record', 'reauth', 'revoke'] as const;
export type AnomalyPolicy = (typeof ANOMALY_POLICIES)[number];

/**
 * What bearer checks do while the store does not answer (docs/reliability.md, "Degradation policy"):
 * `fail_closed` answers 503 `store_unavailable`; `serve_cached` serves a session this process had
 * cached when it lost the store, for at most `maxStaleSeconds` from then, marked as degraded.
 */
export const DEGRADATION_POLICIES = ['fail_closed', 'serve_cached'] as const;
export type DegradationPolicy = (typeof DEGRADATION_POLICIES)[number];

export interface Degradation {
  policy: DegradationPolicy;
  /** How long after losing the store cached sessions may be served (serve_cached only). */
  maxStaleSeconds: number;
}

export const DEFAULT_DEGRADATION: Degradation = { policy: 'fail_closed', maxStaleSeconds: 60 };
export const MAX_STALE_SECONDS = 3600;

/** Seconds, as in the tenant object of docs/api.md §Tenants and profiles. */
export interface TenantLifetimes {
  token: number;
  appIdle: number;
  appAbsolute: number;
  idpIdle: number;
  idpAbsolute: number;
  flow: number;
  redirect: number;
  refreshGrace: number;
}

export interface SessionLimit {
  /** null means unlimited. */
  max: number | null;
  policy: LimitPolicy;
}

/** The effective tenant: every field present. */
export interface Tenant {
  id: string;
  profile: Profile;
  lifetimes: TenantLifetimes;
  sessionLimit: SessionLimit;
  anomalyPolicy: AnomalyPolicy;
  /**
   * Where the return from a bank's consent UI sends the browser (303, docs/api.md §Consent
   * redirects): an absolute http(s) URL or a path on Tessera. null: none — the demo page
   * (`/demo/`) in demo mode, otherwise consent redirects are refused (`consentReturnTarget`).
   */
  consentReturnUrl: string | null;
  /** Absent in tenants stored before it existed: read it with `degradationOf`. */
  degradation?: Degradation;
  createdAt: number;
  updatedAt: number;
}

/** What a client may send to PUT /api/v1/admin/tenants/{id}: every field optional. */
export interface TenantInput {
  profile?: Profile;
  lifetimes?: Partial<TenantLifetimes>;
  sessionLimit?: Partial<SessionLimit>;
  anomalyPolicy?: AnomalyPolicy;
  consentReturnUrl?: string | null;
  degradation?: Partial<Degradation>;
}

const BASE_LIFETIMES: Omit<TenantLifetimes, 'token'> = {
  appIdle: 900,
  appAbsolute: 43200,
  idpIdle: 3600,
  idpAbsolute: 43200,
  flow: 600,
  redirect: 1200,
  refreshGrace: 10,
};

export function profileDefaults(profile: Profile): Omit<Tenant, 'id' | 'createdAt' | 'updatedAt' | 'consentReturnUrl'> {
  if (profile === 'production') {
    return {
      profile,
      lifetimes: { token: 1800, ...BASE_LIFETIMES },
      sessionLimit: { max: 5, policy: 'evict_oldest' },
      anomalyPolicy: 'record',
    };
  }
  return {
    profile,
    lifetimes: { token: 3600, ...BASE_LIFETIMES },
    sessionLimit: { max: null, policy: 'evict_oldest' },
    anomalyPolicy: 'record',
  };
}

/**
 * The effective tenant after a PUT. A PUT replaces the tenant object: fields left out take the
 * (possibly new) profile's defaults, not the previous values, so that GET after PUT shows
 * exactly what was asked for plus defaults.
 */
export function buildTenant(id: string, input: TenantInput, now: number, previous?: Tenant): Tenant {
  const profile = input.profile ?? 'production';
  const d = profileDefaults(profile);
  const tenant: Tenant = {
    id,
    profile,
    lifetimes: { ...d.lifetimes, ...input.lifetimes },
    sessionLimit: { ...d.sessionLimit, ...input.sessionLimit },
    anomalyPolicy: input.anomalyPolicy ?? d.anomalyPolicy,
    consentReturnUrl: input.consentReturnUrl ?? null,
    degradation: { ...DEFAULT_DEGRADATION, ...input.degradation },
    createdAt: previous?.createdAt ?? now,
    updatedAt: now,
  };
  assertConsistent(tenant);
  return tenant;
}

export class InvalidTenant extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

function assertConsistent(t: Tenant): void {
  const l = t.lifetimes;
  if (l.appIdle > l.appAbsolute) throw new InvalidTenant('lifetimes.appIdle', 'appIdle must not exceed appAbsolute');
  if (l.idpIdle > l.idpAbsolute) throw new InvalidTenant('lifetimes.idpIdle', 'idpIdle must not exceed idpAbsolute');
  if (t.sessionLimit.max !== null && t.sessionLimit.max < 1) {
    throw new InvalidTenant('sessionLimit.max', 'sessionLimit.max must be at least 1 (or null for unlimited)');
  }
  const d = degradationOf(t);
  if (!Number.isInteger(d.maxStaleSeconds) || d.maxStaleSeconds < 1 || d.maxStaleSeconds > MAX_STALE_SECONDS) {
    throw new InvalidTenant('degradation.maxStaleSeconds', `degradation.maxStaleSeconds must be a whole number from 1 to ${MAX_STALE_SECONDS}`);
  }
  if (t.consentReturnUrl !== null && !isReturnUrl(t.consentReturnUrl)) {
    throw new InvalidTenant('consentReturnUrl', 'consentReturnUrl must be an absolute http(s) URL or a path starting with one "/"');
  }
}

function isReturnUrl(value: string): boolean {
  if (value.startsWith('/')) return !value.startsWith('//') && !/[\s\\]/.test(value);
  try {
    const u = new URL(value);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.hash === '';
  } catch {
    return false;
  }
}

/** Where a bank return goes when the tenant names no `consentReturnUrl` and demo mode is on. */
export const DEMO_RETURN_PAGE = '/demo/';

/**
 * Where a consent redirect of this tenant returns the browser: its `consentReturnUrl`, or in demo
 * mode (which serves it) the demo page. null: nowhere — outside demo mode there is no page to fall
 * back on (`/demo/` would be a 404), so a start is refused until the tenant names one.
 */
export function consentReturnTarget(t: Tenant | null, demo: boolean): string | null {
  return t?.consentReturnUrl ?? (demo ? DEMO_RETURN_PAGE : null);
}

/** The tenant's degradation policy (the default for tenants stored before it existed). */
export function degradationOf(t: Tenant): Degradation {
  return t.degradation ?? DEFAULT_DEGRADATION;
}

/** The lifetime of a session kind under this tenant. */
export function lifetimeOf(t: Tenant, kind: SessionKind): Lifetime {
  const l = t.lifetimes;
  switch (kind) {
    case 'idp':
      return { idle: l.idpIdle, absolute: l.idpAbsolute };
    case 'app':
      return { idle: l.appIdle, absolute: l.appAbsolute };
    case 'flow':
      return { idle: null, absolute: l.flow };
    case 'redirect':
      return { idle: null, absolute: l.redirect };
  }
}

/** Tenant ids appear in keys, paths and headers: keep them to a safe alphabet. */
export const TENANT_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
