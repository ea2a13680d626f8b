// The refresh tokens of the Redis sessions adapter (sessions.ts): part of their session's record
// (slot-lua.ts), so the rotate script runs on the session's slot and revokes its subtree on reuse
// atomically. A route (session-index.ts) leads from each token hash to the slot.

import { makeRoom } from '../../domain/bounded-map.ts';
import { Conflict, NotFound } from '../../domain/errors.ts';
import { tagOfHandle } from '../../domain/secrets.ts';
import type { Session } from '../../domain/session.ts';
import type { User } from '../../domain/user.ts';
import type { RefreshToken, RotateResult } from '../sessions-port.ts';
import { mustPackedToken, mustSession, num, packedFromReply, refreshTokenFromReply, refreshTokenToFields, sessionsFromReply } from './codec.ts';
import type { RedisContext } from './context.ts';
import { packedHash } from './lua-codec.ts';
import { ADD_REFRESH, GET_REFRESH, ROTATE } from './refresh-scripts.ts';
import { secretInUse, type SessionIndex } from './session-index.ts';

/**
 * The user record the rotate script read (accounts.ts writes it as JSON; as a Buffer from a
 * script whose reply comes as bytes), if it is the session's.
 */
export function userOf(raw: unknown, s: Session): User | null {
  if (typeof raw !== 'string' && !Buffer.isBuffer(raw)) return null;
  const u = JSON.parse(raw.toString()) as User;
  return u.tenantId === s.tenantId && u.id === s.userId ? u : null;
}

/** The rotate script's arguments after the slot script's own (ROTATE in refresh-scripts.ts). */
function rotateArgs(presentedHash: string, successorHash: string, graceMs: number, idleExpiresAt: number | null, route: string, routeField: string): Array<string | Buffer> {
  return [packedHash(presentedHash), packedHash(successorHash), num(graceMs), idleExpiresAt === null ? '' : num(idleExpiresAt), route, routeField];
}

/** Users remembered per store by the rotate script's replies (RedisRefreshTokens.#userOf). */
const USERS_MAX = 10_000;

export class RedisRefreshTokens {
  private readonly ctx: RedisContext;
  private readonly index: SessionIndex;
  /**
   * The last user record each session user's rotation read, as its bytes and as parsed, by
   * tenant and user id: the next rotation of that user (the client keeps refreshing) gets the
   * same bytes, almost always, and the same object without a JSON parse. Bytes that differ (the
   * user was changed: roles, disabled) are parsed and remembered instead. Bounded (about 9 MB
   * at most); the objects are read only (RotateResult).
   */
  readonly #users = new Map<string, { raw: Buffer; user: User | null }>();

  constructor(ctx: RedisContext, index: SessionIndex) {
    this.ctx = ctx;
    this.index = index;
  }

  async addRefreshToken(token: RefreshToken): Promise<void> {
    return this.ctx.guard(async () => {
      const tag = tagOfHandle(token.sessionHandle);
      if (tag === null) throw new NotFound('session_not_found', `No session ${token.sessionHandle} for this refresh token.`);
      const routeWritten = await this.index.claimRoute(token.tokenHash, tag);
      const reply = (await this.ctx.runSlot(ADD_REFRESH, tag, 0, refreshTokenToFields(token))) as unknown[];
      if (reply[0] === 'ok') return;
      if (routeWritten) await this.index.dropRoutes([token.tokenHash]);
      if (reply[0] === 'no_session') throw new NotFound('session_not_found', `No session ${token.sessionHandle} for this refresh token.`);
      throw new Conflict('refresh_token_exists', 'This refresh token is already stored.');
    });
  }

