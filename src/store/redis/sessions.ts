// The Redis adapter of the sessions aggregate (sessions-port.ts): sessions here, their refresh
// tokens in refresh-tokens.ts, the global indexes in session-index.ts and due-index.ts, the sweep
// in sweep.ts, the Lua scripts in scripts.ts (prelude and record layout: slot-lua.ts). All
// sessions of one user are one value in the Cluster hash slot of the hash tag `{userTag}`; a
// handle carries that tag, so an operation by handle goes straight to its slot, and every
// operation on a user's sessions is one Lua script there (atomic across processes). Every
// script that ends sessions publishes their handles on `P ends` in the same atomic step.

import { Conflict } from '../../domain/errors.ts';
import { tagOfHandle, userTag } from '../../domain/secrets.ts';
import { effectiveStatus } from '../../domain/session.ts';
import type { RevokeReason, Session } from '../../domain/session.ts';
import { checkLimit, decodeCursor, encodeCursor, type Page } from '../page.ts';
import {
  SESSION_LIST_MAX,
  checkRedeemTarget,
  lookUpAndRedeemInSteps,
  type CreateLimit,
  type CreateSessionResult,
  type ListSessionsQuery,
  type LookUpAndRedeemResult,
  type RedeemPlan,
  type RedeemResult,
  type RedeemTarget,
  type RefreshToken,
  type RenewResult,
  type RotateResult,
  type SessionsStore,
  type SessionWithUser,
} from '../sessions-port.ts';
import { mustSession, num, packedFromReply, patchToFields, pushPatchFields, sessionFromReply, sessionsFromReply, sessionToFields } from './codec.ts';
import type { RedisContext } from './context.ts';
import { packedHash } from './lua-codec.ts';
import { RedisRefreshTokens, userOf } from './refresh-tokens.ts';
import { BY_SECRET, BY_SECRET_WITH_USER, CONSUME, CREATE, GET, LIST, LOOK_UP_REDEEM, REDEEM, RENEW, REVOKE, REVOKE_HANDLES, REVOKE_USER, TOUCH, UPDATE_DATA } from './scripts.ts';
import { secretInUse, SessionIndex, type ListPosition } from './session-index.ts';
import { sweepExpired } from './sweep.ts';

export class RedisSessions implements SessionsStore {
  private readonly ctx: RedisContext;
  private readonly index: SessionIndex;
  private readonly tokens: RedisRefreshTokens;

  constructor(ctx: RedisContext) {
    this.ctx = ctx;
    this.index = new SessionIndex(ctx);
    this.tokens = new RedisRefreshTokens(ctx, this.index);
  }

  async createSession(session: Session, now: number, limit?: CreateLimit): Promise<CreateSessionResult> {
    return this.ctx.guard(async () => {
      const tag = this.ctx.tagOfSession(session);
      if (session.parentHandle !== null && tagOfHandle(session.parentHandle) !== tag) throw parentInvalid();
      const pre = await this.index.indexBeforeWrite(session, tag);
      const reply = (await this.ctx.runSlot(
        CREATE,
        tag,
        now,
        [session.handle, limit?.kind ?? '', limit ? String(limit.max) : '0', limit?.policy ?? '', String(this.ctx.liveMax), ...sessionToFields(session)],
        this.ctx.keyTtl(session.absoluteExpiresAt, now),
      )) as unknown[];
      const outcome = reply[0];
      if (outcome === 'ok') {
        const evicted = sessionsFromReply(reply[2]);
        if (evicted.length > 0) await this.ctx.replicated([tag]);
        return { ok: true, session: mustSession(reply[1]), evicted };
      }
      // Refused: take back the index entries this call added (never those of an existing session).
      await this.index.undoIndex(session, pre);
      if (outcome === 'exists') throw new Conflict('session_exists', `A session with the handle ${session.handle} already exists.`);
      if (outcome === 'limit') return { ok: false, reason: 'limit_reached', active: Number(reply[1]) };
      if (outcome === 'secret_exists') throw secretInUse();
      if (outcome === 'parent_invalid') throw parentInvalid();
      throw new Error(`unexpected reply from the create script: ${String(outcome)}`);
    });
  }

  async getSessionByHandle(handle: string): Promise<Session | null> {
    return this.ctx.guard(async () => {
      const tag = tagOfHandle(handle);
      if (tag === null) return null;
      const reply = (await this.ctx.runSlot(GET, tag, 0, [handle])) as unknown[];
      const s = sessionFromReply(reply[0]);
      return s !== null && s.handle === handle ? s : null;
    });
  }

