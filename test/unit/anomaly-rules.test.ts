// The anomaly rules as pure functions: fixed instants, fixed sequences of logins, no store, no
// sleeping. Each threshold is tested on both sides of its edge.

import { describe, expect, it } from 'vitest';
import {
  actionFor,
  concurrentSessions,
  DEFAULT_THRESHOLDS,
  deviceKeyOf,
  distanceKm,
  evaluateLogin,
  hourOf,
  impossibleTravel,
  locationKeyOf,
  newDevice,
  newLocation,
  observeLogin,
  refreshTokenReuse,
  requestRate,
  strongest,
  unusualHour,
  type Finding,
} from '../../src/audit/anomaly-rules.ts';
import type { Location } from '../../src/domain/session.ts';
import { emptyHistory, mergeLogin, type UserHistory } from '../../src/store/audit-port.ts';

const t = DEFAULT_THRESHOLDS;
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const MONDAY_9 = Date.UTC(2026, 2, 2, 9, 0, 0);

const FIREFOX_LINUX = 'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0';
const CHROME_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36';
const SAFARI_IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1';

const BERLIN: Location = { country: 'DE', city: 'Berlin', lat: 52.52, lon: 13.405 };
const POTSDAM: Location = { country: 'DE', city: 'Potsdam', lat: 52.3906, lon: 13.0645 };
const DUBAI: Location = { country: 'AE', city: 'Dubai', lat: 25.2048, lon: 55.2708 };
const MUNICH: Location = { country: 'DE', city: 'Munich', lat: 48.1351, lon: 11.582 };

interface Login {
  time: number;
  ua?: string;
  location?: Location | null;
  active?: number;
}

/** Replays logins through the rules, learning each one as the monitor does; returns each login's findings. */
function replay(logins: Login[]): Finding[][] {
  let history: UserHistory = emptyHistory();
  return logins.map((l) => {
    const o = observeLogin(l.time, l.ua ?? FIREFOX_LINUX, l.location ?? null);
    const findings = evaluateLogin(history, o, l.active ?? 1, t);
    history = mergeLogin(history, o);
    return findings;
  });
}

const reasons = (fs: Finding[]) => fs.map((f) => f.reason);

describe('inputs of the rules', () => {
  it('reduces a User-Agent to browser and OS families, without versions', () => {
    expect(deviceKeyOf(FIREFOX_LINUX)).toBe('firefox/linux');
    expect(deviceKeyOf(CHROME_WINDOWS)).toBe('chrome/windows');
    expect(deviceKeyOf(SAFARI_IPHONE)).toBe('safari/ios');
    expect(deviceKeyOf(FIREFOX_LINUX.replace('140.0', '141.0'))).toBe('firefox/linux');
    expect(deviceKeyOf('Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/138.0 Safari/537.36 Edg/138.0')).toBe('edge/windows');
    expect(deviceKeyOf('Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 Chrome/138.0 Mobile Safari/537.36')).toBe('chrome/android');
    expect(deviceKeyOf('curl/8.14.1')).toBe('curl/other');
    expect(deviceKeyOf('')).toBeNull();
    expect(deviceKeyOf(null)).toBeNull();
  });

  it('keys locations by country and city, and measures great-circle distances', () => {
    expect(locationKeyOf(BERLIN)).toBe('DE/Berlin');
    expect(locationKeyOf({ country: 'FR' })).toBe('FR/?');
    expect(locationKeyOf({ lat: 1, lon: 2 })).toBeNull();
    expect(locationKeyOf(null)).toBeNull();
    expect(distanceKm(BERLIN as { lat: number; lon: number }, DUBAI as { lat: number; lon: number })).toBeCloseTo(4_620, -2);
    expect(distanceKm(BERLIN as { lat: number; lon: number }, POTSDAM as { lat: number; lon: number })).toBeLessThan(30);
    expect(hourOf(Date.UTC(2026, 0, 1, 3, 59))).toBe(3);
  });
});

