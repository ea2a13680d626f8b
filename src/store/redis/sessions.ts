// The Redis adapter of the sessions aggregate (sessions-port.ts): sessions here, their refresh
// tokens in refresh-tokens.ts, the global indexes in session-index.ts, the Lua scripts in
// scripts.ts. All keys of one user share a Cluster hash slot through the hash tag `{userTag}`; a
// handle carries that tag, so an operation by handle goes straight to its slot, and every
// multi-key operation on a user's data is one Lua script there (atomic across processes). Every
// script that ends sessions publishes their handles on `P ends` in the same atomic step.

import { Conflict } from '../../domain/errors.ts';
import { tagOfHandle, userTag } from '../../domain/secrets.ts';
import { effectiveStatus } from '../../domain/session.ts';
import type { RevokeReason, Session } from '../../domain/session.ts';
import { checkLimit, decodeCursor, encodeCursor, type Page } from '../page.ts';
import {
  SESSION_LIST_MAX,
  type CreateLimit,
  type CreateSessionResult,
  type ListSessionsQuery,
  type RefreshToken,
  type RenewResult,
  type RotateResult,
  type SessionsStore,
} from '../sessions-port.ts';
import { mustSession, num, patchToFields, sessionFromReply, sessionsFromReply, sessionToFields } from './codec.ts';
import type { RedisContext } from './context.ts';
import { RedisRefreshTokens } from './refresh-tokens.ts';
import { BY_SECRET, CONSUME, CREATE, EXPIRE_IF_DUE, RENEW, REVOKE, REVOKE_HANDLES, REVOKE_USER, TOUCH, UPDATE_DATA } from './scripts.ts';
import { PAGE, secretInUse, SessionIndex, type ListPosition } from './session-index.ts';

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
      const ttl = this.ctx.ttl(session.absoluteExpiresAt, now);
      const pre = await this.index.indexBeforeWrite(session, tag, ttl);
      const reply = (await this.ctx.runSlot(CREATE, tag, now, [
        session.handle,
        String(ttl),
        limit?.kind ?? '',
        limit ? String(limit.max) : '0',
        limit?.policy ?? '',
        ...sessionToFields(session),
      ])) as unknown[];
      const outcome = reply[0];
      if (outcome === 'ok') {
        const evicted = sessionsFromReply(reply[2]);
        await this.index.forgetExpiries(evicted);
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
      const key = this.ctx.keys.session(tag, handle);
      const s = sessionFromReply(await this.ctx.send(key, ['HGETALL', key], true));
      return s !== null && s.handle === handle ? s : null;
    });
  }

  async getSessionBySecretHash(secretHash: string): Promise<Session | null> {
    return this.ctx.guard(async () => {
      const tag = await this.ctx.route(this.ctx.keys.secretRoute(secretHash));
      if (tag === null) return null;
      const s = sessionFromReply(await this.ctx.runSlot(BY_SECRET, tag, 0, [secretHash]));
      return s !== null && s.secretHash === secretHash ? s : null;
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
      await this.index.forgetExpiries(revoked);
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
      await this.index.forgetExpiries(revoked);
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
        await this.index.forgetExpiries(revoked);
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
      const byUser = query.userId !== undefined;
      const zkey = byUser
        ? this.ctx.keys.userSessions(userTag(query.tenantId, query.userId as string))
        : this.ctx.keys.tenantSessions(query.tenantId);
      const items: Session[] = [];
      let more = false;
      outer: for await (const page of this.index.zsetPages(zkey, after)) {
        const records = await Promise.all(
          page.map(async ({ handle }) => {
            const tag = tagOfHandle(handle);
            if (tag === null) return null;
            const key = this.ctx.keys.session(tag, handle);
            return sessionFromReply(await this.ctx.send(key, ['HGETALL', key], true));
          }),
        );
        const stale: string[] = [];
        for (const [i, s] of records.entries()) {
          const entry = page[i] as { handle: string; score: number };
          if (s === null) {
            // Gone after its retention (or a create still in flight, or refused): skip it, and
            // forget it once it is certainly not in flight any more.
            if (!byUser && entry.score < query.now - this.ctx.retentionMs) stale.push(entry.handle);
            continue;
          }
          if (s.tenantId !== query.tenantId) continue;
          if (byUser && s.userId !== query.userId) continue;
          if (query.kind !== undefined && s.kind !== query.kind) continue;
          if (query.status !== undefined && effectiveStatus(s, query.now) !== query.status) continue;
          if (items.length === limit) {
            more = true;
            break;
          }
          items.push(s);
        }
        if (stale.length > 0) await this.ctx.send(zkey, ['ZREM', zkey, ...stale]);
        if (more) break outer;
      }
      const last = items[items.length - 1];
      return {
        items,
        nextCursor: more && last ? encodeCursor({ createdAt: last.createdAt, key: last.handle }) : null,
      };
    });
  }

  async consumeSession(secretHash: string, now: number): Promise<Session | null> {
    return this.ctx.guard(async () => {
      const tag = await this.ctx.route(this.ctx.keys.secretRoute(secretHash));
      if (tag === null) return null;
      const reply = await this.ctx.runSlot(CONSUME, tag, now, [secretHash]);
      if (reply === null) return null;
      const s = mustSession(reply);
      await this.index.forgetExpiries([s]);
      return s;
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
      const ttl = this.ctx.ttl(successor.absoluteExpiresAt, now);
      const pre = await this.index.indexBeforeWrite(successor, tag, ttl);
      const reply = (await this.ctx.runSlot(RENEW, tag, now, [
        predecessorHandle,
        String(ttl),
        limit?.kind ?? '',
        limit ? String(limit.max) : '0',
        limit?.policy ?? '',
        ...sessionToFields(successor),
      ])) as unknown[];
      const outcome = reply[0];
      const result = ((): RenewResult => {
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
      })();
      // Another caller's successor won (or none was needed): take back this call's index entries.
      // The secret route stays: concurrent renewals agree on the secret, so it may be the winner's.
      if (!(result.outcome === 'renewed' && result.session.handle === successor.handle)) {
        await this.index.undoIndex(successor, { ...pre, route: false });
      }
      if (result.outcome === 'renewed') {
        await this.index.forgetExpiries(result.evicted);
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

  async sweepExpired(now: number, max: number): Promise<Session[]> {
    return this.ctx.guard(async () => {
      const exp = this.ctx.keys.expiry();
      const out: Session[] = [];
      // Bounded: every round removes or re-scores (above `now`) each handle it took.
      for (let round = 0; out.length < max && round < 100; round++) {
        const want = Math.min(PAGE, max - out.length);
        const due = (await this.ctx.send(exp, ['ZRANGEBYSCORE', exp, '-inf', num(now), 'LIMIT', '0', String(want)], true)) as string[];
        if (due.length === 0) break;
        const results = await Promise.all(
          due.map(async (handle) => {
            const tag = tagOfHandle(handle);
            if (tag === null) return { handle, reply: ['gone'] as unknown[] };
            return { handle, reply: (await this.ctx.runSlot(EXPIRE_IF_DUE, tag, now, [handle])) as unknown[] };
          }),
        );
        const remove: string[] = [];
        const rescore: string[] = [];
        for (const { handle, reply } of results) {
          if (reply[0] === 'expired') {
            out.push(mustSession(reply[1]));
            remove.push(handle);
          } else if (reply[0] === 'notdue') {
            rescore.push(String(reply[1]), handle);
          } else {
            remove.push(handle);
          }
        }
        // XX: never re-add a handle that a concurrent sweeper has just removed.
        if (rescore.length > 0) await this.ctx.send(exp, ['ZADD', exp, 'XX', ...rescore]);
        if (remove.length > 0) await this.ctx.send(exp, ['ZREM', exp, ...remove]);
      }
      await this.index.collectListingGarbage(now, Math.max(max, PAGE));
      return out;
    });
  }
}

function parentInvalid(): Conflict {
  return new Conflict('invalid_parent', 'The parent session is not a valid session of this tenant and user.');
}
