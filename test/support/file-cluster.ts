// One throw-away 3-master Redis Cluster per test file, for the HTTP suites' `redis-cluster` store
// choice (test/support/store-choices.ts): started by the first test that asks for it, stopped
// after the file's last test (storeChoices registers the hook). Each test still uses its own
// key prefix on it, as on the shared Redis.

import { afterAll } from 'vitest';
import { startRedisCluster, type StartedRedis } from './redis.ts';

let started: Promise<StartedRedis> | null = null;
let hooked = false;

/** The file's cluster, started on first use. */
export function fileCluster(): Promise<StartedRedis> {
  if (started === null) {
    const t0 = Date.now();
    started = startRedisCluster().then((c) => {
      if (process.env.TESSERA_TEST_TIMINGS === '1') process.stderr.write(`[tessera tests] Redis Cluster up in ${Date.now() - t0} ms\n`);
      return c;
    });
  }
  return started;
}

/** Stops the file's cluster after its last test (call at the file's top level, while collecting). */
export function stopFileClusterAfterAll(): void {
  if (hooked) return;
  hooked = true;
  afterAll(async () => {
    const c = started;
    started = null;
    await (await c?.catch(() => null))?.stop();
  });
}
