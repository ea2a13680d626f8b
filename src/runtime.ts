// The composition root. `createRuntime` assembles what the HTTP layer needs from a configuration
// and an open store (derived keys, the signing key ring, the event bus, the session cache,
// monitoring) and owns the process's lifecycle: `start` subscribes the feeds and starts the
// background work, `stop` shuts everything down in one order. src/server.ts and the test
// harness both go through it; the CLI's one-shot commands open their store through `withStore`
// below. docs/architecture.md "Lifecycle" describes both steps.

import { DEFAULT_THROTTLE, type ThrottlePolicy } from './auth/throttle.ts';
import type { Config } from './config/config.ts';
import { loadOrCreateSecret } from './config/secrets-on-disk.ts';
import type { Clock } from './domain/clock.ts';
import { hashSecret } from './domain/secrets.ts';
import { EventBus } from './events/bus.ts';
import { startBankWorker, type BankWorker } from './flows/consent-lifecycle.ts';
import { createOutboundPolicy, type LookupFn, type OutboundPolicy } from './net/outbound-policy.ts';
import { buildTenant, PLATFORM_TENANT } from './domain/tenant.ts';
import { startExpirySweeper, type Sweeper } from './sessions/expiry-sweeper.ts';
import { createMonitoring, type Monitoring } from './sessions/monitoring.ts';
import { PeerAcks, peerTiming } from './sessions/peer-acks.ts';
import { SessionCache } from './sessions/session-cache.ts';
import type { Coordination } from './store/coordination-port.ts';
import { openStore, type Store } from './store/open.ts';
import type { SessionStore } from './store/port.ts';
import type { DerivedKeys } from './tokens/derived-keys.ts';
import { useEd25519 } from './tokens/ed25519.ts';
import { KeyRing } from './tokens/key-ring.ts';
import { deriveKey } from './tokens/sealing.ts';

export type { DerivedKeys } from './tokens/derived-keys.ts';

/** What capabilities and route plugins are given; nothing is taken from globals. */
export interface Deps {
  config: Config & { cookieSecret: string };
  store: SessionStore & Coordination;
  clock: Clock;
  /** SHA-256 of the bootstrap admin credential, or null when it is off. */
  adminTokenHash: string | null;
  bus: EventBus;
  keyRing: KeyRing;
  keys: DerivedKeys;
  sessionCache: SessionCache;
  /** The other Tessera processes on the store: presence, and acknowledgements of ends. */
  peers: PeerAcks;
  throttle: ThrottlePolicy;
  /** Audit pipeline, metrics, locations, anomaly screening, live feed (src/sessions/monitoring.ts). */
  monitor: Monitoring;
  /** Where tenants' URLs may lead Tessera: checked at registration and on every connection. */
  outbound: OutboundPolicy;
  /** Set when a shutdown begins: readiness answers 503 from then on (`stop` below). */
  lifecycle: { draining: boolean };
}

/** Where the runtime writes its own lines (a pino logger fits; the default writes nothing). */
export interface RuntimeLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  /** Writes buffered lines out; called last by `stop`. */
  flush?(): void;
}

export interface RuntimeOptions {
  adminTokenHash: string | null;
  throttle?: ThrottlePolicy;
  /** Node process metrics on /metrics too (servers; tests leave them out). */
  processMetrics?: boolean;
  /** Name resolution for outbound connections (tests play DNS rebinding with their own). */
  lookup?: LookupFn;
  log?: RuntimeLog;
  /** Whether `stop` closes the store (default true; false when the store is shared with another runtime). */
  closeStore?: boolean;
}

/** The HTTP listener as `stop` drains it (a Fastify app is one). */
export interface Listener {
  close(): Promise<unknown>;
  server: { closeIdleConnections(): void; closeAllConnections(): void };
}

export interface Runtime {
  readonly deps: Deps;
  /**
   * Subscribes the feeds — the store's audit feed, then its feed of session ends (so that the
   * session cache serves from memory only once both deliver) — and starts the expiry sweeper
   * and the bank worker, both every `TESSERA_SWEEP_INTERVAL_MS`. Once; later calls wait for it.
   */
  start(): Promise<void>;
  /** The HTTP listener that `stop` drains first (server.ts, the test harness). */
  serve(listener: Listener): void;
  /** The expiry sweeper once started (tests run a sweep with `sweepOnce`). */
  readonly sweeper: Sweeper | null;
  /**
   * Shuts down, in this order: readiness turns 503 (and waits `TESSERA_SHUTDOWN_DELAY_MS`), the
   * listener closes and its requests in flight finish (cut after `TESSERA_SHUTDOWN_TIMEOUT_MS`);
   * the sweeper and the bank worker stop (no new events); monitoring writes out what is left for
   * the audit log and closes the audit feed; the session cache closes the feed of ends; the
   * store closes; the log is flushed. Once; later calls return the same promise.
   */
  stop(): Promise<void>;
}

