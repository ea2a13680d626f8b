// Locations from trusted proxy headers and from a MaxMind database that the test writes itself.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLocator } from '../../src/audit/location.ts';
import { ConfigError } from '../../src/config/config.ts';
import { loadMonitoringConfig } from '../../src/config/monitoring.ts';
import { buildMmdb, cityRecord } from '../support/mmdb-writer.ts';

const names = loadMonitoringConfig({}, '/').geoHeaders;
const dir = mkdtempSync(join(tmpdir(), 'tessera-mmdb-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const geo = { 'x-geo-country': 'de', 'x-geo-city': 'Berlin', 'x-geo-lat': '52.52', 'x-geo-lon': '13.405' };

describe('locations from trusted proxy headers', () => {
  const locator = createLocator(['10.0.0.0/8', '::1'], names, null);

  it('reads the headers only from a trusted proxy', () => {
    expect(locator.source).toBe('headers');
    expect(locator.locate({ peer: '10.1.2.3', clientIp: '203.0.113.9', headers: geo })).toEqual({ country: 'DE', city: 'Berlin', lat: 52.52, lon: 13.405 });
    expect(locator.locate({ peer: '::ffff:10.1.2.3', clientIp: '203.0.113.9', headers: geo })).toMatchObject({ city: 'Berlin' });
    expect(locator.locate({ peer: '::1', clientIp: '::1', headers: geo })).toMatchObject({ country: 'DE' });
    expect(locator.locate({ peer: '192.0.2.1', clientIp: '192.0.2.1', headers: geo })).toBeNull();
    expect(locator.locate({ peer: undefined, clientIp: '192.0.2.1', headers: geo })).toBeNull();
  });

  it('leaves malformed values out instead of guessing', () => {
    const bad = { 'x-geo-country': 'Germany', 'x-geo-city': 'S%C3%A3o%20Paulo\u0007', 'x-geo-lat': '91', 'x-geo-lon': '10' };
    expect(locator.locate({ peer: '10.0.0.1', clientIp: '1.2.3.4', headers: bad })).toEqual({ city: 'São Paulo' });
    expect(locator.locate({ peer: '10.0.0.1', clientIp: '1.2.3.4', headers: { 'x-geo-city': ['a', 'b'] } })).toBeNull();
  });

  it('uses configured header names', () => {
    const custom = loadMonitoringConfig({ TESSERA_GEO_COUNTRY_HEADER: 'CF-IPCountry' }, '/').geoHeaders;
    const l = createLocator(['10.0.0.0/8'], custom, null);
    expect(l.locate({ peer: '10.0.0.1', clientIp: '1.2.3.4', headers: { 'cf-ipcountry': 'ch' } })).toEqual({ country: 'CH' });
  });

  it('says when there is no source at all', () => {
    const none = createLocator([], names, null);
    expect(none.source).toBe('none');
    expect(none.describe()).toMatch(/^off: .*location rules are silent/);
    expect(none.locate({ peer: '10.0.0.1', clientIp: '1.2.3.4', headers: geo })).toBeNull();
  });
});

describe('locations from a MaxMind database', () => {
  const path = join(dir, 'test-city.mmdb');
  writeFileSync(
    path,
    buildMmdb([
      { cidr: '198.51.100.0/24', data: cityRecord('DE', 'Berlin', 52.52, 13.405) },
      { cidr: '203.0.113.0/25', data: cityRecord('AE', 'Dubai', 25.2048, 55.2708) },
    ]),
  );

  it('looks the client address up in the database', () => {
    const locator = createLocator([], names, path);
    expect(locator.source).toBe('mmdb');
    expect(locator.describe()).toContain('Tessera-Test-City');
    expect(locator.locate({ peer: '198.51.100.77', clientIp: '198.51.100.77', headers: {} })).toEqual({ country: 'DE', city: 'Berlin', lat: 52.52, lon: 13.405 });
    expect(locator.locate({ peer: '::ffff:203.0.113.5', clientIp: '::ffff:203.0.113.5', headers: {} })).toMatchObject({ city: 'Dubai' });
    expect(locator.locate({ peer: '203.0.113.200', clientIp: '203.0.113.200', headers: {} })).toBeNull();
    expect(locator.locate({ peer: '::1', clientIp: '::1', headers: {} })).toBeNull();
  });

  it('prefers a trusted proxy’s headers, and falls back to the database for the forwarded client', () => {
    const locator = createLocator(['10.0.0.0/8'], names, path);
    expect(locator.source).toBe('headers+mmdb');
    expect(locator.locate({ peer: '10.0.0.1', clientIp: '203.0.113.5', headers: geo })).toMatchObject({ city: 'Berlin' });
    expect(locator.locate({ peer: '10.0.0.1', clientIp: '203.0.113.5', headers: {} })).toMatchObject({ city: 'Dubai' });
  });

  it('refuses a file that is not a database, naming the variable', () => {
    const junk = join(dir, 'junk.mmdb');
    writeFileSync(junk, 'not a database');
    expect(() => createLocator([], names, junk)).toThrow(ConfigError);
    expect(() => loadMonitoringConfig({ TESSERA_GEOIP_DB: join(dir, 'missing.mmdb') }, '/')).toThrow(/TESSERA_GEOIP_DB/);
  });
});
