// One Tessera in this process, from any checkout's sources (root), on Redis, served through
// Fastify's inject (no sockets): the in-process A/B benches (rotation-ab.ts, sso-ab.ts) start
// one per checkout they compare, with a tenant "bench" of the integration profile.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type * as ConfigModule from '../src/config/config.ts';
import type * as SecretsModule from '../src/domain/secrets.ts';
import type { Origin } from '../src/events/bus.ts';
import type * as AppModule from '../src/http/app.ts';
import type * as RuntimeModule from '../src/runtime.ts';
import type * as ServerModule from '../src/server.ts';
import type * as StoreModule from '../src/store/open.ts';

export interface Injectable {
  inject(opts: { method: string; url: string; headers?: Record<string, string>; payload?: unknown }): Promise<{ statusCode: number; body: string; json(): unknown }>;
}

export interface InProcessTessera {
  app: Injectable;
  /** The runtime's dependencies (for benches that call below the routes, rotation-direct.ts). */
  deps: RuntimeModule.Deps;
  /** Resolves once every event emitted so far is in the audit log. */
  flush: () => Promise<void>;
  stop: () => Promise<void>;
}

/**
 * The modules an in-process Tessera is built from, loaded from a checkout's sources (`root`) —
 * typed as this one's (the same shapes): for the A/B benches that compare two checkouts.
 */
export async function checkoutModules(root: string) {
  const src = <T>(p: string) => import(join(root, 'src', p)) as Promise<T>;
  const { loadConfig } = await src<typeof ConfigModule>('config/config.ts');
  const { createLogger } = await src<typeof ServerModule>('server.ts');
  const { createRuntime } = await src<typeof RuntimeModule>('runtime.ts');
  const { buildApp } = await src<typeof AppModule>('http/app.ts');
  const { openStore } = await src<typeof StoreModule>('store/open.ts');
  const { hashSecret } = await src<typeof SecretsModule>('domain/secrets.ts');
  return { loadConfig, createLogger, createRuntime, buildApp, openStore, hashSecret };
}

export async function startInProcessTessera(opts: {
  root: string;
  redisUrl: string;
  prefix: string;
  cookieSecret: string;
  adminToken: string;
  /** A folder for the files the configuration wants (none are written on Redis). */
  dir: string;
}): Promise<InProcessTessera> {
  const { loadConfig, createLogger, createRuntime, buildApp, openStore, hashSecret } = await checkoutModules(opts.root);
  const config = loadConfig(
    {
      TESSERA_STORE: opts.redisUrl,
      TESSERA_REDIS_PREFIX: opts.prefix,
      COOKIE_SECRET_SIGN_KEY: opts.cookieSecret,
      TESSERA_ADMIN_TOKEN: opts.adminToken,
      TESSERA_LOG_LEVEL: 'info',
      // No sweep or bank round during the measurement.
      TESSERA_SWEEP_INTERVAL_MS: '3600000',
    },
    opts.dir,
  );
  const store = await openStore(config);
  const runtime = await createRuntime({ ...config, cookieSecret: opts.cookieSecret }, store, { now: () => Date.now() }, { adminTokenHash: hashSecret(opts.adminToken) });
  await runtime.start();
  const log = createLogger(config, '/dev/null');
  const app = (await buildApp(runtime.deps, { logger: log })) as unknown as Injectable;
  const h = { authorization: `Bearer ${opts.adminToken}`, 'content-type': 'application/json' };
  await app.inject({ method: 'PUT', url: '/api/v1/admin/tenants/bench', headers: h, payload: { profile: 'integration' } });
  return { app, deps: runtime.deps, flush: () => runtime.deps.monitor.flush(), stop: () => runtime.stop() };
}

/**
 * Rotation chains: `n` users of the tenant "bench" made through the admin API and logged in by
 * password; their refresh tokens, in order (rotation-direct.ts, lean-resp-ab.ts).
 */
export async function loginChains(t: InProcessTessera, adminToken: string, n: number, emailPrefix: string): Promise<string[]> {
  const h = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
  const tokens: string[] = [];
  for (let i = 0; i < n; i++) {
    const email = `${emailPrefix}${i}@example.com`;
    await t.app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: h, payload: { tenantId: 'bench', email, password: 'bench password' } });
    const r = await t.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json' }, payload: { email, password: 'bench password' } });
    if (r.statusCode !== 200) throw new Error(`login ${r.statusCode} ${r.body}`);
    tokens.push((r.json() as { refreshToken: string }).refreshToken);
  }
  return tokens;
}

/** What request `i`'s origin looks like to the rotation (originOf in src/http/authenticate.ts). */
export function benchOrigin(i: number, userAgent: string): Origin {
  return {
    headers: { requestId: `bench-${i}-${randomBytes(6).toString('hex')}`, correlationId: null, activityId: null, tenantId: null, sessionId: null },
    ip: '127.0.0.1',
    userAgent,
    location: null,
  };
}