const SILENT: RuntimeLog = { info() {}, warn() {} };

/**
 * The reserved tenant `platform`, whose users with the `admin` role are platform administrators
 * (src/http/admin-auth.ts). Created with the production profile when absent; never replaced.
 */
export async function ensurePlatformTenant(store: Pick<SessionStore, 'getTenant' | 'putTenant'>, now: number): Promise<void> {
  if ((await store.getTenant(PLATFORM_TENANT)) !== null) return;
  await store.putTenant(buildTenant(PLATFORM_TENANT, { profile: 'production' }, now));
}

/**
 * The server secret: COOKIE_SECRET_SIGN_KEY, or (embedded mode only: the configuration refuses a
 * shared store without it) the one kept in the data folder, created there on first use.
 */
export function serverSecretOf(config: Pick<Config, 'cookieSecret' | 'dataDir'>, log: RuntimeLog = SILENT): string {
  if (config.cookieSecret !== null) return config.cookieSecret;
  const s = loadOrCreateSecret(config.dataDir, 'cookie-secret');
  log.info({ path: s.path, created: s.created }, 'cookie signing key loaded from the data folder');
  return s.value;
}

/**
 * SHA-256 of the bootstrap admin credential: TESSERA_ADMIN_TOKEN, or on SQLite the one kept in
 * the data folder (created on first use, its path logged); null when it is off.
 */
export function adminTokenHashOf(config: Pick<Config, 'adminToken' | 'dataDir' | 'store'>, log: RuntimeLog = SILENT): string | null {
  if (config.adminToken !== null) return hashSecret(config.adminToken);
  if (config.store.kind !== 'sqlite') return null;
  const s = loadOrCreateSecret(config.dataDir, 'admin-token');
  log.info(
    { path: s.path, created: s.created },
    `bootstrap admin credential is in ${s.path} (mode 0600); use it as "Authorization: Bearer <contents>"`,
  );
  return hashSecret(s.value);
}

/**
 * The smaller factory, for the CLI's one-shot commands (tenants put, users add, keys rotate,
 * sessions list, audit, export, import, the start-up check for an administrator): the configured
 * store alone — no caches, feeds or background work. The caller closes it; `withStore` below
 * closes it when its function settles.
 */
export function openCommandStore(config: Config): Promise<Store> {
  return openStore(config);
}

