// The global indexes of the Redis sessions adapter, which live outside a user's hash slot and so
// outside its Lua scripts (keys.ts): the routes from a secret or token hash to a user's tag, the
// tenant listings and the due index (due-index.ts). They are written before a record and taken
// back when a create is refused; readers skip members without a record; the sweeper removes
// them with the record they lead to.

import type { Session } from '../../domain/session.ts';
import { expiresAt } from '../../domain/session.ts';
import { Conflict } from '../../domain/errors.ts';
import { num } from './codec.ts';
import { toStoreError } from './connection.ts';
import type { RedisContext } from './context.ts';
import { DueIndex } from './due-index.ts';

/** Members fetched per ZRANGE while listing, revoking a tenant or sweeping. */
export const PAGE = 200;

/** A listing position: the (createdAt, handle) of the last member seen. */
export interface ListPosition {
  createdAt: number;
  handle: string;
}

export class SessionIndex {
  private readonly ctx: RedisContext;
  readonly due: DueIndex;

  constructor(ctx: RedisContext) {
    this.ctx = ctx;
    this.due = new DueIndex(ctx);
  }

  /**
   * Writes an immutable route (hash -> tag). Returns whether this call wrote it. A route that
   * exists with another tag means two sessions share a secret hash: refuse.
   */
  async claimRoute(hash: string, tag: string): Promise<boolean> {
    const key = this.ctx.keys.route(hash);
    const field = this.ctx.keys.routeField(hash);
    if (Number(await this.ctx.send(key, ['HSETNX', key, field, tag])) === 1) {
      this.ctx.rememberRoute(hash, tag);
      return true;
    }
    const existing = await this.ctx.send(key, ['HGET', key, field]);
    if (existing !== null && existing !== tag) throw secretInUse();
    return false;
  }

  /** Removes routes (the sweeper's purge, or a write taking back the route it claimed for what it did not store). */
  async dropRoutes(hashes: readonly string[]): Promise<void> {
    const byKey = new Map<string, string[]>();
    for (const h of hashes) {
      this.ctx.forgetRoute(h);
      const key = this.ctx.keys.route(h);
      byKey.set(key, [...(byKey.get(key) ?? []), this.ctx.keys.routeField(h)]);
    }
    await Promise.all([...byKey].map(([key, fields]) => this.ctx.send(key, ['HDEL', key, ...fields])));
  }

  /**
   * The global index entries of a new session, written before its record (see keys.ts): secret
   * route, tenant listing and due index. Reports what this call added, so that a refusal takes
   * back exactly that.
   */
  async indexBeforeWrite(s: Session, tag: string): Promise<IndexWrites> {
    const tenantKey = this.ctx.keys.tenantSessions(s.tenantId);
    const [claim, t, d] = await Promise.all([
      this.claimRoute(s.secretHash, tag).then(
        (written) => ({ written, err: null }),
        (err: unknown) => ({ written: false, err: toStoreError(err) }),
      ),
      this.ctx.send(tenantKey, ['ZADD', tenantKey, 'NX', num(s.createdAt), s.handle]),
      this.due.add('NX', [{ handle: s.handle, at: expiresAt(s) }]),
    ]);
    const writes: IndexWrites = { route: claim.written, tenant: Number(t) === 1, due: d === 1 };
    if (claim.err !== null) {
      await this.undoIndex(s, writes);
      throw claim.err;
    }
    return writes;
  }

  async undoIndex(s: Session, w: IndexWrites): Promise<void> {
    const tenantKey = this.ctx.keys.tenantSessions(s.tenantId);
    await Promise.all([
      w.tenant ? this.ctx.send(tenantKey, ['ZREM', tenantKey, s.handle]) : null,
      w.due ? this.due.settle([{ op: 'remove', handle: s.handle }]) : null,
      w.route ? this.dropRoutes([s.secretHash]) : null,
    ]);
  }

  /** Takes purged sessions out of their tenant listings. */
  async dropFromListings(entries: ReadonlyArray<{ tenantId: string; handle: string }>): Promise<void> {
    const byTenant = new Map<string, string[]>();
    for (const { tenantId, handle } of entries) byTenant.set(tenantId, [...(byTenant.get(tenantId) ?? []), handle]);
    await Promise.all(
      [...byTenant].map(([tenantId, handles]) => {
        const key = this.ctx.keys.tenantSessions(tenantId);
        return this.ctx.send(key, ['ZREM', key, ...handles]);
      }),
    );
  }

  /**
   * The due index must never hold a score later than the real expiry, or the sweeper would
   * find the session late. A touch usually slides the expiry forward (the stale, earlier score is
   * fixed when the sweeper looks); only when it moved earlier is the score lowered here. Null
   * when nothing is to be written (the usual case: a caller on a hot path then awaits nothing).
   */
  expiryMayHaveMovedEarlier(s: Session, previousIdle: string): Promise<unknown> | null {
    const before = expiresAt({ idleExpiresAt: previousIdle === '' ? null : Number(previousIdle), absoluteExpiresAt: s.absoluteExpiresAt });
    const after = expiresAt(s);
    return after < before ? this.due.add('LT', [{ handle: s.handle, at: after }]) : null;
  }

  /**
   * The members of a zset in (score, member) order after `after`, in pages. Ties on the score are
   * ordered by member, as Redis orders them, so (createdAt, handle) is a total order.
   */
  async *zsetPages(key: string, after: ListPosition | null): AsyncGenerator<Array<{ handle: string; score: number }>> {
    let min = after === null ? '-inf' : num(after.createdAt);
    let offset = 0;
    for (;;) {
      const reply = (await this.ctx.send(key, ['ZRANGEBYSCORE', key, min, '+inf', 'WITHSCORES', 'LIMIT', String(offset), String(PAGE)], true)) as string[];
      const page: Array<{ handle: string; score: number }> = [];
      for (let i = 0; i + 1 < reply.length; i += 2) {
        const handle = reply[i] as string;
        const score = Number(reply[i + 1]);
        if (after !== null && (score < after.createdAt || (score === after.createdAt && handle <= after.handle))) continue;
        page.push({ handle, score });
      }
      const fetched = reply.length / 2;
      if (page.length > 0) yield page;
      if (fetched < PAGE) return;
      // Continue from the last score; skip what was already seen at that score.
      const lastScore = Number(reply[reply.length - 1]);
      let sameScore = 0;
      for (let i = reply.length - 1; i > 0 && Number(reply[i]) === lastScore; i -= 2) sameScore++;
      offset = num(lastScore) === min ? offset + fetched : sameScore;
      min = num(lastScore);
    }
  }
}

export interface IndexWrites {
  route: boolean;
  tenant: boolean;
  due: boolean;
}

export function secretInUse(): Conflict {
  return new Conflict('session_exists', 'A session with this secret already exists.');
}
