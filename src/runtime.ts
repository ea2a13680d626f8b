// Assembles what the HTTP layer needs from a configuration and an open store: derived keys, the
// signing key ring, the event bus, the session cache subscribed to the store's feed of ends.

import { DEFAULT_THROTTLE, type ThrottlePolicy } from './auth/throttle.ts';
import type { Config } from './config/config.ts';
import type { Clock } from './domain/clock.ts';
import { EventBus } from './events/bus.ts';
import { createOutboundPolicy, type LookupFn, type OutboundPolicy } from './net/outbound-policy.ts';
import { buildTenant, PLATFORM_TENANT } from './domain/tenant.ts';
import { startMonitoring, type Monitoring } from './sessions/monitoring.ts';
import { SessionCache } from './sessions/session-cache.ts';
import type { Coordination } from './store/coordination-port.ts';
import type { SessionStore } from './store/port.ts';
import type { DerivedKeys } from './tokens/derived-keys.ts';
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
  throttle: ThrottlePolicy;
  /** Audit pipeline, metrics, locations, anomaly screening, live feed (src/sessions/monitoring.ts). */
  monitor: Monitoring;
  /** Where tenants' URLs may lead Tessera: checked at registration and on every connection. */
  outbound: OutboundPolicy;
  /** Set when a shutdown begins: readiness answers 503 from then on (src/server.ts). */
  lifecycle: { draining: boolean };
}

export interface RuntimeOptions {
  adminTokenHash: string | null;
  throttle?: ThrottlePolicy;
  /** Node process metrics on /metrics too (servers; tests leave them out). */
  processMetrics?: boolean;
  /** Name resolution for outbound connections (tests play DNS rebinding with their own). */
  lookup?: LookupFn;
}

/**
 * The reserved tenant `platform`, whose users with the `admin` role are platform administrators
 * (src/http/admin-auth.ts). Created with the production profile when absent; never replaced.
 */
export async function ensurePlatformTenant(store: SessionStore, now: number): Promise<void> {
  if ((await store.getTenant(PLATFORM_TENANT)) !== null) return;
  await store.putTenant(buildTenant(PLATFORM_TENANT, { profile: 'production' }, now));
}

export async function createRuntime(
  config: Config & { cookieSecret: string },
  store: SessionStore & Coordination,
  clock: Clock,
  opts: RuntimeOptions,
): Promise<Deps> {
  const keyRing = new KeyRing(store, config.cookieSecret);
  await keyRing.load(clock.now());
  await ensurePlatformTenant(store, clock.now());
  const sessionCache = new SessionCache(store, 100_000, () => clock.now());
  await sessionCache.start(store);
  const bus = new EventBus();
  const monitor = await startMonitoring({ config, store, clock, bus, sessionCache }, { processMetrics: opts.processMetrics ?? false });
  return {
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
    throttle: opts.throttle ?? DEFAULT_THROTTLE,
    monitor,
    outbound: createOutboundPolicy({
      allow: config.outboundAllow,
      devAllowHttpLoopback: config.devAllowHttpLoopback,
      ...(opts.lookup ? { lookup: opts.lookup } : {}),
    }),
    lifecycle: { draining: false },
  };
}
