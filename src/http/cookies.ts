// Cookie names and attributes (docs/api.md §Cookie mode, §Consent redirects, §Single sign-on).
// Values are signed with the cookie key
// (COOKIE_SECRET_SIGN_KEY), so a forged or truncated cookie is refused before any store lookup.
// TESSERA_INSECURE_COOKIES=1 (plain-HTTP development) drops `Secure` and the name prefixes.

import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/config.ts';
import { cookieName, type CookieName } from '../tokens/cookies.ts';

export { CookieSigner, cookieName, type CookieName } from '../tokens/cookies.ts';

export interface CookieWrite {
  name: CookieName;
  value: string;
  maxAgeSeconds: number;
  sameSite: 'strict' | 'lax';
  path?: string;
}

export function setCookie(reply: FastifyReply, config: Pick<Config, 'insecureCookies'>, c: CookieWrite): void {
  void reply.setCookie(cookieName(config, c.name), c.value, {
    path: c.path ?? '/',
    httpOnly: true,
    secure: !config.insecureCookies,
    sameSite: c.sameSite,
    maxAge: Math.max(0, Math.floor(c.maxAgeSeconds)),
    signed: true,
  });
}

export function clearCookie(
  reply: FastifyReply,
  config: Pick<Config, 'insecureCookies'>,
  name: CookieName,
  sameSite: 'strict' | 'lax',
  path = '/',
): void {
  void reply.setCookie(cookieName(config, name), '', {
    path,
    httpOnly: true,
    secure: !config.insecureCookies,
    sameSite,
    maxAge: 0,
    expires: new Date(0),
  });
}

/**
 * The request's cookies, parsed from its Cookie header on first use (@fastify/cookie's parser;
 * the plugin is registered without its parsing hook, app.ts): most requests — every token-mode
 * one — never read a cookie, and the hook's run, its object and its map were a share of each
 * request's cost (docs/performance.md, "The POST routes' HTTP shell"). A cookie set on the reply
 * parses them again (the plugin's own step), to the same values.
 */
export function requestCookies(request: FastifyRequest): { [name: string]: string | undefined } {
  let cookies = request.cookies as FastifyRequest['cookies'] | null;
  if (cookies === null || cookies === undefined) {
    const header = request.headers.cookie;
    cookies = header ? request.server.parseCookie(header) : {};
    request.cookies = cookies;
  }
  return cookies;
}

/** The cookie's verified value, or null when it is absent, unsigned, forged or malformed. */
export function readCookie(request: FastifyRequest, config: Pick<Config, 'insecureCookies'>, name: CookieName): string | null {
  const raw = requestCookies(request)[cookieName(config, name)];
  if (raw === undefined || raw === '' || raw.length > 512) return null;
  const r = request.unsignCookie(raw);
  if (!r.valid || r.value === null || !/^[A-Za-z0-9_-]{43}$/.test(r.value)) return null;
  return r.value;
}
