// Secrets, their hashes and public handles. Node's crypto is the CSPRNG; nothing here does I/O.

import { hash, randomFillSync, timingSafeEqual } from 'node:crypto';

/**
 * CSPRNG bytes drawn 4 KB at a time and handed out once each (as node:crypto's own randomUUID
 * does): a `randomBytes` call cost ~2 µs of CPU, most of it the call into OpenSSL, against
 * ~0.1 µs for a slice of the pool. Every byte is used once; a slice handed out is zeroed, so the
 * pool never keeps a secret that is in use, and the pool is refilled (never reused) when it runs
 * out.
 */
const POOL_SIZE = 4096;
const pool = Buffer.alloc(POOL_SIZE);
let poolOffset = POOL_SIZE;

/** `n` (≤ 64) bytes from the CSPRNG, base64url. */
function randomText(n: number): string {
  if (poolOffset + n > POOL_SIZE) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const text = pool.toString('base64url', poolOffset, poolOffset + n);
  pool.fill(0, poolOffset, poolOffset + n);
  poolOffset += n;
  return text;
}

/** 256 bits from the CSPRNG, base64url (43 characters). */
export function newSecret(): string {
  return randomText(32);
}

/**
 * SHA-256 of a secret, base64url. The only form in which a secret reaches a store. (node:crypto's
 * one-shot `hash`: several times cheaper than a Hash object for a short input.)
 */
export function hashSecret(secret: string): string {
  return hash('sha256', secret, 'base64url');
}

/** Compares two strings in time that depends only on their length. */
export function constantTimeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  if (ab.length !== bb.length) {
    // Still spend the comparison so that a length mismatch is not measurably faster.
    timingSafeEqual(ab, ab);
    return false;
  }
  return timingSafeEqual(ab, bb);
}

/**
 * The routing tag of a user: every key of one user lives in the Redis Cluster hash slot of this
 * tag, so that limits and cascades over a user's sessions run in one atomic script.
 */
export function userTag(tenantId: string, userId: string): string {
  return hash('sha256', `${tenantId}\u0000${userId}`, 'base64url').slice(0, 12);
}

/**
 * A public session handle: `<routing tag>.<128 random bits>`. It is never a credential. The tag
 * lets a store find the user's shard from the handle alone; a flow session (no user yet) gets a
 * random tag of its own.
 */
export function newHandle(tenantId: string, userId: string | null): string {
  const tag = userId === null ? randomText(9) : userTag(tenantId, userId);
  return `${tag}.${randomText(16)}`;
}

/** The routing tag inside a handle, or null when the string is not shaped like a handle. */
export function tagOfHandle(handle: string): string | null {
  const m = /^([A-Za-z0-9_-]{12})\.([A-Za-z0-9_-]{22})$/.exec(handle);
  return m ? (m[1] as string) : null;
}

export function isHandle(value: string): boolean {
  return tagOfHandle(value) !== null;
}