  async getSessionBySecretHash(secretHash: string): Promise<Session | null> {
    return this.ctx.guard(async () => {
      const tag = await this.ctx.route(secretHash);
      if (tag === null) return null;
      const s = sessionFromReply(await this.ctx.runSlot(BY_SECRET, tag, 0, [secretHash]));
      return s !== null && s.secretHash === secretHash ? s : null;
    });
  }

  /**
   * One command on standalone and Sentinel (the script reads the secret's route itself when this
   * process does not know it: RedisContext.runRouted); in a Cluster, the route's HGET first when
   * it is not known.
   */
  async getSessionWithUserBySecretHash(secretHash: string): Promise<SessionWithUser | null> {
    return this.ctx.guard(async () => {
      const reply = await this.ctx.runRouted(BY_SECRET_WITH_USER, secretHash, 0, []);
      if (!Array.isArray(reply)) return null;
      const { session } = packedFromReply(reply[0]);
      if (session.secretHash !== secretHash) return null;
      return { session, user: session.userId === null ? null : userOf(reply[1], session) };
    });
  }

  async touchSession(handle: string, now: number, idleExpiresAt: number | null): Promise<Session | null> {
    return this.ctx.guard(async () => {
      const tag = tagOfHandle(handle);
      if (tag === null) return null;
      const reply = (await this.ctx.runSlot(TOUCH, tag, now, [handle, idleExpiresAt === null ? '' : num(idleExpiresAt)])) as
        | [unknown, string]
        | null;
      if (reply === null) return null;
      const s = mustSession(reply[0]);
      await this.index.expiryMayHaveMovedEarlier(s, reply[1]);
      return s;
    });
  }

  async updateSessionData(handle: string, patch: Record<string, unknown>, now: number): Promise<Session | null> {
    return this.ctx.guard(async () => {
      const tag = tagOfHandle(handle);
      if (tag === null) return null;
      const reply = await this.ctx.runSlot(UPDATE_DATA, tag, now, [handle, ...patchToFields(patch)]);
      return reply === null ? null : mustSession(reply);
    });
  }

  async revokeSession(handle: string, reason: RevokeReason, now: number): Promise<Session[]> {
    return this.ctx.guard(async () => {
      const tag = tagOfHandle(handle);
      if (tag === null) return [];
      const revoked = sessionsFromReply(await this.ctx.runSlot(REVOKE, tag, now, [handle, reason]));
      await this.ctx.replicated([tag]);
      return revoked;
    });
  }

  async revokeUserSessions(
    tenantId: string,
    userId: string,
    reason: RevokeReason,
    now: number,
    opts?: { exceptHandle?: string },
  ): Promise<Session[]> {
    return this.ctx.guard(async () => {
      const tag = userTag(tenantId, userId);
      const revoked = sessionsFromReply(
        await this.ctx.runSlot(REVOKE_USER, tag, now, [tenantId, userId, reason, opts?.exceptHandle ?? '']),
      );
      await this.ctx.replicated([tag]);
      return revoked;
    });
  }

  async revokeTenantSessions(tenantId: string, reason: RevokeReason, now: number): Promise<Session[]> {
    return this.ctx.guard(async () => {
      const out: Session[] = [];
      for await (const page of this.index.zsetPages(this.ctx.keys.tenantSessions(tenantId), null)) {
        // One script per slot, handles in createdAt order so parents come before their children.
        const byTag = new Map<string, string[]>();
        for (const { handle } of page) {
          const tag = tagOfHandle(handle);
          if (tag === null) continue;
          const list = byTag.get(tag) ?? [];
          list.push(handle);
          byTag.set(tag, list);
        }
        const replies = await Promise.all(
          [...byTag].map(([tag, handles]) => this.ctx.runSlot(REVOKE_HANDLES, tag, now, [tenantId, reason, ...handles])),
        );
        const revoked = replies.flatMap(sessionsFromReply);
        await this.ctx.replicated([...byTag.keys()]);
        out.push(...revoked);
      }
      return out;
    });
  }

  async listSessions(query: ListSessionsQuery): Promise<Page<Session>> {
    return this.ctx.guard(async () => {
      const limit = query.limit;
      checkLimit(limit, SESSION_LIST_MAX);
      const position = decodeCursor(query.cursor);
      const after: ListPosition | null = position === null ? null : { createdAt: position.createdAt, handle: position.key };
      const wanted = (s: Session): boolean =>
        s.tenantId === query.tenantId &&
        (query.userId === undefined || s.userId === query.userId) &&
        (query.kind === undefined || s.kind === query.kind) &&
        (query.status === undefined || effectiveStatus(s, query.now) === query.status);
      const items: Session[] = [];
      let more = false;
      for await (const page of query.userId !== undefined ? this.userPages(query.tenantId, query.userId, after, query.status === 'active') : this.tenantPages(query, after)) {
        for (const s of page) {
          if (!wanted(s)) continue;
          if (items.length === limit) {
            more = true;
            break;
          }
          items.push(s);
        }
        if (more) break;
      }
      const last = items[items.length - 1];
      return {
        items,
        nextCursor: more && last ? encodeCursor({ createdAt: last.createdAt, key: last.handle }) : null,
      };
    });
  }