describe('impossible_travel', () => {
  const at = (loc: Location, time: number) => observeLogin(time, FIREFOX_LINUX, loc).located;

  it('fires for Berlin then Dubai 10 minutes later, with the distance and speed as evidence', () => {
    const f = impossibleTravel(at(BERLIN, MONDAY_9), at(DUBAI, MONDAY_9 + 10 * MIN), t);
    expect(f?.reason).toBe('impossible_travel');
    expect(f?.evidence).toMatchObject({ minutes: 10, thresholdKmh: 1000, from: { city: 'Berlin' }, to: { city: 'Dubai' } });
    expect(f?.evidence.distanceKm).toBeGreaterThan(4500);
    expect(f?.evidence.speedKmh).toBeGreaterThan(27_000);
  });

  it('stays silent at airliner speed, below the noise distance, and without two located logins', () => {
    // Berlin–Dubai at just under 1000 km/h: 4620 km in 4 h 40 min.
    expect(impossibleTravel(at(BERLIN, MONDAY_9), at(DUBAI, MONDAY_9 + 280 * MIN), t)).toBeNull();
    expect(impossibleTravel(at(BERLIN, MONDAY_9), at(DUBAI, MONDAY_9 + 270 * MIN), t)?.reason).toBe('impossible_travel');
    // Berlin–Potsdam in one second is geolocation noise, not travel.
    expect(impossibleTravel(at(BERLIN, MONDAY_9), at(POTSDAM, MONDAY_9 + 1000), t)).toBeNull();
    expect(impossibleTravel(null, at(DUBAI, MONDAY_9), t)).toBeNull();
    expect(impossibleTravel(at(BERLIN, MONDAY_9), null, t)).toBeNull();
  });

  it('counts two far-apart logins at the same instant as impossible', () => {
    expect(impossibleTravel(at(BERLIN, MONDAY_9), at(MUNICH, MONDAY_9), t)?.reason).toBe('impossible_travel');
  });
});

describe('new_location and new_device', () => {
  it('flags a city or a device the user has not used before, never the first one', () => {
    const findings = replay([
      { time: MONDAY_9, location: BERLIN },
      { time: MONDAY_9 + DAY, location: BERLIN },
      { time: MONDAY_9 + 2 * DAY, location: MUNICH },
      { time: MONDAY_9 + 3 * DAY, location: MUNICH },
      { time: MONDAY_9 + 4 * DAY, location: BERLIN, ua: SAFARI_IPHONE },
      { time: MONDAY_9 + 5 * DAY, location: BERLIN, ua: SAFARI_IPHONE },
    ]);
    expect(findings.map(reasons)).toEqual([[], [], ['new_location'], [], ['new_device'], []]);
    expect(findings[2]?.[0]?.evidence).toEqual({ location: 'DE/Munich', known: ['DE/Berlin'] });
    expect(findings[4]?.[0]?.evidence).toEqual({ device: 'safari/ios', known: ['firefox/linux'] });
  });

  it('stays silent without a location, and for a user whose logins were never located', () => {
    const h = mergeLogin(emptyHistory(), observeLogin(MONDAY_9, FIREFOX_LINUX, null));
    expect(newLocation(h, observeLogin(MONDAY_9 + DAY, FIREFOX_LINUX, DUBAI))).toBeNull();
    expect(newLocation(mergeLogin(h, observeLogin(MONDAY_9, FIREFOX_LINUX, BERLIN)), observeLogin(MONDAY_9 + DAY, FIREFOX_LINUX, null))).toBeNull();
    expect(newDevice(h, observeLogin(MONDAY_9 + DAY, null, null))).toBeNull();
  });
});

