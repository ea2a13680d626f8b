// Verification of Tessera's userSessionTokens in a resource server: the signature against
// Tessera's JWKS (jose's remote key set: cached, refetched when a token names an unknown key, so
// rotated keys are picked up), the issuer, the expiry and the tenant; optionally whether the
// session is still alive, by RFC 7662 introspection with the application's credential (cached
// for a bounded time, never past the token's expiry).

import { createHash } from 'node:crypto';
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from 'jose';

export interface IntrospectionOptions {
  /** The application's credential at Tessera (RFC 7662 section 2.1: client authentication). */
  clientId?: string;
  clientSecret?: string;
  /** How the credential is sent; default `client_secret_basic` (HTTP Basic, RFC 6749 2.3.1). */
  authMethod?: 'client_secret_basic' | 'client_secret_post';
  /** A bearer credential instead (e.g. an administrator token of a Tessera that takes one). */
  bearer?: string;
  /** Default `<baseUrl>/api/v1/auth/introspect`. */
  endpoint?: string;
  /** How long an answer is reused (s); default 30, 0 for none. Never past the token's expiry. */
  cacheSeconds?: number;
  /** Most answers kept; default 10000 (the oldest go first). */
  maxEntries?: number;
}

export interface VerifyOptions {
  /** Tessera's public URL (TESSERA_PUBLIC_URL): the tokens' issuer. */
  baseUrl: string;
  /** The tenant (or tenants) whose tokens this server accepts. */
  tenantId: string | readonly string[];
  /** Default `<baseUrl>/.well-known/jwks.json`. */
  jwksUrl?: string;
  /** Default baseUrl (without a trailing slash). */
  issuer?: string;
  /** Seconds of clock skew tolerated on exp/iat; default 0. */
  clockTolerance?: number;
  /** Least time (ms) between two JWKS fetches caused by unknown keys; default 30000 (jose's). */
  jwksCooldownMs?: number;
  /** Also ask Tessera whether the session is still alive (revocation takes effect at once). */
  introspection?: IntrospectionOptions;
  fetch?: typeof fetch;
}

export interface TesseraClaims {
  sessionId: string;
  userId: string;
  tenantId: string;
  scope: string[];
  /** ms since the epoch */
  expiresAt: number;
  issuedAt: number;
  keyId: string | null;
  claims: JWTPayload;
}

export type TesseraAuthErrorCode = 'missing_token' | 'invalid_token' | 'token_expired' | 'wrong_tenant' | 'session_ended' | 'tessera_unavailable';

/** Why a token was refused; `status` is what a middleware answers (401, or 503 when Tessera cannot be asked). */
export class TesseraAuthError extends Error {
  readonly code: TesseraAuthErrorCode;
  readonly status: number;
  constructor(code: TesseraAuthErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TesseraAuthError';
    this.code = code;
    this.status = code === 'tessera_unavailable' ? 503 : 401;
  }
}

const trim = (u: string) => u.replace(/\/+$/, '');
const keySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

function keySet(url: string, cooldown: number | undefined): ReturnType<typeof createRemoteJWKSet> {
  const k = `${url} ${cooldown ?? ''}`;
  let set = keySets.get(k);
  if (!set) keySets.set(k, (set = createRemoteJWKSet(new URL(url), cooldown === undefined ? {} : { cooldownDuration: cooldown })));
  return set;
}

/** Introspection answers, by token hash: the active flag and until when it may be reused. */
const answers = new Map<string, { active: boolean; until: number }>();

