// Configuration (docs/api.md §Configuration and operation; the variables: README): one typed
// object, parsed and validated once at start from the environment. Every error names the variable
// that is wrong; the CLI prints it on one line and exits with code 2.

import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { parseAllowEntry } from '../net/outbound-policy.ts';
import { ConfigError } from './config-error.ts';
import { loadMonitoringConfig, type MonitoringConfig } from './monitoring.ts';

export { ConfigError } from './config-error.ts';

export type StoreKind = 'sqlite' | 'redis' | 'redis-sentinel' | 'redis-cluster' | 'postgres';

export interface Config {
  host: string;
  port: number;
  store: { url: string; kind: StoreKind; sqlitePath: string | null };
  /** PostgreSQL: connections in the pool (TESSERA_STORE_POOL_SIZE). */
  storePoolSize: number;
  /** PostgreSQL: statement_timeout of every connection, ms (TESSERA_STORE_STATEMENT_TIMEOUT_MS). */
  storeStatementTimeoutMs: number;
  /** Key prefix in Redis (every key Tessera writes starts with it). */
  redisPrefix: string;
  /** Ends, evictions and rotations wait for this many replicas (WAIT), at most timeoutMs. */
  redisWait: { replicas: number; timeoutMs: number };
  /** Redis: the most live sessions one user may hold (TESSERA_REDIS_USER_SESSIONS_MAX; 0 = no cap). */
  redisUserSessionsMax: number;
  /**
   * Redis (standalone): how the hot Function calls (rotation, SSO exchange) are sent
   * (TESSERA_REDIS_HOT_WRITES): `task` or `turn` through a lean connection of their own, written at
   * the end of their task or event-loop turn; `off` through node-redis (src/store/redis/hot-connection.ts).
   */
  redisHotWrites: 'task' | 'turn' | 'off';
  /** Where the embedded mode keeps its database, generated keys and bootstrap credential. */
  dataDir: string;
  /** null: generated and persisted in embedded mode (see src/config/secrets-on-disk.ts). */
  cookieSecret: string | null;
  /** null: bootstrap admin credential off (embedded mode may generate one). */
  adminToken: string | null;
  insecureCookies: boolean;
  /**
   * Development only: allow plain-HTTP loopback URLs (127.0.0.0/8, [::1], localhost) for identity
   * providers, Tessera's own SSO redirect URI and back-channel targets. Off: they are refused.
   */
  devAllowHttpLoopback: boolean;
  /**
   * TESSERA_OUTBOUND_ALLOW: host names, IP addresses and CIDR ranges that tenants' outbound URLs
   * may reach although they are not public (src/net/outbound-policy.ts).
   */
  outboundAllow: string[];
  /** Origins (scheme://host[:port]) allowed for credentialed cross-origin calls. */
  allowedOrigins: string[];
  /** Tessera's own public origin, also the JWT issuer. */
  publicUrl: string;
  trustedProxies: string[];
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** How often the expiry sweeper runs, ms. */
  sweepIntervalMs: number;
  /** Largest accepted request body, bytes. */
  bodyLimit: number;
  /** The whole request (headers and body) must arrive within this, ms (else 408 and closed). */
  requestTimeoutMs: number;
  /** A connection with no traffic either way for this long is closed, ms. */
  idleTimeoutMs: number;
  /** Open connections per client address (trusted proxies exempt); past it new ones are closed. */
  maxConnectionsPerIp: number;
  /** On SIGTERM: how long /readyz answers 503 while requests are still served, before the listener closes. */
  shutdownDelayMs: number;
  /** On SIGTERM: how long in-flight requests may take after the listener closed; then connections are cut. */
  shutdownTimeoutMs: number;
  /**
   * The V8 semi-space `tessera start` keeps at least, MB (TESSERA_SEMI_SPACE_MB; 0: V8's own
   * sizing): src/config/node-flags.ts, docs/performance.md "The check's p99 tail".
   */
  semiSpaceMb: number;
  /**
   * Who computes the session tokens' Ed25519 signatures (TESSERA_ED25519): `auto`, libsodium
   * where its addon loads, else node:crypto; `node`, node:crypto always (src/tokens/ed25519.ts).
   */
  ed25519: 'auto' | 'node';
  /** Serves the demo bank and fintech pages (issue: consent redirects). */
  demo: boolean;
  /** How long an ended consent is kept before it is purged, seconds (TESSERA_CONSENT_RETENTION). */
  consentRetentionSeconds: number;
  /** Audit log, locations, anomaly thresholds (src/config/monitoring.ts). */
  monitoring: MonitoringConfig;
  /** The bank simulator the demo registers as tenant `demo`'s bank (`npx tessera bank-simulator`). */
  demoBankUrl: string;
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * TESSERA_* names that are not server configuration: the `tessera login` client's server, and
 * what the test suite reads (CI exports them for the whole run).
 */
const NOT_SERVER_SETTINGS = new Set(['TESSERA_URL', 'TESSERA_CHROMIUM', 'TESSERA_REQUIRE_REDIS', 'TESSERA_REQUIRE_BROWSER']);
const NOT_SERVER_PREFIXES = ['TESSERA_TEST_', 'TESSERA_CHAOS_'];

export function loadConfig(env: Env = process.env, cwd: string = process.cwd()): Config {
  // Every name the parser looks at is recorded, so the list of known names cannot drift from
  // the parser: a TESSERA_* variable that was set but never looked at is a mistake (a mistyped
  // TESSERA_REDIS_PREFIX would otherwise write under the default prefix of a shared Redis).
  const read = new Set<string>();
  const tracked = new Proxy(env, {
    get(target, name) {
      if (typeof name === 'string') read.add(name);
      return target[name as string];
    },
  });
  const config = parseConfig(tracked, cwd);
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('TESSERA_') || read.has(name) || NOT_SERVER_SETTINGS.has(name)) continue;
    if (NOT_SERVER_PREFIXES.some((p) => name.startsWith(p))) continue;
    const guess = closestName(name, [...read].filter((n) => n.startsWith('TESSERA_')));
    throw new ConfigError(name, `is not a Tessera setting${guess ? `; did you mean ${guess}?` : ''} (docs: README, configuration)`);
  }
  return config;
}

