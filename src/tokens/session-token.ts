// The userSessionToken (docs/api.md §Token mode): a JWT signed with EdDSA (Ed25519), header `kid`,
// claims iss, sub, tid, sid, scope, iat, exp, jti. Ed25519 signatures are deterministic, so signing
// the same claims again yields the same token — which is how a refresh inside the grace window
// returns the very same pair.

import { hash, type KeyObject } from 'node:crypto';
import { decodeProtectedHeader, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import { Unauthorized } from '../domain/errors.ts';
import { makeRoom } from '../domain/bounded-map.ts';
import type { KeyRing } from './key-ring.ts';
import { ed25519 } from './ed25519.ts';
import { SignedTokens } from './signed-tokens.ts';

export interface SessionTokenClaims {
  iss: string;
  sub: string;
  tid: string;
  sid: string;
  scope: string;
  iat: number;
  exp: number;
  jti: string;
}

/** A jti that depends only on what it names, so re-signing reproduces the token. */
export function deterministicJti(...parts: string[]): string {
  return hash('sha256', parts.join('\u0000'), 'base64url').slice(0, 22);
}

export async function signSessionToken(ring: KeyRing, claims: SessionTokenClaims): Promise<string> {
  return signSessionTokenSync(ring, claims);
}

/** signSessionToken without a promise. */
export function signSessionTokenSync(ring: KeyRing, claims: SessionTokenClaims): string {
  const { kid, key } = ring.signing();
  // Fixed claim order: the same claims always give the same bytes.
  const signed: SessionTokenClaims = {
    iss: claims.iss,
    sub: claims.sub,
    tid: claims.tid,
    sid: claims.sid,
    scope: claims.scope,
    iat: claims.iat,
    exp: claims.exp,
    jti: claims.jti,
  };
  const payload = JSON.stringify(signed);
  // A compact JWS written out (what jose's CompactSign produces byte for byte, a test checks),
  // signed synchronously — by libsodium where it loads, else node:crypto (./ed25519.ts): jose
  // goes through WebCrypto's thread pool and two promises, a measurable share of every rotation
  // and login.
  const input = `${encodedHeader(kid)}.${b64url(payload)}`;
  const token = `${input}.${ed25519().sign(Buffer.from(input), key, kid).toString('base64url')}`;
  // Signed here, so known good: its first check in this process needs no Ed25519 verification.
  signedBy(ring).add(token);
  return token;
}

const b64url = (text: string) => Buffer.from(text).toString('base64url');

/** The encoded protected header of each signing key: the same text for every token it signs. */
const headers = new Map<string, string>();

function encodedHeader(kid: string): string {
  let h = headers.get(kid);
  if (h === undefined) {
    if (headers.size >= 16) headers.clear(); // a ring holds a few keys; never many
    h = b64url(JSON.stringify({ alg: 'EdDSA', typ: 'JWT', kid }));
    headers.set(kid, h);
  }
  return h;
}

/**
 * Tokens this process has already verified, by their exact text. A signature over the same bytes
 * verifies the same way every time, so a hit skips the Ed25519 check (the hot path's largest
 * cost); expiry is still checked on every use, and revocation is the session cache's job.
 * Bounded; the oldest entries go first.
 */
const verified = new WeakMap<KeyRing, Map<string, SessionTokenClaims>>();
const VERIFIED_MAX = 50_000;

function rememberVerified(ring: KeyRing, token: string, claims: SessionTokenClaims): void {
  let m = verified.get(ring);
  if (!m) verified.set(ring, (m = new Map<string, SessionTokenClaims>()));
  makeRoom(m, VERIFIED_MAX);
  m.set(token, claims);
}

/**
 * The claims of a token this process has verified (its signature and issuer held then) or signed
 * before, checked for issuer and expiry at `now` — which throws as `verifySessionToken` does;
 * undefined when the token has not been seen, and only `verifySessionToken` can tell.
 * Synchronous: the session check's fast path.
 */
export function verifiedSessionToken(ring: KeyRing, token: string, issuer: string, now: number): SessionTokenClaims | undefined {
  const known = verified.get(ring)?.get(token) ?? signedHere(ring, token);
  return known === undefined ? undefined : stillVerified(known, issuer, now);
}

/**
 * The tokens this process signed, per ring: recognised by their exact text on their first
 * check here (./signed-tokens.ts), the last 50,000 to 100,000 signed.
 */
const signed = new WeakMap<KeyRing, SignedTokens>();
const SIGNED_GENERATION = 50_000;

function signedBy(ring: KeyRing): SignedTokens {
  let s = signed.get(ring);
  if (s === undefined) signed.set(ring, (s = new SignedTokens(SIGNED_GENERATION)));
  return s;
}

/**
 * The claims of a token this process signed, read from its own payload, and the token remembered
 * verified from then on; undefined for any other text. A first check here costs a SHA-256 of the
 * token (and, for a token signed here, the payload's decoding) instead of a map entry made at
 * every signing.
 */
function signedHere(ring: KeyRing, token: string): SessionTokenClaims | undefined {
  const mine = signed.get(ring);
  if (mine === undefined || token.length > 4096 || !underOwnHeader(token) || !mine.has(token)) return undefined;
  const dot1 = token.indexOf('.');
  const claims = JSON.parse(Buffer.from(token.slice(dot1 + 1, token.indexOf('.', dot1 + 1)), 'base64url').toString('utf8')) as SessionTokenClaims;
  rememberVerified(ring, token, claims);
  return claims;
}

/**
 * Whether `token` begins with the encoded header of a key this process signed with, then a dot:
 * any other text (another kid, a malformed or oversized bearer) cannot be a token signed here and
 * is not hashed. A miss of the cache is looked up twice on the slow path (`verifiedSessionToken`,
 * then `verifySessionToken`), so without this a garbage bearer paid two SHA-256 of up to 4 kB on
 * every request.
 */
function underOwnHeader(token: string): boolean {
  for (const h of headers.values()) {
    if (token.length > h.length && token.charCodeAt(h.length) === 46 && token.startsWith(h)) return true;
  }
  return false;
}

/**
 * `verifiedSessionToken`'s answer for claims it gave before (a caller that remembered them):
 * the same issuer and expiry checks, on every use.
 */
export function stillVerified(known: SessionTokenClaims, issuer: string, now: number): SessionTokenClaims | undefined {
  refuseNonFiniteNow(now);
  if (known.iss !== issuer) return undefined;
  if (now >= known.exp * 1000) throw new Unauthorized('invalid_token', 'The token is invalid or has expired.');
  return known;
}

/**
 * A `now` that is NaN or infinite makes every expiry comparison false, so an expired token would
 * pass: refused as jose's jwtVerify refused it, with the expiry's error.
 */
function refuseNonFiniteNow(now: number): void {
  if (!Number.isFinite(now)) throw new Unauthorized('invalid_token', 'The token is invalid or has expired.');
}

/**
 * Verifies signature (EdDSA only — `none` and every other alg are refused), issuer and expiry.
 * An unknown kid triggers one rate-limited reload of the ring (a key another process added).
 */
export async function verifySessionToken(ring: KeyRing, token: string, issuer: string, now: number): Promise<SessionTokenClaims> {
  refuseNonFiniteNow(now);
  const known = verifiedSessionToken(ring, token, issuer, now);
  if (known !== undefined) return known;
  const claims = await verifyUncached(ring, token, issuer, now);
  rememberVerified(ring, token, claims);
  return claims;
}

async function verifyUncached(ring: KeyRing, token: string, issuer: string, now: number): Promise<SessionTokenClaims> {
  if (token.length > 4096 || token.split('.').length !== 3) throw new Unauthorized('invalid_token', 'The token is malformed.');
  let header: ProtectedHeaderParameters;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new Unauthorized('invalid_token', 'The token is malformed.');
  }
  const kid = header.kid;
  if (typeof kid !== 'string') throw new Unauthorized('invalid_token', 'The token has no key id.');
  let key = ring.verification(kid, now);
  if (key === null) {
    await ring.maybeReload(now);
    key = ring.verification(kid, now);
  }
  if (key === null) throw new Unauthorized('invalid_token', 'The token was signed by an unknown key.');
  const payload = verifiedPayload(token, header, key, issuer, now);
  if (payload === null) throw new Unauthorized('invalid_token', 'The token is invalid or has expired.');
  const c = payload as Partial<SessionTokenClaims>;
  if (typeof c.sid !== 'string' || typeof c.tid !== 'string' || typeof c.sub !== 'string') {
    throw new Unauthorized('invalid_token', 'The token lacks session claims.');
  }
  return c as SessionTokenClaims;
}

