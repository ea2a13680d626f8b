// Login throttling (docs/api.md §Token mode, error `login_throttled`; docs/security.md; OWASP
// Authentication and Credential Stuffing cheat sheets). Failed password attempts are counted in
// windows shared by every Tessera process (store counters):
//  - per account *and client address* (5 in 15 min): a stranger's wrong guesses lock out the
//    stranger's address, not the owner on their own device;
//  - per account from any address (30 in 15 min): bounds guessing spread over many addresses;
//    past it, only addresses from which the account signed in successfully within 30 days
//    ("known addresses") may still try, each under its own per-address limit;
//  - per client address over all accounts (50 in 15 min).
// Checks in flight count with the failures, so at most the limit's worth of wrong passwords get
// checked per window however many arrive at once. Successful checks are limited too (20 per
// account and minute: a script with the right password cannot fill the session table or burn
// the CPU), and every process caps the argon2 verifications it starts per second (a token
// bucket, 40/s by default; past it a check waits up to 2 s for its turn, then gets 429 with
// Retry-After). Past any limit: 429 `login_throttled` with Retry-After.

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Coordination } from '../store/coordination-port.ts';
import { addressKey } from '../domain/client-address.ts';

export interface ThrottlePolicy {
  /** Failures per account and client address within `windowMs`. */
  accountFailures: number;
  /** Failures per client address over all accounts within `windowMs`. */
  ipFailures: number;
  windowMs: number;
  /** Failures per account from any address within `windowMs` (default 30); past it, known addresses only. */
  accountFailuresAnyAddress?: number;
  /** Successful password checks per account and minute (default 20). */
  successesPerMinute?: number;
  /** How long a successful sign-in makes its address known for the account (default 30 days). */
  knownAddressMs?: number;
  /** argon2 verifications this process starts per second (default 40; also the burst). */
  argon2PerSecond?: number;
  /** How long a check waits for the per-process argon2 budget before 429 (default 2000 ms). */
  argon2MaxWaitMs?: number;
  /** Monotonic milliseconds for the argon2 budget (tests freeze it); default performance.now. */
  monotonicNow?: () => number;
}

export const DEFAULT_THROTTLE: ThrottlePolicy = { accountFailures: 5, ipFailures: 50, windowMs: 15 * 60 * 1000 };

const DEFAULTS = {
  accountFailuresAnyAddress: 30,
  successesPerMinute: 20,
  knownAddressMs: 30 * 24 * 3600 * 1000,
  argon2PerSecond: 40,
  argon2MaxWaitMs: 2000,
};

/** Counter keys hold no email or IP in clear. */
function key(kind: 'acct' | 'ip' | 'acctip' | 'known' | 'ok', value: string): string {
  return `login:${kind}:${createHash('sha256').update(value).digest('base64url').slice(0, 32)}`;
}

export function accountKey(tenantId: string, email: string): string {
  return key('acct', `${tenantId}\u0000${email}`);
}

/** An IPv4 address, or an IPv6 address's /64 (domain/client-address.ts). */
export function ipKey(ip: string): string {
  return key('ip', addressKey(ip));
}

