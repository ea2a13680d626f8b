// The anomaly rules of docs/monitoring.md §4, each a pure function of plain data with a documented
// threshold. No clock, no store: the caller passes the user's history, the observation and `now`.
// docs/monitoring.md lists the thresholds and the environment variables that change them.
//
// | reason               | fires when                                                              |
// |----------------------|-------------------------------------------------------------------------|
// | impossible_travel    | two located logins are >= minTravelDistanceKm apart and the speed       |
// |                      | between them is above maxTravelSpeedKmh                                 |
// | new_location         | the user has logged in from known locations and this one is not among   |
// |                      | them (country + city)                                                   |
// | new_device           | the user has logged in from known devices and this one (browser + OS    |
// |                      | family) is not among them                                               |
// | unusual_hour         | after unusualHourMinLogins logins, the share of past logins within      |
// |                      | +/- unusualHourWindow hours (UTC) of this one is below unusualHourMaxShare |
// | concurrent_sessions  | a new session leaves the user with more than maxConcurrentSessions      |
// |                      | active app sessions (each such login)                                   |
// | request_rate         | a session makes more than maxRequestsPerWindow requests in one          |
// |                      | requestWindowMs window (once per window)                                |
// | refresh_token_reuse  | a rotated refresh token came back after the grace window (always)       |

import type { Location } from '../domain/session.ts';
// The device key comes from the same User-Agent parse as the sessions' readable device.
import { deviceKeyOf } from './device.ts';
import type { AnomalyPolicy, Tenant } from '../domain/tenant.ts';
import type { LocatedPoint, LoginObservation, UserHistory } from '../store/audit-port.ts';

export { deviceKeyOf };

export const ANOMALY_REASONS = [
  'impossible_travel',
  'new_location',
  'new_device',
  'unusual_hour',
  'concurrent_sessions',
  'request_rate',
  'refresh_token_reuse',
] as const;
export type AnomalyReason = (typeof ANOMALY_REASONS)[number];

/** What the tenant's policy did about a finding (the tenant's `anomalyPolicy`). */
export type AnomalyAction = AnomalyPolicy;

export interface Finding {
  reason: AnomalyReason;
  evidence: Record<string, unknown>;
}

