// Where a request comes from, coarsely (docs/monitoring.md §5): from location headers set by a
// trusted proxy, or from a MaxMind-format database looked up by the client's IP. Without either
// Tessera does not guess: locations stay unknown and the location rules stay silent (/readyz says
// so).
//
// Headers count only when the connection comes from an address in TESSERA_TRUSTED_PROXIES (the
// same list that lets Fastify take the client IP from X-Forwarded-For); anyone else could write
// them. A database is read once at start with mmdb-lib (MaxMind's maintained reader).

import { readFileSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { Reader, type CityResponse } from 'mmdb-lib';
import { ConfigError } from '../config/config-error.ts';
import type { GeoHeaderNames } from '../config/monitoring.ts';
import type { Location } from '../domain/session.ts';

export interface LocateInput {
  /** The address of the peer that opened the connection (maybe a proxy). */
  peer: string | undefined;
  /** The client's address (from X-Forwarded-For when the peer is trusted). */
  clientIp: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface Locator {
  /** `headers`, `mmdb`, `headers+mmdb`, or `none`. */
  readonly source: 'headers' | 'mmdb' | 'headers+mmdb' | 'none';
  /** A line for /readyz. */
  describe(): string;
  locate(input: LocateInput): Location | null;
}

/** Turns `::ffff:10.0.0.1` into `10.0.0.1`, so IPv4 ranges match IPv4 clients on dual-stack sockets. */
function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

export function trustedProxyList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of cidrs) {
    const [addr, bits] = entry.split('/') as [string, string | undefined];
    const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr, family);
    else list.addSubnet(addr, Number(bits), family);
  }
  return list;
}

function one(v: string | string[] | undefined): string | undefined {
  if (Array.isArray(v)) return undefined; // a repeated location header is not trusted
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

/** Reads the location headers; malformed values are left out, not guessed at. */
export function locationFromHeaders(headers: LocateInput['headers'], names: GeoHeaderNames): Location | null {
  const out: Location = {};
  const country = one(headers[names.country]);
  if (country !== undefined && /^[A-Za-z]{2}$/.test(country)) out.country = country.toUpperCase();
  const city = one(headers[names.city]);
  if (city !== undefined) {
    let decoded = city;
    try {
      decoded = decodeURIComponent(city);
    } catch {
      // not percent-encoded
    }
    const clean = decoded.replace(/[\p{Cc}\p{Cf}]/gu, '').trim().slice(0, 100);
    if (clean !== '') out.city = clean;
  }
  const lat = Number(one(headers[names.lat]) ?? NaN);
  const lon = Number(one(headers[names.lon]) ?? NaN);
  if (Number.isFinite(lat) && Number.isFinite(lon) && Math.abs(lat) <= 90 && Math.abs(lon) <= 180) {
    out.lat = lat;
    out.lon = lon;
  }
  return Object.keys(out).length > 0 ? out : null;
}

export function locationFromDatabase(reader: Reader<CityResponse>, ip: string): Location | null {
  let hit: CityResponse | null;
  try {
    hit = reader.get(plainAddress(ip));
  } catch {
    return null; // not an IP address the database can look up
  }
  if (!hit) return null;
  const out: Location = {};
  const country = hit.country?.iso_code;
  if (typeof country === 'string' && /^[A-Za-z]{2}$/.test(country)) out.country = country.toUpperCase();
  const city = hit.city?.names?.en;
  if (typeof city === 'string' && city !== '') out.city = city.slice(0, 100);
  const lat = hit.location?.latitude;
  const lon = hit.location?.longitude;
  if (typeof lat === 'number' && typeof lon === 'number') {
    out.lat = lat;
    out.lon = lon;
  }
  return Object.keys(out).length > 0 ? out : null;
}

export function openGeoDatabase(path: string): Reader<CityResponse> {
  try {
    return new Reader<CityResponse>(readFileSync(path));
  } catch (err) {
    throw new ConfigError('TESSERA_GEOIP_DB', `cannot read ${path} as a MaxMind database: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export function createLocator(trustedProxies: readonly string[], names: GeoHeaderNames, geoipDbPath: string | null): Locator {
  const trusted = trustedProxies.length > 0 ? trustedProxyList(trustedProxies) : null;
  const reader = geoipDbPath !== null ? openGeoDatabase(geoipDbPath) : null;
  const source: Locator['source'] = trusted && reader ? 'headers+mmdb' : trusted ? 'headers' : reader ? 'mmdb' : 'none';
  return {
    source,
    describe() {
      switch (source) {
        case 'none':
          return 'off: no trusted proxy location headers and no GeoIP database; location rules are silent';
        case 'headers':
          return `headers from trusted proxies (${names.country}, ${names.city}, ${names.lat}, ${names.lon})`;
        case 'mmdb':
          return `GeoIP database ${reader?.metadata.databaseType ?? ''}`.trim();
        case 'headers+mmdb':
          return `headers from trusted proxies, else GeoIP database ${reader?.metadata.databaseType ?? ''}`.trim();
      }
    },
    locate(input) {
      if (trusted !== null && input.peer !== undefined) {
        const peer = plainAddress(input.peer);
        const family = isIP(peer) === 6 ? 'ipv6' : 'ipv4';
        if (isIP(peer) !== 0 && trusted.check(peer, family)) {
          const fromHeaders = locationFromHeaders(input.headers, names);
          if (fromHeaders !== null) return fromHeaders;
        }
      }
      return reader !== null ? locationFromDatabase(reader, input.clientIp) : null;
    },
  };
}