/** `fn` with the store of `openCommandStore`, closed when `fn` settles. */
export async function withStore<T>(config: Config, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openCommandStore(config);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

export async function createRuntime(
  config: Config & { cookieSecret: string },
  store: SessionStore & Coordination,
  clock: Clock,
  opts: RuntimeOptions,
): Promise<Runtime> {
  const log = opts.log ?? SILENT;
  // Who signs the session tokens, for this process (src/tokens/ed25519.ts): logged once, with
  // the reason when libsodium could not be used (no key material in it).
  const ed25519 = useEd25519(config.ed25519);
  log.info(
    ed25519.fallbackReason === null ? { ed25519: ed25519.name } : { ed25519: ed25519.name, reason: ed25519.fallbackReason },
    `session tokens are signed with ${ed25519.name === 'libsodium' ? 'libsodium (sodium-native)' : 'node:crypto'}`,
  );
  const keyRing = new KeyRing(store, config.cookieSecret);
  await keyRing.load(clock.now());
  await ensurePlatformTenant(store, clock.now());
  const sessionCache = new SessionCache(store, 100_000, () => clock.now());
  const peers = new PeerAcks(store, sessionCache, {
    // Less often on SQLite, where each hello writes the file (src/sessions/peer-acks.ts).
    ...peerTiming(store.kind),
    // Both at most once a minute (PEER_LOG_INTERVAL_MS), with the count of those not logged.
    onError: (err, suppressed) =>
      log.warn({ err: err instanceof Error ? err.message : String(err), suppressed }, 'a message to the other processes was not sent'),
    onChannel: (change, reason, suppressed) =>
      change === 'down'
        ? log.warn({ reason, suppressed }, 'the channel between the processes is down for this process: sessions are not served from memory, explicit ends here do not wait for the others')
        : log.info({ reason }, 'the channel between the processes is up again'),
    onUnanswered: (peers) => log.warn({ peers }, 'an explicit end answered before these processes acknowledged it (waited FEED_ECHO_TIMEOUT_MS)'),
  });
  const bus = new EventBus();
  const monitor = createMonitoring({ config, store, clock, bus, sessionCache }, { processMetrics: opts.processMetrics ?? false });
  const deps: Deps = {
    config,
    store,
    clock,
    adminTokenHash: opts.adminTokenHash,
    bus,
    keyRing,
    keys: {
      refresh: deriveKey(config.cookieSecret, 'refresh-successor'),
      renew: deriveKey(config.cookieSecret, 'renew-successor'),
      xsrf: deriveKey(config.cookieSecret, 'xsrf'),
      clientSecrets: deriveKey(config.cookieSecret, 'seal-client-secrets'),
      ssoSession: deriveKey(config.cookieSecret, 'sso-session'),
      bankKeys: deriveKey(config.cookieSecret, 'seal-bank-keys'),
    },
    sessionCache,
    peers,
    throttle: opts.throttle ?? DEFAULT_THROTTLE,
    monitor,
    outbound: createOutboundPolicy({
      allow: config.outboundAllow,
      devAllowHttpLoopback: config.devAllowHttpLoopback,
      ...(opts.lookup ? { lookup: opts.lookup } : {}),
    }),
    lifecycle: { draining: false },
  };

  let listener: Listener | null = null;
  let sweeper: Sweeper | null = null;
  let bankWorker: BankWorker | null = null;
  let starting: Promise<void> | null = null;
  let stopping: Promise<void> | null = null;
  const warn = (what: string) => (err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, what);

  /** Stop accepting; requests in flight finish (see docs/reliability.md "Draining"). */
  async function closeListener(l: Listener): Promise<void> {
    // A request arriving on a kept-alive connection now is answered 503 with "Connection:
    // close". A keep-alive connection that turns idle only after close() began would hold the
    // server open, so idle ones are closed as they appear, and after TESSERA_SHUTDOWN_TIMEOUT_MS
    // everything is.
    const closing = l.close();
    const idle = setInterval(() => l.server.closeIdleConnections(), 50);
    const deadline = setTimeout(() => {
      log.warn({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown: requests still running at the deadline; closing their connections');
      l.server.closeAllConnections();
    }, config.shutdownTimeoutMs);
    try {
      await closing;
    } finally {
      clearInterval(idle);
      clearTimeout(deadline);
    }
  }

  return {
    deps,
    get sweeper() {
      return sweeper;
    },
    serve(l) {
      listener = l;
    },
    start() {
      starting ??= (async () => {
        await monitor.start();
        await sessionCache.start(store);
        // Known to the other processes before serving (src/sessions/peer-acks.ts).
        await peers.start();
        sweeper = startExpirySweeper(store, bus, clock, config.sweepIntervalMs, warn('expiry sweep failed'));
        // Pending consents asked of their banks, terminations retried, ended consents purged.
        bankWorker = startBankWorker(deps, Math.max(config.sweepIntervalMs, 1000), warn('bank work failed'));
      })();
      return starting;
    },
    stop() {
      stopping ??= (async () => {
        // 1. Readiness turns 503 while requests are still served, so that load balancers stop
        //    sending new ones here (TESSERA_SHUTDOWN_DELAY_MS; 0 skips the wait).
        deps.lifecycle.draining = true;
        if (listener !== null && config.shutdownDelayMs > 0) {
          log.info({ delayMs: config.shutdownDelayMs }, 'draining: /readyz answers 503, requests still served');
          await new Promise((r) => setTimeout(r, config.shutdownDelayMs));
        }
        // 2. The listener: no new requests, those in flight finish.
        if (listener !== null) await closeListener(listener);
        // 3. Background work, which would emit events, before the pipeline that records them.
        await starting?.catch(() => undefined);
        await sweeper?.stop();
        await bankWorker?.stop();
        // 4. Monitoring writes out what is queued for the audit log and closes the audit feed;
        //    the session cache closes the feed of ends.
        await monitor.stop();
        await peers.stop();
        await sessionCache.stop();
        // 5. The store, then the log.
        if (opts.closeStore !== false) await store.close();
        log.info({}, 'tessera stopped');
        log.flush?.();
      })();
      return stopping;
    },
  };
}