/** One base64url part of a compact JWS as our signer writes it: the URL alphabet, no padding. */
const BASE64URL = /^[A-Za-z0-9_-]*$/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
/** What `verifiedPayload` requires besides `iss` (what jose's jwtVerify was given as requiredClaims). */
const REQUIRED_CLAIMS = ['iss', 'sub', 'sid', 'tid', 'exp', 'iat', 'jti'] as const;

/**
 * The claims of a compact JWS `token` (whose protected header is `header`) when its Ed25519
 * signature by `key` holds and its claims pass jose's `jwtVerify` checks as this module used to
 * ask for them (algorithms ['EdDSA'], the issuer, clockTolerance 0, the required claims above):
 * every token jwtVerify refused is refused (a test compares them), and also a header with
 * `crit` (our signer writes none; jose would accept `crit: ["b64"]` with `b64: true`) and
 * base64url that our signer would not write: padding, white space, a part whose last character
 * has bits set that encode nothing, or a stray last character (length 4k+1, which Buffer's
 * decoder drops and jose's refused) — each part must be the canonical encoding of its bytes.
 * Null when refused. The signature is checked by
 * ./ed25519.ts (libsodium where it loads): a first check costs ~70 µs of CPU where jose's
 * (WebCrypto, on libuv's pool) cost ~170 (docs/performance.md "Ed25519 by libsodium").
 */
