// The Redis adapter of the meta aggregate (meta-port.ts).

import type { MetaStore } from '../meta-port.ts';
import type { RedisContext } from './context.ts';

export class RedisMeta implements MetaStore {
  private readonly ctx: RedisContext;

  constructor(ctx: RedisContext) {
    this.ctx = ctx;
  }

  async getMeta(key: string): Promise<unknown> {
    return this.ctx.guard(async () => {
      const k = this.ctx.keys.meta(key);
      const raw = (await this.ctx.send(k, ['GET', k], true)) as string | null;
      return raw === null ? null : (JSON.parse(raw) as unknown);
    });
  }

  async putMetaIfAbsent(key: string, value: unknown): Promise<unknown> {
    return this.ctx.guard(async () => {
      const k = this.ctx.keys.meta(key);
      // SET NX ... GET (Redis 7) answers the earlier value in the same step, or nil when ours was set.
      const earlier = (await this.ctx.send(k, ['SET', k, JSON.stringify(value), 'NX', 'GET'])) as string | null;
      return earlier === null ? value : (JSON.parse(earlier) as unknown);
    });
  }

  async putMeta(key: string, value: unknown): Promise<void> {
    return this.ctx.guard(async () => {
      const k = this.ctx.keys.meta(key);
      await this.ctx.send(k, ['SET', k, JSON.stringify(value)]);
    });
  }
}
