// Which stores the HTTP suites run on: always SQLite; Redis when one answers. With
// TESSERA_REQUIRE_REDIS=1 (CI) Redis is always included, so an unreachable Redis fails loudly
// instead of skipping.

import { spawnSync } from 'node:child_process';
import type { StoreChoice } from './harness.ts';
import { redisTestUrl } from './harness.ts';

let reachable: boolean | null = null;

export function redisReachable(): boolean {
  if (reachable === null) {
    const r = spawnSync('redis-cli', ['-u', redisTestUrl(), 'ping'], { encoding: 'utf8', timeout: 3000 });
    reachable = r.status === 0 && r.stdout.trim() === 'PONG';
  }
  return reachable;
}

export function storeChoices(): StoreChoice[] {
  if (process.env.TESSERA_REQUIRE_REDIS === '1' || redisReachable()) return ['sqlite', 'redis'];
  console.warn('Redis is not reachable: the Redis variants of the HTTP suites are skipped (TESSERA_REQUIRE_REDIS=1 makes this fail).');
  return ['sqlite'];
}
