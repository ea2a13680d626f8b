// Which stores the HTTP suites run on: always SQLite; Redis and PostgreSQL when they answer. With
// TESSERA_REQUIRE_REDIS=1 / TESSERA_REQUIRE_POSTGRES=1 (CI) they are always included, so an
// unreachable server fails loudly instead of skipping. Suites that ask for it (`{ cluster: true }`)
// also run on a 3-master Redis Cluster the file starts once (test/support/file-cluster.ts), when
// redis-server can be started here — always with TESSERA_REQUIRE_REDIS=1.

import { spawnSync } from 'node:child_process';
import type { StoreChoice } from './harness.ts';
import { redisTestUrl } from './harness.ts';
import { stopFileClusterAfterAll } from './file-cluster.ts';
import { postgresServerUrl } from './postgres.ts';
import { redisBinariesMissing } from './redis.ts';

let reachable: boolean | null = null;
let pgReachable: boolean | null = null;

export function redisReachable(): boolean {
  if (reachable === null) {
    const r = spawnSync('redis-cli', ['-u', redisTestUrl(), 'ping'], { encoding: 'utf8', timeout: 3000 });
    reachable = r.status === 0 && r.stdout.trim() === 'PONG';
  }
  return reachable;
}

/** Whether the test PostgreSQL accepts connections (pg_isready, from the server's package). */
export function postgresReachable(): boolean {
  if (pgReachable === null) {
    const u = new URL(postgresServerUrl());
    const r = spawnSync('pg_isready', ['-q', '-h', u.hostname, '-p', u.port || '5432'], { timeout: 3000 });
    pgReachable = r.status === 0;
  }
  return pgReachable;
}

export function storeChoices(opts: { cluster?: boolean } = {}): StoreChoice[] {
  const choices: StoreChoice[] = ['sqlite'];
  if (process.env.TESSERA_REQUIRE_REDIS === '1' || redisReachable()) choices.push('redis');
  else console.warn('Redis is not reachable: the Redis variants of the HTTP suites are skipped (TESSERA_REQUIRE_REDIS=1 makes this fail).');
  if (opts.cluster) {
    if (process.env.TESSERA_REQUIRE_REDIS === '1' || redisBinariesMissing() === null) {
      choices.push('redis-cluster');
      stopFileClusterAfterAll();
    } else console.warn('redis-server cannot be started here: the Redis Cluster variants of the HTTP suites are skipped (TESSERA_REQUIRE_REDIS=1 makes this fail).');
  }
  if (process.env.TESSERA_REQUIRE_POSTGRES === '1' || postgresReachable()) choices.push('postgres');
  else console.warn('PostgreSQL is not reachable: the PostgreSQL variants of the HTTP suites are skipped (TESSERA_REQUIRE_POSTGRES=1 makes this fail).');
  return choices;
}
