// Which URLs Tessera talks to, or sends browsers to, in a federation: identity providers'
// issuers and endpoints, its own SSO redirect URI, back-channel targets. HTTPS always; plain
// HTTP only for loopback hosts, and only when TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1 says this is a
// laptop or a test (identity providers and applications on http://127.0.0.1).

import { isIP } from 'node:net';
import { BadRequest } from '../../domain/errors.ts';

/** 127.0.0.0/8, ::1 and localhost (which resolves to them; RFC 6761 6.3). */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1';
  return false;
}

export type UrlVerdict = { ok: true; url: URL; insecure: boolean } | { ok: false; reason: string };

/**
 * Whether `value` may be used as `what`. `insecure` says plain HTTP was allowed by the
 * development setting (openid-client then needs its own switch, allowInsecureRequests).
 */
export function judgeUrl(value: string, what: string, allowHttpLoopback: boolean): UrlVerdict {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { ok: false, reason: `${what} "${value.slice(0, 200)}" is not a URL` };
  }
  if (url.username !== '' || url.password !== '') return { ok: false, reason: `${what} must not carry credentials` };
  if (url.hash !== '') return { ok: false, reason: `${what} must not have a fragment` };
  if (url.protocol === 'https:') return { ok: true, url, insecure: false };
  if (url.protocol !== 'http:') return { ok: false, reason: `${what} must be an https:// URL` };
  if (!isLoopbackHost(url.hostname)) {
    return { ok: false, reason: `${what} must be an https:// URL (plain HTTP is never allowed for ${url.hostname})` };
  }
  if (!allowHttpLoopback) {
    return {
      ok: false,
      reason: `${what} is plain HTTP on a loopback address; allowed only in development with TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1`,
    };
  }
  return { ok: true, url, insecure: true };
}

/** judgeUrl that throws BadRequest('insecure_url') with `field` named. */
export function requireAllowedUrl(value: string, what: string, allowHttpLoopback: boolean, field: string): { url: URL; insecure: boolean } {
  const v = judgeUrl(value, what, allowHttpLoopback);
  if (!v.ok) throw new BadRequest('insecure_url', v.reason, { field });
  return v;
}