export interface Thresholds {
  /** impossible_travel: faster than this (km/h) is impossible. An airliner cruises at ~900 km/h. */
  maxTravelSpeedKmh: number;
  /** impossible_travel: closer than this (km) is geolocation noise, never travel. */
  minTravelDistanceKm: number;
  /** unusual_hour: the user's own history must hold at least this many logins. */
  unusualHourMinLogins: number;
  /** unusual_hour: hours either side of the login's hour that count as "the same time of day". */
  unusualHourWindow: number;
  /** unusual_hour: unusual when fewer than this share of past logins fall in that window. */
  unusualHourMaxShare: number;
  /** concurrent_sessions: more active `app` sessions than this is a finding. */
  maxConcurrentSessions: number;
  /** request_rate: more requests than this by one session within one window is a finding. */
  maxRequestsPerWindow: number;
  /** request_rate: the fixed window, ms. */
  requestWindowMs: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = {
  maxTravelSpeedKmh: 1000,
  minTravelDistanceKm: 200,
  unusualHourMinLogins: 10,
  unusualHourWindow: 1,
  unusualHourMaxShare: 0.05,
  maxConcurrentSessions: 5,
  maxRequestsPerWindow: 300,
  requestWindowMs: 60_000,
};

// ---- inputs ---------------------------------------------------------------------------------

/** The UTC hour of the day of an instant. */
export function hourOf(time: number): number {
  return new Date(time).getUTCHours();
}

/** `country/city` (either may be `?`), or null when the location names neither. */
export function locationKeyOf(location: Location | null | undefined): string | null {
  if (!location || (location.country === undefined && location.city === undefined)) return null;
  return `${location.country ?? '?'}/${location.city ?? '?'}`;
}

/** A located point when the location has coordinates. */
export function locatedPointOf(location: Location | null | undefined, time: number): LocatedPoint | null {
  if (!location || typeof location.lat !== 'number' || typeof location.lon !== 'number') return null;
  return { time, lat: location.lat, lon: location.lon, city: location.city ?? null, country: location.country ?? null };
}

export function observeLogin(time: number, userAgent: string | null, location: Location | null): LoginObservation {
  return {
    time,
    hour: hourOf(time),
    deviceKey: deviceKeyOf(userAgent),
    locationKey: locationKeyOf(location),
    located: locatedPointOf(location, time),
  };
}

/** Great-circle distance in km (haversine, mean Earth radius 6371 km). */
export function distanceKm(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371 * Math.asin(Math.min(1, Math.sqrt(h)));
}

// ---- the rules ------------------------------------------------------------------------------

const place = (p: LocatedPoint) => ({ city: p.city, country: p.country, lat: p.lat, lon: p.lon, time: new Date(p.time).toISOString() });

export function impossibleTravel(previous: LocatedPoint | null, current: LocatedPoint | null, t: Thresholds): Finding | null {
  if (previous === null || current === null) return null;
  const km = distanceKm(previous, current);
  if (km < t.minTravelDistanceKm) return null;
  // Two logins at the same instant far apart are as impossible as they get; count at least 1 s.
  const hours = Math.max(current.time - previous.time, 1000) / 3_600_000;
  const speed = km / hours;
  if (speed <= t.maxTravelSpeedKmh) return null;
  return {
    reason: 'impossible_travel',
    evidence: {
      from: place(previous),
      to: place(current),
      distanceKm: Math.round(km),
      minutes: Math.round(((current.time - previous.time) / 60_000) * 10) / 10,
      speedKmh: Math.round(speed),
      thresholdKmh: t.maxTravelSpeedKmh,
    },
  };
}

export function newLocation(history: UserHistory, o: LoginObservation): Finding | null {
  const known = Object.keys(history.locations);
  if (o.locationKey === null || known.length === 0 || o.locationKey in history.locations) return null;
  return { reason: 'new_location', evidence: { location: o.locationKey, known: known.sort() } };
}

export function newDevice(history: UserHistory, o: LoginObservation): Finding | null {
  const known = Object.keys(history.devices);
  if (o.deviceKey === null || known.length === 0 || o.deviceKey in history.devices) return null;
  return { reason: 'new_device', evidence: { device: o.deviceKey, known: known.sort() } };
}

export function unusualHour(history: UserHistory, o: LoginObservation, t: Thresholds): Finding | null {
  const total = history.hours.reduce((a, b) => a + b, 0);
  if (total < t.unusualHourMinLogins) return null;
  let near = 0;
  for (let d = -t.unusualHourWindow; d <= t.unusualHourWindow; d++) near += history.hours[(((o.hour + d) % 24) + 24) % 24] ?? 0;
  const share = near / total;
  if (share >= t.unusualHourMaxShare) return null;
  const usual = history.hours
    .map((count, hour) => ({ hour, count }))
    .filter((h) => h.count > 0)
    .sort((a, b) => b.count - a.count || a.hour - b.hour)
    .slice(0, 5)
    .map((h) => h.hour);
  return {
    reason: 'unusual_hour',
    evidence: { hourUtc: o.hour, share: Math.round(share * 1000) / 1000, pastLogins: total, usualHoursUtc: usual, thresholdShare: t.unusualHourMaxShare },
  };
}

export function concurrentSessions(active: number, t: Thresholds): Finding | null {
  if (active <= t.maxConcurrentSessions) return null;
  return { reason: 'concurrent_sessions', evidence: { active, threshold: t.maxConcurrentSessions } };
}

/** `count`: requests of the session in the current window, this one included. Fires once per window. */
export function requestRate(count: number, t: Thresholds): Finding | null {
  if (count !== t.maxRequestsPerWindow + 1) return null;
  return { reason: 'request_rate', evidence: { requests: count, windowSeconds: t.requestWindowMs / 1000, threshold: t.maxRequestsPerWindow } };
}

export function refreshTokenReuse(revokedHandles: readonly string[]): Finding {
  return { reason: 'refresh_token_reuse', evidence: { revokedSessions: [...revokedHandles] } };
}

/** Every rule that looks at a new session, in a fixed order. `active` counts the new session too. */
export function evaluateLogin(history: UserHistory, o: LoginObservation, active: number, t: Thresholds): Finding[] {
  return [
    impossibleTravel(history.lastLocated, o.located, t),
    newLocation(history, o),
    newDevice(history, o),
    unusualHour(history, o, t),
    concurrentSessions(active, t),
  ].filter((f): f is Finding => f !== null);
}

/**
 * What the tenant's policy does about a finding. Integration tenants only record (docs/api.md
 * §Tenants and profiles). Refresh-token reuse has always ended the session family already
 * (docs/api.md §Token mode), whatever the policy.
 */
export function actionFor(tenant: Pick<Tenant, 'profile' | 'anomalyPolicy'>, reason: AnomalyReason): AnomalyAction {
  if (reason === 'refresh_token_reuse') return 'revoke';
  if (tenant.profile === 'integration') return 'record';
  return tenant.anomalyPolicy;
}

/** The strongest of several actions: revoke > reauth > record. */
export function strongest(actions: readonly AnomalyAction[]): AnomalyAction | null {
  if (actions.includes('revoke')) return 'revoke';
  if (actions.includes('reauth')) return 'reauth';
  return actions.length > 0 ? 'record' : null;
}