function verifiedPayload(token: string, header: ProtectedHeaderParameters, key: KeyObject, issuer: string, now: number): JWTPayload | null {
  if (header.alg !== 'EdDSA' || header.crit !== undefined) return null;
  const dot1 = token.indexOf('.');
  const dot2 = token.indexOf('.', dot1 + 1);
  const encodedHeader = token.slice(0, dot1);
  const encodedPayload = token.slice(dot1 + 1, dot2);
  const encodedSignature = token.slice(dot2 + 1);
  if (!BASE64URL.test(encodedHeader) || !BASE64URL.test(encodedPayload) || !BASE64URL.test(encodedSignature)) return null;
  const signature = Buffer.from(encodedSignature, 'base64url');
  if (signature.length !== 64 || signature.toString('base64url') !== encodedSignature) return null;
  const payloadBytes = Buffer.from(encodedPayload, 'base64url');
  if (payloadBytes.toString('base64url') !== encodedPayload) return null;
  if (Buffer.from(encodedHeader, 'base64url').toString('base64url') !== encodedHeader) return null;
  try {
    if (!ed25519().verify(Buffer.from(token.slice(0, dot2), 'latin1'), signature, key)) return null;
  } catch {
    return null; // not an Ed25519 public key
  }
  let claims: unknown;
  try {
    claims = JSON.parse(strictUtf8.decode(payloadBytes));
  } catch {
    return null;
  }
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) return null;
  const c = claims as Record<string, unknown>;
  for (const name of REQUIRED_CLAIMS) if (!Object.hasOwn(c, name)) return null;
  if (c.iss !== issuer) return null;
  // jose's NumericDate checks: seconds, the current time rounded down.
  const nowSeconds = Math.floor(now / 1000);
  if (typeof c.iat !== 'number' || typeof c.exp !== 'number') return null;
  if (c.nbf !== undefined && (typeof c.nbf !== 'number' || c.nbf > nowSeconds)) return null;
  if (c.exp <= nowSeconds) return null;
  return c;
}