/** The known name most like `name` (edit distance, or a shared word), or null. */
export function closestName(name: string, known: readonly string[]): string | null {
  const words = (n: string) => n.replace(/^TESSERA_/, '').split('_').filter((w) => w.length >= 4);
  const mine = new Set(words(name));
  let best: { name: string; score: number } | null = null;
  for (const k of known) {
    const d = editDistance(name, k);
    const shared = words(k).filter((w) => mine.has(w)).length;
    if (d > Math.max(2, Math.floor(name.length / 4)) && shared === 0) continue;
    const score = d - 3 * shared;
    if (best === null || score < best.score) best = { name: k, score };
  }
  return best?.name ?? null;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

function parseConfig(env: Env, cwd: string): Config {
  const port = intVar(env, 'TESSERA_PORT', 8080, 0, 65535);
  const host = env.TESSERA_HOST?.trim() || '127.0.0.1';
  const store = parseStore(env.TESSERA_STORE?.trim() || 'sqlite:./data/tessera.db', cwd);
  const dataDir = env.TESSERA_DATA_DIR
    ? resolve(cwd, env.TESSERA_DATA_DIR)
    : store.sqlitePath !== null && store.sqlitePath !== ':memory:'
      ? dirname(store.sqlitePath)
      : resolve(cwd, 'data');

  const cookieSecret = secretVar(env, 'COOKIE_SECRET_SIGN_KEY');
  if (cookieSecret === null && store.kind !== 'sqlite') {
    // Several servers share a Redis or PostgreSQL store: a key generated by one would not be known to the others.
    throw new ConfigError('COOKIE_SECRET_SIGN_KEY', `is required with a ${store.kind === 'postgres' ? 'PostgreSQL' : 'Redis'} store (at least 32 characters)`);
  }
  const adminToken = secretVar(env, 'TESSERA_ADMIN_TOKEN');

  const publicUrl = originVar(env, 'TESSERA_PUBLIC_URL', `http://localhost:${port === 0 ? 8080 : port}`);
  const allowedOrigins = listVar(env, 'TESSERA_ALLOWED_ORIGINS').map((o) => {
    const parsed = parseOrigin(o);
    if (parsed === null) throw new ConfigError('TESSERA_ALLOWED_ORIGINS', `"${o}" is not an origin like https://app.example.com`);
    return parsed;
  });
  const trustedProxies = listVar(env, 'TESSERA_TRUSTED_PROXIES');
  for (const p of trustedProxies) {
    const [addr, bits] = p.split('/');
    const family = isIP(addr ?? '');
    const maxBits = family === 6 ? 128 : 32;
    if (family === 0 || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= maxBits))) {
      throw new ConfigError('TESSERA_TRUSTED_PROXIES', `"${p}" is not an IP address or CIDR range`);
    }
  }

  const outboundAllow = listVar(env, 'TESSERA_OUTBOUND_ALLOW');
  for (const entry of outboundAllow) {
    if (parseAllowEntry(entry) === null) throw new ConfigError('TESSERA_OUTBOUND_ALLOW', `"${entry}" is not a host name, IP address or CIDR range`);
  }

  const logLevel = (env.TESSERA_LOG_LEVEL?.trim() || 'info') as Config['logLevel'];
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError('TESSERA_LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  }
  const redisHotWrites = env.TESSERA_REDIS_HOT_WRITES?.trim() || 'task';
  if (redisHotWrites !== 'task' && redisHotWrites !== 'turn' && redisHotWrites !== 'off') {
    throw new ConfigError('TESSERA_REDIS_HOT_WRITES', `must be task, turn or off (got "${redisHotWrites}")`);
  }
  const ed25519 = env.TESSERA_ED25519?.trim() || 'auto';
  if (ed25519 !== 'auto' && ed25519 !== 'node') {
    throw new ConfigError('TESSERA_ED25519', `must be auto or node (got "${ed25519}")`);
  }
  const redisPrefix = env.TESSERA_REDIS_PREFIX ?? 'tessera:';
  if (!/^[A-Za-z0-9:._-]{0,64}$/.test(redisPrefix)) {
    throw new ConfigError('TESSERA_REDIS_PREFIX', 'may hold only letters, digits and : . _ - (at most 64)');
  }

  return {
    host,
    port,
    store,
    storePoolSize: intVar(env, 'TESSERA_STORE_POOL_SIZE', 10, 1, 1000),
    storeStatementTimeoutMs: intVar(env, 'TESSERA_STORE_STATEMENT_TIMEOUT_MS', 5000, 100, 600_000),
    redisPrefix,
    redisWait: {
      // With Sentinel a failover promotes a replica: by default a logout waits until one has it.
      replicas: intVar(env, 'TESSERA_REDIS_WAIT_REPLICAS', store.kind === 'redis-sentinel' ? 1 : 0, 0, 16),
      // Below the 1 s command deadline, so that WAIT itself never times out as a command.
      timeoutMs: intVar(env, 'TESSERA_REDIS_WAIT_TIMEOUT_MS', 500, 10, 900),
    },
    redisUserSessionsMax: intVar(env, 'TESSERA_REDIS_USER_SESSIONS_MAX', 200, 0, 100_000),
    redisHotWrites,
    dataDir,
    cookieSecret,
    adminToken,
    insecureCookies: boolVar(env, 'TESSERA_INSECURE_COOKIES'),
    devAllowHttpLoopback: boolVar(env, 'TESSERA_DEV_ALLOW_HTTP_LOOPBACK'),
    outboundAllow,
    allowedOrigins,
    publicUrl,
    trustedProxies,
    logLevel,
    sweepIntervalMs: intVar(env, 'TESSERA_SWEEP_INTERVAL_MS', 5000, 100, 3_600_000),
    bodyLimit: intVar(env, 'TESSERA_BODY_LIMIT', 64 * 1024, 1024, 10 * 1024 * 1024),
    requestTimeoutMs: intVar(env, 'TESSERA_REQUEST_TIMEOUT_MS', 30_000, 1000, 600_000),
    idleTimeoutMs: intVar(env, 'TESSERA_IDLE_TIMEOUT_MS', 60_000, 1000, 3_600_000),
    maxConnectionsPerIp: intVar(env, 'TESSERA_MAX_CONNECTIONS_PER_IP', 100, 1, 100_000),
    shutdownDelayMs: intVar(env, 'TESSERA_SHUTDOWN_DELAY_MS', 0, 0, 600_000),
    shutdownTimeoutMs: intVar(env, 'TESSERA_SHUTDOWN_TIMEOUT_MS', 10_000, 100, 600_000),
    semiSpaceMb: intVar(env, 'TESSERA_SEMI_SPACE_MB', DEFAULT_SEMI_SPACE_MB, 0, 1024),
    ed25519,
    demo: boolVar(env, 'TESSERA_DEMO'),
    consentRetentionSeconds: intVar(env, 'TESSERA_CONSENT_RETENTION', 90 * 86_400, 0, 10 * 365 * 86_400),
    monitoring: loadMonitoringConfig(env, cwd),
    demoBankUrl: originVar(env, 'TESSERA_DEMO_BANK_URL', 'http://127.0.0.1:8090'),
  };
}