/** The per-process argon2 budget: a token bucket per policy (one policy per runtime). */
class Argon2Budget {
  private tokens: number;
  private last: number;
  private readonly perSecond: number;
  private readonly now: () => number;
  constructor(perSecond: number, now: () => number) {
    this.perSecond = perSecond;
    this.now = now;
    this.tokens = perSecond;
    this.last = now();
  }
  take(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.perSecond, this.tokens + ((t - this.last) / 1000) * this.perSecond);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

const budgets = new WeakMap<ThrottlePolicy, Argon2Budget>();

async function takeArgon2Turn(policy: ThrottlePolicy): Promise<boolean> {
  let b = budgets.get(policy);
  if (b === undefined) {
    b = new Argon2Budget(policy.argon2PerSecond ?? DEFAULTS.argon2PerSecond, policy.monotonicNow ?? (() => performance.now()));
    budgets.set(policy, b);
  }
  const maxWait = policy.argon2MaxWaitMs ?? DEFAULTS.argon2MaxWaitMs;
  for (let waited = 0; ; waited += WAIT_STEP_MS) {
    if (b.take()) return true;
    if (waited >= maxWait) return false;
    await new Promise((r) => setTimeout(r, WAIT_STEP_MS));
  }
}

/** Passwords being checked right now, per account and per address (a crashed process's slot lapses). */
const IN_FLIGHT_WINDOW_MS = 30_000;
const WAIT_STEP_MS = 20;
const MAX_WAIT_MS = 5_000;

interface Keys {
  /** Failures of this account from this address. */
  acctIp: string;
  /** Failures of this account from any address. */
  acct: string;
  /** Failures from this address, all accounts. */
  ip: string;
  /** Present while this address is known for this account (a success within knownAddressMs). */
  known: string;
  /** Successful checks of this account (per minute). */
  ok: string;
}

const inflight = (k: string) => `${k}:inflight`;

function keysOf(acct: string, ip: string): Keys {
  return { acctIp: key('acctip', `${acct}\u0000${ip}`), acct, ip, known: key('known', `${acct}\u0000${ip}`), ok: key('ok', acct) };
}

/**
 * Takes a slot to check a password. A check may start only while failures in the window plus
 * checks in flight stay within every limit — so a burst of parallel guesses gets no more checks
 * than the limit, while a burst of right passwords (several logins at once) simply waits its
 * turn. The slot is taken before the failures are read, and a failure is recorded before its slot
 * is given back, so the sum is never undercounted. Returns the seconds to wait, or 0 to go ahead.
 */
async function takeSlot(c: Coordination, policy: ThrottlePolicy, k: Keys, now: number): Promise<number> {
  const anyAddress = policy.accountFailuresAnyAddress ?? DEFAULTS.accountFailuresAnyAddress;
  const successes = policy.successesPerMinute ?? DEFAULTS.successesPerMinute;
  const known = (await c.peekCounter(k.known, now)) !== null;
  for (let waited = 0; ; waited += WAIT_STEP_MS) {
    const [nai, na, ni] = await Promise.all([
      c.hitCounter(inflight(k.acctIp), IN_FLIGHT_WINDOW_MS, now),
      c.hitCounter(inflight(k.acct), IN_FLIGHT_WINDOW_MS, now),
      c.hitCounter(inflight(k.ip), IN_FLIGHT_WINDOW_MS, now),
    ]);
    const [fai, fa, fi, ok] = await Promise.all([c.peekCounter(k.acctIp, now), c.peekCounter(k.acct, now), c.peekCounter(k.ip, now), c.peekCounter(k.ok, now)]);
    const failedAI = fai?.count ?? 0;
    const failedA = fa?.count ?? 0;
    const failedI = fi?.count ?? 0;
    const accountOpen = known || failedA + na.count <= anyAddress;
    if (failedAI + nai.count <= policy.accountFailures && accountOpen && failedI + ni.count <= policy.ipFailures && (ok?.count ?? 0) < successes) return 0;
    await giveSlotBack(c, k, now);
    let until = 0;
    if (failedAI >= policy.accountFailures && fai) until = Math.max(until, fai.resetAt);
    if (!known && failedA >= anyAddress && fa) until = Math.max(until, fa.resetAt);
    if (failedI >= policy.ipFailures && fi) until = Math.max(until, fi.resetAt);
    if (ok && ok.count >= successes) until = Math.max(until, ok.resetAt);
    if (until > 0) return Math.max(1, Math.ceil((until - now) / 1000));
    if (waited >= MAX_WAIT_MS) return 1;
    // Full only because of checks in flight: wait for one of them to finish.
    await new Promise((r) => setTimeout(r, WAIT_STEP_MS));
  }
}

async function giveSlotBack(c: Coordination, k: Keys, now: number): Promise<void> {
  await Promise.all([
    c.hitCounter(inflight(k.acctIp), IN_FLIGHT_WINDOW_MS, now, -1),
    c.hitCounter(inflight(k.acct), IN_FLIGHT_WINDOW_MS, now, -1),
    c.hitCounter(inflight(k.ip), IN_FLIGHT_WINDOW_MS, now, -1),
  ]);
}

export type AttemptOutcome = { kind: 'ok' } | { kind: 'wrong' } | { kind: 'throttled'; retryAfter: number; reason: 'failures' | 'successes' | 'busy' };

/**
 * One password attempt under the throttle. Every place that checks a password (login,
 * re-authentication, password change) goes through here; `acct` and `ip` are accountKey and
 * ipKey.
 */
export async function throttledAttempt(
  c: Coordination,
  policy: ThrottlePolicy,
  acct: string,
  ip: string,
  now: number,
  check: () => Promise<boolean>,
): Promise<AttemptOutcome> {
  const k = keysOf(acct, ip);
  const wait = await takeSlot(c, policy, k, now);
  if (wait > 0) return { kind: 'throttled', retryAfter: wait, reason: 'failures' };
  let ok = false;
  let ran = false;
  try {
    // The per-process cap on argon2 work: no turn within the wait, no check (and no failure).
    if (!(await takeArgon2Turn(policy))) return { kind: 'throttled', retryAfter: 1, reason: 'busy' };
    ran = true;
    ok = await check();
  } finally {
    if (ran && ok) {
      await Promise.all([c.resetCounter(k.acctIp), c.hitCounter(k.known, policy.knownAddressMs ?? DEFAULTS.knownAddressMs, now)]);
    } else if (ran) {
      await Promise.all([c.hitCounter(k.acctIp, policy.windowMs, now), c.hitCounter(k.acct, policy.windowMs, now), c.hitCounter(k.ip, policy.windowMs, now)]);
    }
    await giveSlotBack(c, k, now);
  }
  if (!ok) return { kind: 'wrong' };
  // Successful checks per account and minute: counted atomically, so parallel right passwords
  // cannot all slip past the limit that takeSlot peeked at.
  const successes = await c.hitCounter(k.ok, 60_000, now);
  if (successes.count > (policy.successesPerMinute ?? DEFAULTS.successesPerMinute)) {
    return { kind: 'throttled', retryAfter: Math.max(1, Math.ceil((successes.resetAt - now) / 1000)), reason: 'successes' };
  }
  return { kind: 'ok' };
}