async function introspect(token: string, exp: number, o: VerifyOptions, i: IntrospectionOptions): Promise<boolean> {
  const now = Date.now();
  const seconds = i.cacheSeconds ?? 30;
  const id = createHash('sha256').update(token).update('\0').update(i.endpoint ?? o.baseUrl).digest('base64url');
  const hit = seconds > 0 ? answers.get(id) : undefined;
  if (hit && hit.until > now) return hit.active;
  if (hit) answers.delete(id);

  const body = new URLSearchParams({ token, token_type_hint: 'access_token' });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (i.bearer !== undefined) headers.authorization = `Bearer ${i.bearer}`;
  else if (i.clientId !== undefined && i.clientSecret !== undefined) {
    if (i.authMethod === 'client_secret_post') {
      body.set('client_id', i.clientId);
      body.set('client_secret', i.clientSecret);
    } else {
      const enc = (s: string) => new URLSearchParams({ s }).toString().slice(2); // RFC 6749 2.3.1: form-urlencoded first
      headers.authorization = `Basic ${Buffer.from(`${enc(i.clientId)}:${enc(i.clientSecret)}`).toString('base64')}`;
    }
  } else throw new TypeError('introspection needs clientId and clientSecret (or bearer)');

  let active: boolean;
  let refusedCredential: Error | null = null;
  try {
    const res = await (o.fetch ?? fetch)(i.endpoint ?? `${trim(o.baseUrl)}/api/v1/auth/introspect`, { method: 'POST', headers, body: body.toString() });
    if (res.status === 400 || res.status === 401 || res.status === 403) {
      // Not an outage but a configuration error (wrong credential): the caller's server error.
      const e = (await res.json().catch(() => ({}))) as { error?: string };
      refusedCredential = new Error(`Tessera refused the introspection request: ${res.status} ${e.error ?? ''}`.trim());
      throw refusedCredential;
    }
    if (res.status !== 200) throw new Error(`introspection answered ${res.status}`);
    const json = (await res.json()) as { active?: unknown };
    if (typeof json.active !== 'boolean') throw new Error('introspection answer without "active"');
    active = json.active;
  } catch (err) {
    if (err === refusedCredential) throw err;
    // Fail closed: the caller asked for revocation checks, so "cannot tell" is not "alive".
    throw new TesseraAuthError('tessera_unavailable', 'Tessera could not be asked whether the session is alive.', { cause: err });
  }
  if (seconds > 0) {
    const max = i.maxEntries ?? 10_000;
    while (answers.size >= max) {
      const oldest = answers.keys().next();
      if (oldest.done) break;
      answers.delete(oldest.value);
    }
    answers.set(id, { active, until: Math.min(now + seconds * 1000, exp * 1000) });
  }
  return active;
}

/** Verifies a userSessionToken; resolves its claims or throws a TesseraAuthError. */
export async function verifySessionToken(token: string, opts: VerifyOptions): Promise<TesseraClaims> {
  if (typeof token !== 'string' || token.length === 0) throw new TesseraAuthError('missing_token', 'No bearer token.');
  if (token.length > 4096 || token.split('.').length !== 3) throw new TesseraAuthError('invalid_token', 'The token is malformed.');
  const base = trim(opts.baseUrl);
  let payload: JWTPayload;
  let kid: string | null;
  try {
    const r = await jwtVerify(token, keySet(opts.jwksUrl ?? `${base}/.well-known/jwks.json`, opts.jwksCooldownMs), {
      issuer: opts.issuer ?? base,
      algorithms: ['EdDSA'],
      requiredClaims: ['sub', 'sid', 'tid', 'exp', 'iat'],
      clockTolerance: opts.clockTolerance ?? 0,
    });
    payload = r.payload;
    kid = r.protectedHeader.kid ?? null;
  } catch (err) {
    if (err instanceof errors.JWTExpired) throw new TesseraAuthError('token_expired', 'The token has expired.', { cause: err });
    if (err instanceof errors.JWKSTimeout || (err instanceof TypeError && !(err instanceof errors.JOSEError))) {
      throw new TesseraAuthError('tessera_unavailable', "Tessera's keys could not be fetched.", { cause: err });
    }
    throw new TesseraAuthError('invalid_token', 'The token is invalid.', { cause: err });
  }
  const tenants = typeof opts.tenantId === 'string' ? [opts.tenantId] : opts.tenantId;
  if (typeof payload.tid !== 'string' || !tenants.includes(payload.tid)) {
    throw new TesseraAuthError('wrong_tenant', 'The token belongs to another tenant.');
  }
  if (opts.introspection && !(await introspect(token, payload.exp!, opts, opts.introspection))) {
    throw new TesseraAuthError('session_ended', 'The session has ended.');
  }
  return {
    sessionId: payload.sid as string,
    userId: payload.sub!,
    tenantId: payload.tid,
    scope: typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [],
    expiresAt: payload.exp! * 1000,
    issuedAt: payload.iat! * 1000,
    keyId: kid,
    claims: payload,
  };
}

/** The token of an `Authorization: Bearer …` header, or null. */
export function bearerToken(header: string | string[] | undefined): string | null {
  if (typeof header !== 'string') return null;
  const m = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i.exec(header);
  return m ? m[1]! : null;
}

/** The problem document (RFC 9457) a middleware answers for a refused token. */
export function problemOf(err: TesseraAuthError): { status: number; headers: Record<string, string>; body: string } {
  const headers: Record<string, string> = { 'content-type': 'application/problem+json', 'cache-control': 'no-store' };
  if (err.status === 401) headers['www-authenticate'] = err.code === 'missing_token' ? 'Bearer' : `Bearer error="invalid_token"`;
  else headers['retry-after'] = '5';
  const title = err.status === 401 ? 'Unauthorized' : 'Service Unavailable';
  return {
    status: err.status,
    headers,
    body: JSON.stringify({ type: `https://tessera.dev/problems/${err.code}`, title, status: err.status, detail: err.message, code: err.code }),
  };
}
