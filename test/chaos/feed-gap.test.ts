// Chaos: the feed of session ends breaks while the store still answers. A revocation made by
// another process during the gap must never be answered from this process's memory: the cache
// is flushed and reads the store until its own probes prove the feed delivers again.
//
// Two cases, on a redis-server the test starts, reached by process A through a TCP proxy:
// - A's subscriber connection is killed and cannot reconnect (a partition only it is on);
// - A's subscriber connection stays open but carries nothing (half-open; no event reports it),
//   which only the probes notice — within FEED_PROBE_TIMEOUT_MS, the documented window.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIFETIMES, issueSession, type Session } from '../../src/domain/session.ts';
import { SessionCache } from '../../src/sessions/session-cache.ts';
import { FEED_PROBE_EVERY_MS, FEED_PROBE_TIMEOUT_MS } from '../../src/store/redis/connection.ts';
import { openRedisStore, type RedisSessionStore } from '../../src/store/redis/redis-store.ts';
import { redisBinariesMissing, requireOrSkip, startRedisStandalone, testPrefix } from '../support/redis.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { execFileSync } from 'node:child_process';

const skip = requireOrSkip(redisBinariesMissing());

async function waitUntil(what: string, timeoutMs: number, check: () => boolean): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - started;
}

describe.skipIf(skip)('chaos: a gap in the feed of session ends (Redis)', () => {
  let server: Awaited<ReturnType<typeof startRedisStandalone>>;
  let proxy: TcpProxy;
  let a: RedisSessionStore; // the process whose feed breaks, through the proxy
  let b: RedisSessionStore; // another process, straight to Redis
  let cache: SessionCache;
  const prefix = testPrefix('feedgap');

  beforeAll(async () => {
    server = await startRedisStandalone();
    proxy = await startTcpProxy(server.port);
    a = await openRedisStore(`redis://127.0.0.1:${proxy.port}`, { prefix, commandTimeoutMs: 1000, connectTimeoutMs: 1000 });
    b = await openRedisStore(server.url, { prefix, commandTimeoutMs: 1000, connectTimeoutMs: 1000 });
    cache = new SessionCache(a);
    await cache.start(a);
  });
  afterAll(async () => {
    await cache?.stop();
    await a?.close();
    await b?.close();
    await proxy?.close();
    await server?.stop();
  });

  async function newSession(): Promise<Session> {
    const now = Date.now();
    const { session } = issueSession(
      { tenantId: 't-gap', userId: 'u-gap', kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password', parentHandle: null },
      now,
    );
    const r = await b.createSession(session, now);
    if (!r.ok) throw new Error('not created');
    return r.session;
  }

  /** Reads it twice; the second read must come from memory (the cache is live). */
  async function cached(s: Session): Promise<void> {
    expect(await cache.getValid(s.handle, Date.now())).not.toBeNull();
    const hits = cache.hits;
    expect(await cache.getValid(s.handle, Date.now())).not.toBeNull();
    expect(cache.hits).toBe(hits + 1);
  }

  it('the subscriber is cut and cannot reconnect: a revocation in the gap is never served as valid', async () => {
    const s = await newSession();
    await cached(s);
    // A's command connection and its lean connection for the hot calls (hot-connection.ts), then its subscriber.
    expect(proxy.connections.length).toBe(3);

    proxy.refuseNew(true);
    execFileSync('redis-cli', ['-p', String(server.port), 'CLIENT', 'KILL', 'TYPE', 'pubsub']);
    await waitUntil('the feed to be reported down', 5000, () => !cache.live);

    // The store still answers A; what it reads now must not be trusted later.
    expect(await cache.getValid(s.handle, Date.now())).not.toBeNull();
    expect(await b.revokeSession(s.handle, 'logout', Date.now())).toHaveLength(1);
    // The end was published while A could not hear it.
    expect(await cache.getValid(s.handle, Date.now())).toBeNull();
    const other = await newSession();
    const misses = cache.misses;
    expect(await cache.getValid(other.handle, Date.now())).not.toBeNull();
    expect(await cache.getValid(other.handle, Date.now())).not.toBeNull();
    expect(cache.misses).toBe(misses + 2); // strict while down: every check reads the store

    proxy.refuseNew(false);
    const upAfter = await waitUntil('the feed to be proven up again', 10_000, () => cache.live);
    process.stdout.write(`[chaos] feed up again ${upAfter} ms after reconnects were allowed\n`);
    expect(await cache.getValid(s.handle, Date.now())).toBeNull();
    await cached(other); // memory serves again
  });

  it('the subscriber goes silent without any connection event: the probes notice it', async () => {
    const s = await newSession();
    await waitUntil('the feed to be up', 10_000, () => cache.live);
    await cached(s);
    const subscriber = proxy.connections.length - 1; // the newest: the re-established subscriber
    // Freeze every connection but A's command connection (the first still open).
    const command = proxy.connections.findIndex((c) => !c.client.destroyed);
    expect(subscriber).not.toBe(command);
    proxy.freeze(subscriber, true);
    const frozenAt = Date.now();
    expect(await b.revokeSession(s.handle, 'logout', Date.now())).toHaveLength(1);
    // Until the probes time out, A cannot know: this is the documented window.
    const detectedAfter = await waitUntil('the probes to report the feed down', FEED_PROBE_TIMEOUT_MS + 5 * FEED_PROBE_EVERY_MS + 5000, () => !cache.live);
    process.stdout.write(`[chaos] silent subscriber detected after ${Date.now() - frozenAt} ms (waited ${detectedAfter} ms)\n`);
    expect(await cache.getValid(s.handle, Date.now())).toBeNull();

    proxy.freeze(subscriber, false); // the partition heals; what was held is delivered
    await waitUntil('the feed to be proven up again', 10_000, () => cache.live);
    expect(await cache.getValid(s.handle, Date.now())).toBeNull();
    const fresh = await newSession();
    await cached(fresh);
  });
});
