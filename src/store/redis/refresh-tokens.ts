// The refresh tokens of the Redis sessions adapter (sessions.ts): one unit with the sessions —
// the rotate script runs on the session's slot and revokes its subtree on reuse atomically.

import { Conflict, NotFound } from '../../domain/errors.ts';
import { tagOfHandle } from '../../domain/secrets.ts';
import type { RefreshToken, RotateResult } from '../sessions-port.ts';
import { mustSession, mustToken, num, refreshTokenFromReply, refreshTokenToFields, sessionsFromReply } from './codec.ts';
import type { RedisContext } from './context.ts';
import { ADD_REFRESH, ROTATE } from './refresh-scripts.ts';
import type { SessionIndex } from './session-index.ts';

export class RedisRefreshTokens {
  private readonly ctx: RedisContext;
  private readonly index: SessionIndex;

  constructor(ctx: RedisContext, index: SessionIndex) {
    this.ctx = ctx;
    this.index = index;
  }

  async addRefreshToken(token: RefreshToken): Promise<void> {
    return this.ctx.guard(async () => {
      const tag = tagOfHandle(token.sessionHandle);
      if (tag === null) throw new NotFound('session_not_found', `No session ${token.sessionHandle} for this refresh token.`);
      const route = this.ctx.keys.tokenRoute(token.tokenHash);
      const routeWritten = await this.index.claimRoute(route, tag, this.ctx.retentionMs);
      const reply = (await this.ctx.runSlot(ADD_REFRESH, tag, 0, [token.tokenHash, ...refreshTokenToFields(token)])) as unknown[];
      if (reply[0] === 'ok') {
        const ms = Number(reply[1]);
        if (ms > 0) await this.ctx.send(route, ['PEXPIRE', route, String(ms)]);
        return;
      }
      if (routeWritten) await this.ctx.send(route, ['DEL', route]);
      if (reply[0] === 'no_session') throw new NotFound('session_not_found', `No session ${token.sessionHandle} for this refresh token.`);
      throw new Conflict('refresh_token_exists', 'This refresh token is already stored.');
    });
  }

  async rotateRefreshToken(
    presentedHash: string,
    successorHash: string,
    now: number,
    graceMs: number,
    idleExpiresAt: number | null,
  ): Promise<RotateResult> {
    return this.ctx.guard(async () => {
      const tag = await this.ctx.route(this.ctx.keys.tokenRoute(presentedHash));
      if (tag === null) return { outcome: 'unknown' };
      const successorRoute = this.ctx.keys.tokenRoute(successorHash);
      await this.index.claimRoute(successorRoute, tag, this.ctx.retentionMs);
      const reply = (await this.ctx.runSlot(ROTATE, tag, now, [
        presentedHash,
        successorHash,
        num(graceMs),
        idleExpiresAt === null ? '' : num(idleExpiresAt),
      ])) as unknown[];
      switch (reply[0]) {
        case 'rotated': {
          const session = mustSession(reply[1]);
          const successor = mustToken(reply[2]);
          const ttl = Number(reply[4]);
          if (ttl > 0) await this.ctx.send(successorRoute, ['PEXPIRE', successorRoute, String(ttl)]);
          await this.index.expiryMayHaveMovedEarlier(session, String(reply[3]));
          await this.ctx.replicated([tag]);
          return { outcome: 'rotated', session, successor };
        }
        case 'grace':
          // The presented token as stored: its successorHash names the pair the first caller got.
          return { outcome: 'grace', session: mustSession(reply[1]), token: mustToken(reply[2]) };
        case 'reused': {
          const revoked = sessionsFromReply(reply[2]);
          await this.index.forgetExpiries(revoked);
          await this.ctx.replicated([tag]);
          return { outcome: 'reused', session: mustSession(reply[1]), revoked };
        }
        case 'inactive':
          return { outcome: 'inactive', session: mustSession(reply[1]) };
        case 'unknown':
          return { outcome: 'unknown' };
        case 'successor_exists':
          throw new Conflict('refresh_token_exists', 'The successor refresh token is already stored.');
        default:
          throw new Error(`unexpected reply from the rotate script: ${String(reply[0])}`);
      }
    });
  }

  async getRefreshToken(tokenHash: string): Promise<RefreshToken | null> {
    return this.ctx.guard(async () => {
      const tag = await this.ctx.route(this.ctx.keys.tokenRoute(tokenHash));
      if (tag === null) return null;
      const key = this.ctx.keys.refreshToken(tag, tokenHash);
      const t = refreshTokenFromReply(await this.ctx.send(key, ['HGETALL', key], true));
      return t !== null && t.tokenHash === tokenHash ? t : null;
    });
  }
}
