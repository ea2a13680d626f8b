// Rotation in a Redis Cluster (refresh-tokens.ts #rotateInCluster): the successor's route lives in
// another slot, so it is claimed before the rotate script runs and taken back when no rotation
// stored that successor. Concurrent refreshes of one token all send the same successor
// (refreshTokenPair derives it from the presented token), and the call that claimed the route is
// not always the one whose script rotates: the others' answers must not take the winner's route.

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashSecret, newSecret } from '../../src/domain/secrets.ts';
import { DEFAULT_LIFETIMES, issueSession } from '../../src/domain/session.ts';
import { RedisContext } from '../../src/store/redis/context.ts';
import { ROTATE } from '../../src/store/redis/refresh-scripts.ts';
import { openRedisStore, type RedisSessionStore } from '../../src/store/redis/redis-store.ts';
import { redisBinariesMissing, requireOrSkip, startRedisCluster, testPrefix, type StartedRedis } from '../support/redis.ts';

const T0 = Date.now();
const HOUR = 3_600_000;
const skip = requireOrSkip(redisBinariesMissing());

/** Spies on every RedisContext's runSlot (all stores of the process): the rotate script's calls go through `wrap`. */
function onRotate(wrap: (run: () => Promise<unknown>) => Promise<unknown>): void {
  const original = Object.getOwnPropertyDescriptor(RedisContext.prototype, 'runSlot')?.value as (this: RedisContext, ...a: unknown[]) => Promise<unknown>;
  vi.spyOn(RedisContext.prototype, 'runSlot').mockImplementation(function (this: RedisContext, ...args: Parameters<RedisContext['runSlot']>) {
    const run = () => original.apply(this, args);
    return args[0] === ROTATE ? wrap(run) : run();
  } as RedisContext['runSlot']);
}

describe.skipIf(skip)('rotation in a Redis Cluster (a throw-away 3-master Cluster)', () => {
  let cluster: StartedRedis;
  const prefix = testPrefix('rot-cluster');
  // Two processes refreshing the same token, and a third that has remembered no route.
  let first: RedisSessionStore;
  let second: RedisSessionStore;
  let reader: RedisSessionStore;

  beforeAll(async () => {
    cluster = await startRedisCluster();
    first = await openRedisStore(cluster.url, { prefix });
    second = await openRedisStore(cluster.url, { prefix });
    reader = await openRedisStore(cluster.url, { prefix });
  }, 90_000);
  afterAll(async () => {
    vi.restoreAllMocks();
    for (const s of [first, second, reader]) await s?.close();
    await cluster?.stop();
  });

  async function tokenOf(userId: string): Promise<string> {
    const s = issueSession({ tenantId: 't-rc', userId, kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password', parentHandle: null }, T0).session;
    expect((await first.createSession(s, T0)).ok).toBe(true);
    const tokenHash = hashSecret(newSecret());
    await first.addRefreshToken({ tokenHash, sessionHandle: s.handle, tenantId: 't-rc', userId, createdAt: T0, rotatedAt: null, successorHash: null });
    return tokenHash;
  }

  it("keeps the successor's route when the caller that claimed it answers grace: another caller's script rotated to the same successor first", async () => {
    const presented = await tokenOf('u-race');
    const successor = hashSecret(newSecret());
    // The first rotate script to be called waits until the second caller's rotation is done.
    let secondDone: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (secondDone = resolve));
    let held = false;
    onRotate((run) => {
      if (held) return run();
      held = true;
      return released.then(run);
    });
    try {
      // The first caller claims the route, then waits in its script call …
      const waiting = first.rotateRefreshToken(presented, successor, T0 + 1000, 10_000, T0 + HOUR);
      await vi.waitFor(() => expect(held).toBe(true));
      // … while the second (the route already there: not its own) rotates.
      expect((await second.rotateRefreshToken(presented, successor, T0 + 1000, 10_000, T0 + HOUR)).outcome).toBe('rotated');
      secondDone();
      const late = await waiting;
      expect(late.outcome).toBe('grace');
      expect(late.outcome === 'grace' && late.token.successorHash).toBe(successor);
    } finally {
      secondDone();
      vi.restoreAllMocks();
    }
    // The winner's new token is still found, by a process that has remembered no route, and rotates.
    expect(await reader.getRefreshToken(successor)).toMatchObject({ tokenHash: successor, rotatedAt: null });
    expect((await reader.rotateRefreshToken(successor, hashSecret(newSecret()), T0 + 2000, 10_000, T0 + HOUR)).outcome).toBe('rotated');
  });

  it("keeps the successor's route when the rotate call fails after the script may have run (its reply lost)", async () => {
    const presented = await tokenOf('u-lost');
    const successor = hashSecret(newSecret());
    onRotate((run) => run().then(() => Promise.reject(new Error('reply lost'))));
    try {
      await expect(first.rotateRefreshToken(presented, successor, T0 + 1000, 10_000, T0 + HOUR)).rejects.toThrow();
    } finally {
      vi.restoreAllMocks();
    }
    // The rotation happened: its new token is found and rotates.
    expect(await reader.getRefreshToken(successor)).toMatchObject({ tokenHash: successor, rotatedAt: null });
    expect((await reader.rotateRefreshToken(successor, hashSecret(newSecret()), T0 + 2000, 10_000, T0 + HOUR)).outcome).toBe('rotated');
  });

  it('takes back the route it claimed when no rotation stored its successor (the presented token reused)', async () => {
    const presented = await tokenOf('u-reuse');
    expect((await first.rotateRefreshToken(presented, hashSecret(newSecret()), T0 + 1000, 10_000, T0 + HOUR)).outcome).toBe('rotated');
    const successor = hashSecret(newSecret());
    expect((await first.rotateRefreshToken(presented, successor, T0 + 60_000, 10_000, T0 + HOUR)).outcome).toBe('reused');
    // Its route gone: the same hash can be stored on another user's slot.
    const other = await tokenOf('u-other');
    expect((await second.rotateRefreshToken(other, successor, T0 + 1000, 10_000, T0 + HOUR)).outcome).toBe('rotated');
    expect(await reader.getRefreshToken(successor)).toMatchObject({ tokenHash: successor });
  });
});
