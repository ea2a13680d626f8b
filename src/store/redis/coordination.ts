// The Redis adapter of Coordination (coordination-port.ts): counters as small hashes with a TTL,
// and the feed of session ends as the pub/sub channel `P ends` that every script ending sessions
// publishes on (reconnects call onReset: messages may have been lost meanwhile), and the channel
// between the processes as the pub/sub channel `P peers` (classic PUBLISH: in a Cluster it reaches
// every node, so a subscriber anywhere hears it; through Sentinel it goes to the master).

import { checkPeerMessages, type Coordination, type CounterState, type FeedChange } from '../coordination-port.ts';
import { num } from './codec.ts';
import type { RedisContext } from './context.ts';
import { evalScript, luaScript } from './lua.ts';

/**
 * hit counter (fixed window, not a slot script: one key). Race closed: concurrent failed logins
 * from several processes each reading the count and writing count + 1 (lost updates would let an
 * attacker past the throttle), and two of them both opening a fresh window.
 * KEYS[1] counter key; ARGV[1] now, ARGV[2] end of a window opened now, ARGV[3] window ms.
 * Reply: {count, resetAt}
 */
const HIT_COUNTER = luaScript(`-- tessera:hit-counter
local by = tonumber(ARGV[4] or '1')
local v = redis.call('HMGET', KEYS[1], 'count', 'resetAt')
if not v[1] or tonumber(ARGV[1]) >= tonumber(v[2]) then
  local first = math.max(by, 0)
  redis.call('HSET', KEYS[1], 'count', tostring(first), 'resetAt', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return { first, ARGV[2] }
end
local n = redis.call('HINCRBY', KEYS[1], 'count', by)
if n < 0 then
  redis.call('HSET', KEYS[1], 'count', '0')
  n = 0
end
return { n, v[2] }
`);

export class RedisCoordination implements Coordination {
  private readonly ctx: RedisContext;

  constructor(ctx: RedisContext) {
    this.ctx = ctx;
  }

  async hitCounter(key: string, windowMs: number, now: number, by = 1): Promise<CounterState> {
    return this.ctx.guard(async () => {
      const k = this.ctx.keys.counter(key);
      const window = Math.max(1, Math.ceil(windowMs));
      const args = [num(now), num(now + window), String(window), String(Math.trunc(by))];
      const [count, resetAt] = (await evalScript(this.ctx.conn, HIT_COUNTER, k, args)) as [number, string];
      return { count: Number(count), resetAt: Number(resetAt) };
    });
  }

  async peekCounter(key: string, now: number): Promise<CounterState | null> {
    return this.ctx.guard(async () => {
      const k = this.ctx.keys.counter(key);
      const [count, resetAt] = (await this.ctx.send(k, ['HMGET', k, 'count', 'resetAt'], true)) as [string | null, string | null];
      if (count === null || resetAt === null || now >= Number(resetAt)) return null;
      return { count: Number(count), resetAt: Number(resetAt) };
    });
  }

  async resetCounter(key: string): Promise<void> {
    return this.ctx.guard(async () => {
      const k = this.ctx.keys.counter(key);
      await this.ctx.send(k, ['DEL', k]);
    });
  }

  async subscribeSessionEnds(listener: (handles: string[]) => void, onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void> }> {
    return this.ctx.guard(() =>
      this.ctx.conn.subscribe(
        this.ctx.keys.endsChannel(),
        (message) => {
          const handles = message.split(' ').filter((h) => h !== '');
          if (handles.length > 0) listener(handles);
        },
        onReset,
      ),
    );
  }

  /**
   * One PUBLISH per message, sent back to back (node-redis pipelines them). PUBLISH answers once
   * the message is in the output buffer of every subscriber of that server (in a Cluster, the
   * other nodes get it over the cluster bus).
   */
  async publishToPeers(messages: readonly string[]): Promise<void> {
    checkPeerMessages(messages);
    if (messages.length === 0) return;
    const channel = this.ctx.keys.peersChannel();
    await this.ctx.guard(() => Promise.all(messages.map((m) => this.ctx.send(channel, ['PUBLISH', channel, m]))));
  }

  async subscribePeers(listener: (message: string) => void, onReset: (change: FeedChange) => void): Promise<{ close(): Promise<void> }> {
    return this.ctx.guard(() => this.ctx.conn.subscribe(this.ctx.keys.peersChannel(), listener, onReset));
  }
}
