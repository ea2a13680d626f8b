// Login throttling (SPEC 5): failed password attempts are counted per account (tenant + email) and
// per client IP in windows shared by every Tessera process (store counters), together with the
// checks in flight, so that at most the limit's worth of wrong passwords get checked per window
// however many arrive at once — which also caps the argon2 work an attacker can cause. Past the
// limit: 429 with Retry-After.

import { createHash } from 'node:crypto';
import type { Coordination } from '../store/coordination-port.ts';

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

/** Passwords being checked right now, per account and per address (a crashed process's slot lapses). */
const IN_FLIGHT_WINDOW_MS = 30_000;
const WAIT_STEP_MS = 20;
const MAX_WAIT_MS = 5_000;

interface Keys {
  acct: string;
  ip: string;
}

const inflight = (k: string) => `${k}:inflight`;

/**
 * Takes a slot to check a password. A check may start only while failures in the window plus
 * checks in flight stay within the limit — so a burst of parallel guesses gets no more checks
 * than the limit, while a burst of right passwords (several logins at once) simply waits its
 * turn. The slot is taken before the failures are read, and a failure is recorded before its slot
 * is given back, so the sum is never undercounted. Returns the seconds to wait, or 0 to go ahead.
 */
async function takeSlot(c: Coordination, policy: ThrottlePolicy, k: Keys, now: number): Promise<number> {
  for (let waited = 0; ; waited += WAIT_STEP_MS) {
    const [na, ni] = await Promise.all([
      c.hitCounter(inflight(k.acct), IN_FLIGHT_WINDOW_MS, now),
      c.hitCounter(inflight(k.ip), IN_FLIGHT_WINDOW_MS, now),
    ]);
    const [fa, fi] = await Promise.all([c.peekCounter(k.acct, now), c.peekCounter(k.ip, now)]);
    const failedA = fa?.count ?? 0;
    const failedI = fi?.count ?? 0;
    if (failedA + na.count <= policy.accountFailures && failedI + ni.count <= policy.ipFailures) return 0;
    await giveSlotBack(c, k, now);
    let until = 0;
    if (failedA >= policy.accountFailures && fa) until = Math.max(until, fa.resetAt);
    if (failedI >= policy.ipFailures && fi) until = Math.max(until, fi.resetAt);
    if (until > 0) return Math.max(1, Math.ceil((until - now) / 1000));
    if (waited >= MAX_WAIT_MS) return 1;
    // Full only because of checks in flight: wait for one of them to finish.
    await new Promise((r) => setTimeout(r, WAIT_STEP_MS));
  }
}

async function giveSlotBack(c: Coordination, k: Keys, now: number): Promise<void> {
  await Promise.all([c.hitCounter(inflight(k.acct), IN_FLIGHT_WINDOW_MS, now, -1), c.hitCounter(inflight(k.ip), IN_FLIGHT_WINDOW_MS, now, -1)]);
}

export type AttemptOutcome = { kind: 'ok' } | { kind: 'wrong' } | { kind: 'throttled'; retryAfter: number };

/**
 * One password attempt under the throttle. Every place that checks a password (login,
 * re-authentication, password change) goes through here.
 */
export async function throttledAttempt(
  c: Coordination,
  policy: ThrottlePolicy,
  acct: string,
  ip: string,
  now: number,
  check: () => Promise<boolean>,
): Promise<AttemptOutcome> {
  const k = { acct, ip };
  const wait = await takeSlot(c, policy, k, now);
  if (wait > 0) return { kind: 'throttled', retryAfter: wait };
  let ok = false;
  try {
    ok = await check();
  } finally {
    if (ok) {
      await c.resetCounter(acct);
    } else {
      await Promise.all([c.hitCounter(acct, policy.windowMs, now), c.hitCounter(ip, policy.windowMs, now)]);
    }
    await giveSlotBack(c, k, now);
  }
  return ok ? { kind: 'ok' } : { kind: 'wrong' };
}
