// Configuration of the audit log, metrics, locations and anomaly rules (part of Config, parsed
// once at start like the rest; every error names its variable). docs/monitoring.md lists them.

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { DEFAULT_THRESHOLDS, type Thresholds } from '../audit/anomaly-rules.ts';
import { ConfigError } from './config-error.ts';

export interface GeoHeaderNames {
  country: string;
  city: string;
  lat: string;
  lon: string;
}

export interface MonitoringConfig {
  /** Location headers a trusted proxy may set (lower case). Read only from TESSERA_TRUSTED_PROXIES. */
  geoHeaders: GeoHeaderNames;
  /** A MaxMind-format database (GeoLite2/GeoIP2 City or Country), or null. */
  geoipDbPath: string | null;
  /** How long audit records are kept; 0 keeps them forever. */
  auditRetentionDays: number;
  /** At most this many audit records per tenant are kept (the newest); 0: no count bound. */
  auditRetentionRecords: number;
  /** Events waiting for the store beyond this many are dropped (and counted, and logged). */
  auditQueueMax: number;
  thresholds: Thresholds;
}

type Env = Record<string, string | undefined>;

export function loadMonitoringConfig(env: Env, cwd: string): MonitoringConfig {
  const header = (name: string, dflt: string): string => {
    const raw = env[name]?.trim();
    if (raw === undefined || raw === '') return dflt.toLowerCase();
    if (!/^[A-Za-z0-9-]{1,64}$/.test(raw)) throw new ConfigError(name, `must be an HTTP header name (got "${raw}")`);
    return raw.toLowerCase();
  };
  const geoipRaw = env.TESSERA_GEOIP_DB?.trim();
  const geoipDbPath = geoipRaw ? resolve(cwd, geoipRaw) : null;
  if (geoipDbPath !== null && !existsSync(geoipDbPath)) {
    throw new ConfigError('TESSERA_GEOIP_DB', `no file at ${geoipDbPath} (a MaxMind .mmdb database)`);
  }
  const int = (name: string, dflt: number, min: number, max: number): number => {
    const raw = env[name]?.trim();
    if (raw === undefined || raw === '') return dflt;
    if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      throw new ConfigError(name, `must be an integer from ${min} to ${max} (got "${raw}")`);
    }
    return Number(raw);
  };
  const d = DEFAULT_THRESHOLDS;
  return {
    geoHeaders: {
      country: header('TESSERA_GEO_COUNTRY_HEADER', 'X-Geo-Country'),
      city: header('TESSERA_GEO_CITY_HEADER', 'X-Geo-City'),
      lat: header('TESSERA_GEO_LAT_HEADER', 'X-Geo-Lat'),
      lon: header('TESSERA_GEO_LON_HEADER', 'X-Geo-Lon'),
    },
    geoipDbPath,
    auditRetentionDays: int('TESSERA_AUDIT_RETENTION_DAYS', 90, 0, 36_500),
    auditRetentionRecords: int('TESSERA_AUDIT_RETENTION_RECORDS', 0, 0, 1_000_000_000),
    auditQueueMax: int('TESSERA_AUDIT_QUEUE_MAX', 10_000, 100, 10_000_000),
    thresholds: {
      ...d,
      maxTravelSpeedKmh: int('TESSERA_ANOMALY_MAX_SPEED_KMH', d.maxTravelSpeedKmh, 1, 100_000),
      minTravelDistanceKm: int('TESSERA_ANOMALY_MIN_DISTANCE_KM', d.minTravelDistanceKm, 0, 20_000),
      unusualHourMinLogins: int('TESSERA_ANOMALY_HOUR_MIN_LOGINS', d.unusualHourMinLogins, 1, 100_000),
      maxConcurrentSessions: int('TESSERA_ANOMALY_MAX_SESSIONS', d.maxConcurrentSessions, 1, 100_000),
      maxRequestsPerWindow: int('TESSERA_ANOMALY_MAX_REQUESTS_PER_MINUTE', d.maxRequestsPerWindow, 1, 10_000_000),
    },
  };
}