  /**
   * One command when this process knows the presented token's route (RedisContext.route; else
   * one more to read it): the rotate script, which also writes the successor's route (before the
   * token it leads to, in the same step). In a Cluster the route lives in another slot, so it is
   * written first, by its own command, and taken back when the script does not rotate. Then the
   * due index only if the expiry moved earlier, and the replica wait when one is configured.
   *
   * No async function on the usual way (a known route, not a Cluster): the script's promise, its
   * reply read in the reaction that also catches a failed call (evalScript's `read`), under
   * guard's — each async frame and await on top of that was a promise and a turn of its own on
   * every rotation.
   */
  rotateRefreshToken(
    presentedHash: string,
    successorHash: string,
    now: number,
    graceMs: number,
    idleExpiresAt: number | null,
  ): Promise<RotateResult> {
    return this.ctx.guard(() => {
      const tag = this.ctx.knownRoute(presentedHash);
      if (tag !== undefined) return this.#rotateOn(tag, presentedHash, successorHash, now, graceMs, idleExpiresAt);
      return this.ctx.route(presentedHash).then((t) => (t === null ? { outcome: 'unknown' as const } : this.#rotateOn(t, presentedHash, successorHash, now, graceMs, idleExpiresAt)));
    });
  }

  /** The rotate script on the slot of `tag`, and its reply read (rotateRefreshToken). */
  #rotateOn(tag: string, presentedHash: string, successorHash: string, now: number, graceMs: number, idleExpiresAt: number | null): Promise<RotateResult> {
    if (this.ctx.conn.kind === 'redis-cluster') return this.#rotateInCluster(tag, presentedHash, successorHash, now, graceMs, idleExpiresAt);
    const keys = this.ctx.keys;
    const args = rotateArgs(presentedHash, successorHash, graceMs, idleExpiresAt, keys.route(successorHash), keys.routeField(successorHash));
    return this.ctx.runSlot(ROTATE, tag, now, args, undefined, (reply) => this.#outcomeOf(reply as unknown[], tag, successorHash, true));
  }

  /**
   * In a Cluster: the successor's route claimed first (another slot), taken back only when the
   * reply shows no rotation stored this successor. Concurrent refreshes of one token send the
   * same successor (refreshTokenPair derives it from the presented token), and the call that
   * wrote the route is not always the one whose script rotates: a `grace` answer whose token
   * already leads to this successor keeps the route — the winner's new token needs it. A failed
   * FCALL (a timeout: the script may have run) keeps it too: a route with no token is harmless
   * (readers skip it), a live token without its route is logged out.
   */
  async #rotateInCluster(tag: string, presentedHash: string, successorHash: string, now: number, graceMs: number, idleExpiresAt: number | null): Promise<RotateResult> {
    const routeWritten = await this.index.claimRoute(successorHash, tag);
    const reply = (await this.ctx.runSlot(ROTATE, tag, now, rotateArgs(presentedHash, successorHash, graceMs, idleExpiresAt, '', ''))) as unknown[];
    let result: RotateResult;
    try {
      result = await this.#outcomeOf(reply, tag, successorHash, false);
    } catch (err) {
      // A refusal (successor_exists): nothing stored this successor here.
      if (routeWritten) await this.index.dropRoutes([successorHash]);
      throw err;
    }
    if (routeWritten && result.outcome !== 'rotated' && !(result.outcome === 'grace' && result.token.successorHash === successorHash)) {
      await this.index.dropRoutes([successorHash]);
    }
    return result;
  }

  /** What a rotate reply says; a promise only when something is left to wait for. */
  #outcomeOf(reply: unknown[], tag: string, successorHash: string, inScript: boolean): RotateResult | Promise<RotateResult> {
    // The reply's strings come as Buffers (the script's reply is binary: a packed record).
    const outcome = String(reply[0]);
    switch (outcome) {
      case 'rotated': {
        if (inScript) this.ctx.rememberRoute(successorHash, tag);
        const { session, token } = packedFromReply(reply[1]);
        const successor = mustPackedToken(token);
        // Each awaited only when it has something to do (a rotation usually moves the expiry
        // later, and most deployments wait for no replica): no promise turns otherwise.
        const moved = this.index.expiryMayHaveMovedEarlier(session, String(reply[2]));
        const rotated: RotateResult = { outcome: 'rotated', session, successor, user: this.#userOf(reply[3], session) };
        if (moved === null && !this.ctx.waitsForReplicas) return rotated;
        return this.#afterRotation(moved, tag).then(() => rotated);
      }
      case 'grace': {
        // The presented token as stored: its successorHash names the pair the first caller got.
        const { session, token } = packedFromReply(reply[1]);
        return { outcome: 'grace', session, token: mustPackedToken(token), user: this.#userOf(reply[2], session) };
      }
      case 'reused': {
        const revoked = sessionsFromReply(reply[2]);
        return this.ctx.replicated([tag]).then((): RotateResult => ({ outcome: 'reused', session: mustSession(reply[1]), revoked }));
      }
      case 'inactive':
        return { outcome: 'inactive', session: mustSession(reply[1]) };
      case 'unknown':
        return { outcome: 'unknown' };
      case 'successor_exists':
        throw new Conflict('refresh_token_exists', 'The successor refresh token is already stored.');
      case 'route_taken':
        throw secretInUse();
      default:
        throw new Error(`unexpected reply from the rotate script: ${outcome}`);
    }
  }

  /** The due index's earlier expiry (when it moved), then the replica wait (when configured). */
  async #afterRotation(moved: Promise<unknown> | null, tag: string): Promise<void> {
    if (moved !== null) await moved;
    if (this.ctx.waitsForReplicas) await this.ctx.replicated([tag]);
  }

  /** userOf for a rotate reply's user bytes, through #users. */
  #userOf(raw: unknown, s: Session): User | null {
    if (!Buffer.isBuffer(raw) || s.userId === null) return userOf(raw, s);
    const key = `${s.tenantId}\u0000${s.userId}`;
    const known = this.#users.get(key);
    if (known !== undefined && known.raw.equals(raw)) return known.user;
    const user = userOf(raw, s);
    makeRoom(this.#users, USERS_MAX);
    // A copy: the reply's bytes may be a view of the whole socket read they came in.
    this.#users.set(key, { raw: Buffer.from(raw), user });
    return user;
  }

  async getRefreshToken(tokenHash: string): Promise<RefreshToken | null> {
    return this.ctx.guard(async () => {
      const tag = await this.ctx.route(tokenHash);
      if (tag === null) return null;
      const t = refreshTokenFromReply(await this.ctx.runSlot(GET_REFRESH, tag, 0, [tokenHash]));
      return t !== null && t.tokenHash === tokenHash ? t : null;
    });
  }
}
