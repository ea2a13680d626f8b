// What the Redis aggregate adapters share: the connection, the key layout, the retention, and
// the calling convention of the slot scripts (scripts.ts).

import { tagOfHandle, userTag } from '../../domain/secrets.ts';
import type { Session } from '../../domain/session.ts';
import { StoreUnavailable } from '../../domain/errors.ts';
import { num } from './codec.ts';
import { toStoreError, type RedisConnection } from './connection.ts';
import type { RedisKeys } from './keys.ts';
import { evalScript, type LuaScript } from './lua.ts';

export class RedisContext {
  readonly conn: RedisConnection;
  readonly keys: RedisKeys;
  /** How long a record stays readable after its absolute expiry. */
  readonly retentionMs: number;
  #closed = false;

  constructor(conn: RedisConnection, keys: RedisKeys, retentionMs: number) {
    this.conn = conn;
    this.keys = keys;
    this.retentionMs = retentionMs;
  }

  get closed(): boolean {
    return this.#closed;
  }

  markClosed(): void {
    this.#closed = true;
  }

  /** Runs an operation: StoreUnavailable once closed, and every failure mapped by toStoreError. */
  async guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreUnavailable('The session store has been closed.');
    try {
      return await fn();
    } catch (err) {
      throw toStoreError(err);
    }
  }

  send(key: string, args: string[], readonly = false): Promise<unknown> {
    return this.conn.send(key, args, readonly);
  }

  /** Runs a slot script (scripts.ts convention) on the slot of `tag`. */
  runSlot(script: LuaScript, tag: string, now: number, args: string[]): Promise<unknown> {
    const base = this.keys.slotBase(tag);
    return evalScript(this.conn, script, this.keys.userSessions(tag), [base, num(now), this.keys.endsChannel(), ...args]);
  }

  /** The routing tag a session's keys live under; it must match the session's user. */
  tagOfSession(s: Session): string {
    const tag = tagOfHandle(s.handle);
    if (tag === null) throw new Error(`"${s.handle}" is not a session handle`);
    if (s.userId !== null && tag !== userTag(s.tenantId, s.userId)) {
      throw new Error(`the handle ${s.handle} does not carry the routing tag of its user`);
    }
    return tag;
  }

  /** (absolute expiry - now) + retention, at least the retention. */
  ttl(absoluteExpiresAt: number, now: number): number {
    return Math.ceil(Math.max(0, absoluteExpiresAt - now) + this.retentionMs);
  }

  /** The tag a routing entry (hash -> tag) names, or null. */
  async route(routeKey: string): Promise<string | null> {
    const tag = (await this.send(routeKey, ['GET', routeKey], true)) as string | null;
    return tag !== null && /^[A-Za-z0-9_-]{12}$/.test(tag) ? tag : null;
  }
}
