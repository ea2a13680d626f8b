// A writer of Redis layout 1 — the key layout of the session store before one value per slot
// (src/store/redis/migrate.ts reads it): exactly the keys, fields and TTLs that layout 1's
// create and add-refresh scripts and its global indexes wrote, so that the upgrade test can
// store sessions as a running old version left them.

import { userTag, tagOfHandle } from '../../src/domain/secrets.ts';
import { expiresAt, type Session } from '../../src/domain/session.ts';
import type { RefreshToken } from '../../src/store/port.ts';
import type { RedisConnection } from '../../src/store/redis/connection.ts';

const num = (n: number): string => String(n);

/** Layout 1's session hash fields (its codec.ts sessionToFields). */
function fields(s: Session): string[] {
  const f = [
    'handle', s.handle,
    'secretHash', s.secretHash,
    'tenantId', s.tenantId,
    'kind', s.kind,
    'createdAt', num(s.createdAt),
    'lastSeenAt', num(s.lastSeenAt),
    'absoluteExpiresAt', num(s.absoluteExpiresAt),
    'authMethod', s.authMethod,
    'device', JSON.stringify(s.device ?? {}),
    'status', s.status,
  ];
  if (s.userId !== null) f.push('userId', s.userId);
  if (s.parentHandle !== null) f.push('parentHandle', s.parentHandle);
  if (s.idleExpiresAt !== null) f.push('idleExpiresAt', num(s.idleExpiresAt));
  if (s.clientId !== null) f.push('clientId', s.clientId);
  if (s.endedAt !== null) f.push('endedAt', num(s.endedAt));
  if (s.revokeReason !== null) f.push('revokeReason', s.revokeReason);
  if (s.successorHandle !== null) f.push('successorHandle', s.successorHandle);
  for (const [k, v] of Object.entries(s.data)) f.push(`d:${k}`, JSON.stringify(v));
  return f;
}

export class Layout1Writer {
  private readonly conn: RedisConnection;
  private readonly prefix: string;
  private readonly retentionMs: number;

  constructor(conn: RedisConnection, prefix: string, retentionMs: number) {
    this.conn = conn;
    this.prefix = prefix;
    this.retentionMs = retentionMs;
  }

  private send(key: string, args: string[]): Promise<unknown> {
    return this.conn.send(key, args);
  }

  /** A session as layout 1's createSession left it: global indexes first, then the slot's keys. */
  async session(s: Session, now: number): Promise<void> {
    const P = this.prefix;
    const tag = s.userId === null ? (tagOfHandle(s.handle) as string) : userTag(s.tenantId, s.userId);
    const base = `${P}{${tag}}:`;
    const ttl = String(Math.ceil(Math.max(0, s.absoluteExpiresAt - now) + this.retentionMs));
    await this.send(`${P}sh:${s.secretHash}`, ['SET', `${P}sh:${s.secretHash}`, tag, 'NX', 'PX', ttl]);
    await this.send(`${P}t:${s.tenantId}:s`, ['ZADD', `${P}t:${s.tenantId}:s`, 'NX', num(s.createdAt), s.handle]);
    if (s.status === 'active') await this.send(`${P}exp`, ['ZADD', `${P}exp`, 'NX', num(expiresAt(s)), s.handle]);
    await this.send(`${P}gc`, ['ZADD', `${P}gc`, 'NX', num(s.absoluteExpiresAt + this.retentionMs), `${s.tenantId} ${s.handle}`]);
    await this.send(`${base}s:${s.handle}`, ['HSET', `${base}s:${s.handle}`, ...fields(s)]);
    await this.send(`${base}s:${s.handle}`, ['PEXPIRE', `${base}s:${s.handle}`, ttl]);
    if (s.userId !== null) {
      await this.send(`${base}us`, ['ZADD', `${base}us`, num(s.createdAt), s.handle]);
      await this.send(`${base}us`, ['PEXPIRE', `${base}us`, ttl]);
    }
    if (s.parentHandle !== null) {
      await this.send(`${base}c:${s.parentHandle}`, ['SADD', `${base}c:${s.parentHandle}`, s.handle]);
      await this.send(`${base}c:${s.parentHandle}`, ['PEXPIRE', `${base}c:${s.parentHandle}`, ttl]);
    }
    await this.send(`${base}sh:${s.secretHash}`, ['SET', `${base}sh:${s.secretHash}`, s.handle, 'PX', ttl]);
  }

  /** A refresh token as layout 1's addRefreshToken (or its rotate script) left it. */
  async token(t: RefreshToken, s: Session, now: number): Promise<void> {
    const P = this.prefix;
    const tag = tagOfHandle(s.handle) as string;
    const key = `${P}{${tag}}:rt:${t.tokenHash}`;
    const ttl = String(Math.ceil(Math.max(0, s.absoluteExpiresAt - now) + this.retentionMs));
    await this.send(`${P}th:${t.tokenHash}`, ['SET', `${P}th:${t.tokenHash}`, tag, 'NX', 'PX', ttl]);
    const f = ['tokenHash', t.tokenHash, 'sessionHandle', t.sessionHandle, 'tenantId', t.tenantId, 'userId', t.userId, 'createdAt', num(t.createdAt)];
    if (t.rotatedAt !== null) f.push('rotatedAt', num(t.rotatedAt));
    if (t.successorHash !== null) f.push('successorHash', t.successorHash);
    await this.send(key, ['HSET', key, ...f]);
    await this.send(key, ['PEXPIRE', key, ttl]);
  }
}
