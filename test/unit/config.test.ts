import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.ts';

const base = { TESSERA_STORE: 'sqlite:./data/t.db' };

function errorOf(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env, '/srv');
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration from the environment', () => {
  it('has working defaults: SQLite in ./data, port 8080', () => {
    const c = loadConfig({}, '/srv');
    expect(c.port).toBe(8080);
    expect(c.store).toEqual({ url: 'sqlite:./data/tessera.db', kind: 'sqlite', sqlitePath: '/srv/data/tessera.db' });
    expect(c.dataDir).toBe('/srv/data');
    expect(c.cookieSecret).toBeNull();
    expect(c.adminToken).toBeNull();
    expect(c.insecureCookies).toBe(false);
    expect(c.semiSpaceMb).toBe(16);
    expect(loadConfig({ TESSERA_SEMI_SPACE_MB: '0' }, '/srv').semiSpaceMb).toBe(0);
    expect(loadConfig({ TESSERA_SEMI_SPACE_MB: '32' }, '/srv').semiSpaceMb).toBe(32);
    expect(c.ed25519).toBe('auto');
    expect(loadConfig({ TESSERA_ED25519: 'node' }, '/srv').ed25519).toBe('node');
    expect(loadConfig({ TESSERA_ED25519: 'auto' }, '/srv').ed25519).toBe('auto');
  });

  it.each([
    ['redis://127.0.0.1:6379', 'redis'],
    ['rediss://user:pw@cache.example.com:6380/2', 'redis'],
    ['redis-sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster', 'redis-sentinel'],
    ['redis-cluster://10.0.0.1:7000,10.0.0.2:7001', 'redis-cluster'],
  ])('accepts %s as a %s store', (url, kind) => {
    const c = loadConfig({ TESSERA_STORE: url, COOKIE_SECRET_SIGN_KEY: 'k'.repeat(32) }, '/srv');
    expect(c.store.kind).toBe(kind);
  });

  it.each([
    [{ TESSERA_PORT: 'eighty' }, 'TESSERA_PORT'],
    [{ TESSERA_PORT: '70000' }, 'TESSERA_PORT'],
    [{ TESSERA_STORE: 'mysql://x' }, 'TESSERA_STORE'],
    [{ TESSERA_STORE: 'postgres://h/db' }, 'COOKIE_SECRET_SIGN_KEY'],
    [{ TESSERA_STORE_POOL_SIZE: '0' }, 'TESSERA_STORE_POOL_SIZE'],
    [{ TESSERA_STORE_STATEMENT_TIMEOUT_MS: 'soon' }, 'TESSERA_STORE_STATEMENT_TIMEOUT_MS'],
    [{ TESSERA_STORE: 'sqlite:' }, 'TESSERA_STORE'],
    [{ TESSERA_STORE: 'redis-sentinel://h:1' }, 'TESSERA_STORE'],
    [{ TESSERA_STORE: 'redis://h:6379' }, 'COOKIE_SECRET_SIGN_KEY'],
    [{ COOKIE_SECRET_SIGN_KEY: 'short' }, 'COOKIE_SECRET_SIGN_KEY'],
    [{ TESSERA_ADMIN_TOKEN: 'short' }, 'TESSERA_ADMIN_TOKEN'],
    [{ TESSERA_INSECURE_COOKIES: 'yes' }, 'TESSERA_INSECURE_COOKIES'],
    [{ TESSERA_ALLOWED_ORIGINS: 'https://ok.example, not-an-origin' }, 'TESSERA_ALLOWED_ORIGINS'],
    [{ TESSERA_ALLOWED_ORIGINS: 'https://app.example/path' }, 'TESSERA_ALLOWED_ORIGINS'],
    [{ TESSERA_TRUSTED_PROXIES: '10.0.0.0/33' }, 'TESSERA_TRUSTED_PROXIES'],
    [{ TESSERA_LOG_LEVEL: 'loud' }, 'TESSERA_LOG_LEVEL'],
    [{ TESSERA_PUBLIC_URL: 'ftp://x' }, 'TESSERA_PUBLIC_URL'],
    [{ TESSERA_SEMI_SPACE_MB: '-1' }, 'TESSERA_SEMI_SPACE_MB'],
    [{ TESSERA_SEMI_SPACE_MB: '2048' }, 'TESSERA_SEMI_SPACE_MB'],
    [{ TESSERA_SEMI_SPACE_MB: 'big' }, 'TESSERA_SEMI_SPACE_MB'],
    [{ TESSERA_ED25519: 'libsodium' }, 'TESSERA_ED25519'],
  ])('refuses %o naming %s', (env, variable) => {
    const err = errorOf({ ...base, ...env });
    expect(err.variable).toBe(variable);
    expect(err.message.startsWith(`${variable}: `)).toBe(true);
  });

  it('never repeats a password from a store URL in its error', () => {
    const err = errorOf({ TESSERA_STORE: 'memcached://admin:hunter2@h:1' });
    expect(err.message).not.toContain('hunter2');
  });

  it('normalises allowed origins and trusted proxies', () => {
    const c = loadConfig({ TESSERA_ALLOWED_ORIGINS: 'https://App.Example.com/ , http://localhost:3000', TESSERA_TRUSTED_PROXIES: '10.0.0.0/8,::1' }, '/srv');
    expect(c.allowedOrigins).toEqual(['https://app.example.com', 'http://localhost:3000']);
    expect(c.trustedProxies).toEqual(['10.0.0.0/8', '::1']);
  });
});