/** The semi-space `tessera start` keeps by default, MB (src/config/node-flags.ts). */
export const DEFAULT_SEMI_SPACE_MB = 16;

function parseStore(url: string, cwd: string): Config['store'] {
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length).replace(/^\/\//, '');
    if (path === '') throw new ConfigError('TESSERA_STORE', 'sqlite: needs a file path, e.g. sqlite:./data/tessera.db');
    return { url, kind: 'sqlite', sqlitePath: path === ':memory:' ? path : resolve(cwd, path) };
  }
  const scheme = /^([a-z-]+):\/\//.exec(url)?.[1];
  switch (scheme) {
    case 'redis':
    case 'rediss':
      return { url, kind: 'redis', sqlitePath: null };
    case 'redis-sentinel':
      if (!/^redis-sentinel:\/\/[^/]+\/[^/?]+/.test(url)) {
        throw new ConfigError('TESSERA_STORE', 'redis-sentinel:// needs hosts and a master name: redis-sentinel://h1:26379,h2:26379/mymaster');
      }
      return { url, kind: 'redis-sentinel', sqlitePath: null };
    case 'redis-cluster':
      if (!/^redis-cluster:\/\/[^/]+/.test(url)) {
        throw new ConfigError('TESSERA_STORE', 'redis-cluster:// needs seed nodes: redis-cluster://h1:7000,h2:7001');
      }
      return { url, kind: 'redis-cluster', sqlitePath: null };
    case 'postgres':
    case 'postgresql':
      // Its parameters (libpq's: sslmode, sslrootcert, …) are checked when the store opens.
      return { url, kind: 'postgres', sqlitePath: null };
    default:
      throw new ConfigError(
        'TESSERA_STORE',
        `unsupported store "${redact(url)}"; use sqlite:<path>, redis://, rediss://, redis-sentinel://, redis-cluster://, postgres:// or postgresql://`,
      );
  }
}