  /**
   * A user's sessions after `after` in (createdAt, handle) order, read once: only the live ones
   * for a listing of active sessions (the screening of every new session makes one), else the
   * ended ones too (slot-lua.ts).
   */
  private async *userPages(tenantId: string, userId: string, after: ListPosition | null, liveOnly: boolean): AsyncGenerator<Session[]> {
    const all = sessionsFromReply(await this.ctx.runSlot(LIST, userTag(tenantId, userId), 0, [liveOnly ? 'live' : 'all']));
    all.sort((a, b) => a.createdAt - b.createdAt || (a.handle < b.handle ? -1 : a.handle > b.handle ? 1 : 0));
    yield all.filter((s) => after === null || s.createdAt > after.createdAt || (s.createdAt === after.createdAt && s.handle > after.handle));
  }

  /** A tenant's sessions after `after` in (createdAt, handle) order, from its listing, page by page. */
  private async *tenantPages(query: ListSessionsQuery, after: ListPosition | null): AsyncGenerator<Session[]> {
    const zkey = this.ctx.keys.tenantSessions(query.tenantId);
    for await (const page of this.index.zsetPages(zkey, after)) {
      const byTag = new Map<string, string[]>();
      for (const { handle } of page) {
        const tag = tagOfHandle(handle);
        if (tag !== null) byTag.set(tag, [...(byTag.get(tag) ?? []), handle]);
      }
      const found = new Map<string, Session>();
      await Promise.all(
        [...byTag].map(async ([tag, handles]) => {
          for (const s of sessionsFromReply(await this.ctx.runSlot(GET, tag, 0, handles))) found.set(s.handle, s);
        }),
      );
      // Gone after its retention (or a create still in flight, or refused): skip it, and forget
      // it once it is certainly not in flight any more.
      const stale = page.filter((e) => !found.has(e.handle) && e.score < query.now - this.ctx.retentionMs).map((e) => e.handle);
      if (stale.length > 0) await this.ctx.send(zkey, ['ZREM', zkey, ...stale]);
      yield page.flatMap((e) => found.get(e.handle) ?? []);
    }
  }

  async consumeSession(secretHash: string, now: number): Promise<Session | null> {
    return this.ctx.guard(async () => {
      const tag = await this.ctx.route(secretHash);
      if (tag === null) return null;
      const reply = await this.ctx.runSlot(CONSUME, tag, now, [secretHash]);
      return reply === null ? null : mustSession(reply);
    });
  }

  /**
   * One command on standalone and Sentinel: the redeem script reads the secret's route itself
   * when this process does not know it (RedisContext.runRouted) and writes the refresh token's
   * route, before the token it leads to, only when it redeems. In a Cluster (the routes live in
   * other slots) the secret's route is read first when not known, and the refresh token's route
   * written first, by its own command, and taken back unless the token was stored.
   */
  async redeemSession(secretHash: string, target: RedeemTarget, now: number): Promise<RedeemResult> {
    checkRedeemTarget(target);
    return this.ctx.guard(async () => {
      const token = target.refreshToken;
      const inScript = this.ctx.conn.kind !== 'redis-cluster';
      let routeWritten = false;
      if (!inScript) {
        const tag = await this.ctx.route(secretHash);
        if (tag === null) return { outcome: 'not_consumed' };
        // The target must be in the secret's slot (the same user): another slot's handle is not
        // found there and counts as unusable.
        routeWritten = token !== null && tagOfHandle(target.handle) === tag ? await this.index.claimRoute(token.tokenHash, tag) : false;
      }
      const routed = inScript && token !== null;
      const args: Array<string | Buffer> = [
        target.handle,
        target.idleExpiresAt === null ? '' : num(target.idleExpiresAt),
        token === null ? '' : packedHash(token.tokenHash),
        token === null ? '' : num(token.createdAt),
        routed ? this.ctx.keys.route(token.tokenHash) : '',
        routed ? this.ctx.keys.routeField(token.tokenHash) : '',
        '',
      ];
      // The expected entries' count, then they, then the patch (patchToFields's pairs).
      const expectedAt = args.length - 1;
      args[expectedAt] = String(pushPatchFields(args, target.expectData));
      pushPatchFields(args, target.patch);
      const reply = (await this.ctx.runRouted(REDEEM, secretHash, now, args).catch(async (err: unknown) => {
        if (routeWritten && token !== null) await this.index.dropRoutes([token.tokenHash]).catch(() => undefined);
        throw err;
      })) as unknown[] | null;
      if (reply === null) return { outcome: 'not_consumed' };
      // The reply's strings come as Buffers (the script's reply is binary: a packed record).
      const outcome = String(reply[0]);
      if (outcome !== 'redeemed' && routeWritten && token !== null) await this.index.dropRoutes([token.tokenHash]);
      switch (outcome) {
        case 'redeemed': {
          const { session } = packedFromReply(reply[1]);
          // The target was found in the secret's slot: its handle names that slot (no need to
          // check it against the user's tag, a SHA-256, as tagOfSession does).
          const tag = tagOfHandle(session.handle) ?? this.ctx.tagOfSession(session);
          if (inScript && token !== null) this.ctx.rememberRoute(token.tokenHash, tag);
          await this.index.expiryMayHaveMovedEarlier(session, String(reply[2]));
          // An end (the consumption) and a session's first credential: as a rotation, kept by a failover.
          await this.ctx.replicated([tag]);
          return { outcome: 'redeemed', session };
        }
        default:
          return redeemRefusal(outcome, reply, 'redeem');
      }
    });
  }

