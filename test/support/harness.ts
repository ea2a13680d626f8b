// Builds a Tessera app for HTTP tests (fastify.inject, no socket) on a fresh store: a temporary
// SQLite file, the test Redis under a random key prefix, or a PostgreSQL database of its own
// (tessera_test_<random>, dropped afterwards).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { hashSecret } from '../../src/domain/secrets.ts';
import { buildApp, type BuildOptions } from '../../src/http/app.ts';
import type { App, Deps } from '../../src/http/deps.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import { openStore, type Store } from '../../src/store/open.ts';
import type { ThrottlePolicy } from '../../src/auth/throttle.ts';
import type { LookupFn } from '../../src/net/outbound-policy.ts';
import { createTestDatabase } from './postgres.ts';
import { fileCluster } from './file-cluster.ts';
import { purgePrefix } from './redis.ts';
import { startOnFreePort } from './ports.ts';

export const ADMIN_TOKEN = 'test-admin-token-' + 'x'.repeat(32);
export const COOKIE_SECRET = 'test-cookie-secret-' + 'y'.repeat(32);

/** `redis-cluster`: a 3-master Redis Cluster started once per test file (test/support/file-cluster.ts). */
export type StoreChoice = 'sqlite' | 'redis' | 'postgres' | 'redis-cluster';

export interface TestServer {
  app: App;
  deps: Deps;
  /** The composition root, started: its `sweeper.sweepOnce()` runs an expiry sweep now. */
  runtime: Runtime;
  clock: ManualClock;
  store: Store;
  close(): Promise<void>;
}

export interface HarnessOptions {
  store?: StoreChoice;
  env?: Record<string, string>;
  clock?: ManualClock;
  throttle?: ThrottlePolicy;
  /** Share an existing store (two Tessera processes on one store). */
  sharedStore?: Store;
  /** Name resolution for outbound connections (DNS rebinding tests). */
  lookup?: LookupFn;
  /** Told of every route as it is registered (tests that cover every route). */
  onRoute?: BuildOptions['onRoute'];
}

export function redisTestUrl(): string {
  return process.env.TESSERA_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
}

export async function openTestStore(choice: StoreChoice, env: Record<string, string> = {}): Promise<{ store: Store; config: Config; cleanup: () => Promise<void> }> {
  if (choice === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-test-'));
    const config = loadConfig({ TESSERA_STORE: `sqlite:${join(dir, 'tessera.db')}`, COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET, TESSERA_ADMIN_TOKEN: ADMIN_TOKEN }, dir);
    const store = await openStore(config);
    return { store, config, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  if (choice === 'postgres') {
    const db = await createTestDatabase('http');
    // A small pool: test files run in parallel against one server (max_connections is often 100).
    const config = loadConfig({ TESSERA_STORE: db.url, TESSERA_STORE_POOL_SIZE: '5', COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET, TESSERA_ADMIN_TOKEN: ADMIN_TOKEN });
    try {
      return { store: await openStore(config), config, cleanup: () => db.drop() };
    } catch (err) {
      await db.drop();
      throw err;
    }
  }
  const prefix = `tessera-test:${randomBytes(6).toString('hex')}:`;
  const url = choice === 'redis-cluster' ? (await fileCluster()).url : redisTestUrl();
  // The Redis store's own settings of the test's env (the per-user cap) reach the store.
  const redisEnv = Object.fromEntries(Object.entries(env).filter(([k]) => k === 'TESSERA_REDIS_USER_SESSIONS_MAX'));
  const config = loadConfig({ TESSERA_STORE: url, TESSERA_REDIS_PREFIX: prefix, COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET, TESSERA_ADMIN_TOKEN: ADMIN_TOKEN, ...redisEnv });
  const store = await openStore(config);
  // The test Redis is shared with other runs: delete exactly this test's keys, nothing else.
  return { store, config, cleanup: async () => void (await purgePrefix(url, prefix)) };
}

export async function startTestServer(opts: HarnessOptions = {}): Promise<TestServer> {
  const clock = opts.clock ?? new ManualClock(Date.UTC(2026, 10, 23, 9, 0, 0));
  const opened = opts.sharedStore
    ? { store: opts.sharedStore, config: null, cleanup: async () => {} }
    : await openTestStore(opts.store ?? 'sqlite', opts.env);
  const config = loadConfig({
    TESSERA_STORE: opened.config?.store.url ?? 'sqlite::memory:',
    COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET,
    TESSERA_ADMIN_TOKEN: ADMIN_TOKEN,
    TESSERA_PUBLIC_URL: 'https://tessera.test',
    // The runtime starts the expiry sweeper and the bank worker as a server does, on their real
    // timer; at the longest interval neither fires during a test, so a test sweeps or runs the
    // bank work itself, at the moment its ManualClock says (runtime.sweeper.sweepOnce(),
    // runBankWork). A test may still set a shorter interval.
    TESSERA_SWEEP_INTERVAL_MS: '3600000',
    ...opts.env,
  });
  const runtime = await createRuntime({ ...config, cookieSecret: COOKIE_SECRET }, opened.store, clock, {
    adminTokenHash: hashSecret(ADMIN_TOKEN),
    ...(opts.throttle ? { throttle: opts.throttle } : {}),
    ...(opts.lookup ? { lookup: opts.lookup } : {}),
    // A shared store belongs to the test that opened it.
    closeStore: !opts.sharedStore,
  });
  let app: App;
  try {
    app = await buildApp(runtime.deps, opts.onRoute ? { onRoute: opts.onRoute } : {});
    runtime.serve(app);
    await runtime.start();
  } catch (err) {
    await runtime.stop();
    await opened.cleanup();
    throw err;
  }
  return {
    app,
    deps: runtime.deps,
    runtime,
    clock,
    store: opened.store,
    async close() {
      // The shutdown order is the server's (src/runtime.ts `stop`); then the test's own store.
      await runtime.stop();
      await opened.cleanup();
    },
  };
}

/**
 * A test server listening on 127.0.0.1, for tests whose configuration names the server's own URL
 * (TESSERA_PUBLIC_URL, redirect URIs at a provider): the app is built for a free port and, when
 * that port was taken before the listen (EADDRINUSE), closed and built again for another one
 * (test/support/ports.ts).
 */
export async function startListeningTestServer(opts: (url: string) => HarnessOptions): Promise<TestServer & { url: string }> {
  return startOnFreePort(async (port) => {
    const url = `http://127.0.0.1:${port}`;
    const server = await startTestServer(opts(url));
    try {
      await server.app.listen({ host: '127.0.0.1', port });
    } catch (err) {
      await server.close();
      throw err;
    }
    return { ...server, url };
  });
}

export const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** Creates a tenant and a user through the admin API; returns the user id. */
export async function provision(
  app: App,
  tenantId: string,
  email: string,
  password: string,
  tenant: Record<string, unknown> = { profile: 'integration' },
): Promise<string> {
  const t = await app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${tenantId}`, headers: admin, payload: tenant });
  if (t.statusCode !== 200) throw new Error(`tenant: ${t.statusCode} ${t.body}`);
  const u = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { tenantId, email, password } });
  if (u.statusCode !== 201) throw new Error(`user: ${u.statusCode} ${u.body}`);
  return (u.json() as { id: string }).id;
}

export function uniqueTenant(): string {
  return `t-${randomBytes(5).toString('hex')}`;
}
