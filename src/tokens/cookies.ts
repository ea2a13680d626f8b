// Cookie values signed with the cookie key, and cookie names (docs/api.md §Cookie mode, §Consent
// redirects, §Single sign-on): below HTTP so that flows (the idp cookie of /oidc) use them without
// importing src/http. Setting and reading cookies on a request stays in src/http/cookies.ts.

import { createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { Config } from '../config/config.ts';
import { makeRoom } from '../domain/bounded-map.ts';

/**
 * Signs cookie values as `<value>.<HMAC-SHA256 base64url>` with a key derived from the cookie
 * secret, compared in constant time. Given to @fastify/cookie in place of its own signer, whose
 * per-call key import costs more than the rest of a cached request.
 */
export class CookieSigner {
  private readonly key: KeyObject;
  /** Signed values already checked, by their exact text: a hit skips the HMAC (bounded). */
  private readonly verified = new Map<string, string>();
  constructor(key: KeyObject) {
    this.key = key;
  }
  sign = (value: string): string => `${value}.${createHmac('sha256', this.key).update(value).digest('base64url')}`;
  unsign = (input: string): { valid: true; renew: false; value: string } | { valid: false; renew: false; value: null } => {
    const known = this.verified.get(input);
    if (known !== undefined) return { valid: true, renew: false, value: known };
    const dot = input.lastIndexOf('.');
    if (dot <= 0) return { valid: false, renew: false, value: null };
    const value = input.slice(0, dot);
    const expected = Buffer.from(createHmac('sha256', this.key).update(value).digest('base64url'));
    const given = Buffer.from(input.slice(dot + 1));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { valid: false, renew: false, value: null };
    makeRoom(this.verified, 50_000);
    this.verified.set(input, value);
    return { valid: true, renew: false, value };
  };
}

export type CookieName = 'sid' | 'flow' | 'rid' | 'idp' | 'rb';

/** `rb`: the browser binding of consent redirects (a `__Host-` cookie nobody else can plant). */
const PREFIX: Record<CookieName, string> = { sid: '__Host-', flow: '__Host-', rid: '__Secure-', idp: '__Host-', rb: '__Host-' };

export function cookieName(config: Pick<Config, 'insecureCookies'>, name: CookieName): string {
  return config.insecureCookies ? name : PREFIX[name] + name;
}