  /**
   * One command on standalone and Sentinel (LOOK_UP_REDEEM, called by route when this process does
   * not know the secret's; it writes the refresh token's route itself, as the redeem script). In a
   * Cluster the routes live in other slots: the two steps, as there before.
   */
  async lookUpAndRedeem(secretHash: string, plan: RedeemPlan, now: number): Promise<LookUpAndRedeemResult> {
    if (this.ctx.conn.kind === 'redis-cluster') return lookUpAndRedeemInSteps(this, secretHash, plan, now);
    return this.ctx.guard(async () => {
      const token = plan.refreshToken;
      // Each group of data entries (patchToFields's pairs) after its count, pushed in place.
      const args: Array<string | Buffer> = [String(plan.tenants.length)];
      for (const t of plan.tenants) args.push(t.tenantId, t.idleExpiresAt === null ? '' : num(t.idleExpiresAt));
      args.push(plan.kind, plan.targetField, '');
      const seenAt = args.length - 1;
      args[seenAt] = String(pushPatchFields(args, plan.expectSeen));
      if (token === null) args.push('', '', '', '', '');
      else args.push(packedHash(token.tokenHash), num(token.createdAt), this.ctx.keys.route(token.tokenHash), this.ctx.keys.routeField(token.tokenHash), '');
      const expectedAt = args.length - 1;
      args[expectedAt] = String(pushPatchFields(args, plan.target.expectData));
      pushPatchFields(args, plan.target.patch);
      const reply = (await this.ctx.runRouted(LOOK_UP_REDEEM, secretHash, now, args)) as unknown[] | null | false;
      if (!Array.isArray(reply)) return { outcome: 'looked', found: null };
      // The reply's strings come as Buffers (the script's reply is binary: packed records).
      const outcome = String(reply[0]);
      switch (outcome) {
        case 'looked': {
          const { session } = packedFromReply(reply[1]);
          if (session.secretHash !== secretHash) return { outcome: 'looked', found: null };
          return { outcome: 'looked', found: { session, user: session.userId === null ? null : userOf(reply[2], session) } };
        }
        case 'redeemed': {
          const { session } = packedFromReply(reply[1]);
          const user = userOf(reply[3], session);
          // The script checked the user as userOf does (planHolds); a disagreement is a bug.
          if (user === null) throw new Error('lookUpAndRedeem: the script redeemed for a user that is not the session’s');
          // The target was found in the secret's slot: its handle names that slot.
          const tag = tagOfHandle(session.handle) ?? this.ctx.tagOfSession(session);
          if (token !== null) this.ctx.rememberRoute(token.tokenHash, tag);
          // Each awaited only when it has something to do, as a rotation's (refresh-tokens.ts): the
          // activated session's expiry usually moves later, and most deployments wait for no replica.
          const moved = this.index.expiryMayHaveMovedEarlier(session, String(reply[2]));
          if (moved !== null) await moved;
          // An end (the consumption) and a session's first credential: as a rotation, kept by a failover.
          if (this.ctx.waitsForReplicas) await this.ctx.replicated([tag]);
          return { outcome: 'redeemed', session, user };
        }
        default:
          return redeemRefusal(outcome, reply, 'look-up-and-redeem');
      }
    });
  }

