// A stall of this process is not a silent Redis (src/store/redis/connection.ts, Deadlines): a
// command in flight while the event loop is held past its deadline resolves with the answer Redis
// gave meanwhile, and a Redis that really does not answer is still reported (503) after the
// deadline. The loop is held by a busy-wait, as a long GC pause or a starved CPU would hold it.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailable } from '../../src/domain/errors.ts';
import { openConnection, type RedisConnection } from '../../src/store/redis/connection.ts';
import { parseRedisUrl } from '../../src/store/redis/url.ts';
import { redisBinariesMissing, redisUrlForTests, requireOrSkip, startRedisStandalone } from '../support/redis.ts';

const DEADLINE_MS = 300;

/** Holds the event loop for `ms`, as a stall of this process would. */
function holdLoop(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy
  }
}

const settle = (p: Promise<unknown>) =>
  p.then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e }),
  );

const redis = await redisUrlForTests();
const skipShared = requireOrSkip(redis.unavailable);
const skipOwn = requireOrSkip(redisBinariesMissing());

describe.skipIf(skipShared)('a Redis command across a stall of this process', () => {
  let conn: RedisConnection;
  beforeAll(async () => {
    conn = await openConnection(parseRedisUrl(redis.url), { connectTimeoutMs: 2000, commandTimeoutMs: DEADLINE_MS });
  });
  afterAll(async () => {
    await conn?.close();
  });

  it('resolves when the loop is held past its deadline right after it was sent (not yet written)', async () => {
    for (let i = 0; i < 3; i++) {
      const p = settle(conn.send(undefined, ['PING']));
      holdLoop(DEADLINE_MS * 2);
      expect(await p).toEqual({ ok: true, v: 'PONG' });
    }
  });

  it('resolves when the loop is held past its deadline after it was written (the answer waits unread)', async () => {
    for (let i = 0; i < 3; i++) {
      const p = settle(conn.send(undefined, ['ECHO', `x${i}`]));
      await new Promise((r) => setImmediate(r)); // node-redis writes it in this check phase
      await new Promise((r) => setImmediate(r));
      holdLoop(DEADLINE_MS * 2);
      expect(await p).toEqual({ ok: true, v: `x${i}` });
    }
  });

  it('resolves when the loop is held only a little past its deadline (5 to 25 ms late: the window a review found)', async () => {
    for (const over of [5, 10, 15, 20, 24, 5, 10, 15, 20, 24]) {
      const p = settle(conn.send(undefined, ['PING']));
      holdLoop(DEADLINE_MS + over);
      expect(await p, `held ${DEADLINE_MS + over} ms`).toEqual({ ok: true, v: 'PONG' });
    }
  });

  it('resolves many commands in flight across one stall', async () => {
    const ps = Array.from({ length: 50 }, (_, i) => settle(conn.send(undefined, ['ECHO', String(i)])));
    holdLoop(DEADLINE_MS * 2);
    const out = await Promise.all(ps);
    expect(out).toEqual(Array.from({ length: 50 }, (_, i) => ({ ok: true, v: String(i) })));
  });
});

describe.skipIf(skipOwn)('a Redis that does not answer', () => {
  let server: Awaited<ReturnType<typeof startRedisStandalone>>;
  let conn: RedisConnection;
  beforeAll(async () => {
    server = await startRedisStandalone();
    conn = await openConnection(parseRedisUrl(server.url), { connectTimeoutMs: 2000, commandTimeoutMs: DEADLINE_MS });
  });
  afterAll(async () => {
    server?.resume();
    await conn?.close();
    await server?.stop();
  });

  it('is still reported after the deadline, with or without a stall of this process', async () => {
    expect(await conn.send(undefined, ['PING'])).toBe('PONG');
    server.pause(); // SIGSTOP: the server keeps its connections and answers nothing
    try {
      const quiet = settle(conn.send(undefined, ['PING']));
      const started = performance.now();
      const r1 = await quiet;
      expect(r1.ok).toBe(false);
      expect((r1 as { e: unknown }).e).toBeInstanceOf(StoreUnavailable);
      expect(performance.now() - started).toBeGreaterThanOrEqual(DEADLINE_MS - 1);

      const stalled = settle(conn.send(undefined, ['PING']));
      holdLoop(DEADLINE_MS * 2);
      const r2 = await stalled;
      expect(r2.ok).toBe(false);
      expect((r2 as { e: unknown }).e).toBeInstanceOf(StoreUnavailable);
    } finally {
      server.resume();
    }
    expect(await conn.send(undefined, ['PING'])).toBe('PONG');
  });
});
