// The global indexes of the Redis sessions adapter, which live outside a user's hash slot and so
// outside its Lua scripts (keys.ts): the routes from a secret or token hash to a user's tag, the
// tenant listings, the expiry index and the garbage list of the listings. They are written before
// a record and taken back when a create is refused; readers skip members without a record.

import type { Session } from '../../domain/session.ts';
import { expiresAt } from '../../domain/session.ts';
import { Conflict } from '../../domain/errors.ts';
import { num } from './codec.ts';
import { toStoreError } from './connection.ts';
import type { RedisContext } from './context.ts';

/** Members fetched per ZRANGE while listing, revoking a tenant or sweeping. */
export const PAGE = 200;

/** A listing position: the (createdAt, handle) of the last member seen. */
export interface ListPosition {
  createdAt: number;
  handle: string;
}

export class SessionIndex {
  private readonly ctx: RedisContext;

  constructor(ctx: RedisContext) {
    this.ctx = ctx;
  }

  /**
   * Writes an immutable routing entry (hash -> tag). Returns whether this call wrote it. An entry
   * that exists with another tag means two sessions share a secret hash: refuse.
   */
  async claimRoute(routeKey: string, tag: string, ttl: number): Promise<boolean> {
    const set = await this.ctx.send(routeKey, ['SET', routeKey, tag, 'NX', 'PX', String(ttl)]);
    if (set !== null) return true;
    const existing = await this.ctx.send(routeKey, ['GET', routeKey]);
    if (existing !== null && existing !== tag) throw secretInUse();
    return false;
  }

  /**
   * The global index entries of a new session, written before its record (see keys.ts): secret
   * route, tenant listing, expiry index, and the entry that later takes it out of the tenant
   * listing. Reports what this call added, so that a refusal takes back exactly that.
   */
  async indexBeforeWrite(s: Session, tag: string, ttl: number): Promise<IndexWrites> {
    const tenantKey = this.ctx.keys.tenantSessions(s.tenantId);
    const exp = this.ctx.keys.expiry();
    const gc = this.ctx.keys.listingGc();
    const [claim, added] = await Promise.all([
      this.claimRoute(this.ctx.keys.secretRoute(s.secretHash), tag, ttl).then(
        (written) => ({ written, err: null }),
        (err: unknown) => ({ written: false, err: toStoreError(err) }),
      ),
      Promise.all([
        this.ctx.send(tenantKey, ['ZADD', tenantKey, 'NX', num(s.createdAt), s.handle]),
        this.ctx.send(exp, ['ZADD', exp, 'NX', num(expiresAt(s)), s.handle]),
        this.ctx.send(gc, ['ZADD', gc, 'NX', num(s.absoluteExpiresAt + this.ctx.retentionMs), gcMember(s)]),
      ]),
    ]);
    const [t, e, g] = added as [number, number, number];
    const writes: IndexWrites = { route: claim.written, tenant: t === 1, expiry: e === 1, gc: g === 1 };
    if (claim.err !== null) {
      await this.undoIndex(s, writes);
      throw claim.err;
    }
    return writes;
  }

  async undoIndex(s: Session, w: IndexWrites): Promise<void> {
    const tenantKey = this.ctx.keys.tenantSessions(s.tenantId);
    const exp = this.ctx.keys.expiry();
    const gc = this.ctx.keys.listingGc();
    const route = this.ctx.keys.secretRoute(s.secretHash);
    await Promise.all([
      w.tenant ? this.ctx.send(tenantKey, ['ZREM', tenantKey, s.handle]) : null,
      w.expiry ? this.ctx.send(exp, ['ZREM', exp, s.handle]) : null,
      w.gc ? this.ctx.send(gc, ['ZREM', gc, gcMember(s)]) : null,
      w.route ? this.ctx.send(route, ['DEL', route]) : null,
    ]);
  }

  /**
   * Takes sessions whose records have outlived their retention out of the tenant listings (the
   * only index without a TTL of its own), at most `max` per call. Part of sweepExpired.
   */
  async collectListingGarbage(now: number, max: number): Promise<void> {
    const gc = this.ctx.keys.listingGc();
    const due = (await this.ctx.send(gc, ['ZRANGEBYSCORE', gc, '-inf', num(now), 'LIMIT', '0', String(max)], true)) as string[];
    if (due.length === 0) return;
    const byTenant = new Map<string, string[]>();
    for (const member of due) {
      const [tenantId, handle] = member.split(' ') as [string, string];
      byTenant.set(tenantId, [...(byTenant.get(tenantId) ?? []), handle]);
    }
    await Promise.all(
      [...byTenant].map(([tenantId, handles]) => {
        const key = this.ctx.keys.tenantSessions(tenantId);
        return this.ctx.send(key, ['ZREM', key, ...handles]);
      }),
    );
    await this.ctx.send(gc, ['ZREM', gc, ...due]);
  }

  /** Ended sessions need no sweeping; dropping them keeps the index small (best effort). */
  async forgetExpiries(ended: Session[]): Promise<void> {
    if (ended.length === 0) return;
    const exp = this.ctx.keys.expiry();
    await this.ctx.send(exp, ['ZREM', exp, ...ended.map((s) => s.handle)]).catch(() => undefined);
  }

  /**
   * The expiry index must never hold a score later than the real expiry, or the sweeper would
   * find the session late. A touch usually slides the expiry forward (the stale, earlier score is
   * fixed when the sweeper looks); only when it moved earlier is the score lowered here.
   */
  async expiryMayHaveMovedEarlier(s: Session, previousIdle: string): Promise<void> {
    const before = expiresAt({ idleExpiresAt: previousIdle === '' ? null : Number(previousIdle), absoluteExpiresAt: s.absoluteExpiresAt });
    const after = expiresAt(s);
    if (after < before) {
      const exp = this.ctx.keys.expiry();
      await this.ctx.send(exp, ['ZADD', exp, 'LT', num(after), s.handle]);
    }
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

interface IndexWrites {
  route: boolean;
  tenant: boolean;
  expiry: boolean;
  gc: boolean;
}

/** Tenant ids and handles contain no spaces (TENANT_ID_PATTERN, base64url). */
function gcMember(s: Session): string {
  return `${s.tenantId} ${s.handle}`;
}

export function secretInUse(): Conflict {
  return new Conflict('session_exists', 'A session with this secret already exists.');
}