  async renewAfterExpiry(predecessorHandle: string, successor: Session, now: number, limit?: CreateLimit): Promise<RenewResult> {
    return this.ctx.guard(async () => {
      const tag = tagOfHandle(predecessorHandle);
      if (tag === null) return { outcome: 'missing' };
      if (this.ctx.tagOfSession(successor) !== tag) {
        throw new Error('renewAfterExpiry: the successor must belong to the predecessor’s user (its handle carries another routing tag)');
      }
      if (successor.parentHandle !== null && tagOfHandle(successor.parentHandle) !== tag) throw parentInvalid();
      const pre = await this.index.indexBeforeWrite(successor, tag);
      const reply = (await this.ctx.runSlot(
        RENEW,
        tag,
        now,
        [predecessorHandle, limit?.kind ?? '', limit ? String(limit.max) : '0', limit?.policy ?? '', String(this.ctx.liveMax), ...sessionToFields(successor)],
        this.ctx.keyTtl(successor.absoluteExpiresAt, now),
      )) as unknown[];
      const outcome = reply[0];
      const decide = (): RenewResult => {
        switch (outcome) {
          case 'renewed':
            return { outcome: 'renewed', session: mustSession(reply[1]), created: Number(reply[2]) === 1, evicted: sessionsFromReply(reply[3]) };
          case 'limit':
            return { outcome: 'limit_reached', active: Number(reply[1]) };
          case 'still_valid':
            return { outcome: 'still_valid', session: mustSession(reply[1]) };
          case 'revoked':
            return { outcome: 'revoked', session: mustSession(reply[1]) };
          case 'missing':
            return { outcome: 'missing' };
          case 'exists':
            throw new Conflict('session_exists', `A session with the handle ${successor.handle} already exists.`);
          case 'secret_exists':
            throw secretInUse();
          case 'parent_invalid':
            throw parentInvalid();
          case 'mismatch':
            throw new Error('renewAfterExpiry: the successor must have the predecessor’s tenant and user');
          default:
            throw new Error(`unexpected reply from the renew script: ${String(outcome)}`);
        }
      };
      let result: RenewResult;
      try {
        result = decide();
      } catch (err) {
        await this.index.undoIndex(successor, pre);
        throw err;
      }
      // Another caller's successor won (or none was needed): take back this call's index entries.
      // The secret route stays when a successor exists: concurrent renewals agree on the secret,
      // so it may be the winner's.
      if (!(result.outcome === 'renewed' && result.session.handle === successor.handle)) {
        await this.index.undoIndex(successor, { ...pre, route: pre.route && result.outcome !== 'renewed' });
      }
      if (result.outcome === 'renewed') {
        if (result.evicted.length > 0) await this.ctx.replicated([tagOfHandle(successor.handle) ?? '']);
      }
      return result;
    });
  }

  // ---------------------------------------------------------------- refresh tokens (refresh-tokens.ts)

  addRefreshToken(token: RefreshToken): Promise<void> {
    return this.tokens.addRefreshToken(token);
  }

  rotateRefreshToken(
    presentedHash: string,
    successorHash: string,
    now: number,
    graceMs: number,
    idleExpiresAt: number | null,
  ): Promise<RotateResult> {
    return this.tokens.rotateRefreshToken(presentedHash, successorHash, now, graceMs, idleExpiresAt);
  }

  getRefreshToken(tokenHash: string): Promise<RefreshToken | null> {
    return this.tokens.getRefreshToken(tokenHash);
  }

  // ---------------------------------------------------------------- expiry

  sweepExpired(now: number, max: number): Promise<Session[]> {
    return this.ctx.guard(() => sweepExpired(this.ctx, this.index, now, max));
  }
}

function parentInvalid(): Conflict {
  return new Conflict('invalid_parent', 'The parent session is not a valid session of this tenant and user.');
}

/** The refusals REDEEM and LOOK_UP_REDEEM answer alike: returned, or thrown where the port throws. */
function redeemRefusal(outcome: string, reply: unknown[], script: string): { outcome: 'target_unusable'; consumed: Session } | { outcome: 'not_consumed' } {
  switch (outcome) {
    case 'unusable':
      return { outcome: 'target_unusable', consumed: packedFromReply(reply[1]).session };
    case 'not_consumed':
      return { outcome: 'not_consumed' };
    case 'token_exists':
      throw new Conflict('refresh_token_exists', 'This refresh token is already stored.');
    case 'route_taken':
      throw secretInUse();
    default:
      throw new Error(`unexpected reply from the ${script} script: ${outcome}`);
  }
}
