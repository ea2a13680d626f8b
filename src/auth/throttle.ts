// Login throttling (SPEC 5): failed logins are counted per account (tenant + email) and per client
// IP in windows shared by every Tessera process (store counters). Past the limit a login is
// refused with 429 and Retry-After before the password is even checked, so the limit also caps
// the argon2 work an attacker can cause.

import { createHash } from 'node:crypto';
import type { Coordination } from '../store/coordination.ts';

export interface ThrottlePolicy {
  accountFailures: number;
  ipFailures: number;
  windowMs: number;
}

export const DEFAULT_THROTTLE: ThrottlePolicy = { accountFailures: 5, ipFailures: 50, windowMs: 15 * 60 * 1000 };

/** Counter keys hold no email or IP in clear. */
function key(kind: 'acct' | 'ip', value: string): string {
  return `login:${kind}:${createHash('sha256').update(value).digest('base64url').slice(0, 32)}`;
}

export function accountKey(tenantId: string, email: string): string {
  return key('acct', `${tenantId}\u0000${email}`);
}

export function ipKey(ip: string): string {
  return key('ip', ip);
}

/** Seconds until the caller may try again, or 0 when not throttled. */
export async function throttledFor(c: Coordination, policy: ThrottlePolicy, acct: string, ip: string, now: number): Promise<number> {
  const [a, i] = await Promise.all([c.peekCounter(acct, now), c.peekCounter(ip, now)]);
  let until = 0;
  if (a && a.count >= policy.accountFailures) until = Math.max(until, a.resetAt);
  if (i && i.count >= policy.ipFailures) until = Math.max(until, i.resetAt);
  return until === 0 ? 0 : Math.max(1, Math.ceil((until - now) / 1000));
}

export async function recordFailure(c: Coordination, policy: ThrottlePolicy, acct: string, ip: string, now: number): Promise<void> {
  await Promise.all([c.hitCounter(acct, policy.windowMs, now), c.hitCounter(ip, policy.windowMs, now)]);
}

export async function recordSuccess(c: Coordination, acct: string): Promise<void> {
  await c.resetCounter(acct);
}