/** Never echo a password from a URL into an error message. */
function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@').replace(/([?&](?:password|sslpassword)=)[^&]*/gi, '$1***');
}

function intVar(env: Env, name: string, dflt: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return dflt;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(name, `must be an integer from ${min} to ${max} (got "${raw}")`);
  }
  return Number(raw);
}

function boolVar(env: Env, name: string): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '' || raw === '0' || raw === 'false') return false;
  if (raw === '1' || raw === 'true') return true;
  throw new ConfigError(name, `must be 1/true or 0/false (got "${raw}")`);
}

function secretVar(env: Env, name: string): string | null {
  const raw = env[name];
  if (raw === undefined || raw === '') return null;
  if (raw.length < 32) throw new ConfigError(name, 'must be at least 32 characters (a random value; `openssl rand -base64 32`)');
  return raw;
}

function listVar(env: Env, name: string): string[] {
  return (env[name] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function originVar(env: Env, name: string, dflt: string): string {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return dflt;
  const origin = parseOrigin(raw);
  if (origin === null) throw new ConfigError(name, `must be an origin like https://auth.example.com (got "${raw}")`);
  return origin;
}

export function parseOrigin(value: string): string | null {
  try {
    const u = new URL(value);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
    if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '') return null;
    return u.origin;
  } catch {
    return null;
  }
}