describe('unusual_hour', () => {
  // Ten working days of logins between 08:00 and 17:00 UTC.
  const officeDays = Array.from({ length: 10 }, (_, d) => ({ time: MONDAY_9 + d * DAY + ((d * 7) % 9) * HOUR - HOUR }));

  it('learns office hours from the user’s own history and flags a 03:00 login', () => {
    const findings = replay([...officeDays, { time: MONDAY_9 + 10 * DAY - 6 * HOUR }]);
    expect(findings.slice(0, 10).every((f) => f.length === 0)).toBe(true);
    const last = findings[10] as Finding[];
    expect(reasons(last)).toEqual(['unusual_hour']);
    expect(last[0]?.evidence).toMatchObject({ hourUtc: 3, share: 0, pastLogins: 10, thresholdShare: 0.05 });
  });

  it('accepts an hour next to the usual ones, and judges nobody before 10 logins', () => {
    expect(reasons(replay([...officeDays, { time: MONDAY_9 + 10 * DAY + 8 * HOUR }])[10] as Finding[])).toEqual([]);
    expect(reasons(replay([...officeDays.slice(0, 9), { time: MONDAY_9 + 10 * DAY - 6 * HOUR }])[9] as Finding[])).toEqual([]);
  });

  it('wraps around midnight: a night owl at 23:00 and 01:00 is not unusual at 00:00', () => {
    const h: UserHistory = { ...emptyHistory(), hours: emptyHistory().hours.map((_, i) => (i === 23 || i === 1 ? 10 : 0)) };
    expect(unusualHour(h, observeLogin(Date.UTC(2026, 0, 5, 0, 30), null, null), t)).toBeNull();
    expect(unusualHour(h, observeLogin(Date.UTC(2026, 0, 5, 12, 0), null, null), t)?.evidence).toMatchObject({ hourUtc: 12, usualHoursUtc: [1, 23] });
  });
});

describe('concurrent_sessions, request_rate, refresh_token_reuse', () => {
  it('flags every login that leaves more than 5 active sessions', () => {
    expect(concurrentSessions(5, t)).toBeNull();
    expect(concurrentSessions(6, t)).toEqual({ reason: 'concurrent_sessions', evidence: { active: 6, threshold: 5 } });
    const findings = replay(Array.from({ length: 8 }, (_, i) => ({ time: MONDAY_9 + i * MIN, active: i + 1 })));
    expect(findings.map(reasons)).toEqual([[], [], [], [], [], ['concurrent_sessions'], ['concurrent_sessions'], ['concurrent_sessions']]);
  });

  it('flags a session once per window, when its requests first exceed the threshold', () => {
    const fired = Array.from({ length: 700 }, (_, i) => requestRate(i + 1, t)).filter((f) => f !== null);
    expect(fired).toEqual([{ reason: 'request_rate', evidence: { requests: 301, windowSeconds: 60, threshold: 300 } }]);
  });

  it('always reports refresh-token reuse with the sessions it ended', () => {
    expect(refreshTokenReuse(['h1', 'h2'])).toEqual({ reason: 'refresh_token_reuse', evidence: { revokedSessions: ['h1', 'h2'] } });
  });
});

describe('the tenant policy', () => {
  it('records only on integration tenants, acts by anomalyPolicy on production ones', () => {
    expect(actionFor({ profile: 'integration', anomalyPolicy: 'revoke' }, 'impossible_travel')).toBe('record');
    expect(actionFor({ profile: 'production', anomalyPolicy: 'record' }, 'new_device')).toBe('record');
    expect(actionFor({ profile: 'production', anomalyPolicy: 'reauth' }, 'unusual_hour')).toBe('reauth');
    expect(actionFor({ profile: 'production', anomalyPolicy: 'revoke' }, 'request_rate')).toBe('revoke');
    // Reuse has already ended the token family (docs/api.md §Token mode).
    expect(actionFor({ profile: 'integration', anomalyPolicy: 'record' }, 'refresh_token_reuse')).toBe('revoke');
    expect(strongest(['record', 'reauth'])).toBe('reauth');
    expect(strongest(['reauth', 'revoke', 'record'])).toBe('revoke');
    expect(strongest([])).toBeNull();
  });

  it('finds exactly travel and the new city for Berlin then Dubai 10 minutes later', () => {
    const findings = replay([
      { time: MONDAY_9, location: BERLIN },
      { time: MONDAY_9 + 10 * MIN, location: DUBAI },
    ]);
    expect(findings.map(reasons)).toEqual([[], ['impossible_travel', 'new_location']]);
  });
});
